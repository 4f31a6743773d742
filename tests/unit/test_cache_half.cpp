// The f16 codecs in the cache: halves stored (2 bytes a value), float32 read back (the payload
// decoded, prepool maps expanded from the decoded map), values beyond ±65504 saturated and
// counted in the metadata, and the error bound against the floats written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/cache.h"
#include "common/cache_check.h"
#include "common/half.h"
#include "common/prepool.h"
#include "common/splitmix64.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::TempDir;

CacheMeta make_meta(Codec codec, uint32_t images) {
  CacheMeta m;
  m.tool_version = "test";
  m.codec = codec;
  m.dim = codec_is_prepool(codec) ? 3 * 49 : 300;
  m.payload_floats = codec_is_prepool(codec) ? 3 * 3 * 2 : m.dim;
  if (codec_is_prepool(codec)) m.prepool_shape = {3, 3, 2};
  m.classes = {"a", "b"};
  for (uint32_t i = 0; i < images; ++i) m.images.push_back({std::to_string(i), 1, "", 0});
  m.weights = {"random:1", "", true};
  m.preprocess.crops = 2;
  return m;
}

// Values of every scale: signed, from below half's subnormals to beyond its range.
float value(uint32_t image, uint32_t crop, uint32_t j) {
  const uint64_t z = splitmix64((uint64_t{image} << 32) ^ (uint64_t{crop} << 20) ^ j);
  const double mant = 1.0 + static_cast<double>(z >> 12 & 0xfffff) / 0x100000;
  const int exp = static_cast<int>(z % 48) - 30;  // 2^-30 .. 2^17
  return static_cast<float>(((z >> 63) ? -mant : mant) * std::ldexp(1.0, exp));
}

std::vector<std::vector<float>> write(const std::string& dir, Codec codec, uint32_t images) {
  const CacheMeta m = make_meta(codec, images);
  auto w = CacheWriter::open(dir, m);
  std::vector<std::vector<float>> data;
  for (uint32_t i = 0; i < images; ++i)
    for (uint32_t k = 0; k < 2; ++k) {
      data.emplace_back(m.payload_floats);
      for (uint32_t j = 0; j < m.payload_floats; ++j) data.back()[j] = value(i, k, j);
    }
  std::vector<RecordIn> recs;
  for (uint32_t n = 0; n < data.size(); ++n) recs.push_back({n / 2, n % 2, 0, {}, data[n].data()});
  w->put_batch(recs, images);
  w->finish();
  return data;
}

TEST(CacheHalf, RawF16ReadsBackTheRoundedValuesAndCountsSaturation) {
  TempDir tmp;
  const auto data = write(tmp / "c", Codec::kRawF16, 20);
  uint64_t beyond = 0;
  for (const auto& d : data)
    for (float x : d) beyond += std::fabs(x) > kHalfMax;
  ASSERT_GT(beyond, 0u);
  auto r = CacheReader::open(tmp / "c");
  EXPECT_EQ(r->meta().extra.value("f16_saturated_values", uint64_t{0}), beyond);
  ReadTxn t = r->begin();
  RecordView v;
  double worst = 0;
  for (uint32_t n = 0; n < data.size(); ++n) {
    ASSERT_TRUE(t.get(n / 2, n % 2, &v));
    EXPECT_EQ(v.stored_bytes, 600u);
    EXPECT_EQ(v.data, v.payload);
    for (uint32_t j = 0; j < 300; ++j) {
      const float x = data[n][j], y = v.data[j];
      if (std::fabs(x) > kHalfMax) {
        ASSERT_EQ(y, std::copysign(kHalfMax, x));
      } else if (std::fabs(x) >= std::ldexp(1.f, -14)) {
        ASSERT_LE(std::fabs(y - x), std::ldexp(std::fabs(x), -11)) << x;
        worst = std::max(worst, std::fabs(double{y} - x) / std::fabs(x));
      } else {
        ASSERT_LE(std::fabs(y - x), std::ldexp(1.f, -25)) << x;
      }
    }
  }
  EXPECT_GT(worst, std::ldexp(1.0, -12));  // the bound is tight, not loose by 2×
  EXPECT_TRUE(verify_cache(tmp / "c").problems.empty());
}

TEST(CacheHalf, PrepoolF16ExpandsTheDecodedMap) {
  TempDir tmp;
  const auto data = write(tmp / "c", Codec::kPrepoolF16, 5);
  for (bool expand : {true, false}) {
    auto r = CacheReader::open(tmp / "c", {false, true, expand});
    ReadTxn t = r->begin();
    t.seek_first();
    RecordView v;
    for (uint32_t n = 0; n < data.size(); ++n) {
      ASSERT_TRUE(t.next(&v));
      std::vector<float> map(18), want(147);
      for (int j = 0; j < 18; ++j)
        map[j] = half_to_float(float_to_half(
            std::fabs(data[n][j]) > kHalfMax ? std::copysign(kHalfMax, data[n][j]) : data[n][j]));
      ASSERT_EQ(std::memcmp(v.payload, map.data(), 18 * 4), 0) << n;
      if (!expand) {
        EXPECT_EQ(v.data, nullptr);
        continue;
      }
      expand_prepool(map.data(), 3, 3, 2, want.data());
      ASSERT_EQ(std::memcmp(v.data, want.data(), 147 * 4), 0) << n;
    }
    EXPECT_FALSE(t.next(&v));
  }
}

TEST(CacheHalf, CodecNamesAndNotes) {
  EXPECT_EQ(codec_from_name("raw-f16"), Codec::kRawF16);
  EXPECT_EQ(codec_from_name("prepool-f16"), Codec::kPrepoolF16);
  EXPECT_STREQ(codec_name(Codec::kPrepoolF16), "prepool-f16");
  EXPECT_EQ(record_bytes(Codec::kRawF16, 25088), 64u + 2 * 25088);
  EXPECT_NE(codec_precision_note(Codec::kRawF16).find("lossy"), std::string::npos);
  EXPECT_EQ(codec_precision_note(Codec::kPrepoolF32), "exact float32");
}

}  // namespace
}  // namespace vggcache
