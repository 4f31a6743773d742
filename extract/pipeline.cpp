#include "extract/pipeline.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <numeric>

#include "common/cache.h"
#include "common/error.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "common/shard_set.h"
#include "extract/image.h"
#include "extract/transforms.h"

namespace vggcache {

namespace {

std::string join_path(const std::string& dir, const std::string& rel) {
  return dir.empty() || dir.back() == '/' ? dir + rel : dir + "/" + rel;
}

// decode_image's messages start with the path; the metadata keeps path and reason apart.
std::string reason_of(const std::string& message, const std::string& path) {
  if (message.rfind(path + ": ", 0) == 0) return message.substr(path.size() + 2);
  return message;
}

// Fills the views of one image into `slots` (crops × 3 × s × s). Returns false with `reason` set
// when the file cannot be decoded (other errors, e.g. a bug, propagate).
bool prepare_image(const ExtractParams& p, const Preprocess& pre, const FolderScan& scan,
                   uint32_t image, float* slots, PreparedView* views, std::string* reason) {
  const std::string path = join_path(p.data_dir, scan.files[image].rel_path);
  RgbImage img;
  try {
    img = decode_image(path);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kBadImage) throw;
    *reason = reason_of(e.what(), path);
    return false;
  }
  const int s = pre.size;
  std::vector<uint8_t> rgb(static_cast<size_t>(s) * s * 3);  // s × s × 3
  for (int k = 0; k < pre.crops; ++k) {
    CropBox box = view_box(img.width, img.height, pre, image, static_cast<uint32_t>(k));
    crop_resize_bilinear(img, box, s, s, rgb.data());
    to_normalized_chw(rgb.data(), s, s, pre, slots + static_cast<size_t>(k) * 3 * s * s);
    views[k] = PreparedView{image, static_cast<uint32_t>(k), scan.files[image].label, box};
  }
  return true;
}

PreparedChunk prepare_chunk_in(tbb::task_arena& arena, const ExtractParams& p,
                               const FolderScan& scan, uint32_t first, uint32_t end,
                               FeatureNet& net) {
  const Preprocess pre = p.preprocess();
  const size_t view_floats = 3ull * pre.size * pre.size;
  const size_t n_images = end - first;
  PreparedChunk c;
  c.first = first;
  c.end = end;
  c.input = net.alloc_input(n_images * pre.crops * view_floats);
  // Every image owns `crops` slots, so workers never share memory; holes left by skipped images
  // are closed afterwards (rare, and a memmove is cheap next to a forward pass).
  std::vector<PreparedView> slots(n_images * pre.crops);
  std::vector<std::string> reasons(n_images);
  std::vector<char> ok(n_images, 0);
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n_images, 1), [&](const auto& r) {
      for (size_t i = r.begin(); i != r.end(); ++i) {
        ok[i] = prepare_image(p, pre, scan, static_cast<uint32_t>(first + i),
                              c.input.data + i * pre.crops * view_floats, &slots[i * pre.crops],
                              &reasons[i]);
      }
    });
  });  // an exception in a worker (strict mode, I/O) is rethrown here, in the caller
  size_t n_valid = 0;
  for (size_t i = 0; i < n_images; ++i) {
    const uint32_t image = static_cast<uint32_t>(first + i);
    if (!ok[i] && p.strict) {
      // The first bad file in order, whichever worker met one first.
      throw Error(ErrorKind::kBadImage,
                  fmt::format("{}: {} (--strict; without it the file is skipped)",
                              join_path(p.data_dir, scan.files[image].rel_path), reasons[i]));
    }
    if (!ok[i]) {
      c.skipped.push_back(SkippedEntry{image, scan.files[image].rel_path, reasons[i]});
      continue;
    }
    for (int k = 0; k < pre.crops; ++k) {
      const size_t from = i * pre.crops + k;
      if (from != n_valid) {
        std::memmove(c.input.data + n_valid * view_floats, c.input.data + from * view_floats,
                     view_floats * sizeof(float));
      }
      c.views.push_back(slots[from]);
      ++n_valid;
    }
  }
  return c;
}

// One transaction: the chunk's records, its skipped images and the new resume point, so a crash
// leaves either all of the chunk or none of it.
void commit_chunk(CacheWriter& writer, const PreparedChunk& c, const std::vector<float>& features,
                  uint32_t dim) {
  std::vector<RecordIn> records(c.views.size());
  for (size_t v = 0; v < c.views.size(); ++v) {
    const PreparedView& pv = c.views[v];
    records[v] = RecordIn{pv.image, pv.crop, pv.label, pv.box, features.data() + v * dim};
  }
  for (const auto& s : c.skipped) {
    spdlog::warn("skipping {}: {}", s.path, s.reason);
    writer.mutable_meta().skipped.push_back(s);
  }
  writer.put_batch(records, c.end);
}

// Whole images per chunk (a commit always ends at an image boundary, so a resumed run restarts
// exactly where the last commit ended, with the same chunks). Preferably lcm(batch, crops) views,
// so every forward pass gets a full batch; when that would be large, about one batch of views.
uint32_t images_per_chunk(int batch, int crops) {
  const int whole = batch / std::gcd(batch, crops);  // lcm(batch, crops) / crops
  if (static_cast<int64_t>(whole) * crops <= 8 * static_cast<int64_t>(batch)) return whole;
  return static_cast<uint32_t>(std::max(1, batch / crops));
}

