#include "export/cli.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>

namespace vggcache {

std::string validate_export_params(const ExportParams& p) {
  if (p.format != "pth" && p.format != "onnx")
    return fmt::format("--format {}: unknown format (pth, onnx)", p.format);
  if (p.out.empty()) return "--out must name a file";
  return "";
}

ParseStatus parse_export_args(int argc, char** argv, ExportParams* params) {
  ExportParams& p = *params;
  CLI::App app{
      "vggcache-export: write a head trained by train_head, with the VGG16 weights its features "
      "came from, as a model PyTorch loads (--format pth: torchvision vgg16 state_dict whose "
      "classifier is the head, plus OUT.json describing it) or an ONNX runtime runs (--format "
      "onnx: image to probabilities, metadata in the model)"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--weights", p.weights,
                 "the VGG16 weights the head's features came from: .pth file or random:SEED")
      ->required();
  app.add_option("--head", p.head, "RUN_DIR/head.bin written by train_head")->required();
  app.add_option("--out", p.out, "the model file to write (atomically); OUT.json beside it")
      ->required();
  app.add_option("--format", p.format, "pth (default) or onnx");
  app.add_flag("--overwrite", p.overwrite, "replace existing OUT and OUT.json");
  app.add_flag("--quiet", p.quiet, "no summary line");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return ParseStatus::exit(rc == 0 ? 0 : 2);
  }
  if (!report_usage_error("vggcache-export", validate_export_params(p)))
    return ParseStatus::exit(2);
  return ParseStatus::proceed();
}

}  // namespace vggcache
