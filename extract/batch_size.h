// extract's batch size on a GPU when --batch is not given: as many views as the free memory
// holds, by a formula that tests can check without a GPU.
#pragma once
#include <cstdint>

namespace vggcache {

// Peak device memory one view adds to VGG16's forward pass at `size` px, in bytes, with
// `dtype_bytes` per value (4 fp32, 2 bf16/fp16): in inference mode each layer's input is freed
// once its output exists and ReLU works in place, so the peak is the largest input + output pair,
// conv1_2's (64 + 64 channels at full size), plus the view's float32 input, its copy in the
// precision and the channels-last copy of that (3 channels each).
uint64_t vgg16_view_bytes(int size, int dtype_bytes);

struct AutoBatch {
  double safety = 2.0;   // cuDNN workspaces and the allocator's fragmentation on top
  double usable = 0.9;   // share of the free memory to plan with (CUDA context growth)
  int max_batch = 1024;  // beyond this GPUs gain nothing and pinned host chunks grow
};

// floor(usable · free_bytes / (safety · vgg16_view_bytes)), capped at max_batch and rounded down
// to a multiple of 8 (tensor-core friendly) when at least 8. Throws Error(kInvalidArgument) when
// not even one view fits, naming the free memory and --batch.
int auto_batch_size(uint64_t free_bytes, int size, int dtype_bytes, const AutoBatch& a = {});

}  // namespace vggcache
