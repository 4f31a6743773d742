// The LMDB feature cache: round trips, growth, concurrency, crash safety, corruption, refusals.
#include <gtest/gtest.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/wait.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/cache.h"
#include "common/cache_check.h"
#include "common/error.h"
#include "common/prepool.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::TempDir;

// A deterministic value per (image, crop, j) so any record can be checked without keeping it.
float value(uint32_t image, uint32_t crop, uint32_t j) {
  return static_cast<float>(image) * 0.5f + static_cast<float>(crop) * 1e-3f +
         static_cast<float>(j) * 1e-6f - 7.25f;
}

CacheMeta make_meta(uint32_t images, uint32_t crops, uint32_t dim) {
  CacheMeta m;
  m.tool_version = "test";
  m.dim = m.payload_floats = dim;
  m.classes = {"bicycle", "car"};
  for (uint32_t i = 0; i < images; ++i)
    m.images.push_back({"c/" + std::to_string(i) + ".jpg", 100 + i, "ab" + std::to_string(i),
                        static_cast<int32_t>(i % 2)});
  m.weights = {"random:1", "", true};
  m.preprocess.crops = static_cast<int>(crops);
  return m;
}

// Writes images [from, to) with `crops` crops each, `per_batch` images per transaction.
void write_images(CacheWriter& w, uint32_t from, uint32_t to, uint32_t crops, uint32_t per_batch) {
  const uint32_t dim = w.meta().payload_floats;
  std::vector<std::vector<float>> bufs;
  for (uint32_t b = from; b < to; b += per_batch) {
    uint32_t e = std::min(to, b + per_batch);
    std::vector<RecordIn> recs;
    bufs.assign((e - b) * crops, std::vector<float>(dim));
    size_t n = 0;
    for (uint32_t i = b; i < e; ++i)
      for (uint32_t k = 0; k < crops; ++k, ++n) {
        for (uint32_t j = 0; j < dim; ++j) bufs[n][j] = value(i, k, j);
        RecordIn r;
        r.image = i;
        r.crop = k;
        r.label = static_cast<int32_t>(i % 2);
        r.box = {static_cast<int32_t>(k), 2, 30, 31, (k % 2) == 1};
        r.data = bufs[n].data();
        recs.push_back(r);
      }
    w.put_batch(recs, e);
  }
}

void expect_record(const RecordView& v, uint32_t image, uint32_t crop, uint32_t dim) {
  ASSERT_EQ(v.header.image, image);
  ASSERT_EQ(v.header.crop, crop);
  ASSERT_EQ(v.header.label, static_cast<int32_t>(image % 2));
  ASSERT_EQ(v.header.box.x, static_cast<int32_t>(crop));
  ASSERT_EQ(v.header.box.h, 31);
  ASSERT_EQ(v.header.box.flipped, (crop % 2) == 1);
  for (uint32_t j = 0; j < dim; ++j) ASSERT_EQ(v.data[j], value(image, crop, j)) << j;
}

TEST(Cache, RoundTripThousandsOfRecords) {
  TempDir tmp;
  const uint32_t images = 500, crops = 6, dim = 300;
  {
    auto w = CacheWriter::open(tmp / "c", make_meta(images, crops, dim));
    write_images(*w, 0, images, crops, 37);
    w->finish();
  }
  auto r = CacheReader::open(tmp / "c");
  EXPECT_EQ(r->record_count(), images * crops);
  EXPECT_EQ(r->meta().records, images * crops);
  EXPECT_TRUE(r->meta().complete);
  EXPECT_EQ(r->meta().classes, (std::vector<std::string>{"bicycle", "car"}));
  ReadTxn t = r->begin();
  RecordView v;
  // Sequential scan in (image, crop) order.
  t.seek_first();
  uint32_t n = 0;
  while (t.next(&v)) {
    expect_record(v, n / crops, n % crops, dim);
    ++n;
  }
  EXPECT_EQ(n, images * crops);
  // Random access, and a seek into the middle.
  ASSERT_TRUE(t.get(321, 4, &v));
  expect_record(v, 321, 4, dim);
  EXPECT_FALSE(t.get(321, 6, &v));
  EXPECT_FALSE(t.get(images, 0, &v));
  t.seek(250, 3);
  ASSERT_TRUE(t.next(&v));
  expect_record(v, 250, 3, dim);
  ASSERT_TRUE(t.next(&v));
  expect_record(v, 250, 4, dim);
  EXPECT_TRUE(verify_cache(tmp / "c").ok());
}

