#include "head/knn.h"

#include <fmt/core.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "head/head_model.h"
#include "head/linalg.h"
#include "head/loss.h"

namespace vggcache {

namespace {

// Queries per sgemm tile: a fixed number, so the partition (and each similarity's arithmetic)
// does not depend on the thread count.
constexpr int kQueryTile = 64;

struct Neighbour {
  float sim;
  int64_t index;
};

// Heap order with the worst neighbour on top: lower similarity is worse, then higher index.
bool better(const Neighbour& a, const Neighbour& b) {
  return a.sim > b.sim || (a.sim == b.sim && a.index < b.index);
}

// Scales each row of x (n × d) to unit L2 norm; zero rows stay zero (similarity 0, as sklearn's
// normalize() leaves them). Norms are summed in double so long rows lose nothing.
void normalise_rows(float* x, int64_t n, int d, const std::vector<float>& scale) {
  tbb::parallel_for(int64_t{0}, n, [&](int64_t i) {
    float* r = x + i * d;
    if (!scale.empty())
      for (int j = 0; j < d; ++j) r[j] *= scale[j];
    double ss = 0.0;
    for (int j = 0; j < d; ++j) ss += static_cast<double>(r[j]) * r[j];
    if (ss > 0.0) {
      const float inv = static_cast<float>(1.0 / std::sqrt(ss));
      for (int j = 0; j < d; ++j) r[j] *= inv;
    }
  });
}

int default_train_block(int d) {
  // About 32 MiB of training vectors per block: large enough for sgemm to run at speed, small
  // enough that the block stays bounded whatever the cache holds.
  const int64_t rows = (int64_t{32} << 20) / (4 * static_cast<int64_t>(std::max(d, 1)));
  return static_cast<int>(std::clamp<int64_t>(rows, 64, 4096));
}

}  // namespace

const char* knn_vote_name(KnnVote v) {
  return v == KnnVote::kWeighted ? "weighted" : "uniform";
}

KnnVote parse_knn_vote(const std::string& s) {
  if (s == "uniform") return KnnVote::kUniform;
  if (s == "weighted") return KnnVote::kWeighted;
  throw Error(ErrorKind::kInvalidArgument,
              fmt::format("--knn-vote must be 'uniform' or 'weighted' (got '{}')", s));
}

void check_knn_params(const KnnParams& p, int64_t train_vectors) {
  if (p.k < 1)
    throw Error(ErrorKind::kInvalidArgument, fmt::format("--knn must be >= 1 (got {})", p.k));
  if (p.k > train_vectors)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--knn {} exceeds the {} training vectors (K must be <= their number)",
                            p.k, train_vectors));
  if (!(p.temperature > 0.0 && std::isfinite(p.temperature)))
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--knn-temperature must be > 0 (got {})", p.temperature));
}

std::vector<float> compact_column_scale(const CompactLayout& layout) {
  std::vector<float> s(static_cast<size_t>(layout.dim()));
  for (int c = 0; c < layout.channels(); ++c)
    for (int k = 0; k < layout.windows(); ++k)
      s[static_cast<size_t>(c) * layout.windows() + k] =
          static_cast<float>(std::sqrt(static_cast<double>(layout.cells(k))));
  return s;
}

