#include "extract/batch_size.h"

#include <fmt/core.h>

#include <algorithm>

#include "common/error.h"

namespace vggcache {

uint64_t vgg16_view_bytes(int size, int dtype_bytes) {
  const uint64_t pixels = static_cast<uint64_t>(size) * static_cast<uint64_t>(size);
  const uint64_t conv1_2 = (64 + 64) * pixels * dtype_bytes;
  const uint64_t inputs = 3 * pixels * (4 + 2 * static_cast<uint64_t>(dtype_bytes));
  return conv1_2 + inputs;
}

int auto_batch_size(uint64_t free_bytes, int size, int dtype_bytes, const AutoBatch& a) {
  const double per_view = a.safety * static_cast<double>(vgg16_view_bytes(size, dtype_bytes));
  const double fit = a.usable * static_cast<double>(free_bytes) / per_view;
  if (fit < 1) {
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("only {:.0f} MiB free on the GPU: not enough for one {} px view "
                            "({:.0f} MiB with the safety factor); give --batch to try anyway",
                            free_bytes / 1048576.0, size, per_view / 1048576.0));
  }
  int batch = static_cast<int>(std::min<double>(fit, a.max_batch));
  if (batch >= 8) batch -= batch % 8;
  return batch;
}

}  // namespace vggcache
