#include "predict/classify.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "common/error.h"
#include "common/image_folder.h"
#include "common/progress.h"
#include "extract/pipeline.h"
#include "finetune/block5.h"
#include "head/evaluate.h"
#include "head/feature_check.h"
#include "head/feature_source.h"

namespace vggcache {

int head_view_size(const HeadFile& head, const std::string& head_path) {
  auto it = head.features.find("size");
  if (it == head.features.end() || !it->is_number_integer())
    throw Error(ErrorKind::kCorrupt,
                fmt::format("head file {}: no feature size recorded (features.size)", head_path));
  return it->get<int>();
}

BackboneSpec head_backbone(const HeadFile& head, const std::string& head_path,
                           const PredictParams& p) {
  BackboneSpec spec;
  spec.name = feature_backbone(head.features);
  if (!p.backbone.empty()) {
    const BackboneSpec given = parse_backbone(p.backbone);
    if (given.name != spec.name)
      throw Error(ErrorKind::kMismatch,
                  fmt::format("head {} was trained on {} features; --backbone {} is another "
                              "network (leave --backbone out to use the head's)",
                              head_path, spec.name, p.backbone));
    spec.file = given.file;
  }
  if (spec.name == "torchscript") {
    if (spec.file.empty())
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("head {} was trained on the features of TorchScript module {}: give "
                              "that file as --backbone torchscript:FILE",
                              head_path, head.features.at("weights").value("name", "")));
    if (!p.weights.empty())
      throw Error(ErrorKind::kInvalidArgument,
                  "--weights is not used with a TorchScript backbone: the module file is the "
                  "weights; drop --weights");
  } else if (p.weights.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--weights FILE|random:SEED is required: the {} weights head {}'s "
                            "features came from",
                            spec.name, head_path));
  }
  return spec;
}

ExtractParams view_params(const PredictParams& p, int size, const BackboneSpec& backbone) {
  ExtractParams e;
  static_cast<ViewParams&>(e) = p;  // crops, seed, batch, threads, device, quiet: shared as is
  e.backbone = backbone.name;
  e.backbone_file = backbone.file;
  e.weights = p.weights;
  e.size = size;
  e.eval = p.tta == 0;
  e.crops = std::max(1, p.tta);
  return e;  // data_dir stays "": the scan holds the paths as given
}

void check_head_features(const HeadFile& head, const std::string& head_path,
                         const ExtractParams& views, const WeightsIdentity& weights, uint32_t dim) {
  // The feature settings of a cache that extract would make with these weights and views: the
  // same comparison train_head applies to its test cache, so the two tools agree on "same".
  CacheMeta ours;
  // A TorchScript network's length is known once it has run (check_head_dim() then): until then
  // the head's stands in, so the other settings are compared now.
  ours.dim = dim != 0 ? dim : head.features.value("dim", 0u);
  if (!head.block5.empty()) {
    // A head fine-tuned with block 5 was trained on pool4 maps (their C·h·w is `dim`).
    ours.cut = "pool4";
  }
  ours.classes = head.classes;  // not a feature property here: predict has no labels
  ours.weights = weights;
  ours.backbone = views.backbone;
  ours.preprocess = views.preprocess();
  std::string diff = feature_difference(head.features, feature_settings(ours));
  const bool ts = views.backbone == "torchscript";
  if (diff.rfind("weights:", 0) == 0)
    throw Error(ErrorKind::kMismatch,
                fmt::format("{} are not the weights head {} was trained on ({}: head vs {}); give "
                            "predict the weights extract used for the training cache",
                            ts ? "--backbone torchscript:" + views.backbone_file
                               : "--weights " + views.weights,
                            head_path, diff, ts ? "--backbone" : "--weights"));
  if (!diff.empty())
    throw Error(ErrorKind::kMismatch,
                fmt::format("head {} was trained on features with other settings than predict "
                            "computes ({}: head vs predict)",
                            head_path, diff));
  if (dim != 0) check_head_dim(head, head_path, dim);
}

void check_head_dim(const HeadFile& head, const std::string& head_path, uint32_t dim) {
  const int gives = head.block5.empty() ? static_cast<int>(dim) : kBlock5OutputDim;
  if (head.weights.shape.dim != gives)
    throw Error(ErrorKind::kMismatch, fmt::format("head {} takes {} features, the network gives {}",
                                                  head_path, head.weights.shape.dim, gives));
}

