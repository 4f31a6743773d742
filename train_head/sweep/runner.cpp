#include "train_head/sweep/runner.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>

#include "common/error.h"
#include "common/file_util.h"
#include "common/progress.h"  // seconds_since
#include "head/feature_check.h"
#include "head/feature_source.h"
#include "head/linalg.h"
#include "train_head/batch_schedule.h"
#include "train_head/cache_checks.h"
#include "train_head/compact_step.h"
#include "train_head/finetune_run.h"
#include "train_head/probe.h"
#include "train_head/run_outputs.h"
#include "train_head/sweep/plan.h"
#include "train_head/sweep/progress.h"
#include "train_head/sweep/results.h"
#include "train_head/sweep/sources.h"
#include "train_head/sweep/spec.h"
#include "train_head/sweep/sweep_dir.h"
#include "train_head/trainer.h"

namespace vggcache {

using nlohmann::json;

namespace {

// What configurations with one seed share: the val split and (when asked) the standardizer.
struct SeedData {
  ImageSplit split;
  Standardizer standardizer;       // computed when a configuration standardizes
  Standardizer head_standardizer;  // the same over the full-width vectors, for head.bin
};

// The two caches read in one vector form, and what units on that form share: locked readers
// (units gather concurrently) and resident test and validation vectors. A configuration trains
// on the vectors its single run would (training_vectors(): the map unstandardised, the window
// means standardised), so its results are that run's, byte for byte.
struct FormSources {
  FormSources(const TrainParams& base, VectorForm form)
      : train(base.train_cache, base.verify, form),
        test(base.test_cache, base.verify, form),
        locked_train(train),
        locked_test(test) {}
  FeatureSource* test_source() {
    return test_resident ? static_cast<FeatureSource*>(test_resident.get()) : &locked_test;
  }
  FeatureSource* val_source(uint64_t seed) {
    auto it = val.find(seed);
    return it != val.end() ? static_cast<FeatureSource*>(it->second.get()) : &locked_train;
  }
  CacheSource train, test;
  LockedSource locked_train, locked_test;
  std::unique_ptr<ResidentSource> test_resident;            // null: read from the test cache
  std::map<uint64_t, std::unique_ptr<ResidentSource>> val;  // per seed; absent: read the cache
};

struct SweepContext {
  const TrainParams* base = nullptr;
  const SweepPlan* plan = nullptr;
  const CacheMeta* train_meta = nullptr;
  const CacheMeta* test_meta = nullptr;
  // The form each setting of --standardize reads (index 0: off, 1: on), and the sources per form.
  VectorForm form[2] = {VectorForm::kPooled, VectorForm::kPooled};
  std::map<VectorForm, std::unique_ptr<FormSources>> sources;
  int dim = 0, classes = 0, test_images = 0;  // dim: the full width the head is made for
  int64_t test_vectors = 0;
  std::map<uint64_t, SeedData> seeds;
  Standardizer none, head_none;  // what a run without --standardize uses and stores
  SweepProgress* progress = nullptr;
  std::atomic<uint64_t> peak_rss_anon{0};
};

// Estimated cost of one epoch of a configuration (see train_head/sweep/progress.h).
double epoch_work(const SweepContext& ctx, const TrainParams& p, int64_t train_vectors,
                  int64_t val_vectors) {
  return static_cast<double>(std::max(p.hidden, 1)) *  // a probe: about one hidden unit's work
         static_cast<double>(3 * train_vectors + val_vectors + ctx.test_vectors);
}

// Trains one unit (configurations on one schedule) and publishes each configuration's directory.
void run_unit(SweepContext& ctx, const SweepUnit& unit) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<TrainParams> ps;
  std::vector<HeadWeights> inits;
  std::vector<std::string> tmps;
  std::vector<std::unique_ptr<MetricsLog>> logs;
  for (size_t i : unit) {
    const SweepConfig& c = ctx.plan->configs[i];
    TrainParams p = c.params;
    p.out_dir = ctx.base->out_dir + "/" + c.id;
    ps.push_back(p);
    tmps.push_back(fresh_config_dir(ctx.base->out_dir, c.id));
    logs.push_back(std::make_unique<MetricsLog>(tmps.back()));
  }
  inits.resize(ps.size());  // 25 MB of random numbers each at hidden 256: made in parallel
  tbb::parallel_for(size_t{0}, ps.size(), [&](size_t h) {
    inits[h] = init_head({ctx.dim, ps[h].hidden, ctx.classes}, ps[h].seed);
  });
  SeedData& sd = ctx.seeds.at(ps.front().seed);
  const bool lbfgs = ps.front().optimizer == "lbfgs";  // then the unit is this configuration
  FormSources& src = *ctx.sources.at(ctx.form[ps.front().standardize || lbfgs]);
  TrainSetup setup;
  setup.train = &src.locked_train;
  setup.test = src.test_source();
  setup.val = src.val_source(ps.front().seed);
  setup.train_images = sd.split.train;
  setup.val_images = sd.split.val;
  setup.standardizer = ps.front().standardize ? &sd.standardizer : &ctx.none;
  setup.keep_final_weights = false;
  setup.after_step = [&ctx] {
    const uint64_t now = process_memory().rss_anon;
    uint64_t seen = ctx.peak_rss_anon.load();
    while (now > seen && !ctx.peak_rss_anon.compare_exchange_weak(seen, now)) {
    }
  };
  const int64_t val_vectors = static_cast<int64_t>(sd.split.val.size()) * src.train.crops();
  ctx.progress->started(unit.size());
  std::vector<TrainOutcome> outs;
  if (lbfgs) {
    setup.init = std::move(inits.front());
    outs.push_back(train_probe_lbfgs(ps.front(), setup, {}));
    logs.front()->append(outs.front().epochs.front());
    ctx.progress->worked(
        epoch_work(ctx, ps.front(), outs.front().epochs.front().vectors, val_vectors));
  } else {
    outs = run_training_shared(ps, setup, std::move(inits), [&](size_t h, const EpochMetrics& m) {
      logs[h]->append(m);
      ctx.progress->worked(epoch_work(ctx, ps[h], m.vectors, val_vectors));
    });
  }
  const double seconds = seconds_since(t0);
  // Each configuration is written and published on its own (a head.bin is 25 MB at hidden 256):
  // in parallel, so one unit's heads do not queue behind each other.
  tbb::parallel_for(size_t{0}, unit.size(), [&](size_t h) {
    const SweepConfig& c = ctx.plan->configs[unit[h]];
    logs[h].reset();  // closes metrics.jsonl
    write_run_outputs(tmps[h], ps[h], *ctx.train_meta, *ctx.test_meta, sd.split, ctx.test_images,
                      ps[h].standardize ? sd.head_standardizer : ctx.head_none, outs[h],
                      ctx.peak_rss_anon.load());
    publish_config(ctx.base->out_dir, c, seconds);
    const EpochMetrics& best = outs[h].epochs.at(outs[h].selected_epoch - 1);
    ctx.progress->finished(c.id, best.val_accuracy);
  });
}

// ", compact first layer (...)" for the sweep's log line, one part per vector form in use.
std::string compact_note(const SweepContext& ctx) {
  std::string parts;
  for (const auto& [form, src] : ctx.sources) {
    if (!src->train.compact()) continue;
    const bool both = ctx.sources.size() > 1;
    parts += (parts.empty() ? "" : "; ") + compact_summary(src->train.compact()) +
             (both ? (form == ctx.form[1] ? " when standardised" : " otherwise") : "");
  }
  if (parts.empty() && !ctx.sources.empty()) {
    // The compact layout is VGG16's prepool-f32 map: say why another backbone trains densely.
    const std::string& backbone = ctx.sources.begin()->second->train.meta().backbone;
    if (backbone != "vgg16") return ", compact first layer off (" + backbone + " features)";
  }
  return parts.empty() ? "" : ", compact first layer (" + parts + ")";
}

}  // namespace

