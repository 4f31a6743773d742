// k-nearest-neighbour classification of cached features by cosine similarity (train_head --knn):
// no training; each test view is classified by the K training vectors most similar to it.
//
// Exact search: the training vectors are read from their FeatureSource in blocks (b × d), each
// L2-normalised, and the similarities of a block of queries (q × d, normalised) to them come from
// one sgemm per fixed tile of queries (TBB tasks; head/linalg.h). Every similarity is therefore
// the same float32 number for any --threads, and so is every result.
//
// Rules (what the tests and the README state):
// * Cosine similarity s = x·y / (|x||y|); a zero vector has similarity 0 to everything.
// * Neighbours: the K largest similarities; among equal similarities the lower training index
//   (the training vectors' order: images in cache order, each image's crops in order) comes first.
// * Votes of one view, as a distribution over classes (sums to 1):
//     uniform:  score_c = (neighbours of class c) / K              (sklearn's predict_proba)
//     weighted: score_c = Σ_{j of class c} e^{s_j/T} / Σ_j e^{s_j/T}   (DINO's k-NN, T = 0.07)
// * An image's scores are the mean of its views' scores (as evaluation and predict average the
//   views' probabilities); for uniform votes that is Σ_views counts / (views·K), summed exactly.
// * Predicted class: argmax of the image's scores, ties to the lowest class index (for one view
//   and uniform votes that is sklearn's majority rule: the smallest label among the most
//   frequent). Two classes: class 1 only when its score is > 0.5, the same rule.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "head/compact_layout.h"
#include "head/evaluate.h"
#include "head/feature_source.h"

namespace vggcache {

enum class KnnVote { kUniform, kWeighted };

// "uniform" / "weighted"; parse_knn_vote throws Error(kInvalidArgument) naming the value.
const char* knn_vote_name(KnnVote v);
KnnVote parse_knn_vote(const std::string& s);

struct KnnParams {
  int k = 20;                        // neighbours (1 ≤ k ≤ training vectors)
  KnnVote vote = KnnVote::kUniform;  // how neighbours vote
  double temperature = 0.07;         // weighted votes: T in e^{s/T} (> 0)
  int train_block = 0;               // training vectors per block; 0: about 32 MiB of them
  // Test vectors held at once; a larger test set is searched in chunks of this size, each chunk
  // reading the whole training set once more.
  int64_t max_query_bytes = int64_t{256} << 20;
  // Empty, or one factor per column (d): every vector (training and query) is multiplied by it
  // before normalising. compact_column_scale() gives the factors that make the window means of a
  // prepool-f32 cache give the pooled vectors' similarities.
  std::vector<float> column_scale;
};

// For the window means m of a prepool-f32 cache (VectorForm::kWindowMeans; the layout of its
// CacheSource): √(cells of window k) for column c·K + k. Pooled vectors repeat window k's mean in
// that many cells, so x·y = Σ cells_k·m_k·m'_k = (s∘m)·(s∘m'): the same cosines from C·K columns
// instead of C·49 (4,608 instead of 25,088 at 64 px), equal up to float rounding.
std::vector<float> compact_column_scale(const CompactLayout& layout);

// Throws Error(kInvalidArgument) naming the problem: k < 1, k > train_vectors, T not > 0.
void check_knn_params(const KnnParams& p, int64_t train_vectors);

// The neighbours of m queries: sim and index are m × k, each row in neighbour order (similarity
// descending, then training index ascending).
struct KnnNeighbours {
  int k = 0;
  std::vector<float> sim;
  std::vector<int64_t> index;
};

// Exact search of queries (m × d, row-major, not normalised; read only, not kept) among the
// vectors of `items` in `train` (dim() = d). Memory: a copy of the queries, one training block
// and m × k neighbours. Runs TBB tasks inside; gathers from `train` only from the calling thread,
// so two searches may run at once on different sources, not on one.
KnnNeighbours knn_search(FeatureSource& train, const std::vector<Item>& items, const float* queries,
                         int m, const KnnParams& p);

// One view's class scores (classes, summing to 1) from its k neighbours' similarities and labels
// (in neighbour order), by the vote rule above. Pure; thread-safe.
void knn_view_scores(const float* sim, const int32_t* labels, int k, int classes, KnnVote vote,
                     double temperature, double* scores);

// Classifies every view of `test_images` (all crops) among every crop of `train_images`, averages
// per image and tallies as evaluate_head() does: probs (images × classes) are the image scores,
// loss is their NLL (loss_from_probs), confusion and accuracy from the predicted classes.
// Throws Error(kInvalidArgument) for bad params, Error(kMismatch) when the dimensions differ,
// Error(kCorrupt) for a training or test label outside [0, classes).
EvalResult evaluate_knn(FeatureSource& train, const std::vector<uint32_t>& train_images,
                        FeatureSource& test, const std::vector<uint32_t>& test_images, int classes,
                        const KnnParams& p);

// evaluate_knn for several K at once (a sweep over K): one search for the largest, each smaller K
// reading the first K of every neighbour list, which by the order above are its K nearest. Result
// q is what evaluate_knn with K = ks[q] gives, bit for bit. p.k is ignored; every K is checked.
std::vector<EvalResult> evaluate_knn_ks(FeatureSource& train,
                                        const std::vector<uint32_t>& train_images,
                                        FeatureSource& test,
                                        const std::vector<uint32_t>& test_images, int classes,
                                        const std::vector<int>& ks, const KnnParams& p);

}  // namespace vggcache
