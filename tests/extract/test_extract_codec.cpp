// The prepool-f32 codec end to end: `extract --codec` writes VGG16's pre-pool map, readers expand
// it to within 1 ulp of the raw-f32 cache of the same run (every record, at 64, 100 and 150 px),
// auto picks prepool-f32 below 224 px and raw-f32 at 224 px, the codec takes part in the resume
// check, `featcache info` shows codec and bytes per record and `featcache export` still writes
// 25088-d vectors. The f16 codecs hold the same run's values to within half's rounding bound.
// Uses a few carbike64 images and random:SEED weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/cache.h"
#include "common/half.h"
#include "common/prepool.h"
#include "extract_fixture.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::make_split;
using testing::run_extract_cmd;
using testing::shell_quote;
using testing::TempDir;
using testing::ulp_distance;

class ExtractCodec : public ::testing::Test {
 protected:
  void SetUp() override {
    carbike_ = testing::carbike_dir();
    if (!carbike_.empty()) make_split(carbike_, tmp_ / "split", 2, /*with_bad=*/false);
  }
  // Runs extract into `out` with `extra` flags; returns the exit status, output in *log.
  int extract(const std::string& out, const std::string& extra, std::string* log) {
    return run_extract_cmd(fmt::format("--data {} --out {} --weights random:2 --batch 4 "
                                       "--threads 2 --quiet {}",
                                       shell_quote(tmp_ / "split"), shell_quote(out), extra),
                           log);
  }
  TempDir tmp_;
  std::string carbike_;
};

// Every record of the prepool cache, expanded by the reader, is within 1 ulp of the raw cache's.
void expect_within_one_ulp(const std::string& raw_dir, const std::string& prepool_dir) {
  auto raw = CacheReader::open(raw_dir), pre = CacheReader::open(prepool_dir);
  ASSERT_EQ(raw->record_count(), pre->record_count());
  ASSERT_GT(raw->record_count(), 0u);
  ReadTxn tr = raw->begin(), tp = pre->begin();
  tr.seek_first();
  tp.seek_first();
  RecordView vr, vp;
  int worst = 0;
  while (tr.next(&vr)) {
    ASSERT_TRUE(tp.next(&vp));
    ASSERT_EQ(vr.header.image, vp.header.image);
    ASSERT_EQ(vr.header.crop, vp.header.crop);
    EXPECT_EQ(vr.header.box.x, vp.header.box.x);
    EXPECT_EQ(vr.header.box.w, vp.header.box.w);
    for (uint32_t j = 0; j < raw->meta().dim; ++j)
      worst = std::max(worst, ulp_distance(vr.data[j], vp.data[j]));
  }
  EXPECT_LE(worst, 1) << prepool_dir;
  std::printf("%s: %llu records, worst difference to raw-f32 %d ulp\n", prepool_dir.c_str(),
              static_cast<unsigned long long>(raw->record_count()), worst);
}

TEST_F(ExtractCodec, PrepoolExpandsToTheRawVectorsOfTheSameRun) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string log;
  // 64 px: 512 × 2 × 2; 100 px: 512 × 3 × 3; 150 px: 512 × 4 × 4. Auto picks prepool-f32.
  for (auto [size, side] : {std::pair{64, 2}, std::pair{100, 3}, std::pair{150, 4}}) {
    const std::string raw = tmp_ / fmt::format("raw{}", size),
                      pre = tmp_ / fmt::format("pre{}", size);
    const std::string views = size == 64 ? "--crops 3 --flip" : "--eval";
    ASSERT_EQ(extract(raw, fmt::format("--size {} {} --codec raw-f32", size, views), &log), 0)
        << log;
    ASSERT_EQ(extract(pre, fmt::format("--size {} {}", size, views), &log), 0) << log;
    const CacheMeta m = read_cache_meta(pre);
    EXPECT_EQ(m.codec, Codec::kPrepoolF32) << size;
    EXPECT_EQ(m.prepool_shape, (std::vector<int>{512, side, side}));
    EXPECT_EQ(m.payload_floats, static_cast<uint32_t>(512 * side * side));
    EXPECT_EQ(m.dim, 25088u);
    EXPECT_EQ(read_cache_meta(raw).codec, Codec::kRawF32);
    expect_within_one_ulp(raw, pre);
  }
}

