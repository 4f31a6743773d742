#include "common/shard_set.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/cache.h"
#include "common/error.h"
#include "common/file_util.h"

namespace fs = std::filesystem;

namespace vggcache {

using nlohmann::json;

namespace {

constexpr const char* kManifestFormat = "vggcache-shard-set";

// A non-negative integer from the environment, or -1 when unset. Throws for garbage.
int64_t env_index(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (*end || errno || x < 0 || x > UINT32_MAX)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--shard auto: {}='{}' is not a non-negative integer", name, v));
  return x;
}

std::string describe(const std::string& dir, const CacheMeta& m) {
  return fmt::format("{} (shard {}/{})", dir, m.shard.index, m.shard.count);
}

// The metadata without the image list, skipped list and slice: what first_difference compares
// apart from the images, at a fraction of the cost (it serialises whole metadata).
CacheMeta settings_of(const CacheMeta& m) {
  CacheMeta s;
  s.codec = m.codec;
  s.dim = m.dim;
  s.payload_floats = m.payload_floats;
  s.prepool_shape = m.prepool_shape;
  s.cut = m.cut;
  s.cut_shape = m.cut_shape;
  s.precision = m.precision;
  s.backbone = m.backbone;
  s.classes = m.classes;
  s.weights = m.weights;
  s.preprocess = m.preprocess;
  return s;
}

// Settings apart from the slice itself: every shard of one extraction agrees on all of them,
// including the full image list.
std::string settings_difference(const CacheMeta& a, const CacheMeta& b) {
  std::string d = CacheMeta::first_difference(settings_of(a), settings_of(b));
  if (!d.empty()) return d;
  if (a.images.size() != b.images.size())
    return fmt::format("images: {} vs {} files", a.images.size(), b.images.size());
  for (size_t i = 0; i < a.images.size(); ++i) {
    const ImageEntry &x = a.images[i], &y = b.images[i];
    if (x.path != y.path || x.sha256 != y.sha256 || x.label != y.label || x.bytes != y.bytes)
      return fmt::format("images[{}]: {} vs {}", i, x.path, y.path);
  }
  return "";
}

}  // namespace

ShardSpec parse_shard_spec(const std::string& text) {
  if (text != "auto") {
    unsigned i = 0, n = 0;
    char tail = 0;
    if (std::sscanf(text.c_str(), "%u/%u%c", &i, &n, &tail) != 2 || n < 1 || i >= n ||
        text.find_first_of("-+ ") != std::string::npos)
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("--shard must be I/N with 0 <= I < N, or auto (got '{}')", text));
    return {i, n};
  }
  int64_t index = env_index("SLURM_ARRAY_TASK_ID");
  const bool slurm = index >= 0;
  if (!slurm) index = env_index("JOB_COMPLETION_INDEX");
  if (index < 0)
    throw Error(ErrorKind::kInvalidArgument,
                "--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm array job) nor "
                "JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; pass --shard I/N");
  int64_t count = env_index("VGGCACHE_SHARD_COUNT");
  if (count < 0 && slurm) {
    // SLURM_ARRAY_TASK_COUNT counts the tasks of this submission, which is the shard count only
    // when the array is 0..N-1; a resubmitted task alone (--array=2) would read 1.
    const int64_t n = env_index("SLURM_ARRAY_TASK_COUNT"), lo = env_index("SLURM_ARRAY_TASK_MIN"),
                  hi = env_index("SLURM_ARRAY_TASK_MAX");
    if (n > 0 && lo == 0 && hi == n - 1)
      count = n;
    else if (n > 0)
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("--shard auto: the array is not 0..N-1 (tasks {}..{}, {} of them), "
                              "so its task count is not the shard count; set "
                              "VGGCACHE_SHARD_COUNT or pass --shard I/N",
                              lo, hi, n));
  }
  if (count < 0)
    throw Error(ErrorKind::kInvalidArgument,
                slurm ? "--shard auto: SLURM_ARRAY_TASK_COUNT is not set; set VGGCACHE_SHARD_COUNT"
                      : "--shard auto: JOB_COMPLETION_INDEX is set but not VGGCACHE_SHARD_COUNT "
                        "(set it to the Job's completions)");
  if (count < 1 || index >= count)
    throw Error(
        ErrorKind::kInvalidArgument,
        fmt::format("--shard auto: task index {} is not below the shard count {}", index, count));
  return {static_cast<uint32_t>(index), static_cast<uint32_t>(count)};
}

