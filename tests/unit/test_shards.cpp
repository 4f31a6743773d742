// Sharded extraction: shard slices, `featcache merge` (byte-for-byte equal to a one-machine cache,
// refusals naming the shard), shard sets read as one cache, and the real tools end to end
// (extract --shard, merge, make-set, train_head on a set).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "common/cache.h"
#include "common/cache_check.h"
#include "common/cache_merge.h"
#include "common/error.h"
#include "common/shard_set.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::run_command;
using testing::shell_quote;
using testing::TempDir;

constexpr uint32_t kImages = 23, kCrops = 3, kDim = 40;
const std::set<uint32_t> kSkipped = {4, 11, 22};  // in shards 0, 1 (or 2) and the last

CacheMeta base_meta() {
  CacheMeta m;
  m.tool_version = "test";
  m.dim = m.payload_floats = kDim;
  m.classes = {"bicycle", "car"};
  for (uint32_t i = 0; i < kImages; ++i)
    m.images.push_back({"c/" + std::to_string(i) + ".jpg", 100 + i, "ab" + std::to_string(i),
                        static_cast<int32_t>(i % 2)});
  m.weights = {"random:1", "", true};
  m.preprocess.crops = static_cast<int>(kCrops);
  m.source_dir = "/data/train";
  return m;
}

// Writes images [from, to) of `m` (all of them, or the shard's slice) as extract would: records
// derived from (image, crop), kSkipped skipped, two images per transaction.
void write_cache(const std::string& dir, const CacheMeta& m, bool finish = true,
                 uint32_t stop_at = UINT32_MAX) {
  auto w = CacheWriter::open(dir, m);
  const uint32_t from = m.first_image(), to = std::min(m.end_image(), stop_at);
  for (uint32_t b = from; b < to; b += 2) {
    const uint32_t e = std::min(to, b + 2);
    std::vector<std::vector<float>> bufs;
    std::vector<RecordIn> recs;
    for (uint32_t i = b; i < e; ++i) {
      if (kSkipped.count(i)) {
        w->mutable_meta().skipped.push_back({i, m.images[i].path, "truncated"});
        continue;
      }
      for (uint32_t k = 0; k < kCrops; ++k) {
        bufs.emplace_back(kDim);
        for (uint32_t j = 0; j < kDim; ++j) bufs.back()[j] = i * 1.5f - k * 0.25f + j * 1e-3f;
      }
    }
    size_t n = 0;
    for (uint32_t i = b; i < e; ++i) {
      if (kSkipped.count(i)) continue;
      for (uint32_t k = 0; k < kCrops; ++k) {
        RecordIn r;
        r.image = i;
        r.crop = k;
        r.label = static_cast<int32_t>(i % 2);
        r.box = {static_cast<int32_t>(i), static_cast<int32_t>(k), 30, 31, k == 1};
        r.data = bufs[n++].data();
        recs.push_back(r);
      }
    }
    w->put_batch(recs, e);
  }
  if (finish) w->finish();
}

CacheMeta shard_meta(uint32_t index, uint32_t count, uint32_t grain = 2) {
  CacheMeta m = base_meta();
  m.shard = shard_slice(index, count, kImages, grain);
  return m;
}

// The one-machine cache and its N shards, written by hand.
struct Fixture {
  TempDir tmp;
  std::string full = tmp / "full";
  std::vector<std::string> shards;
  explicit Fixture(uint32_t n) {
    write_cache(full, base_meta());
    for (uint32_t i = 0; i < n; ++i) {
      shards.push_back(tmp / ("set/shard-" + std::to_string(i)));
      write_cache(shards.back(), shard_meta(i, n));
    }
  }
};

