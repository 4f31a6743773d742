// The cut in the cache metadata (common/cache_meta.h): pool5 caches keep exactly the JSON and
// feature fingerprint they had before cuts existed (heads trained on them still match), a pool4
// cache round-trips and fingerprints differently, a resume across cuts is refused by name, and
// malformed cuts are refused with the problem named.
#include <gtest/gtest.h>

#include <string>

#include "common/cache_meta.h"
#include "common/error.h"
#include "common/sha256.h"

namespace vggcache {
namespace {

CacheMeta pool5_meta() {
  CacheMeta m;
  m.tool_version = "test";
  m.classes = {"bicycle", "car"};
  m.weights = {"random:1", "", true};
  return m;
}

CacheMeta pool4_meta() {
  CacheMeta m = pool5_meta();
  m.cut = "pool4";
  m.cut_shape = {512, 4, 4};
  m.dim = m.payload_floats = 512 * 4 * 4;
  return m;
}

TEST(CacheCut, Pool5KeepsItsJsonAndFingerprint) {
  const CacheMeta m = pool5_meta();
  const nlohmann::json j = m.to_json();
  EXPECT_FALSE(j.contains("cut"));
  EXPECT_FALSE(j.contains("cut_shape"));
  // The fingerprint's definition before cuts existed, written out: a change here would orphan
  // every head trained so far (predict refuses a head whose fingerprint differs).
  const std::string before =
      R"({"dim":25088,"interpolation":"bilinear-antialias","mean":[0.485,0.456,0.406],)"
      R"("size":64,"std":[0.229,0.224,0.225],"weights":"random:1"})";
  EXPECT_EQ(m.feature_fingerprint(), sha256_hex(before.data(), before.size()).substr(0, 16));
  EXPECT_EQ(CacheMeta::from_json(j).cut, "pool5");
}

TEST(CacheCut, Pool4RoundTripsAndFingerprintsApart) {
  const CacheMeta m = pool4_meta();
  const nlohmann::json j = m.to_json();
  EXPECT_EQ(j["cut"], "pool4");
  EXPECT_EQ(j["cut_shape"], nlohmann::json::parse("[512, 4, 4]"));
  const CacheMeta back = CacheMeta::from_json(j);
  EXPECT_EQ(back.cut, "pool4");
  EXPECT_EQ(back.cut_shape, (std::vector<int>{512, 4, 4}));
  EXPECT_EQ(back.to_json(), j);
  CacheMeta same_dim_pool5 = m;
  same_dim_pool5.cut = "pool5";
  same_dim_pool5.cut_shape.clear();
  EXPECT_NE(m.feature_fingerprint(), same_dim_pool5.feature_fingerprint());
  EXPECT_NE(m.fingerprint(), same_dim_pool5.fingerprint());
}

TEST(CacheCut, FirstDifferenceNamesTheCutFirst) {
  EXPECT_EQ(CacheMeta::first_difference(pool5_meta(), pool4_meta()), "cut: pool5 vs pool4");
  EXPECT_EQ(CacheMeta::first_difference(pool4_meta(), pool4_meta()), "");
}

void expect_refused(const nlohmann::json& j, ErrorKind kind, const std::string& needle) {
  try {
    CacheMeta::from_json(j);
    ADD_FAILURE() << "accepted: " << j.dump().substr(0, 200);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(CacheCut, MalformedCutsAreRefused) {
  nlohmann::json j = pool4_meta().to_json();
  j["cut"] = "pool3";
  expect_refused(j, ErrorKind::kSchema, "pool3");
  j = pool4_meta().to_json();
  j["cut_shape"] = nlohmann::json::parse("[512, 4, 5]");
  expect_refused(j, ErrorKind::kCorrupt, "cut_shape");
  j = pool4_meta().to_json();
  j.erase("cut_shape");
  expect_refused(j, ErrorKind::kCorrupt, "cut_shape");
  j = pool4_meta().to_json();
  j["codec"] = "prepool-f32";
  j["prepool_shape"] = nlohmann::json::parse("[512, 4, 4]");
  j["dim"] = 512 * 49;
  expect_refused(j, ErrorKind::kCorrupt, "raw-f32");
}

}  // namespace
}  // namespace vggcache
