// k-NN (head/knn.h, train_head --knn): the weighted vote on a hand-made example with values
// worked out by hand, the neighbour order and its tie rule, the blocked search against a naive
// double-precision one, bad K and temperature, and the command on synthetic caches.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "common/error.h"
#include "common/prepool.h"
#include "head/knn.h"
#include "train_fixtures.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::shell_quote;

// Error's kind and a needle of its message, or a test failure.
void expect_error(const std::function<void()>& fn, ErrorKind kind, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown (wanted: " << needle << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(KnnVote, WeightedByHand) {
  // Neighbours with similarities 0.9, 0.8, 0.5 of classes 0, 1, 0; T = 0.1. Weights e^{s/T}
  // relative to the first: 1, e^{-1}, e^{-4}. Class 0 gets (1 + e^{-4}) / (1 + e^{-1} + e^{-4}).
  const float sim[] = {0.9f, 0.8f, 0.5f};
  const int32_t labels[] = {0, 1, 0};
  double s[3];
  knn_view_scores(sim, labels, 3, 3, KnnVote::kWeighted, 0.1, s);
  // 1 + e^-4 = 1.0183156, 1 + e^-1 + e^-4 = 1.3861951: 0.7346121 and 0.2653879.
  EXPECT_NEAR(s[0], 0.7346121, 1e-6);
  EXPECT_NEAR(s[1], 0.2653879, 1e-6);
  EXPECT_EQ(s[2], 0.0);  // a class no neighbour has gets nothing
  // The float similarities differ from the decimals by < 3e-8; through e^{s/T} that moves the
  // scores by < 1e-6, so the bound above is the honest one.

  // Uniform: two of three neighbours are class 0, whatever the similarities.
  knn_view_scores(sim, labels, 3, 3, KnnVote::kUniform, 0.1, s);
  EXPECT_DOUBLE_EQ(s[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(s[1], 1.0 / 3.0);

  // A tiny T does not overflow: the nearest neighbour takes all the weight.
  knn_view_scores(sim, labels, 3, 3, KnnVote::kWeighted, 1e-4, s);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_EQ(s[1], 0.0);
}

// Four training images of one crop in 2-D. Angles: a (1, 0) class 0, b (0, 1) class 1,
// c (1, 1) class 1, d (2, 0) class 0 (the same direction as a: an exact tie).
MemorySource tiny_train() {
  return MemorySource({1, 0, 0, 1, 1, 1, 2, 0}, {0, 1, 1, 0}, 2, 1);
}

TEST(KnnSearch, CosineOrderAndTieRule) {
  MemorySource train = tiny_train();
  const std::vector<Item> items = all_items(train.images(), 1);
  KnnParams p;
  p.k = 3;
  const float q[] = {3, 0, 0, 0};  // along a and d; a zero vector
  KnnNeighbours nb = knn_search(train, items, q, 2, p);
  // Query 0: a and d both at similarity 1 (a first: lower index), then c at 1/√2.
  EXPECT_EQ(nb.index[0], 0);
  EXPECT_EQ(nb.index[1], 3);
  EXPECT_EQ(nb.index[2], 2);
  EXPECT_FLOAT_EQ(nb.sim[0], 1.0f);
  EXPECT_FLOAT_EQ(nb.sim[1], 1.0f);
  EXPECT_NEAR(nb.sim[2], std::sqrt(0.5), 1e-7);
  // Query 1 (zero): similarity 0 to all, so the three lowest indices in order.
  EXPECT_EQ(std::vector<int64_t>(nb.index.begin() + 3, nb.index.end()),
            (std::vector<int64_t>{0, 1, 2}));
  for (int j = 3; j < 6; ++j) EXPECT_EQ(nb.sim[j], 0.0f);
}

TEST(KnnEvaluate, WeightedVotesAveragedOverViewsByHand) {
  MemorySource train = tiny_train();
  // One test image (class 1) with two views: (0, 1) and (1, 0).
  MemorySource test({0, 1, 1, 0}, {1}, 2, 2);
  KnnParams p;
  p.k = 2;
  p.vote = KnnVote::kWeighted;
  p.temperature = 0.5;
  EvalResult r = evaluate_knn(train, train.images(), test, test.images(), 2, p);
  // View (0, 1): b (s 1, class 1) and c (s 1/√2, class 1): class 1 gets everything.
  // View (1, 0): a and d (s 1, class 0 both): class 0 gets everything.
  // Mean: 0.5 each; two classes predict 1 only above 0.5, so class 0 (the lowest-index tie rule).
  ASSERT_EQ(r.probs.size(), 2u);
  EXPECT_FLOAT_EQ(r.probs[0], 0.5f);
  EXPECT_FLOAT_EQ(r.probs[1], 0.5f);
  EXPECT_EQ(r.confusion[1][0], 1);
  EXPECT_EQ(r.accuracy, 0.0);

  // K = 3 brings a third neighbour per view. View (0, 1): b 1, c 1/√2, then a and d at 0: a
  // (lower index). Weights e^{(s−1)/0.5}: 1 (b), e^{2(1/√2−1)} (c), e^{-2} (a).
  // View (1, 0): a 1, d 1, c 1/√2: class 0 weights 1 + 1, class 1 e^{2(1/√2−1)}.
  p.k = 3;
  r = evaluate_knn(train, train.images(), test, test.images(), 2, p);
  const double ec = std::exp(2 * (std::sqrt(0.5) - 1)), ea = std::exp(-2.0);
  const double v1_class1 = (1 + ec) / (1 + ec + ea), v2_class1 = ec / (2 + ec);
  // By hand: ec = 0.556668, ea = 0.135335: v1 = 0.920015, v2 = 0.217732, mean 0.568873.
  EXPECT_NEAR(r.probs[1], 0.568873, 1e-6);
  EXPECT_NEAR(r.probs[1], (v1_class1 + v2_class1) / 2, 1e-7);
  EXPECT_NEAR(r.probs[0], 1 - r.probs[1], 1e-7);
  EXPECT_EQ(r.confusion[1][1], 1);
  EXPECT_EQ(r.accuracy, 1.0);
}

TEST(KnnEvaluate, BadInputNamesTheProblem) {
  MemorySource train = tiny_train(), test({1, 0}, {0}, 2, 1);
  KnnParams p;
  p.k = 0;
  auto run = [&] { evaluate_knn(train, train.images(), test, test.images(), 2, p); };
  expect_error(run, ErrorKind::kInvalidArgument, "--knn must be >= 1 (got 0)");
  p.k = -3;
  expect_error(run, ErrorKind::kInvalidArgument, "--knn must be >= 1 (got -3)");
  p.k = 5;
  expect_error(run, ErrorKind::kInvalidArgument, "--knn 5 exceeds the 4 training vectors");
  p.k = 4;  // every training vector: allowed
  EXPECT_NO_THROW(run());
  p.vote = KnnVote::kWeighted;
  p.temperature = 0;
  expect_error(run, ErrorKind::kInvalidArgument, "--knn-temperature must be > 0");
  p.temperature = NAN;
  expect_error(run, ErrorKind::kInvalidArgument, "--knn-temperature must be > 0");
  p.temperature = 0.07;
  MemorySource wide({1, 0, 0}, {0}, 3, 1);
  expect_error([&] { evaluate_knn(train, train.images(), wide, wide.images(), 2, p); },
               ErrorKind::kMismatch, "training vectors have 2 dimensions, test vectors 3");
  MemorySource bad_label({1, 0}, {5}, 2, 1);
  p.k = 1;
  expect_error([&] { evaluate_knn(bad_label, bad_label.images(), test, test.images(), 2, p); },
               ErrorKind::kCorrupt, "label 5");
  expect_error([] { parse_knn_vote("majority"); }, ErrorKind::kInvalidArgument, "'majority'");
}

// Naive top-k in double, by the documented rule (similarity descending, index ascending), and
// the gap between the k-th and the next similarity (*gap).
std::vector<int64_t> naive_topk(const std::vector<float>& t, int n, const float* q, int d, int k,
                                double* gap) {
  std::vector<double> s(n);
  double qq = 0;
  for (int j = 0; j < d; ++j) qq += double(q[j]) * q[j];
  for (int i = 0; i < n; ++i) {
    double dot = 0, tt = 0;
    for (int j = 0; j < d; ++j) {
      dot += double(q[j]) * t[size_t(i) * d + j];
      tt += double(t[size_t(i) * d + j]) * t[size_t(i) * d + j];
    }
    s[i] = dot / std::sqrt(qq * tt);
  }
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
  *gap = s[idx[k - 1]] - s[idx[k]];
  idx.resize(k);
  return idx;
}

TEST(KnnSearch, BlockedSearchMatchesNaiveAndAnyThreadCount) {
  const int n = 203, m = 130, d = 37, k = 7;  // blocks and query tiles with ragged ends
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  std::vector<float> t(size_t(n) * d), q(size_t(m) * d);
  for (float& v : t) v = g(rng);
  for (float& v : q) v = g(rng);
  MemorySource train(t, std::vector<int32_t>(n, 0), d, 1);
  const std::vector<Item> items = all_items(train.images(), 1);
  KnnParams p;
  p.k = k;
  p.train_block = 16;
  KnnNeighbours a;
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    a = knn_search(train, items, q.data(), m, p);
  }
  KnnNeighbours b = knn_search(train, items, q.data(), m, p);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.sim, b.sim);  // bit for bit
  // float32 similarities may order two neighbours differently from double ones only when they
  // are within rounding of each other: such queries (a K-th/K+1-th gap under 1e-5) are counted,
  // not compared, and must stay rare.
  int near_ties = 0;
  for (int i = 0; i < m; ++i) {
    double gap = 0;
    std::vector<int64_t> want = naive_topk(t, n, q.data() + size_t(i) * d, d, k, &gap);
    if (gap < 1e-5) {
      ++near_ties;
      continue;
    }
    std::vector<int64_t> got(a.index.begin() + i * k, a.index.begin() + (i + 1) * k);
    std::vector<int64_t> got_sorted = got, want_sorted = want;
    std::sort(got_sorted.begin(), got_sorted.end());
    std::sort(want_sorted.begin(), want_sorted.end());
    EXPECT_EQ(got_sorted, want_sorted) << "query " << i;  // the same K neighbours
    for (int j = 0; j + 1 < k; ++j)  // in similarity order (ties within rounding either way)
      EXPECT_GE(a.sim[size_t(i) * k + j], a.sim[size_t(i) * k + j + 1]) << "query " << i;
  }
  EXPECT_LE(near_ties, 3);
  p.train_block = 1000;  // one block: same neighbours
  KnnNeighbours c = knn_search(train, items, q.data(), m, p);
  EXPECT_EQ(a.index, c.index);
}

TEST(KnnEvaluate, ChunkedTestSetGivesTheSameResult) {
  // Test images searched one per chunk (max_query_bytes too small for two) against all at once.
  const int d = 9, crops = 2;
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  std::vector<float> t(50 * d), q(17 * crops * d);
  for (float& v : t) v = g(rng);
  for (float& v : q) v = g(rng);
  std::vector<int32_t> tl(50), ql(17);
  for (int i = 0; i < 50; ++i) tl[i] = i % 3;
  for (int i = 0; i < 17; ++i) ql[i] = i % 3;
  MemorySource train(t, tl, d, 1), test(q, ql, d, crops);
  KnnParams p;
  p.k = 5;
  p.vote = KnnVote::kWeighted;
  EvalResult whole = evaluate_knn(train, train.images(), test, test.images(), 3, p);
  p.max_query_bytes = 1;
  EvalResult chunked = evaluate_knn(train, train.images(), test, test.images(), 3, p);
  // Chunks change the rows of each sgemm call, which a kernel may sum in another order: equal to
  // float rounding, and the same classes.
  ASSERT_EQ(whole.probs.size(), chunked.probs.size());
  for (size_t i = 0; i < whole.probs.size(); ++i)
    EXPECT_NEAR(whole.probs[i], chunked.probs[i], 1e-5) << i;
  EXPECT_EQ(whole.confusion, chunked.confusion);
  EXPECT_EQ(whole.images, 17);
}

TEST(KnnSearch, ScaledWindowMeansGiveThePooledCosines) {
  // Prepool maps of 3 channels at 3×5 (windows of unequal multiplicity): the window means scaled
  // by compact_column_scale() have the dot products of the expanded 7×7 pooled vectors.
  const CompactLayout layout(3, 3, 5);
  const std::vector<float> scale = compact_column_scale(layout);
  ASSERT_EQ(scale.size(), static_cast<size_t>(layout.dim()));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> z(2 * layout.payload_floats());
  for (float& v : z) v = u(rng);
  std::vector<float> m(2 * layout.dim()), x(2 * layout.full_dim());
  for (int i = 0; i < 2; ++i) {
    layout.window_means(z.data() + i * layout.payload_floats(), m.data() + i * layout.dim());
    expand_prepool(z.data() + i * layout.payload_floats(), 3, 3, 5,
                   x.data() + i * layout.full_dim());
  }
  auto dot = [](const float* a, const float* b, int n, const float* s) {
    double r = 0;
    for (int j = 0; j < n; ++j) r += double(a[j]) * b[j] * (s ? double(s[j]) * s[j] : 1.0);
    return r;
  };
  const int d = layout.dim(), f = layout.full_dim();
  const double full = dot(x.data(), x.data() + f, f, nullptr);
  const double compact = dot(m.data(), m.data() + d, d, scale.data());
  EXPECT_NEAR(compact, full, 1e-5 * full);
  EXPECT_NE(dot(m.data(), m.data() + d, d, nullptr), compact);  // unscaled: other angles

  // The search on the scaled means finds what the search on the pooled vectors finds.
  const int n = 40;
  std::vector<float> zs(n * layout.payload_floats()), ms(n * d), xs(n * f);
  for (float& v : zs) v = u(rng) * u(rng);
  for (int i = 0; i < n; ++i) {
    layout.window_means(zs.data() + i * layout.payload_floats(), ms.data() + i * d);
    expand_prepool(zs.data() + i * layout.payload_floats(), 3, 3, 5, xs.data() + i * f);
  }
  MemorySource pooled(std::vector<float>(xs.begin() + 5 * f, xs.end()),
                      std::vector<int32_t>(n - 5, 0), f, 1);
  MemorySource means(std::vector<float>(ms.begin() + 5 * d, ms.end()),
                     std::vector<int32_t>(n - 5, 0), d, 1);
  KnnParams p;
  p.k = 6;
  KnnNeighbours want = knn_search(pooled, all_items(pooled.images(), 1), xs.data(), 5, p);
  p.column_scale = scale;
  KnnNeighbours got = knn_search(means, all_items(means.images(), 1), ms.data(), 5, p);
  EXPECT_EQ(got.index, want.index);
  for (size_t j = 0; j < got.sim.size(); ++j) EXPECT_NEAR(got.sim[j], want.sim[j], 1e-6);
  p.column_scale.pop_back();
  expect_error([&] { knn_search(means, all_items(means.images(), 1), ms.data(), 5, p); },
               ErrorKind::kInvalidArgument, "column factors");
}

// The command on synthetic caches: outputs, and usage errors naming the flag.
class KnnCli : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::SyntheticSpec tr;
    tr.dim = 48;
    tr.classes = 3;
    tr.crops = 2;
    tr.images_per_class = 10;
    testing::make_synthetic_cache(train_, tr);
    testing::SyntheticSpec te = tr;
    te.crops = 3;
    te.images_per_class = 5;
    te.seed = 2;
    testing::make_synthetic_cache(test_, te);
  }
  std::string args(const std::string& out, const std::string& extra) {
    return "--train " + shell_quote(train_) + " --test " + shell_quote(test_) + " --out " +
           shell_quote(out) + " --threads 2 " + extra;
  }
  testing::TempDir tmp_;
  std::string train_ = tmp_ / "train", test_ = tmp_ / "test";
};

