#include "train_head/finetune_run.h"

#include <fmt/core.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <tbb/task_group.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "common/cache.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "finetune/finetune_step.h"
#include "head/evaluate.h"
#include "head/feature_check.h"
#include "head/linalg.h"
#include "train_head/batch_schedule.h"
#include "train_head/imbalance.h"
#include "train_head/run_outputs.h"
#include "train_head/trainer.h"
#include "weights/pth_reader.h"

namespace vggcache {

using nlohmann::json;

namespace {

// What --block5-conv resolves to on h × w maps, as logged and recorded (training steps only:
// evaluations run the direct convolution, as predict does).
const char* block5_conv_used(const FineTuneConfig& cfg, int h, int w) {
  return !cfg.freeze_block5 && block5_uses_winograd(cfg.block5_conv, h, w) ? "winograd" : "direct";
}

// Views per block 5 forward pass during evaluation: its activations are 4 maps per view plus the
// 25088-d output (about 160 KB per view at 64 px, 1.7 MB at 224 px), so 128 views stay below
// ~220 MB at 224 px while keeping the GEMMs wide.
constexpr int kEvalViews = 128;

// Both caches must hold pool4 maps of the same extraction settings, as the pool5 trainer's
// check_training_caches() demands of pool5 caches.
void check_finetune_caches(const CacheMeta& train, const std::string& train_dir,
                           const CacheMeta& test, const std::string& test_dir) {
  for (const auto& [meta, dir] : {std::pair{&train, &train_dir}, {&test, &test_dir}})
    if (meta->cut != "pool4")
      throw Error(ErrorKind::kMismatch,
                  fmt::format("cache {} holds {} features, but the other cache holds pool4 maps: "
                              "fine-tuning block 5 needs both extracted with --cut pool4",
                              *dir, meta->cut));
  check_caches_pair(train, train_dir, test, test_dir);
  if (train.classes.size() < 2)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("cache {} has {} class(es); the head needs at least 2", train_dir,
                            train.classes.size()));
  if (train.cut_shape.size() != 3 || train.cut_shape[0] != kBlock5Channels ||
      train.cut_shape[1] < 2 || train.cut_shape[2] < 2)
    throw Error(ErrorKind::kCorrupt,
                fmt::format("cache {}: cut_shape {} is not a pool4 map (512 × h × w, h, w ≥ 2)",
                            train_dir, json(train.cut_shape).dump()));
  if (train.weights.random)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("cache {} was extracted with random weights ({}), which only extract "
                            "can regenerate (LibTorch's generator); fine-tuning needs the weights "
                            "as a file: extract with --weights FILE.pth",
                            train_dir, train.weights.name));
}

}  // namespace

void check_finetune_settings(const TrainParams& p) {
  if (p.optimizer == "lbfgs" || p.hidden == 0)
    throw Error(ErrorKind::kInvalidArgument,
                "the linear probe (--hidden 0, --optimizer lbfgs) trains on pool5 features; "
                "fine-tuning block 5 trains a head with a hidden layer (--optimizer adam or sgd)");
  if (p.standardize)
    throw Error(ErrorKind::kInvalidArgument,
                "--standardize does not apply to fine-tuning (block 5's outputs change as it "
                "trains, so no fixed mean and std exist)");
}

namespace {

// The evaluation of `head` over block 5's outputs for `images`.
EvalResult evaluate_block5_head(const HeadWeights& head, const Block5& block5, FeatureSource& maps,
                                int h, int w, const std::vector<uint32_t>& images) {
  Block5Source src(maps, &block5, h, w);
  return evaluate_head(head, src, images, nullptr, kEvalViews);
}

struct MapBatch {
  std::vector<float> x;  // n × 512 × h × w
  std::vector<int32_t> labels;
  int n = 0;
};

TunedBlock5 tensors_of(const Block5& b) {
  TunedBlock5 t;
  for (int i = 0; i < 3; ++i) {
    t.weight[i] = b.weight(i);
    t.bias[i] = b.bias(i);
  }
  return t;
}

}  // namespace

