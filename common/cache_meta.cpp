#include "common/cache_meta.h"

#include <fmt/format.h>

#include "common/error.h"
#include "common/sha256.h"

namespace vggcache {

using nlohmann::json;

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::kRawF32:
      return "raw-f32";
    case Codec::kPrepoolF32:
      return "prepool-f32";
    case Codec::kRawF16:
      return "raw-f16";
    case Codec::kPrepoolF16:
      return "prepool-f16";
  }
  return "unknown";
}

Codec codec_from_name(const std::string& name) {
  if (name == "raw-f32") return Codec::kRawF32;
  if (name == "prepool-f32") return Codec::kPrepoolF32;
  if (name == "raw-f16") return Codec::kRawF16;
  if (name == "prepool-f16") return Codec::kPrepoolF16;
  throw Error(ErrorKind::kSchema, "unknown codec '" + name + "'");
}

bool codec_is_prepool(Codec c) {
  return c == Codec::kPrepoolF32 || c == Codec::kPrepoolF16;
}
bool codec_is_half(Codec c) {
  return c == Codec::kRawF16 || c == Codec::kPrepoolF16;
}
size_t codec_value_bytes(Codec c) {
  return codec_is_half(c) ? 2 : 4;
}

std::string codec_precision_note(Codec c) {
  // Round to nearest even keeps a normal half within half an ulp: 2^-11 relative. Below 2^-14
  // halves are subnormal, spaced 2^-24 apart; beyond ±65504 the writer saturates (counted).
  if (codec_is_half(c))
    return "lossy: max relative error 2^-11 per value (absolute 2^-25 below 2^-14; values beyond "
           "±65504 saturated)";
  return "exact float32";
}

namespace {

bool valid_utf8(const std::string& s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    for (int k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += len;
  }
  return true;
}

// File names are bytes on Linux; JSON strings must be UTF-8. Names that are not valid UTF-8 keep
// a readable "path" (invalid bytes replaced) plus the exact bytes in "path_hex".
void put_path(json& j, const std::string& path) {
  if (valid_utf8(path)) {
    j["path"] = path;
    return;
  }
  std::string readable, hex;
  for (unsigned char c : path) {
    readable += c < 0x80 ? static_cast<char>(c) : '?';
    hex += fmt::format("{:02x}", c);
  }
  j["path"] = readable;
  j["path_hex"] = hex;
}

std::string get_path(const json& j) {
  if (!j.contains("path_hex")) return j.at("path").get<std::string>();
  std::string hex = j.at("path_hex").get<std::string>(), out;
  if (hex.size() % 2) throw Error(ErrorKind::kCorrupt, "malformed path_hex in cache metadata");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw Error(ErrorKind::kCorrupt, "malformed path_hex in cache metadata");
  };
  for (size_t i = 0; i < hex.size(); i += 2)
    out += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
  return out;
}

json preprocess_json(const Preprocess& p) {
  return {{"size", p.size},
          {"view", p.eval ? "eval" : "train"},
          {"crops", p.crops},
          {"scale", {p.scale_min, p.scale_max}},
          {"ratio", {p.ratio_min, p.ratio_max}},
          {"flip", p.flip},
          {"mean", p.mean},
          {"std", p.std},
          {"interpolation", p.interpolation},
          {"seed", p.seed}};
}

Preprocess preprocess_from(const json& j) {
  Preprocess p;
  p.size = j.at("size").get<int>();
  p.eval = j.at("view").get<std::string>() == "eval";
  p.crops = j.at("crops").get<int>();
  p.scale_min = j.at("scale").at(0).get<double>();
  p.scale_max = j.at("scale").at(1).get<double>();
  p.ratio_min = j.at("ratio").at(0).get<double>();
  p.ratio_max = j.at("ratio").at(1).get<double>();
  p.flip = j.at("flip").get<bool>();
  p.mean = j.at("mean").get<std::vector<double>>();
  p.std = j.at("std").get<std::vector<double>>();
  p.interpolation = j.at("interpolation").get<std::string>();
  p.seed = j.at("seed").get<uint64_t>();
  return p;
}

json shard_json(const ShardInfo& s) {
  return {{"index", s.index}, {"count", s.count}, {"first", s.first}, {"end", s.end}};
}

std::string shard_text(const ShardInfo& s) {
  if (!s.present()) return "none (whole image list)";
  return fmt::format("{}/{} (images [{}, {}))", s.index, s.count, s.first, s.end);
}

}  // namespace

