// train_head on pool4 caches (extract --cut pool4): VGG16's block 5 (conv5_1..conv5_3, pool5, the
// adaptive 7×7 pool) is trained together with the head (finetune/finetune_step.h), the recipe's
// third step. Everything around the step is the pool5 trainer's: the validation split, the
// epoch's crop choice and shuffling (--sampler), the dropout keys, validation-based selection,
// evaluation averaging each test image's views, and the run's files (metrics.jsonl,
// summary.json, predictions.csv, report.html, head.bin, the latter as format version 2 with the
// tuned block 5, head/head_file.h).
//
// With --freeze-block5 the run trains the head on block 5's outputs from the weights file, i.e.
// on the pool5 features the pool5 cache of the same extraction holds: same seed and settings give
// the pool5 run's head to float rounding (tests/finetune/test_finetune_run.cpp).
//
// Errors: Error(kMismatch) for a weights file whose SHA-256 differs from the cache's (naming both
// files and hashes), an --init-head trained on other features, caches of different cuts or
// settings; Error(kInvalidArgument) (exit 2) for missing --weights, a cache made with random:SEED
// weights (only extract can regenerate those), and settings fine-tuning does not have
// (--standardize, the linear probe); fine-tuning flags on pool5 caches are refused by
// check_no_finetune_flags().
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "finetune/block5.h"
#include "head/feature_source.h"
#include "head/head_file.h"
#include "train_head/params.h"
#include "train_head/trainer.h"

namespace vggcache {

// The cut the cache at `dir` holds ("pool5" or "pool4"), from its metadata alone.
std::string cache_cut(const std::string& dir);

// Error(kInvalidArgument) naming the first fine-tuning flag set in `p` (--weights, --optimizer
// sgd, --lr-block5, --freeze-block5, --init-head, --momentum): a pool5 run does not read them, and
// ignoring them would let a user believe block 5 was tuned.
void check_no_finetune_flags(const TrainParams& p, const std::string& train_dir);

// Block 5's tensors from `weights_path` (a torchvision state_dict: features.24/26/28), after
// checking that the file is the one `meta` was extracted with: its SHA-256 must equal
// meta.weights.sha256, else Error(kMismatch) naming both files and both hashes.
Block5 load_block5_for_cache(const std::string& weights_path, const CacheMeta& meta,
                             const std::string& cache_dir);

// The pool5 cache's metadata that the extraction of `pool4` would have written with --cut pool5
// (dim 25088, no cut): what a head trained on that pool5 cache records as its features.
CacheMeta as_pool5(const CacheMeta& pool4);

// Refuses an --init-head that was not trained on the pool5 features of `pool4`'s extraction
// (weights, size, normalisation, classes: Error(kMismatch) naming the setting), that is
// standardised, or that already carries a tuned block 5 (Error(kInvalidArgument)).
void check_init_head(const HeadFile& head, const std::string& head_path, const CacheMeta& pool4,
                     const std::string& cache_dir);

// Block 5's output (the 25088-d pooled features) of a pool4 source's maps, through `block5` as it
// is at each gather (not owned; it changes between epochs). Lets the head's evaluation
// (head/evaluate.h) run unchanged on a pool4 cache. gather() runs block 5 forward on the batch:
// not thread-safe (one gather at a time), unlike CacheSource.
class Block5Source : public FeatureSource {
 public:
  Block5Source(FeatureSource& maps, const Block5* block5, int h, int w);
  int dim() const override { return kBlock5OutputDim; }
  int crops() const override { return maps_.crops(); }
  const std::vector<uint32_t>& images() const override { return maps_.images(); }
  int32_t label(uint32_t image) const override { return maps_.label(image); }
  void gather(const Item* items, int n, const Standardizer* s, float* out) override;

 private:
  FeatureSource& maps_;
  const Block5* block5_;
  int h_, w_;
  std::vector<float> x_;  // the gathered maps, n × 512 × h × w
};

// Refuses (Error(kInvalidArgument), naming the flag) settings the fine-tuning step does not have,
// rather than silently dropping them: the linear probe, --standardize.
void check_finetune_settings(const TrainParams& p);

// What a fine-tuning run starts from, every check above passed: both pool4 caches (opened), block
// 5 from --weights, and the starting head (--init-head's, or init_head(--seed) of p.hidden).
struct FineTuneInputs {
  std::unique_ptr<CacheSource> train, test;
  Block5 block5;
  HeadWeights init;
  bool has_init = false;  // init is --init-head's
};
FineTuneInputs open_finetune_inputs(const TrainParams& p);

// Trains one pool4 run into p.out_dir (all of the run's files). `announce` prints its header, the
// final table and its speed (a sweep's configurations train without them, several at once);
// p.quiet drops the per-epoch lines as in any run. `final_dir`: where the files end up when
// p.out_dir only stages them (a sweep's .tmp-<id>/), the name report.html shows. Thread-safety:
// runs of different out_dirs may train at once (each opens its own readers).
TrainOutcome finetune_to_dir(const TrainParams& p, bool announce,
                             const std::string& final_dir = "");

// The whole pool4 run (parse has been done; TBB's thread limit is set). Returns the exit code.
int run_finetune(const TrainParams& p);

}  // namespace vggcache
