// --order blocks (train_head/batch_schedule.h) and the page hints of a cache read through its map
// (FeatureSource::will_need, ReadTxn::payload_span): the order is a permutation of the
// uniform order's items made of whole windows of whole blocks, reproducible from (seed, epoch);
// hints change nothing that is read; training with either order is reproducible and the default
// order is untouched by the hints. The read-ahead thread (common/readahead.h,
// train_head/read_ahead.h) carries its errors back and stops cleanly, and gives back exactly the
// pages of finished blocks, only when the cache does not fit in memory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/cache.h"
#include "common/error.h"
#include "common/readahead.h"
#include "head/feature_source.h"
#include "head/head_model.h"
#include "train_fixtures.h"
#include "train_head/batch_schedule.h"
#include "train_head/cli.h"
#include "train_head/read_ahead.h"
#include "train_head/sweep/plan.h"
#include "train_head/sweep/spec.h"
#include "train_head/trainer.h"

namespace vggcache {
namespace {

std::vector<uint32_t> iota_images(uint32_t n) {
  std::vector<uint32_t> v(n);
  for (uint32_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

bool item_less(const Item& a, const Item& b) {
  return a.image != b.image ? a.image < b.image : a.crop < b.crop;
}

// Checks that `order` is a sequence of windows, each made of all the items of at most `window`
// blocks, every block in exactly one window; returns the blocks in the order they first appear.
std::vector<uint64_t> check_windows(const std::vector<Item>& order, int crops, int block_records,
                                    int window) {
  auto block_of = [&](const Item& it) {
    return (uint64_t{it.image} * crops + it.crop) / block_records;
  };
  std::map<uint64_t, int> left;  // items of each block not yet seen
  for (const Item& it : order) ++left[block_of(it)];
  std::set<uint64_t> done;  // blocks of closed windows
  std::set<uint64_t> open;  // blocks of the current window
  std::vector<uint64_t> firsts;
  int open_left = 0;  // items of the open window's blocks still to come
  for (const Item& it : order) {
    const uint64_t b = block_of(it);
    EXPECT_EQ(done.count(b), 0u) << "block " << b << " reappears after its window closed";
    if (!open.count(b)) {
      if (static_cast<int>(open.size()) == window) {
        EXPECT_EQ(open_left, 0) << "a window's blocks were left before all their items came";
        done.insert(open.begin(), open.end());
        open.clear();
      }
      open.insert(b);
      open_left += left[b];
      firsts.push_back(b);
    }
    --open_left;
  }
  EXPECT_EQ(open_left, 0);
  return firsts;
}

TEST(BlockOrder, SameItemsAsUniformInWindowsOfWholeBlocks) {
  const std::vector<uint32_t> images = iota_images(500);
  for (bool all_crops : {false, true}) {
    for (int crops : {1, 3}) {
      for (auto [records, window] : {std::pair{8, 4}, {1, 1}, {7, 3}, {1000, 2}}) {
        SCOPED_TRACE(::testing::Message() << "all_crops " << all_crops << " crops " << crops
                                          << " block " << records << " window " << window);
        std::vector<Item> uni = epoch_items(images, crops, all_crops, 11, 2);
        std::vector<Item> blk = block_epoch_items(images, crops, all_crops, 11, 2, records, window);
        ASSERT_EQ(blk.size(), uni.size());
        // The same draw of crops, only in another order.
        std::sort(uni.begin(), uni.end(), item_less);
        std::vector<Item> sorted = blk;
        std::sort(sorted.begin(), sorted.end(), item_less);
        for (size_t i = 0; i < uni.size(); ++i) {
          ASSERT_EQ(sorted[i].image, uni[i].image);
          ASSERT_EQ(sorted[i].crop, uni[i].crop);
        }
        check_windows(blk, crops, records, window);
      }
    }
  }
}

TEST(BlockOrder, ReproducibleFromSeedAndEpochAndShuffled) {
  const std::vector<uint32_t> images = iota_images(400);
  auto order = [&](uint64_t seed, int epoch) {
    return block_epoch_items(images, 2, false, seed, epoch, 16, 4);
  };
  auto same = [](const std::vector<Item>& a, const std::vector<Item>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Item& x, const Item& y) {
      return x.image == y.image && x.crop == y.crop;
    });
  };
  {
    // Not computed in parallel, so the thread count cannot matter; checked anyway.
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    const std::vector<Item> a = order(3, 1);
    tbb::global_control four(tbb::global_control::max_allowed_parallelism, 4);
    EXPECT_TRUE(same(a, order(3, 1)));
  }
  EXPECT_FALSE(same(order(3, 1), order(3, 2)));
  EXPECT_FALSE(same(order(3, 1), order(4, 1)));
  // The blocks come in a shuffled order (not key order), and the items of a window are mixed
  // (not block by block): 400 images × 2 crops in blocks of 16 records are 50 blocks.
  const std::vector<uint64_t> firsts = check_windows(order(3, 1), 2, 16, 4);
  EXPECT_EQ(firsts.size(), 50u);
  EXPECT_FALSE(std::is_sorted(firsts.begin(), firsts.end()));
  const std::vector<Item> o = order(3, 1);
  int switches = 0;  // block changes between neighbours
  for (size_t i = 1; i < o.size(); ++i)
    switches += (uint64_t{o[i].image} * 2 + o[i].crop) / 16 !=
                (uint64_t{o[i - 1].image} * 2 + o[i - 1].crop) / 16;
  EXPECT_GT(switches, 200);  // block by block would give 49
}

TEST(BlockOrder, RejectsEmptyBlocks) {
  EXPECT_THROW(block_epoch_items(iota_images(4), 1, false, 0, 0, 0, 1), Error);
  EXPECT_THROW(block_epoch_items(iota_images(4), 1, false, 0, 0, 1, 0), Error);
}

// Usage errors name the flag; block settings without --order blocks are refused, not ignored.
TEST(BlockOrder, CommandLine) {
  auto parse = [](std::vector<std::string> extra, TrainParams* p) {
    std::vector<std::string> args = {"train_head", "--train", "a", "--test", "b", "--out", "c"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ::testing::internal::CaptureStderr();
    SweepParams sweep;  // train_head's own parse: sweep flags known
    ParseStatus st = parse_train_args(static_cast<int>(argv.size()), argv.data(), p, &sweep);
    const std::string err = ::testing::internal::GetCapturedStderr();
    return std::pair{st.run, err};
  };
  TrainParams p;
  EXPECT_TRUE(parse({}, &p).first);
  EXPECT_EQ(p.order, "uniform");  // the default keeps every earlier result
  TrainParams q;
  EXPECT_TRUE(
      parse({"--order", "blocks", "--block-records", "64", "--block-window", "2"}, &q).first);
  EXPECT_EQ(q.order, "blocks");
  EXPECT_EQ(q.block_records, 64);
  EXPECT_EQ(q.block_window, 2);
  struct Bad {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {{"--order", "random"}, "--order must be 'uniform' or 'blocks' (got 'random')"},
           {{"--block-records", "8"}, "--block-records needs --order blocks"},
           {{"--block-window", "8"}, "--block-window needs --order blocks"},
           {{"--order", "blocks", "--block-records", "0"}, "--block-records must be >= 1"},
           {{"--order", "blocks", "--block-window", "0"}, "--block-window must be >= 1"},
           {{"--order", "blocks", "--sampler", "balanced"},
            "--order blocks needs --sampler uniform"},
           {{"--order", "blocks", "--optimizer", "lbfgs", "--hidden", "0"},
            "--order does not apply to --optimizer lbfgs"},
           {{"--order", "blocks", "--knn", "3"}, "--order does not apply to --knn"}}) {
    TrainParams r;
    auto [run, err] = parse(bad.args, &r);
    EXPECT_FALSE(run) << bad.message;
    EXPECT_NE(err.find(bad.message), std::string::npos) << err;
  }
}

// A sweep may cross the order with other keys: each configuration records it (with the block
// settings, which come from the command), blocks and uniform configurations never share a
// schedule, the balanced sampler with blocks is refused, and an L-BFGS probe has no order.
TEST(BlockOrder, SweepKey) {
  TrainParams base;
  base.threads = 1;  // as parse_train_args() sets it
  base.block_records = 8;
  const std::vector<TrainParams> ps =
      expand_grid(parse_sweep_spec("order=uniform,blocks;lr=1e-3"), base);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].order, "uniform");
  EXPECT_EQ(ps[1].order, "blocks");
  EXPECT_FALSE(config_settings_json(ps[0]).contains("order"));  // earlier sweeps' ids unchanged
  const nlohmann::json j = config_settings_json(ps[1]);
  EXPECT_EQ(j.at("order"), "blocks");
  EXPECT_EQ(j.at("block_records"), 8);
  EXPECT_EQ(j.at("block_window"), 4);
  EXPECT_NE(schedule_key(ps[0]), schedule_key(ps[1]));
  SweepParams sweep;
  try {
    make_sweep_plan(parse_sweep_spec("order=blocks;sampler=uniform,balanced"), sweep, base, "a",
                    "b");
    ADD_FAILURE() << "balanced sampler with --order blocks accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--order blocks needs --sampler uniform"),
              std::string::npos)
        << e.what();
  }
  const std::vector<TrainParams> probes =
      expand_grid(parse_sweep_spec("optimizer=lbfgs;order=uniform,blocks"), base);
  ASSERT_EQ(probes.size(), 1u);  // one probe: the order does not apply
  EXPECT_EQ(probes[0].order, "uniform");
}

