// The search space of a hyperparameter sweep (`train_head --sweep SPEC`) and its expansion into
// configurations.
//
// A spec gives each swept key a list of values, or (random search only) a range lo..hi as the
// key's only value:
//   inline: "lr=1e-3,3e-4,1e-4;dropout=0.3,0.5;hidden=128,256;weight-decay=0,1e-4" or
//   "lr=1e-4..1e-2" TOML:   one `key = [v, v]`, `key = v` or `key = "lo..hi"` per line; # starts a
//   comment JSON:   {"lr": [1e-3, 3e-4], "dropout": 0.5, "hidden": "64..512", "standardize": [true,
//   false]}
// Keys are the single-run flags without "--": lr, weight-decay, dropout, hidden, batch, epochs,
// standardize, all-crops, seed, class-weight (none, balanced), sampler (uniform, balanced),
// optimizer (adam, lbfgs, sgd), l2, order (uniform, blocks), and for fine-tuning from pool4
// caches lr-block5, momentum, freeze-block5 ("_" may stand for "-"); not select, the metric that
// ranks them.
// hidden 0 is the linear probe. An lbfgs configuration is a probe: its hidden is 0 and Adam's
// keys (lr, weight-decay, dropout, batch, epochs, sampler, order) take the command's values
// (sampler and order uniform), so the configurations that differ only in those are one
// configuration; likewise momentum is the command's for all but sgd, lr-block5 the command's with
// freeze-block5. Unswept settings come from the command's own flags. Errors are
// Error(kInvalidArgument) naming the key and the problem.
//
// Grid: every combination, the first key (in the canonical order above) varying slowest.
// Random (--samples N): N distinct draws from a sequential stream of the sweep seed:
//   lr, weight-decay, l2  log-uniform between the smallest positive and the largest value given (a
//   0
//                     among the values is drawn with probability 1 / number of values);
//   dropout           uniform between the smallest and largest value;
//   hidden, batch     a listed value, or log-uniform (rounded) over a range;
//   epochs, seed      a listed value, or uniform over a range;
//   booleans, words   a listed value.
// Drawn reals keep 3 significant digits, so ids and tables stay readable.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train_head/params.h"

namespace vggcache {

// One value of a key: a number (bools as 0/1), or a range lo..hi for random search.
struct SpecValue {
  double lo = 0.0;
  double hi = 0.0;
  bool range = false;
};

struct SpecAxis {
  std::string key;  // canonical: "lr", "weight-decay", ..., "all-crops", "seed"
  std::vector<SpecValue> values;
};

struct SweepSpec {
  std::vector<SpecAxis> axes;  // in canonical key order, each key at most once
  // The spec as canonical JSON ({"lr": [0.001, 0.0003], "dropout": ["0.1..0.5"], ...}): equal
  // for the same space whatever the syntax it was written in (part of the sweep's identity).
  nlohmann::json to_json() const;
};

// The keys a spec may sweep, in canonical order.
const std::vector<std::string>& sweep_keys();

// Parses spec text: JSON when it starts with '{', TOML when it holds a line "key = ...", else the
// inline form. Validates every value's range (as the single-run flags do).
SweepSpec parse_sweep_spec(const std::string& text);

// `arg` is a readable file (TOML or JSON, by content) or inline text. Throws Error(kIo) for an
// unreadable file, kInvalidArgument for a bad spec (the message names the file).
SweepSpec load_sweep_spec(const std::string& arg);

// Refuses (Error(kInvalidArgument) naming the key and why) what a spec sweeps that the caches'
// kind of run does not have. On pool5 caches: the fine-tuning keys lr-block5, momentum,
// freeze-block5 and optimizer sgd. On pool4 caches (`finetune`: every configuration fine-tunes
// block 5): standardize true, l2, optimizer lbfgs, hidden 0, and hidden at all with `init_head`
// (that head's hidden size is used).
void check_spec_for_caches(const SweepSpec& spec, bool finetune, bool init_head);

// Upper bound on the configurations one sweep may hold (grid size or --samples).
inline constexpr size_t kMaxSweepConfigs = 100000;

// Number of grid configurations; Error(kInvalidArgument) when it exceeds kMaxSweepConfigs or a
// key holds a range (ranges need --samples).
size_t grid_size(const SweepSpec& spec);

// The full grid applied over `base`, in grid order.
std::vector<TrainParams> expand_grid(const SweepSpec& spec, const TrainParams& base);

// `samples` distinct random configurations drawn from `seed` over `base`. Error(kInvalidArgument)
// when the space holds fewer than `samples` distinct configurations.
std::vector<TrainParams> sample_configs(const SweepSpec& spec, const TrainParams& base,
                                        size_t samples, uint64_t seed);

// Sets one key of `p` (key canonical, value already validated).
void set_sweep_key(TrainParams* p, const std::string& key, double value);

// The rule above for an lbfgs configuration (a no-op for Adam's).
void apply_optimizer_rules(TrainParams* p, const TrainParams& base);

// The swept settings of a configuration, as JSON with the canonical keys spelled with "_"
// (lr, weight_decay, dropout, hidden, batch, epochs, standardize, all_crops, seed, class_weight,
// sampler; optimizer, l2, max_iter and tol for lbfgs; optimizer, momentum (sgd), lr_block5 (as
// used: --lr / 10 when not given) and freeze_block5 for fine-tuning, i.e. when --weights is set).
// Keys added after the first sweeps appear only when not the default, so configurations of older
// sweeps keep their ids.
nlohmann::json config_settings_json(const TrainParams& p);

// A number as the shortest text that reads back to the same double ("0.0003", "1e-05").
std::string format_number(double v);

}  // namespace vggcache
