// The training loop: epochs of shuffled batches gathered from the training source (the next
// batch is gathered while the current one trains), then evaluation on validation and test.
// Model selection uses the validation images only; the test set is reported, never consulted.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "head/evaluate.h"
#include "head/feature_source.h"
#include "head/head_model.h"
#include "train_head/params.h"

namespace vggcache {

struct EpochMetrics {
  int epoch = 0;                                  // 1-based
  double train_loss = 0.0, train_accuracy = 0.0;  // running means over the epoch's batches
  bool has_val = false;
  double val_loss = 0.0, val_accuracy = 0.0;
  double val_balanced_accuracy = 0.0;  // mean recall over the validation classes (--select)
  double test_loss = 0.0, test_accuracy = 0.0;
  double seconds = 0.0;        // the whole epoch, evaluation included
  double train_seconds = 0.0;  // gathering and training steps only
  int64_t vectors = 0;         // training vectors seen this epoch
};

struct TrainSetup {
  FeatureSource* train = nullptr;
  FeatureSource* test = nullptr;
  std::vector<uint32_t> train_images;          // images trained on
  std::vector<uint32_t> val_images;            // held-out training images (may be empty)
  const Standardizer* standardizer = nullptr;  // applied to every vector when non-null/non-empty
  HeadWeights init;                  // initial weights (moved into the optimizer by run_training)
  bool prefetch = true;              // gather batch k+1 while batch k trains
  std::function<void()> after_step;  // optional; called after each step (buffers still live)
  // Where the validation images are read from (their vectors only); null: from `train`. Lets a
  // sweep hold them in memory once for all its heads.
  FeatureSource* val = nullptr;
  // Fill TrainOutcome::final_weights even when validation selects the head (a full-width copy per
  // head; a sweep, which writes only the selected head, turns it off).
  bool keep_final_weights = true;
};

struct TrainOutcome {
  HeadWeights final_weights;     // empty when validation selects and !setup.keep_final_weights
  HeadWeights selected_weights;  // best validation accuracy, or the final ones without validation
  int selected_epoch = 0;
  std::vector<float> class_weights;  // --class-weight balanced: per class; empty: unweighted
  std::string selection;             // "val_accuracy", "val_balanced_accuracy" or "final"
  std::vector<EpochMetrics> epochs;
  EvalResult final_test, selected_test;
  double train_seconds = 0.0;
  int64_t train_vectors = 0;
  // --optimizer lbfgs (train_head/probe.h): iterations, evaluations, objective, gradient norm,
  // stop reason; null for Adam. Written to summary.json as "solver".
  nlohmann::json solver;
};

// The epoch's vectors in training order, as --sampler asks (epoch_items or balanced_epoch_items
// of train_head/batch_schedule.h, from p.seed and p.all_crops); labels[i] is images[i]'s label.
// Every trainer draws its epochs here (fine-tuning too), so they all see the same batches.
std::vector<Item> epoch_schedule(const TrainParams& p, const std::vector<uint32_t>& images,
                                 const std::vector<int32_t>& labels, int crops, int epoch);

TrainOutcome run_training(const TrainParams& p, TrainSetup& setup,
                          const std::function<void(const EpochMetrics&)>& on_epoch);

// Several heads on ONE batch schedule (a sweep): each batch is gathered once for all heads, and
// each head steps through the batches in order (heads in parallel). ps[h] and inits[h] describe
// head h; the params must agree on what fixes the schedule (epochs, batch, seed, all_crops,
// sampler; setup fixes the rest), else Error(kInvalidArgument). Each head's outcome is
// bit-identical to run_training() with ps[h] and inits[h] alone: run_training is this function with
// one head. Heads are evaluated concurrently after each epoch, so with several heads the test and
// validation sources must take concurrent gathers (the sweep's locked and resident sources do).
// on_epoch(h, m) is called from the calling thread, heads in order, after every head's epoch.
std::vector<TrainOutcome> run_training_shared(
    const std::vector<TrainParams>& ps, TrainSetup& setup, std::vector<HeadWeights> inits,
    const std::function<void(size_t head, const EpochMetrics&)>& on_epoch);

}  // namespace vggcache
