// featcache: inspect, export, verify and compare caches; merge shards or list them as a set.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/cache.h"
#include "common/cache_check.h"
#include "common/cache_merge.h"
#include "common/cli.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/npy.h"
#include "common/shard_set.h"

namespace vggcache {
namespace {

// Size on disk against the records' payload (records × payload values × value bytes): what the
// layout costs (schema 1 rounded each record up to whole LMDB pages).
nlohmann::json disk_usage(const std::string& dir, const CacheReader& reader) {
  const CacheMeta& m = reader.meta();
  std::vector<std::string> dirs{dir};
  if (is_shard_set(dir)) dirs = read_shard_manifest(dir);
  uint64_t bytes = 0;
  for (const auto& d : dirs) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(std::filesystem::path(d) / "data.mdb", ec);
    if (!ec) bytes += n;
  }
  const uint64_t payload = reader.record_count() * m.payload_floats * codec_value_bytes(m.codec);
  return {{"data_mdb_bytes", bytes},
          {"payload_bytes", payload},
          {"ratio", payload ? std::round(1e4 * static_cast<double>(bytes) / payload) / 1e4 : 0.0}};
}

int cmd_info(const std::string& dir, bool with_images) {
  auto reader = CacheReader::open(dir, {/*allow_incomplete=*/true, /*verify=*/false});
  const CacheMeta& m = reader->meta();
  nlohmann::json j = m.to_json();
  nlohmann::json out = {{"cache", dir},
                        {"records", reader->record_count()},
                        {"images", m.images.size()},
                        {"dim", m.dim},
                        {"classes", m.classes},
                        {"complete", m.complete},
                        {"codec", j["codec"]},
                        {"backbone", m.backbone},
                        {"cut", m.cut},
                        {"precision", m.precision},
                        {"codec_precision", codec_precision_note(m.codec)},
                        {"bytes_per_record", record_bytes(m.codec, m.payload_floats)},
                        {"disk", disk_usage(dir, *reader)},
                        {"skipped", j["skipped"]},
                        {"settings", {{"weights", j["weights"]}, {"preprocess", j["preprocess"]}}},
                        {"feature_fingerprint", m.feature_fingerprint()},
                        {"schema_version", m.schema_version},
                        {"tool_version", m.tool_version},
                        {"source_dir", m.source_dir},
                        {"extra", j["extra"]}};
  if (m.shard.present()) out["shard"] = j["shard"];
  if (m.cut == "pool4") out["cut_shape"] = m.cut_shape;  // C × h × w of each record
  if (is_shard_set(dir)) out["shard_set"] = read_shard_manifest(dir);
  if (with_images) out["image_list"] = j["images"];
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int cmd_export(const std::string& dir, const std::string& prefix) {
  auto reader = CacheReader::open(dir);
  const CacheMeta& m = reader->meta();
  const uint64_t n = reader->record_count();
  NpyWriter feats(prefix + ".npy", "<f4", {n, m.dim}, sizeof(float));
  NpyWriter labels(prefix + ".labels.npy", "<i8", {n}, sizeof(int64_t));
  std::string csv_path = prefix + ".index.csv";
  std::ofstream csv(csv_path);
  if (!csv) throw Error(ErrorKind::kIo, csv_path + ": cannot create");
  csv << "record,image,path,crop,label,x,y,w,h,flip\n";
  ReadTxn txn = reader->begin();
  txn.seek_first();
  RecordView v;
  uint64_t i = 0;
  while (txn.next(&v)) {
    const auto& h = v.header;
    feats.write(v.data, m.dim);
    int64_t lab = h.label;
    labels.write(&lab, 1);
    const std::string path = csv_field(m.images.at(h.image).path);
    csv << i++ << ',' << h.image << ',' << path << ',' << h.crop << ',' << h.label << ',' << h.box.x
        << ',' << h.box.y << ',' << h.box.w << ',' << h.box.h << ',' << (h.box.flipped ? 1 : 0)
        << '\n';
  }
  feats.close();
  labels.close();
  csv.close();
  if (!csv) throw Error(ErrorKind::kIo, csv_path + ": write failed");
  std::fprintf(stderr, "exported %llu records × %u to %s.npy, %s.labels.npy, %s\n",
               static_cast<unsigned long long>(i), m.dim, prefix.c_str(), prefix.c_str(),
               csv_path.c_str());
  return 0;
}

int cmd_verify(const std::string& dir, bool allow_incomplete) {
  VerifyReport rep = verify_cache(dir, 20, allow_incomplete);
  for (const auto& p : rep.problems) std::fprintf(stderr, "featcache: %s\n", p.c_str());
  std::printf("%s: %llu records, %llu images: %s\n", dir.c_str(),
              static_cast<unsigned long long>(rep.records),
              static_cast<unsigned long long>(rep.images_with_records),
              rep.ok() ? "OK" : fmt::format("{} problem(s)", rep.problems.size()).c_str());
  return rep.ok() ? 0 : 1;
}

int cmd_diff(const std::string& a, const std::string& b) {
  std::string d = diff_caches(a, b);
  if (d.empty()) {
    std::printf("%s and %s are identical, record for record\n", a.c_str(), b.c_str());
    return 0;
  }
  std::printf("%s and %s differ: %s\n", a.c_str(), b.c_str(), d.c_str());
  return 1;
}

int cmd_merge(const std::vector<std::string>& shards, const std::string& out, bool overwrite,
              bool quiet) {
  MergeSummary s = merge_shards(shards, out, overwrite, quiet);
  if (s.already_complete) {
    std::printf("featcache: %s is already merged (%llu records from %zu shards)\n", out.c_str(),
                static_cast<unsigned long long>(s.records), s.shards);
    return 0;
  }
  std::printf("featcache: merged %zu shards into %s: %llu records%s\n", s.shards, out.c_str(),
              static_cast<unsigned long long>(s.records),
              s.resumed_from ? fmt::format(" (resumed at image {})", s.resumed_from).c_str() : "");
  return 0;
}

int cmd_make_set(const std::string& set_dir, const std::vector<std::string>& shards) {
  write_shard_manifest(set_dir, shards);
  CacheMeta m = read_cache_meta(set_dir);
  std::printf("featcache: %s/%s lists %zu shards: %llu records, %zu images%s\n", set_dir.c_str(),
              kShardManifest, shards.size(), static_cast<unsigned long long>(m.records),
              m.images.size(), m.complete ? "" : " (not all shards complete yet)");
  return 0;
}

}  // namespace
}  // namespace vggcache

