// extract: frozen VGG16 (or --backbone) features of augmented crops, computed once, into an LMDB
// cache. parse → validate → load → batch loop (extract/pipeline) → report.
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/cli.h"
#include "common/image_folder.h"
#include "extract/backbone.h"
#include "extract/batch_size.h"
#include "extract/cli.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  return run_tool("extract", [&] {
    ExtractParams p;
    if (ParseStatus st = parse_extract_args(argc, argv, &p); !st.run) return st.exit_code;

    FolderScan scan = scan_image_folder(p.data_dir);  // fails fast on a bad --data
    WeightsIdentity weights;
    auto net = make_backbone_net(BackboneSpec{p.backbone, p.backbone_file},
                                 NetOptions{p.weights, p.device, p.threads, p.precision}, &weights);
    if (p.batch_auto) {
      const uint64_t free = net->free_device_bytes();
      p.batch = auto_batch_size(free, p.size, p.precision == "fp32" ? 4 : 2);
      spdlog::info("--batch {} from {:.1f} GiB free on the GPU at {} px {} (extract/batch_size.h)",
                   p.batch, free / 1073741824.0, p.size, p.precision);
    }
    if (auto* ts = dynamic_cast<TorchScriptNet*>(net.get())) learn_output_dim(p, scan, *ts);
    if (weights.random) {
      spdlog::warn(
          "RANDOM WEIGHTS ({}): randomly initialised {}, NOT pretrained; features are "
          "only good for tests",
          weights.name, p.backbone);
    } else {
      spdlog::info("weights {} (sha256 {})", weights.name, weights.sha256.substr(0, 16));
    }
    ExtractSummary s = run_extract(p, scan, *net, weights);
    if (s.already_complete) {
      fmt::print("extract: {} is already complete: {} images ({} skipped), {} records\n", p.out_dir,
                 s.images, s.skipped, s.records);
      return 0;
    }
    const double rate = s.seconds > 0 ? s.records_run / s.seconds : 0.0;
    const double img_rate = s.seconds > 0 ? s.images_run / s.seconds : 0.0;
    const double cpu_ms = s.records_run ? 1000 * s.cpu_seconds / s.records_run : 0.0;
    fmt::print(
        "extract: done: {} images ({} skipped), {} records, {:.1f} s, {:.1f} crops/s "
        "({:.1f} images/s, {:.1f} CPU-ms/crop){}{}\n",
        s.images, s.skipped, s.records, s.seconds, rate, img_rate, cpu_ms,
        s.resumed_from ? fmt::format(", resumed at image {}", s.resumed_from) : "",
        weights.random ? " [RANDOM WEIGHTS: " + weights.name + "]" : "");
    return 0;
  });
}
