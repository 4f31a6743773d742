#include "head/feature_check.h"

#include <fmt/format.h>

#include "common/error.h"

namespace vggcache {

using nlohmann::json;

json feature_settings(const CacheMeta& m) {
  json f = {
      {"dim", m.dim},
      {"classes", m.classes},
      {"weights",
       {{"name", m.weights.name}, {"sha256", m.weights.sha256}, {"random", m.weights.random}}},
      {"size", m.preprocess.size},
      {"mean", m.preprocess.mean},
      {"std", m.preprocess.std},
      {"interpolation", m.preprocess.interpolation},
      {"fingerprint", m.feature_fingerprint()}};
  // Only when not fp32, so heads trained before precisions existed keep their settings.
  if (m.precision != "fp32") f["precision"] = m.precision;
  // Likewise only when not vgg16; predict builds the network this names (head/head_file.h).
  if (m.backbone != "vgg16") f["backbone"] = m.backbone;
  return f;
}

std::string feature_backbone(const json& f) {
  return f.value("backbone", std::string("vgg16"));
}

namespace {

std::string weights_label(const json& w) {
  std::string name = w.value("name", "");
  return w.value("random", false) ? name + " (random)" : name;
}

}  // namespace

std::string feature_difference(const json& a, const json& b) {
  // The network first: another backbone explains every other difference (dim, fingerprint).
  if (feature_backbone(a) != feature_backbone(b))
    return fmt::format("backbone: {} vs {}", feature_backbone(a), feature_backbone(b));
  if (a.at("dim") != b.at("dim"))
    return fmt::format("dim: {} vs {}", a["dim"].dump(), b["dim"].dump());
  if (a.at("classes") != b.at("classes"))
    return fmt::format("classes: {} vs {}", a["classes"].dump(), b["classes"].dump());
  // Pretrained weights are identified by content (a renamed file is the same weights); random
  // ones by their seed, which is in the name.
  const json &wa = a.at("weights"), &wb = b.at("weights");
  bool same_weights =
      wa.value("random", false) == wb.value("random", false) &&
      (wa.value("random", false) ? wa.value("name", "") == wb.value("name", "")
                                 : wa.value("sha256", "") == wb.value("sha256", ""));
  if (!same_weights) return fmt::format("weights: {} vs {}", weights_label(wa), weights_label(wb));
  if (a.value("precision", "fp32") != b.value("precision", "fp32"))
    return fmt::format("precision: {} vs {}", a.value("precision", "fp32"),
                       b.value("precision", "fp32"));
  for (const char* key : {"size", "mean", "std", "interpolation"}) {
    if (a.at(key) != b.at(key))
      return fmt::format("preprocess.{}: {} vs {}", key, a[key].dump(), b[key].dump());
  }
  if (a.at("fingerprint") != b.at("fingerprint"))
    return fmt::format("feature fingerprint: {} vs {}", a["fingerprint"].dump(),
                       b["fingerprint"].dump());
  return "";
}

void check_caches_pair(const CacheMeta& train, const std::string& train_dir, const CacheMeta& test,
                       const std::string& test_dir) {
  std::string diff = feature_difference(feature_settings(train), feature_settings(test));
  if (!diff.empty())
    throw Error(ErrorKind::kMismatch,
                fmt::format("test cache {} was built with other feature settings than training "
                            "cache {} ({}); extract both with the same weights, size and "
                            "normalisation",
                            test_dir, train_dir, diff));
}

}  // namespace vggcache
