// torchvision's ResNet-50 (Bottleneck blocks [3, 4, 6, 3], stride on the 3×3 convolution as in
// torchvision 0.14) without `fc`: n × 2048 floats per batch, the global average pool of layer4.
// Batch norm runs in eval mode, so each one is an affine map per channel, folded once into the
// convolution before it: one convolution with bias per conv+bn pair in forward().
#include "extract/resnet50.h"

#include <fmt/core.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/error.h"
#include "common/sha256.h"
#include "extract/feature_net.h"
#include "extract/vgg16.h"

namespace vggcache {

namespace {

// One convolution and the batch norm after it, as torchvision names them.
struct ConvSpec {
  std::string conv;  // "layer2.0.conv2" (its weight is CONV.weight)
  std::string bn;    // "layer2.0.bn2"
  int64_t in, out, kernel, stride, padding;
};

struct BlockSpec {
  ConvSpec c1, c2, c3;
  bool has_downsample = false;
  ConvSpec downsample;  // layerL.0.downsample.0 / .1 in the first block of each layer
};

// torchvision's resnet50(): stem, then _make_layer(Bottleneck, planes, blocks, stride) four times.
struct Architecture {
  ConvSpec stem{"conv1", "bn1", 3, 64, 7, 2, 3};
  std::vector<BlockSpec> blocks;
  Architecture() {
    constexpr int64_t kPlanes[] = {64, 128, 256, 512}, kBlocks[] = {3, 4, 6, 3},
                      kStride[] = {1, 2, 2, 2}, kExpansion = 4;
    int64_t inplanes = 64;
    for (int l = 0; l < 4; ++l) {
      const int64_t planes = kPlanes[l], width = planes, out = planes * kExpansion;
      for (int64_t b = 0; b < kBlocks[l]; ++b) {
        const std::string p = fmt::format("layer{}.{}.", l + 1, b);
        const int64_t stride = b == 0 ? kStride[l] : 1;
        BlockSpec s{{p + "conv1", p + "bn1", inplanes, width, 1, 1, 0},
                    {p + "conv2", p + "bn2", width, width, 3, stride, 1},
                    {p + "conv3", p + "bn3", width, out, 1, 1, 0}};
        if (stride != 1 || inplanes != out) {
          s.has_downsample = true;
          s.downsample = {p + "downsample.0", p + "downsample.1", inplanes, out, 1, stride, 0};
        }
        blocks.push_back(s);
        inplanes = out;
      }
    }
  }
};

const Architecture& arch() {
  static const Architecture a;
  return a;
}

constexpr int64_t kFcIn = 2048, kFcOut = 1000;
constexpr const char* kBnTensors[] = {"weight", "bias", "running_mean", "running_var"};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

TensorData to_tensor_data(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  TensorData d;
  d.shape = c.sizes().vec();
  d.values.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return d;
}

// The tensor `name` of `sd` as a float32 CPU tensor of shape `want` (a view of sd's values).
// Throws Error(kBadWeights) naming the file and the key when it is missing or misshapen.
torch::Tensor take(const StateDict& sd, const std::string& name, const std::vector<int64_t>& want,
                   const std::string& source) {
  auto it = sd.find(name);
  if (it == sd.end()) {
    throw Error(
        ErrorKind::kBadWeights,
        fmt::format("{}: not a torchvision resnet50 state_dict: missing '{}'", source, name));
  }
  if (it->second.shape != want) {
    throw Error(ErrorKind::kBadWeights,
                fmt::format("{}: '{}' has shape {}, resnet50 needs {}", source, name,
                            shape_str(it->second.shape), shape_str(want)));
  }
  int64_t numel = 1;
  for (int64_t d : want) numel *= d;
  if (it->second.values.size() != static_cast<size_t>(numel)) {
    throw Error(ErrorKind::kBadWeights,
                fmt::format("{}: '{}' holds {} values for shape {}", source, name,
                            it->second.values.size(), shape_str(want)));
  }
  return torch::from_blob(const_cast<float*>(it->second.values.data()), want, torch::kFloat32);
}

// A convolution with its batch norm folded in: conv(x, w·a) + (β − μ·a), a = γ / √(σ² + ε),
// which is what eval-mode BatchNorm2d(conv(x, w)) computes up to float32 rounding.
struct FoldedConv {
  torch::Tensor weight, bias;
  int64_t stride = 1, padding = 0;

  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::conv2d(x, weight, bias, stride, padding);
  }
};

// The fold in double (one rounding per folded value, to float32), then the device, the dtype and
// channels-last (NHWC), which oneDNN's convolutions run fastest on.
FoldedConv fold(const StateDict& sd, const ConvSpec& c, const std::string& source,
                torch::Device device, torch::ScalarType dtype) {
  torch::Tensor w =
      take(sd, c.conv + ".weight", {c.out, c.in, c.kernel, c.kernel}, source).to(torch::kFloat64);
  torch::Tensor bn[4];
  for (int i = 0; i < 4; ++i)
    bn[i] = take(sd, c.bn + "." + kBnTensors[i], {c.out}, source).to(torch::kFloat64);
  torch::Tensor a = bn[0] / torch::sqrt(bn[3] + kResnet50BnEps);
  FoldedConv f;
  f.weight = (w * a.view({-1, 1, 1, 1}))
                 .to(torch::kFloat32)
                 .to(device, dtype)
                 .contiguous(torch::MemoryFormat::ChannelsLast);
  f.bias = (bn[1] - bn[2] * a).to(torch::kFloat32).to(device, dtype);
  f.stride = c.stride;
  f.padding = c.padding;
  return f;
}

struct FoldedBlock {
  FoldedConv c1, c2, c3, downsample;
  bool has_downsample = false;
};

torch::Device checked_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name != "cuda")
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--device must be cpu or cuda (got {})", name));
  if (!torch::cuda::is_available()) {
    throw Error(ErrorKind::kInvalidArgument,
                "--device cuda: CUDA not available in this LibTorch build (or no GPU found)");
  }
  // Full float32 convolutions: TF32 would move features ~1e-3 away from the CPU's and
  // torchvision's float32 results, and the cache must not depend on the device.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  return torch::Device(torch::kCUDA);
}

