// What every training run checks of its two caches before it trains: a single run and each
// sweep call this once, so both refuse and warn alike.
#pragma once
#include <string>

#include "common/cache_meta.h"

namespace vggcache {

// Error(kMismatch) naming the cache when either holds another cut than pool5 (pool4 maps
// are for fine-tuning block 5, train_head/finetune_run.h, which does not call this),
// check_caches_pair() (head/feature_check.h: Error(kMismatch) naming both caches), then
// Error(kInvalidArgument) when the training cache has fewer than two classes; warns (spdlog) when
// the features come from random weights. Reads only its arguments; thread-safe.
void check_training_caches(const CacheMeta& train, const std::string& train_dir,
                           const CacheMeta& test, const std::string& test_dir);

}  // namespace vggcache
