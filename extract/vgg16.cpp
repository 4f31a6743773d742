#include "extract/vgg16.h"

#include <fmt/core.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "common/error.h"
#include "common/sha256.h"
#include "extract/feature_net.h"

namespace vggcache {

namespace {

// torchvision's cfgs["D"]: channel counts of the 13 convolutions, 0 = MaxPool2d(2, 2).
constexpr int kCfgD[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                         0,  512, 512, 512, 0,   512, 512, 512, 0};

// The classifier torchvision's VGG() constructs after `features`: (in, out) of its Linear layers.
// Their default initialisation draws from the global generator before _initialize_weights runs,
// so `random:SEED` must consume the same number of draws to reproduce torch's conv weights.
constexpr int64_t kClassifier[][2] = {{512 * 7 * 7, 4096}, {4096, 4096}, {4096, 1000}};

// Consumes `n` uniform float draws from the default CPU generator (one 32-bit draw each, as the
// serial CPU uniform_ kernel does), in bounded chunks instead of a 400 MB tensor.
void skip_uniform_draws(int64_t n) {
  constexpr int64_t kChunk = int64_t{1} << 22;
  torch::Tensor scratch = torch::empty({std::min(n, kChunk)});
  while (n > 0) {
    int64_t k = std::min(n, kChunk);
    scratch.narrow(0, 0, k).uniform_(-1.0, 1.0);
    n -= k;
  }
}

// Conv2d modules of `features` with their Sequential index (the "features.N" in state_dict names).
std::vector<std::pair<int, torch::nn::Conv2dImpl*>> convs(torch::nn::Sequential& seq) {
  std::vector<std::pair<int, torch::nn::Conv2dImpl*>> out;
  for (size_t i = 0; i < seq->size(); ++i) {
    if (auto* c = seq[i]->as<torch::nn::Conv2d>()) out.emplace_back(static_cast<int>(i), c);
  }
  return out;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

torch::Device checked_device(torch::Device device) {
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw Error(ErrorKind::kInvalidArgument,
                  "--device cuda: CUDA not available in this LibTorch build (or no GPU found)");
    }
    // Full float32 convolutions: TF32 would move features ~1e-3 away from the CPU's and
    // torchvision's float32 results, and the cache must not depend on the device.
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
  return device;
}

// After the weights are final (in float32, as loaded or drawn): move to the device and the dtype,
// and to channels-last (NHWC), which is what oneDNN's convolutions run fastest on (about 1.5×
// NCHW at 64 px on 2 CPU threads).
void finalize(torch::nn::Sequential& seq, torch::Device device, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  seq->to(device, dtype);
  for (auto& p : seq->parameters()) {
    p.set_requires_grad(false);
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

// The first `layers` modules of `features` (all of them by default: the pool5 map).
torch::Tensor run_features(torch::nn::Sequential& seq, torch::Device device,
                           torch::ScalarType dtype, const torch::Tensor& x,
                           size_t layers = SIZE_MAX) {
  if (x.dim() != 4 || x.size(1) != 3 || x.scalar_type() != torch::kFloat32) {
    throw Error(
        ErrorKind::kInvalidArgument,
        fmt::format("vgg16: input must be float32 n × 3 × s × s, got {} {}",
                    std::string(c10::toString(x.scalar_type())), shape_str(x.sizes().vec())));
  }
  // non_blocking: from pinned host memory the copy overlaps with work already queued on the GPU.
  // The dtype conversion happens after the copy, on the device: half the bytes would cross the bus
  // with it before, but the host would do the conversion on the pipeline's critical path.
  torch::Tensor in =
      x.to(device, /*non_blocking=*/true).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
  if (layers >= seq->size()) return seq->forward(in);  // n × 512 × s/32 × s/32
  size_t i = 0;
  for (auto it = seq->begin(); it != seq->end() && i < layers; ++it, ++i) in = it->forward(in);
  return in;
}

}  // namespace

void Vgg16Features::build() {
  features_ = torch::nn::Sequential();
  int64_t in = 3;
  for (int v : kCfgD) {
    if (v == 0) {
      features_->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
    } else {
      features_->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, v, 3).padding(1)));
      features_->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(/*inplace=*/true)));
      in = v;
    }
  }
  features_->eval();
}