std::string cache_cut(const std::string& dir) {
  ReaderOptions opts;
  opts.allow_incomplete = true;  // only the metadata is read here; the sources check the rest
  opts.verify = false;
  return CacheReader::open(dir, opts)->meta().cut;
}

void check_no_finetune_flags(const TrainParams& p, const std::string& train_dir) {
  std::string flag;
  if (!p.weights.empty())
    flag = "--weights";
  else if (p.optimizer == "sgd")
    flag = "--optimizer sgd";
  else if (p.lr_block5 > 0)
    flag = "--lr-block5";
  else if (p.freeze_block5)
    flag = "--freeze-block5";
  else if (!p.init_head.empty())
    flag = "--init-head";
  else if (p.momentum != TrainParams{}.momentum)  // a sweep's; single runs refuse it at parsing
    flag = "--momentum";
  if (!flag.empty())
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("{} applies to fine-tuning block 5 from pool4 caches (extract --cut "
                            "pool4); cache {} holds pool5 features, on which only the head trains",
                            flag, train_dir));
}

Block5 load_block5_for_cache(const std::string& weights_path, const CacheMeta& meta,
                             const std::string& cache_dir) {
  const std::string sha = sha256_file(weights_path);
  if (sha != meta.weights.sha256)
    throw Error(ErrorKind::kMismatch,
                fmt::format("--weights {} (SHA-256 {}) is not the weights file cache {} was "
                            "extracted with ({}, SHA-256 {}); block 5 must start from the weights "
                            "that made its input maps",
                            weights_path, sha, cache_dir, meta.weights.name, meta.weights.sha256));
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    names.push_back(Block5::weight_name(i));
    names.push_back(Block5::bias_name(i));
  }
  StateDict sd = read_state_dict(weights_path, [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  });
  Block5 b;
  for (int i = 0; i < 3; ++i) {
    auto w = sd.find(Block5::weight_name(i)), bias = sd.find(Block5::bias_name(i));
    if (w == sd.end() || bias == sd.end())
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("{}: no {} / {} (not a torchvision VGG16 state_dict)", weights_path,
                              Block5::weight_name(i), Block5::bias_name(i)));
    try {
      b.set_layer(i, std::move(w->second.values), std::move(bias->second.values));
    } catch (const Error& e) {
      throw Error(ErrorKind::kBadWeights, fmt::format("{}: {}", weights_path, e.what()));
    }
  }
  return b;
}

CacheMeta as_pool5(const CacheMeta& pool4) {
  CacheMeta m = pool4;
  m.cut = "pool5";
  m.cut_shape.clear();
  m.dim = kBlock5OutputDim;
  return m;
}

void check_init_head(const HeadFile& head, const std::string& head_path, const CacheMeta& pool4,
                     const std::string& cache_dir) {
  if (!head.block5.empty())
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--init-head {} already carries a tuned block 5; --init-head takes a "
                            "head trained on a pool5 cache",
                            head_path));
  const std::string diff = feature_difference(head.features, feature_settings(as_pool5(pool4)));
  if (!diff.empty())
    throw Error(ErrorKind::kMismatch,
                fmt::format("--init-head {} was trained on other features than pool4 cache {} "
                            "continues ({}: head vs the pool5 features of that extraction); train "
                            "the head on the pool5 cache of the same weights, size and "
                            "normalisation",
                            head_path, cache_dir, diff));
  if (head.weights.shape.dim != kBlock5OutputDim)
    throw Error(ErrorKind::kMismatch,
                fmt::format("--init-head {} takes {} features, block 5 gives {}", head_path,
                            head.weights.shape.dim, kBlock5OutputDim));
  if (!head.standardizer.empty())
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--init-head {} was trained with --standardize, which fine-tuning "
                            "does not have; train the pool5 head without it",
                            head_path));
}

Block5Source::Block5Source(FeatureSource& maps, const Block5* block5, int h, int w)
    : maps_(maps), block5_(block5), h_(h), w_(w) {
  if (maps.dim() != kBlock5Channels * h * w)
    throw Error(
        ErrorKind::kMismatch,
        fmt::format("block 5 source: maps of {} floats, expected 512 × {} × {}", maps.dim(), h, w));
}