uint32_t network_dim(const HeadFile& head, FeatureNet& net, int size) {
  if (head.block5.empty()) return net.dim();
  const std::vector<int> s = net.pool4_shape(size);
  return static_cast<uint32_t>(s[0] * s[1] * s[2]);
}

namespace {

// The head on one chunk's views: train_head's evaluation (standardise, forward, average the
// views' probabilities) over a memory source, so predict and train_head share every operation.
void classify_chunk(const HeadFile& head, const PreparedChunk& c, std::vector<float> features,
                    int crops, uint32_t dim, const std::vector<std::string>& files,
                    PredictResult* out) {
  const size_t n_images = c.views.size() / crops;
  if (n_images == 0) return;
  MemorySource src(std::move(features), std::vector<int32_t>(n_images, 0), static_cast<int>(dim),
                   crops);
  const Standardizer* s = head.standardizer.empty() ? nullptr : &head.standardizer;
  EvalResult r = evaluate_head(head.weights, src, src.images(), s);
  const int classes = head.weights.shape.classes;
  for (size_t i = 0; i < n_images; ++i) {
    PredictedImage img;
    img.index = c.views[i * crops].image;
    img.path = files[img.index];
    const float* p = r.probs.data() + i * classes;
    img.probs.assign(p, p + classes);
    img.predicted = predicted_class(p, classes);
    out->images.push_back(std::move(img));
  }
}

}  // namespace

PredictResult classify_images(const ExtractParams& views, const HeadFile& head,
                              const std::vector<std::string>& files, FeatureNet& net) {
  const ExtractParams& p = views;
  const Preprocess pre = p.preprocess();
  FolderScan scan;
  scan.classes = head.classes;
  for (const auto& f : files) scan.files.push_back({f, 0});

  const uint32_t n = static_cast<uint32_t>(files.size());
  const uint32_t per_chunk = static_cast<uint32_t>(std::max(1, p.batch / pre.crops));
  // A head with a tuned block 5: LibTorch runs blocks 1–4 (extract --cut pool4's maps), then the
  // tuned block 5 runs as train_head ran it (finetune/block5.h), so the head sees what it saw.
  const bool tuned = !head.block5.empty();
  Block5 block5;
  std::vector<int> map_shape;
  if (tuned) {
    for (int i = 0; i < 3; ++i) block5.set_layer(i, head.block5.weight[i], head.block5.bias[i]);
    map_shape = net.pool4_shape(pre.size);
  }
  const uint32_t dim = network_dim(head, net, pre.size);  // floats per view from LibTorch
  const size_t view_floats = 3ull * pre.size * pre.size;
  auto launch = [&](uint32_t first) {
    // Decoding of the next chunk overlaps the forward pass of this one, as in extract.
    return std::async(std::launch::async, [&, first] {
      return prepare_chunk(p, scan, first, std::min(n, first + per_chunk), net);
    });
  };

  PredictResult res;
  Progress progress("predict", n, "images", "views");
  auto t0 = std::chrono::steady_clock::now();
  std::future<PreparedChunk> pending;
  if (n > 0) pending = launch(0);
  for (uint32_t next = 0; next < n;) {
    PreparedChunk c = pending.get();
    if (c.end < n) pending = launch(c.end);
    for (const auto& s : c.skipped) {
      spdlog::warn("skipping {}: {}", s.path, s.reason);
      res.skipped.push_back({s.path, s.reason});
    }
    const size_t views = c.views.size();
    std::vector<float> features(views * dim);
    for (size_t b = 0; b < views; b += p.batch) {
      const int nb = static_cast<int>(std::min<size_t>(p.batch, views - b));
      if (tuned)
        net.forward_pool4(c.input.data + b * view_floats, nb, pre.size, features.data() + b * dim);
      else
        net.forward(c.input.data + b * view_floats, nb, pre.size, features.data() + b * dim);
    }
    if (tuned && views > 0) {
      Block5Activations act;
      features =
          block5.forward(features, static_cast<int>(views), map_shape[1], map_shape[2], &act);
    }
    classify_chunk(head, c, std::move(features), pre.crops,
                   tuned ? static_cast<uint32_t>(kBlock5OutputDim) : dim, files, &res);
    res.views += views;
    next = c.end;
    if (!p.quiet) progress.update(next, res.views);
  }
  if (!p.quiet && n > 0) progress.done(n, res.views);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace vggcache