Vgg16Features::Vgg16Features(const StateDict& sd, const std::string& source, torch::Device device,
                             torch::ScalarType dtype)
    : device_(checked_device(device)), dtype_(dtype) {
  build();
  torch::NoGradGuard no_grad;
  std::set<std::string> expected;
  for (auto& [index, conv] : convs(features_)) {
    for (auto* which : {"weight", "bias"}) {
      std::string name = fmt::format("features.{}.{}", index, which);
      expected.insert(name);
      torch::Tensor& param = std::string(which) == "weight" ? conv->weight : conv->bias;
      auto it = sd.find(name);
      if (it == sd.end()) {
        throw Error(
            ErrorKind::kBadWeights,
            fmt::format("{}: not a torchvision vgg16 state_dict: missing '{}'", source, name));
      }
      const std::vector<int64_t> want = param.sizes().vec();
      if (it->second.shape != want) {
        throw Error(ErrorKind::kBadWeights,
                    fmt::format("{}: '{}' has shape {}, vgg16 needs {}", source, name,
                                shape_str(it->second.shape), shape_str(want)));
      }
      if (it->second.values.size() != static_cast<size_t>(param.numel())) {
        throw Error(ErrorKind::kBadWeights,
                    fmt::format("{}: '{}' holds {} values for shape {}", source, name,
                                it->second.values.size(), shape_str(want)));
      }
      // from_blob does not own the memory; copy_ takes the values before `sd` can go away.
      auto src =
          torch::from_blob(const_cast<float*>(it->second.values.data()), want, torch::kFloat32);
      param.copy_(src);
    }
  }
  // Anything else under features.* (batch-norm statistics of vgg16_bn, an extra layer) means a
  // different architecture: refuse instead of silently ignoring part of the file.
  for (const auto& [name, t] : sd) {
    if (name.rfind("features.", 0) == 0 && !expected.count(name)) {
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("{}: unexpected '{}' (not plain vgg16: vgg16_bn or another model?)",
                              source, name));
    }
  }
  finalize(features_, device_, dtype_);
}

Vgg16Features::Vgg16Features(uint64_t seed, torch::Device device, torch::ScalarType dtype)
    : device_(checked_device(device)), dtype_(dtype) {
  build();
  torch::NoGradGuard no_grad;
  // Replays, draw for draw, what `torch.manual_seed(seed); torchvision.models.vgg16()` does on the
  // CPU generator: every Conv2d/Linear's default reset_parameters (kaiming_uniform_ a=sqrt(5) on
  // the weight, uniform bias), then VGG._initialize_weights (kaiming_normal_ fan_out/relu, bias 0)
  // over the convolutions. The classifier is not kept; only its draws are consumed.
  torch::manual_seed(seed);
  auto layers = convs(features_);
  for (auto& [index, conv] : layers) {
    torch::nn::init::kaiming_uniform_(conv->weight, std::sqrt(5.0));
    const double fan_in = static_cast<double>(conv->weight[0].numel());
    torch::nn::init::uniform_(conv->bias, -1.0 / std::sqrt(fan_in), 1.0 / std::sqrt(fan_in));
  }
  for (const auto& l : kClassifier) skip_uniform_draws(l[0] * l[1] + l[1]);
  for (auto& [index, conv] : layers) {
    torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    torch::nn::init::zeros_(conv->bias);
  }
  finalize(features_, device_, dtype_);
}

torch::Tensor Vgg16Features::forward(const torch::Tensor& x) {
  c10::InferenceMode guard;
  // Pooled in float32 whatever the precision: the cache's values are float32, and averaging in
  // bf16 would add one more rounding to every feature.
  torch::Tensor f = run_features(features_, device_, dtype_, x).to(torch::kFloat32);
  // n × 512 × 7 × 7, flattened in NCHW order (c, y, x) as torch.flatten does: n × 25088.
  torch::Tensor pooled = torch::adaptive_avg_pool2d(f, {7, 7});
  return pooled.flatten(1).to(torch::kCPU).contiguous();
}

