// Any module saved with torch.jit.save as a backbone (issue #16): the file is the weights and the
// architecture; its output, flattened per view, is the feature vector.
#include "extract/torchscript_net.h"

#include <fmt/format.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "common/sha256.h"

namespace vggcache {

namespace {

// LibTorch's messages carry a C++ backtrace after the first line; the first line is the reason.
std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

std::string shape_text(const torch::Tensor& t) {
  std::string r = "[";
  for (int64_t i = 0; i < t.dim(); ++i) r += (i ? ", " : "") + std::to_string(t.size(i));
  return r + "]";
}

class TorchScriptNetImpl : public TorchScriptNet {
 public:
  TorchScriptNetImpl(torch::jit::Module module, std::string file, torch::Device device)
      : module_(std::move(module)), file_(std::move(file)), device_(device) {}

  uint32_t dim() const override { return dim_; }
  std::string device() const override { return device_.str(); }

  HostBuffer alloc_input(size_t floats) override {
    auto opts = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device_.is_cuda());
    auto t = std::make_shared<torch::Tensor>(torch::empty({static_cast<int64_t>(floats)}, opts));
    return HostBuffer{t->data_ptr<float>(), floats, t};
  }

  uint32_t learn_dim(const float* in, int n, int size) override {
    const int64_t one = run(in, 1, size).size(1);
    const int64_t all = n > 1 ? run(in, n, size).size(1) : one;
    if (one != all)
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {}: output length changes with the batch: {} "
                              "floats per view for 1 view, {} for {} views",
                              file_, one, all, n));
    if (one == 0 || one > UINT32_MAX)
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {}: {} floats per view is not a usable feature "
                              "length",
                              file_, one));
    dim_ = static_cast<uint32_t>(one);
    return dim_;
  }

  void forward(const float* in, int n, int size, float* out) override {
    if (dim_ == 0)
      throw Error(ErrorKind::kInvalidArgument,
                  "TorchScript backbone: forward() before learn_dim() (the output length)");
    torch::Tensor y = run(in, n, size);
    if (y.size(1) != dim_)
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {}: output length changed between batches: {} "
                              "floats per view, then {}",
                              file_, dim_, y.size(1)));
    std::memcpy(out, y.data_ptr<float>(), sizeof(float) * static_cast<size_t>(y.numel()));
  }

  // The pre-pool map and pool4 are VGG16's layers; a module is only its output.
  std::vector<int> prepool_shape(int) const override {
    throw Error(ErrorKind::kInvalidArgument,
                "--codec prepool-f32 stores VGG16's map before its average pool; a TorchScript "
                "backbone's records are raw-f32");
  }
  void forward_prepool(const float*, int, int, float*) override { prepool_shape(0); }

 private:
  // The module on n views: n × floats-per-view, float32, CPU, contiguous. Throws Error naming the
  // file when the output is not one floating-point tensor with n rows.
  torch::Tensor run(const float* in, int n, int size) {
    c10::InferenceMode guard;
    torch::Tensor x = torch::from_blob(const_cast<float*>(in), {n, 3, size, size}, torch::kFloat32)
                          .to(device_, /*non_blocking=*/true);
    torch::jit::IValue out;
    try {
      out = module_.forward({x});
    } catch (const std::exception& e) {
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {} failed on {} views of 3 × {} × {}: {}", file_,
                              n, size, size, first_line(e.what())));
    }
    if (!out.isTensor())
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {} returns a {}, not a tensor; save a module "
                              "whose forward returns the feature tensor alone",
                              file_, out.tagKind()));
    torch::Tensor y = out.toTensor();
    if (!y.is_floating_point())
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {} returns a {} tensor, not floating point",
                              file_, c10::toString(y.scalar_type())));
    if (y.dim() < 1 || y.size(0) != n)
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("TorchScript module {} returns shape {} for {} views: the first "
                              "dimension must be the batch ({})",
                              file_, shape_text(y), n, n));
    return y.reshape({n, -1}).to(torch::kCPU, torch::kFloat32).contiguous();
  }

  torch::jit::Module module_;
  std::string file_;
  torch::Device device_;
  uint32_t dim_ = 0;
};

}  // namespace

std::unique_ptr<FeatureNet> make_torchscript_net(const NetOptions& options, WeightsIdentity* id) {
  const std::string& file = options.weights;
  if (options.precision != "fp32")
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--precision {} is for vgg16 and resnet50; a TorchScript module runs "
                            "in the dtype it was saved with (fp32)",
                            options.precision));
  // Explicit thread counts, as for VGG16 (feature_net.cpp): the inter-op pool can only be sized
  // before its first use, so a second call (tests) keeps the first size.
  torch::set_num_threads(options.threads);
  try {
    torch::set_num_interop_threads(1);
  } catch (const std::exception&) {
  }
  torch::Device device = torch::kCPU;
  if (options.device == "cuda") {
    if (!torch::cuda::is_available())
      throw Error(ErrorKind::kInvalidArgument,
                  "--device cuda: CUDA not available in this LibTorch build (or no GPU found)");
    // Full float32, as VGG16 runs there: the cache must not depend on the device.
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
    device = torch::kCUDA;
  }
  const std::string sha = sha256_file(file);  // Error(kIo) naming a missing/unreadable file
  torch::jit::Module module;
  try {
    module = torch::jit::load(file, device);
  } catch (const std::exception& e) {
    throw Error(
        ErrorKind::kBadWeights,
        fmt::format("--backbone torchscript:{}: LibTorch {} cannot load it as a TorchScript "
                    "module (not a torch.jit.save file, or saved by a newer PyTorch with "
                    "operators or a format this LibTorch does not know): {}",
                    file, TORCH_VERSION, first_line(e.what())));
  }
  module.eval();
  if (id) *id = WeightsIdentity{std::filesystem::path(file).filename().string(), sha, false};
  return std::make_unique<TorchScriptNetImpl>(std::move(module), file, device);
}

}  // namespace vggcache
