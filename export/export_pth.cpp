#include "export/export_pth.h"

#include <fmt/core.h>

#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "export/fold.h"
#include "extract/feature_net.h"
#include "head/feature_check.h"

namespace vggcache {

namespace {

// Indices of the 13 convolutions in torchvision's vgg16().features.
constexpr int kConvIndices[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};

TensorData tensor(std::vector<int64_t> shape, std::vector<float> values) {
  TensorData t;
  t.shape = std::move(shape);
  t.values = std::move(values);
  return t;
}

std::string output_module(const HeadFile& head) {
  return head.weights.shape.outputs() == 1 ? "Sigmoid()" : "Softmax(dim=1)";
}

}  // namespace

void check_exportable(const HeadFile& head, const std::string& head_path) {
  // Named before the width: a 2048-d ResNet-50 head is refused for its network, not its size.
  if (const std::string b = feature_backbone(head.features); b != "vgg16")
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("head {} was trained on {} features; export builds torchvision's "
                            "vgg16 around the head and takes VGG16 heads only",
                            head_path, b));
  if (head.weights.shape.dim != kVgg16PooledDim)
    throw Error(ErrorKind::kMismatch,
                fmt::format("head {} takes {} features; only heads on VGG16's pooled {} features "
                            "export to torchvision's vgg16 layout",
                            head_path, head.weights.shape.dim, kVgg16PooledDim));
  // Folding divides by std: a zero, negative or non-finite one (never written by train_head)
  // would put infinities into the model instead of failing here.
  const Standardizer& s = head.standardizer;
  for (size_t j = 0; j < s.std.size(); ++j)
    if (!(s.std[j] > 0) || !std::isfinite(s.std[j]) || !std::isfinite(s.mean[j]))
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("head {}: standardisation of feature {} is mean {}, std {}; "
                              "cannot fold it into the first layer",
                              head_path, j, s.mean[j], s.std[j]));
}

StateDict network_features(const HeadFile& head, StateDict features) {
  // load_vgg16_features() has checked every conv's presence and shape, and load_head() the tuned
  // tensors' sizes, so the tuned ones simply take the file's place.
  for (int i = 0; i < 3 && !head.block5.empty(); ++i) {
    features.at(TunedBlock5::weight_name(i)).values = head.block5.weight[i];
    features.at(TunedBlock5::bias_name(i)).values = head.block5.bias[i];
  }
  return features;
}

uint32_t trained_input_dim(const HeadFile& head, int size, uint32_t pooled_dim) {
  if (head.block5.empty()) return pooled_dim;
  const uint32_t side = static_cast<uint32_t>(vgg16_pooled_side(size, 4));
  return 512 * side * side;
}

OrderedStateDict torchvision_state_dict(const HeadFile& head, const StateDict& features) {
  OrderedStateDict sd;
  for (int i : kConvIndices) {
    for (const char* which : {"weight", "bias"}) {
      const std::string name = fmt::format("features.{}.{}", i, which);
      auto it = features.find(name);
      if (it == features.end())
        throw Error(ErrorKind::kBadWeights, fmt::format("VGG16 weights without '{}'", name));
      sd.emplace_back(name, it->second);
    }
  }
  const HeadWeights& w = head.weights;
  const int64_t dim = w.shape.dim, hidden = w.shape.hidden, outputs = w.shape.outputs();
  const int64_t rows = w.shape.rows1();
  FoldedFirstLayer first = fold_first_layer(head);
  sd.emplace_back("classifier.0.weight", tensor({rows, dim}, std::move(first.w)));
  sd.emplace_back("classifier.0.bias", tensor({rows}, std::move(first.b)));
  if (w.shape.probe()) return sd;  // Sequential(Linear, output): classifier.0 only
  sd.emplace_back("classifier.3.weight", tensor({outputs, hidden}, w.w2));
  sd.emplace_back("classifier.3.bias", tensor({outputs}, w.b2));
  return sd;
}