void Block5Source::gather(const Item* items, int n, const Standardizer* s, float* out) {
  x_.resize(static_cast<size_t>(n) * maps_.dim());
  maps_.gather(items, n, nullptr, x_.data());
  Block5Activations act;
  const std::vector<float> feat = block5_->forward(x_, n, h_, w_, &act);
  for (int i = 0; i < n; ++i)
    copy_vector(feat.data() + static_cast<size_t>(i) * kBlock5OutputDim, kBlock5OutputDim, s,
                out + static_cast<size_t>(i) * kBlock5OutputDim);
}

FineTuneInputs open_finetune_inputs(const TrainParams& p) {
  FineTuneInputs in;
  in.train = std::make_unique<CacheSource>(p.train_cache, p.verify);
  in.test = std::make_unique<CacheSource>(p.test_cache, p.verify);
  check_finetune_caches(in.train->meta(), p.train_cache, in.test->meta(), p.test_cache);
  check_finetune_settings(p);
  const CacheMeta& meta = in.train->meta();
  if (p.weights.empty())
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("cache {} holds pool4 maps: fine-tuning block 5 needs --weights "
                            "FILE.pth, the VGG16 weights it was extracted with ({}, SHA-256 {})",
                            p.train_cache, meta.weights.name, meta.weights.sha256));
  in.block5 = load_block5_for_cache(p.weights, meta, p.train_cache);
  if (!p.init_head.empty()) {
    HeadFile ih = load_head(p.init_head);
    check_init_head(ih, p.init_head, meta, p.train_cache);
    in.init = std::move(ih.weights);
    in.has_init = true;
  } else {
    in.init = init_head(
        HeadShape{kBlock5OutputDim, p.hidden, static_cast<int>(meta.classes.size())}, p.seed);
  }
  return in;
}

int run_finetune(const TrainParams& p) {
  finetune_to_dir(p, /*announce=*/true);
  return 0;
}

