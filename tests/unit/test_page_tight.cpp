// The page-tight layout (common/cache.h): records in runs that fill whole LMDB pages, the image
// list stored once in binary (schema 3), small complete caches repacked into full runs. The cache's
// size against its payload for every codec and size, lookups and scans that cross runs, resume,
// repacking, damage inside a run, and schema 1 and 2 caches still read.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <lmdb.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/cache.h"
#include "common/cache_check.h"
#include "common/cache_repack.h"
#include "common/error.h"
#include "common/half.h"
#include "common/image_list.h"
#include "common/lmdb_util.h"
#include "common/splitmix64.h"
#include "test_util.h"

namespace vggcache {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// A deterministic, ReLU-like value per (image, crop, j): zero or a positive float of any scale.
float value(uint32_t image, uint32_t crop, uint32_t j) {
  const uint64_t z = splitmix64((uint64_t{image} << 40) ^ (uint64_t{crop} << 24) ^ j);
  if (z & 1) return 0.f;
  return static_cast<float>(z >> 40) * 1e-5f;  // up to ~168
}

CacheMeta make_meta(Codec codec, int size, bool eval, uint32_t images, uint32_t dim = 25088) {
  CacheMeta m;
  m.tool_version = "test";
  m.codec = codec;
  m.dim = dim;
  m.payload_floats = dim;
  if (codec_is_prepool(codec)) {
    const int side = size / 32;  // VGG16's last map: five floor-halvings
    m.prepool_shape = {512, side, side};
    m.payload_floats = 512u * side * side;
  }
  m.classes = {"bicycle", "car"};
  // Entries like carbike64's (the first half "bicycle/bicycle_0000.jpg"..., then "car/car_0000.jpg"
  // ..., ~2 KB files, a SHA-256 each), so the image list weighs what a real one does.
  for (uint32_t i = 0; i < images; ++i) {
    const uint64_t z = splitmix64(i);
    const int label = i < images / 2 ? 0 : 1;
    const std::string& cls = m.classes[label];
    std::string sha;
    for (int k = 0; k < 4; ++k) sha += fmt::format("{:016x}", splitmix64(z + k));
    m.images.push_back({fmt::format("{}/{}_{:04d}.jpg", cls, cls, label ? i - images / 2 : i),
                        1800 + z % 900, sha, label});
  }
  m.weights = {"random:1", "", true};
  m.preprocess.size = size;
  m.preprocess.eval = eval;
  m.preprocess.crops = eval ? 1 : 10;
  return m;
}

uint32_t crops_of(const CacheMeta& m) {
  return m.preprocess.eval ? 1 : static_cast<uint32_t>(m.preprocess.crops);
}

// Writes images [from, to) (all crops) `per_batch` images per transaction, leaving out `skip`.
void write_images(CacheWriter& w, uint32_t from, uint32_t to, uint32_t per_batch,
                  const std::set<uint32_t>& skip = {}) {
  const CacheMeta& m = w.meta();
  const uint32_t crops = crops_of(m), n = m.payload_floats;
  std::vector<float> buf;
  for (uint32_t b = from; b < to; b += per_batch) {
    const uint32_t e = std::min(to, b + per_batch);
    buf.assign(size_t{e - b} * crops * n, 0.f);
    std::vector<RecordIn> recs;
    for (uint32_t i = b; i < e; ++i) {
      if (skip.count(i)) {
        w.mutable_meta().skipped.push_back({i, m.images[i].path, "unreadable"});
        continue;
      }
      for (uint32_t k = 0; k < crops; ++k) {
        float* d = buf.data() + recs.size() * n;
        for (uint32_t j = 0; j < n; ++j) d[j] = value(i, k, j);
        recs.push_back({i, k, m.images[i].label, {int32_t(k), 1, 2, 3, false}, d});
      }
    }
    w.put_batch(recs, e);
  }
}

std::string fmt_dir(Codec codec, int size, bool eval, int schema) {
  return std::string(codec_name(codec)) + "_" + std::to_string(size) + (eval ? "e" : "c") + "_s" +
         std::to_string(schema);
}

double ratio(const std::string& dir) {
  auto r = CacheReader::open(dir);
  const CacheMeta& m = r->meta();
  const double payload = static_cast<double>(r->record_count()) * m.payload_floats *
                         static_cast<double>(codec_value_bytes(m.codec));
  return static_cast<double>(fs::file_size(fs::path(dir) / "data.mdb")) / payload;
}

// LMDB entries (values) in the records database, and each one's key and size.
std::vector<std::pair<std::string, size_t>> raw_values(const std::string& dir) {
  MDB_env* env = nullptr;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 4);
  EXPECT_EQ(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0644), 0);
  MDB_txn* txn = nullptr;
  mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  MDB_dbi dbi;
  EXPECT_EQ(mdb_dbi_open(txn, "records", 0, &dbi), 0);
  MDB_cursor* c = nullptr;
  mdb_cursor_open(txn, dbi, &c);
  std::vector<std::pair<std::string, size_t>> out;
  MDB_val k, v;
  for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    out.emplace_back(std::string(static_cast<const char*>(k.mv_data), k.mv_size), v.mv_size);
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return out;
}