ShardInfo shard_slice(uint32_t index, uint32_t count, uint32_t n_images, uint32_t grain) {
  if (count == 0 || index >= count || grain == 0)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("shard {}/{} with chunks of {} images", index, count, grain));
  const uint64_t chunks = (uint64_t{n_images} + grain - 1) / grain;
  auto bound = [&](uint64_t i) {
    return static_cast<uint32_t>(std::min<uint64_t>(n_images, (i * chunks / count) * grain));
  };
  return {index, count, bound(index), bound(index + 1)};
}

std::vector<size_t> check_shards(const std::vector<std::string>& dirs,
                                 const std::vector<CacheMeta>& metas, bool require_complete) {
  if (dirs.empty()) throw Error(ErrorKind::kInvalidArgument, "no shard caches given");
  for (size_t i = 0; i < dirs.size(); ++i)
    if (!metas[i].shard.present())
      throw Error(ErrorKind::kMismatch, dirs[i] + " is not a shard (made without extract --shard)");
  const uint32_t count = metas[0].shard.count;
  std::map<uint32_t, size_t> by_index;
  for (size_t i = 0; i < dirs.size(); ++i) {
    const CacheMeta& m = metas[i];
    if (m.shard.count != count)
      throw Error(ErrorKind::kMismatch,
                  fmt::format("{} is one of {} shards but {} is one of {}", describe(dirs[i], m),
                              m.shard.count, describe(dirs[0], metas[0]), count));
    auto [it, fresh] = by_index.emplace(m.shard.index, i);
    if (!fresh)
      throw Error(ErrorKind::kMismatch,
                  fmt::format("duplicated shard: {} and {} are both shard {}/{}", dirs[it->second],
                              dirs[i], m.shard.index, count));
    const std::string d = settings_difference(metas[0], m);
    if (!d.empty())
      throw Error(ErrorKind::kMismatch,
                  fmt::format("{} was made with other settings than {}: {}", describe(dirs[i], m),
                              describe(dirs[0], metas[0]), d));
  }
  for (uint32_t k = 0; k < count; ++k)
    if (!by_index.count(k))
      throw Error(ErrorKind::kMismatch, fmt::format("shard {}/{} is missing (have {} of {} shards)",
                                                    k, count, by_index.size(), count));
  std::vector<size_t> order;
  uint32_t expect_first = 0;
  for (const auto& [k, i] : by_index) {
    const CacheMeta& m = metas[i];
    if (m.shard.first != expect_first)
      throw Error(ErrorKind::kMismatch,
                  fmt::format("{} holds images [{}, {}) but the shards before it end at image {}: "
                              "the shards were cut differently (another --batch or --crops)",
                              describe(dirs[i], m), m.shard.first, m.shard.end, expect_first));
    expect_first = m.shard.end;
    order.push_back(i);
  }
  if (expect_first != metas[0].images.size())
    throw Error(ErrorKind::kMismatch,
                fmt::format("the shards end at image {} but the image list has {}", expect_first,
                            metas[0].images.size()));
  if (require_complete) {
    for (size_t i : order) {
      const CacheMeta& m = metas[i];
      if (!m.complete)
        throw Error(
            ErrorKind::kIncomplete,
            fmt::format("{} is incomplete ({} of images [{}, {}) done); rerun its task "
                        "(extract with the same flags and --shard {}/{}) to finish it",
                        describe(dirs[i], m), std::max(m.next_image, m.shard.first) - m.shard.first,
                        m.shard.first, m.shard.end, m.shard.index, m.shard.count));
    }
  }
  return order;
}