TEST_F(KnnCli, WritesSummaryPredictionsAndReport) {
  testing::ToolRun r = testing::train_head(args(tmp_ / "run", "--knn 5 --knn-vote weighted"));
  ASSERT_EQ(r.rc, 0) << r.output;
  json s = json::parse(testing::read_file(tmp_ / "run/summary.json"));
  EXPECT_EQ(s["method"], "knn");
  EXPECT_EQ(s["settings"]["knn"], 5);
  EXPECT_EQ(s["settings"]["knn_vote"], "weighted");
  EXPECT_EQ(s["train_vectors"], 60);  // every crop of every training image
  EXPECT_EQ(s["selected_test"]["images"], 15);
  int64_t total = 0;
  for (auto& row : s["confusion_matrix"])
    for (auto& c : row) total += c.get<int64_t>();
  EXPECT_EQ(total, 15);  // one prediction per test image, its three views averaged
  EXPECT_GT(s["selected_test"]["accuracy"].get<double>(), 0.8);  // separated clusters
  EXPECT_TRUE(std::filesystem::exists(tmp_ / "run/predictions.csv"));
  EXPECT_TRUE(std::filesystem::exists(tmp_ / "run/report.html"));
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "run/head.bin"));  // nothing trained
  EXPECT_NE(testing::read_file(tmp_ / "run/report.html").find("k-NN, K 5"), std::string::npos);
}

