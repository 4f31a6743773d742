#include "head/head_file.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/crc32c.h"
#include "common/error.h"
#include "common/file_util.h"
#include "head/feature_check.h"

namespace vggcache {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'V', 'G', 'G', 'H', 'E', 'A', 'D', '\0'};

void put_u32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint32_t get_u32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(s[off + i])) << (8 * i);
  return v;
}

struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const std::vector<float>* data;
};

constexpr int kBlock5Channels = 512;
constexpr size_t kBlock5WeightFloats = static_cast<size_t>(kBlock5Channels) * kBlock5Channels * 9;

}  // namespace

std::string TunedBlock5::weight_name(int layer) {
  return "features." + std::to_string(24 + 2 * layer) + ".weight";
}
std::string TunedBlock5::bias_name(int layer) {
  return "features." + std::to_string(24 + 2 * layer) + ".bias";
}

uint32_t head_format_version(const HeadFile& head) {
  return head.weights.shape.probe() || !head.block5.empty() ? 2 : 1;
}

void save_head(const std::string& path, const HeadFile& head) {
  const HeadWeights& w = head.weights;
  const HeadShape& s = w.shape;
  const uint32_t version = head_format_version(head);
  std::vector<TensorRef> tensors = {{"w1", {s.rows1(), s.dim}, &w.w1}, {"b1", {s.rows1()}, &w.b1}};
  if (!s.probe()) {
    tensors.push_back({"w2", {s.outputs(), s.hidden}, &w.w2});
    tensors.push_back({"b2", {s.outputs()}, &w.b2});
  }
  if (!head.standardizer.empty()) {
    tensors.push_back({"mean", {s.dim}, &head.standardizer.mean});
    tensors.push_back({"std", {s.dim}, &head.standardizer.std});
  }
  const bool tuned = !head.block5.empty();
  const size_t first_block5 = tensors.size();
  if (tuned)
    for (int i = 0; i < 3; ++i) {
      tensors.push_back({TunedBlock5::weight_name(i),
                         {kBlock5Channels, kBlock5Channels, 3, 3},
                         &head.block5.weight[i]});
      tensors.push_back({TunedBlock5::bias_name(i), {kBlock5Channels}, &head.block5.bias[i]});
    }
  json table = json::array();
  uint64_t offset = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    table.push_back(
        {{"name", t.name}, {"shape", t.shape}, {"offset", offset}, {"floats", t.data->size()}});
    // The names people know the layers by, beside torchvision's keys.
    if (k >= first_block5)
      table.back()["layer"] = fmt::format("conv5_{}", (k - first_block5) / 2 + 1);
    offset += t.data->size() * sizeof(float);
  }
  json header = {{"format", "vggcache-head"},
                 {"version", version},
                 {"architecture",
                  {{"dim", s.dim},
                   {"hidden", s.hidden},
                   {"classes", s.classes},
                   {"outputs", s.outputs()},
                   {"activation", s.probe() ? "none" : "relu"},
                   {"dropout", s.probe() ? 0.0 : head.dropout},
                   {"output", s.outputs() == 1 ? "sigmoid" : "softmax"}}},
                 {"classes", head.classes},
                 {"standardize", !head.standardizer.empty()},
                 {"features", head.features},
                 {"training", head.training},
                 {"tensors", table}};
  if (tuned) header["architecture"]["input"] = "pool4";
  std::string text = header.dump();
  std::string buf(kMagic, sizeof kMagic);
  put_u32(&buf, version);
  put_u32(&buf, static_cast<uint32_t>(text.size()));
  buf += text;
  buf.resize((buf.size() + 15) / 16 * 16, '\0');
  // The tensors are written from where they are (W1 alone is 25 MB at hidden 256).
  std::vector<std::string_view> pieces = {buf};
  uint32_t crc = crc32c(buf.data(), buf.size());
  for (const auto& t : tensors) {
    pieces.emplace_back(reinterpret_cast<const char*>(t.data->data()),
                        t.data->size() * sizeof(float));
    crc = crc32c(pieces.back().data(), pieces.back().size(), crc);
  }
  std::string tail;
  put_u32(&tail, crc);
  pieces.push_back(tail);
  write_file_atomically(path, pieces);
}