// Sets and restores environment variables for one test.
class EnvGuard {
 public:
  void set(const char* name, const char* value) {
    if (!saved_.count(name)) {
      const char* old = getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~EnvGuard() {
    for (const auto& [k, v] : saved_) {
      if (v)
        setenv(k.c_str(), v->c_str(), 1);
      else
        unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

std::string error_of(const std::function<void()>& f, ErrorKind* kind = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    return e.what();
  }
  return "";
}

TEST(ShardSpec, ParsesIndexOverCount) {
  ShardSpec s = parse_shard_spec("2/5");
  EXPECT_EQ(s.index, 2u);
  EXPECT_EQ(s.count, 5u);
  for (const char* bad : {"5/5", "1/0", "a/b", "-1/4", "1/4x", "1", "", "1/-4"})
    EXPECT_NE(error_of([&] { parse_shard_spec(bad); }), "") << bad;
}

TEST(ShardSpec, AutoReadsSlurmArrayAndKubernetesIndex) {
  EnvGuard env;
  for (const char* v : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                        "SLURM_ARRAY_TASK_MAX", "VGGCACHE_SHARD_COUNT", "JOB_COMPLETION_INDEX"})
    env.set(v, nullptr);
  EXPECT_NE(error_of([] { parse_shard_spec("auto"); }).find("SLURM_ARRAY_TASK_ID"),
            std::string::npos);

  env.set("SLURM_ARRAY_TASK_ID", "3");
  env.set("SLURM_ARRAY_TASK_COUNT", "4");
  env.set("SLURM_ARRAY_TASK_MIN", "0");
  env.set("SLURM_ARRAY_TASK_MAX", "3");
  ShardSpec s = parse_shard_spec("auto");
  EXPECT_EQ(s.index, 3u);
  EXPECT_EQ(s.count, 4u);

  // A task resubmitted alone (sbatch --array=2) is an array of one: its count is not N.
  env.set("SLURM_ARRAY_TASK_ID", "2");
  env.set("SLURM_ARRAY_TASK_COUNT", "1");
  env.set("SLURM_ARRAY_TASK_MIN", "2");
  env.set("SLURM_ARRAY_TASK_MAX", "2");
  EXPECT_NE(error_of([] { parse_shard_spec("auto"); }).find("VGGCACHE_SHARD_COUNT"),
            std::string::npos);
  env.set("VGGCACHE_SHARD_COUNT", "4");
  s = parse_shard_spec("auto");
  EXPECT_EQ(s.index, 2u);
  EXPECT_EQ(s.count, 4u);

  for (const char* v : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                        "SLURM_ARRAY_TASK_MAX"})
    env.set(v, nullptr);
  env.set("JOB_COMPLETION_INDEX", "1");
  s = parse_shard_spec("auto");
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.count, 4u);
  env.set("JOB_COMPLETION_INDEX", "4");
  EXPECT_NE(error_of([] { parse_shard_spec("auto"); }), "");
}

TEST(ShardSlice, TilesTheImageListOnTheChunkGrid) {
  for (uint32_t n : {0u, 1u, 7u, 23u, 100u, 1001u})
    for (uint32_t count : {1u, 2u, 3u, 4u, 7u, 40u})
      for (uint32_t grain : {1u, 2u, 5u, 32u}) {
        uint32_t expect_first = 0, most = 0, least = UINT32_MAX;
        for (uint32_t i = 0; i < count; ++i) {
          ShardInfo s = shard_slice(i, count, n, grain);
          ASSERT_EQ(s.first, expect_first) << n << " " << count << " " << grain;
          ASSERT_LE(s.first, s.end);
          if (s.end != n) ASSERT_EQ(s.end % grain, 0u);  // whole chunks, as one machine cuts them
          expect_first = s.end;
          most = std::max(most, s.end - s.first);
          least = std::min(least, s.end - s.first);
        }
        ASSERT_EQ(expect_first, n);
        EXPECT_LE(most - least, 2 * grain) << "balanced to within a chunk or so";
      }
}

TEST(ShardMeta, RoundTripsAndCountsAsASetting) {
  CacheMeta a = shard_meta(1, 3);
  CacheMeta back = CacheMeta::from_json(a.to_json());
  EXPECT_TRUE(back.shard == a.shard);
  EXPECT_EQ(back.first_image(), a.shard.first);
  EXPECT_FALSE(base_meta().to_json().contains("shard")) << "whole caches keep their JSON";
  EXPECT_NE(CacheMeta::first_difference(a, shard_meta(2, 3)).find("shard: 1/3"), std::string::npos);
  EXPECT_NE(CacheMeta::first_difference(a, base_meta()).find("none"), std::string::npos);
  nlohmann::json j = a.to_json();
  j["shard"]["end"] = kImages + 1;
  EXPECT_NE(error_of([&] { CacheMeta::from_json(j); }), "");
}

TEST(ShardMerge, EqualsTheOneMachineCacheByteForByte) {
  Fixture f(3);
  for (const auto& s : f.shards) {
    VerifyReport r = verify_cache(s);
    EXPECT_TRUE(r.ok()) << s << ": " << (r.problems.empty() ? "" : r.problems[0]);
  }
  const std::string merged = f.tmp / "merged";
  // Any order on the command line.
  MergeSummary sum = merge_shards({f.shards[2], f.shards[0], f.shards[1]}, merged, false, true);
  EXPECT_EQ(sum.shards, 3u);
  EXPECT_EQ(diff_caches(f.full, merged), "");
  EXPECT_TRUE(verify_cache(merged).ok());
  const CacheMeta m = read_cache_meta(merged);
  EXPECT_FALSE(m.shard.present());
  ASSERT_EQ(m.skipped.size(), kSkipped.size());
  EXPECT_EQ(m.skipped.back().image, 22u);
  // Rerunning is a no-op; a set given in place of its shards merges the same.
  EXPECT_TRUE(merge_shards(f.shards, merged, false, true).already_complete);
  write_shard_manifest(f.tmp / "set", f.shards);
  merge_shards({f.tmp / "set"}, f.tmp / "merged2", false, true);
  EXPECT_EQ(diff_caches(f.full, f.tmp / "merged2"), "");
}

TEST(ShardMerge, ResumesAnInterruptedMerge) {
  Fixture f(2);
  const std::string merged = f.tmp / "merged";
  // What a merge killed after its first commit leaves: the combined metadata, images [0, 6).
  std::vector<CacheMeta> metas;
  for (const auto& s : f.shards) metas.push_back(read_cache_meta(s));
  CacheMeta partial = combined_meta({&metas[0], &metas[1]});
  partial.complete = false;
  write_cache(merged, partial, /*finish=*/false, /*stop_at=*/6);
  MergeSummary sum = merge_shards(f.shards, merged, false, true);
  EXPECT_EQ(sum.resumed_from, 6u);
  EXPECT_EQ(diff_caches(f.full, merged), "");
}

TEST(ShardMerge, RefusesBadShardSetsNamingTheShard) {
  Fixture f(3);
  const std::string out = f.tmp / "out";
  ErrorKind kind;
  std::string e = error_of([&] { merge_shards({f.shards[0], f.shards[2]}, out, false, true); });
  EXPECT_NE(e.find("shard 1/3 is missing"), std::string::npos) << e;

  e = error_of([&] {
    merge_shards({f.shards[0], f.shards[1], f.shards[1], f.shards[2]}, out, false, true);
  });
  EXPECT_NE(e.find("duplicated shard"), std::string::npos) << e;
  EXPECT_NE(e.find(f.shards[1]), std::string::npos) << e;

  const std::string partial = f.tmp / "partial-1";
  write_cache(partial, shard_meta(1, 3), /*finish=*/false, /*stop_at=*/10);
  e = error_of([&] { merge_shards({f.shards[0], partial, f.shards[2]}, out, false, true); }, &kind);
  EXPECT_EQ(kind, ErrorKind::kIncomplete);
  EXPECT_NE(e.find(partial), std::string::npos) << e;
  EXPECT_NE(e.find("incomplete"), std::string::npos) << e;

  CacheMeta other = shard_meta(1, 3);
  other.preprocess.seed = 9;
  const std::string reseeded = f.tmp / "seed9-1";
  write_cache(reseeded, other);
  e = error_of([&] { merge_shards({f.shards[0], reseeded, f.shards[2]}, out, false, true); });
  EXPECT_NE(e.find(reseeded), std::string::npos) << e;
  EXPECT_NE(e.find("preprocess.seed"), std::string::npos) << e;

  // Cut on another chunk grid (another --batch): the slices do not tile the list.
  const std::string recut = f.tmp / "recut-1";
  write_cache(recut, shard_meta(1, 3, /*grain=*/5));
  e = error_of([&] { merge_shards({f.shards[0], recut, f.shards[2]}, out, false, true); });
  EXPECT_NE(e.find(recut), std::string::npos) << e;

  const std::string four = f.tmp / "four-1";
  write_cache(four, shard_meta(1, 4));
  e = error_of([&] { merge_shards({f.shards[0], four, f.shards[2]}, out, false, true); });
  EXPECT_NE(e.find(four), std::string::npos) << e;

  e = error_of([&] { merge_shards({f.full, f.shards[1]}, out, false, true); });
  EXPECT_NE(e.find("is not a shard"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(out + "/data.mdb")) << "refused before writing";
}

TEST(ShardSet, ReadsAsTheOneMachineCache) {
  Fixture f(4);
  const std::string set = f.tmp / "set";
  write_shard_manifest(set, {f.shards[3], f.shards[1], f.shards[0], f.shards[2]});
  EXPECT_NE(testing::read_file(set + "/shards.json").find("\"shard-0\""), std::string::npos)
      << "shards below the set are listed relative to it";
  EXPECT_EQ(diff_caches(f.full, set), "");
  EXPECT_TRUE(verify_cache(set).ok());

  auto full = CacheReader::open(f.full), sharded = CacheReader::open(set);
  EXPECT_EQ(sharded->record_count(), full->record_count());
  EXPECT_TRUE(sharded->meta().complete);
  EXPECT_EQ(sharded->meta().records, full->meta().records);
  ReadTxn a = full->begin(), b = sharded->begin();
  RecordView va, vb;
  // Random access dispatches to the owning shard; skipped images are absent in both.
  for (uint32_t i = 0; i < kImages; ++i)
    for (uint32_t k = 0; k <= kCrops; ++k) {
      const bool ha = a.get(i, k, &va), hb = b.get(i, k, &vb);
      ASSERT_EQ(ha, hb) << i << "," << k;
      if (ha) ASSERT_EQ(std::memcmp(va.data, vb.data, kDim * sizeof(float)), 0);
    }
  // Seeks land in the right shard and scans continue across shard boundaries.
  for (uint32_t i : {0u, 5u, 6u, 11u, 12u, 22u}) {
    a.seek(i, 1);
    b.seek(i, 1);
    for (;;) {
      const bool ha = a.next(&va), hb = b.next(&vb);
      ASSERT_EQ(ha, hb);
      if (!ha) break;
      ASSERT_EQ(va.header.image, vb.header.image);
      ASSERT_EQ(va.header.crop, vb.header.crop);
    }
  }
  b.seek(kImages, 0);
  EXPECT_FALSE(b.next(&vb));
}

TEST(ShardSet, IncompleteOrBrokenSetsAreRefused) {
  Fixture f(3);
  const std::string partial = f.tmp / "set/partial-2";
  write_cache(partial, shard_meta(2, 3), /*finish=*/false, /*stop_at=*/18);
  const std::string set = f.tmp / "set";
  write_shard_manifest(set, {f.shards[0], f.shards[1], partial});
  ErrorKind kind;
  std::string e = error_of([&] { CacheReader::open(set); }, &kind);
  EXPECT_EQ(kind, ErrorKind::kIncomplete);
  EXPECT_NE(e.find(partial), std::string::npos) << e;
  auto r = CacheReader::open(set, {/*allow_incomplete=*/true});
  EXPECT_FALSE(r->meta().complete);
  EXPECT_TRUE(verify_cache(set, 20, /*allow_incomplete=*/true).ok());
  EXPECT_FALSE(verify_cache(set).ok());

  std::filesystem::remove_all(partial);
  e = error_of([&] { CacheReader::open(set, {true}); });
  EXPECT_NE(e.find(partial), std::string::npos) << e;
  EXPECT_FALSE(verify_cache(set, 20, true).ok());
  e = error_of([&] { write_shard_manifest(f.tmp / "set2", {f.shards[0], f.shards[2]}); });
  EXPECT_NE(e.find("shard 1/3 is missing"), std::string::npos) << e;
}

// ---- The real tools ----

std::string bin(const std::string& tool) {
  return shell_quote(testing::bin_dir() + "/" + tool);
}

int run(const std::string& cmd, std::string* out) {
  return run_command(cmd + " 2>&1", out);
}

TEST(ShardTools, ExtractShardsMergeAndTrainOnASetEqualOneMachine) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  namespace fs = std::filesystem;
  TempDir tmp;
  // 2 × 21 training images (links) and a small test split.
  for (const char* split : {"train", "test"})
    for (const char* cls : {"bicycle", "car"}) {
      fs::create_directories(tmp / (std::string(split) + "/" + cls));
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(carbike + "/" + split + "/" + cls))
        names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
      const size_t n = std::string(split) == "train" ? 21 : 6;
      for (size_t i = 0; i < n && i < names.size(); ++i)
        fs::create_symlink(carbike + "/" + split + "/" + cls + "/" + names[i],
                           tmp / (std::string(split) + "/" + cls + "/" + names[i]));
    }
  const std::string common = " --weights random:1 --crops 2 --threads 1 --batch 6 --quiet";
  const std::string train = " --data " + shell_quote(tmp / "train") + common;
  std::string out;
  ASSERT_EQ(run(bin("extract") + train + " --out " + shell_quote(tmp / "one"), &out), 0) << out;
  ASSERT_EQ(run(bin("extract") + " --data " + shell_quote(tmp / "test") + common +
                    " --eval --out " + shell_quote(tmp / "test-cache"),
                &out),
            0)
      << out;
  std::string shard_args;
  for (int i = 0; i < 4; ++i) {
    const std::string dir = tmp / ("set/shard-" + std::to_string(i));
    ASSERT_EQ(run(bin("extract") + train + " --shard " + std::to_string(i) + "/4 --out " +
                      shell_quote(dir),
                  &out),
              0)
        << out;
    shard_args += " " + shell_quote(dir);
  }
  // A shard does not resume as another shard.
  EXPECT_NE(
      run(bin("extract") + train + " --shard 1/4 --out " + shell_quote(tmp / "set/shard-0"), &out),
      0);
  EXPECT_NE(out.find("shard: 0/4"), std::string::npos) << out;

