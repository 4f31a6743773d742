// head.bin: a trained head with everything needed to use it safely later.
//
// Format, versions 1 and 2 (all integers little-endian):
//   offset 0   8 bytes   magic "VGGHEAD\0"
//   offset 8   u32       format version (1 or 2, head_format_version()); readers refuse
//                        versions they do not know
//   offset 12  u32       N = length of the JSON header in bytes
//   offset 16  N bytes   JSON header (UTF-8), then zero padding to a multiple of 16
//   then       tensors   float32, row-major, in the order and at the offsets listed in
//                        header["tensors"] (offsets relative to the start of this section)
//   last       u32       CRC-32C of every byte before it
// JSON header keys:
//   format: "vggcache-head", version: 1 or 2 (as at offset 8)
//   architecture: {dim, hidden, classes, outputs, activation: "relu", dropout,
//                  output: "sigmoid" | "softmax"}; a probe (version 2): hidden 0,
//                  activation "none", dropout 0
//   classes: [names in label order]
//   standardize: bool (tensors "mean" and "std", dim each, when true: x' = (x − mean) / std)
//   features: feature_settings() of the training cache (weights identity, size, normalisation,
//             interpolation, dim, fingerprint, backbone unless vgg16): what a cache must match
//   training: the settings and the selected epoch (informational)
//   tensors: [{name, shape, offset, floats}] for w1 (hidden × dim), b1, w2 (outputs × hidden),
//            b2, then mean, std; a probe: w1 (outputs × dim), b1 (outputs), then mean, std
//
// Version 2 differs from 1 only in what it may hold; save_head() writes 1 for every head version 1
// can hold, so builds that read only version 1 still read them. Version 2 may hold
//   a probe (architecture.hidden 0), and/or
//   a head fine-tuned with VGG16's block 5 from a pool4 cache:
//     architecture.input: "pool4" (the head's dim, 25088, is block 5's output; version 1 heads
//                         take pool5 features and have no such key)
//     features: feature_settings() of the pool4 training cache (its dim is the pool4 map's C·h·w)
//     tensors: features.24.weight, features.24.bias, features.26.*, features.28.* (torchvision's
//              state_dict names and shapes: 512 × 512 × 3 × 3 and 512; "layer" gives conv5_1..3)
#pragma once
#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "head/feature_source.h"
#include "head/head_model.h"

namespace vggcache {

// The newest format version this build reads and writes.
inline constexpr uint32_t kHeadFormatVersion = 2;

// VGG16's block 5 as fine-tuned with a head (finetune/block5.h holds the computation; this is
// only its tensors, so head_core does not depend on the fine-tuning code).
struct TunedBlock5 {
  std::array<std::vector<float>, 3> weight;  // conv5_{1,2,3}.weight: 512 × 512 × 3 × 3
  std::array<std::vector<float>, 3> bias;    // conv5_{1,2,3}.bias: 512
  bool empty() const { return weight[0].empty(); }
  // torchvision's state_dict name of layer i's weight / bias ("features.24.weight", ...).
  static std::string weight_name(int layer);
  static std::string bias_name(int layer);
};

struct HeadFile {
  HeadWeights weights;
  std::vector<std::string> classes;
  Standardizer standardizer;  // empty when not standardised
  double dropout = 0.0;
  nlohmann::json features;  // feature_settings() of the training cache
  nlohmann::json training;  // informational
  TunedBlock5 block5;       // empty: the head takes pool5 features (version 1)
};

// The version save_head() writes for `head`: the oldest that can hold it (1 for an ordinary
// head; 2 for a probe or a head with a tuned block 5).
uint32_t head_format_version(const HeadFile& head);

// Writes atomically (temporary file + rename), as version head_format_version(head). Throws
// Error(kIo) naming the file.
void save_head(const std::string& path, const HeadFile& head);

// Reads versions 1 and 2. Throws Error(kIo) when unreadable, kCorrupt (bad magic, CRC, sizes, a
// probe in a version 1 file), kSchema (another version).
HeadFile load_head(const std::string& path);

// Refuses a cache whose features the head was not trained on: Error(kMismatch) naming the setting.
void check_head_matches_cache(const HeadFile& head, const std::string& head_path,
                              const CacheMeta& cache, const std::string& cache_dir);

}  // namespace vggcache
