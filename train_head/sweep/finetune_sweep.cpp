#include "train_head/sweep/finetune_sweep.h"

#include <fmt/core.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "common/error.h"
#include "common/progress.h"  // seconds_since
#include "common/sha256.h"
#include "head/linalg.h"
#include "train_head/batch_schedule.h"
#include "train_head/finetune_run.h"
#include "train_head/sweep/plan.h"
#include "train_head/sweep/progress.h"
#include "train_head/sweep/spec.h"
#include "train_head/sweep/sweep_dir.h"

namespace vggcache {

using nlohmann::json;

namespace {

// The progress line's work of one configuration (as progress.h estimates a head's), with block 5
// counted as a large hidden layer: its three convolutions cost about as much per crop as a head
// of this many hidden units.
constexpr double kBlock5WorkUnits = 4096;

double config_work(const TrainParams& p, int64_t train_images, int64_t val_images,
                   int64_t test_vectors, int crops) {
  const int64_t per_epoch = train_images * (p.all_crops ? crops : 1);
  const double units = p.hidden + (p.freeze_block5 ? kBlock5WorkUnits / 3 : kBlock5WorkUnits);
  return p.epochs * units * static_cast<double>(3 * per_epoch + val_images * crops + test_vectors);
}

}  // namespace

uint64_t finetune_config_bytes(int hidden, int batch, int h, int w) {
  const uint64_t block5 = 3ull * (kBlock5Channels * kBlock5Channels * 9 + kBlock5Channels);
  const uint64_t head = static_cast<uint64_t>(hidden) * (kBlock5OutputDim + 1) + 4 * hidden;
  // Per crop: the input map, the three convolutions' outputs and their im2col columns (9 each),
  // the 25088-d output and its gradient.
  const uint64_t per_crop = 40ull * kBlock5Channels * h * w + 2ull * kBlock5OutputDim;
  return 5 * (block5 + head) * sizeof(float) + static_cast<uint64_t>(batch) * per_crop * 4;
}

int run_finetune_sweep(const TrainParams& base_in, const SweepParams& sweep) {
  const SweepSpec spec = load_sweep_spec(sweep.spec);
  check_spec_for_caches(spec, /*finetune=*/true, !base_in.init_head.empty());
  // Checks the caches, --weights and --init-head once, before any configuration starts.
  FineTuneInputs in = open_finetune_inputs(base_in);
  TrainParams base = base_in;
  base.hidden = in.init.shape.hidden;  // --init-head's size, as its runs record it
  const CacheMeta& meta = in.train->meta();
  const json finetune = {
      {"weights_sha256", meta.weights.sha256},
      {"init_head_sha256", in.has_init ? json(sha256_file(base.init_head)) : json(nullptr)}};
  const SweepPlan plan = make_sweep_plan(spec, sweep, base, meta.fingerprint(),
                                         in.test->meta().fingerprint(), finetune);
  for (const SweepConfig& c : plan.configs) {
    try {
      check_finetune_settings(c.params);
    } catch (const Error& e) {
      throw Error(e.kind(), fmt::format("sweep configuration {}: {}", c.index, e.what()));
    }
  }
  // As a single run refuses --momentum without SGD (it would be silently unused).
  if (base.momentum != TrainParams{}.momentum &&
      std::none_of(plan.configs.begin(), plan.configs.end(),
                   [](const SweepConfig& c) { return c.params.optimizer == "sgd"; }))
    throw Error(ErrorKind::kInvalidArgument,
                "--momentum applies to --optimizer sgd only, and no configuration of this sweep "
                "uses SGD (give --optimizer sgd or sweep optimizer=adam,sgd)");
  const json sweep_doc = sweep_json(plan, base);
  const SweepWork work = open_sweep_dir(base.out_dir, plan, sweep_doc, sweep);

  const int64_t train_images = static_cast<int64_t>(in.train->images().size());
  const int64_t val_images = static_cast<int64_t>(
      split_images(in.train->images(), base.val_fraction, base.seed).val.size());
  const int64_t test_vectors = static_cast<int64_t>(in.test->images().size()) * in.test->crops();
  const int crops = in.train->crops();
  double total_work = 0;
  int biggest_batch = 1, biggest_hidden = 1;
  for (size_t i : work.pending) {
    const TrainParams& p = plan.configs[i].params;
    total_work += config_work(p, train_images - val_images, val_images, test_vectors, crops);
    biggest_batch = std::max(biggest_batch, p.batch);
    biggest_hidden = std::max(biggest_hidden, p.hidden);
  }
  const uint64_t per_config =
      finetune_config_bytes(biggest_hidden, biggest_batch, meta.cut_shape[1], meta.cut_shape[2]);
  // More configurations than threads at once would keep no thread busier: each one's step already
  // spreads over the pool.
  const int parallel =
      sweep.parallel > 0 ? sweep.parallel
                         : static_cast<int>(std::max<uint64_t>(
                               1, std::min<uint64_t>({memory_available() / 2 / per_config,
                                                      static_cast<uint64_t>(base.threads),
                                                      std::max<size_t>(1, work.pending.size())})));
  in = FineTuneInputs{};  // each configuration opens its own readers (`meta` is gone)

  fmt::print(
      "train_head sweep {}: {} fine-tuning configurations ({}){}, {} already finished, {} to "
      "train; up to {} at once, {} threads, {}\n",
      plan.identity_hash, plan.configs.size(), sweep.samples > 0 ? "random" : "grid",
      sweep.shard_count > 1 ? fmt::format("; shard {}/{} holds {}", sweep.shard_index,
                                          sweep.shard_count, work.slice.size())
                            : "",
      work.slice.size() - work.pending.size(), work.pending.size(), parallel, base.threads,
      blas_backend());
  std::fflush(stdout);

  SweepProgress progress(work.slice.size(), work.slice.size() - work.pending.size(), total_work,
                         base.quiet);
  for (const SweepWave& wave : plan_waves(plan.configs, work.pending, parallel))
    tbb::parallel_for(size_t{0}, wave.size(), [&](size_t u) {
      for (size_t i : wave[u]) {  // one configuration per unit: fine-tuning shares no batches
        const SweepConfig& c = plan.configs[i];
        const auto t0 = std::chrono::steady_clock::now();
        TrainParams p = c.params;
        p.out_dir = fresh_config_dir(base.out_dir, c.id);
        p.quiet = true;  // the sweep's progress line speaks for its configurations
        progress.started(1);
        const TrainOutcome out = finetune_to_dir(p, /*announce=*/false, base.out_dir + "/" + c.id);
        progress.worked(config_work(p, train_images - val_images, val_images, test_vectors, crops));
        publish_config(base.out_dir, c, seconds_since(t0));
        progress.finished(c.id, out.epochs.at(out.selected_epoch - 1).val_accuracy);
      }
    });
  finish_sweep(base.out_dir, sweep_doc, work.pending.size(), progress.seconds());
  return 0;
}

}  // namespace vggcache