void expect_record(const RecordView& v, uint32_t image, uint32_t crop, const CacheMeta& m) {
  ASSERT_EQ(v.header.image, image);
  ASSERT_EQ(v.header.crop, crop);
  ASSERT_EQ(v.header.label, m.images[image].label);
  ASSERT_EQ(v.header.box.x, static_cast<int32_t>(crop));
  for (uint32_t j = 0; j < m.payload_floats; ++j) {
    const float want = codec_is_half(m.codec) ? half_to_float(float_to_half(value(image, crop, j)))
                                              : value(image, crop, j);
    ASSERT_EQ(v.payload[j], want) << j;
  }
}

// extract's chunks of whole images (extract/pipeline.cpp images_per_chunk, batch 64): 64 images
// at 1 view, 32 at 10.
uint32_t chunk_images(const CacheMeta& m) {
  return crops_of(m) == 1 ? 64 : 32;
}

uint64_t mdb_bytes(const std::string& dir) {
  return fs::file_size(fs::path(dir) / "data.mdb");
}

// A cache of `images` images in extract's chunks, finished; its data.mdb bytes.
uint64_t write_cache(const std::string& dir, const CacheMeta& probe, uint32_t images,
                     const WriterOptions& o) {
  const CacheMeta m = make_meta(probe.codec, probe.preprocess.size, probe.preprocess.eval, images);
  auto w = CacheWriter::open(dir, m, o);
  write_images(*w, 0, images, chunk_images(m));
  w->finish();
  w.reset();
  const uint64_t bytes = mdb_bytes(dir);
  fs::remove_all(dir);
  return bytes;
}

TEST(PageTight, RunsFillPagesForEveryCodecAndSize) {
  TempDir tmp;
  std::printf("%-12s %4s %5s %9s %8s %8s %9s\n", "codec", "px", "views", "record_B", "schema1",
              "repacked", "per_image");
  for (Codec codec : {Codec::kRawF32, Codec::kPrepoolF32, Codec::kRawF16, Codec::kPrepoolF16})
    for (bool eval : {false, true}) {
      double raw_result[3] = {0, 0, 0};  // a raw codec's records are the same at every size
      for (int size : {64, 100, 150, 224}) {
        const CacheMeta probe = make_meta(codec, size, eval, 1);
        const size_t payload = probe.payload_floats * codec_value_bytes(codec);
        const double image_payload = static_cast<double>(payload) * crops_of(probe);
        // About 3 MB of payload: LMDB's fixed pages (~2 meta pages, 3 B-tree roots) are ≤ 1%.
        const uint32_t images =
            std::max<uint32_t>(4, static_cast<uint32_t>((3u << 20) / image_payload + 1));
        double r[3];
        if (!codec_is_prepool(codec) && raw_result[1] > 0) {
          std::copy(raw_result, raw_result + 3, r);
        } else {
          WriterOptions o;
          // Schema 1 (f16 caches are schema 2 and later only), for the comparison.
          o.schema_version = 1;
          r[0] = codec_is_half(codec)
                     ? 0
                     : write_cache(tmp / "s1", probe, images, o) / (image_payload * images);
          // As finish() leaves a cache below the repack limit: full runs, no free pages.
          o.schema_version = kSchemaVersion;
          r[1] = write_cache(tmp / "small", probe, images, o) / (image_payload * images);
          // Larger caches keep their batches' runs and LMDB's free pages: what each image adds,
          // from a cache of twice the images (the fixed pages cancel).
          o.repack_max_bytes = 0;
          const uint64_t one = write_cache(tmp / "one", probe, images, o);
          const uint64_t two = write_cache(tmp / "two", probe, 2 * images, o);
          r[2] = (static_cast<double>(two) - one) / (image_payload * images);
          if (!codec_is_prepool(codec)) std::copy(r, r + 3, raw_result);
        }
        const std::string old = r[0] > 0 ? fmt::format("{:.4f}", r[0]) : "-";
        std::printf("%-12s %4d %5s %9zu %8s %8.4f %9.4f\n", codec_name(codec), size,
                    eval ? "1" : "10", record_bytes(codec, probe.payload_floats), old.c_str(), r[1],
                    r[2]);
        EXPECT_LE(r[1], 1.05) << codec_name(codec) << " " << size << (eval ? " eval" : "");
        EXPECT_LE(r[2], 1.05) << codec_name(codec) << " " << size << (eval ? " eval" : "");
      }
    }
}