// The codec of the cache: prepool-f32 stores the map before AdaptiveAvgPool2d(7, 7), which is
// smaller than the pooled vector exactly when it has fewer than 7×7 cells (below 224 px the pooled
// vector only repeats its values); raw-f32 otherwise. An explicit --codec wins. With auto, an
// existing cache keeps the codec it was made with, so caches from before auto existed resume.
void choose_codec(const ExtractParams& p, FeatureNet& net, CacheMeta* m) {
  if (p.cut == "pool4") {  // the map itself is the record: nothing to pool, nothing to compact
    m->cut = "pool4";
    m->cut_shape = net.pool4_shape(p.size);
    m->codec = Codec::kRawF32;
    m->dim = m->payload_floats =
        static_cast<uint32_t>(m->cut_shape[0] * m->cut_shape[1] * m->cut_shape[2]);
    return;
  }
  if (p.backbone != "vgg16") {  // the pre-pool map is VGG16's: other backbones store the vector
    m->codec = Codec::kRawF32;
    m->payload_floats = m->dim;
    return;
  }
  const std::vector<int> shape = net.prepool_shape(p.size);
  Codec codec = shape[1] * shape[2] < 49 ? Codec::kPrepoolF32 : Codec::kRawF32;
  if (p.codec != "auto") {
    codec = codec_from_name(p.codec);
  } else if (!p.overwrite) {
    try {
      const CacheMeta old = read_cache_meta(p.out_dir);
      if (!codec_is_prepool(old.codec) || old.prepool_shape == shape) codec = old.codec;
    } catch (const Error&) {
      // No readable cache there: a fresh one gets the size-based choice.
    }
  }
  m->codec = codec;
  if (codec_is_prepool(codec)) {
    m->prepool_shape = shape;
    m->payload_floats = static_cast<uint32_t>(shape[0] * shape[1] * shape[2]);
  } else {
    m->prepool_shape.clear();
    m->payload_floats = m->dim;
  }
}

void log_ignored(const FolderScan& scan) {
  if (scan.ignored.empty()) return;
  spdlog::info("ignored {} file(s) without an image extension (first: {})", scan.ignored.size(),
               scan.ignored.front());
}

}  // namespace

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

CacheMeta build_cache_meta(const ExtractParams& p, const FolderScan& scan,
                           const WeightsIdentity& weights, uint32_t dim) {
  CacheMeta m;
  m.tool_version = VGGCACHE_VERSION;
  m.codec = Codec::kRawF32;
  m.dim = dim;
  m.payload_floats = dim;
  m.classes = scan.classes;
  m.source_dir = p.data_dir;
  m.weights = weights;
  m.preprocess = p.preprocess();
  m.precision = p.precision;
  m.backbone = p.backbone;
  m.images.resize(scan.files.size());
  tbb::task_arena arena(p.threads);
  arena.execute([&] {
    tbb::parallel_for(size_t{0}, scan.files.size(), [&](size_t i) {
      ImageEntry& e = m.images[i];
      e.path = scan.files[i].rel_path;
      e.label = scan.files[i].label;
      try {
        e.sha256 = sha256_file(join_path(p.data_dir, e.path), &e.bytes);
      } catch (const Error&) {
        // Unreadable (dangling link, directory): decode reports it as a skipped image.
        e.sha256.clear();
        e.bytes = 0;
      }
    });
  });
  m.extra = {{"device", p.device}, {"threads", p.threads}, {"batch", p.batch}};
  if (weights.random) {
    m.extra["warning"] = "features from RANDOM weights (" + weights.name + "), not pretrained";
  }
  return m;
}

PreparedChunk prepare_chunk(const ExtractParams& p, const FolderScan& scan, uint32_t first,
                            uint32_t end, FeatureNet& net) {
  tbb::task_arena arena(p.threads);
  return prepare_chunk_in(arena, p, scan, first, end, net);
}

uint32_t learn_output_dim(const ExtractParams& p, const FolderScan& scan, TorchScriptNet& net) {
  // The first images' views, as the run will prepare them; images that cannot be decoded are
  // passed over (the run reports them) until a batch's worth of views is found.
  const uint32_t n = static_cast<uint32_t>(scan.files.size());
  const uint32_t step = std::max<uint32_t>(1, p.batch / p.preprocess().crops);
  for (uint32_t first = 0; first < n; first += step) {
    PreparedChunk c = prepare_chunk(p, scan, first, std::min(n, first + step), net);
    if (c.views.empty()) continue;
    const int views = static_cast<int>(std::min<size_t>(c.views.size(), p.batch));
    const uint32_t dim = net.learn_dim(c.input.data, views, p.size);
    spdlog::info(
        "--backbone torchscript:{}: {} floats per view (from {} views of the first "
        "images)",
        p.backbone_file, dim, views);
    return dim;
  }
  throw Error(ErrorKind::kBadImage,
              fmt::format("{}: no image could be decoded to run the TorchScript module on (its "
                          "output length is read from the first batch)",
                          p.data_dir));
}

