// vggcache-export: a head from train_head plus the VGG16 weights its features came from, as a
// model PyTorch (--format pth) or an ONNX runtime (--format onnx) loads. parse → refuse an existing
// output → load the head → load the weights and refuse a mismatch (predict's check) → write OUT
// (and OUT.json for pth) → report.
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "common/error.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "export/cli.h"
#include "export/export_onnx.h"
#include "export/export_pth.h"
#include "extract/feature_net.h"
#include "predict/classify.h"
#include "weights/pth_writer.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  return run_tool("vggcache-export", [&] {
    ExportParams p;
    if (ParseStatus st = parse_export_args(argc, argv, &p); !st.run) return st.exit_code;
    const bool onnx = p.format == "onnx";
    const std::string sidecar = onnx ? "" : p.out + ".json";  // ONNX: metadata_props instead
    for (const std::string& f : {p.out, sidecar}) {
      if (f.empty()) continue;
      std::error_code ec;
      if (!p.overwrite && std::filesystem::exists(f, ec))
        throw Error(ErrorKind::kIo, fmt::format("{} exists; give --overwrite to replace it", f));
    }

    HeadFile head = load_head(p.head);
    check_exportable(head, p.head);
    WeightsIdentity weights;
    StateDict file_features = load_vgg16_features(p.weights, &weights);
    PredictParams views;  // the eval view, as predict checks it
    views.weights = p.weights;
    const int size = head_view_size(head, p.head);
    check_head_features(head, p.head, view_params(views, size, BackboneSpec{}), weights,
                        trained_input_dim(head, size, kVgg16PooledDim));
    const StateDict features = network_features(head, std::move(file_features));
    if (weights.random)
      spdlog::warn("RANDOM WEIGHTS ({}): VGG16 is not pretrained; the model is only good for tests",
                   weights.name);

    ExportInfo info{p.out, "", p.head, sha256_file(p.head), weights};
    if (onnx) {
      write_file_atomically(p.out, onnx_model(head, features, info));
    } else {
      write_state_dict(p.out, torchvision_state_dict(head, features));
      info.model_sha256 = sha256_file(p.out);
      write_file_atomically(sidecar, export_sidecar(head, info).dump(2) + "\n");
    }
    if (!p.quiet)
      fmt::print(stderr, "vggcache-export: {} ({} classes{}{}) written to {} ({}){}\n", p.head,
                 head.classes.size(), head.block5.empty() ? "" : ", fine-tuned block 5",
                 head.standardizer.empty() ? "" : ", standardisation folded into classifier.0",
                 p.out, onnx ? fmt::format("ONNX opset {}", kOnnxOpset) : "torch state_dict",
                 onnx ? "" : ", described in " + sidecar);
    return 0;
  });
}