class Resnet50Net : public FeatureNet {
 public:
  Resnet50Net(const StateDict& sd, const std::string& source, torch::Device device,
              torch::ScalarType dtype)
      : device_(device), dtype_(dtype) {
    check_names(sd, source);
    torch::NoGradGuard no_grad;
    stem_ = fold(sd, arch().stem, source, device, dtype);
    for (const BlockSpec& s : arch().blocks) {
      FoldedBlock b;
      b.c1 = fold(sd, s.c1, source, device, dtype);
      b.c2 = fold(sd, s.c2, source, device, dtype);
      b.c3 = fold(sd, s.c3, source, device, dtype);
      b.has_downsample = s.has_downsample;
      if (s.has_downsample) b.downsample = fold(sd, s.downsample, source, device, dtype);
      blocks_.push_back(std::move(b));
    }
  }

  uint32_t dim() const override { return kResnet50Dim; }
  std::string device() const override { return device_.str(); }

  HostBuffer alloc_input(size_t floats) override {
    auto opts = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device_.is_cuda());
    auto t = std::make_shared<torch::Tensor>(torch::empty({static_cast<int64_t>(floats)}, opts));
    return HostBuffer{t->data_ptr<float>(), floats, t};
  }

  void forward(const float* in, int n, int size, float* out) override {
    if (n < 1 || size < 1) {
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("resnet50: need n >= 1 views of size >= 1 (got {} of {})", n, size));
    }
    c10::InferenceMode guard;
    // n × 3 × size × size, a view of the caller's buffer (no copy on the CPU path).
    torch::Tensor x = torch::from_blob(const_cast<float*>(in), {n, 3, size, size}, torch::kFloat32);
    // Pooled in float32 whatever the precision: the cache's values are float32.
    torch::Tensor f = run(x).to(torch::kFloat32);
    torch::Tensor y = torch::adaptive_avg_pool2d(f, {1, 1}).flatten(1).to(torch::kCPU).contiguous();
    std::memcpy(out, y.data_ptr<float>(), sizeof(float) * static_cast<size_t>(y.numel()));
  }

  // layer4's map is not the 512-channel map VGG16's compact codec and block-5 cut describe
  // (their readers expand it to C × 7 × 7 or feed it to VGG16's block 5), so neither applies.
  std::vector<int> prepool_shape(int) const override { throw no_vgg_layer(); }
  void forward_prepool(const float*, int, int, float*) override { throw no_vgg_layer(); }
  std::vector<int> pool4_shape(int) const override { throw no_vgg_layer(); }
  void forward_pool4(const float*, int, int, float*) override { throw no_vgg_layer(); }

  uint64_t free_device_bytes() const override { return device_free_bytes(device_); }

 private:
  // Before any tensor is converted: a VGG16 file (the other backbone's, the likely mistake) is
  // named as such, and any tensor resnet50 does not have (resnet101's extra blocks, another
  // model's) means another architecture: refused instead of silently ignoring part of the file.
  // The caller leaves out fc.* and num_batches_tracked, which the features do not use.
  static void check_names(const StateDict& sd, const std::string& source) {
    if (!sd.count("conv1.weight") && sd.count("features.0.weight")) {
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("{}: not a torchvision resnet50 state_dict: it holds features.* "
                              "tensors and no conv1.weight (a VGG16 file? it needs --backbone "
                              "vgg16)",
                              source));
    }
    static const std::set<std::string> expected = [] {
      std::set<std::string> names;
      auto add = [&](const ConvSpec& c) {
        names.insert(c.conv + ".weight");
        for (const char* t : kBnTensors) names.insert(c.bn + "." + t);
      };
      add(arch().stem);
      for (const BlockSpec& b : arch().blocks) {
        for (const ConvSpec* c : {&b.c1, &b.c2, &b.c3}) add(*c);
        if (b.has_downsample) add(b.downsample);
      }
      return names;
    }();
    for (const auto& [name, t] : sd) {
      if (!expected.count(name)) {
        throw Error(ErrorKind::kBadWeights,
                    fmt::format("{}: unexpected '{}' (not torchvision's resnet50: resnet101 or "
                                "another model?)",
                                source, name));
      }
    }
  }

  static Error no_vgg_layer() {
    return Error(ErrorKind::kInvalidArgument,
                 "--codec prepool-f32 / --cut pool4 are VGG16's; resnet50 stores raw-f32 "
                 "(2048 pooled floats per view, --cut pool5)");
  }

  // torchvision's ResNet._forward_impl up to layer4: n × 2048 × h × w in dtype_.
  torch::Tensor run(const torch::Tensor& in) const {
    // non_blocking: from pinned host memory the copy overlaps with work queued on the GPU.
    torch::Tensor x = in.to(device_, /*non_blocking=*/true)
                          .to(dtype_)
                          .contiguous(torch::MemoryFormat::ChannelsLast);
    x = torch::max_pool2d(stem_(x).relu_(), 3, 2, 1);
    for (const FoldedBlock& b : blocks_) {
      torch::Tensor y = b.c3(b.c2(b.c1(x).relu_()).relu_());
      // Bottleneck: out += identity (or downsample(x)); relu.
      y.add_(b.has_downsample ? b.downsample(x) : x).relu_();
      x = y;
    }
    return x;
  }

  torch::Device device_;
  torch::ScalarType dtype_;
  FoldedConv stem_;
  std::vector<FoldedBlock> blocks_;
};

}  // namespace

