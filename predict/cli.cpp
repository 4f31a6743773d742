#include "predict/cli.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <vector>

namespace vggcache {

std::string validate_predict_params(const PredictParams& p) {
  if (p.paths.empty()) return "give at least one image file or folder";
  if (p.tta < 0) return fmt::format("--tta must be >= 1 (got {})", p.tta);
  // Which of the two the head needs is known once it is read; one of them always is.
  if (p.weights.empty() && p.backbone.empty())
    return "give --weights FILE|random:SEED (the weights the head's features came from), or "
           "--backbone torchscript:FILE for a head trained on a TorchScript backbone's features";
  return validate_view_params(p);  // the ranges extract accepts
}

ParseStatus parse_predict_args(int argc, char** argv, PredictParams* params) {
  PredictParams& p = *params;
  CLI::App app{
      "predict: classify images with VGG16 (or the head's backbone) features and a head trained by "
      "train_head; CSV "
      "(path,class,probability,p_<class>...) to stdout or --out"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--weights", p.weights,
                 "the weights the head's features came from: .pth file or random:SEED (vgg16 and "
                 "resnet50 heads)");
  app.add_option("--backbone", p.backbone,
                 "the network (default: the one the head records); a head trained on "
                 "torchscript:FILE features needs --backbone torchscript:FILE");
  app.add_option("--head", p.head, "RUN_DIR/head.bin written by train_head")->required();
  app.add_option("--out", p.out, "write the CSV to FILE (atomically) instead of stdout");
  int tta = 0;
  app.add_option("--tta", tta,
                 "K random crops per image, probabilities averaged (default: eval "
                 "view)");
  const ViewFlagHelp help{"--tta crop area range MIN,MAX (default 0.5,1.0)",
                          "--tta crop aspect range MIN,MAX (default 0.75,1.3333)",
                          "--tta: random horizontal flip, p = 0.5",
                          "--tta crop seed (as extract --seed)", "views per forward pass"};
  ViewFlagValues views;
  add_crop_flags(app, help, &p, &views);
  add_run_flags(app, help, &p);
  app.add_flag("--quiet", p.quiet, "no progress lines");
  app.add_option("PATH", p.paths, "image files and folders (folders are walked recursively)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help (rc 0) or the parse error naming the flag
    return ParseStatus::exit(rc == 0 ? 0 : 2);
  }
  if (!take_view_flags(app, "predict", views, &p)) return ParseStatus::exit(2);
  if (app.count("--tta")) {
    if (tta < 1) {
      fmt::print(stderr, "predict: --tta must be >= 1 (got {})\nRun with --help for usage.\n", tta);
      return ParseStatus::exit(2);
    }
    p.tta = tta;
  } else if (!views.scale.empty() || !views.ratio.empty() || p.flip) {
    fmt::print(stderr,
               "predict: note: without --tta the eval view is used; "
               "--scale/--ratio/--flip are ignored\n");
  }
  if (!report_usage_error("predict", validate_predict_params(p))) return ParseStatus::exit(2);
  return ParseStatus::proceed();
}

}  // namespace vggcache
