#include "train_head/sweep_config_outputs.h"

#include "head/feature_check.h"
#include "train_head/run_outputs.h"

namespace vggcache {

HeadFile make_head_file(const TrainParams& p, const CacheMeta& train_meta,
                        const Standardizer& standardizer, const TrainOutcome& out,
                        HeadWeights weights) {
  return HeadFile{std::move(weights),
                  train_meta.classes,
                  standardizer,
                  p.dropout,
                  feature_settings(train_meta),
                  {{"selected_epoch", out.selected_epoch},
                   {"selection", out.selection},
                   {"train_cache", p.train_cache},
                   {"epochs", p.epochs},
                   {"lr", p.lr},
                   {"batch", p.batch},
                   {"seed", p.seed}}};
}

void write_config_outputs(const std::string& run_dir, const TrainParams& p,
                          const CacheMeta& train_meta, const CacheMeta& test_meta,
                          const ImageSplit& split, int test_images,
                          const Standardizer& standardizer, TrainOutcome& out,
                          uint64_t peak_rss_anon) {
  save_head(run_dir + "/head.bin",
            make_head_file(p, train_meta, standardizer, out, std::move(out.selected_weights)));
  RunInfo info{p,
               &train_meta,
               &test_meta,
               static_cast<int>(split.train.size()),
               static_cast<int>(split.val.size()),
               test_images,
               peak_rss_anon};
  write_json_file(run_dir + "/summary.json", summary_json(info, out));
}

}  // namespace vggcache
