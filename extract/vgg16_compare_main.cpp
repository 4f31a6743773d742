// vgg16_compare: VGG16 features of the same views on the CPU in float32 (the reference) and on
// --device at --precision, as extract computes them; prints the worst max |diff| / max |reference|
// over the views and fails (exit 1) above --bound. scripts/gpu-check.sh runs it on a GPU.
#include <fmt/core.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>

#include "common/cli.h"
#include "common/error.h"
#include "common/image_folder.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"
#include "extract/vgg16.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  return run_tool("vgg16_compare", [&] {
    ExtractParams p;
    std::string precision = "fp32";
    int images = 8;
    double bound = -1;
    CLI::App app{"vgg16_compare: CPU float32 vs --device/--precision features of the same views"};
    app.add_option("--data", p.data_dir, "ImageFolder split")->required();
    app.add_option("--weights", p.weights, ".pth or random:SEED")->required();
    app.add_option("--size", p.size, "view side in pixels")->capture_default_str();
    app.add_option("--crops", p.crops, "random views per image")->capture_default_str();
    app.add_option("--images", images,
                   "images, half from the start of the list, half from the "
                   "middle (both classes of a two-class split)")
        ->capture_default_str();
    app.add_option("--device", p.device, "cpu or cuda")->capture_default_str();
    app.add_option("--precision", precision, "fp32, bf16 or fp16")->capture_default_str();
    app.add_option("--bound", bound, "fail above this relative difference (default: report only)");
    app.add_option("--threads", p.threads, "CPU threads")->capture_default_str();
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    if (p.threads < 1) p.threads = 1;
    const FolderScan scan = scan_image_folder(p.data_dir);
    const uint32_t n_files = static_cast<uint32_t>(scan.files.size());
    if (images < 2 || static_cast<uint32_t>(images) > n_files) {
      throw Error(ErrorKind::kInvalidArgument, fmt::format("--images must be 2..{} for {} (got {})",
                                                           n_files, p.data_dir, images));
    }
    torch::set_num_threads(p.threads);
    const torch::Device device = p.device == "cuda" ? torch::Device(torch::kCUDA) : torch::kCPU;
    Vgg16Features ref = load_vgg16(p.weights, torch::kCPU, nullptr);
    Vgg16Features dev = load_vgg16(p.weights, device, nullptr, precision_dtype(precision, device));
    auto alloc = make_vgg16_net(NetOptions{"random:1", "cpu", p.threads, "fp32"}, nullptr);

    const uint32_t half = static_cast<uint32_t>(images / 2), mid = n_files / 2;
    double worst = 0, dev_seconds = 0;
    int64_t views = 0;
    for (uint32_t first : {0u, mid}) {
      const PreparedChunk c =
          prepare_chunk(p, scan, first, std::min(n_files, first + half), *alloc);
      const int64_t n = static_cast<int64_t>(c.views.size());
      if (n == 0) continue;
      torch::Tensor x = torch::from_blob(c.input.data, {n, 3, p.size, p.size}, torch::kFloat32);
      torch::Tensor a = ref.forward(x);
      dev.forward(x);  // warm-up: cuDNN picks its algorithms on the first call
      const auto t0 = std::chrono::steady_clock::now();
      torch::Tensor b = dev.forward(x);  // returns on the CPU: the device has finished
      dev_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (int64_t v = 0; v < n; ++v) {
        const double scale = a[v].abs().max().item<double>();
        const double diff = (b[v] - a[v]).abs().max().item<double>();
        worst = std::max(worst, scale > 0 ? diff / scale : diff);
      }
      views += n;
    }
    const bool ok = bound < 0 || worst <= bound;
    fmt::print(
        "vgg16_compare: {} views at {} px, {} {} vs cpu fp32: max |diff| / max |cpu feature| = "
        "{:.3g}{} ({:.1f} views/s on {} after warm-up)\n",
        views, p.size, p.device, precision, worst,
        bound < 0 ? "" : fmt::format(" (bound {:.3g}: {})", bound, ok ? "ok" : "EXCEEDED"),
        dev_seconds > 0 ? views / dev_seconds : 0.0, p.device);
    return ok ? 0 : 1;
  });
}
