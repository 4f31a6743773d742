// Frozen VGG16 `features` + AdaptiveAvgPool2d(7, 7) + flatten, exactly as torchvision builds it.
// This header includes LibTorch: include it only from extract/ sources that need it.
#pragma once
#include <torch/torch.h>

#include <string>

#include "common/cache_meta.h"
#include "weights/pth_reader.h"

namespace vggcache {

class Vgg16Features {
 public:
  // From a state_dict (names "features.N.weight"/"features.N.bias"; classifier.* ignored).
  // Throws Error(kBadWeights) naming `source` for missing keys or wrong shapes.
  Vgg16Features(const StateDict& sd, const std::string& source, torch::Device device,
                torch::ScalarType dtype = torch::kFloat32);
  // Random He init as torchvision's VGG._initialize_weights (kaiming_normal_ fan_out/relu, bias 0)
  // from torch::manual_seed(seed). Callers must announce loudly that features are not pretrained.
  Vgg16Features(uint64_t seed, torch::Device device, torch::ScalarType dtype = torch::kFloat32);

  // x: n × 3 × s × s float32 normalised images (any device; moved and converted to dtype() as
  // needed). Returns n × 25088 float32 on the CPU (contiguous). Inference mode, no autograd.
  torch::Tensor forward(const torch::Tensor& x);
  // Same, but returns the pre-pool map n × 512 × h × w (for the compact codec).
  torch::Tensor forward_prepool(const torch::Tensor& x);
  // The pool4 map n × 512 × s/16 × s/16 (features[0..23], block 5's input; extract --cut pool4).
  torch::Tensor forward_pool4(const torch::Tensor& x);

  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  // The convolutions' weights and biases as torchvision names them ("features.N.weight", NCHW,
  // float32, on the CPU): a copy of what forward() computes with.
  StateDict state_dict() const;

 private:
  void build();
  torch::nn::Sequential features_{nullptr};
  torch::Device device_;
  torch::ScalarType dtype_;
};

// The dtype of `extract --precision NAME` (fp32, bf16, fp16) on `device`. Throws
// Error(kInvalidArgument) for other names, for fp16 on the CPU, which has no float16
// convolution in LibTorch, and for bf16 on a CPU where cpu_runs_bf16_conv() is false.
torch::ScalarType precision_dtype(const std::string& name, torch::Device device);

// "random:SEED" → SEED; Error(kInvalidArgument) naming the spec unless SEED is a non-negative
// integer. Shared by every backbone's --weights.
uint64_t parse_random_seed(const std::string& spec);

// Bytes free on `device` now when it is a GPU of a CUDA LibTorch (the networks'
// FeatureNet::free_device_bytes()); elsewhere FeatureNet's Error(kInvalidArgument).
uint64_t device_free_bytes(const torch::Device& device);

// Loads weights from FILE or "random:SEED" and fills `id` (name, sha256, random flag); the network
// then runs in `dtype` (weights rounded to it once). Throws Error(kBadWeights / kInvalidArgument)
// with a clear message.
Vgg16Features load_vgg16(const std::string& spec, torch::Device device, WeightsIdentity* id,
                         torch::ScalarType dtype = torch::kFloat32);

}  // namespace vggcache