CacheMeta combined_meta(const std::vector<const CacheMeta*>& ordered) {
  CacheMeta out = *ordered.front();
  out.shard = ShardInfo{};
  out.records = 0;
  out.skipped.clear();
  out.complete = true;
  out.next_image = static_cast<uint32_t>(out.images.size());
  bool prefix_done = true;  // images before the first unfinished shard are all committed
  for (const CacheMeta* m : ordered) {
    out.records += m->records;
    out.skipped.insert(out.skipped.end(), m->skipped.begin(), m->skipped.end());
    if (!m->complete && prefix_done) {
      out.complete = false;
      out.next_image = std::max(m->next_image, m->shard.first);
      prefix_done = false;
    }
  }
  out.extra["shards"] = ordered.size();
  return out;
}

bool is_shard_set(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / kShardManifest, ec);
}

std::vector<std::string> read_shard_manifest(const std::string& set_dir) {
  const std::string path = (fs::path(set_dir) / kShardManifest).string();
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::kIo, path + ": cannot read");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> dirs;
  try {
    if (j.is_discarded() || j.at("format") != kManifestFormat)
      throw Error(ErrorKind::kCorrupt, path + " is not a vggcache shard-set manifest");
    for (const auto& s : j.at("shards")) {
      fs::path p = s.get<std::string>();
      dirs.push_back((p.is_absolute() ? p : fs::path(set_dir) / p).lexically_normal().string());
    }
  } catch (const json::exception& e) {
    throw Error(ErrorKind::kCorrupt, path + ": malformed shard-set manifest: " + e.what());
  }
  if (dirs.empty()) throw Error(ErrorKind::kCorrupt, path + " lists no shards");
  return dirs;
}

void write_shard_manifest(const std::string& set_dir, const std::vector<std::string>& shard_dirs) {
  std::vector<CacheMeta> metas;
  for (const auto& d : shard_dirs) metas.push_back(read_cache_meta(d));
  const std::vector<size_t> order = check_shards(shard_dirs, metas, /*require_complete=*/false);
  make_directories(set_dir);
  std::error_code ec;
  const fs::path base = fs::absolute(set_dir, ec).lexically_normal();
  json list = json::array();
  for (size_t i : order) {
    const fs::path abs = fs::absolute(shard_dirs[i], ec).lexically_normal();
    const fs::path rel = abs.lexically_relative(base);
    // Relative paths below the set keep it valid when the whole tree moves or is mounted elsewhere.
    const bool below = !rel.empty() && *rel.begin() != "..";
    list.push_back(below ? rel.string() : abs.string());
  }
  json j = {{"format", kManifestFormat}, {"count", order.size()}, {"shards", list}};
  const std::string path = (fs::path(set_dir) / kShardManifest).string();
  write_file_atomically(path, j.dump(2) + "\n");
}

VerifyReport verify_shard_set(const std::string& set_dir, size_t max_problems,
                              bool allow_incomplete) {
  VerifyReport rep;
  auto problem = [&](std::string s) {
    if (rep.problems.size() < max_problems) rep.problems.push_back(std::move(s));
  };
  const std::vector<std::string> dirs = read_shard_manifest(set_dir);
  std::vector<CacheMeta> metas;
  std::vector<std::string> readable;
  for (const auto& d : dirs) {
    try {
      metas.push_back(read_cache_meta(d));
      readable.push_back(d);
    } catch (const Error& e) {
      problem(e.what());
    }
  }
  if (!readable.empty()) {
    try {
      check_shards(readable, metas, !allow_incomplete);
    } catch (const Error& e) {
      problem(e.what());
    }
  }
  for (const auto& d : readable) {
    VerifyReport r = verify_cache(d, max_problems, allow_incomplete);
    rep.records += r.records;
    rep.images_with_records += r.images_with_records;
    for (auto& p : r.problems) problem(d + ": " + p);
  }
  return rep;
}

}  // namespace vggcache
