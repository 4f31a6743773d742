// predict: classifies image files and folders with VGG16 (or the head's backbone) features and a
// head from train_head. parse → load head → load weights and refuse a mismatch → classify
// (predict/classify) → CSV.
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>

#include "common/cli.h"
#include "common/image_folder.h"
#include "extract/backbone.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"
#include "head/head_file.h"
#include "head/linalg.h"
#include "predict/classify.h"
#include "predict/cli.h"
#include "predict/inputs.h"
#include "predict/predict_csv.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  return run_tool("predict", [&] {
    PredictParams p;
    if (ParseStatus st = parse_predict_args(argc, argv, &p); !st.run) return st.exit_code;
    // TBB runs the head (as in train_head), BLAS inside its tasks; LibTorch has its own threads.
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, p.threads);
    configure_blas_for_tbb();

    HeadFile head = load_head(p.head);
    const BackboneSpec backbone = head_backbone(head, p.head, p);
    const ExtractParams views = view_params(p, head_view_size(head, p.head), backbone);
    WeightsIdentity weights;
    auto net = make_backbone_net(backbone, NetOptions{p.weights, p.device, p.threads}, &weights);
    check_head_features(head, p.head, views, weights,
                        network_dim(head, *net, views.preprocess().size));
    if (weights.random)
      spdlog::warn(
          "RANDOM WEIGHTS ({}): {} is not pretrained; predictions are only good for "
          "tests",
          weights.name, backbone.name);

    InputList inputs = collect_inputs(p.paths);
    for (const auto& dir : inputs.empty_folders) spdlog::warn("{}: no image files", dir);
    if (auto* ts = dynamic_cast<TorchScriptNet*>(net.get())) {
      // Its output length is read from a first batch of the inputs, then must be the head's.
      FolderScan scan;
      for (const auto& f : inputs.files) scan.files.push_back({f, 0});
      check_head_dim(head, p.head, learn_output_dim(views, scan, *ts));
    }
    PredictResult r = classify_images(views, head, inputs.files, *net);
    if (r.images.empty()) {
      fmt::print(stderr, "predict: error: none of {} input file(s) could be classified\n",
                 inputs.files.size());
      return 1;
    }
    write_output(p.out, predictions_table(head.classes, r.images));
    fmt::print(stderr, "predict: {} image(s) classified, {} skipped, {} view(s) each, {:.1f} s{}\n",
               r.images.size(), r.skipped.size(), views.preprocess().crops, r.seconds,
               p.out.empty() ? "" : "; CSV in " + p.out);
    return 0;
  });
}
