#include "train_head/read_ahead.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace vggcache {

ReadAhead::ReadAhead(const TrainParams& p, FeatureSource& src, const std::vector<Item>& items)
    : ReadAhead(p, src, items, memory_limit_bytes()) {}

ReadAhead::ReadAhead(const TrainParams& p, FeatureSource& src, const std::vector<Item>& items,
                     uint64_t limit)
    : src_(src), items_(items) {
  const bool blocks = p.order == "blocks";
  // Two batches ahead; with blocks, two whole windows, so that while one window is gathered the
  // next is read in long runs.
  ahead_ = 2 * static_cast<size_t>(p.batch);
  if (blocks) ahead_ = std::max(ahead_, 2 * static_cast<size_t>(p.block_records) * p.block_window);
  std::vector<MappedRange> first;
  if (items.empty() || !src.page_spans(items.data(), 1, &first)) return;  // in memory: no reads
  const uint64_t record_bytes = std::max<uint64_t>(1, first[0].end - first[0].begin);
  const uint64_t cache_bytes =
      record_bytes * src.images().size() * static_cast<uint64_t>(src.crops());
  // A cache larger than half the memory allowed cannot stay in the page cache beside the head
  // and its buffers, so each epoch reads it from the disk anyway: pages of finished blocks are
  // given back. A cache that fits keeps its pages for the next epoch (giving them back would make
  // every epoch read the disk). Only the block order finishes with whole blocks; the uniform
  // order reads records in random order to the epoch's end.
  release_ = blocks && cache_bytes > limit / 2;
  if (release_) {
    // What is read ahead must fit beside what is in use: at most an eighth of the limit (the
    // records of the batch being gathered, the window being trained and the head share the rest),
    // but never less than a batch.
    ahead_ = std::min<size_t>(ahead_, std::max<uint64_t>(p.batch, limit / 8 / record_bytes));
    std::unordered_map<uint64_t, size_t> index;  // block -> its place in ends_
    const uint64_t crops = static_cast<uint64_t>(src.crops());
    for (size_t i = 0; i < items.size(); ++i) {
      const uint64_t block = (uint64_t{items[i].image} * crops + items[i].crop) / p.block_records;
      auto [it, fresh] = index.emplace(block, ends_.size());
      if (fresh) ends_.emplace_back(0, std::vector<uint32_t>{});
      ends_[it->second].first = i;
      ends_[it->second].second.push_back(static_cast<uint32_t>(i));
    }
    std::sort(ends_.begin(), ends_.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  thread_ = std::make_unique<ReadAheadThread>();
}

ReadAhead::~ReadAhead() = default;

void ReadAhead::before(size_t lo, size_t n) {
  if (!thread_) return;
  const size_t upto = std::min(items_.size(), lo + n + ahead_);
  if (upto <= hinted_) return;
  const Item* first = items_.data() + hinted_;
  const int count = static_cast<int>(upto - hinted_);
  thread_->post([this, first, count] { src_.will_need(first, count); });
  hinted_ = upto;
}

void ReadAhead::after(size_t upto) {
  if (!release_) return;
  std::vector<Item> done;
  for (; released_ < ends_.size() && ends_[released_].first < upto; ++released_)
    for (uint32_t i : ends_[released_].second) done.push_back(items_[i]);
  if (done.empty()) return;
  thread_->post([this, done = std::move(done)] {
    std::vector<MappedRange> spans;
    src_.page_spans(done.data(), static_cast<int>(done.size()), &spans);
    src_.release(spans);
  });
}

void ReadAhead::finish() {
  if (thread_) thread_->drain();
}

}  // namespace vggcache