TEST(PageTight, LookupsSeeksAndScansCrossRuns) {
  TempDir tmp;
  // 50 floats: 264-byte records, 272 apart, 15 to a one-page run; 7 crops so runs and images
  // and batches all cut at different places; skipped images leave gaps in the keys.
  CacheMeta m = make_meta(Codec::kRawF32, 64, false, 40, 50);
  m.preprocess.crops = 7;
  const std::set<uint32_t> skip{3, 17, 18};
  WriterOptions as_written;  // the runs as each batch cut them (a large cache's)
  as_written.repack_max_bytes = 0;
  auto w = CacheWriter::open(tmp / "c", m, as_written);
  write_images(*w, 0, 40, 6, skip);
  w->finish();
  w.reset();
  const auto values = raw_values(tmp / "c");
  const uint32_t records = (40 - 3) * 7;
  // Each batch of 6 images: full runs of 15, then the rest (runs never span batches).
  std::vector<size_t> want;
  for (uint32_t b = 0; b < 40; b += 6) {
    uint32_t n = 0;
    for (uint32_t i = b; i < std::min(40u, b + 6); ++i) n += skip.count(i) ? 0 : 7;
    for (; n > 0; n -= std::min(n, 15u)) want.push_back(std::min(n, 15u) * 272);
  }
  ASSERT_EQ(values.size(), want.size());
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(values[i].second, want[i]) << i;
  auto r = CacheReader::open(tmp / "c");
  EXPECT_EQ(r->record_count(), records);
  ReadTxn t = r->begin();
  RecordView v;
  for (uint32_t i = 0; i < 41; ++i)
    for (uint32_t k = 0; k < 8; ++k) {
      const bool there = i < 40 && k < 7 && !skip.count(i);
      ASSERT_EQ(t.get(i, k, &v), there) << i << "," << k;
      if (there) expect_record(v, i, k, r->meta());
    }
  // A scan from any point, with lookups in between that must not move it.
  for (uint32_t from : {0u, 2u, 3u, 9u, 17u, 39u, 40u}) {
    t.seek(from, 4);
    uint32_t i = from, k = 4, n = 0;
    while (skip.count(i)) ++i, k = 0;
    while (t.next(&v)) {
      expect_record(v, i, k, r->meta());
      ++n;
      RecordView other;
      ASSERT_TRUE(t.get(0, 6, &other));
      if (++k == 7) {
        k = 0;
        do ++i;
        while (skip.count(i));
      }
    }
    EXPECT_EQ(i, 40u) << from;
    EXPECT_GT(n + (from >= 40 ? 1 : 0), 0u);
  }
  const VerifyReport rep = verify_cache(tmp / "c");
  EXPECT_TRUE(rep.problems.empty()) << rep.problems[0];
}

