#include "extract/bench_forward.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/error.h"
#include "extract/pipeline.h"

namespace vggcache {

double run_forward_bench(const ExtractParams& p, const FolderScan& scan, FeatureNet& net) {
  const Preprocess pre = p.preprocess();
  // Enough whole images for one full batch of views (fewer if the split is small).
  uint32_t n_images = static_cast<uint32_t>(
      std::min<size_t>(scan.files.size(), (p.batch + pre.crops - 1) / pre.crops));
  PreparedChunk c = prepare_chunk(p, scan, 0, n_images, net);
  const int n = static_cast<int>(std::min<size_t>(c.views.size(), p.batch));
  if (n == 0) throw Error(ErrorKind::kInvalidArgument, "--bench-forward: no decodable images");
  std::vector<float> out(static_cast<size_t>(n) * net.dim());

  net.forward(c.input.data, n, pre.size, out.data());  // warm-up: allocations, weight reorders
  int done = 0;
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = process_cpu_seconds();
  while (done < p.bench_images) {
    net.forward(c.input.data, n, pre.size, out.data());
    done += n;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_ms = 1000 * (process_cpu_seconds() - c0) / done;
  double rate = done / secs;
  fmt::print(
      "forward-only: {:.2f} img/s, {:.1f} CPU-ms/img ({} views in {:.2f} s, batch {}, {} "
      "threads, {}, {} px)\n",
      rate, cpu_ms, done, secs, n, p.threads, net.device(), pre.size);
  return rate;
}

}  // namespace vggcache