std::string python_loader(const HeadFile& head, const std::string& file) {
  const HeadShape& s = head.weights.shape;
  if (s.probe())
    return fmt::format(
        "import torch, torchvision\n"
        "from torch import nn\n"
        "m = torchvision.models.vgg16()\n"
        "m.classifier = nn.Sequential(nn.Linear({}, {}), nn.{})\n"
        "m.load_state_dict(torch.load(\"{}\", weights_only=True))\n"
        "m.eval()\n",
        s.dim, s.outputs(), output_module(head), file);
  return fmt::format(
      "import torch, torchvision\n"
      "from torch import nn\n"
      "m = torchvision.models.vgg16()\n"
      "m.classifier = nn.Sequential(nn.Linear({}, {}), nn.ReLU(inplace=True), nn.Dropout(p={}),\n"
      "                             nn.Linear({}, {}), nn.{})\n"
      "m.load_state_dict(torch.load(\"{}\", weights_only=True))\n"
      "m.eval()\n",
      s.dim, s.hidden, head.dropout, s.hidden, s.outputs(), output_module(head), file);
}

nlohmann::json export_sidecar(const HeadFile& head, const ExportInfo& info) {
  const HeadShape& s = head.weights.shape;
  const nlohmann::json& f = head.features;
  const std::string file = std::filesystem::path(info.model_path).filename().string();
  nlohmann::json j;
  j["format"] = "pth";
  j["file"] = file;
  j["sha256"] = info.model_sha256;
  j["layout"] =
      s.probe()
          ? fmt::format(
                "torch zip-format state_dict of torchvision.models.vgg16 whose classifier is "
                "Sequential(Linear({}, {}), {}) (a linear probe); keys features.N.weight/bias "
                "and classifier.0.weight/bias",
                s.dim, s.outputs(), output_module(head))
          : fmt::format(
                "torch zip-format state_dict of torchvision.models.vgg16 whose classifier is "
                "Sequential(Linear({}, {}), ReLU(inplace=True), Dropout(p={}), Linear({}, {}), "
                "{}); keys features.N.weight/bias and classifier.0/3.weight/bias",
                s.dim, s.hidden, head.dropout, s.hidden, s.outputs(), output_module(head));
  j["load"] = python_loader(head, file);
  j["classes"] = head.classes;
  j["probabilities"] = s.outputs() == 1 ? fmt::format("one sigmoid output: the probability of '{}'",
                                                      head.classes.at(1))
                                        : std::string("softmax over the classes in label order");
  j["head"] = {{"dim", s.dim},
               {"hidden", s.hidden},
               {"classes", s.classes},
               {"outputs", s.outputs()},
               {"activation", s.probe() ? "none" : "relu"},
               {"dropout", s.probe() ? 0.0 : head.dropout},
               {"output", s.outputs() == 1 ? "sigmoid" : "softmax"},
               {"standardize", !head.standardizer.empty()}};
  if (!head.block5.empty())
    j["block5"] =
        "fine-tuned with the head from pool4 maps: features.24/26/28 (conv5_1..conv5_3) are the "
        "head file's tuned tensors, the other features.N the weights file's (frozen)";
  if (!head.standardizer.empty())
    j["standardization"] =
        "the head's x' = (x - mean) / std is folded into classifier.0 (float64, rounded once): "
        "W' = W / std per input column, b' = b - W'·mean";
  j["weights"] = {{"name", info.weights.name},
                  {"sha256", info.weights.sha256},
                  {"random", info.weights.random}};
  j["head_file"] = {{"name", std::filesystem::path(info.head_path).filename().string()},
                    {"sha256", info.head_sha256}};
  j["preprocessing"] = {{"size", f.value("size", 0)},
                        {"resize", "Resize((size, size)) of the RGB image (PIL convert(\"RGB\"))"},
                        {"interpolation", f.value("interpolation", "")},
                        {"mean", f.value("mean", nlohmann::json::array())},
                        {"std", f.value("std", nlohmann::json::array())},
                        {"scale", "ToTensor(): values / 255, then Normalize(mean, std)"}};
  j["vggcache_version"] = VGGCACHE_VERSION;
  return j;
}

}  // namespace vggcache
