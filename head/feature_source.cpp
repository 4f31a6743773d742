#include "head/feature_source.h"

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <utility>

#include "common/error.h"
#include "head/compact_layout.h"

namespace vggcache {

void copy_vector(const float* __restrict in, int dim, const Standardizer* s,
                 float* __restrict out) {
  if (!s || s->empty()) {
    std::memcpy(out, in, sizeof(float) * static_cast<size_t>(dim));
    return;
  }
  const float* __restrict mean = s->mean.data();
  const float* __restrict sd = s->std.data();
  for (int i = 0; i < dim; ++i) out[i] = (in[i] - mean[i]) / sd[i];
}

CacheSource::CacheSource(const std::string& dir, bool verify, VectorForm form) {
  ReaderOptions opts;
  opts.verify = verify;
  // Compact vectors are made from the stored map (raw-f32 ignores this).
  opts.expand = form == VectorForm::kPooled;
  reader_ = CacheReader::open(dir, opts);
  const CacheMeta& m = reader_->meta();
  if (form != VectorForm::kPooled && codec_is_prepool(m.codec))
    layout_ = std::make_unique<CompactLayout>(CompactLayout::from_meta(m).with_input(
        form == VectorForm::kMap ? CompactInput::kMap : CompactInput::kWindowMeans));
  if (m.dim == 0) throw Error(ErrorKind::kCorrupt, "cache " + dir + " has dim 0");
  std::set<uint32_t> skipped;
  for (const auto& s : m.skipped) skipped.insert(s.image);
  for (uint32_t i = 0; i < m.images.size(); ++i) {
    if (skipped.count(i)) continue;
    int32_t lbl = m.images[i].label;
    if (lbl < 0 || static_cast<size_t>(lbl) >= m.classes.size())
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("cache {}: image {} has label {} outside its {} classes", dir, i, lbl,
                              m.classes.size()));
    images_.push_back(i);
  }
  if (images_.empty()) throw Error(ErrorKind::kInvalidArgument, "cache " + dir + " has no images");
  int slots = std::max(1, tbb::this_task_arena::max_concurrency());
  for (int i = 0; i < slots; ++i) txns_.push_back(reader_->begin());
  hint_txn_ = std::make_unique<ReadTxn>(reader_->begin());
}

CacheSource::~CacheSource() = default;

bool CacheSource::page_spans(const Item* items, int n, std::vector<MappedRange>* out) {
  out->assign(static_cast<size_t>(n), MappedRange{});
  std::lock_guard<std::mutex> lock(hint_mu_);
  for (int i = 0; i < n; ++i) {
    const void* p = nullptr;
    size_t len = 0;
    // A missing record is reported by gather(), naming it; a hint has nothing to add.
    if (!hint_txn_->payload_span(items[i].image, items[i].crop, &p, &len)) continue;
    const uintptr_t at = reinterpret_cast<uintptr_t>(p);
    if (std::none_of(random_maps_.begin(), random_maps_.end(),
                     [&](const MappedFile& f) { return f.contains(at); }))
      random_maps_.push_back(MappedFile::open_random(p, ("cache " + reader_->dir()).c_str()));
    (*out)[i] = {at, at + len};
  }
  hinted_ = true;
  return true;
}

void CacheSource::will_need(const Item* items, int n) {
  // Spans sorted by address and merged when they are within a page of each other: consecutive
  // records of a block lie on consecutive pages, so a block costs one madvise() and the kernel
  // sees one long read, not one per record.
  std::vector<MappedRange> spans;
  page_spans(items, n, &spans);
  std::sort(spans.begin(), spans.end(),
            [](const MappedRange& a, const MappedRange& b) { return a.begin < b.begin; });
  constexpr uintptr_t kGap = 4096;
  const std::string what = "cache " + reader_->dir();
  for (size_t i = 0; i < spans.size();) {
    uintptr_t lo = spans[i].begin, hi = spans[i].end;
    size_t j = i + 1;
    for (; j < spans.size() && spans[j].begin <= hi + kGap; ++j) hi = std::max(hi, spans[j].end);
    if (hi > lo) will_need_pages(reinterpret_cast<const void*>(lo), hi - lo, what.c_str());
    i = j;
  }
}

void CacheSource::release(const std::vector<MappedRange>& spans) {
  // Merged only where records touch: a gap may hold a record still to come, whose pages must stay.
  std::vector<MappedRange> s = spans;
  std::sort(s.begin(), s.end(),
            [](const MappedRange& a, const MappedRange& b) { return a.begin < b.begin; });
  const std::string what = "cache " + reader_->dir();
  std::lock_guard<std::mutex> lock(hint_mu_);
  for (size_t i = 0; i < s.size();) {
    uintptr_t lo = s[i].begin, hi = s[i].end;
    size_t j = i + 1;
    for (; j < s.size() && s[j].begin <= hi; ++j) hi = std::max(hi, s[j].end);
    i = j;
    if (hi <= lo) continue;
    for (const MappedFile& f : random_maps_)
      if (f.contains(lo)) f.release(lo, hi, what.c_str());
  }
}

