// Hidden `extract --bench-forward`: times the forward pass alone on real preprocessed images, so
// bench/extract_bench.sh can compare it with PyTorch in the same run. Writes no cache.
#pragma once
#include "common/image_folder.h"
#include "extract/feature_net.h"
#include "extract/params.h"

namespace vggcache {

// Runs one warm-up batch, then p.bench_images views in batches of p.batch, and prints
// "forward-only: <img/s> img/s (...)" to stdout. Returns the rate.
double run_forward_bench(const ExtractParams& p, const FolderScan& scan, FeatureNet& net);

}  // namespace vggcache
