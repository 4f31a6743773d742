// Where training and evaluation vectors come from: a feature cache read zero-copy from its LMDB
// memory map, or (tests) a matrix in memory. Only the batch being gathered is ever copied, so
// resident memory is bounded by the batch buffers, not by the cache size.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/cache.h"
#include "common/readahead.h"
#include "head/items.h"

namespace vggcache {

class CompactLayout;  // head/compact_layout.h

// What a CacheSource gives for each record.
enum class VectorForm {
  kPooled,       // the pooled vector (dim 25088 for VGG16; prepool-f32 records are expanded)
  kWindowMeans,  // prepool-f32: the C·K distinct window means (head/compact_layout.h)
  kMap,          // prepool-f32: the stored C·h·w map itself; cannot be standardised
};

// Per-dimension standardisation, x' = (x − mean) / std (stored with the head).
struct Standardizer {
  std::vector<float> mean;  // dim
  std::vector<float> std;   // dim; dimensions with std < 1e-6 (e.g. always-zero) get 1
  bool empty() const { return mean.empty(); }
};

class FeatureSource {
 public:
  virtual ~FeatureSource() = default;
  virtual int dim() const = 0;
  virtual int crops() const = 0;                            // views stored per image
  virtual const std::vector<uint32_t>& images() const = 0;  // images that have records
  virtual int32_t label(uint32_t image) const = 0;
  // Copies the vectors of items[0..n) into out (n × dim), standardised when `s` is non-empty.
  // Runs in parallel (TBB). Throws Error(kCorrupt) naming the record if one is missing or its
  // label disagrees with the metadata.
  virtual void gather(const Item* items, int n, const Standardizer* s, float* out) = 0;
  // Non-null when the vectors are compact (dim() = layout.input_dim(): the window means or the map
  // of a prepool-f32 cache, see head/compact_layout.h) instead of the full pooled vectors.
  virtual const CompactLayout* compact() const { return nullptr; }
  // Page hint for the records of items[0..n), for a cache larger than memory (a no-op for
  // sources in memory; it never changes what gather() gives): called before they are gathered,
  // so the reads run in the background while earlier batches train.
  virtual void will_need(const Item* /*items*/, int /*n*/) {}
  // Where the records of items[0..n) lie in the cache's memory map, one span per item in item
  // order (a missing record gives an empty span; gather() reports it), for read-ahead that
  // follows the training order (train_head/read_ahead.h). False, and nothing filled, for sources
  // in memory.
  virtual bool page_spans(const Item* /*items*/, int /*n*/, std::vector<MappedRange>* /*out*/) {
    return false;
  }
  // Gives back the whole pages inside each span (MappedFile::release): for records already
  // gathered that the epoch will not read again, when the cache is larger than memory. Never
  // changes what gather() gives; a later read of them reads the disk again.
  virtual void release(const std::vector<MappedRange>& /*spans*/) {}
};

// Reads a complete cache. Holds one read transaction per gather slot (LMDB readers are
// single-threaded objects; each slot is used by one task at a time).
class CacheSource : public FeatureSource {
 public:
  // `form`: what a prepool-f32 cache gives (compact forms are read from the stored map without
  // expanding it); other codecs always give their pooled vectors.
  CacheSource(const std::string& dir, bool verify, VectorForm form = VectorForm::kPooled);
  ~CacheSource() override;
  const CacheMeta& meta() const { return reader_->meta(); }
  int dim() const override;
  int crops() const override;
  const std::vector<uint32_t>& images() const override { return images_; }
  int32_t label(uint32_t image) const override;
  void gather(const Item* items, int n, const Standardizer* s, float* out) override;
  const CompactLayout* compact() const override { return layout_.get(); }
  // madvise() on the mapped values (common/readahead.h); thread-safe. The first hint turns off
  // the kernel's read-around for the cache's mapping (MappedFile::open_random): reads are then
  // exactly the records asked for.
  void will_need(const Item* items, int n) override;
  bool page_spans(const Item* items, int n, std::vector<MappedRange>* out) override;
  void release(const std::vector<MappedRange>& spans) override;

 private:
  std::unique_ptr<CacheReader> reader_;
  std::unique_ptr<CompactLayout> layout_;  // set when reading compact vectors
  std::vector<ReadTxn> txns_;
  std::vector<uint32_t> images_;
  std::mutex hint_mu_;                 // hints come from a prefetch task and the read-ahead thread
  std::unique_ptr<ReadTxn> hint_txn_;  // locates records for hints; destroyed before reader_
  // Mappings switched to MADV_RANDOM by the first hint into them (one per cache or shard): from
  // then on, every gather() also asks for its own records first (validation reads included).
  std::vector<MappedFile> random_maps_;
  std::atomic<bool> hinted_{false};
};

// Vectors held in memory: row (image · crops + crop) of data (images × crops rows × dim).
class MemorySource : public FeatureSource {
 public:
  MemorySource(std::vector<float> data, std::vector<int32_t> labels, int dim, int crops);
  int dim() const override { return dim_; }
  int crops() const override { return crops_; }
  const std::vector<uint32_t>& images() const override { return images_; }
  int32_t label(uint32_t image) const override { return labels_[image]; }
  void gather(const Item* items, int n, const Standardizer* s, float* out) override;
  const float* row(uint32_t image, uint32_t crop) const {
    return data_.data() + (static_cast<size_t>(image) * crops_ + crop) * dim_;
  }

 private:
  std::vector<float> data_;
  std::vector<int32_t> labels_;
  int dim_, crops_;
  std::vector<uint32_t> images_;
};

// Mean and std (population, as numpy's default) per dimension over every crop of `images`.
// Summed in double, each dimension in item order, so the result does not depend on --threads.
Standardizer compute_standardizer(FeatureSource& src, const std::vector<uint32_t>& images);

// Copies one vector, standardising it when `s` is non-empty.
void copy_vector(const float* in, int dim, const Standardizer* s, float* out);

}  // namespace vggcache