json CacheMeta::to_json(bool with_images) const {
  json imgs = json::array();
  for (size_t i = 0; with_images && i < images.size(); ++i) {
    const ImageEntry& e = images[i];
    json o = {{"bytes", e.bytes}, {"sha256", e.sha256}, {"label", e.label}};
    put_path(o, e.path);
    imgs.push_back(std::move(o));
  }
  json sk = json::array();
  for (const auto& s : skipped) {
    json o = {{"image", s.image}, {"reason", s.reason}};
    put_path(o, s.path);
    sk.push_back(std::move(o));
  }
  json j = {
      {"schema_version", schema_version},
      {"tool_version", tool_version},
      {"codec", codec_name(codec)},
      {"dim", dim},
      {"payload_floats", payload_floats},
      {"prepool_shape", prepool_shape},
      {"classes", classes},
      {"source_dir", source_dir},
      {"images", imgs},
      {"weights", {{"name", weights.name}, {"sha256", weights.sha256}, {"random", weights.random}}},
      {"preprocess", preprocess_json(preprocess)},
      {"skipped", sk},
      {"complete", complete},
      {"records", records},
      {"next_image", next_image},
      {"extra", extra.is_null() ? json::object() : extra}};
  // Only shards carry the field, so whole caches keep exactly the JSON they always had.
  if (shard.present()) j["shard"] = shard_json(shard);
  // Likewise only other cuts than pool5: pool5 caches keep their JSON and fingerprints.
  if (cut != "pool5") {
    j["cut"] = cut;
    j["cut_shape"] = cut_shape;
  }
  if (precision != "fp32") j["precision"] = precision;
  if (backbone != "vgg16") j["backbone"] = backbone;
  if (!with_images) j.erase("images");
  return j;
}

CacheMeta CacheMeta::from_json(const json& j, std::vector<ImageEntry>* images) {
  CacheMeta m;
  try {
    m.schema_version = j.at("schema_version").get<int>();
    if (m.schema_version < kOldestSchemaVersion || m.schema_version > kSchemaVersion)
      throw Error(ErrorKind::kSchema,
                  fmt::format("schema version {} is not supported (this build "
                              "reads versions {} to {})",
                              m.schema_version, kOldestSchemaVersion, kSchemaVersion));
    m.tool_version = j.at("tool_version").get<std::string>();
    m.codec = codec_from_name(j.at("codec").get<std::string>());
    m.dim = j.at("dim").get<uint32_t>();
    m.payload_floats = j.at("payload_floats").get<uint32_t>();
    m.prepool_shape = j.at("prepool_shape").get<std::vector<int>>();
    m.classes = j.at("classes").get<std::vector<std::string>>();
    m.source_dir = j.at("source_dir").get<std::string>();
    if (images) {
      m.images = std::move(*images);
    } else {
      for (const auto& e : j.at("images"))
        m.images.push_back({get_path(e), e.at("bytes").get<uint64_t>(),
                            e.at("sha256").get<std::string>(), e.at("label").get<int32_t>()});
    }
    const auto& w = j.at("weights");
    m.weights = {w.at("name").get<std::string>(), w.at("sha256").get<std::string>(),
                 w.at("random").get<bool>()};
    m.preprocess = preprocess_from(j.at("preprocess"));
    for (const auto& s : j.at("skipped"))
      m.skipped.push_back(
          {s.at("image").get<uint32_t>(), get_path(s), s.at("reason").get<std::string>()});
    m.complete = j.at("complete").get<bool>();
    m.records = j.at("records").get<uint64_t>();
    m.next_image = j.at("next_image").get<uint32_t>();
    m.extra = j.value("extra", json::object());
    m.cut = j.value("cut", std::string("pool5"));
    if (j.contains("cut_shape")) m.cut_shape = j.at("cut_shape").get<std::vector<int>>();
    m.precision = j.value("precision", std::string("fp32"));
    m.backbone = j.value("backbone", std::string("vgg16"));
    if (j.contains("shard")) {
      const auto& s = j.at("shard");
      m.shard = {s.at("index").get<uint32_t>(), s.at("count").get<uint32_t>(),
                 s.at("first").get<uint32_t>(), s.at("end").get<uint32_t>()};
    }
  } catch (const json::exception& e) {
    throw Error(ErrorKind::kCorrupt, std::string("malformed cache metadata: ") + e.what());
  }
  if (!codec_is_prepool(m.codec) && m.payload_floats != m.dim)
    throw Error(
        ErrorKind::kCorrupt,
        fmt::format("malformed cache metadata: {} payload_floats != dim", codec_name(m.codec)));
  if (codec_is_half(m.codec) && m.schema_version < 2)
    throw Error(ErrorKind::kCorrupt, "malformed cache metadata: f16 codecs need schema version 2");
  if (codec_is_prepool(m.codec)) {
    const auto& s = m.prepool_shape;
    if (s.size() != 3 || s[0] <= 0 || s[1] <= 0 || s[2] <= 0 ||
        static_cast<uint64_t>(s[0]) * s[1] * s[2] != m.payload_floats ||
        static_cast<uint64_t>(s[0]) * 49 != m.dim)
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("malformed cache metadata: {} needs prepool_shape {{C, h, w}} with "
                              "C*h*w == payload_floats and C*49 == dim",
                              codec_name(m.codec)));
  }
  if (m.cut != "pool5" && m.cut != "pool4")
    throw Error(ErrorKind::kSchema, fmt::format("cache cut '{}' is not supported (this build "
                                                "reads pool5 and pool4)",
                                                m.cut));
  if (m.precision != "fp32" && m.precision != "bf16" && m.precision != "fp16")
    throw Error(ErrorKind::kSchema, fmt::format("cache precision '{}' is not supported (this build "
                                                "reads fp32, bf16 and fp16)",
                                                m.precision));
  if (m.backbone != "vgg16" && m.backbone != "resnet50" && m.backbone != "torchscript")
    throw Error(ErrorKind::kSchema, fmt::format("cache backbone '{}' is not supported (this build "
                                                "reads vgg16, resnet50 and torchscript)",
                                                m.backbone));
  if (m.backbone != "vgg16" && (m.codec != Codec::kRawF32 || m.cut != "pool5"))
    throw Error(ErrorKind::kCorrupt,
                fmt::format("malformed cache metadata: a {} cache needs codec raw-f32 and cut "
                            "pool5 (the pre-pool map and pool4 are VGG16's)",
                            m.backbone));
  if (m.cut == "pool4") {
    const auto& s = m.cut_shape;
    if (m.codec != Codec::kRawF32 || s.size() != 3 || s[0] <= 0 || s[1] <= 0 || s[2] <= 0 ||
        static_cast<uint64_t>(s[0]) * s[1] * s[2] != m.dim)
      throw Error(ErrorKind::kCorrupt,
                  "malformed cache metadata: a pool4 cache needs codec raw-f32 and cut_shape "
                  "{C, h, w} with C*h*w == dim");
  }
  if (j.contains("shard") && (m.shard.count == 0 || m.shard.index >= m.shard.count ||
                              m.shard.first > m.shard.end || m.shard.end > m.images.size()))
    throw Error(ErrorKind::kCorrupt,
                "malformed cache metadata: shard needs index < count and first <= end <= images");
  for (const auto& e : m.images)
    if (e.label < 0 || static_cast<size_t>(e.label) >= m.classes.size())
      throw Error(ErrorKind::kCorrupt,
                  "malformed cache metadata: label out of range for " + e.path);
  return m;
}