int CacheSource::dim() const {
  return layout_ ? layout_->input_dim() : static_cast<int>(reader_->meta().dim);
}
int CacheSource::crops() const {
  return std::max(1, reader_->meta().preprocess.crops);
}
int32_t CacheSource::label(uint32_t image) const {
  return reader_->meta().images[image].label;
}

void CacheSource::gather(const Item* items, int n, const Standardizer* s, float* out) {
  const int d = dim();
  const bool window_means = layout_ && layout_->input() == CompactInput::kWindowMeans;
  if (layout_ && !window_means && s && !s->empty())
    throw Error(ErrorKind::kInvalidArgument,
                "cache " + reader_->dir() +
                    ": map vectors cannot be standardised (the statistics are per window mean)");
  // Once the mapping reads no more than it is asked for, the batch asks for all its records at
  // once (one queue of reads) instead of faulting them in page by page.
  if (hinted_) will_need(items, n);
  const int slots = static_cast<int>(txns_.size());
  // Slot k copies items k, k + slots, ...: one task per slot, so each transaction has one user.
  tbb::parallel_for(
      tbb::blocked_range<int>(0, slots, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int k = r.begin(); k != r.end(); ++k) {
          RecordView view;
          std::vector<float> means;  // compact vector of the current record
          for (int i = k; i < n; i += slots) {
            const Item& it = items[i];
            if (!txns_[k].get(it.image, it.crop, &view))
              throw Error(ErrorKind::kCorrupt,
                          fmt::format("cache {} has no record for image {} crop {}", reader_->dir(),
                                      it.image, it.crop));
            if (view.header.label != label(it.image))
              throw Error(ErrorKind::kCorrupt,
                          fmt::format("cache {}: record ({}, {}) has label {} but the metadata "
                                      "says {}",
                                      reader_->dir(), it.image, it.crop, view.header.label,
                                      label(it.image)));
            const float* v = layout_ ? view.payload : view.data;
            if (window_means) {
              means.resize(d);
              layout_->window_means(view.payload, means.data());
              v = means.data();
            }
            copy_vector(v, d, s, out + static_cast<size_t>(i) * d);
          }
        }
      },
      tbb::simple_partitioner());
}

MemorySource::MemorySource(std::vector<float> data, std::vector<int32_t> labels, int dim, int crops)
    : data_(std::move(data)), labels_(std::move(labels)), dim_(dim), crops_(crops) {
  if (data_.size() != labels_.size() * static_cast<size_t>(crops) * dim)
    throw Error(ErrorKind::kInvalidArgument, "MemorySource: data size != images × crops × dim");
  for (uint32_t i = 0; i < labels_.size(); ++i) images_.push_back(i);
}

void MemorySource::gather(const Item* items, int n, const Standardizer* s, float* out) {
  tbb::parallel_for(tbb::blocked_range<int>(0, n, 8), [&](const tbb::blocked_range<int>& r) {
    for (int i = r.begin(); i != r.end(); ++i)
      copy_vector(row(items[i].image, items[i].crop), dim_, s, out + static_cast<size_t>(i) * dim_);
  });
}

Standardizer compute_standardizer(FeatureSource& src, const std::vector<uint32_t>& images) {
  const int d = src.dim();
  const std::vector<Item> items = all_items(images, src.crops());
  // Gather a chunk (in parallel), then sum it in parallel over dimensions: each dimension is
  // summed in item order, so the result does not depend on --threads.
  constexpr int kChunk = 128;
  std::vector<float> buf(static_cast<size_t>(kChunk) * d);
  std::vector<double> sum(d, 0.0), sq(d, 0.0);
  for (size_t i = 0; i < items.size(); i += kChunk) {
    const int cnt = static_cast<int>(std::min<size_t>(kChunk, items.size() - i));
    src.gather(items.data() + i, cnt, nullptr, buf.data());
    tbb::parallel_for(tbb::blocked_range<int>(0, d, 1024), [&](const tbb::blocked_range<int>& r) {
      for (int k = 0; k < cnt; ++k) {
        const float* x = buf.data() + static_cast<size_t>(k) * d;
        for (int j = r.begin(); j != r.end(); ++j) {
          sum[j] += x[j];
          sq[j] += static_cast<double>(x[j]) * x[j];
        }
      }
    });
  }
  Standardizer s;
  s.mean.resize(d);
  s.std.resize(d);
  const double cnt = static_cast<double>(items.size());
  for (int j = 0; j < d; ++j) {
    double mean = sum[j] / cnt;
    double sd = std::sqrt(std::max(0.0, sq[j] / cnt - mean * mean));
    s.mean[j] = static_cast<float>(mean);
    s.std[j] = sd < 1e-6 ? 1.0f : static_cast<float>(sd);
  }
  return s;
}

}  // namespace vggcache