torch::Tensor Vgg16Features::forward_prepool(const torch::Tensor& x) {
  c10::InferenceMode guard;
  return run_features(features_, device_, dtype_, x).to(torch::kCPU, torch::kFloat32).contiguous();
}

torch::Tensor Vgg16Features::forward_pool4(const torch::Tensor& x) {
  c10::InferenceMode guard;
  // features[23] is the fourth max-pool: 24 modules give block 5's input.
  return run_features(features_, device_, dtype_, x, 24)
      .to(torch::kCPU, torch::kFloat32)
      .contiguous();
}

StateDict Vgg16Features::state_dict() const {
  StateDict sd;
  auto seq = features_;
  for (auto& [index, conv] : convs(seq)) {
    for (auto* which : {"weight", "bias"}) {
      const torch::Tensor& param = std::string(which) == "weight" ? conv->weight : conv->bias;
      torch::Tensor t = param.detach().to(torch::kCPU, torch::kFloat32).contiguous();  // NCHW again
      TensorData d;
      d.shape = t.sizes().vec();
      d.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      sd[fmt::format("features.{}.{}", index, which)] = std::move(d);
    }
  }
  return sd;
}

StateDict load_vgg16_features(const std::string& spec, WeightsIdentity* id) {
  return load_vgg16(spec, torch::kCPU, id).state_dict();
}

bool cpu_runs_bf16_conv() {
  static const bool ok = [] {
    try {
      torch::NoGradGuard no_grad;
      const torch::Tensor x = torch::zeros({1, 3, 4, 4}, torch::kBFloat16);
      const torch::Tensor w = torch::zeros({2, 3, 3, 3}, torch::kBFloat16);
      torch::conv2d(x, w, {}, 1, 1);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return ok;
}

torch::ScalarType precision_dtype(const std::string& name, torch::Device device) {
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") {
    if (!device.is_cuda() && !cpu_runs_bf16_conv())
      throw Error(ErrorKind::kInvalidArgument,
                  "--precision bf16: LibTorch cannot run bfloat16 convolutions on this CPU (its "
                  "oneDNN kernels for them need AVX-512); use --precision fp32, or bf16 with "
                  "--device cuda");
    return torch::kBFloat16;
  }
  if (name == "fp16") {
    if (!device.is_cuda()) {
      throw Error(ErrorKind::kInvalidArgument,
                  "--precision fp16 needs --device cuda (LibTorch has no float16 convolution on "
                  "the CPU); use --precision bf16 on the CPU");
    }
    return torch::kHalf;
  }
  throw Error(ErrorKind::kInvalidArgument,
              fmt::format("--precision must be fp32, bf16 or fp16 (got {})", name));
}

uint64_t parse_random_seed(const std::string& spec) {
  const std::string digits = spec.substr(spec.find(':') + 1);
  uint64_t seed = 0;
  size_t used = 0;
  try {
    if (digits.empty() || digits[0] == '-') throw std::invalid_argument("sign");
    seed = std::stoull(digits, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != digits.size())
    throw Error(
        ErrorKind::kInvalidArgument,
        fmt::format("--weights {}: expected random:SEED with a non-negative integer SEED", spec));
  return seed;
}

Vgg16Features load_vgg16(const std::string& spec, torch::Device device, WeightsIdentity* id,
                         torch::ScalarType dtype) {
  if (spec.rfind("random:", 0) == 0) {
    const uint64_t seed = parse_random_seed(spec);
    if (id) *id = WeightsIdentity{fmt::format("random:{}", seed), "", true};
    return Vgg16Features(seed, device, dtype);
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(spec, ec)) {
    throw Error(
        ErrorKind::kInvalidArgument,
        fmt::format("--weights {}: no such file (give a .pth state_dict file or random:SEED)",
                    spec));
  }
  std::string sha = sha256_file(spec);
  StateDict sd = read_state_dict(spec, [](const std::string& name) {
    return name.rfind("features.", 0) == 0;  // the classifier (~480 MB) is never loaded
  });
  Vgg16Features net(sd, spec, device, dtype);
  if (id) *id = WeightsIdentity{std::filesystem::path(spec).filename().string(), sha, false};
  return net;
}

}  // namespace vggcache