// payload_span locates the very bytes get() decodes, and hints leave every vector as it was.
TEST(PageHints, SpansHoldTheRecordsAndHintsChangeNothing) {
  testing::TempDir tmp;
  testing::SyntheticSpec spec;
  spec.dim = 3000;  // 12 KB records: overflow pages, as real caches
  spec.images_per_class = 20;
  spec.crops = 2;
  testing::make_synthetic_cache(tmp / "c", spec);
  auto reader = CacheReader::open(tmp / "c");
  ReadTxn txn = reader->begin();
  RecordView view;
  ASSERT_TRUE(txn.get(7, 1, &view));
  const void* p = nullptr;
  size_t len = 0;
  ASSERT_TRUE(txn.payload_span(7, 1, &p, &len));
  const char* lo = static_cast<const char*>(p);
  const char* data = reinterpret_cast<const char*>(view.data);
  EXPECT_GE(data, lo);
  EXPECT_LE(data + 3000 * sizeof(float), lo + len);
  EXPECT_FALSE(txn.payload_span(40, 0, &p, &len));  // no such image

  CacheSource src(tmp / "c", true);
  const std::vector<Item> items = all_items(src.images(), 2);
  const int n = static_cast<int>(items.size());
  std::vector<float> before(static_cast<size_t>(n) * 3000), after(before.size());
  src.gather(items.data(), n, nullptr, before.data());
  src.will_need(items.data(), n);  // also switches the mapping to MADV_RANDOM
  src.gather(items.data(), n, nullptr, after.data());
  EXPECT_EQ(before, after);
}

