// The forward stage as the pipeline sees it: floats in, features out. Keeping LibTorch behind this
// interface means only feature_net.cpp and vgg16.cpp pay its compile time, and tests can drive the
// pipeline with a stand-in network.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "weights/pth_reader.h"

namespace vggcache {

// A host buffer of floats. Pinned (page-locked) when the network runs on a GPU, so host→device
// copies can be asynchronous; plain memory otherwise.
struct HostBuffer {
  float* data = nullptr;
  size_t floats = 0;
  std::shared_ptr<void> owner;  // keeps the memory alive
};

// The side of VGG16's map after `pools` of its 2×2 max-pools (floor mode) for a square input of
// `size` pixels: 4 for pool4 (block 5's input), 5 for pool5.
inline int vgg16_pooled_side(int size, int pools) {
  for (int i = 0; i < pools; ++i) size /= 2;
  return size;
}

// Whether LibTorch can run a bfloat16 convolution on this CPU. Its oneDNN kernels for them need
// AVX-512 (on an AVX2 CPU, or under ONEDNN_MAX_CPU_ISA=AVX2, they throw "could not create a
// primitive descriptor iterator"), so `--precision bf16` on the CPU is refused where this is
// false. Tried once on a tiny convolution, then remembered.
bool cpu_runs_bf16_conv();

class FeatureNet {
 public:
  virtual ~FeatureNet() = default;
  virtual uint32_t dim() const = 0;  // floats per view (25088)
  virtual std::string device() const = 0;
  virtual HostBuffer alloc_input(size_t floats) = 0;
  // in: n × 3 × size × size normalised floats; out: n × dim() floats. Not thread-safe.
  virtual void forward(const float* in, int n, int size, float* out) = 0;
  // {C, h, w} of the map before AdaptiveAvgPool2d(7, 7) for size × size views (the prepool-f32
  // payload). VGG16: 512 × (size halved, rounded down, five times)².
  virtual std::vector<int> prepool_shape(int size) const = 0;
  // in as forward(); out: n × C × h × w floats, the map that forward() would pool. Not thread-safe.
  virtual void forward_prepool(const float* in, int n, int size, float* out) = 0;
  // {C, h, w} of VGG16's pool4 map for size × size views (the input of block 5): 512 ×
  // (size halved, rounded down, four times)². Networks without that layer throw
  // Error(kInvalidArgument).
  virtual std::vector<int> pool4_shape(int size) const;
  // in as forward(); out: n × C × h × w floats, the pool4 map. Not thread-safe.
  virtual void forward_pool4(const float* in, int n, int size, float* out);
  // Bytes free on the network's GPU now (for extract's batch size without --batch). Throws
  // Error(kInvalidArgument) on the CPU and in builds whose LibTorch has no CUDA.
  virtual uint64_t free_device_bytes() const;
};

struct NetOptions {
  std::string weights;             // FILE or random:SEED
  std::string device = "cpu";      // cpu | cuda
  int threads = 1;                 // LibTorch intra-op threads
  std::string precision = "fp32";  // fp32 | bf16 | fp16: dtype of weights and inputs in forward
};

// VGG16 features + avgpool(7, 7) + flatten. Sets LibTorch's thread counts, loads the weights and
// fills `id`. Throws Error(kBadWeights / kInvalidArgument) with a clear message.
std::unique_ptr<FeatureNet> make_vgg16_net(const NetOptions& options, WeightsIdentity* id);

// torchvision's ResNet-50 without `fc`: the global average pool's 2048 floats per view
// (extract/resnet50.cpp). options.weights is a torchvision resnet50 state_dict file (legacy or zip)
// or random:SEED (as `torch.manual_seed(SEED); torchvision.models.resnet50()` initialises it).
// Fills `id`; throws Error(kBadWeights / kInvalidArgument) with a clear message.
std::unique_ptr<FeatureNet> make_resnet50_net(const NetOptions& options, WeightsIdentity* id);

// Any module saved with torch.jit.save (extract/torchscript_net.cpp); options.weights is the
// file. Its output is flattened to one vector per view; dim() is known after the first forward
// (0 before). `id` gets the file name and SHA-256. Throws Error(kBadWeights) naming the file
// (and LibTorch's version) when LibTorch cannot load it.
std::unique_ptr<FeatureNet> make_torchscript_net(const NetOptions& options, WeightsIdentity* id);

// The tensors of VGG16's `features` exactly as make_vgg16_net() computes with them, from FILE or
// random:SEED (generated as extract generates them), named as in torchvision's state_dict
// ("features.N.weight" / "features.N.bias", float32). Fills `id`; throws as make_vgg16_net().
StateDict load_vgg16_features(const std::string& weights, WeightsIdentity* id);

}  // namespace vggcache
