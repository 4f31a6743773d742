// What one trained configuration leaves in its directory, the same files as a single run:
// head.bin (built here for both, so a sweep's head equals a single run's byte for byte) and
// summary.json; metrics.jsonl is appended epoch by epoch while it trains.
#pragma once
#include <cstdint>
#include <string>

#include "common/cache_meta.h"
#include "train_head/batch_schedule.h"
#include "head/head_file.h"
#include "train_head/params.h"
#include "train_head/trainer.h"

namespace vggcache {

// The head file of a finished run: `weights` (out.selected_weights, moved in by the callers: a
// full-width head is 25 MB at hidden 256), with the settings that made them. `standardizer` is
// over the full-width vectors (full_width_standardizer()), as head.bin keeps it.
HeadFile make_head_file(const TrainParams& p, const CacheMeta& train_meta,
                        const Standardizer& standardizer, const TrainOutcome& out,
                        HeadWeights weights);

// Writes RUN_DIR/head.bin and RUN_DIR/summary.json of a configuration trained in a sweep
// (`standardizer` as for make_head_file). Moves out.selected_weights into head.bin's writing:
// they are empty afterwards.
void write_config_outputs(const std::string& run_dir, const TrainParams& p,
                          const CacheMeta& train_meta, const CacheMeta& test_meta,
                          const ImageSplit& split, int test_images,
                          const Standardizer& standardizer, TrainOutcome& out,
                          uint64_t peak_rss_anon);

}  // namespace vggcache