StateDict resnet50_random_state_dict(uint64_t seed) {
  torch::NoGradGuard no_grad;
  // Replays, draw for draw, `torch.manual_seed(seed); torchvision.models.resnet50()` on the CPU
  // generator. Construction: each Conv2d's reset_parameters (kaiming_uniform_ a=√5, no bias), in
  // the order _make_layer builds them (a layer's downsample convolution BEFORE its first block's
  // three), BatchNorm2d's fixed values, then fc = Linear(2048, 1000) (weight, then bias). Then
  // ResNet.__init__'s loop over self.modules(), in registration order (the downsample after
  // conv3): kaiming_normal_(fan_out, relu) on every Conv2d, batch norm weight 1 and bias 0.
  torch::manual_seed(seed);
  std::vector<std::pair<const ConvSpec*, torch::Tensor>> convs;  // registration order
  auto make = [&](const ConvSpec& c) {
    torch::Tensor w = torch::empty({c.out, c.in, c.kernel, c.kernel});
    torch::nn::init::kaiming_uniform_(w, std::sqrt(5.0));
    return w;
  };
  convs.emplace_back(&arch().stem, make(arch().stem));
  for (const BlockSpec& s : arch().blocks) {
    torch::Tensor down = s.has_downsample ? make(s.downsample) : torch::Tensor();
    convs.emplace_back(&s.c1, make(s.c1));
    convs.emplace_back(&s.c2, make(s.c2));
    convs.emplace_back(&s.c3, make(s.c3));
    if (s.has_downsample) convs.emplace_back(&s.downsample, down);
  }
  torch::Tensor fc_w = torch::empty({kFcOut, kFcIn});
  torch::nn::init::kaiming_uniform_(fc_w, std::sqrt(5.0));
  const double bound = 1.0 / std::sqrt(static_cast<double>(kFcIn));
  torch::Tensor fc_b = torch::empty({kFcOut}).uniform_(-bound, bound);

  StateDict sd;
  for (auto& [spec, w] : convs) {
    torch::nn::init::kaiming_normal_(w, 0.0, torch::kFanOut, torch::kReLU);
    sd[spec->conv + ".weight"] = to_tensor_data(w);
    const std::vector<float> ones(spec->out, 1.0f), zeros(spec->out, 0.0f);
    sd[spec->bn + ".weight"] = TensorData{{spec->out}, ones};
    sd[spec->bn + ".bias"] = TensorData{{spec->out}, zeros};
    sd[spec->bn + ".running_mean"] = TensorData{{spec->out}, zeros};
    sd[spec->bn + ".running_var"] = TensorData{{spec->out}, ones};
  }
  sd["fc.weight"] = to_tensor_data(fc_w);
  sd["fc.bias"] = to_tensor_data(fc_b);
  return sd;
}

