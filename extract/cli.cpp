#include "extract/cli.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/shard_set.h"

namespace vggcache {

std::string validate_extract_params(const ExtractParams& p) {
  if (p.size < 32) return fmt::format("--size must be >= 32 (got {})", p.size);
  if (p.crops < 1) return fmt::format("--crops must be >= 1 (got {})", p.crops);
  // The negated comparisons also reject NaN.
  if (!(p.scale_min > 0.0 && p.scale_max <= 1.0 && p.scale_min <= p.scale_max)) {
    return fmt::format("--scale must be MIN,MAX with 0 < MIN <= MAX <= 1 (got {},{})", p.scale_min,
                       p.scale_max);
  }
  if (!(p.ratio_min > 0.0 && p.ratio_min <= p.ratio_max && p.ratio_max < 1e6)) {
    return fmt::format("--ratio must be MIN,MAX with 0 < MIN <= MAX (got {},{})", p.ratio_min,
                       p.ratio_max);
  }
  if (p.batch < 1) return fmt::format("--batch must be >= 1 (got {})", p.batch);
  if (p.threads < 1) return fmt::format("--threads must be >= 1 (got {})", p.threads);
  if (p.device != "cpu" && p.device != "cuda") {
    return fmt::format("--device must be cpu or cuda (got {})", p.device);
  }
  if (p.codec != "auto" && p.codec != "raw-f32" && p.codec != "prepool-f32")
    return fmt::format("--codec must be auto, raw-f32 or prepool-f32 (got {})", p.codec);
  if (p.bench_images < 1)
    return fmt::format("--bench-images must be >= 1 (got {})", p.bench_images);
  return "";
}

namespace {

// "--scale MIN,MAX": CLI11 splits on the delimiter; exactly two numbers are required.
bool take_pair(const std::vector<double>& v, double* lo, double* hi) {
  if (v.size() != 2) return false;
  *lo = v[0];
  *hi = v[1];
  return true;
}

}  // namespace

int parse_extract_args(int argc, char** argv, ExtractParams* params) {
  ExtractParams& p = *params;
  CLI::App app{"extract: frozen VGG16 features of augmented crops into an LMDB cache"};
  // A repeated flag overrides the earlier one (scripts append overrides to a base command line).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data", p.data_dir, "ImageFolder split: DIR/<class>/<image>")->required();
  app.add_option("--out", p.out_dir, "cache directory to create or resume")->required();
  app.add_option("--weights", p.weights,
                 "torchvision vgg16 state_dict (.pth, legacy or zip), or random:SEED")
      ->required();
  app.add_option("--size", p.size, "output side in pixels (>= 32)")->capture_default_str();
  app.add_option("--crops", p.crops, "RandomResizedCrop views per image")->capture_default_str();
  std::vector<double> scale, ratio;
  app.add_option("--scale", scale, "crop area range MIN,MAX (default 0.5,1.0)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--ratio", ratio, "crop aspect range MIN,MAX (default 0.75,1.3333)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--flip", p.flip, "random horizontal flip, p = 0.5");
  app.add_flag("--eval", p.eval, "one Resize((size, size)) view per image");
  app.add_option("--seed", p.seed, "augmentation seed")->capture_default_str();
  app.add_option("--batch", p.batch, "crops per forward pass")->capture_default_str();
  app.add_option("--threads", p.threads, "worker threads (default: all hardware threads)");
  app.add_option("--device", p.device, "cpu or cuda")->capture_default_str();
  app.add_option("--codec", p.codec,
                 "record encoding: auto (prepool-f32 below 224 px, else raw-f32), raw-f32 "
                 "(the 25088-d vector) or prepool-f32 (the smaller pre-pool map, expanded exactly "
                 "on read)")
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
  // Hidden (empty group): benchmark of the forward pass alone, for bench/extract_bench.sh.
  app.add_flag("--bench-forward", p.bench_forward)->group("");
  app.add_option("--bench-images", p.bench_images)->group("");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help (rc 0) or the parse error naming the flag
    return rc == 0 ? 0 : 2;
  }
  if (!scale.empty() && !take_pair(scale, &p.scale_min, &p.scale_max)) {
    fmt::print(stderr, "extract: --scale needs exactly two numbers MIN,MAX\n");
    return 2;
  }
  if (!ratio.empty() && !take_pair(ratio, &p.ratio_min, &p.ratio_max)) {
    fmt::print(stderr, "extract: --ratio needs exactly two numbers MIN,MAX\n");
    return 2;
  }
  if (!shard.empty()) {
    try {
      const ShardSpec spec = parse_shard_spec(shard);
      p.shard_index = spec.index;
      p.shard_count = spec.count;
    } catch (const Error& e) {
      fmt::print(stderr, "extract: {}\n", e.what());
      return 2;
    }
  }
  if (app.count("--threads") == 0) {
    p.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (p.eval && (app.count("--crops") || !scale.empty() || !ratio.empty() || p.flip)) {
    fmt::print(stderr,
               "extract: note: --eval makes one view per image; "
               "--crops/--scale/--ratio/--flip are ignored\n");
  }
  std::string err = validate_extract_params(p);
  if (!err.empty()) {
    fmt::print(stderr, "extract: {}\nRun with --help for usage.\n", err);
    return 2;
  }
  return -1;
}

}  // namespace vggcache