// Training from a cache (hints on) equals training from the same vectors in memory (no hints),
// for both orders, and the block order is a different but reproducible run.
TEST(PageHints, TrainingFromTheCacheEqualsMemoryInBothOrders) {
  testing::TempDir tmp;
  testing::SyntheticSpec spec;
  spec.dim = 1100;
  spec.images_per_class = 30;
  spec.crops = 3;
  testing::make_synthetic_cache(tmp / "train", spec);
  spec.seed = 8;
  spec.crops = 1;
  spec.images_per_class = 10;
  testing::make_synthetic_cache(tmp / "test", spec);
  CacheSource train(tmp / "train", true), test(tmp / "test", true);
  // The same vectors in memory.
  auto to_memory = [](CacheSource& c) {
    const std::vector<Item> items = all_items(c.images(), c.crops());
    std::vector<float> data(items.size() * c.dim());
    c.gather(items.data(), static_cast<int>(items.size()), nullptr, data.data());
    std::vector<int32_t> labels;
    for (uint32_t i : c.images()) labels.push_back(c.label(i));
    return MemorySource(std::move(data), std::move(labels), c.dim(), c.crops());
  };
  MemorySource mtrain = to_memory(train), mtest = to_memory(test);
  auto run = [&](FeatureSource& tr, FeatureSource& te, const std::string& order) {
    TrainParams p;
    p.epochs = 3;
    p.batch = 7;
    p.hidden = 8;
    p.seed = 2;
    p.order = order;
    p.block_records = 5;
    p.block_window = 3;
    TrainSetup setup{&tr, &te, tr.images(), {}, nullptr, init_head({1100, 8, 2}, 2)};
    return run_training(p, setup, nullptr);
  };
  for (const std::string order : {"uniform", "blocks"}) {
    const TrainOutcome a = run(train, test, order), b = run(mtrain, mtest, order);
    EXPECT_EQ(a.final_weights.w1, b.final_weights.w1) << order;
    EXPECT_EQ(a.epochs.back().test_loss, b.epochs.back().test_loss) << order;
  }
  EXPECT_NE(run(mtrain, mtest, "uniform").final_weights.w1,
            run(mtrain, mtest, "blocks").final_weights.w1);
}