TEST(PageTight, ResumeEndsWithTheRunsOfACleanRun) {
  TempDir tmp;
  CacheMeta m = make_meta(Codec::kPrepoolF16, 64, false, 30);
  auto clean = CacheWriter::open(tmp / "clean", m);
  write_images(*clean, 0, 30, 4);
  clean->finish();
  clean.reset();
  for (uint32_t stop : {4u, 8u, 12u, 28u}) {  // interrupted after whole batches, then resumed
    const std::string dir = tmp / ("cut" + std::to_string(stop));
    {
      auto w = CacheWriter::open(dir, m);
      write_images(*w, 0, stop, 4);
    }
    auto w = CacheWriter::open(dir, m);
    ASSERT_EQ(w->meta().next_image, stop);
    write_images(*w, stop, 30, 4);
    w->finish();
    w.reset();
    EXPECT_EQ(diff_caches(tmp / "clean", dir), "") << stop;
    EXPECT_EQ(raw_values(tmp / "clean"), raw_values(dir)) << stop;
  }
}

// Flips one payload byte of record (image, crop), found by its header in data.mdb.
void damage(const std::string& dir, uint32_t image, uint32_t crop) {
  std::string bytes = testing::read_file(dir + "/data.mdb");
  unsigned char want[8];
  std::memcpy(want, &image, 4);
  std::memcpy(want + 4, &crop, 4);
  size_t at = std::string::npos;
  for (size_t p = bytes.find("VGCR"); p != std::string::npos; p = bytes.find("VGCR", p + 1))
    if (std::memcmp(bytes.data() + p + 8, want, 8) == 0) at = p;
  ASSERT_NE(at, std::string::npos);
  bytes[at + 64 + 5] ^= 0x10;
  testing::write_file(dir + "/data.mdb", bytes);
}

TEST(PageTight, DamageInsideARunNamesTheRecord) {
  TempDir tmp;
  CacheMeta m = make_meta(Codec::kPrepoolF32, 64, false, 8);
  auto w = CacheWriter::open(tmp / "c", m);
  write_images(*w, 0, 8, 8);
  w->finish();
  w.reset();
  damage(tmp / "c", 2, 5);
  auto r = CacheReader::open(tmp / "c");
  ReadTxn t = r->begin();
  RecordView v;
  try {
    t.get(2, 5, &v);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("record (2, 5): checksum mismatch"), std::string::npos)
        << e.what();
  }
  ASSERT_TRUE(t.get(2, 4, &v));  // its neighbours in the run still read
  expect_record(v, 2, 4, r->meta());
  ASSERT_TRUE(t.get(2, 6, &v));
  expect_record(v, 2, 6, r->meta());
  const VerifyReport rep = verify_cache(tmp / "c");
  ASSERT_EQ(rep.problems.size(), 2u);
  EXPECT_NE(rep.problems[0].find("record (2, 5): checksum mismatch"), std::string::npos)
      << rep.problems[0];
  EXPECT_EQ(rep.problems[1], "image 2 has 9 records, expected 10");  // the others all read
  EXPECT_EQ(rep.records, 80u);
}

TEST(PageTight, SchemaOneCachesStillReadVerifyAndResume) {
  TempDir tmp;
  CacheMeta m = make_meta(Codec::kPrepoolF32, 64, false, 12);
  WriterOptions old;
  old.schema_version = 1;
  {
    auto w = CacheWriter::open(tmp / "old", m, old);
    write_images(*w, 0, 6, 3);
  }
  EXPECT_EQ(read_cache_meta(tmp / "old").schema_version, 1);
  auto w = CacheWriter::open(tmp / "old", m);  // resumes in the stored (old) layout
  write_images(*w, 6, 12, 3);
  w->finish();
  w.reset();
  EXPECT_EQ(read_cache_meta(tmp / "old").schema_version, 1);
  const auto values = raw_values(tmp / "old");
  ASSERT_EQ(values.size(), 120u);  // one value per record
  EXPECT_EQ(values[0].second, record_bytes(m.payload_floats));
  auto r = CacheReader::open(tmp / "old");
  EXPECT_EQ(r->record_count(), 120u);
  ReadTxn t = r->begin();
  RecordView v;
  for (uint32_t i = 0; i < 12; ++i)
    for (uint32_t k = 0; k < 10; ++k) {
      ASSERT_TRUE(t.get(i, k, &v));
      expect_record(v, i, k, r->meta());
    }
  EXPECT_FALSE(t.get(12, 0, &v));
  t.seek(5, 3);
  ASSERT_TRUE(t.next(&v));
  expect_record(v, 5, 3, r->meta());
  EXPECT_TRUE(verify_cache(tmp / "old").problems.empty());
  // The same records in the new layout: the old cache reads exactly as a new one.
  auto n = CacheWriter::open(tmp / "new", m);
  write_images(*n, 0, 12, 3);
  n->finish();
  n.reset();
  EXPECT_EQ(diff_caches(tmp / "old", tmp / "new"), "");
  EXPECT_LT(fs::file_size(tmp / "new/data.mdb"), fs::file_size(tmp / "old/data.mdb"));
}