int run_sweep(const TrainParams& base, const SweepParams& sweep) {
  const SweepSpec spec = load_sweep_spec(sweep.spec);
  check_no_finetune_flags(base, base.train_cache);
  check_spec_for_caches(spec, /*finetune=*/false, /*init_head=*/false);
  SweepContext ctx;
  // Index 1 also serves unstandardised L-BFGS configurations, which read window means.
  for (bool standardize : {false, true})
    ctx.form[standardize] =
        training_vectors(base.train_cache, base.test_cache, base.full_width, standardize);
  auto sources = [&](bool standardize) -> FormSources& {
    std::unique_ptr<FormSources>& s = ctx.sources[ctx.form[standardize]];
    if (!s) s = std::make_unique<FormSources>(base, ctx.form[standardize]);
    return *s;
  };
  const FormSources& first = sources(base.standardize);
  const CacheSource &train = first.train, &test = first.test;
  check_training_caches(train.meta(), base.train_cache, test.meta(), base.test_cache);
  const SweepPlan plan =
      make_sweep_plan(spec, sweep, base, train.meta().fingerprint(), test.meta().fingerprint());
  const json sweep_doc = sweep_json(plan, base);
  // This run's slice; what an earlier run finished is kept, what it left unfinished is redone.
  const SweepWork work = open_sweep_dir(base.out_dir, plan, sweep_doc, sweep);
  const std::vector<size_t>&slice = work.slice, &pending = work.pending;

  ctx.base = &base;
  ctx.plan = &plan;
  ctx.train_meta = &train.meta();
  ctx.test_meta = &test.meta();
  ctx.dim = static_cast<int>(train.meta().dim);
  ctx.head_none = full_width_standardizer(ctx.none, train);
  ctx.classes = static_cast<int>(train.meta().classes.size());
  ctx.test_images = static_cast<int>(test.images().size());
  ctx.test_vectors = static_cast<int64_t>(test.images().size()) * test.crops();

  // Shared per seed: split and standardizer; per form and seed: resident validation vectors; per
  // form: the test vectors. Resident copies take at most a quarter of the available memory; the
  // rest is read from the cache as a single run does.
  const uint64_t available = memory_available();
  uint64_t resident_budget = available / 4;
  auto make_resident = [&](FeatureSource& from, const std::vector<uint32_t>& images) {
    const uint64_t bytes = ResidentSource::bytes_for(from, images.size());
    if (bytes > resident_budget) return std::unique_ptr<ResidentSource>();
    resident_budget -= bytes;
    return std::make_unique<ResidentSource>(from, images);
  };
  double total_work = 0.0;
  for (size_t i : pending) {
    const TrainParams& p = plan.configs[i].params;
    // L-BFGS reads window means whether or not it standardises (train_head/probe.h).
    FormSources& src = sources(p.standardize || p.optimizer == "lbfgs");
    if (!src.test_resident) src.test_resident = make_resident(src.test, src.test.images());
    auto [it, fresh] = ctx.seeds.try_emplace(p.seed);
    SeedData& sd = it->second;
    if (fresh) sd.split = split_images(train.images(), base.val_fraction, p.seed);
    if (!src.val.count(p.seed)) {
      std::unique_ptr<ResidentSource> val = make_resident(src.train, sd.split.val);
      if (val) src.val[p.seed] = std::move(val);
    }
    if (p.standardize && sd.standardizer.empty()) {
      sd.standardizer = compute_standardizer(src.train, sd.split.train);
      sd.head_standardizer = full_width_standardizer(sd.standardizer, src.train);
    }
    const int64_t per_epoch =
        static_cast<int64_t>(sd.split.train.size()) * (p.all_crops ? train.crops() : 1);
    total_work += p.epochs * epoch_work(ctx, p, per_epoch,
                                        static_cast<int64_t>(sd.split.val.size()) * train.crops());
  }

  const int parallel = sweep.parallel > 0
                           ? sweep.parallel
                           : default_parallel(plan.configs, pending, ctx.dim, ctx.classes,
                                              available / 2, base.threads);
  const std::vector<SweepWave> waves = plan_waves(plan.configs, pending, parallel);
  size_t units = 0;
  for (const SweepWave& w : waves) units += w.size();
  fmt::print("train_head sweep {}: {} configurations ({}){}, {} already finished, {} to train\n",
             plan.identity_hash, plan.configs.size(), sweep.samples > 0 ? "random" : "grid",
             sweep.shard_count > 1 ? fmt::format("; shard {}/{} holds {}", sweep.shard_index,
                                                 sweep.shard_count, slice.size())
                                   : "",
             slice.size() - pending.size(), pending.size());
  if (!pending.empty())
    fmt::print(
        "train_head sweep: {} training images × {} crops ({} held out for selection), {} test "
        "images; {} units on shared batches, up to {} configurations at once, {} threads, {}{}\n",
        train.images().size() - ctx.seeds.begin()->second.split.val.size(), train.crops(),
        ctx.seeds.begin()->second.split.val.size(), test.images().size(), units, parallel,
        base.threads, blas_backend(), compact_note(ctx));
  std::fflush(stdout);

  SweepProgress progress(slice.size(), slice.size() - pending.size(), total_work, base.quiet);
  ctx.progress = &progress;
  for (const SweepWave& wave : waves)
    tbb::parallel_for(size_t{0}, wave.size(), [&](size_t u) { run_unit(ctx, wave[u]); });

  finish_sweep(base.out_dir, sweep_doc, pending.size(), progress.seconds());
  return 0;
}

}  // namespace vggcache
