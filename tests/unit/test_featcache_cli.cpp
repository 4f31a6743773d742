// The featcache tool: info JSON, export to NumPy (read back by numpy), verify exit codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/cache.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::run_command;
using testing::shell_quote;
using testing::TempDir;

std::string featcache() { return testing::bin_dir() + "/featcache"; }

// 12 images × 3 crops, dim 50; values and boxes derived from the indices; image 5 skipped.
void make_cache(const std::string& dir, bool finish = true) {
  CacheMeta m;
  m.tool_version = "test";
  m.dim = m.payload_floats = 50;
  m.classes = {"bicycle", "car", "tram"};
  for (int i = 0; i < 12; ++i)
    m.images.push_back({(i % 3 == 0 ? "odd, \"name\"/" : "x/") + std::to_string(i) + ".jpg",
                        10, "h", i % 3});
  m.weights = {"vgg16-397923af.pth", "397923af00", false};
  m.preprocess.crops = 3;
  auto w = CacheWriter::open(dir, m);
  w->mutable_meta().skipped.push_back({5, m.images[5].path, "truncated JPEG"});
  std::vector<std::vector<float>> bufs;
  std::vector<RecordIn> recs;
  for (uint32_t i = 0; i < 12; ++i) {
    if (i == 5) continue;
    for (uint32_t k = 0; k < 3; ++k) {
      bufs.emplace_back(50);
      for (int j = 0; j < 50; ++j) bufs.back()[j] = i * 100.f + k * 10.f + j * 0.125f;
    }
  }
  size_t n = 0;
  for (uint32_t i = 0; i < 12; ++i) {
    if (i == 5) continue;
    for (uint32_t k = 0; k < 3; ++k) {
      RecordIn r;
      r.image = i;
      r.crop = k;
      r.label = static_cast<int32_t>(i % 3);
      r.box = {static_cast<int32_t>(i), static_cast<int32_t>(k), 40, 41, k == 1};
      r.data = bufs[n++].data();
      recs.push_back(r);
    }
  }
  w->put_batch(recs, 12);
  if (finish) w->finish();
}

TEST(FeatcacheCli, InfoPrintsMetadataAsJson) {
  TempDir tmp;
  make_cache(tmp / "c");
  std::string out;
  ASSERT_EQ(run_command(featcache() + " info " + shell_quote(tmp / "c") + " 2>/dev/null", &out), 0)
      << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["records"], 33);
  EXPECT_EQ(j["images"], 12);
  EXPECT_EQ(j["dim"], 50);
  EXPECT_EQ(j["classes"], nlohmann::json({"bicycle", "car", "tram"}));
  EXPECT_EQ(j["complete"], true);
  EXPECT_EQ(j["codec"], "raw-f32");
  EXPECT_EQ(j["bytes_per_record"], 64 + 50 * 4);
  ASSERT_EQ(j["skipped"].size(), 1u);
  EXPECT_EQ(j["skipped"][0]["reason"], "truncated JPEG");
  EXPECT_EQ(j["settings"]["weights"]["sha256"], "397923af00");
  EXPECT_EQ(j["settings"]["preprocess"]["crops"], 3);
}

TEST(FeatcacheCli, ExportIsReadBackByNumpy) {
  TempDir tmp;
  make_cache(tmp / "c");
  std::string out;
  ASSERT_EQ(run_command(featcache() + " export " + shell_quote(tmp / "c") + " " +
                            shell_quote(tmp / "f"),
                        &out),
            0)
      << out;
  // numpy recomputes the expected values from the CSV index and compares every element.
  std::string py = R"PY(
import csv, sys, numpy as np
p = sys.argv[1]
x = np.load(p + ".npy"); y = np.load(p + ".labels.npy")
rows = list(csv.DictReader(open(p + ".index.csv", newline="")))
assert x.dtype == np.float32 and x.shape == (33, 50), (x.dtype, x.shape)
assert y.dtype == np.int64 and y.shape == (33,)
assert len(rows) == 33
for r in rows:
    n, i, k = int(r["record"]), int(r["image"]), int(r["crop"])
    want = np.float32(i * 100) + np.float32(k * 10) + np.arange(50, dtype=np.float32) * np.float32(0.125)
    assert np.array_equal(x[n], want), n
    assert y[n] == i % 3 == int(r["label"])
    assert int(r["x"]) == i and int(r["y"]) == k and int(r["w"]) == 40 and int(r["h"]) == 41
    assert int(r["flip"]) == (k == 1)
    assert r["path"].endswith(str(i) + ".jpg"), r["path"]
assert rows[0]["path"] == 'odd, "name"/0.jpg'
assert 5 not in {int(r["image"]) for r in rows}
print("NUMPY-OK")
)PY";
  testing::write_file(tmp / "check.py", py);
  ASSERT_EQ(run_command(testing::python() + " " + shell_quote(tmp / "check.py") + " " +
                            shell_quote(tmp / "f"),
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("NUMPY-OK"), std::string::npos) << out;
}

