// bench_forward: times extract's forward pass alone on real preprocessed images, so
// bench/extract_bench.sh can compare it with PyTorch in the same run. Writes no cache.
//   bench_forward --data DIR --weights W [--eval] [--size N] [--crops K] [--images N] and the
//   view flags of extract (--scale --ratio --flip --seed --batch --threads --device)
// Prints "forward-only: <img/s> img/s, <ms> CPU-ms/img (...)" to stdout.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <vector>

#include "common/cli.h"
#include "common/error.h"
#include "common/image_folder.h"
#include "common/progress.h"
#include "extract/cli.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"

namespace vggcache {
namespace {

// One warm-up batch, then `images` views in batches of p.batch. Returns the rate.
double run_forward_bench(const ExtractParams& p, int images, const FolderScan& scan,
                         FeatureNet& net) {
  const Preprocess pre = p.preprocess();
  // Enough whole images for one full batch of views (fewer if the split is small).
  uint32_t n_images = static_cast<uint32_t>(
      std::min<size_t>(scan.files.size(), (p.batch + pre.crops - 1) / pre.crops));
  PreparedChunk c = prepare_chunk(p, scan, 0, n_images, net);
  const int n = static_cast<int>(std::min<size_t>(c.views.size(), p.batch));
  if (n == 0) throw Error(ErrorKind::kInvalidArgument, "bench_forward: no decodable images");
  std::vector<float> out(static_cast<size_t>(n) * net.dim());

  net.forward(c.input.data, n, pre.size, out.data());  // warm-up: allocations, weight reorders
  int done = 0;
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = process_cpu_seconds();
  while (done < images) {
    net.forward(c.input.data, n, pre.size, out.data());
    done += n;
  }
  double secs = seconds_since(t0);
  const double cpu_ms = 1000 * (process_cpu_seconds() - c0) / done;
  double rate = done / secs;
  fmt::print(
      "forward-only: {:.2f} img/s, {:.1f} CPU-ms/img ({} views in {:.2f} s, batch {}, {} "
      "threads, {}, {} px)\n",
      rate, cpu_ms, done, secs, n, p.threads, net.device(), pre.size);
  return rate;
}

}  // namespace
}  // namespace vggcache

int main(int argc, char** argv) {
  using namespace vggcache;
  return run_tool("bench_forward", [&] {
    ExtractParams p;
    int images = 256;
    CLI::App app{"bench_forward: extract's forward pass alone, in img/s"};
    app.add_option("--data", p.data_dir, "ImageFolder split: DIR/<class>/<image>")->required();
    app.add_option("--weights", p.weights, ".pth file or random:SEED")->required();
    app.add_option("--size", p.size, "output side in pixels (>= 32)")->capture_default_str();
    app.add_option("--crops", p.crops, "views per image")->capture_default_str();
    app.add_flag("--eval", p.eval, "one Resize((size, size)) view per image");
    app.add_option("--images", images, "views to time (>= 1)")->capture_default_str();
    const ViewFlagHelp help{"crop area range MIN,MAX", "crop aspect range MIN,MAX",
                            "random horizontal flip", "augmentation seed",
                            "views per forward pass"};
    ViewFlagValues views;
    add_crop_flags(app, help, &p, &views);
    add_run_flags(app, help, &p);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    if (!take_view_flags(app, "bench_forward", views, &p)) return 2;
    std::string err = validate_extract_params(p);
    if (err.empty() && images < 1) err = fmt::format("--images must be >= 1 (got {})", images);
    if (!report_usage_error("bench_forward", err)) return 2;
    FolderScan scan = scan_image_folder(p.data_dir);
    WeightsIdentity weights;
    auto net = make_vgg16_net(NetOptions{p.weights, p.device, p.threads}, &weights);
    run_forward_bench(p, images, scan, *net);
    return 0;
  });
}
