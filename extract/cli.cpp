#include "extract/cli.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "common/error.h"
#include "common/shard_set.h"
#include "extract/backbone.h"

namespace vggcache {

std::string validate_extract_params(const ExtractParams& p) {
  if (p.size < 32) return fmt::format("--size must be >= 32 (got {})", p.size);
  if (p.crops < 1) return fmt::format("--crops must be >= 1 (got {})", p.crops);
  if (std::string err = validate_view_params(p); !err.empty()) return err;
  if (p.codec != "auto" && p.codec != "raw-f32" && p.codec != "prepool-f32" &&
      p.codec != "raw-f16" && p.codec != "prepool-f16")
    return fmt::format(
        "--codec must be auto, raw-f32, prepool-f32, raw-f16 or prepool-f16 (got {})", p.codec);
  if (p.cut != "pool5" && p.cut != "pool4")
    return fmt::format("--cut must be pool5 or pool4 (got {})", p.cut);
  if (p.backbone != "vgg16" && p.backbone != "resnet50" && p.backbone != "torchscript")
    return fmt::format("--backbone must be vgg16, resnet50 or torchscript:FILE (got {})",
                       p.backbone);
  if (p.backbone == "torchscript" && !p.weights.empty())
    return "--weights is not used with --backbone torchscript:FILE: the module file is the weights "
           "(its SHA-256 is recorded); drop --weights";
  if (p.backbone != "torchscript" && p.weights.empty())
    return fmt::format("--weights FILE|random:SEED is required with --backbone {}", p.backbone);
  // The pre-pool map and pool4 are VGG16's layers: other backbones store their vector (raw-f32).
  if (p.backbone != "vgg16" && (p.codec == "prepool-f32" || p.codec == "prepool-f16"))
    return fmt::format(
        "--codec {} is VGG16's pre-pool map; --backbone {} records are "
        "raw-f32 or raw-f16 (--codec auto, raw-f32 or raw-f16)",
        p.codec, p.backbone);
  if (p.backbone != "vgg16" && p.cut != "pool5")
    return fmt::format(
        "--cut {} is a VGG16 layer (for fine-tuning its block 5); --backbone {} "
        "gives its output features only",
        p.cut, p.backbone);
  if (p.cut == "pool4" && (p.codec == "prepool-f32" || p.codec == "prepool-f16"))
    return fmt::format(
        "--codec {} stores the map before pool5's average pooling; with --cut pool4 "
        "records are the pool4 map itself (raw-f32)",
        p.codec);
  if (p.cut == "pool4" && p.codec == "raw-f16")
    return "--codec raw-f16 is not available with --cut pool4: fine-tuning reads raw-f32 pool4 "
           "records";
  if (p.precision != "fp32" && p.precision != "bf16" && p.precision != "fp16")
    return fmt::format("--precision must be fp32, bf16 or fp16 (got {})", p.precision);
  // LibTorch's CPU convolutions have no float16 kernel ("slow_conv2d_cpu" not implemented for
  // 'Half' in 1.13): refused here rather than failing mid-run or quietly running float32.
  if (p.precision == "fp16" && p.device == "cpu")
    return "--precision fp16 needs --device cuda (LibTorch has no float16 convolution on the CPU); "
           "use --precision bf16 on the CPU";
  return "";
}

ParseStatus parse_extract_args(int argc, char** argv, ExtractParams* params) {
  ExtractParams& p = *params;
  CLI::App app{
      "extract: frozen VGG16 (or other backbone) features of augmented crops into an LMDB cache"};
  // A repeated flag overrides the earlier one (scripts append overrides to a base command line).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data", p.data_dir, "ImageFolder split: DIR/<class>/<image>")->required();
  app.add_option("--out", p.out_dir, "cache directory to create or resume")->required();
  std::string backbone = "vgg16";
  app.add_option("--backbone", backbone,
                 "network: vgg16 (25088-d pool5), resnet50 (2048-d global average pool) or "
                 "torchscript:FILE (a torch.jit.save module; its output flattened per view)")
      ->capture_default_str();
  app.add_option("--weights", p.weights,
                 "torchvision vgg16/resnet50 state_dict (.pth, legacy or zip), or random:SEED "
                 "(required for vgg16 and resnet50; not with torchscript:FILE)");
  app.add_option("--size", p.size, "output side in pixels (>= 32)")->capture_default_str();
  app.add_option("--crops", p.crops, "RandomResizedCrop views per image")->capture_default_str();
  const ViewFlagHelp help{"crop area range MIN,MAX (default 0.5,1.0)",
                          "crop aspect range MIN,MAX (default 0.75,1.3333)",
                          "random horizontal flip, p = 0.5", "augmentation seed",
                          "crops per forward pass"};
  ViewFlagValues views;
  add_crop_flags(app, help, &p, &views);
  app.add_flag("--eval", p.eval, "one Resize((size, size)) view per image");
  add_run_flags(app, help, &p);
  app.add_option("--codec", p.codec,
                 "record encoding: auto (vgg16: prepool-f32 below 224 px, else raw-f32; other "
                 "backbones: raw-f32), raw-f32 (the feature vector), prepool-f32 (vgg16 only: the "
                 "smaller pre-pool map, expanded exactly on read), or raw-f16 / prepool-f16 (the "
                 "same as IEEE halves: half the size, lossy, relative error at most 2^-11 per "
                 "value)")
      ->capture_default_str();
  app.add_option("--cut", p.cut,
                 "layer the records come from: pool5 (VGG16's features, for a head) or pool4 "
                 "(block 5's input, 512 x size/16 x size/16, for fine-tuning block 5)")
      ->capture_default_str();
  app.add_option("--precision", p.precision,
                 "dtype of the forward pass: fp32, bf16 or fp16 (fp16 only with --device cuda); "
                 "records are stored as float32 and the precision is part of the feature settings")
      ->capture_default_str();
  app.add_flag("--strict", p.strict, "an undecodable image is an error instead of a skip");
  app.add_flag("--overwrite", p.overwrite, "replace a cache made with different settings");
  app.add_flag("--quiet", p.quiet, "no progress lines");
  std::string shard;
  app.add_option("--shard", shard,
                 "I/N: only the I-th (0-based) of N slices of the image list, into its own cache "
                 "(merge with featcache merge); auto: I and N from the Slurm array task "
                 "(SLURM_ARRAY_TASK_ID, VGGCACHE_SHARD_COUNT or SLURM_ARRAY_TASK_COUNT) or a "
                 "Kubernetes Indexed Job (JOB_COMPLETION_INDEX, VGGCACHE_SHARD_COUNT)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help (rc 0) or the parse error naming the flag
    return ParseStatus::exit(rc == 0 ? 0 : 2);
  }
  if (!take_view_flags(app, "extract", views, &p)) return ParseStatus::exit(2);
  try {
    const BackboneSpec spec = parse_backbone(backbone);
    p.backbone = spec.name;
    p.backbone_file = spec.file;
  } catch (const Error& e) {
    fmt::print(stderr, "extract: {}\n", e.what());
    return ParseStatus::exit(2);
  }
  if (!shard.empty()) {
    try {
      const ShardSpec spec = parse_shard_spec(shard);
      p.shard_index = spec.index;
      p.shard_count = spec.count;
    } catch (const Error& e) {
      fmt::print(stderr, "extract: {}\n", e.what());
      return ParseStatus::exit(2);
    }
  }
  if (p.device == "cuda" && app.count("--batch") == 0) {
    if (p.backbone != "vgg16") {
      // extract/batch_size.h models VGG16's activations; other networks keep the default.
      fmt::print(stderr,
                 "extract: note: --backbone {} keeps --batch {} on cuda (give --batch to "
                 "change it)\n",
                 p.backbone, p.batch);
    } else if (p.shard_count == 0) {
      p.batch_auto = true;
    } else {
      // The shard slices are whole chunks, and chunks follow the batch: every shard must get
      // the same batch, whatever memory its GPU has free.
      fmt::print(stderr,
                 "extract: note: --shard keeps --batch {} on cuda (the slices follow the batch; "
                 "give --batch to change it)\n",
                 p.batch);
    }
  }
  if (p.eval && (app.count("--crops") || !views.scale.empty() || !views.ratio.empty() || p.flip)) {
    fmt::print(stderr,
               "extract: note: --eval makes one view per image; "
               "--crops/--scale/--ratio/--flip are ignored\n");
  }
  if (!report_usage_error("extract", validate_extract_params(p))) return ParseStatus::exit(2);
  return ParseStatus::proceed();
}

}  // namespace vggcache
