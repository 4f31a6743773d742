#include "train_head/cache_checks.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "head/feature_check.h"

namespace vggcache {

void check_training_caches(const CacheMeta& train, const std::string& train_dir,
                           const CacheMeta& test, const std::string& test_dir) {
  for (const auto& [meta, dir] : {std::pair{&train, &train_dir}, {&test, &test_dir}})
    if (meta->cut != "pool5")
      throw Error(ErrorKind::kMismatch,
                  fmt::format("cache {} holds {} maps (extract --cut {}), the input of VGG16's "
                              "block 5: a single run fine-tunes block 5 from them (train_head "
                              "--weights FILE.pth); sweeps and --knn take pool5 caches only",
                              *dir, meta->cut, meta->cut));
  check_caches_pair(train, train_dir, test, test_dir);
  if (train.classes.size() < 2)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("cache {} has {} class(es); the head needs at least 2", train_dir,
                            train.classes.size()));
  if (train.weights.random)
    spdlog::warn("features come from RANDOM weights ({}): not pretrained", train.weights.name);
}

}  // namespace vggcache