HeadFile load_head(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, "cannot read head file " + path);
  std::string buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto corrupt = [&](const std::string& why) {
    return Error(ErrorKind::kCorrupt, fmt::format("head file {}: {}", path, why));
  };
  if (buf.size() < 20 || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0)
    throw corrupt("not a vggcache head (bad magic)");
  uint32_t version = get_u32(buf, 8);
  if (version < 1 || version > kHeadFormatVersion)
    throw Error(ErrorKind::kSchema, fmt::format("head file {}: format version {} (this build reads "
                                                "versions 1 to {})",
                                                path, version, kHeadFormatVersion));
  if (get_u32(buf, buf.size() - 4) != crc32c(buf.data(), buf.size() - 4))
    throw corrupt("checksum mismatch (truncated or damaged)");
  uint32_t n = get_u32(buf, 12);
  if (16ull + n > buf.size() - 4) throw corrupt("header length past the end");
  json header;
  try {
    header = json::parse(buf.substr(16, n));
  } catch (const json::exception& e) {
    throw corrupt(std::string("bad JSON header: ") + e.what());
  }
  const size_t data_start = (16 + static_cast<size_t>(n) + 15) / 16 * 16;
  const size_t data_end = buf.size() - 4;
  HeadFile h;
  try {
    const json& a = header.at("architecture");
    h.weights.shape = {a.at("dim").get<int>(), a.at("hidden").get<int>(),
                       a.at("classes").get<int>()};
    h.dropout = a.value("dropout", 0.0);
    h.classes = header.at("classes").get<std::vector<std::string>>();
    h.features = header.at("features");
    h.training = header.value("training", json::object());
    for (const json& t : header.at("tensors")) {
      std::string name = t.at("name").get<std::string>();
      uint64_t off = t.at("offset").get<uint64_t>(), cnt = t.at("floats").get<uint64_t>();
      if (data_start + off + cnt * sizeof(float) > data_end)
        throw corrupt("tensor " + name + " past the end");
      std::vector<float> v(cnt);
      std::memcpy(v.data(), buf.data() + data_start + off, cnt * sizeof(float));
      if (name == "w1")
        h.weights.w1 = std::move(v);
      else if (name == "b1")
        h.weights.b1 = std::move(v);
      else if (name == "w2")
        h.weights.w2 = std::move(v);
      else if (name == "b2")
        h.weights.b2 = std::move(v);
      else if (name == "mean")
        h.standardizer.mean = std::move(v);
      else if (name == "std")
        h.standardizer.std = std::move(v);
      else
        for (int i = 0; i < 3; ++i) {
          if (name == TunedBlock5::weight_name(i)) h.block5.weight[i] = std::move(v);
          if (name == TunedBlock5::bias_name(i)) h.block5.bias[i] = std::move(v);
        }
    }
    // A head that takes block 5's output needs all six of its tensors.
    if (a.value("input", "pool5") == "pool4") {
      for (int i = 0; i < 3; ++i)
        if (h.block5.weight[i].size() != kBlock5WeightFloats ||
            h.block5.bias[i].size() != static_cast<size_t>(kBlock5Channels))
          throw corrupt(
              fmt::format("architecture.input is pool4 but {} / {} are missing or "
                          "mis-sized",
                          TunedBlock5::weight_name(i), TunedBlock5::bias_name(i)));
    } else if (!h.block5.empty()) {
      throw corrupt("block 5 tensors in a head whose architecture.input is not pool4");
    }
  } catch (const json::exception& e) {
    throw corrupt(std::string("bad header: ") + e.what());
  }
  const HeadShape& s = h.weights.shape;
  if (s.probe() && version < 2) throw corrupt("hidden 0 (a probe) in a version 1 file");
  if (!h.block5.empty() && version < 2) throw corrupt("a tuned block 5 in a version 1 file");
  const size_t dim = static_cast<size_t>(s.dim), rows = static_cast<size_t>(s.rows1());
  const size_t out2 = s.probe() ? 0 : static_cast<size_t>(s.outputs());  // w2, b2 rows
  if (s.dim < 1 || s.hidden < 0 || s.classes < 2 || h.weights.w1.size() != rows * dim ||
      h.weights.b1.size() != rows || h.weights.w2.size() != out2 * static_cast<size_t>(s.hidden) ||
      h.weights.b2.size() != out2 || h.classes.size() != static_cast<size_t>(s.classes) ||
      h.standardizer.mean.size() != h.standardizer.std.size() ||
      (!h.standardizer.empty() && h.standardizer.mean.size() != dim))
    throw corrupt("tensor sizes do not match the architecture");
  return h;
}

void check_head_matches_cache(const HeadFile& head, const std::string& head_path,
                              const CacheMeta& cache, const std::string& cache_dir) {
  std::string diff = feature_difference(head.features, feature_settings(cache));
  if (!diff.empty())
    throw Error(ErrorKind::kMismatch,
                fmt::format("cache {} was built with other feature settings than head {} was "
                            "trained on ({}: head vs cache)",
                            cache_dir, head_path, diff));
}

}  // namespace vggcache