TEST_F(ExtractCodec, AutoKeepsRawAt224Pixels) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string log;
  // At 224 px the map is 7 × 7 and pooling is the identity: nothing to gain, raw-f32 stays.
  ASSERT_EQ(extract(tmp_ / "c224", "--size 224 --eval", &log), 0) << log;
  const CacheMeta m = read_cache_meta(tmp_ / "c224");
  EXPECT_EQ(m.codec, Codec::kRawF32);
  EXPECT_EQ(m.payload_floats, 25088u);
  EXPECT_TRUE(m.prepool_shape.empty());
}

TEST_F(ExtractCodec, CodecIsASettingOnResume) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string log;
  const std::string cache = tmp_ / "c";
  ASSERT_EQ(extract(cache, "--size 64 --crops 2", &log), 0) << log;
  ASSERT_EQ(read_cache_meta(cache).codec, Codec::kPrepoolF32);
  // Another codec for the same cache is refused, naming the setting; --overwrite replaces it.
  EXPECT_EQ(extract(cache, "--size 64 --crops 2 --codec raw-f32", &log), 1) << log;
  EXPECT_NE(log.find("codec"), std::string::npos) << log;
  ASSERT_EQ(extract(cache, "--size 64 --crops 2 --codec raw-f32 --overwrite", &log), 0) << log;
  EXPECT_EQ(read_cache_meta(cache).codec, Codec::kRawF32);
  // With auto, a raw-f32 cache made before auto existed is reopened as it is.
  ASSERT_EQ(extract(cache, "--size 64 --crops 2", &log), 0) << log;
  EXPECT_NE(log.find("already complete"), std::string::npos) << log;
  EXPECT_EQ(read_cache_meta(cache).codec, Codec::kRawF32);
  // An unknown codec is a usage error naming the flag.
  EXPECT_EQ(extract(tmp_ / "d", "--codec zstd", &log), 2) << log;
  EXPECT_NE(log.find("--codec"), std::string::npos) << log;
}

TEST_F(ExtractCodec, FeatcacheShowsTheCodecAndExportsFullVectors) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string log;
  const std::string cache = tmp_ / "c";
  ASSERT_EQ(extract(cache, "--size 64 --crops 2", &log), 0) << log;
  const std::string featcache = shell_quote(testing::bin_dir() + "/featcache");
  ASSERT_EQ(testing::run_command(featcache + " info " + shell_quote(cache), &log), 0) << log;
  auto info = nlohmann::json::parse(log);
  EXPECT_EQ(info["codec"], "prepool-f32");
  EXPECT_EQ(info["bytes_per_record"], 64 + 512 * 2 * 2 * 4);  // header + the 2 × 2 map
  EXPECT_EQ(info["dim"], 25088);

  ASSERT_EQ(testing::run_command(
                featcache + " export " + shell_quote(cache) + " " + shell_quote(tmp_ / "x"), &log),
            0)
      << log;
  const std::string npy = testing::read_file(tmp_ / "x.npy");
  EXPECT_NE(npy.find("'shape': (8, 25088,)"), std::string::npos) << npy.substr(0, 128);
  // The exported vectors are the reader's expansion, byte for byte.
  auto reader = CacheReader::open(cache);
  ReadTxn t = reader->begin();
  t.seek_first();
  RecordView v;
  const size_t header = npy.size() - 8ull * 25088 * sizeof(float);
  for (size_t i = 0; t.next(&v); ++i)
    EXPECT_EQ(
        std::memcmp(npy.data() + header + i * 25088 * sizeof(float), v.data, 25088 * sizeof(float)),
        0)
        << "record " << i;
}

