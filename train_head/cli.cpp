#include "train_head/cli.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <sstream>
#include <thread>

namespace vggcache {

const std::vector<std::string>& optimizers() {
  static const std::vector<std::string> names = {"adam", "sgd", "lbfgs"};
  return names;
}

std::string validate_train_params(const TrainParams& p) {
  // Negated comparisons so NaN is rejected too.
  if (p.epochs < 1) return fmt::format("--epochs must be >= 1 (got {})", p.epochs);
  if (p.batch < 1) return fmt::format("--batch must be >= 1 (got {})", p.batch);
  if (!(p.lr > 0.0 && p.lr < 1e6)) return fmt::format("--lr must be > 0 (got {})", p.lr);
  if (p.hidden < 0)
    return fmt::format("--hidden must be >= 0 (got {}; 0 is the linear probe)", p.hidden);
  const auto& opts = optimizers();
  if (std::find(opts.begin(), opts.end(), p.optimizer) == opts.end())
    return fmt::format("--optimizer must be one of {} (got '{}')", fmt::join(opts, ", "),
                       p.optimizer);
  if (p.optimizer == "lbfgs" && p.hidden != 0)
    return fmt::format("--optimizer lbfgs trains the linear probe: it needs --hidden 0 (got {})",
                       p.hidden);
  // The upper bounds keep (l2/2)·‖W‖² and the tolerance meaningful in double.
  if (!(p.l2 > 0.0 && p.l2 <= 1e12)) return fmt::format("--l2 must be in (0, 1e12] (got {})", p.l2);
  if (p.max_iter < 1) return fmt::format("--max-iter must be >= 1 (got {})", p.max_iter);
  if (!(p.tol > 0.0 && p.tol < 1e6)) return fmt::format("--tol must be > 0 (got {})", p.tol);
  if (!(p.dropout >= 0.0 && p.dropout < 1.0))
    return fmt::format("--dropout must be in [0, 1) (got {})", p.dropout);
  if (!(p.weight_decay >= 0.0 && p.weight_decay < 1e6))
    return fmt::format("--weight-decay must be >= 0 (got {})", p.weight_decay);
  if (p.threads < 1) return fmt::format("--threads must be >= 1 (got {})", p.threads);
  if (!(p.val_fraction >= 0.0 && p.val_fraction < 1.0))
    return fmt::format("--val-fraction must be in [0, 1) (got {})", p.val_fraction);
  if (p.class_weight != "none" && p.class_weight != "balanced")
    return fmt::format("--class-weight must be 'none' or 'balanced' (got '{}')", p.class_weight);
  if (p.sampler != "uniform" && p.sampler != "balanced")
    return fmt::format("--sampler must be 'uniform' or 'balanced' (got '{}')", p.sampler);
  if (p.order != "uniform" && p.order != "blocks")
    return fmt::format("--order must be 'uniform' or 'blocks' (got '{}')", p.order);
  if (p.block_records < 1)
    return fmt::format("--block-records must be >= 1 (got {})", p.block_records);
  if (p.block_window < 1)
    return fmt::format("--block-window must be >= 1 (got {})", p.block_window);
  if (p.order == "blocks" && p.sampler != "uniform")
    return "--order blocks needs --sampler uniform (the balanced sampler draws with replacement "
           "across the whole cache)";
  if (p.select != "accuracy" && p.select != "balanced")
    return fmt::format("--select must be 'accuracy' or 'balanced' (got '{}')", p.select);
  if (!(p.momentum >= 0.0 && p.momentum < 1.0))
    return fmt::format("--momentum must be in [0, 1) (got {})", p.momentum);
  if (!(p.lr_block5 >= 0.0 && p.lr_block5 < 1e6))
    return fmt::format("--lr-block5 must be > 0 (got {})", p.lr_block5);
  return "";
}

namespace {

// The flags that only fine-tuning from a pool4 cache reads (a single run).
// (--optimizer sgd too: check_no_finetune_flags() refuses it on pool5 caches, single runs and
// sweeps alike, and k-NN refuses any --optimizer.)
constexpr const char* kFinetuneFlags[] = {"--weights",   "--momentum",      "--lr-block5",
                                          "--init-head", "--freeze-block5", "--block5-conv"};

// The fine-tuning flags once parsed: "" or the usage error. Whether the caches hold pool4 maps is
// only known once they are opened (train_head/finetune_run.h refuses these flags on pool5 caches).
std::string apply_finetune_args(const CLI::App& app, const TrainParams& p) {
  if (app.count("--lr-block5") > 0 && !(p.lr_block5 > 0.0))
    return fmt::format("--lr-block5 must be > 0 (got {})", p.lr_block5);
  // Adam has no momentum setting of that name (its β1 is fixed at 0.9): silently ignoring the
  // flag would hide a typo'd optimizer choice. A sweep may cross --optimizer with it (each SGD
  // configuration takes it).
  if (app.count("--momentum") > 0 && p.optimizer != "sgd" && app.count("--sweep") == 0)
    return "--momentum applies to --optimizer sgd only";
  return "";
}

// The k-NN flags once parsed: "" or the usage error. K and T are checked whenever given, so
// `--knn 0` is refused rather than taken for "no k-NN".
std::string apply_knn_args(const CLI::App& app, const std::string& spec, TrainParams* params,
                           bool has_sweep) {
  TrainParams& p = *params;
  const bool knn = app.count("--knn") > 0;
  if (!knn) {
    for (const char* flag : {"--knn-vote", "--knn-temperature"})
      if (app.count(flag) > 0) return fmt::format("{} needs --knn", flag);
    return "";
  }
  // K or a list K1,K2,... (a sweep over K), kept ascending without repeats.
  std::stringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    int k = 0;
    char tail = 0;
    if (std::sscanf(item.c_str(), "%d%c", &k, &tail) != 1)
      return fmt::format("--knn takes K or a list K1,K2,... of integers (got '{}')", spec);
    if (k < 1) return fmt::format("--knn must be >= 1 (got {})", k);
    p.knn.push_back(k);
  }
  if (p.knn.empty()) return fmt::format("--knn takes K or a list K1,K2,... (got '{}')", spec);
  std::sort(p.knn.begin(), p.knn.end());
  p.knn.erase(std::unique(p.knn.begin(), p.knn.end()), p.knn.end());
  if (p.knn_vote != "uniform" && p.knn_vote != "weighted")
    return fmt::format("--knn-vote must be 'uniform' or 'weighted' (got '{}')", p.knn_vote);
  if (!(p.knn_temperature > 0.0 && p.knn_temperature < 1e6))
    return fmt::format("--knn-temperature must be > 0 (got {})", p.knn_temperature);
  // Nothing is trained or selected: a training flag with --knn is a mistake, not a no-op.
  for (const char* flag :
       {"--epochs",       "--batch",   "--lr",           "--hidden",        "--dropout",
        "--weight-decay", "--seed",    "--val-fraction", "--standardize",   "--all-crops",
        "--class-weight", "--sampler", "--select",       "--optimizer",     "--l2",
        "--max-iter",     "--tol",     "--order",        "--block-records", "--block-window"})
    if (app.count(flag) > 0)
      return fmt::format("{} does not apply to --knn (nothing is trained)", flag);
  for (const char* flag : kFinetuneFlags)
    if (app.count(flag) > 0)
      return fmt::format("{} does not apply to --knn (nothing is trained)", flag);
  if (has_sweep && app.count("--sweep") > 0) return "--sweep cannot be combined with --knn";
  return "";
}

// Flags that do not apply to the chosen optimizer or head are refused when given, not ignored
// ("" or the usage error). A sweep may cross --optimizer or --hidden with them (each applies to
// the configurations it fits), so its base flags are not checked here.
std::string check_optimizer_flags(const CLI::App& app, const TrainParams& p) {
  if (app.count("--sweep") > 0 || !p.knn.empty()) return "";
  if (p.optimizer == "lbfgs") {
    for (const char* flag : {"--epochs", "--batch", "--lr", "--dropout", "--weight-decay"})
      if (app.count(flag) > 0)
        return fmt::format(
            "{} does not apply to --optimizer lbfgs (full-batch; its settings are "
            "--l2, --max-iter, --tol)",
            flag);
    for (const char* flag : {"--order", "--block-records", "--block-window"})
      if (app.count(flag) > 0)
        return fmt::format(
            "{} does not apply to --optimizer lbfgs (every step reads every training vector)",
            flag);
    if (app.count("--sampler") > 0)
      return "--sampler does not apply to --optimizer lbfgs (every training vector is in each "
             "step; --class-weight balanced weighs the classes)";
  } else {
    for (const char* flag : {"--l2", "--max-iter", "--tol"})
      if (app.count(flag) > 0)
        return fmt::format("{} needs --optimizer lbfgs (Adam's L2 is --weight-decay)", flag);
  }
  if (p.order != "blocks")
    for (const char* flag : {"--block-records", "--block-window"})
      if (app.count(flag) > 0) return fmt::format("{} needs --order blocks", flag);
  if (p.hidden == 0 && app.count("--dropout") > 0)
    return "--dropout does not apply to --hidden 0 (a probe has no hidden layer to drop from)";
  return "";
}

// Sweep defaults and checks once the flags are parsed; "" or the usage error.
std::string apply_sweep_args(const CLI::App& app, const std::string& shard, TrainParams* p,
                             SweepParams* sweep) {
  sweep->enabled = app.count("--sweep") > 0;
  if (!sweep->enabled) {
    for (const char* flag : {"--samples", "--parallel", "--shard"})
      if (app.count(flag) > 0) return fmt::format("{} needs --sweep", flag);
    return "";
  }
  if (app.count("--val-fraction") == 0) p->val_fraction = 0.1;
  if (!(p->val_fraction > 0.0))
    return "--val-fraction must be > 0 in a sweep (configurations are selected on it)";
  if (app.count("--samples") > 0 && sweep->samples < 1)
    return fmt::format("--samples must be >= 1 (got {})", sweep->samples);
  if (app.count("--parallel") > 0 && sweep->parallel < 1)
    return fmt::format("--parallel must be >= 1 (got {})", sweep->parallel);
  if (!shard.empty()) {
    int i = -1, n = -1;
    char tail = 0;
    if (std::sscanf(shard.c_str(), "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 0 || i >= n)
      return fmt::format("--shard must be I/N with 0 <= I < N (got '{}')", shard);
    sweep->shard_index = i;
    sweep->shard_count = n;
  }
  return "";
}

}  // namespace

ParseStatus parse_train_args(int argc, char** argv, TrainParams* params, SweepParams* sweep) {
  TrainParams& p = *params;
  CLI::App app{"train_head: train the classifier head on cached VGG16 features (CPU)"};
  // A repeated flag takes its last value, as most tools do (scripts append overrides).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--train", p.train_cache, "training feature cache")->required();
  app.add_option("--test", p.test_cache, "test feature cache (evaluation only)")->required();
  app.add_option("--out", p.out_dir, "run directory: metrics.jsonl, summary.json, head.bin")
      ->required();
  app.add_option("--epochs", p.epochs, "passes over the training images")->capture_default_str();
  app.add_option("--batch", p.batch, "vectors per Adam step")->capture_default_str();
  app.add_option("--lr", p.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--hidden", p.hidden, "hidden units; 0: the linear probe (no hidden layer)")
      ->capture_default_str();
  app.add_option("--dropout", p.dropout, "dropout probability after the ReLU")
      ->capture_default_str();
  app.add_option("--weight-decay", p.weight_decay, "L2 added to the gradient (torch Adam)")
      ->capture_default_str();
  app.add_option("--seed", p.seed, "init, crop choice, shuffling, dropout, val split")
      ->capture_default_str();
  app.add_option("--threads", p.threads, "TBB and BLAS threads (default: all hardware threads)");
  app.add_option("--val-fraction", p.val_fraction,
                 "share of training images held out for validation and model selection")
      ->capture_default_str();
  app.add_flag("--standardize", p.standardize, "per-dimension mean/std of the training vectors");
  app.add_flag("--all-crops", p.all_crops, "every cached crop each epoch (default: one per image)");
  app.add_option("--class-weight", p.class_weight,
                 "none, or balanced: weigh each sample's loss by n / (classes · n_class)")
      ->capture_default_str();
  app.add_option("--sampler", p.sampler,
                 "uniform, or balanced: draw training vectors with classes equally likely")
      ->capture_default_str();
  app.add_option("--order", p.order,
                 "uniform: every epoch's vectors in one uniform shuffle; blocks: a DIFFERENT "
                 "sampling for caches larger than memory: blocks of --block-records consecutive "
                 "records in shuffled order, vectors shuffled within --block-window blocks, so "
                 "reads are long and sequential (same crops per epoch, same epoch contents)")
      ->capture_default_str();
  app.add_option("--block-records", p.block_records, "--order blocks: records per block")
      ->capture_default_str();
  app.add_option("--block-window", p.block_window,
                 "--order blocks: blocks whose vectors are shuffled together")
      ->capture_default_str();
  app.add_option("--select", p.select,
                 "validation metric that picks the saved epoch: accuracy or balanced (accuracy)")
      ->capture_default_str();
  app.add_option("--optimizer", p.optimizer,
                 "adam (mini-batches); lbfgs: full-batch L-BFGS of the linear probe "
                 "(--hidden 0), minimising sum(w_i loss_i) + l2/2 |W|^2; sgd (with --momentum): "
                 "fine-tuning from pool4 caches only")
      ->capture_default_str();
  app.add_option("--l2", p.l2, "lbfgs: L2 strength (scikit-learn's C = 1/l2)")
      ->capture_default_str();
  app.add_option("--max-iter", p.max_iter, "lbfgs: iterations at most")->capture_default_str();
  app.add_option("--tol", p.tol, "lbfgs: stop when the mean objective's gradient max-norm <= tol")
      ->capture_default_str();
  app.add_flag("--quiet", p.quiet, "no per-epoch (lbfgs: per-iteration) progress lines");
  app.add_flag("--full-width", p.full_width,
               "train on the 25088-d vectors even from prepool-f32 caches (the reference path; "
               "default there: the compact first layer, same results)");
  auto* ft = app.add_option_group(
      "Fine-tuning",
      "from a pool4 cache (extract --cut pool4): VGG16's block 5 is trained with the head");
  ft->add_option("--weights", p.weights,
                 "the VGG16 weights file the pool4 caches were extracted with (required there)");
  ft->add_option("--momentum", p.momentum, "SGD momentum")->capture_default_str();
  ft->add_option("--lr-block5", p.lr_block5, "block 5's learning rate (default: --lr / 10)");
  ft->add_flag("--freeze-block5", p.freeze_block5,
               "train the head only; block 5 keeps the weights file's values");
  ft->add_option("--block5-conv", p.block5_conv,
                 "block 5's convolutions while training: winograd (F(4x4,3x3), 2.8x fewer "
                 "multiplications at 4x4 maps), direct (tap-wise GEMMs, tighter rounding), or auto "
                 "(winograd where the maps are at least 4x4)")
      ->check(CLI::IsMember({"auto", "direct", "winograd"}))
      ->capture_default_str();
  ft->add_option("--init-head", p.init_head,
                 "RUN_DIR/head.bin trained on the pool5 cache of the same weights: the starting "
                 "head (its hidden size wins)");
  std::string knn;
  app.add_option("--knn", knn,
                 "classify by the K nearest training vectors (cosine) instead of training a head; "
                 "K1,K2,...: one run per K (outputs in RUN_DIR/k<K>/)");
  app.add_option("--knn-vote", p.knn_vote, "k-NN votes: uniform (majority) or weighted (e^{s/T})")
      ->capture_default_str();
  app.add_option("--knn-temperature", p.knn_temperature, "T of weighted k-NN votes")
      ->capture_default_str();
  bool no_verify = false;
  app.add_flag("--no-verify", no_verify)->group("");  // hidden: skip record checksums
  std::string shard;
  if (sweep) {
    auto* g =
        app.add_option_group("Sweep",
                             "many configurations, one cache (--out: SWEEP_DIR); merge shards with "
                             "train_head --collect SWEEP_DIR... [--out DIR]");
    g->add_option("--sweep", sweep->spec,
                  "grid 'lr=1e-3,3e-4;dropout=0.3,0.5' or a TOML/JSON file of key: values");
    g->add_option("--samples", sweep->samples, "N random configurations instead of the grid");
    g->add_option("--parallel", sweep->parallel,
                  "configurations trained at once (default: from cores and memory)");
    g->add_option("--shard", shard, "I/N: train the I-th (0-based) of N disjoint slices");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help (rc 0) or the parse error naming the flag
    return ParseStatus::exit(rc == 0 ? 0 : 2);
  }
  p.verify = !no_verify;
  if (app.count("--threads") == 0)
    p.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string err = validate_train_params(p);
  if (err.empty()) err = apply_finetune_args(app, p);
  if (err.empty()) err = apply_knn_args(app, knn, &p, sweep != nullptr);
  if (err.empty()) err = check_optimizer_flags(app, p);
  if (err.empty() && sweep) err = apply_sweep_args(app, shard, &p, sweep);
  if (!report_usage_error("train_head", err)) return ParseStatus::exit(2);
  return ParseStatus::proceed();
}

}  // namespace vggcache
