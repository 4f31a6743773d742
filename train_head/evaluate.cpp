#include "train_head/evaluate.h"

#include <algorithm>

#include "train_head/loss.h"

namespace vggcache {

EvalResult evaluate_head(const HeadWeights& w, FeatureSource& src,
                         const std::vector<uint32_t>& images, const Standardizer* s,
                         int max_vectors) {
  const int d = src.dim(), crops = src.crops(), classes = w.shape.classes;
  EvalResult r;
  r.images = static_cast<int>(images.size());
  r.confusion.assign(classes, std::vector<int64_t>(classes, 0));
  r.probs.resize(images.size() * classes);
  if (images.empty()) return r;
  const int per_pass = std::max(1, max_vectors / crops);  // images per forward pass
  std::vector<float> x(static_cast<size_t>(per_pass) * crops * d);
  std::vector<float> prob(static_cast<size_t>(per_pass) * crops * classes);
  std::vector<float> avg(static_cast<size_t>(per_pass) * classes);
  std::vector<int32_t> labels(per_pass);
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (size_t i0 = 0; i0 < images.size(); i0 += per_pass) {
    const int m = static_cast<int>(std::min<size_t>(per_pass, images.size() - i0));
    std::vector<uint32_t> chunk(images.begin() + i0, images.begin() + i0 + m);
    std::vector<Item> items = all_items(chunk, crops);
    src.gather(items.data(), static_cast<int>(items.size()), s, x.data());
    head_predict(w, x.data(), static_cast<int>(items.size()), prob.data());
    for (int i = 0; i < m; ++i) {
      float* a = avg.data() + static_cast<size_t>(i) * classes;
      std::fill(a, a + classes, 0.0f);
      for (int c = 0; c < crops; ++c)
        for (int k = 0; k < classes; ++k)
          a[k] += prob[(static_cast<size_t>(i) * crops + c) * classes + k];
      for (int k = 0; k < classes; ++k) a[k] /= static_cast<float>(crops);
      std::copy(a, a + classes, r.probs.begin() + (i0 + i) * classes);
      labels[i] = src.label(chunk[i]);
      int pred = predicted_class(a, classes);
      ++r.confusion[labels[i]][pred];
      correct += pred == labels[i];
    }
    loss_sum += loss_from_probs(avg.data(), labels.data(), m, classes) * m;
  }
  r.loss = loss_sum / static_cast<double>(images.size());
  r.accuracy = static_cast<double>(correct) / static_cast<double>(images.size());
  return r;
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

}  // namespace vggcache
