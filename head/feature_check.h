// The feature settings a head depends on, and the checks that refuse mismatched inputs: a test
// cache built with other settings than the training cache, or (at predict time) a cache built
// with other settings than a trained head. Augmentation settings (crops, scale, eval view) are
// deliberately NOT compared: a training cache of random crops and an eval-view test cache belong
// together.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "common/cache_meta.h"

namespace vggcache {

// {dim, classes, weights{name, sha256, random}, size, mean, std, interpolation, fingerprint},
// and precision when it is not fp32, backbone when it is not vgg16.
nlohmann::json feature_settings(const CacheMeta& m);

// The backbone a feature_settings object names: "vgg16" when it has none (heads and caches from
// before backbones existed).
std::string feature_backbone(const nlohmann::json& features);

// "" when a and b (feature_settings objects) agree, else the first differing setting, e.g.
// "preprocess.size: 64 vs 100" or "weights: random:1 vs vgg16-397923af.pth".
std::string feature_difference(const nlohmann::json& a, const nlohmann::json& b);

// Throws Error(kMismatch) naming both caches and the differing setting.
void check_caches_pair(const CacheMeta& train, const std::string& train_dir, const CacheMeta& test,
                       const std::string& test_dir);

}  // namespace vggcache