TrainOutcome finetune_to_dir(const TrainParams& p, bool announce, const std::string& final_dir) {
  FineTuneInputs in = open_finetune_inputs(p);
  CacheSource &train = *in.train, &test = *in.test;
  const CacheMeta& meta = train.meta();
  const int h = meta.cut_shape[1], w = meta.cut_shape[2];
  const int classes = static_cast<int>(meta.classes.size());
  Block5 block5 = std::move(in.block5);
  HeadWeights init = std::move(in.init);
  if (announce && in.has_init && init.shape.hidden != p.hidden)
    spdlog::info("--init-head {}: hidden size {} (from the head)", p.init_head, init.shape.hidden);
  TrainParams run = p;  // as recorded: the head's shape and block 5's effective rate
  run.hidden = init.shape.hidden;
  run.lr_block5 = effective_lr_block5(p);
  make_directories(p.out_dir);

  const ImageSplit split = split_images(train.images(), p.val_fraction, p.seed);
  std::vector<int32_t> train_labels(split.train.size());
  for (size_t i = 0; i < split.train.size(); ++i) train_labels[i] = train.label(split.train[i]);

  FineTuneConfig cfg;
  cfg.optimizer = p.optimizer == "sgd" ? FineTuneOptimizer::kSgd : FineTuneOptimizer::kAdam;
  cfg.lr = p.lr;
  cfg.lr_block5 = run.lr_block5;
  cfg.momentum = p.momentum;
  cfg.weight_decay = p.weight_decay;
  cfg.dropout = p.dropout;
  cfg.freeze_block5 = p.freeze_block5;
  cfg.block5_conv = block5_conv_from_name(p.block5_conv);
  cfg.seed = p.seed;  // the dropout masks of the pool5 trainer for the same seed and step keys
  TrainOutcome out;
  // As the pool5 trainer weighs them: over the training images (train_head/imbalance.h).
  if (p.class_weight == "balanced")
    cfg.class_weight = out.class_weights = balanced_class_weights(train_labels, classes);

  if (announce)
    fmt::print(
        "train_head: fine-tuning {} + head from pool4 maps {}×{}×{}: {} training images × {} crops "
        "({} held out), {} test images × {} views, {} classes, {}{} lr {:g} (block 5: {:g}), {} "
        "convolutions, {} threads, {}\n",
        p.freeze_block5 ? "nothing of block 5 (frozen)" : "block 5", kBlock5Channels, h, w,
        split.train.size(), train.crops(), split.val.size(), test.images().size(), test.crops(),
        classes, p.optimizer, p.optimizer == "sgd" ? fmt::format(" momentum {:g}", p.momentum) : "",
        p.lr, cfg.lr_block5, block5_conv_used(cfg, h, w), p.threads, blas_backend());

  // The starting point's test accuracy: with --init-head, the frozen pipeline's head (block 5
  // from the weights file), shown beside the tuned one.
  EvalResult init_test;
  const bool has_init = in.has_init;
  if (has_init) {
    init_test = evaluate_block5_head(init, block5, test, h, w, test.images());
    if (announce)
      fmt::print(
          "train_head: --init-head on the test images before fine-tuning: accuracy {:.2f}%\n",
          100 * init_test.accuracy);
  }

  FineTuner ft(std::move(block5), std::move(init), cfg);
  MetricsLog log(p.out_dir);
  const bool has_val = !split.val.empty();
  out.selection = has_val ? selection_name(p.select) : "final";
  HeadWeights kept_head;
  TunedBlock5 kept_block5;
  EpochMetrics best;
  uint64_t peak_rss_anon = 0;

  // Vectors per epoch, as epoch_schedule() draws them (the balanced sampler draws as many).
  const uint64_t per_epoch = split.train.size() * (p.all_crops ? train.crops() : 1);
  Progress progress("train_head", per_epoch * p.epochs, "crops");
  uint64_t done = 0;
  for (int e = 0; e < p.epochs; ++e) {
    auto t0 = std::chrono::steady_clock::now();
    const std::vector<Item> items = epoch_schedule(p, split.train, train_labels, train.crops(), e);
    const int n_items = static_cast<int>(items.size());
    const int batches = (n_items + p.batch - 1) / p.batch;
    MapBatch buf[2];
    auto load = [&](int b, MapBatch* into) {
      const int lo = b * p.batch, n = std::min(p.batch, n_items - lo);
      into->n = n;
      into->x.resize(static_cast<size_t>(n) * train.dim());
      into->labels.resize(n);
      for (int i = 0; i < n; ++i) into->labels[i] = train.label(items[lo + i].image);
      train.gather(items.data() + lo, n, nullptr, into->x.data());
    };
    double loss_sum = 0;
    int64_t correct = 0;
    if (batches > 0) load(0, &buf[0]);
    for (int b = 0; b < batches; ++b) {
      MapBatch& cur = buf[b % 2];
      tbb::task_group prefetch;  // the next batch's maps are read while this one trains
      if (b + 1 < batches) prefetch.run([&, b] { load(b + 1, &buf[(b + 1) % 2]); });
      FineTuneStats st;
      try {
        // The pool5 trainer's step key (train_head/trainer.cpp), so dropout masks agree.
        st = ft.step(cur.x, cur.n, h, w, cur.labels.data(),
                     (static_cast<uint64_t>(e) << 32) | static_cast<uint64_t>(b));
      } catch (...) {
        prefetch.cancel();
        prefetch.wait();
        throw;
      }
      prefetch.wait();
      peak_rss_anon = std::max(peak_rss_anon, process_memory().rss_anon);
      loss_sum += st.loss * cur.n;
      correct += st.correct;
      done += cur.n;
      if (!p.quiet) progress.update(done, done);
    }
    EpochMetrics m;
    m.epoch = e + 1;
    m.vectors = n_items;
    m.train_loss = n_items ? loss_sum / n_items : 0.0;
    m.train_accuracy = n_items ? static_cast<double>(correct) / n_items : 0.0;
    m.train_seconds = seconds_since(t0);
    if (has_val) {
      const EvalResult v = evaluate_block5_head(ft.head(), ft.block5(), train, h, w, split.val);
      m.has_val = true;
      m.val_loss = v.loss;
      m.val_accuracy = v.accuracy;
      m.val_balanced_accuracy = balanced_accuracy(v.confusion);
    }
    EvalResult t = evaluate_block5_head(ft.head(), ft.block5(), test, h, w, test.images());
    m.test_loss = t.loss;
    m.test_accuracy = t.accuracy;
    m.seconds = seconds_since(t0);
    out.train_seconds += m.train_seconds;
    out.train_vectors += m.vectors;
    if (has_val && (e == 0 || better_epoch(m, best, p.select))) {
      best = m;
      out.selected_epoch = m.epoch;
      out.selected_test = t;
      kept_head = ft.head();
      kept_block5 = tensors_of(ft.block5());
    }
    if (e + 1 == p.epochs) out.final_test = std::move(t);
    out.epochs.push_back(m);
    log.append(m);
    if (!p.quiet) fmt::print("{}\n", progress_line(m, p.epochs));
    std::fflush(stdout);
  }
  if (!p.quiet) progress.done(done, done);
  out.final_weights = ft.head();
  if (!has_val) {
    out.selected_epoch = p.epochs;
    out.selected_test = out.final_test;
    kept_head = ft.head();
    kept_block5 = tensors_of(ft.block5());
  }

  // head.bin: format version 2, the head with the block 5 it was selected with.
  HeadFile hf = make_head_file(run, meta, Standardizer{}, out, std::move(kept_head));
  hf.block5 = std::move(kept_block5);
  hf.training["optimizer"] = p.optimizer;
  hf.training["lr_block5"] = run.lr_block5;
  hf.training["freeze_block5"] = p.freeze_block5;
  hf.training["block5_conv"] = block5_conv_used(cfg, h, w);
  save_head(p.out_dir + "/head.bin", hf);

  RunInfo info{run,
               &train.meta(),
               &test.meta(),
               static_cast<int>(split.train.size()),
               static_cast<int>(split.val.size()),
               static_cast<int>(test.images().size()),
               peak_rss_anon};
  json summary = summary_json(info, out);
  json& settings = summary["settings"];
  settings["optimizer"] = p.optimizer;
  if (p.optimizer == "sgd") settings["momentum"] = p.momentum;
  settings["lr_block5"] = run.lr_block5;
  settings["freeze_block5"] = p.freeze_block5;
  settings["block5_conv"] = block5_conv_used(cfg, h, w);
  settings["init_head"] = p.init_head.empty() ? json(nullptr) : json(p.init_head);
  settings["weights"] = p.weights;
  summary["finetune"] = {
      {"cut", "pool4"},
      {"map", meta.cut_shape},
      {"weights", {{"file", p.weights}, {"sha256", meta.weights.sha256}}},
      {"block5", p.freeze_block5 ? "frozen" : "tuned"},
      // The frozen (--init-head) head's test evaluation before fine-tuning, beside the tuned one.
      {"init_test", has_init ? eval_json(init_test, meta.classes) : json(nullptr)}};
  write_json_file(p.out_dir + "/summary.json", summary);

  write_predictions_and_report(p.out_dir, test.meta(), test.images(), out.selected_test, final_dir);
  if (!announce) return out;
  fmt::print("{}", final_table(out, meta.classes));
  if (has_init)
    fmt::print(
        "test accuracy: {:.2f}% with the --init-head head before fine-tuning, {:.2f}% after\n",
        100 * init_test.accuracy, 100 * out.selected_test.accuracy);
  fmt::print("train_head: {:.1f} crops/s over {:.1f} s of fine-tuning; outputs in {}\n",
             out.train_seconds > 0 ? out.train_vectors / out.train_seconds : 0.0, out.train_seconds,
             p.out_dir);
  return out;
}

}  // namespace vggcache
