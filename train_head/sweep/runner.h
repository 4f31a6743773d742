// `train_head --sweep SPEC --out SWEEP_DIR ...`: trains every configuration of a sweep (or of its
// --shard) over one memory-mapped cache and ranks them on the validation split.
//
// Configurations sharing a batch schedule (sweep_plan.h: schedule_key) form units, trained by
// run_training_shared(): each batch is gathered once for all heads of the unit; units of other
// schedules run at the same time, at most --parallel configurations in all, on the one TBB pool
// of --threads threads. Validation and test vectors are read into memory once and shared.
//
// SWEEP_DIR/
//   sweep.json           identity and configuration list (checked on resume and --collect)
//   <id>/                metrics.jsonl, summary.json, head.bin, done.json: a single run's files
//   .tmp-<id>/           a configuration in training; renamed to <id>/ once complete
//   results.csv, results.json, best.json
// A rerun of the same command skips finished configurations and trains the rest again from the
// start; every result equals an uninterrupted sweep's (each configuration is a pure function of
// its settings, whatever it was trained with).
#pragma once
#include "train_head/params.h"

namespace vggcache {

// Runs the sweep; `base` holds the unswept settings, the caches, SWEEP_DIR (out_dir) and
// --threads. Returns the exit status.
int run_sweep(const TrainParams& base, const SweepParams& sweep);

}  // namespace vggcache