// Round to nearest even leaves a half within half its spacing of the float: 2^-11 relative for
// normal halves (|x| ≥ 2^-14, spacing 2^-10 relative), 2^-25 absolute among the subnormals
// (spacing 2^-24). Every stored value of the f16 cache against the f32 cache of the same run.
void expect_half_bound(const std::string& f32_dir, const std::string& f16_dir) {
  auto a = CacheReader::open(f32_dir), b = CacheReader::open(f16_dir);
  ASSERT_EQ(a->record_count(), b->record_count());
  ASSERT_GT(a->record_count(), 0u);
  ASSERT_TRUE(codec_is_half(b->meta().codec));
  ASSERT_EQ(a->meta().payload_floats, b->meta().payload_floats);
  ReadTxn ta = a->begin(), tb = b->begin();
  ta.seek_first();
  tb.seek_first();
  RecordView va, vb;
  double worst_rel = 0, biggest = 0;
  uint64_t values = 0, subnormal = 0;
  while (ta.next(&va)) {
    ASSERT_TRUE(tb.next(&vb));
    ASSERT_EQ(va.header.image, vb.header.image);
    ASSERT_EQ(va.header.crop, vb.header.crop);
    ASSERT_EQ(vb.stored_bytes, 2ull * b->meta().payload_floats);
    for (uint32_t j = 0; j < a->meta().payload_floats; ++j, ++values) {
      const double x = va.payload[j], y = vb.payload[j], err = std::fabs(y - x);
      biggest = std::max(biggest, std::fabs(x));
      ASSERT_LE(std::fabs(x), kHalfMax) << "beyond half range: " << x;
      if (std::fabs(x) >= std::ldexp(1.0, -14)) {
        ASSERT_LE(err, std::ldexp(std::fabs(x), -11)) << x << " -> " << y;
        worst_rel = std::max(worst_rel, err / std::fabs(x));
      } else {
        ASSERT_LE(err, std::ldexp(1.0, -25)) << x << " -> " << y;
        subnormal += x != 0;
      }
      ASSERT_EQ(vb.payload[j], half_to_float(float_to_half(va.payload[j])));  // exactly RNE
    }
  }
  EXPECT_FALSE(tb.next(&vb));
  std::printf(
      "%s: %llu values, largest |x| %.3f, worst relative error %.3g (bound %.3g), %llu "
      "in half's subnormal range\n",
      f16_dir.c_str(), static_cast<unsigned long long>(values), biggest, worst_rel,
      std::ldexp(1.0, -11), static_cast<unsigned long long>(subnormal));
}

TEST_F(ExtractCodec, HalfCodecsHoldTheFloat32ValuesWithinHalfRounding) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string log;
  for (const char* codec : {"prepool", "raw"}) {
    const std::string f32 = tmp_ / fmt::format("{}32", codec),
                      f16 = tmp_ / fmt::format("{}16", codec);
    const std::string views = "--size 64 --crops 3 --flip";
    ASSERT_EQ(extract(f32, fmt::format("{} --codec {}-f32", views, codec), &log), 0) << log;
    ASSERT_EQ(extract(f16, fmt::format("{} --codec {}-f16", views, codec), &log), 0) << log;
    EXPECT_EQ(codec_name(read_cache_meta(f16).codec), std::string(codec) + "-f16");
    expect_half_bound(f32, f16);
  }
  // The expanded vector of prepool-f16 is the expansion of the decoded map (not of the floats).
  auto r = CacheReader::open(tmp_ / "prepool16");
  ReadTxn t = r->begin();
  RecordView v;
  ASSERT_TRUE(t.get(0, 1, &v));
  std::vector<float> want(25088);
  expand_prepool(v.payload, 512, 2, 2, want.data());
  EXPECT_EQ(std::memcmp(want.data(), v.data, want.size() * 4), 0);

  const std::string featcache = shell_quote(testing::bin_dir() + "/featcache");
  ASSERT_EQ(testing::run_command(featcache + " info " + shell_quote(tmp_ / "prepool16"), &log), 0)
      << log;
  auto info = nlohmann::json::parse(log);
  EXPECT_EQ(info["codec"], "prepool-f16");
  EXPECT_EQ(info["bytes_per_record"], 64 + 512 * 2 * 2 * 2);
  EXPECT_NE(info["codec_precision"].get<std::string>().find("lossy: max relative error 2^-11"),
            std::string::npos)
      << log;
  EXPECT_EQ(info["disk"]["payload_bytes"], 12 * 512 * 2 * 2 * 2);
  // f16 halves pool4's raw maps too, which fine-tuning reads as float32: refused there.
  EXPECT_EQ(extract(tmp_ / "p4", "--cut pool4 --codec raw-f16", &log), 2) << log;
  EXPECT_NE(log.find("--codec raw-f16"), std::string::npos) << log;
  EXPECT_EQ(extract(tmp_ / "p4", "--cut pool4 --codec prepool-f16", &log), 2) << log;
}

}  // namespace
}  // namespace vggcache
