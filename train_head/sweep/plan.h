// What a sweep trains and in which groups: its identity, the configurations with their ids, the
// shard slices, and the units (configurations that share a batch schedule, trained together) and
// waves (units trained at the same time) the runner executes.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train_head/params.h"
#include "train_head/sweep/spec.h"

namespace vggcache {

struct SweepConfig {
  size_t index = 0;  // position in the sweep's configuration list (grid or draw order)
  std::string id;    // 12 hex digits: a hash of the settings and the sweep identity
  TrainParams params;
};

struct SweepPlan {
  // What makes two runs the same sweep: spec, mode, samples, seed, val-fraction, the unswept
  // settings and the caches' fingerprints (not --threads, --parallel or --shard, which change no
  // result). Stored in SWEEP_DIR/sweep.json and checked on resume and collect.
  nlohmann::json identity;
  std::string identity_hash;  // 16 hex digits of sha256(identity)
  std::vector<SweepConfig> configs;
};

// Expands the spec (grid, or `sweep.samples` random draws from base.seed) over `base` and names
// each configuration. The configurations are validated as single runs are. `finetune`, when not
// null, is what else a sweep fine-tuning block 5 starts from (the weights, the --init-head),
// stored as identity.finetune (absent otherwise, so pool5 sweeps keep their identities).
SweepPlan make_sweep_plan(const SweepSpec& spec, const SweepParams& sweep, const TrainParams& base,
                          const std::string& train_fingerprint, const std::string& test_fingerprint,
                          const nlohmann::json& finetune = nullptr);

// The content of SWEEP_DIR/sweep.json: identity, its hash, every configuration's id and settings,
// and (informational) the cache paths.
nlohmann::json sweep_json(const SweepPlan& plan, const TrainParams& base);

// Refuses (Error(kMismatch)) a stored sweep.json of another sweep, naming `what` and the first
// identity field that differs.
void check_same_sweep(const nlohmann::json& stored, const nlohmann::json& identity,
                      const std::string& what);

// First differing field of two JSON objects ("spec.lr: [0.001] vs [0.0003]"), "" when equal.
std::string json_difference(const nlohmann::json& a, const nlohmann::json& b,
                            const std::string& prefix = "");

// What fixes a configuration's batch schedule and data: batch, epochs, seed (crops, shuffles and
// the val split), all-crops, standardize. Configurations with equal keys can share batches;
// L-BFGS and fine-tuning configurations share nothing (each key is the configuration's own).
std::string schedule_key(const TrainParams& p);

// Indexes (into plan.configs) of shard `index` of `count`: the configurations ordered by schedule
// key (so shards keep groups whole), then cut into `count` contiguous, near-equal slices.
// Slices are disjoint and cover every configuration. (common/shard_set.h: shard_slice cuts an
// extraction's image list the same way.)
std::vector<size_t> shard_configs(const std::vector<SweepConfig>& configs, int index, int count);

// A unit: configurations (indexes into the config list) that share a schedule and train
// together, each batch gathered once. A wave: units trained at the same time, at most `parallel`
// configurations in all.
using SweepUnit = std::vector<size_t>;
using SweepWave = std::vector<SweepUnit>;
std::vector<SweepWave> plan_waves(const std::vector<SweepConfig>& configs,
                                  const std::vector<size_t>& pending, int parallel);

// Bytes a head holds while training (weights, Adam moments, blocked copy, kept weights).
uint64_t head_training_bytes(int dim, int hidden, int classes);

// --parallel when not given: enough configurations at once to keep `threads` threads busy
// (4 per thread), as far as `memory_budget` bytes allow (at least 1). More would not run faster:
// each head's state is its own, so every extra head at once is only more memory to touch
// (measured on the 2-core box, the 16-configuration bench sweep: 16 at once 6.30 s median,
// 8 at once 5.85 s, 4 at once 5.68 s with freed memory kept for reuse).
int default_parallel(const std::vector<SweepConfig>& configs, const std::vector<size_t>& pending,
                     int dim, int classes, uint64_t memory_budget, int threads);

}  // namespace vggcache
