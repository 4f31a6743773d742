#include "train_head/trainer.h"

#include <tbb/parallel_for.h>
#include <tbb/task_group.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "common/error.h"
#include "common/progress.h"  // seconds_since
#include "train_head/batch_schedule.h"
#include "train_head/compact_step.h"
#include "train_head/imbalance.h"
#include "train_head/read_ahead.h"
#include "train_head/train_step.h"

namespace vggcache {

namespace {

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

std::vector<Item> schedule_items(const TrainParams& p, const TrainSetup& setup,
                                 const std::vector<int32_t>& train_labels, int epoch) {
  return epoch_schedule(p, setup.train_images, train_labels, setup.train->crops(), epoch);
}

// Trains one epoch on `items`; fills the epoch's training loss, accuracy and vector count.
void train_epoch(const TrainParams& p, TrainSetup& setup, HeadOptimizer& opt, int epoch,
                 const std::vector<Item>& items, EpochMetrics* m) {
  const int n_items = static_cast<int>(items.size());
  const int batches = (n_items + p.batch - 1) / p.batch;
  BatchBuffer buf[2];
  ReadAhead ra(p, *setup.train, items);
  auto load = [&](int b, BatchBuffer* into) {
    int lo = b * p.batch, n = std::min(p.batch, n_items - lo);
    ra.before(lo, n);
    fill_batch(*setup.train, setup.standardizer, items.data() + lo, n, into);
    ra.after(lo + n);
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
  ra.finish();
  m->vectors = n_items;
  m->train_loss = n_items ? loss_sum / n_items : 0.0;
  m->train_accuracy = n_items ? static_cast<double>(correct) / n_items : 0.0;
}

// Vectors gathered at once for several heads (run_training_shared): the whole epoch when it fits.
constexpr size_t kSharedWindowBytes = 512ull << 20;

// One epoch of several heads on one schedule: a window of batches is gathered once, then each
// head steps through the window in order (heads in parallel), exactly as train_epoch would feed
// it. Head-major order keeps a head's weights and Adam state in cache across its steps, where
// stepping every head on each batch in turn would cycle all their states through memory at every
// batch (the 16-configuration bench/sweep_bench.sh sweep took 37.8 s that way, 27.3 s this way,
// one run each on the shared 2-core box).
void train_epoch_shared(const TrainParams& p, TrainSetup& setup,
                        std::vector<std::unique_ptr<HeadOptimizer>>& opts, int epoch,
                        const std::vector<Item>& items, std::vector<EpochMetrics>& ms) {
  const int n_items = static_cast<int>(items.size());
  const int batches = (n_items + p.batch - 1) / p.batch;
  const size_t batch_bytes = static_cast<size_t>(p.batch) * setup.train->dim() * sizeof(float);
  const int window = static_cast<int>(
      std::max<size_t>(1, std::min<size_t>(batches, kSharedWindowBytes / batch_bytes)));
  std::vector<BatchBuffer> buf(window);
  const size_t heads = opts.size();
  std::vector<double> loss_sum(heads, 0.0);
  std::vector<int64_t> correct(heads, 0);
  ReadAhead ra(p, *setup.train, items);
  for (int w0 = 0; w0 < batches; w0 += window) {
    const int wn = std::min(window, batches - w0);
    for (int i = 0; i < wn; ++i) {
      const int lo = (w0 + i) * p.batch, n = std::min(p.batch, n_items - lo);
      ra.before(lo, n);
      fill_batch(*setup.train, setup.standardizer, items.data() + lo, n, &buf[i]);
      ra.after(lo + n);
    }
    tbb::parallel_for(size_t{0}, heads, [&](size_t h) {
      for (int i = 0; i < wn; ++i) {
        const uint64_t key = (static_cast<uint64_t>(epoch) << 32) | static_cast<uint64_t>(w0 + i);
        const StepStats st = opts[h]->step(buf[i].x.data(), buf[i].labels.data(), buf[i].n, key);
        loss_sum[h] += st.loss * buf[i].n;
        correct[h] += st.correct;
      }
    });
    if (setup.after_step) setup.after_step();
  }
  ra.finish();
  for (size_t h = 0; h < heads; ++h) {
    ms[h].vectors = n_items;
    ms[h].train_loss = n_items ? loss_sum[h] / n_items : 0.0;
    ms[h].train_accuracy = n_items ? static_cast<double>(correct[h]) / n_items : 0.0;
  }
}

}  // namespace

std::vector<Item> epoch_schedule(const TrainParams& p, const std::vector<uint32_t>& images,
                                 const std::vector<int32_t>& labels, int crops, int epoch) {
  if (p.sampler == "balanced")
    return balanced_epoch_items(images, labels, crops, p.all_crops, p.seed, epoch);
  if (p.order == "blocks")
    return block_epoch_items(images, crops, p.all_crops, p.seed, epoch, p.block_records,
                             p.block_window);
  return epoch_items(images, crops, p.all_crops, p.seed, epoch);
}

TrainOutcome run_training(const TrainParams& p, TrainSetup& setup,
                          const std::function<void(const EpochMetrics&)>& on_epoch) {
  std::vector<HeadWeights> inits;
  inits.push_back(std::move(setup.init));  // init is not kept twice
  return std::move(
      run_training_shared({p}, setup, std::move(inits), [&](size_t, const EpochMetrics& m) {
        if (on_epoch) on_epoch(m);
      }).front());
}

std::vector<TrainOutcome> run_training_shared(
    const std::vector<TrainParams>& ps, TrainSetup& setup, std::vector<HeadWeights> inits,
    const std::function<void(size_t head, const EpochMetrics&)>& on_epoch) {
  if (ps.empty() || ps.size() != inits.size())
    throw Error(ErrorKind::kInvalidArgument, "run_training_shared: one init per head needed");
  const TrainParams& p = ps.front();  // the schedule's settings
  for (const TrainParams& q : ps)
    if (q.epochs != p.epochs || q.batch != p.batch || q.seed != p.seed ||
        q.all_crops != p.all_crops || q.sampler != p.sampler || q.order != p.order ||
        q.block_records != p.block_records || q.block_window != p.block_window)
      throw Error(ErrorKind::kInvalidArgument,
                  "run_training_shared: heads disagree on epochs, batch, seed, all_crops, "
                  "sampler or order");
  std::vector<int32_t> train_labels(setup.train_images.size());
  for (size_t i = 0; i < train_labels.size(); ++i)
    train_labels[i] = setup.train->label(setup.train_images[i]);
  const size_t heads = ps.size();
  std::vector<TrainOutcome> outs(heads);
  std::vector<std::unique_ptr<HeadOptimizer>> opts(heads);
  tbb::parallel_for(size_t{0}, heads, [&](size_t h) {  // each lays out 25 MB at hidden 256
    AdamConfig adam;
    adam.lr = ps[h].lr;
    adam.weight_decay = ps[h].weight_decay;
    // Compact vectors (a prepool-f32 cache read compactly) get the compact first layer.
    const int classes = inits[h].shape.classes;
    opts[h] = make_head_optimizer(std::move(inits[h]), adam, ps[h].dropout, ps[h].seed,
                                  setup.train->compact());
    // Over the training images (not vectors): every image has the same number of crops, so the
    // class shares, hence the weights, are the same either way.
    if (ps[h].class_weight == "balanced") {
      outs[h].class_weights = balanced_class_weights(train_labels, classes);
      opts[h]->set_class_weights(outs[h].class_weights);
    }
  });
  FeatureSource* val_src = setup.val ? setup.val : setup.train;
  const bool has_val = !setup.val_images.empty();
  std::vector<EpochMetrics> best(heads);
  for (size_t h = 0; h < heads; ++h)
    outs[h].selection = has_val ? selection_name(ps[h].select) : "final";
  for (int e = 0; e < p.epochs; ++e) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<EpochMetrics> ms(heads);
    const std::vector<Item> items = schedule_items(p, setup, train_labels, e);
    if (heads == 1)
      train_epoch(p, setup, *opts.front(), e, items, &ms.front());
    else
      train_epoch_shared(p, setup, opts, e, items, ms);
    const double train_seconds = seconds_since(t0);
    auto t1 = std::chrono::steady_clock::now();
    // All heads are evaluated on each pass of gathered vectors (heads concurrently): a sweep's
    // validation and test vectors are copied once per epoch, not once per head.
    auto evaluate = [&](FeatureSource& src, const std::vector<uint32_t>& images) {
      std::vector<const HeadWeights*> ws(heads);
      tbb::parallel_for(size_t{0}, heads,
                        [&](size_t h) { ws[h] = &weights_for_source(*opts[h], src); });
      return evaluate_heads(ws, src, images, setup.standardizer);
    };
    std::vector<EvalResult> vals;
    if (has_val) vals = evaluate(*val_src, setup.val_images);
    std::vector<EvalResult> tests = evaluate(*setup.test, setup.test->images());
    const double eval_seconds = seconds_since(t1);
    std::vector<char> keep(heads, 0);
    for (size_t h = 0; h < heads; ++h) {
      TrainOutcome& out = outs[h];
      EpochMetrics& m = ms[h];
      m.epoch = e + 1;
      m.train_seconds = train_seconds;
      if (has_val) {
        m.has_val = true;
        m.val_loss = vals[h].loss;
        m.val_accuracy = vals[h].accuracy;
        m.val_balanced_accuracy = balanced_accuracy(vals[h].confusion);
      }
      m.test_loss = tests[h].loss;
      m.test_accuracy = tests[h].accuracy;
      m.seconds = train_seconds + eval_seconds;
      out.train_seconds += m.train_seconds;
      out.train_vectors += m.vectors;
      if (has_val && (e == 0 || better_epoch(m, best[h], ps[h].select))) {
        best[h] = m;
        out.selected_epoch = m.epoch;
        keep[h] = 1;
        out.selected_test = tests[h];
      }
      if (e + 1 == p.epochs) out.final_test = std::move(tests[h]);
      out.epochs.push_back(m);
      if (on_epoch) on_epoch(h, m);
    }
    // A new best keeps the weights in the optimizer's own form (a copy of the state, no
    // full-width unblocking); they are made full-width once, at the end.
    tbb::parallel_for(size_t{0}, heads, [&](size_t h) {
      if (keep[h]) opts[h]->keep();
    });
  }
  // Full-width weights (25 MB at hidden 256), made once per head and in parallel.
  tbb::parallel_for(size_t{0}, heads, [&](size_t h) {
    TrainOutcome& out = outs[h];
    if (setup.keep_final_weights || !has_val) out.final_weights = opts[h]->weights();
    if (has_val) out.selected_weights = opts[h]->take_kept_weights();  // spends the optimizer
    if (!has_val) {
      out.selected_epoch = p.epochs;
      out.selected_weights = out.final_weights;
      out.selected_test = out.final_test;
    }
  });
  return outs;
}

}  // namespace vggcache
