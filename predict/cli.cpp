#include "predict/cli.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <thread>
#include <vector>

namespace vggcache {

std::string validate_predict_params(const PredictParams& p) {
  if (p.paths.empty()) return "give at least one image file or folder";
  if (p.tta < 0) return fmt::format("--tta must be >= 1 (got {})", p.tta);
  // The negated comparisons also reject NaN (the same ranges extract accepts).
  if (!(p.scale_min > 0.0 && p.scale_max <= 1.0 && p.scale_min <= p.scale_max))
    return fmt::format("--scale must be MIN,MAX with 0 < MIN <= MAX <= 1 (got {},{})", p.scale_min,
                       p.scale_max);
  if (!(p.ratio_min > 0.0 && p.ratio_min <= p.ratio_max && p.ratio_max < 1e6))
    return fmt::format("--ratio must be MIN,MAX with 0 < MIN <= MAX (got {},{})", p.ratio_min,
                       p.ratio_max);
  if (p.batch < 1) return fmt::format("--batch must be >= 1 (got {})", p.batch);
  if (p.threads < 1) return fmt::format("--threads must be >= 1 (got {})", p.threads);
  if (p.device != "cpu" && p.device != "cuda")
    return fmt::format("--device must be cpu or cuda (got {})", p.device);
  return "";
}

int parse_predict_args(int argc, char** argv, PredictParams* params) {
  PredictParams& p = *params;
  CLI::App app{
      "predict: classify images with VGG16 features and a head trained by train_head; CSV "
      "(path,class,probability,p_<class>...) to stdout or --out"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--weights", p.weights,
                 "the VGG16 weights the head's features came from: .pth file or random:SEED")
      ->required();
  app.add_option("--head", p.head, "RUN_DIR/head.bin written by train_head")->required();
  app.add_option("--out", p.out, "write the CSV to FILE (atomically) instead of stdout");
  int tta = 0;
  app.add_option("--tta", tta,
                 "K random crops per image, probabilities averaged (default: eval "
                 "view)");
  std::vector<double> scale, ratio;
  app.add_option("--scale", scale, "--tta crop area range MIN,MAX (default 0.5,1.0)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--ratio", ratio, "--tta crop aspect range MIN,MAX (default 0.75,1.3333)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--flip", p.flip, "--tta: random horizontal flip, p = 0.5");
  app.add_option("--seed", p.seed, "--tta crop seed (as extract --seed)")->capture_default_str();
  app.add_option("--batch", p.batch, "views per forward pass")->capture_default_str();
  app.add_option("--threads", p.threads, "worker threads (default: all hardware threads)");
  app.add_option("--device", p.device, "cpu or cuda")->capture_default_str();
  app.add_flag("--quiet", p.quiet, "no progress lines");
  app.add_option("PATH", p.paths, "image files and folders (folders are walked recursively)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help (rc 0) or the parse error naming the flag
    return rc == 0 ? 0 : 2;
  }
  auto take_pair = [](const std::vector<double>& v, const char* flag, double* lo, double* hi) {
    if (v.empty()) return true;
    if (v.size() != 2) {
      fmt::print(stderr, "predict: {} needs exactly two numbers MIN,MAX\n", flag);
      return false;
    }
    *lo = v[0];
    *hi = v[1];
    return true;
  };
  if (!take_pair(scale, "--scale", &p.scale_min, &p.scale_max) ||
      !take_pair(ratio, "--ratio", &p.ratio_min, &p.ratio_max))
    return 2;
  if (app.count("--tta")) {
    if (tta < 1) {
      fmt::print(stderr, "predict: --tta must be >= 1 (got {})\nRun with --help for usage.\n", tta);
      return 2;
    }
    p.tta = tta;
  } else if (!scale.empty() || !ratio.empty() || p.flip) {
    fmt::print(stderr,
               "predict: note: without --tta the eval view is used; "
               "--scale/--ratio/--flip are ignored\n");
  }
  if (app.count("--threads") == 0)
    p.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string err = validate_predict_params(p);
  if (!err.empty()) {
    fmt::print(stderr, "predict: {}\nRun with --help for usage.\n", err);
    return 2;
  }
  return -1;
}

}  // namespace vggcache
