// Every setting of the `train_head` command, with its default. Filled by parse_train_args()
// (train_head/cli.h); the trainer reads nothing else.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vggcache {

struct TrainParams {
  std::string train_cache;    // --train CACHE: features of the training images (required)
  std::string test_cache;     // --test CACHE: features of the test images (required)
  std::string out_dir;        // --out RUN_DIR: metrics.jsonl, summary.json, head.bin (required)
  int epochs = 5;             // --epochs: passes over the training images (>= 1)
  int batch = 100;            // --batch: vectors per Adam step (>= 1); the last batch may be short
  double lr = 1e-3;           // --lr: Adam learning rate (> 0)
  int hidden = 256;           // --hidden: units of the hidden layer (>= 1); 0: the linear probe
                              //   (one Linear, no hidden layer, no dropout)
  double dropout = 0.5;       // --dropout: drop probability after the ReLU, in [0, 1)
  double weight_decay = 0.0;  // --weight-decay: L2 added to the gradient, as Adam does (>= 0)
  uint64_t seed = 0;          // --seed: init, crop choice, shuffling, dropout and the val split
  int threads = 0;            // --threads N: TBB and BLAS threads (>= 1); 0 = not given: the
                              //   number of hardware threads
  double val_fraction = 0.0;  // --val-fraction: share of training images held out, in [0, 1)
  bool standardize = false;   // --standardize: per-dimension mean/std from the training vectors
  bool all_crops = false;     // --all-crops: every cached crop each epoch instead of one per image
  bool quiet = false;         // --quiet: no per-epoch progress lines (final table still printed)
  bool verify = true;         // --no-verify (hidden) skips record checksums while reading
  bool full_width = false;    // --full-width: train on the 25088-d vectors even when both caches
                              //   are prepool-f32 (default there: the compact first layer)
                              //   (--knn: search the pooled vectors, not the window means)
  // Class imbalance (train_head/imbalance.h).
  std::string class_weight = "none";  // --class-weight none|balanced: balanced weighs each
                                      //   sample's loss by n_images / (n_classes · n_class)
  std::string sampler = "uniform";    // --sampler uniform|balanced: balanced draws each epoch's
                                      //   vectors with classes equally likely (with replacement)
  // Read order of each epoch's vectors (train_head/batch_schedule.h): uniform shuffles them all;
  // blocks shuffles blocks of consecutive records and the vectors within windows of blocks, so a
  // cache larger than memory is read in long sequential runs (a different sampling).
  std::string order = "uniform";    // --order uniform|blocks
  int block_records = 32;           // --block-records N: records per block (>= 1; --order blocks)
  int block_window = 4;             // --block-window K: blocks shuffled together (>= 1)
  std::string select = "accuracy";  // --select accuracy|balanced: the validation metric that
                                    //   picks the saved epoch (a sweep: the configuration)
  // How the head is trained: adam (mini-batches), lbfgs (full batch, a probe: train_head/probe.h),
  // sgd (with momentum; fine-tuning only). cli.h's optimizers() lists the values.
  std::string optimizer = "adam";  // --optimizer adam|sgd|lbfgs: lbfgs needs --hidden 0, sgd a
                                   //   pool4 cache
  double l2 = 1.0;     // --l2: lbfgs's penalty (l2/2)·‖W‖² beside Σ w_i·loss_i (> 0);
                       //   scikit-learn's C = 1/l2 (its default C = 1)
  int max_iter = 100;  // --max-iter: lbfgs iterations (>= 1; sklearn's default)
  double tol = 1e-4;   // --tol: lbfgs stops when ‖∇(f / Σ w_i)‖_∞ <= tol (> 0)
  // Fine-tuning VGG16's block 5 with the head from a pool4 cache (extract --cut pool4;
  // train_head/finetune_run.h). These flags apply only there (a pool5 cache refuses them, exit 2),
  // and not with --knn; a sweep on pool4 caches sweeps them (train_head/sweep/finetune_sweep.h).
  std::string weights;               // --weights FILE.pth: the VGG16 weights the pool4 cache was
                                     //   extracted with (SHA-256 checked); block 5 starts from them
  double momentum = 0.9;             // --momentum: SGD's momentum, in [0, 1) (--optimizer sgd only)
  double lr_block5 = 0.0;            // --lr-block5: block 5's learning rate (> 0); 0 = not given:
                                     //   lr / 10 (1e-4 at the default lr, the recipe's low rate)
  bool freeze_block5 = false;        // --freeze-block5: train the head only (block 5 runs forward)
  std::string block5_conv = "auto";  // --block5-conv auto|direct|winograd: how block 5's
                                     //   convolutions are computed (finetune/block5.h)
  std::string init_head;             // --init-head RUN_DIR/head.bin: start from a head trained on
                                     //   the pool5 cache of the same weights (its shape wins)
  // k-NN instead of a trained head (head/knn.h); the training flags do not apply then.
  std::vector<int> knn;  // --knn K[,K...]: neighbours (each >= 1), ascending; empty: train a head
  std::string knn_vote = "uniform";  // --knn-vote uniform|weighted
  double knn_temperature = 0.07;     // --knn-temperature T: weighted votes e^{s/T} (> 0)
};

// Block 5's learning rate as a fine-tuning run uses it: --lr-block5, or --lr / 10 when not given.
inline double effective_lr_block5(const TrainParams& p) {
  return p.lr_block5 > 0 ? p.lr_block5 : p.lr / 10;
}

// The flags of a sweep (`train_head --sweep SPEC`, train_head/sweep/*.h); the TrainParams around
// them give every unswept setting and --threads, the total thread budget.
struct SweepParams {
  bool enabled = false;  // --sweep given
  std::string spec;      // --sweep SPEC: inline grid, or a TOML / JSON file
  int samples = 0;       // --samples N: N random configurations (0: the full grid)
  int parallel = 0;      // --parallel K: configurations trained at once (0: from cores and memory)
  int shard_index = 0;   // --shard I/N: this run trains slice I of N (0-based)
  int shard_count = 1;
};

}  // namespace vggcache
