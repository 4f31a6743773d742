// Read-ahead over one epoch's training items, in training order, for a cache read through its
// memory map (FeatureSource::will_need): the reads run on a thread of their own while earlier
// batches train, and with --order blocks from a cache larger than memory the pages of blocks the
// epoch has finished are given back (FeatureSource::release) so that reclaim does not stall the
// next reads (docs/scale.md, section 3). Nothing here changes what is gathered.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/readahead.h"
#include "head/feature_source.h"
#include "train_head/params.h"

namespace vggcache {

class ReadAhead {
 public:
  // `items` must outlive this object. Starts no thread for a source in memory. `memory_limit`:
  // the bytes this process may use (memory_limit_bytes(); tests pass their own).
  ReadAhead(const TrainParams& p, FeatureSource& src, const std::vector<Item>& items);
  ReadAhead(const TrainParams& p, FeatureSource& src, const std::vector<Item>& items,
            uint64_t memory_limit);
  ~ReadAhead();  // stops the thread (jobs not started are dropped); never throws
  // Before items [lo, lo + n) are gathered: asks for the records up to `ahead` items past them.
  // Rethrows an error of the read-ahead thread.
  void before(size_t lo, size_t n);
  // Items [0, upto) have been gathered: gives back the blocks none of the later items read (when
  // releasing). Rethrows an error of the read-ahead thread.
  void after(size_t upto);
  // End of the epoch: waits for the thread's jobs and rethrows an error of one.
  void finish();
  // Whether pages are given back (exposed for the tests).
  bool releasing() const { return release_; }

 private:
  FeatureSource& src_;
  const std::vector<Item>& items_;
  size_t ahead_ = 0;   // items asked for past the batch being gathered
  size_t hinted_ = 0;  // items [0, hinted_) were asked for
  bool release_ = false;
  // --order blocks with release: the epoch's blocks ordered by the position of their last item
  // (ends_[k].first), with the positions of their items; released_ blocks of it given back.
  std::vector<std::pair<size_t, std::vector<uint32_t>>> ends_;
  size_t released_ = 0;
  std::unique_ptr<ReadAheadThread> thread_;
};

}  // namespace vggcache
