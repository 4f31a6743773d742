#include "extract/feature_net.h"

#include <fmt/core.h>
#include <torch/torch.h>

#include <cstring>
// Only a LibTorch with CUDA brings CUDA's headers (CMake sets VGGCACHE_TORCH_CUDA for it).
#ifdef VGGCACHE_TORCH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "common/error.h"
#include "extract/vgg16.h"

namespace vggcache {

namespace {

class Vgg16Net : public FeatureNet {
 public:
  explicit Vgg16Net(Vgg16Features net) : net_(std::move(net)) {}
  uint32_t dim() const override { return 512 * 7 * 7; }
  std::string device() const override { return net_.device().str(); }

  HostBuffer alloc_input(size_t floats) override {
    auto opts =
        torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(net_.device().is_cuda());
    auto t = std::make_shared<torch::Tensor>(torch::empty({static_cast<int64_t>(floats)}, opts));
    return HostBuffer{t->data_ptr<float>(), floats, t};
  }

  void forward(const float* in, int n, int size, float* out) override {
    // n × 3 × size × size, a view of the caller's buffer (no copy on the CPU path).
    torch::Tensor x = torch::from_blob(const_cast<float*>(in), {n, 3, size, size}, torch::kFloat32);
    torch::Tensor y = net_.forward(x);  // n × 25088, CPU, contiguous
    std::memcpy(out, y.data_ptr<float>(), sizeof(float) * static_cast<size_t>(y.numel()));
  }

  std::vector<int> prepool_shape(int size) const override {
    const int side = vgg16_pooled_side(size, 5);
    return {512, side, side};
  }

  std::vector<int> pool4_shape(int size) const override {
    const int side = vgg16_pooled_side(size, 4);
    return {512, side, side};
  }

  void forward_pool4(const float* in, int n, int size, float* out) override {
    torch::Tensor x = torch::from_blob(const_cast<float*>(in), {n, 3, size, size}, torch::kFloat32);
    torch::Tensor z = net_.forward_pool4(x);  // n × 512 × h × w, CPU, contiguous (NCHW)
    std::memcpy(out, z.data_ptr<float>(), sizeof(float) * static_cast<size_t>(z.numel()));
  }

  uint64_t free_device_bytes() const override { return device_free_bytes(net_.device()); }

  void forward_prepool(const float* in, int n, int size, float* out) override {
    torch::Tensor x = torch::from_blob(const_cast<float*>(in), {n, 3, size, size}, torch::kFloat32);
    torch::Tensor z = net_.forward_prepool(x);  // n × 512 × h × w, CPU, contiguous (NCHW)
    std::memcpy(out, z.data_ptr<float>(), sizeof(float) * static_cast<size_t>(z.numel()));
  }

 private:
  Vgg16Features net_;
};

}  // namespace

std::vector<int> FeatureNet::pool4_shape(int) const {
  throw Error(ErrorKind::kInvalidArgument, "this network has no pool4 layer (--cut pool4)");
}

uint64_t FeatureNet::free_device_bytes() const {
  throw Error(ErrorKind::kInvalidArgument,
              "free device memory is known only for --device cuda with a CUDA LibTorch");
}

uint64_t device_free_bytes(const torch::Device& device) {
#ifdef VGGCACHE_TORCH_CUDA
  if (device.is_cuda()) {
    size_t free = 0, total = 0;
    if (cudaError_t err = cudaMemGetInfo(&free, &total); err != cudaSuccess)
      throw Error(ErrorKind::kIo,
                  fmt::format("--device cuda: cudaMemGetInfo failed: {}", cudaGetErrorString(err)));
    return free;
  }
#endif
  (void)device;
  throw Error(ErrorKind::kInvalidArgument,
              "free device memory is known only for --device cuda with a CUDA LibTorch");
}

void FeatureNet::forward_pool4(const float*, int, int, float*) {
  throw Error(ErrorKind::kInvalidArgument, "this network has no pool4 layer (--cut pool4)");
}

std::unique_ptr<FeatureNet> make_vgg16_net(const NetOptions& options, WeightsIdentity* id) {
  // Explicit thread counts: Debian's LibTorch starts with one intra-op thread. The inter-op pool
  // can only be sized before its first use, so a second call (tests) keeps the first size.
  torch::set_num_threads(options.threads);
  try {
    torch::set_num_interop_threads(1);  // VGG16's graph is a chain: nothing to run in parallel
  } catch (const std::exception&) {
  }
  torch::Device device = options.device == "cuda" ? torch::Device(torch::kCUDA) : torch::kCPU;
  return std::make_unique<Vgg16Net>(
      load_vgg16(options.weights, device, id, precision_dtype(options.precision, device)));
}

}  // namespace vggcache
