#include "common/cache_merge.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "common/cache.h"
#include "common/error.h"
#include "common/progress.h"
#include "common/shard_set.h"

namespace vggcache {

namespace {

constexpr size_t kBatchBytes = 32u << 20;  // per write transaction

// A set given as a shard stands for the shards its manifest lists.
std::vector<std::string> expand_sets(const std::vector<std::string>& dirs) {
  std::vector<std::string> out;
  for (const auto& d : dirs) {
    if (is_shard_set(d)) {
      for (auto& s : read_shard_manifest(d)) out.push_back(std::move(s));
    } else {
      out.push_back(d);
    }
  }
  return out;
}

// Records of whole images, collected until a batch is full, then committed with their images'
// skipped entries and the new resume point.
class Batcher {
 public:
  Batcher(CacheWriter& w, const std::vector<SkippedEntry>& skipped)
      : w_(w), skipped_(skipped), floats_(w.meta().payload_floats) {
    per_batch_ = std::max<size_t>(1, kBatchBytes / record_bytes(floats_));
    const uint32_t next = w.meta().next_image;  // skipped entries below it are stored already
    while (sk_ < skipped_.size() && skipped_[sk_].image < next) ++sk_;
  }

  void add(const RecordView& v) {
    if (v.header.image != last_image_ && recs_.size() >= per_batch_) commit(v.header.image);
    last_image_ = v.header.image;
    const RecordHeader& h = v.header;
    recs_.push_back(RecordIn{h.image, h.crop, h.label, h.box, nullptr});
    buf_.insert(buf_.end(), v.payload, v.payload + floats_);
  }

  // Commits everything added so far; images [.., next_image) are then complete.
  void commit(uint32_t next_image) {
    for (size_t i = 0; i < recs_.size(); ++i) recs_[i].data = buf_.data() + i * floats_;
    for (; sk_ < skipped_.size() && skipped_[sk_].image < next_image; ++sk_)
      w_.mutable_meta().skipped.push_back(skipped_[sk_]);
    w_.put_batch(recs_, next_image);
    written_ += recs_.size();
    recs_.clear();
    buf_.clear();
  }

  uint64_t written() const { return written_ + recs_.size(); }

 private:
  CacheWriter& w_;
  const std::vector<SkippedEntry>& skipped_;
  const uint32_t floats_;
  size_t per_batch_ = 1, sk_ = 0;
  uint32_t last_image_ = UINT32_MAX;
  std::vector<RecordIn> recs_;
  std::vector<float> buf_;
  uint64_t written_ = 0;
};

}  // namespace

MergeSummary merge_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir,
                          bool overwrite, bool quiet) {
  const std::vector<std::string> dirs = expand_sets(shard_dirs);
  std::vector<std::unique_ptr<CacheReader>> readers;
  std::vector<CacheMeta> metas;
  for (const auto& d : dirs) {
    // Incomplete shards open here; check_shards then refuses them with the rerun hint.
    readers.push_back(CacheReader::open(d, {/*allow_incomplete=*/true, /*verify=*/true,
                                            /*expand=*/false}));
    metas.push_back(readers.back()->meta());
  }
  // The network and the precision first: shards of another backbone may share every setting that
  // check_shards compares (a TorchScript ResNet-50 and the native one give 2048 floats alike).
  for (size_t i = 1; i < metas.size(); ++i) {
    const CacheMeta &a = metas[0], &b = metas[i];
    std::string d;
    if (a.backbone != b.backbone)
      d = fmt::format("backbone: {} vs {}", a.backbone, b.backbone);
    else if (a.precision != b.precision)
      d = fmt::format("precision: {} vs {}", a.precision, b.precision);
    if (!d.empty())
      throw Error(ErrorKind::kMismatch,
                  fmt::format("{} was made with other settings than {}: {}", dirs[i], dirs[0], d));
  }
  const std::vector<size_t> order = check_shards(dirs, metas, /*require_complete=*/true);
  std::vector<const CacheMeta*> ordered;
  for (size_t i : order) {
    const uint64_t stored = readers[i]->record_count();
    if (stored != metas[i].records)
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("{}: {} records stored but its metadata says {}; run featcache "
                              "verify on it",
                              dirs[i], stored, metas[i].records));
    ordered.push_back(&metas[i]);
  }
  const CacheMeta target = combined_meta(ordered);

  WriterOptions wopts;
  wopts.overwrite = overwrite;
  auto writer = CacheWriter::open(out_dir, target, wopts);  // resumes an interrupted merge
  MergeSummary sum;
  sum.shards = order.size();
  if (writer->meta().complete) {
    sum.already_complete = true;
    sum.records = writer->meta().records;
    return sum;
  }
  const uint32_t start = writer->meta().next_image;
  sum.resumed_from = start;
  Batcher batch(*writer, target.skipped);
  Progress progress("merge", target.records, "records");
  const uint64_t done_before = writer->meta().records;
  for (size_t i : order) {
    const CacheMeta& m = metas[i];
    if (m.shard.end <= start) continue;
    ReadTxn txn = readers[i]->begin();
    txn.seek(std::max(start, m.shard.first), 0);
    RecordView v;
    while (txn.next(&v)) {
      if (v.header.image < m.shard.first || v.header.image >= m.shard.end)
        throw Error(
            ErrorKind::kCorrupt,
            fmt::format("{}: record ({}, {}) lies outside the shard's images [{}, {})", dirs[i],
                        v.header.image, v.header.crop, m.shard.first, m.shard.end));
      batch.add(v);
      if (!quiet) progress.update(done_before + batch.written(), batch.written());
    }
    batch.commit(m.shard.end);  // each shard ends on a committed image boundary
  }
  sum.records = writer->meta().records;
  sum.records_run = batch.written();
  if (sum.records != target.records)  // never marked complete then
    throw Error(ErrorKind::kCorrupt,
                fmt::format("{}: merged {} records but the shards' metadata says {}", out_dir,
                            sum.records, target.records));
  writer->finish();
  if (!quiet) progress.done(sum.records, sum.records_run);
  return sum;
}

}  // namespace vggcache