// Jobs run in order on their own thread; an error is carried back to the caller (drain() and the
// next post() rethrow it, the jobs after it are dropped); the destructor stops with jobs pending.
TEST(ReadAheadThread, CarriesErrorsBackAndStopsCleanly) {
  {
    ReadAheadThread t;
    std::vector<int> ran;
    for (int i = 0; i < 5; ++i) t.post([&ran, i] { ran.push_back(i); });
    t.drain();
    EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4}));
  }
  {
    ReadAheadThread t;
    std::atomic<int> after{0};
    std::atomic<bool> posted{false};
    // The failing job waits until the next one is queued: else that post() may come after the
    // failure and rethrow it itself (as it should), and the test would depend on timing.
    t.post([&] {
      while (!posted) std::this_thread::yield();
      throw Error(ErrorKind::kIo, "cache x: madvise failed");
    });
    t.post([&] { ++after; });
    posted = true;
    try {
      t.drain();
      ADD_FAILURE() << "drain() did not rethrow";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIo);
      EXPECT_STREQ(e.what(), "cache x: madvise failed");
    }
    EXPECT_THROW(t.post([] {}), Error);
    EXPECT_EQ(after.load(), 0);
  }
  {
    // Destroyed with a job running and many pending: returns once the running one ends.
    std::atomic<int> ran{0};
    const auto t0 = std::chrono::steady_clock::now();
    {
      ReadAheadThread t;
      for (int i = 0; i < 1000; ++i)
        t.post([&] {
          ++ran;
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        });
    }
    EXPECT_LT(ran.load(), 1000);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  }
}

TEST(ReadAheadThread, MemoryLimitIsAtMostTheMachines) {
  const uint64_t limit = memory_limit_bytes();
  const uint64_t total = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  EXPECT_GT(limit, 0u);
  EXPECT_LE(limit, total);
}

// Pages wholly inside [r.begin, r.end) and how many of them are in the page cache.
std::pair<size_t, size_t> resident_pages(const MappedRange& r) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (r.begin + page - 1) & ~(page - 1), hi = r.end & ~(page - 1);
  if (hi <= lo) return {0, 0};
  std::vector<unsigned char> vec((hi - lo) / page);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(lo), hi - lo, vec.data()), 0);
  size_t in = 0;
  for (unsigned char v : vec) in += v & 1;
  return {vec.size(), in};
}

// A disk-backed file system: the page cache can drop its files' pages (tmpfs cannot).
bool on_disk(const std::string& path) {
  struct statfs fs {};
  constexpr long kTmpfsMagic = 0x01021994;
  return statfs(path.c_str(), &fs) == 0 && fs.f_type != kTmpfsMagic;
}

// Drops every page of the cache's data file from the page cache (unmapped from this process
// first, written to the disk), as for a cache evicted from memory. Opening the cache read its
// first pages with the kernel's read-around, in large folios, which a release can only drop whole;
// read back through hints they come as single pages, as in training from a cache larger than
// memory.
void evict_cache(const std::string& dir) {
  const std::string path = dir + "/data.mdb";
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    unsigned long long lo = 0, hi = 0;
    if (line.size() > path.size() &&
        line.compare(line.size() - path.size(), path.size(), path) == 0 &&
        std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2)
      ASSERT_EQ(madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED), 0);
  }
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  EXPECT_EQ(fsync(fd), 0);
  EXPECT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  close(fd);
}