KnnNeighbours knn_search(FeatureSource& train, const std::vector<Item>& items, const float* queries,
                         int m, const KnnParams& p) {
  check_knn_params(p, static_cast<int64_t>(items.size()));
  const int d = train.dim(), k = p.k;
  if (!p.column_scale.empty() && p.column_scale.size() != static_cast<size_t>(d))
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("k-NN: {} column factors for {} columns", p.column_scale.size(), d));
  const int block = p.train_block > 0 ? p.train_block : default_train_block(d);
  std::vector<float> q(queries, queries + static_cast<size_t>(m) * d);
  normalise_rows(q.data(), m, d, p.column_scale);

  // Per query, a heap of its best k so far (worst on top); k·m entries in all.
  std::vector<Neighbour> heaps(static_cast<size_t>(m) * k);
  std::vector<int> filled(m, 0);
  auto worse = [](const Neighbour& a, const Neighbour& b) { return better(a, b); };
  std::vector<float> t(static_cast<size_t>(block) * d);
  const int tiles = (m + kQueryTile - 1) / kQueryTile;
  // One tile's similarities (64 × block) per thread, reused: memory bounded by the thread count,
  // not by the number of queries.
  tbb::enumerable_thread_specific<std::vector<float>> tile_sims(
      [&] { return std::vector<float>(static_cast<size_t>(kQueryTile) * block); });
  for (size_t t0 = 0; t0 < items.size(); t0 += block) {
    const int b = static_cast<int>(std::min<size_t>(block, items.size() - t0));
    train.gather(items.data() + t0, b, nullptr, t.data());
    normalise_rows(t.data(), b, d, p.column_scale);
    tbb::parallel_for(0, tiles, [&](int tile) {
      const int q0 = tile * kQueryTile, qn = std::min(kQueryTile, m - q0);
      float* s = tile_sims.local().data();
      sgemm(false, true, qn, b, d, 1.0f, q.data() + static_cast<size_t>(q0) * d, d, t.data(), d,
            0.0f, s, b);
      for (int i = 0; i < qn; ++i) {
        Neighbour* h = heaps.data() + static_cast<size_t>(q0 + i) * k;
        int& n = filled[q0 + i];
        for (int j = 0; j < b; ++j) {
          // Training indices only grow, so a later vector with an equal similarity never beats
          // one kept: strict > keeps the lower index, the documented tie rule.
          Neighbour c{s[static_cast<size_t>(i) * b + j], static_cast<int64_t>(t0 + j)};
          if (n < k) {
            h[n++] = c;
            std::push_heap(h, h + n, worse);
          } else if (c.sim > h[0].sim) {
            std::pop_heap(h, h + k, worse);
            h[k - 1] = c;
            std::push_heap(h, h + k, worse);
          }
        }
      }
    });
  }
  KnnNeighbours out;
  out.k = k;
  out.sim.resize(static_cast<size_t>(m) * k);
  out.index.resize(static_cast<size_t>(m) * k);
  tbb::parallel_for(0, m, [&](int i) {
    Neighbour* h = heaps.data() + static_cast<size_t>(i) * k;
    std::sort(h, h + k, better);
    for (int j = 0; j < k; ++j) {
      out.sim[static_cast<size_t>(i) * k + j] = h[j].sim;
      out.index[static_cast<size_t>(i) * k + j] = h[j].index;
    }
  });
  return out;
}

void knn_view_scores(const float* sim, const int32_t* labels, int k, int classes, KnnVote vote,
                     double temperature, double* scores) {
  std::fill(scores, scores + classes, 0.0);
  if (vote == KnnVote::kUniform) {
    for (int j = 0; j < k; ++j) scores[labels[j]] += 1.0;
    for (int c = 0; c < classes; ++c) scores[c] /= k;
    return;
  }
  // e^{(s−s_max)/T}: the same ratios as e^{s/T} without overflow for small T.
  const double top = *std::max_element(sim, sim + k);
  double total = 0.0;
  for (int j = 0; j < k; ++j) {
    const double w = std::exp((sim[j] - top) / temperature);
    scores[labels[j]] += w;
    total += w;
  }
  for (int c = 0; c < classes; ++c) scores[c] /= total;
}

EvalResult evaluate_knn(FeatureSource& train, const std::vector<uint32_t>& train_images,
                        FeatureSource& test, const std::vector<uint32_t>& test_images, int classes,
                        const KnnParams& p) {
  return std::move(
      evaluate_knn_ks(train, train_images, test, test_images, classes, {p.k}, p).front());
}