// The value under `key` in the "meta" sub-database.
std::string meta_value(const std::string& dir, const char* key) {
  MDB_env* env = nullptr;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 4);
  EXPECT_EQ(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0644), 0);
  MDB_txn* txn = nullptr;
  mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  MDB_dbi dbi;
  EXPECT_EQ(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
  MDB_val k{std::strlen(key), const_cast<char*>(key)}, v;
  std::string out;
  if (mdb_get(txn, dbi, &k, &v) == 0) out.assign(static_cast<const char*>(v.mv_data), v.mv_size);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return out;
}

TEST(PageTight, FinishRepacksSmallCachesIntoFullRuns) {
  TempDir tmp;
  // As in LookupsSeeksAndScansCrossRuns: 15 records to a run, batches of 6 images × 7 crops.
  CacheMeta m = make_meta(Codec::kRawF32, 64, false, 40, 50);
  m.preprocess.crops = 7;
  const std::set<uint32_t> skip{3, 17, 18};
  WriterOptions as_written;
  as_written.repack_max_bytes = 0;
  for (const char* name : {"written", "repacked"}) {
    auto w = CacheWriter::open(tmp / name, m, name[0] == 'w' ? as_written : WriterOptions{});
    write_images(*w, 0, 40, 6, skip);
    w->finish();
  }
  EXPECT_FALSE(fs::exists(fs::path(tmp / "repacked") / kRepackStaging));
  const auto values = raw_values(tmp / "repacked");
  const uint32_t records = (40 - 3) * 7;  // 259: 17 runs of 15 and one of 4
  ASSERT_EQ(values.size(), 18u);
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_EQ(values[i].second, (i < 17 ? 15u : 4u) * 272) << i;
  EXPECT_LT(raw_values(tmp / "written").size(), 30u);
  EXPECT_GT(raw_values(tmp / "written").size(), 18u);
  EXPECT_EQ(diff_caches(tmp / "written", tmp / "repacked"), "");
  EXPECT_LT(fs::file_size(tmp / "repacked/data.mdb"), fs::file_size(tmp / "written/data.mdb"));
  const VerifyReport rep = verify_cache(tmp / "repacked");
  EXPECT_TRUE(rep.problems.empty()) << rep.problems[0];
  EXPECT_EQ(rep.records, records);
  auto r = CacheReader::open(tmp / "repacked");
  ReadTxn t = r->begin();
  RecordView v;
  for (uint32_t i = 0; i < 40; ++i)
    for (uint32_t k = 0; k < 7; ++k) {
      ASSERT_EQ(t.get(i, k, &v), !skip.count(i)) << i << "," << k;
      if (!skip.count(i)) expect_record(v, i, k, r->meta());
    }
  EXPECT_EQ(meta_value(tmp / "repacked", "meta"), meta_value(tmp / "written", "meta"));
  EXPECT_EQ(meta_value(tmp / "repacked", kImagesKey), meta_value(tmp / "written", kImagesKey));
  // A writer reopening the complete cache finds its last record; finishing again changes nothing.
  auto w = CacheWriter::open(tmp / "repacked", m);
  EXPECT_TRUE(w->meta().complete);
  w->finish();
  w.reset();
  EXPECT_EQ(diff_caches(tmp / "written", tmp / "repacked"), "");
  EXPECT_EQ(raw_values(tmp / "repacked"), values);
}