TEST(Cache, MapGrowsFromATinyMap) {
  TempDir tmp;
  WriterOptions o;
  o.initial_map_bytes = 64 << 10;  // 64 KiB; the data below needs ~25 MB
  const uint32_t images = 300, crops = 4, dim = 5000;
  auto w = CacheWriter::open(tmp / "c", make_meta(images, crops, dim), o);
  write_images(*w, 0, images, crops, 50);
  w->finish();
  w.reset();
  auto r = CacheReader::open(tmp / "c");
  EXPECT_EQ(r->record_count(), images * crops);
  ReadTxn t = r->begin();
  RecordView v;
  ASSERT_TRUE(t.get(299, 3, &v));
  expect_record(v, 299, 3, dim);
}

TEST(Cache, ZeroCopyViewsAreAlignedIntoTheMap) {
  TempDir tmp;
  const uint32_t dim = 25088;  // a real record: lives in LMDB overflow pages
  auto w = CacheWriter::open(tmp / "c", make_meta(4, 2, dim));
  write_images(*w, 0, 4, 2, 4);
  w->finish();
  w.reset();
  auto r = CacheReader::open(tmp / "c");
  ReadTxn t = r->begin();
  RecordView a, b;
  ASSERT_TRUE(t.get(1, 1, &a));
  const float* pa = a.data;
  ASSERT_TRUE(t.get(2, 0, &b));
  EXPECT_NE(pa, b.data);  // two distinct views, neither the scratch buffer reused
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pa) % 16, 0u);
  expect_record(a, 1, 1, dim);
}