std::vector<EvalResult> evaluate_knn_ks(FeatureSource& train,
                                        const std::vector<uint32_t>& train_images,
                                        FeatureSource& test,
                                        const std::vector<uint32_t>& test_images, int classes,
                                        const std::vector<int>& ks, const KnnParams& params) {
  if (train.dim() != test.dim())
    throw Error(ErrorKind::kMismatch,
                fmt::format("k-NN: training vectors have {} dimensions, test vectors {}",
                            train.dim(), test.dim()));
  if (ks.empty()) throw Error(ErrorKind::kInvalidArgument, "k-NN: no K given");
  const std::vector<Item> items = all_items(train_images, train.crops());
  KnnParams p = params;
  for (int k : ks) {
    p.k = k;
    check_knn_params(p, static_cast<int64_t>(items.size()));
  }
  p.k = *std::max_element(ks.begin(), ks.end());  // one search; smaller K read its prefix
  std::vector<int32_t> train_labels(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    train_labels[i] = train.label(items[i].image);
    if (train_labels[i] < 0 || train_labels[i] >= classes)
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("k-NN: training image {} has label {} (expected 0..{})",
                              items[i].image, train_labels[i], classes - 1));
  }

  const int d = test.dim(), crops = test.crops(), stride = p.k;
  std::vector<EvalResult> rs(ks.size());
  std::vector<int64_t> correct(ks.size(), 0);
  for (EvalResult& r : rs) {
    r.images = static_cast<int>(test_images.size());
    r.confusion.assign(classes, std::vector<int64_t>(classes, 0));
    r.probs.resize(test_images.size() * classes);
  }
  // Queries per chunk: their vectors (4·d bytes each) and neighbour lists (16·K bytes each) both
  // within max_query_bytes, whatever the dimension.
  const int64_t per_chunk_vectors = std::max<int64_t>(
      crops, p.max_query_bytes / (4 * std::max<int64_t>(d, 4 * static_cast<int64_t>(p.k))));
  const size_t per_chunk = static_cast<size_t>(per_chunk_vectors / crops);  // images
  std::vector<int32_t> labels(test_images.size());
  for (size_t i0 = 0; i0 < test_images.size(); i0 += per_chunk) {
    const size_t n = std::min(per_chunk, test_images.size() - i0);
    std::vector<uint32_t> chunk(test_images.begin() + i0, test_images.begin() + i0 + n);
    for (size_t i = 0; i < n; ++i) {
      labels[i0 + i] = test.label(chunk[i]);
      if (labels[i0 + i] < 0 || labels[i0 + i] >= classes)
        throw Error(ErrorKind::kCorrupt,
                    fmt::format("k-NN: test image {} has label {} (expected 0..{})", chunk[i],
                                labels[i0 + i], classes - 1));
    }
    std::vector<Item> q_items = all_items(chunk, crops);
    std::vector<float> x(q_items.size() * d);
    test.gather(q_items.data(), static_cast<int>(q_items.size()), nullptr, x.data());
    KnnNeighbours nb = knn_search(train, items, x.data(), static_cast<int>(q_items.size()), p);
    for (size_t q = 0; q < ks.size(); ++q) {
      const int k = ks[q];
      EvalResult& r = rs[q];
      tbb::parallel_for(size_t{0}, n, [&](size_t i) {
        std::vector<double> view(classes), sum(classes, 0.0);
        std::vector<int32_t> nl(k);
        for (int c = 0; c < crops; ++c) {
          const size_t v = i * crops + c;
          for (int j = 0; j < k; ++j) nl[j] = train_labels[nb.index[v * stride + j]];
          if (p.vote == KnnVote::kUniform) {
            // Whole counts, divided once below: the mean is exact, so equal votes stay exact
            // ties and the lowest-index rule (sklearn's) decides them.
            for (int j = 0; j < k; ++j) sum[nl[j]] += 1.0;
            continue;
          }
          knn_view_scores(nb.sim.data() + v * stride, nl.data(), k, classes, p.vote, p.temperature,
                          view.data());
          for (int cl = 0; cl < classes; ++cl) sum[cl] += view[cl];
        }
        const double div = p.vote == KnnVote::kUniform ? static_cast<double>(crops) * k : crops;
        float* out = r.probs.data() + (i0 + i) * classes;
        for (int cl = 0; cl < classes; ++cl) out[cl] = static_cast<float>(sum[cl] / div);
      });
      for (size_t i = 0; i < n; ++i) {
        const int pred = predicted_class(r.probs.data() + (i0 + i) * classes, classes);
        ++r.confusion[labels[i0 + i]][pred];
        correct[q] += pred == labels[i0 + i];
      }
    }
  }
  for (size_t q = 0; q < ks.size(); ++q)
    if (!test_images.empty()) {
      rs[q].loss = loss_from_probs(rs[q].probs.data(), labels.data(), rs[q].images, classes);
      rs[q].accuracy = static_cast<double>(correct[q]) / rs[q].images;
    }
  return rs;
}

}  // namespace vggcache
