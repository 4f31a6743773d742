// write_state_dict: its files read back through the project's own reader (names, shapes, values
// bit for bit), its zip layout (CRC-32s, 64-byte aligned data, checked by Python's zipfile) and
// Debian's torch loading them with torch.load(F, weights_only=True), which refuses any global
// outside its allowlist.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "common/error.h"
#include "common/sha256.h"
#include "test_util.h"
#include "weights/pth_reader.h"
#include "weights/pth_writer.h"

namespace vggcache {
namespace {

using testing::python;
using testing::run_command;
using testing::shell_quote;
using testing::TempDir;

OrderedStateDict sample() {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  OrderedStateDict sd;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    TensorData t;
    t.shape = shape;
    size_t n = 1;
    for (int64_t d : shape) n *= d;
    for (size_t i = 0; i < n; ++i) t.values.push_back(normal(rng));
    sd.emplace_back(name, std::move(t));
  };
  add("features.0.weight", {4, 3, 3, 3});
  add("features.0.bias", {4});
  add("classifier.0.weight", {300, 70000});  // > 65535 and > 2^24 elements: wide integers
  add("scalar", {});
  add("empty", {0, 5});
  sd[1].second.values[0] = -0.0f;
  sd[1].second.values[1] = std::numeric_limits<float>::denorm_min();
  return sd;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST(PthWriter, RoundTripsThroughTheReaderBitForBit) {
  TempDir tmp;
  const std::string path = tmp / "sd.pth";
  OrderedStateDict sd = sample();
  write_state_dict(path, sd);
  StateDict back = read_state_dict(path);
  ASSERT_EQ(back.size(), sd.size());
  for (const auto& [name, t] : sd) {
    auto it = back.find(name);
    ASSERT_NE(it, back.end()) << name;
    EXPECT_EQ(it->second.shape, t.shape) << name;
    EXPECT_TRUE(same_bits(it->second.values, t.values)) << name;
  }
}

TEST(PthWriter, RefusesInconsistentTensorsNamingTheFile) {
  TempDir tmp;
  const std::string path = tmp / "bad.pth";
  OrderedStateDict sd = sample();
  sd[0].second.values.pop_back();
  try {
    write_state_dict(path, sd);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("features.0.weight"), std::string::npos) << e.what();
  }
  OrderedStateDict dup = sample();
  dup.push_back(dup[0]);
  EXPECT_THROW(write_state_dict(path, dup), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(PthWriter, TorchLoadsItWithWeightsOnly) {
  TempDir tmp;
  const std::string path = tmp / "sd.pth";
  OrderedStateDict sd = sample();
  write_state_dict(path, sd);
  // The values the reader must see, bit for bit: the sum of a few and the raw bytes' hash.
  const std::string script = R"PY(
import hashlib, sys, zipfile, torch
path = sys.argv[1]
z = zipfile.ZipFile(path)
assert z.testzip() is None, "bad CRC"
raw = open(path, "rb").read()
for info in z.infolist():
    off = info.header_offset
    n, m = int.from_bytes(raw[off+26:off+28], "little"), int.from_bytes(raw[off+28:off+30], "little")
    assert (off + 30 + n + m) % 64 == 0, info.filename
sd = torch.load(path, weights_only=True)
assert type(sd).__name__ == "OrderedDict"
for k, v in sd.items():
    assert v.dtype == torch.float32 and not v.requires_grad and v.is_contiguous()
    print(k, tuple(v.shape), hashlib.sha256(v.numpy().tobytes()).hexdigest())
)PY";
  testing::write_file(tmp / "check.py", script);
  std::string out;
  int rc =
      run_command(python() + " " + shell_quote(tmp / "check.py") + " " + shell_quote(path), &out);
  ASSERT_EQ(rc, 0) << out;
  std::string want;
  for (const auto& [name, t] : sd) {
    std::string shape = "(";
    for (size_t i = 0; i < t.shape.size(); ++i)
      shape += std::to_string(t.shape[i]) + (t.shape.size() == 1      ? ","
                                             : i + 1 < t.shape.size() ? ", "
                                                                      : "");
    shape += ")";
    want += name + " " + shape + " " +
            sha256_hex(t.values.empty() ? static_cast<const void*>("") : t.values.data(),
                       t.values.size() * sizeof(float)) +
            "\n";
  }
  EXPECT_EQ(out, want);
}

}  // namespace
}  // namespace vggcache