TEST(Cache, ConcurrentReadersFromTbbTasks) {
  TempDir tmp;
  const uint32_t images = 400, crops = 3, dim = 1000;
  auto w = CacheWriter::open(tmp / "c", make_meta(images, crops, dim));
  write_images(*w, 0, images, crops, 64);
  w->finish();
  w.reset();
  auto r = CacheReader::open(tmp / "c");
  tbb::enumerable_thread_specific<std::unique_ptr<ReadTxn>> txns;
  std::atomic<int> bad{0};
  tbb::parallel_for(0u, images * crops * 4, [&](uint32_t n) {
    auto& t = txns.local();
    if (!t) t = std::make_unique<ReadTxn>(r->begin());
    uint32_t rec = (n * 7919u) % (images * crops);
    RecordView v;
    if (!t->get(rec / crops, rec % crops, &v)) {
      ++bad;
      return;
    }
    for (uint32_t j = 0; j < dim; j += 97)
      if (v.data[j] != value(rec / crops, rec % crops, j)) ++bad;
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GE(txns.size(), 1u);
}

TEST(Cache, ReaderSeesOnlyCommittedBatches) {
  TempDir tmp;
  const uint32_t crops = 2, dim = 64;
  auto w = CacheWriter::open(tmp / "c", make_meta(100, crops, dim));
  write_images(*w, 0, 10, crops, 10);
  auto r = CacheReader::open(tmp / "c", {/*allow_incomplete=*/true});
  ReadTxn snapshot = r->begin();
  write_images(*w, 10, 30, crops, 10);
  RecordView v;
  EXPECT_FALSE(snapshot.get(15, 0, &v));  // the old snapshot does not see the new batch
  ReadTxn fresh = r->begin();
  EXPECT_TRUE(fresh.get(15, 0, &v));
  EXPECT_EQ(r->record_count(), 30u * crops);
}

TEST(Cache, CreationInterruptedAtAnyPointLeavesNoHalfCache) {
  TempDir tmp;
  auto meta = make_meta(6, 1, 8);
  // What a writer killed during creation can leave: the lock, a stale LMDB lock file and a
  // half-built environment in the staging folder. None of it is a cache yet, and a new writer
  // starts cleanly.
  std::filesystem::create_directories(tmp / "c/.creating");
  testing::write_file(tmp / "c/writer.lock", "12345");
  testing::write_file(tmp / "c/lock.mdb", std::string(64, '\0'));
  testing::write_file(tmp / "c/.creating/data.mdb", std::string(4096, 'x'));
  EXPECT_THROW(CacheReader::open(tmp / "c", {true}), Error);
  auto w = CacheWriter::open(tmp / "c", meta);
  write_images(*w, 0, 6, 1, 3);
  w->finish();
  w.reset();
  EXPECT_FALSE(std::filesystem::exists(tmp / "c/.creating"));
  EXPECT_TRUE(verify_cache(tmp / "c").ok());
}

TEST(Cache, SecondWriterIsRefused) {
  TempDir tmp;
  auto meta = make_meta(10, 1, 8);
  auto w = CacheWriter::open(tmp / "c", meta);
  try {
    CacheWriter::open(tmp / "c", meta);
    FAIL() << "second writer was allowed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kLocked);
    EXPECT_NE(std::string(e.what()).find("another process is writing"), std::string::npos);
  }
  // And from another process.
  pid_t pid = fork();
  if (pid == 0) {
    try {
      CacheWriter::open(tmp / "c", meta);
      _exit(0);
    } catch (const Error& e) {
      _exit(e.kind() == ErrorKind::kLocked ? 42 : 1);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 42);
  w.reset();
  EXPECT_NO_THROW(CacheWriter::open(tmp / "c", meta));  // released with the first writer
}

TEST(Cache, KilledWriterLeavesEveryCommittedBatchIntact) {
  TempDir tmp;
  const uint32_t images = 4000, crops = 2, dim = 2000;
  auto meta = make_meta(images, crops, dim);
  pid_t pid = fork();
  if (pid == 0) {
    try {
      auto w = CacheWriter::open(tmp / "c", meta);
      write_images(*w, 0, images, crops, 7);
      w->finish();
    } catch (...) {
    }
    _exit(0);
  }
  // Kill it once some batches are in, mid-way through the run.
  for (int i = 0; i < 2000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    try {
      if (read_cache_meta(tmp / "c").next_image >= 100) break;
    } catch (const Error&) {
    }
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "writer finished before it was killed";

  EXPECT_THROW(CacheReader::open(tmp / "c"), Error);  // incomplete is refused by default
  CacheMeta m;
  {
    auto r = CacheReader::open(tmp / "c", {/*allow_incomplete=*/true});
    m = r->meta();
    ASSERT_GE(m.next_image, 100u);
    ASSERT_LT(m.next_image, images);
    EXPECT_EQ(m.records, uint64_t{m.next_image} * crops);
    EXPECT_EQ(r->record_count(), m.records);
    ReadTxn t = r->begin();
    t.seek_first();
    RecordView v;
    uint32_t n = 0;
    while (t.next(&v)) {
      expect_record(v, n / crops, n % crops, dim);
      ++n;
    }
    EXPECT_EQ(n, m.records);
  }

  // Resume from the committed point; the result equals an uninterrupted run.
  auto w = CacheWriter::open(tmp / "c", meta);
  EXPECT_EQ(w->meta().next_image, m.next_image);
  write_images(*w, w->meta().next_image, images, crops, 7);
  w->finish();
  w.reset();
  auto done = CacheReader::open(tmp / "c");
  EXPECT_EQ(done->record_count(), uint64_t{images} * crops);
  EXPECT_TRUE(verify_cache(tmp / "c").ok());
}

TEST(Cache, DifferentSettingsAreRefusedByName) {
  TempDir tmp;
  auto meta = make_meta(10, 2, 8);
  { CacheWriter::open(tmp / "c", meta); }
  auto other = meta;
  other.preprocess.size = 100;
  try {
    CacheWriter::open(tmp / "c", other);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kMismatch);
    EXPECT_NE(std::string(e.what()).find("preprocess.size: 64 vs 100"), std::string::npos)
        << e.what();
  }
  other = meta;
  other.images[3].sha256 = "changed";
  EXPECT_THROW(CacheWriter::open(tmp / "c", other), Error);
  WriterOptions o;
  o.overwrite = true;
  other.preprocess.size = 100;
  auto w = CacheWriter::open(tmp / "c", other, o);
  EXPECT_EQ(w->meta().preprocess.size, 100);
  EXPECT_EQ(w->meta().records, 0u);
}

TEST(Cache, NonUtf8FileNamesRoundTripExactly) {
  TempDir tmp;
  auto meta = make_meta(3, 1, 4);
  meta.images[1].path = "car/\xff\xfe caf\xc3\xa9.jpg";
  {
    auto w = CacheWriter::open(tmp / "c", meta);
    w->mutable_meta().skipped.push_back({1, meta.images[1].path, "bad"});
    w->put_batch({}, 3);
  }
  CacheMeta back = read_cache_meta(tmp / "c");
  EXPECT_EQ(back.images[1].path, meta.images[1].path);
  EXPECT_EQ(back.skipped.at(0).path, meta.images[1].path);
  EXPECT_NO_THROW(CacheWriter::open(tmp / "c", meta));  // resume sees the same settings
}

TEST(Cache, NotACacheIsRecognised) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "empty");
  std::filesystem::create_directories(tmp / "docs");
  testing::write_file(tmp / "docs/notes.txt", "precious");
  for (const char* d : {"missing", "empty", "docs"}) {
    try {
      CacheReader::open(tmp / d);
      FAIL() << d;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kNotACache) << d;
      EXPECT_NE(std::string(e.what()).find(tmp / d), std::string::npos);
    }
  }
  // A writer never writes into (or deletes) a directory that holds something else.
  WriterOptions o;
  o.overwrite = true;
  EXPECT_THROW(CacheWriter::open(tmp / "docs", make_meta(2, 1, 4), o), Error);
  EXPECT_EQ(testing::read_file(tmp / "docs/notes.txt"), "precious");
  // An LMDB environment that is not ours.
  MDB_env* env;
  mdb_env_create(&env);
  std::filesystem::create_directories(tmp / "foreign");
  ASSERT_EQ(mdb_env_open(env, (tmp / "foreign").c_str(), 0, 0644), 0);
  MDB_txn* txn;
  MDB_dbi dbi;
  mdb_txn_begin(env, nullptr, 0, &txn);
  mdb_dbi_open(txn, nullptr, 0, &dbi);
  MDB_val k{3, (void*)"abc"}, v{3, (void*)"xyz"};
  mdb_put(txn, dbi, &k, &v, 0);
  mdb_txn_commit(txn);
  mdb_env_close(env);
  try {
    CacheReader::open(tmp / "foreign");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotACache);
  }
}

