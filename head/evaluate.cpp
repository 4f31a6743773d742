#include "head/evaluate.h"

#include <tbb/parallel_for.h>

#include <algorithm>

#include "head/loss.h"

namespace vggcache {

namespace {

// One head's running totals over the passes.
struct HeadTally {
  EvalResult r;
  std::vector<float> prob, avg;  // per pass: vectors × classes, images × classes
  std::vector<int32_t> labels;
  double loss_sum = 0.0;
  int64_t correct = 0;
};

// Predicts pass [i0, i0 + m) of `images` for one head from x (m·crops × dim) and tallies it.
void tally_pass(const HeadWeights& w, const float* x, const FeatureSource& src,
                const std::vector<uint32_t>& images, size_t i0, int m, HeadTally* t) {
  const int crops = src.crops(), classes = w.shape.classes;
  head_predict(w, x, m * crops, t->prob.data());
  for (int i = 0; i < m; ++i) {
    float* a = t->avg.data() + static_cast<size_t>(i) * classes;
    std::fill(a, a + classes, 0.0f);
    for (int c = 0; c < crops; ++c)
      for (int k = 0; k < classes; ++k)
        a[k] += t->prob[(static_cast<size_t>(i) * crops + c) * classes + k];
    for (int k = 0; k < classes; ++k) a[k] /= static_cast<float>(crops);
    std::copy(a, a + classes, t->r.probs.begin() + (i0 + i) * classes);
    t->labels[i] = src.label(images[i0 + i]);
    const int pred = predicted_class(a, classes);
    ++t->r.confusion[t->labels[i]][pred];
    t->correct += pred == t->labels[i];
  }
  t->loss_sum += loss_from_probs(t->avg.data(), t->labels.data(), m, classes) * m;
}

}  // namespace

EvalResult evaluate_head(const HeadWeights& w, FeatureSource& src,
                         const std::vector<uint32_t>& images, const Standardizer* s,
                         int max_vectors) {
  return std::move(evaluate_heads({&w}, src, images, s, max_vectors).front());
}

std::vector<EvalResult> evaluate_heads(const std::vector<const HeadWeights*>& heads,
                                       FeatureSource& src, const std::vector<uint32_t>& images,
                                       const Standardizer* s, int max_vectors) {
  const int d = src.dim(), crops = src.crops();
  const int per_pass = std::max(1, max_vectors / crops);  // images per forward pass
  std::vector<HeadTally> tallies(heads.size());
  for (size_t h = 0; h < heads.size(); ++h) {
    const int classes = heads[h]->shape.classes;
    HeadTally& t = tallies[h];
    t.r.images = static_cast<int>(images.size());
    t.r.confusion.assign(classes, std::vector<int64_t>(classes, 0));
    t.r.probs.resize(images.size() * classes);
    t.prob.resize(static_cast<size_t>(per_pass) * crops * classes);
    t.avg.resize(static_cast<size_t>(per_pass) * classes);
    t.labels.resize(per_pass);
  }
  std::vector<float> x(images.empty() ? 0 : static_cast<size_t>(per_pass) * crops * d);
  for (size_t i0 = 0; i0 < images.size(); i0 += per_pass) {
    const int m = static_cast<int>(std::min<size_t>(per_pass, images.size() - i0));
    std::vector<uint32_t> chunk(images.begin() + i0, images.begin() + i0 + m);
    std::vector<Item> items = all_items(chunk, crops);
    src.gather(items.data(), static_cast<int>(items.size()), s, x.data());
    tbb::parallel_for(size_t{0}, heads.size(), [&](size_t h) {
      tally_pass(*heads[h], x.data(), src, images, i0, m, &tallies[h]);
    });
  }
  std::vector<EvalResult> out;
  out.reserve(heads.size());
  for (HeadTally& t : tallies) {
    if (!images.empty()) {
      t.r.loss = t.loss_sum / static_cast<double>(images.size());
      t.r.accuracy = static_cast<double>(t.correct) / static_cast<double>(images.size());
    }
    out.push_back(std::move(t.r));
  }
  return out;
}

void precision_recall(const std::vector<std::vector<int64_t>>& confusion,
                      std::vector<double>* precision, std::vector<double>* recall) {
  const size_t c = confusion.size();
  precision->assign(c, 0.0);
  recall->assign(c, 0.0);
  for (size_t k = 0; k < c; ++k) {
    int64_t tp = confusion[k][k], row = 0, col = 0;
    for (size_t j = 0; j < c; ++j) {
      row += confusion[k][j];
      col += confusion[j][k];
    }
    (*precision)[k] = col > 0 ? static_cast<double>(tp) / col : 0.0;
    (*recall)[k] = row > 0 ? static_cast<double>(tp) / row : 0.0;
  }
}

double balanced_accuracy(const std::vector<std::vector<int64_t>>& confusion) {
  std::vector<double> precision, recall;
  precision_recall(confusion, &precision, &recall);
  double sum = 0.0;
  int present = 0;
  for (size_t k = 0; k < confusion.size(); ++k) {
    int64_t row = 0;
    for (int64_t v : confusion[k]) row += v;
    if (row == 0) continue;  // a class absent from the test set has no recall to average
    sum += recall[k];
    ++present;
  }
  return present > 0 ? sum / present : 0.0;
}

double macro_f1(const std::vector<std::vector<int64_t>>& confusion) {
  std::vector<double> precision, recall;
  precision_recall(confusion, &precision, &recall);
  double sum = 0.0;
  int present = 0;
  for (size_t k = 0; k < confusion.size(); ++k) {
    int64_t row = 0, col = 0;
    for (size_t j = 0; j < confusion.size(); ++j) {
      row += confusion[k][j];
      col += confusion[j][k];
    }
    if (row == 0 && col == 0) continue;  // neither true nor predicted: not one of the labels
    const double pr = precision[k] + recall[k];
    sum += pr > 0.0 ? 2.0 * precision[k] * recall[k] / pr : 0.0;
    ++present;
  }
  return present > 0 ? sum / present : 0.0;
}

}  // namespace vggcache