std::string CacheMeta::first_difference(const CacheMeta& a, const CacheMeta& b) {
  json ja = a.to_json(false), jb = b.to_json(false);  // the images are compared below
  // Settings, then data identity. Progress fields (records, next_image, skipped, complete, extra,
  // tool_version) are state, not settings. The backbone and the cut first: they decide what every
  // other one means.
  if (a.backbone != b.backbone) return fmt::format("backbone: {} vs {}", a.backbone, b.backbone);
  if (a.cut != b.cut) return fmt::format("cut: {} vs {}", a.cut, b.cut);
  if (a.precision != b.precision)
    return fmt::format("precision: {} vs {}", a.precision, b.precision);
  for (const char* key : {"codec", "dim", "payload_floats", "prepool_shape", "classes"}) {
    if (ja[key] != jb[key]) return fmt::format("{}: {} vs {}", key, ja[key].dump(), jb[key].dump());
  }
  for (const char* key : {"name", "sha256", "random"}) {
    if (ja["weights"][key] != jb["weights"][key])
      return fmt::format("weights.{}: {} vs {}", key, ja["weights"][key].dump(),
                         jb["weights"][key].dump());
  }
  // Most telling first: an eval cache against a train cache is a "view" difference, not "crops".
  for (const char* key : {"view", "size", "crops", "scale", "ratio", "flip", "seed", "mean", "std",
                          "interpolation"}) {
    const auto &x = ja["preprocess"][key], &y = jb["preprocess"][key];
    if (x != y) return fmt::format("preprocess.{}: {} vs {}", key, x.dump(), y.dump());
  }
  if (a.images.size() != b.images.size())
    return fmt::format("images: {} vs {} files", a.images.size(), b.images.size());
  for (size_t i = 0; i < a.images.size(); ++i) {
    const auto &x = a.images[i], &y = b.images[i];
    if (x.path != y.path || x.sha256 != y.sha256 || x.label != y.label || x.bytes != y.bytes)
      return fmt::format("images[{}]: {} ({}) vs {} ({})", i, x.path, x.sha256.substr(0, 12),
                         y.path, y.sha256.substr(0, 12));
  }
  if (!(a.shard == b.shard))
    return fmt::format("shard: {} vs {}", shard_text(a.shard), shard_text(b.shard));
  return "";
}

std::string CacheMeta::feature_fingerprint() const {
  json p = preprocess_json(preprocess);
  json f = {{"weights", weights.random ? weights.name : weights.sha256},
            {"dim", dim},
            {"size", p["size"]},
            {"mean", p["mean"]},
            {"std", p["std"]},
            {"interpolation", p["interpolation"]}};
  if (cut != "pool5") f["cut"] = cut;
  if (precision != "fp32") f["precision"] = precision;
  if (backbone != "vgg16") f["backbone"] = backbone;
  std::string s = f.dump();
  return sha256_hex(s.data(), s.size()).substr(0, 16);
}

std::string CacheMeta::fingerprint() const {
  json j = to_json();
  for (const char* key : {"extra", "tool_version", "source_dir"}) j.erase(key);
  std::string s = j.dump();
  return sha256_hex(s.data(), s.size()).substr(0, 16);
}

}  // namespace vggcache