TEST_F(KnnCli, BadFlagsAreUsageErrors) {
  const char* cases[][2] = {{"--knn 0", "--knn must be >= 1 (got 0)"},
                            {"--knn -2", "--knn must be >= 1"},
                            {"--knn 3 --knn-vote most", "--knn-vote must be"},
                            {"--knn 3 --knn-temperature 0", "--knn-temperature must be > 0"},
                            {"--knn-vote weighted", "--knn-vote needs --knn"},
                            {"--knn 3 --lr 0.1", "--lr does not apply to --knn"},
                            {"--knn 3,x", "--knn takes K or a list"},
                            {"--knn 4,0", "--knn must be >= 1 (got 0)"}};
  for (auto& c : cases) {
    testing::ToolRun r = testing::train_head(args(tmp_ / "bad", c[0]));
    EXPECT_EQ(r.rc, 2) << c[0] << ": " << r.output;
    EXPECT_NE(r.output.find(c[1]), std::string::npos) << r.output;
  }
  // K above the 60 training vectors: known only once the cache is open; still a usage error.
  testing::ToolRun big = testing::train_head(args(tmp_ / "big", "--knn 61"));
  EXPECT_EQ(big.rc, 2) << big.output;
  EXPECT_NE(big.output.find("--knn 61 exceeds the 60 training vectors"), std::string::npos)
      << big.output;
  EXPECT_TRUE(testing::train_head(args(tmp_ / "all", "--knn 60")).rc == 0);
}

