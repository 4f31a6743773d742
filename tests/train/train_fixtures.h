// Shared helpers of the train_head tests: raw array files exchanged with the Python references,
// and synthetic feature caches (Gaussian clusters per class) written with CacheWriter.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cache.h"
#include "head/rng.h"
#include "test_util.h"

namespace vggcache::testing {

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& v) {
  write_file(path, std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
}

template <typename T>
std::vector<T> read_raw(const std::string& path) {
  std::string s = read_file(path);
  std::vector<T> v(s.size() / sizeof(T));
  std::copy(s.begin(), s.end(), reinterpret_cast<char*>(v.data()));
  return v;
}

// Standard normal from our RNG (Box–Muller), for synthetic data.
inline float gaussian(Rng& rng) {
  float u1 = std::max(rng.uniform(), 1e-7f), u2 = rng.uniform();
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
}

struct SyntheticSpec {
  int dim = 64;
  int classes = 2;
  int images_per_class = 40;
  std::vector<int> class_images;  // non-empty: images of each class (unbalanced sets); overrides
                                  //   classes and images_per_class
  int crops = 1;                  // > 1: an augmented cache (eval = false)
  float separation = 1.0f;        // distance scale between class centres (noise sd is 1)
  uint64_t seed = 7;              // draws of centres and noise
  uint64_t centre_seed = 99;  // same centre_seed → same class centres (train/test of one task)
  bool swap_centres = false;  // class c drawn around centre (classes − 1 − c): labels "wrong"
  std::string weights = "random:1";
  int size = 64;
  std::string source_dir = "synthetic";  // the report looks for the images here
  Codec codec = Codec::kRawF32;           // kRawF16: the vectors stored as halves (lossy)
};

// Writes a complete cache of ReLU-like vectors max(0, centre[label] + noise) and returns its meta.
// Images are ordered class by class, like an ImageFolder scan.
inline CacheMeta make_synthetic_cache(const std::string& dir, const SyntheticSpec& spec) {
  const int classes =
      spec.class_images.empty() ? spec.classes : static_cast<int>(spec.class_images.size());
  auto images_of = [&](int c) {
    return spec.class_images.empty() ? spec.images_per_class : spec.class_images[c];
  };
  CacheMeta meta;
  meta.tool_version = "test";
  meta.dim = meta.payload_floats = spec.dim;
  meta.codec = spec.codec;
  for (int c = 0; c < classes; ++c) meta.classes.push_back("class" + std::to_string(c));
  meta.source_dir = spec.source_dir;
  meta.weights.name = spec.weights;
  meta.weights.random = spec.weights.rfind("random:", 0) == 0;
  meta.preprocess.size = spec.size;
  meta.preprocess.eval = spec.crops == 1;
  meta.preprocess.crops = spec.crops;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < images_of(c); ++i) {
      ImageEntry e;
      e.path = meta.classes[c] + "/img" + std::to_string(i) + ".jpg";
      e.bytes = 1000;
      e.sha256 = std::string(64, '0');
      e.label = c;
      meta.images.push_back(e);
    }
  Rng centre_rng(spec.centre_seed, Stream::kInit);
  std::vector<float> centres(static_cast<size_t>(classes) * spec.dim);
  for (auto& v : centres) v = spec.separation * gaussian(centre_rng);
  auto writer = CacheWriter::open(dir, meta, WriterOptions{64ull << 20, true});
  Rng rng(spec.seed, Stream::kShuffle);
  // Written in chunks of images so big caches do not need their size in memory.
  std::vector<std::vector<float>> payloads;
  std::vector<RecordIn> batch;
  for (uint32_t img = 0; img < meta.images.size(); ++img) {
    int label = meta.images[img].label;
    int centre = spec.swap_centres ? classes - 1 - label : label;
    for (int k = 0; k < spec.crops; ++k) {
      std::vector<float> v(spec.dim);
      for (int j = 0; j < spec.dim; ++j)
        v[j] = std::max(0.0f, centres[static_cast<size_t>(centre) * spec.dim + j] + gaussian(rng));
      payloads.push_back(std::move(v));
      RecordIn r;
      r.image = img;
      r.crop = static_cast<uint32_t>(k);
      r.label = label;
      batch.push_back(r);
    }
    if (batch.size() >= 256 || img + 1 == meta.images.size()) {
      for (size_t i = 0; i < batch.size(); ++i) batch[i].data = payloads[i].data();
      writer->put_batch(batch, img + 1);
      batch.clear();
      payloads.clear();
    }
  }
  writer->finish();
  return writer->meta();
}

// VGG16's last map side at each input size (five 2×2 max-pools, rounding down).
inline int map_side(int px) {
  for (int i = 0; i < 5; ++i) px /= 2;
  return px;
}

// A complete prepool-f32 cache of ReLU-like maps, max(0, centre[label] + noise), C × s × s, two
// classes ("bicycle", "car"), from a fixed seed.
inline CacheMeta make_prepool_cache(const std::string& dir, int px, int images_per_class, int crops,
                                    int channels) {
  const int s = map_side(px), floats = channels * s * s;
  CacheMeta meta;
  meta.tool_version = "test";
  meta.codec = Codec::kPrepoolF32;
  meta.dim = channels * 49;
  meta.payload_floats = floats;
  meta.prepool_shape = {channels, s, s};
  meta.classes = {"bicycle", "car"};
  meta.source_dir = "synthetic";
  meta.weights = {"random:1", "", true};
  meta.preprocess.size = px;
  meta.preprocess.crops = crops;
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < images_per_class; ++i)
      meta.images.push_back(
          {meta.classes[c] + "/" + std::to_string(i) + ".jpg", 1000, std::string(64, '0'), c});
  Rng rng(17, Stream::kInit);
  // A shared base plus a small class offset: separable enough to learn, not so much that the
  // loss collapses to 0 within the 5 epochs (then it would compare rounding noise only).
  std::vector<float> centres(2 * static_cast<size_t>(floats));
  for (int j = 0; j < floats; ++j) {
    const float base = 0.7f * gaussian(rng);
    centres[j] = base + 0.03f * gaussian(rng);
    centres[floats + j] = base + 0.03f * gaussian(rng);
  }
  auto writer = CacheWriter::open(dir, meta, WriterOptions{64ull << 20, true});
  std::vector<std::vector<float>> maps;
  std::vector<RecordIn> recs;
  for (uint32_t img = 0; img < meta.images.size(); ++img) {
    const int label = meta.images[img].label;
    for (int k = 0; k < crops; ++k) {
      std::vector<float> z(floats);
      for (int j = 0; j < floats; ++j)
        z[j] = std::max(0.0f, centres[static_cast<size_t>(label) * floats + j] + gaussian(rng));
      maps.push_back(std::move(z));
      RecordIn r;
      r.image = img;
      r.crop = static_cast<uint32_t>(k);
      r.label = label;
      recs.push_back(r);
    }
  }
  for (size_t i = 0; i < recs.size(); ++i) recs[i].data = maps[i].data();
  writer->put_batch(recs, static_cast<uint32_t>(meta.images.size()));
  writer->finish();
  return writer->meta();
}

// The train_head binary run with `args` (a shell-quoted argument string): exit code and output.
struct ToolRun {
  int rc = -1;
  std::string output;
};
inline ToolRun train_head(const std::string& args) {
  ToolRun r;
  r.rc = run_command(shell_quote(bin_dir() + "/train_head") + " " + args, &r.output);
  return r;
}

}  // namespace vggcache::testing
