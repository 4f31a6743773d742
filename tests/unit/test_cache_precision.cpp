// The forward pass's precision in the cache metadata (common/cache_meta.h): fp32 caches keep the
// JSON and fingerprints they had before precisions existed, a bf16 cache round-trips and
// fingerprints apart (so its features never pass for fp32 ones), a resume across precisions is
// refused by name, the head's feature settings tell them apart, and unknown precisions are refused.
#include <gtest/gtest.h>

#include <string>

#include "common/cache_meta.h"
#include "common/error.h"
#include "head/feature_check.h"

namespace vggcache {
namespace {

CacheMeta meta(const std::string& precision) {
  CacheMeta m;
  m.tool_version = "test";
  m.classes = {"bicycle", "car"};
  m.weights = {"random:1", "", true};
  m.precision = precision;
  return m;
}

TEST(CachePrecision, Fp32KeepsItsJson) {
  const nlohmann::json j = meta("fp32").to_json();
  EXPECT_FALSE(j.contains("precision"));
  EXPECT_EQ(CacheMeta::from_json(j).precision, "fp32");
  EXPECT_FALSE(feature_settings(meta("fp32")).contains("precision"));
}

TEST(CachePrecision, Bf16RoundTripsAndFingerprintsApart) {
  for (const char* p : {"bf16", "fp16"}) {
    const CacheMeta m = meta(p);
    const nlohmann::json j = m.to_json();
    EXPECT_EQ(j["precision"], p);
    const CacheMeta back = CacheMeta::from_json(j);
    EXPECT_EQ(back.precision, p);
    EXPECT_EQ(back.to_json(), j);
    EXPECT_NE(m.feature_fingerprint(), meta("fp32").feature_fingerprint()) << p;
    EXPECT_NE(m.fingerprint(), meta("fp32").fingerprint()) << p;
  }
  EXPECT_NE(meta("bf16").feature_fingerprint(), meta("fp16").feature_fingerprint());
}

TEST(CachePrecision, DifferencesNameThePrecision) {
  EXPECT_EQ(CacheMeta::first_difference(meta("fp32"), meta("bf16")), "precision: fp32 vs bf16");
  EXPECT_EQ(CacheMeta::first_difference(meta("bf16"), meta("bf16")), "");
  // A head trained on bf16 features against an fp32 cache (predict), or train vs test caches.
  const nlohmann::json f32 = feature_settings(meta("fp32")), b16 = feature_settings(meta("bf16"));
  EXPECT_EQ(b16["precision"], "bf16");
  EXPECT_EQ(feature_difference(f32, b16), "precision: fp32 vs bf16");
  EXPECT_EQ(feature_difference(b16, b16), "");
}

TEST(CachePrecision, UnknownPrecisionIsRefused) {
  nlohmann::json j = meta("fp32").to_json();
  j["precision"] = "int8";
  try {
    CacheMeta::from_json(j);
    FAIL() << "precision int8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSchema);
    EXPECT_NE(std::string(e.what()).find("precision 'int8'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vggcache