std::unique_ptr<FeatureNet> make_resnet50_net(const NetOptions& options, WeightsIdentity* id) {
  // Explicit thread counts as for VGG16: Debian's LibTorch starts with one intra-op thread, and
  // the inter-op pool can only be sized before its first use (a second call keeps the first).
  torch::set_num_threads(options.threads);
  try {
    torch::set_num_interop_threads(1);  // the blocks run one after another: nothing in parallel
  } catch (const std::exception&) {
  }
  const torch::Device device = checked_device(options.device);
  const torch::ScalarType dtype = precision_dtype(options.precision, device);
  const std::string& spec = options.weights;
  if (spec.rfind("random:", 0) == 0) {
    const uint64_t seed = parse_random_seed(spec);
    StateDict sd = resnet50_random_state_dict(seed);
    sd.erase("fc.weight");
    sd.erase("fc.bias");
    auto net = std::make_unique<Resnet50Net>(sd, spec, device, dtype);
    if (id) *id = WeightsIdentity{fmt::format("random:{}", seed), "", true};
    return net;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(spec, ec)) {
    throw Error(
        ErrorKind::kInvalidArgument,
        fmt::format("--weights {}: no such file (give a .pth state_dict file or random:SEED)",
                    spec));
  }
  const std::string sha = sha256_file(spec);
  // fc.* (8 MB) is never loaded; num_batches_tracked counts training steps, which eval-mode batch
  // norm does not use (torchvision's legacy resnet50-0676ba61.pth predates it and lacks it).
  const StateDict sd = read_state_dict(spec, [](const std::string& name) {
    const std::string tail = ".num_batches_tracked";
    const bool counter = name.size() >= tail.size() &&
                         name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    return name.rfind("fc.", 0) != 0 && !counter;
  });
  auto net = std::make_unique<Resnet50Net>(sd, spec, device, dtype);
  if (id) *id = WeightsIdentity{std::filesystem::path(spec).filename().string(), sha, false};
  return net;
}

}  // namespace vggcache