// release() drops the pages inside the given records from the page cache, leaves the others, and
// a later gather() reads the same vectors.
TEST(PageHints, ReleaseDropsOnlyThoseRecordsPages) {
  testing::TempDir tmp;
  testing::SyntheticSpec spec;
  spec.dim = 3000;  // 12 KB records: whole pages inside each
  spec.images_per_class = 20;
  testing::make_synthetic_cache(tmp / "c", spec);
  CacheSource src(tmp / "c", true);
  const std::vector<Item> items = all_items(src.images(), 1);
  const int n = static_cast<int>(items.size());
  std::vector<float> before(static_cast<size_t>(n) * 3000), after(before.size());
  src.will_need(items.data(), 1);  // turns read-around off
  evict_cache(tmp / "c");
  src.will_need(items.data(), n);
  src.gather(items.data(), n, nullptr, before.data());  // every page in memory
  std::vector<MappedRange> spans;
  ASSERT_TRUE(src.page_spans(items.data(), n, &spans));
  ASSERT_EQ(spans.size(), items.size());
  // Give back the even images' records.
  std::vector<MappedRange> even;
  for (int i = 0; i < n; i += 2) even.push_back(spans[i]);
  src.release(even);
  if (on_disk(tmp.path())) {
    for (int i = 0; i < n; ++i) {
      const auto [pages, in] = resident_pages(spans[i]);
      ASSERT_GE(pages, 1u);
      if (i % 2 == 0)
        EXPECT_EQ(in, 0u) << "record " << i << " was given back";
      else
        EXPECT_EQ(in, pages) << "record " << i << " was not given back";
    }
  }
  src.gather(items.data(), n, nullptr, after.data());
  EXPECT_EQ(before, after);
}

// Over a blocks epoch from a cache larger than the (given) memory limit, ReadAhead gives back
// every training record once its block is done, never a held-out record, and what is gathered is
// what a source in memory gives. A cache that fits, or the uniform order, gives back nothing.
TEST(PageHints, ReadAheadGivesBackFinishedBlocksWhenTheCacheDoesNotFit) {
  testing::TempDir tmp;
  testing::SyntheticSpec spec;
  spec.dim = 3000;
  spec.images_per_class = 40;
  spec.crops = 2;
  testing::make_synthetic_cache(tmp / "c", spec);
  CacheSource src(tmp / "c", true);
  std::vector<uint32_t> train, held;  // every fifth image held out, as validation is
  for (uint32_t i : src.images()) (i % 5 == 0 ? held : train).push_back(i);
  TrainParams p;
  p.batch = 7;
  p.order = "blocks";
  p.block_records = 6;
  p.block_window = 2;
  const std::vector<Item> items = block_epoch_items(train, 2, false, 3, 1, 6, 2);
  const std::vector<Item> held_items = all_items(held, 2);
  std::vector<float> all(static_cast<size_t>(items.size()) * 3000);
  src.will_need(items.data(), 1);  // turns read-around off
  evict_cache(tmp / "c");
  src.will_need(items.data(), static_cast<int>(items.size()));
  src.will_need(held_items.data(), static_cast<int>(held_items.size()));
  src.gather(items.data(), static_cast<int>(items.size()), nullptr, all.data());
  std::vector<float> scratch(held_items.size() * 3000);
  src.gather(held_items.data(), static_cast<int>(held_items.size()), nullptr, scratch.data());
  const uint64_t cache_bytes = uint64_t{80} * 2 * 3000 * sizeof(float);
  {
    ReadAhead fits(p, src, items, 4 * cache_bytes);
    EXPECT_FALSE(fits.releasing());
    TrainParams u = p;
    u.order = "uniform";
    ReadAhead uniform(u, src, items, cache_bytes / 4);
    EXPECT_FALSE(uniform.releasing());
  }
  ReadAhead ra(p, src, items, cache_bytes / 4);
  ASSERT_TRUE(ra.releasing());
  std::vector<float> got(all.size());
  for (size_t lo = 0; lo < items.size(); lo += p.batch) {
    const size_t n = std::min<size_t>(p.batch, items.size() - lo);
    ra.before(lo, n);
    src.gather(items.data() + lo, static_cast<int>(n), nullptr, got.data() + lo * 3000);
    ra.after(lo + n);
  }
  ra.finish();
  EXPECT_EQ(got, all);
  if (!on_disk(tmp.path())) return;  // tmpfs keeps every page: nothing more to see
  std::vector<MappedRange> spans, held_spans;
  src.page_spans(items.data(), static_cast<int>(items.size()), &spans);
  src.page_spans(held_items.data(), static_cast<int>(held_items.size()), &held_spans);
  for (size_t i = 0; i < spans.size(); ++i)
    EXPECT_EQ(resident_pages(spans[i]).second, 0u) << "training record " << i << " kept";
  for (size_t i = 0; i < held_spans.size(); ++i) {
    const auto [pages, in] = resident_pages(held_spans[i]);
    EXPECT_EQ(in, pages) << "held-out record " << i << " given back";
  }
}

}  // namespace
}  // namespace vggcache