// Rewrites the stored metadata JSON through LMDB directly (what a newer or broken tool might leave).
void poke_meta(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  MDB_env* env;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 4);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0644), 0);
  MDB_txn* txn;
  MDB_dbi dbi;
  mdb_txn_begin(env, nullptr, 0, &txn);
  ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
  MDB_val k{4, (void*)"meta"}, v;
  ASSERT_EQ(mdb_get(txn, dbi, &k, &v), 0);
  auto j = nlohmann::json::parse(std::string(static_cast<char*>(v.mv_data), v.mv_size));
  edit(j);
  std::string s = j.dump();
  MDB_val nv{s.size(), s.data()};
  mdb_put(txn, dbi, &k, &nv, 0);
  mdb_txn_commit(txn);
  mdb_env_close(env);
}

TEST(Cache, PrepoolCodecExpandsOnRead) {
  TempDir tmp;
  const int C = 16, h = 2, w = 2;
  CacheMeta meta = make_meta(5, 2, C * 49);
  meta.codec = Codec::kPrepoolF32;
  meta.payload_floats = C * h * w;
  meta.prepool_shape = {C, h, w};
  std::vector<std::vector<float>> z(10, std::vector<float>(C * h * w));
  {
    auto wr = CacheWriter::open(tmp / "c", meta);
    std::vector<RecordIn> recs;
    for (uint32_t n = 0; n < 10; ++n) {
      for (int j = 0; j < C * h * w; ++j) z[n][j] = static_cast<float>((n * 31 + j * 7) % 13) * 0.37f;
      RecordIn r;
      r.image = n / 2;
      r.crop = n % 2;
      r.label = static_cast<int32_t>(r.image % 2);
      r.data = z[n].data();
      recs.push_back(r);
    }
    wr->put_batch(recs, 5);
    wr->finish();
  }
  auto r = CacheReader::open(tmp / "c");
  EXPECT_EQ(r->meta().dim, static_cast<uint32_t>(C * 49));
  ReadTxn t = r->begin();
  RecordView v;
  std::vector<float> want(C * 49);
  for (uint32_t n = 0; n < 10; ++n) {
    ASSERT_TRUE(t.get(n / 2, n % 2, &v));
    expand_prepool(z[n].data(), C, h, w, want.data());
    ASSERT_EQ(std::memcmp(v.data, want.data(), want.size() * 4), 0) << n;
    ASSERT_EQ(std::memcmp(v.payload, z[n].data(), z[n].size() * 4), 0) << n;
  }
  auto compact = CacheReader::open(tmp / "c", {false, true, /*expand=*/false});
  ReadTxn t2 = compact->begin();
  ASSERT_TRUE(t2.get(1, 1, &v));
  EXPECT_EQ(v.data, nullptr);
  EXPECT_EQ(v.payload[5], z[3][5]);
  // Inconsistent geometry is refused when the metadata is read.
  poke_meta(tmp / "c", [](nlohmann::json& j) { j["prepool_shape"] = {16, 3, 2}; });
  EXPECT_THROW(CacheReader::open(tmp / "c"), Error);
}