ExtractSummary run_extract(const ExtractParams& p, const FolderScan& scan, FeatureNet& net,
                           const WeightsIdentity& weights) {
  log_ignored(scan);
  const Preprocess pre = p.preprocess();
  CacheMeta meta = build_cache_meta(p, scan, weights, net.dim());
  choose_codec(p, net, &meta);
  if (p.shard_count > 0) {  // the metadata keeps the whole image list; the slice says what is ours
    meta.shard = shard_slice(p.shard_index, p.shard_count, static_cast<uint32_t>(scan.files.size()),
                             images_per_chunk(p.batch, pre.crops));
    spdlog::info("shard {}/{}: images [{}, {}) of {}", p.shard_index, p.shard_count,
                 meta.shard.first, meta.shard.end, scan.files.size());
  }
  WriterOptions wopts;
  wopts.overwrite = p.overwrite;
  auto writer = CacheWriter::open(p.out_dir, meta, wopts);

  ExtractSummary sum;
  const uint32_t slice_first = writer->meta().first_image();  // 0 unless a shard
  sum.images = writer->meta().end_image() - slice_first;
  // A fresh shard's resume point is 0 (nothing committed) until its first commit.
  const uint32_t start = std::max(writer->meta().next_image, slice_first);
  sum.resumed_from = start > slice_first ? start : 0;
  if (writer->meta().complete) {
    sum.already_complete = true;
    sum.records = writer->meta().records;
    sum.skipped = writer->meta().skipped.size();
    return sum;
  }
  if (sum.resumed_from > 0) {
    spdlog::info("resuming {} at image {}/{} ({} records already stored)", p.out_dir,
                 sum.resumed_from, writer->meta().end_image(), writer->meta().records);
  }

  const uint32_t per_chunk = images_per_chunk(p.batch, pre.crops);
  const uint32_t n_images = writer->meta().end_image();  // a shard stops at its slice's end
  // Floats stored per view: the pooled vector (raw-f32), the pre-pool map (prepool-f32) or the
  // pool4 map (cut pool4).
  const uint32_t dim = writer->meta().payload_floats;
  const bool prepool = codec_is_prepool(writer->meta().codec);
  const bool pool4 = writer->meta().cut == "pool4";
  spdlog::info("cut {}, codec {}: {} bytes per record", writer->meta().cut,
               codec_name(writer->meta().codec), record_bytes(writer->meta().codec, dim));
  tbb::task_arena arena(p.threads);
  auto launch = [&](uint32_t first) {
    uint32_t end = std::min(n_images, first + per_chunk);
    // The producer thread prepares the next chunk while this thread runs the forward pass.
    return std::async(std::launch::async, [&, first, end] {
      return prepare_chunk_in(arena, p, scan, first, end, net);
    });
  };

  Progress progress("extract", n_images - slice_first, "images", "crops");
  auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = process_cpu_seconds();
  uint32_t next = start;
  uint64_t committed_records = 0;
  uint32_t committed_next = next;
  std::future<PreparedChunk> pending;
  std::future<void> writing;  // the previous chunk's commit, overlapping this chunk's forward
  auto wait_for_commit = [&] {
    if (!writing.valid()) return;
    writing.get();  // rethrows the writer's exception (e.g. disk full)
    if (!p.quiet) progress.update(committed_next - slice_first, committed_records);
  };
  if (next < n_images) pending = launch(next);
  while (next < n_images) {
    auto c = std::make_shared<PreparedChunk>(pending.get());  // rethrows the producer's error
    if (c->end < n_images) pending = launch(c->end);
    const size_t n = c->views.size();
    auto features = std::make_shared<std::vector<float>>(n * dim);  // n × payload floats
    const size_t view_floats = 3ull * pre.size * pre.size;
    for (size_t b = 0; b < n; b += p.batch) {
      const int nb = static_cast<int>(std::min<size_t>(p.batch, n - b));
      const float* in = c->input.data + b * view_floats;
      if (pool4)
        net.forward_pool4(in, nb, pre.size, features->data() + b * dim);
      else if (prepool)
        net.forward_prepool(in, nb, pre.size, features->data() + b * dim);
      else
        net.forward(in, nb, pre.size, features->data() + b * dim);
    }
    wait_for_commit();  // one writer, chunks committed in order
    committed_next = c->end;
    committed_records = sum.records_run + n;
    writing = std::async(std::launch::async, [w = writer.get(), c, features, dim] {
      commit_chunk(*w, *c, *features, dim);
    });
    sum.images_run += c->end - c->first;
    sum.records_run += n;
    next = c->end;
  }
  wait_for_commit();
  writer->finish();
  if (!p.quiet) progress.done(next - slice_first, sum.records_run);
  sum.seconds = seconds_since(t0);
  sum.cpu_seconds = process_cpu_seconds() - cpu0;
  sum.records = writer->meta().records;
  sum.skipped = writer->meta().skipped.size();
  return sum;
}

}  // namespace vggcache
