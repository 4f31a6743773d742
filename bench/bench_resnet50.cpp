// bench_resnet50: times the ResNet-50 backbone's forward pass alone (make_resnet50_net, as
// extract runs it), so bench/resnet50_bench.sh can compare it with torchvision's resnet50 in the
// same run. The input is a fixed pattern: the speed of a convolution does not depend on values.
//   bench_resnet50 [--weights random:1|FILE] [--size 64] [--batch 32] [--images 256]
//                  [--threads 2] [--device cpu] [--precision fp32]
// Prints "resnet50-forward: <img/s> img/s, <ms> CPU-ms/img (...)" to stdout.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <vector>

#include "common/cli.h"
#include "common/progress.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  return run_tool("bench_resnet50", [&] {
    NetOptions o{"random:1", "cpu", 2};
    int size = 64, batch = 32, images = 256;
    CLI::App app{"bench_resnet50: the ResNet-50 backbone's forward pass alone, in img/s"};
    app.add_option("--weights", o.weights, ".pth file or random:SEED")->capture_default_str();
    app.add_option("--size", size, "view side in pixels")->capture_default_str();
    app.add_option("--batch", batch, "views per forward pass")->capture_default_str();
    app.add_option("--images", images, "views to time")->capture_default_str();
    app.add_option("--threads", o.threads, "LibTorch threads")->capture_default_str();
    app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
    app.add_option("--precision", o.precision, "fp32, bf16 or fp16")->capture_default_str();
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    std::string err;
    if (size < 32 || batch < 1 || images < 1 || o.threads < 1)
      err = "--size must be >= 32, --batch, --images and --threads >= 1";
    if (!report_usage_error("bench_resnet50", err)) return 2;
    WeightsIdentity id;
    auto net = make_resnet50_net(o, &id);
    HostBuffer in = net->alloc_input(static_cast<size_t>(batch) * 3 * size * size);
    for (size_t i = 0; i < in.floats; ++i) in.data[i] = 1.5f * std::sin(0.37f * float(i % 100003));
    std::vector<float> out(static_cast<size_t>(batch) * net->dim());
    net->forward(in.data, batch, size, out.data());  // warm-up: allocations, weight reorders
    int done = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = process_cpu_seconds();
    while (done < images) {
      net->forward(in.data, batch, size, out.data());
      done += batch;
    }
    const double secs = seconds_since(t0);
    fmt::print(
        "resnet50-forward: {:.2f} img/s, {:.1f} CPU-ms/img ({} views in {:.2f} s, batch {}, {} "
        "threads, {}, {}, {} px)\n",
        done / secs, 1000 * (process_cpu_seconds() - c0) / done, done, secs, batch, o.threads,
        net->device(), o.precision, size);
    return 0;
  });
}