int main(int argc, char** argv) {
  CLI::App app{"featcache: inspect, export and verify vggcache feature caches"};
  app.require_subcommand(1);
  std::string dir, prefix, other;
  bool with_images = false, allow_incomplete = false;
  auto* info = app.add_subcommand("info", "print the cache metadata as JSON");
  info->add_option("CACHE", dir, "cache directory")->required();
  info->add_flag("--images", with_images, "include the full image list");
  auto* exp = app.add_subcommand("export", "write PREFIX.npy, PREFIX.labels.npy, PREFIX.index.csv");
  exp->add_option("CACHE", dir, "cache directory")->required();
  exp->add_option("PREFIX", prefix, "output path prefix")->required();
  auto* ver = app.add_subcommand("verify", "check every record; exit 0 only if all is well");
  ver->add_option("CACHE", dir, "cache directory")->required();
  ver->add_flag("--allow-incomplete", allow_incomplete,
                "check what an interrupted or running extraction has committed so far");
  auto* dif = app.add_subcommand("diff", "compare two caches record for record (exit 0 if equal)");
  dif->add_option("A", dir, "first cache")->required();
  dif->add_option("B", other, "second cache")->required();
  std::vector<std::string> shards;
  bool overwrite = false, quiet = false;
  auto* mrg = app.add_subcommand(
      "merge", "merge the shard caches of one extraction (extract --shard) into one cache");
  mrg->add_option("SHARD", shards, "shard caches (any order) or shard sets")->required();
  mrg->add_option("--out", other, "merged cache to write (an interrupted merge resumes)")
      ->required();
  mrg->add_flag("--overwrite", overwrite, "replace an existing cache made from other shards");
  mrg->add_flag("--quiet", quiet, "no progress lines");
  auto* set = app.add_subcommand(
      "make-set", "write DIR/shards.json so the shards read as one cache (train_head, featcache)");
  set->add_option("DIR", dir, "shard-set directory (usually the one holding the shards)")
      ->required();
  set->add_option("SHARD", shards, "shard caches (any order)")->required();
  CLI11_PARSE(app, argc, argv);
  return vggcache::run_tool("featcache", [&] {
    if (*info) return vggcache::cmd_info(dir, with_images);
    if (*exp) return vggcache::cmd_export(dir, prefix);
    if (*dif) return vggcache::cmd_diff(dir, other);
    if (*mrg) return vggcache::cmd_merge(shards, other, overwrite, quiet);
    if (*set) return vggcache::cmd_make_set(dir, shards);
    return vggcache::cmd_verify(dir, allow_incomplete);
  });
}
