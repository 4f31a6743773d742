// Cache metadata: everything needed to trace a vector back to its file and to know how it was made.
// Stored as JSON under the reserved "meta" key of the cache's "meta" sub-database.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vggcache {

// 3: as 2, the image list in binary (common/image_list.h); 2: records stored in runs that fill
// whole LMDB pages (common/cache.h), the image list as JSON under its own key; 1: one record per
// value, the image list inside the metadata. All read; new caches are written as kSchemaVersion.
inline constexpr int kSchemaVersion = 3;
inline constexpr int kOldestSchemaVersion = 1;

// How record payloads are encoded. Readers reject codecs they do not know.
enum class Codec : uint16_t {
  kRawF32 = 1,      // payload = dim float32 values, little-endian
  kPrepoolF32 = 2,  // payload = pre-pool map C×h×w float32; readers expand it to C×7×7 = dim
                    // exactly as adaptive_avg_pool2d does (common/prepool.h)
  kRawF16 = 3,      // as raw-f32, each value an IEEE half (common/half.h), little-endian: lossy
  kPrepoolF16 = 4,  // as prepool-f32, each map value a half; readers expand the halves to
                    // float32, then the map to dim: lossy
};
const char* codec_name(Codec c);
Codec codec_from_name(const std::string& name);  // throws Error(kSchema) on unknown names
bool codec_is_prepool(Codec c);                  // the payload is the pre-pool map
bool codec_is_half(Codec c);                     // values stored as halves (lossy)
size_t codec_value_bytes(Codec c);               // bytes per stored value: 4 or 2
// What `featcache info` says of a codec's exactness, e.g. "exact" or "lossy: ...".
std::string codec_precision_note(Codec c);

struct ImageEntry {
  std::string path;    // relative to the split directory, '/'-separated
  uint64_t bytes = 0;  // file size
  std::string sha256;  // hex of the file content ("" when the file could not be read)
  int32_t label = 0;   // index into CacheMeta::classes
};

struct SkippedEntry {
  uint32_t image = 0;  // index into CacheMeta::images
  std::string path;
  std::string reason;
};

// Settings that make two caches (or a cache and a re-run) comparable. Every field takes part in
// the "same settings" check on resume.
struct Preprocess {
  int size = 64;                            // output side in pixels
  bool eval = false;                        // true: one Resize((size,size)) view per image
  int crops = 10;                           // views per image (1 when eval)
  double scale_min = 0.5, scale_max = 1.0;  // RandomResizedCrop area scale
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // RandomResizedCrop aspect range
  bool flip = false;                                    // random horizontal flip, p = 0.5
  std::vector<double> mean{0.485, 0.456, 0.406};        // ImageNet normalisation
  std::vector<double> std{0.229, 0.224, 0.225};
  std::string interpolation = "bilinear-antialias";  // PIL-compatible
  uint64_t seed = 1;                                 // crop k of image i depends on (seed, i, k)
};

struct WeightsIdentity {
  std::string name;     // file name, or "random:SEED"
  std::string sha256;   // hex SHA-256 of the file ("" for random)
  bool random = false;  // true: random He init, NOT pretrained
};

// The slice of the image list a shard cache holds (`extract --shard INDEX/COUNT`): images
// [first, end) of the full, global list, so image indices (keys, crops) equal a one-machine run's.
struct ShardInfo {
  uint32_t index = 0;
  uint32_t count = 0;  // 0: not a shard (the cache holds every image)
  uint32_t first = 0;
  uint32_t end = 0;
  bool present() const { return count > 0; }
  bool operator==(const ShardInfo& o) const {
    return index == o.index && count == o.count && first == o.first && end == o.end;
  }
};

struct CacheMeta {
  int schema_version = kSchemaVersion;
  std::string tool_version;
  Codec codec = Codec::kRawF32;
  uint32_t dim = 25088;              // logical feature dimension (after decoding)
  uint32_t payload_floats = 25088;   // values stored per record (== dim for raw codecs;
                                     //   halves for the f16 codecs)
  std::vector<int> prepool_shape;    // {C, h, w} for the prepool codecs, empty otherwise
  std::string cut = "pool5";         // the VGG16 layer records come from: "pool5" (the pooled
                                     //   vector, or its pre-pool map), or "pool4" (the map after
                                     //   features[23], block 5's input, raw-f32: for fine-tuning)
  std::vector<int> cut_shape;        // {C, h, w} of a pool4 record (C·h·w = dim); empty for pool5
  std::string backbone = "vgg16";    // the network (extract --backbone): "vgg16", "resnet50" or
                                     //   "torchscript" (weights then name the module file); its
                                     //   input size and normalisation are preprocess's size,
                                     //   mean and std. Caches from before backbones are vgg16.
  std::string precision = "fp32";    // dtype of the forward pass (extract --precision): "fp32",
                                     //   "bf16" or "fp16"; records are float32 whatever it is
  std::vector<std::string> classes;  // label order (sorted folder names)
  std::string source_dir;            // split directory as given (informational)
  std::vector<ImageEntry> images;
  WeightsIdentity weights;
  Preprocess preprocess;
  std::vector<SkippedEntry> skipped;
  bool complete = false;    // written last, in the final transaction
  uint64_t records = 0;     // records committed so far
  uint32_t next_image = 0;  // images [0, next_image) are fully committed (resume point)
  nlohmann::json extra;     // free-form provenance (host, device, timings)
  ShardInfo shard;          // a shard holds images [shard.first, shard.end) only;
                            // `images` still lists all of them (the shared settings)

  // The images this cache is meant to hold: [0, images.size()), or the shard's slice.
  uint32_t first_image() const { return shard.present() ? shard.first : 0; }
  uint32_t end_image() const {
    return shard.present() ? shard.end : static_cast<uint32_t>(images.size());
  }

  // with_images = false leaves "images" out (schemas 2 and 3 store the list under its own key).
  nlohmann::json to_json(bool with_images = true) const;
  // throws Error(kSchema/kCorrupt). `images`, when given, is the image list (moved from), read
  // from its own key; `j` then needs no "images".
  static CacheMeta from_json(const nlohmann::json& j, std::vector<ImageEntry>* images = nullptr);

  // The settings that must agree for a resume / train-test pairing. Returns "" when equal,
  // else the name of the first differing setting (e.g. "preprocess.size: 64 vs 100"). The shard
  // slice counts as a setting: a shard never resumes as another shard or as a whole cache.
  static std::string first_difference(const CacheMeta& a, const CacheMeta& b);
  // Fingerprint of the feature settings (weights identity, size, normalisation, interpolation,
  // codec-independent dim, the cut when it is not pool5, the precision when it is not fp32 and
  // the backbone when it is not vgg16): what a trained head must match at predict time.
  // vgg16/pool5/fp32 caches keep the fingerprint they had before those settings existed.
  std::string feature_fingerprint() const;
  // Identity of the cache's content and settings (sha256 of to_json() without the extra,
  // tool_version and source_dir fields, 16 hex digits): what a sweep records for each cache,
  // distinct from the feature fingerprint that train and test share.
  std::string fingerprint() const;
};

}  // namespace vggcache