  ASSERT_EQ(run(bin("featcache") + " merge" + shard_args + " --quiet --out " +
                    shell_quote(tmp / "merged"),
                &out),
            0)
      << out;
  ASSERT_EQ(run(bin("featcache") + " diff " + shell_quote(tmp / "one") + " " +
                    shell_quote(tmp / "merged"),
                &out),
            0)
      << out;
  ASSERT_EQ(run(bin("featcache") + " make-set " + shell_quote(tmp / "set") + shard_args, &out), 0)
      << out;
  ASSERT_EQ(
      run(bin("featcache") + " diff " + shell_quote(tmp / "one") + " " + shell_quote(tmp / "set"),
          &out),
      0)
      << out;
  ASSERT_EQ(run(bin("featcache") + " verify " + shell_quote(tmp / "set"), &out), 0) << out;
  ASSERT_EQ(run(bin("featcache") + " info " + shell_quote(tmp / "set"), &out), 0) << out;
  EXPECT_NE(out.find("shard_set"), std::string::npos) << out;

  // train_head reads the set as the merged cache: the same head, bit for bit. head.bin records
  // the --train path, so both runs name the cache by one link.
  for (const char* src : {"merged", "set"}) {
    fs::remove(tmp / "cache");
    fs::create_directory_symlink(tmp / src, tmp / "cache");
    ASSERT_EQ(run(bin("train_head") + " --train " + shell_quote(tmp / "cache") + " --test " +
                      shell_quote(tmp / "test-cache") + " --out " +
                      shell_quote(tmp / (std::string("run-") + src)) +
                      " --epochs 2 --hidden 16 --threads 1 --quiet",
                  &out),
              0)
        << out;
  }
  EXPECT_TRUE(testing::read_file(tmp / "run-merged/head.bin") ==
              testing::read_file(tmp / "run-set/head.bin"))
      << "head.bin differs between the merged cache and the shard set";
}

}  // namespace
}  // namespace vggcache
