#include "train_head/cli.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <thread>

namespace vggcache {

std::string validate_train_params(const TrainParams& p) {
  // Negated comparisons so NaN is rejected too.
  if (p.epochs < 1) return fmt::format("--epochs must be >= 1 (got {})", p.epochs);
  if (p.batch < 1) return fmt::format("--batch must be >= 1 (got {})", p.batch);
  if (!(p.lr > 0.0 && p.lr < 1e6)) return fmt::format("--lr must be > 0 (got {})", p.lr);
  if (p.hidden < 1) return fmt::format("--hidden must be >= 1 (got {})", p.hidden);
  if (!(p.dropout >= 0.0 && p.dropout < 1.0))
    return fmt::format("--dropout must be in [0, 1) (got {})", p.dropout);
  if (!(p.weight_decay >= 0.0 && p.weight_decay < 1e6))
    return fmt::format("--weight-decay must be >= 0 (got {})", p.weight_decay);
  if (p.threads < 1) return fmt::format("--threads must be >= 1 (got {})", p.threads);
  if (!(p.val_fraction >= 0.0 && p.val_fraction < 1.0))
    return fmt::format("--val-fraction must be in [0, 1) (got {})", p.val_fraction);
  return "";
}

int parse_train_args(int argc, char** argv, TrainParams* params) {
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
  app.add_option("--hidden", p.hidden, "hidden units")->capture_default_str();
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
  app.add_flag("--quiet", p.quiet, "no per-epoch progress lines");
  bool no_verify = false;
  app.add_flag("--no-verify", no_verify)->group("");  // hidden: skip record checksums

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help (rc 0) or the parse error naming the flag
    return rc == 0 ? 0 : 2;
  }
  p.verify = !no_verify;
  if (app.count("--threads") == 0)
    p.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string err = validate_train_params(p);
  if (!err.empty()) {
    fmt::print(stderr, "train_head: {}\nRun with --help for usage.\n", err);
    return 2;
  }
  return -1;
}

}  // namespace vggcache