TEST(PageTight, OneViewPrepoolF16At64PxIsWithinFivePercent) {
  // carbike64's test split at --eval: 600 images, 1 view of 64 px as prepool-f16 (4,096 bytes of
  // halves and a 64-byte header), extract's chunks of 64 images. Names as carbike64's (make_meta),
  // so the image list weighs what the real one does. Was 1.088 in schema 2: the JSON list (131
  // bytes an image), 10 pages of short runs and 9 free pages.
  TempDir tmp;
  const CacheMeta m = make_meta(Codec::kPrepoolF16, 64, true, 600);
  auto w = CacheWriter::open(tmp / "c", m);
  write_images(*w, 0, 600, 64);
  w->finish();
  w.reset();
  const double r = ratio(tmp / "c");
  const size_t list = meta_value(tmp / "c", kImagesKey).size();
  std::printf("data.mdb %ju bytes for 600 × 4096 payload bytes: %.4f; image list %zu bytes\n",
              static_cast<uintmax_t>(fs::file_size(tmp / "c/data.mdb")), r, list);
  EXPECT_LE(r, 1.05);
  EXPECT_LE(list, 41u * 600);
  EXPECT_EQ(meta_value(tmp / "c", kImagesKey).substr(0, 4), "VGIL");
}

TEST(PageTight, SchemaTwoCachesStillReadResumeAndMatch) {
  TempDir tmp;
  CacheMeta m = make_meta(Codec::kPrepoolF16, 64, false, 12);
  m.images[5].path = "car/\xff\xfe caf\xc3\xa9.jpg";  // not UTF-8: path_hex in schema 2's JSON
  WriterOptions two;
  two.schema_version = 2;
  {
    auto w = CacheWriter::open(tmp / "old", m, two);
    write_images(*w, 0, 6, 3);
  }
  EXPECT_EQ(meta_value(tmp / "old", kImagesKey).substr(0, 2), "[{");  // the JSON list
  auto w = CacheWriter::open(tmp / "old", m);                         // resumes as schema 2
  write_images(*w, 6, 12, 3);
  w->finish();
  w.reset();
  const CacheMeta old = read_cache_meta(tmp / "old");
  EXPECT_EQ(old.schema_version, 2);
  EXPECT_EQ(meta_value(tmp / "old", kImagesKey).substr(0, 2), "[{");
  ASSERT_EQ(old.images.size(), 12u);
  EXPECT_EQ(old.images[5].path, m.images[5].path);
  EXPECT_EQ(CacheMeta::first_difference(old, m), "");
  EXPECT_TRUE(verify_cache(tmp / "old").problems.empty());
  auto n = CacheWriter::open(tmp / "new", m);
  write_images(*n, 0, 12, 3);
  n->finish();
  n.reset();
  EXPECT_EQ(read_cache_meta(tmp / "new").schema_version, 3);
  EXPECT_EQ(meta_value(tmp / "new", kImagesKey).substr(0, 4), "VGIL");
  EXPECT_EQ(diff_caches(tmp / "old", tmp / "new"), "");
  EXPECT_LT(meta_value(tmp / "new", kImagesKey).size(),
            meta_value(tmp / "old", kImagesKey).size() / 2);
}

TEST(PageTight, DamagedImageListNamesTheCache) {
  TempDir tmp;
  const CacheMeta m = make_meta(Codec::kPrepoolF32, 64, true, 10);
  auto w = CacheWriter::open(tmp / "c", m);
  write_images(*w, 0, 10, 10);
  w->finish();
  w.reset();
  std::string list = meta_value(tmp / "c", kImagesKey);
  list[list.size() / 2] ^= 1;
  {
    MDB_env* env = nullptr;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 4);
    ASSERT_EQ(mdb_env_open(env, (tmp / "c").c_str(), 0, 0644), 0);
    MDB_txn* txn = nullptr;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k{std::strlen(kImagesKey), const_cast<char*>(kImagesKey)}, v{list.size(), list.data()};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  try {
    CacheReader::open(tmp / "c");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_EQ(std::string(e.what()).rfind(tmp / "c", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("the image list is malformed: checksum mismatch"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace vggcache