TEST(Cache, NewerSchemaAndUnknownCodecAreRefused) {
  TempDir tmp;
  {
    auto w = CacheWriter::open(tmp / "c", make_meta(4, 1, 8));
    write_images(*w, 0, 4, 1, 4);
    w->finish();
  }
  poke_meta(tmp / "c", [](nlohmann::json& j) { j["schema_version"] = 99; });
  try {
    CacheReader::open(tmp / "c");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSchema);
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
  }
  poke_meta(tmp / "c", [](nlohmann::json& j) {
    j["schema_version"] = 1;
    j["codec"] = "zstd-f16";
  });
  try {
    CacheReader::open(tmp / "c");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSchema);
    EXPECT_NE(std::string(e.what()).find("zstd-f16"), std::string::npos);
  }
}

// Flips one byte inside the payload of record (image, crop) in data.mdb.
void flip_payload_byte(const std::string& dir, uint32_t image, uint32_t crop) {
  std::string path = dir + "/data.mdb";
  std::string data = testing::read_file(path);
  float needle[4];
  for (uint32_t j = 0; j < 4; ++j) needle[j] = value(image, crop, 100 + j);
  size_t pos = data.find(std::string(reinterpret_cast<char*>(needle), sizeof needle));
  ASSERT_NE(pos, std::string::npos);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(pos + 5));
  char c = data[pos + 5] ^ 0x10;
  f.write(&c, 1);
}

TEST(Cache, FlippedBytesAreCaughtByChecksums) {
  TempDir tmp;
  const uint32_t dim = 25088;
  {
    auto w = CacheWriter::open(tmp / "c", make_meta(6, 2, dim));
    write_images(*w, 0, 6, 2, 3);
    w->finish();
  }
  ASSERT_TRUE(verify_cache(tmp / "c").ok());
  flip_payload_byte(tmp / "c", 4, 1);
  VerifyReport rep = verify_cache(tmp / "c");
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.problems[0].find("record (4, 1): checksum mismatch"), std::string::npos)
      << rep.problems[0];
  auto r = CacheReader::open(tmp / "c");
  ReadTxn t = r->begin();
  RecordView v;
  EXPECT_TRUE(t.get(4, 0, &v));
  try {
    t.get(4, 1, &v);
    FAIL() << "corrupt record was returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
  }
}

TEST(Cache, TruncatedDataFileIsRefusedNotACrash) {
  TempDir tmp;
  {
    auto w = CacheWriter::open(tmp / "c", make_meta(40, 2, 25088));
    write_images(*w, 0, 40, 2, 10);
    w->finish();
  }
  const auto size = std::filesystem::file_size(tmp / "c/data.mdb");
  std::filesystem::resize_file(tmp / "c/data.mdb", size / 2);
  for (int attempt = 0; attempt < 2; ++attempt) {  // reader, then a resuming writer
    try {
      if (attempt == 0)
        CacheReader::open(tmp / "c");
      else
        CacheWriter::open(tmp / "c", make_meta(40, 2, 25088));
      FAIL() << "a truncated cache was opened";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
      EXPECT_NE(std::string(e.what()).find("data.mdb is truncated"), std::string::npos) << e.what();
    }
  }
}

TEST(Cache, VerifyCountsMissingRecordsOfACompleteCache) {
  TempDir tmp;
  auto meta = make_meta(10, 3, 16);
  auto w = CacheWriter::open(tmp / "c", meta);
  write_images(*w, 0, 9, 3, 5);  // image 9 never written
  w->put_batch({}, 10);
  w->finish();
  w.reset();
  VerifyReport rep = verify_cache(tmp / "c");
  EXPECT_FALSE(rep.ok());
  EXPECT_EQ(rep.records, 27u);
}

TEST(Cache, OutOfOrderRecordsAreRejected) {
  TempDir tmp;
  auto w = CacheWriter::open(tmp / "c", make_meta(10, 2, 8));
  write_images(*w, 0, 3, 2, 3);
  std::vector<float> buf(8, 1.f);
  RecordIn r;
  r.image = 1;
  r.data = buf.data();
  EXPECT_THROW(w->put_batch({r}, 4), Error);
  write_images(*w, 3, 10, 2, 3);  // still usable afterwards
  w->finish();
  EXPECT_TRUE(verify_cache(tmp / "c").ok());
}

}  // namespace
}  // namespace vggcache
