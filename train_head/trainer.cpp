#include "train_head/trainer.h"

#include <tbb/task_group.h>

#include <algorithm>
#include <chrono>

#include "train_head/batch_schedule.h"
#include "train_head/train_step.h"

namespace vggcache {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One gathered batch: vectors (n × dim) and labels (n).
struct BatchBuffer {
  std::vector<float> x;
  std::vector<int32_t> labels;
  int n = 0;
};

void fill_batch(FeatureSource& src, const Standardizer* s, const Item* items, int n,
                BatchBuffer* b) {
  b->x.resize(static_cast<size_t>(n) * src.dim());
  b->labels.resize(n);
  b->n = n;
  for (int i = 0; i < n; ++i) b->labels[i] = src.label(items[i].image);
  src.gather(items, n, s, b->x.data());
}

// Trains one epoch; returns (loss sum weighted by batch size, correct count).
void train_epoch(const TrainParams& p, TrainSetup& setup, HeadOptimizer& opt, int epoch,
                 EpochMetrics* m) {
  const std::vector<Item> items =
      epoch_items(setup.train_images, setup.train->crops(), p.all_crops, p.seed, epoch);
  const int n_items = static_cast<int>(items.size());
  const int batches = (n_items + p.batch - 1) / p.batch;
  BatchBuffer buf[2];
  auto load = [&](int b, BatchBuffer* into) {
    int lo = b * p.batch, n = std::min(p.batch, n_items - lo);
    fill_batch(*setup.train, setup.standardizer, items.data() + lo, n, into);
  };
  double loss_sum = 0.0;
  int64_t correct = 0;
  if (batches > 0) load(0, &buf[0]);
  for (int b = 0; b < batches; ++b) {
    BatchBuffer& cur = buf[b % 2];
    tbb::task_group prefetch;
    const bool ahead = setup.prefetch && b + 1 < batches;
    if (ahead) prefetch.run([&, b] { load(b + 1, &buf[(b + 1) % 2]); });
    StepStats st;
    try {
      // The key makes each step's dropout mask distinct: (epoch, batch) is unique per step.
      st = opt.step(cur.x.data(), cur.labels.data(), cur.n,
                    (static_cast<uint64_t>(epoch) << 32) | static_cast<uint64_t>(b));
    } catch (...) {
      prefetch.cancel();
      prefetch.wait();
      throw;
    }
    prefetch.wait();  // rethrows a gather error
    if (!setup.prefetch && b + 1 < batches) load(b + 1, &buf[(b + 1) % 2]);
    if (setup.after_step) setup.after_step();
    loss_sum += st.loss * cur.n;
    correct += st.correct;
  }
  m->vectors = n_items;
  m->train_loss = n_items ? loss_sum / n_items : 0.0;
  m->train_accuracy = n_items ? static_cast<double>(correct) / n_items : 0.0;
}

// Better validation result: higher accuracy, then lower loss (earlier epoch wins full ties).
bool better(const EpochMetrics& a, const EpochMetrics& best) {
  if (a.val_accuracy != best.val_accuracy) return a.val_accuracy > best.val_accuracy;
  return a.val_loss < best.val_loss;
}

}  // namespace

TrainOutcome run_training(const TrainParams& p, TrainSetup& setup,
                          const std::function<void(const EpochMetrics&)>& on_epoch) {
  TrainOutcome out;
  AdamConfig adam;
  adam.lr = p.lr;
  adam.weight_decay = p.weight_decay;
  HeadOptimizer opt(std::move(setup.init), adam, p.dropout, p.seed);  // init is not kept twice
  const bool has_val = !setup.val_images.empty();
  out.selection = has_val ? "val_accuracy" : "final";
  EpochMetrics best;
  for (int e = 0; e < p.epochs; ++e) {
    auto t0 = std::chrono::steady_clock::now();
    EpochMetrics m;
    m.epoch = e + 1;
    train_epoch(p, setup, opt, e, &m);
    m.train_seconds = seconds_since(t0);
    out.final_weights = opt.weights();
    if (has_val) {
      EvalResult v =
          evaluate_head(out.final_weights, *setup.train, setup.val_images, setup.standardizer);
      m.has_val = true;
      m.val_loss = v.loss;
      m.val_accuracy = v.accuracy;
    }
    EvalResult t =
        evaluate_head(out.final_weights, *setup.test, setup.test->images(), setup.standardizer);
    m.test_loss = t.loss;
    m.test_accuracy = t.accuracy;
    m.seconds = seconds_since(t0);
    out.train_seconds += m.train_seconds;
    out.train_vectors += m.vectors;
    if (has_val && (e == 0 || better(m, best))) {
      best = m;
      out.selected_epoch = m.epoch;
      out.selected_weights = out.final_weights;
      out.selected_test = t;
    }
    if (e + 1 == p.epochs) out.final_test = t;
    out.epochs.push_back(m);
    if (on_epoch) on_epoch(m);
  }
  if (!has_val) {
    out.selected_epoch = p.epochs;
    out.selected_weights = out.final_weights;
    out.selected_test = out.final_test;
  }
  return out;
}

}  // namespace vggcache