TEST_F(KnnCli, SweepOverKEqualsSingleRuns) {
  testing::ToolRun sweep = testing::train_head(args(tmp_ / "sweep", "--knn 5,1,3,3"));
  ASSERT_EQ(sweep.rc, 0) << sweep.output;
  json j = json::parse(testing::read_file(tmp_ / "sweep/knn_sweep.json"));
  ASSERT_EQ(j["results"].size(), 3u);  // ascending, the repeated 3 once
  EXPECT_EQ(j["results"][0]["k"], 1);
  EXPECT_EQ(j["results"][2]["k"], 5);
  for (int k : {1, 3, 5}) {
    const std::string one = tmp_ / ("one" + std::to_string(k));
    testing::ToolRun r = testing::train_head(args(one, "--knn " + std::to_string(k)));
    ASSERT_EQ(r.rc, 0) << r.output;
    const std::string dir = tmp_ / ("sweep/k" + std::to_string(k));
    // One search for K 5 serves K 1 and 3: their neighbours are its lists' prefixes.
    EXPECT_EQ(testing::read_file(dir + "/predictions.csv"),
              testing::read_file(one + "/predictions.csv"))
        << k;
    json a = json::parse(testing::read_file(dir + "/summary.json"));
    json b = json::parse(testing::read_file(one + "/summary.json"));
    EXPECT_EQ(a["selected_test"], b["selected_test"]) << k;
    EXPECT_EQ(a["settings"]["knn"], k);
  }
}

}  // namespace
}  // namespace vggcache