TEST(FeatcacheCli, VerifyExitCodes) {
  TempDir tmp;
  make_cache(tmp / "good");
  std::string out;
  EXPECT_EQ(run_command(featcache() + " verify " + shell_quote(tmp / "good"), &out), 0) << out;
  EXPECT_NE(out.find("33 records, 11 images: OK"), std::string::npos) << out;

  make_cache(tmp / "partial", /*finish=*/false);
  EXPECT_EQ(run_command(featcache() + " verify " + shell_quote(tmp / "partial"), &out), 1) << out;
  EXPECT_NE(out.find("not complete"), std::string::npos) << out;

  // Corrupt one value: 711.0f = image 7, crop 1, j 0 → find its bytes and flip one.
  std::string data = testing::read_file(tmp / "good/data.mdb");
  float needle[2] = {710.f, 710.125f};
  size_t pos = data.find(std::string(reinterpret_cast<char*>(needle), sizeof needle));
  ASSERT_NE(pos, std::string::npos);
  data[pos + 2] ^= 0x01;
  testing::write_file(tmp / "good/data.mdb", data);
  EXPECT_EQ(run_command(featcache() + " verify " + shell_quote(tmp / "good"), &out), 1) << out;
  EXPECT_NE(out.find("record (7, 1): checksum mismatch"), std::string::npos) << out;

  std::filesystem::create_directories(tmp / "nothing");
  EXPECT_EQ(run_command(featcache() + " verify " + shell_quote(tmp / "nothing"), &out), 1);
  EXPECT_NE(out.find("not a vggcache cache"), std::string::npos) << out;
  EXPECT_NE(run_command(featcache() + " frobnicate x", &out), 0);
}

TEST(FeatcacheCli, DiffComparesRecordForRecord) {
  TempDir tmp;
  make_cache(tmp / "a");
  make_cache(tmp / "b");
  make_cache(tmp / "partial", /*finish=*/false);
  std::string out;
  EXPECT_EQ(run_command(featcache() + " diff " + shell_quote(tmp / "a") + " " + shell_quote(tmp / "b"), &out), 0) << out;
  EXPECT_NE(out.find("identical"), std::string::npos);
  EXPECT_EQ(run_command(featcache() + " diff " + shell_quote(tmp / "a") + " " + shell_quote(tmp / "partial"), &out), 1);
  EXPECT_NE(out.find("complete: true vs false"), std::string::npos) << out;
  EXPECT_EQ(run_command(featcache() + " verify --allow-incomplete " + shell_quote(tmp / "partial"), &out), 0) << out;
  // One changed value (image 7, crop 1) makes them differ, and the record is named.
  std::string data = testing::read_file(tmp / "b/data.mdb");
  float needle[2] = {710.f, 710.125f};
  size_t pos = data.find(std::string(reinterpret_cast<char*>(needle), sizeof needle));
  ASSERT_NE(pos, std::string::npos);
  data[pos + 2] ^= 0x01;
  testing::write_file(tmp / "b/data.mdb", data);
  EXPECT_EQ(run_command(featcache() + " diff " + shell_quote(tmp / "a") + " " + shell_quote(tmp / "b"), &out), 1);
  EXPECT_NE(out.find("record (7, 1)"), std::string::npos) << out;
}

TEST(FeatcacheCli, ExportRefusesAnIncompleteCache) {
  TempDir tmp;
  make_cache(tmp / "partial", /*finish=*/false);
  std::string out;
  EXPECT_EQ(run_command(featcache() + " export " + shell_quote(tmp / "partial") + " " +
                            shell_quote(tmp / "f"),
                        &out),
            1);
  EXPECT_NE(out.find("incomplete"), std::string::npos) << out;
}

}  // namespace
}  // namespace vggcache
