// The linear probe (train_head --hidden 0, train_head/probe.h, train_head/lbfgs.h): the objective's
// gradient against central differences in float64, L-BFGS against known optima, the float32
// products against float64, thread-count independence, head.bin version 2 (and version 1 still
// written for two-layer heads), the compact (window-mean) solution against the full-width one,
// Adam on a probe, the tool's outputs and usage errors, and the sweep keys. The comparison with
// scikit-learn is tests/py/test_probe_sklearn.py.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <Eigen/Dense>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/crc32c.h"
#include "common/error.h"
#include "head/feature_source.h"
#include "head/head_file.h"
#include "head/head_model.h"
#include "head/linalg.h"
#include "head/rng.h"
#include "train_fixtures.h"
#include "train_head/cli.h"
#include "train_head/lbfgs.h"
#include "train_head/probe.h"
#include "train_head/sweep/spec.h"
#include "train_head/trainer.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::shell_quote;

// n × d standard normal values plus a class signal in the first columns, and labels.
struct Data {
  std::vector<double> x;
  std::vector<int32_t> y;
  int n, d;
};

Data make_data(int n, int d, int classes, uint64_t seed) {
  Data r{{}, {}, n, d};
  Rng rng(seed, Stream::kInit);
  r.x.resize(static_cast<size_t>(n) * d);
  for (int i = 0; i < n; ++i) {
    r.y.push_back(i % classes);
    for (int j = 0; j < d; ++j)
      r.x[static_cast<size_t>(i) * d + j] =
          testing::gaussian(rng) + (j < classes && j == r.y.back() ? 1.5 : 0.0);
  }
  return r;
}

ProbeProblem problem(const ProbeMatrix& m, const Data& data, int classes, double l2,
                     bool weighted) {
  ProbeProblem p;
  p.x = &m;
  p.labels = data.y;
  p.classes = classes;
  p.l2 = l2;
  if (weighted)
    for (int32_t y : data.y) p.weights.push_back(0.5 + 0.75 * y);
  return p;
}

std::vector<double> random_theta(size_t n, uint64_t seed, double scale) {
  Rng rng(seed, Stream::kInit);
  std::vector<double> t(n);
  for (double& v : t) v = scale * testing::gaussian(rng);
  return t;
}

// ∇f against (f(θ + h·e_j) − f(θ − h·e_j)) / 2h for every parameter, float64 throughout: two
// classes (one sigmoid logit) and three (softmax), with and without sample weights. The bias is
// part of θ, so an accidental penalty on it shows up as a gradient error of l2·b.
TEST(ProbeObjective, GradientEqualsCentralDifferences) {
  for (int classes : {2, 3})
    for (bool weighted : {false, true}) {
      const Data data = make_data(23, 6, classes, 5 + classes);
      const DoubleProbeMatrix m(data.x, data.n, data.d);
      const ProbeProblem p = problem(m, data, classes, 0.7, weighted);
      const std::vector<double> theta = random_theta(p.params(), 11, 0.5);
      std::vector<double> grad;
      probe_objective(p, theta, &grad);
      double worst = 0.0;
      for (size_t j = 0; j < theta.size(); ++j) {
        const double h = 1e-5;
        std::vector<double> a = theta, b = theta;
        a[j] += h;
        b[j] -= h;
        const double fd =
            (probe_objective(p, a, nullptr) - probe_objective(p, b, nullptr)) / (2 * h);
        // Truncation O(h²·f''') and rounding O(u·f / h) are both far below 1e-6 here.
        worst = std::max(worst, std::abs(fd - grad[j]) / std::max(1.0, std::abs(fd)));
      }
      EXPECT_LT(worst, 1e-6) << classes << " classes, weighted " << weighted;
    }
}

// The objective's value by hand for one sample per class: softplus / log-sum-exp terms plus
// (l2/2)·‖W‖², the bias unpenalised.
TEST(ProbeObjective, ValueByHand) {
  const DoubleProbeMatrix m({1.0, 2.0, -1.0, 0.5}, 2, 2);
  ProbeProblem p;
  p.x = &m;
  p.labels = {1, 0};
  p.classes = 2;
  p.l2 = 0.5;
  const std::vector<double> theta = {0.3, -0.2, 0.1};  // w, b
  const double z0 = 0.3 * 1 - 0.2 * 2 + 0.1, z1 = 0.3 * -1 - 0.2 * 0.5 + 0.1;
  const double want =
      std::log1p(std::exp(-z0)) + std::log1p(std::exp(z1)) + 0.25 * (0.3 * 0.3 + 0.2 * 0.2);
  EXPECT_NEAR(probe_objective(p, theta, nullptr), want, 1e-15);
}

// The float32 products training uses give the float64 objective and gradient to float rounding.
TEST(ProbeObjective, FloatMatrixMatchesDouble) {
  // Rows and columns past one block each (256 rows, 512 columns).
  const Data data = make_data(600, 700, 3, 3);
  const DoubleProbeMatrix md(data.x, data.n, data.d);
  const FloatProbeMatrix mf(std::vector<float>(data.x.begin(), data.x.end()), data.n, data.d);
  const ProbeProblem pd = problem(md, data, 3, 0.1, true), pf = problem(mf, data, 3, 0.1, true);
  const std::vector<double> theta = random_theta(pd.params(), 2, 0.05);
  std::vector<double> gd, gf;
  const double fd = probe_objective(pd, theta, &gd), ff = probe_objective(pf, theta, &gf);
  const double bound = testing::rounding_bound(data.d) + testing::rounding_bound(data.n);
  EXPECT_LT(std::abs(ff - fd) / std::abs(fd), bound);
  double num = 0, den = 0;
  for (size_t j = 0; j < gd.size(); ++j) {
    num += (gf[j] - gd[j]) * (gf[j] - gd[j]);
    den += gd[j] * gd[j];
  }
  testing::report_numerics("probe gradient float32 vs float64", std::sqrt(num / den), bound);
  EXPECT_LT(std::sqrt(num / den), bound);
}

// A strictly convex quadratic ½xᵀAx − bᵀx: the minimiser A⁻¹b is known exactly.
TEST(Lbfgs, ReachesTheMinimiserOfAConvexQuadratic) {
  const int n = 12;
  Rng rng(4, Stream::kInit);
  Eigen::MatrixXd r(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) r(i, j) = testing::gaussian(rng);
  const Eigen::MatrixXd a = r.transpose() * r + 0.5 * Eigen::MatrixXd::Identity(n, n);
  Eigen::VectorXd b(n);
  for (int i = 0; i < n; ++i) b(i) = testing::gaussian(rng);
  const Eigen::VectorXd want = a.ldlt().solve(b);
  LbfgsOptions o;
  o.tol = 1e-10;
  o.max_iter = 500;
  o.ftol = 0;  // stop on the gradient only
  const LbfgsResult res = minimize_lbfgs(
      [&](const std::vector<double>& x, std::vector<double>* g) {
        const Eigen::Map<const Eigen::VectorXd> v(x.data(), n);
        const Eigen::VectorXd ax = a * v;
        g->resize(n);
        Eigen::Map<Eigen::VectorXd>(g->data(), n) = ax - b;
        return 0.5 * v.dot(ax) - b.dot(v);
      },
      std::vector<double>(n, 0.0), o);
  EXPECT_TRUE(res.converged) << res.stop;
  EXPECT_EQ(res.stop, "gradient");
  double err = 0;
  for (int i = 0; i < n; ++i) err = std::max(err, std::abs(res.x[i] - want(i)));
  EXPECT_LT(err, 1e-8);
}

// Rosenbrock's valley (not convex): the line search and the curvature safeguard get it to (1, 1).
TEST(Lbfgs, ReachesRosenbrocksMinimum) {
  LbfgsOptions o;
  o.tol = 1e-9;
  o.max_iter = 200;
  o.ftol = 0;
  int iterations = 0;
  const LbfgsResult res = minimize_lbfgs(
      [](const std::vector<double>& x, std::vector<double>* g) {
        const double a = 1 - x[0], b = x[1] - x[0] * x[0];
        *g = {-2 * a - 400 * x[0] * b, 200 * b};
        return a * a + 100 * b * b;
      },
      {-1.2, 1.0}, o, [&](const LbfgsIteration& it) { iterations = it.iteration; });
  EXPECT_TRUE(res.converged) << res.stop;
  EXPECT_NEAR(res.x[0], 1.0, 1e-6);
  EXPECT_NEAR(res.x[1], 1.0, 1e-6);
  EXPECT_EQ(iterations, res.iterations);
}

// On the regularised logistic objective, the solution is stationary (∇f = 0) to the tolerance.
TEST(Lbfgs, ProbeSolutionIsStationary) {
  for (int classes : {2, 4}) {
    const Data data = make_data(80, 10, classes, 9);
    const DoubleProbeMatrix m(data.x, data.n, data.d);
    const ProbeProblem p = problem(m, data, classes, 0.3, false);
    LbfgsOptions o;
    o.tol = 1e-9;
    o.ftol = 0;
    o.grad_scale = data.n;
    const LbfgsResult res =
        minimize_lbfgs([&](const std::vector<double>& t,
                           std::vector<double>* g) { return probe_objective(p, t, g); },
                       std::vector<double>(p.params(), 0.0), o);
    EXPECT_TRUE(res.converged) << res.stop;
    std::vector<double> g;
    probe_objective(p, res.x, &g);
    double gmax = 0;
    for (double v : g) gmax = std::max(gmax, std::abs(v));
    EXPECT_LT(gmax / data.n, 1e-9) << classes;
  }
}

// A MemorySource training setup of `images` × `crops` vectors of dimension d.
struct MemoryProbe {
  MemorySource train, test;
  std::vector<uint32_t> train_images;
  int classes;
  MemoryProbe(int images, int crops, int d, int classes_)
      : train(vectors(images, crops, d, classes_, 1), labels(images, classes_), d, crops),
        test(vectors(40, 1, d, classes_, 2), labels(40, classes_), d, 1),
        classes(classes_) {
    train_images = train.images();
  }
  static std::vector<int32_t> labels(int n, int classes) {
    std::vector<int32_t> y;
    for (int i = 0; i < n; ++i) y.push_back(i % classes);
    return y;
  }
  static std::vector<float> vectors(int n, int crops, int d, int classes, uint64_t seed) {
    Rng rng(seed, Stream::kInit);
    std::vector<float> v(static_cast<size_t>(n) * crops * d);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < crops; ++c)
        for (int j = 0; j < d; ++j)
          v[(static_cast<size_t>(i) * crops + c) * d + j] =
              testing::gaussian(rng) + (j % classes == i % classes ? 0.3f : 0.0f);
    return v;
  }
  TrainOutcome run(const TrainParams& p) {
    TrainSetup s;
    s.train = &train;
    s.test = &test;
    s.train_images = train_images;
    s.init = init_head({train.dim(), 0, classes}, p.seed);
    return train_probe_lbfgs(p, s, {});
  }
};

TrainParams lbfgs_params() {
  TrainParams p;
  p.hidden = 0;
  p.optimizer = "lbfgs";
  p.l2 = 2.0;
  p.max_iter = 40;
  return p;
}

// Rows and columns span several blocks (256 rows, 512 columns): one thread and four give the same
// head bit for bit, because every product is split into the same blocks.
TEST(ProbeLbfgs, ThreadCountDoesNotChangeTheHead) {
  configure_blas_for_tbb();
  MemoryProbe data(300, 2, 700, 3);
  TrainParams p = lbfgs_params();
  p.all_crops = true;
  auto with_threads = [&](int t) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, t);
    return data.run(p);
  };
  const TrainOutcome one = with_threads(1), four = with_threads(4);
  EXPECT_EQ(one.selected_weights.w1, four.selected_weights.w1);
  EXPECT_EQ(one.selected_weights.b1, four.selected_weights.b1);
  EXPECT_EQ(one.solver.dump(), four.solver.dump());
  EXPECT_GT(one.solver.at("iterations").get<int>(), 3);
  EXPECT_EQ(one.train_vectors, 600);                       // --all-crops: every crop
  EXPECT_EQ(data.run(lbfgs_params()).train_vectors, 300);  // one crop per image
}

// Every head.bin of a probe is version 2 and reads back as written; two-layer heads are still
// version 1 (older builds read them), and versions 0 and 3 are refused by name.
TEST(ProbeHeadFile, Version2ForProbesVersion1Otherwise) {
  testing::TempDir tmp;
  auto version_of = [](const std::string& path) {
    const std::string s = testing::read_file(path);
    return static_cast<uint32_t>(static_cast<unsigned char>(s[8]));
  };
  HeadFile probe;
  probe.weights = init_head({20, 0, 3}, 1);
  probe.classes = {"a", "b", "c"};
  probe.standardizer.mean.assign(20, 0.5f);
  probe.standardizer.std.assign(20, 2.0f);
  probe.features = {{"dim", 20}};
  EXPECT_EQ(probe.weights.w1.size(), 60u);
  EXPECT_TRUE(probe.weights.w2.empty());
  save_head(tmp / "probe.bin", probe);
  EXPECT_EQ(version_of(tmp / "probe.bin"), 2u);
  const HeadFile back = load_head(tmp / "probe.bin");
  EXPECT_EQ(back.weights.shape.hidden, 0);
  EXPECT_EQ(back.weights.w1, probe.weights.w1);
  EXPECT_EQ(back.weights.b1, probe.weights.b1);
  EXPECT_TRUE(back.weights.w2.empty() && back.weights.b2.empty());
  EXPECT_EQ(back.standardizer.mean, probe.standardizer.mean);

  HeadFile mlp = probe;
  mlp.weights = init_head({20, 4, 3}, 1);
  save_head(tmp / "mlp.bin", mlp);
  EXPECT_EQ(version_of(tmp / "mlp.bin"), 1u);
  EXPECT_EQ(load_head(tmp / "mlp.bin").weights.w2, mlp.weights.w2);

  // Version bytes rewritten (CRC fixed up, so only the version is wrong).
  auto with_version = [&](const std::string& from, uint32_t v, const std::string& to) {
    std::string s = testing::read_file(from);
    s[8] = static_cast<char>(v);
    const uint32_t crc = crc32c(s.data(), s.size() - 4);
    for (int i = 0; i < 4; ++i) s[s.size() - 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
    testing::write_file(to, s);
  };
  for (uint32_t v : {0u, 3u}) {
    with_version(tmp / "mlp.bin", v, tmp / "v.bin");
    try {
      load_head(tmp / "v.bin");
      ADD_FAILURE() << "version " << v << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kSchema);
      EXPECT_NE(std::string(e.what()).find("format version " + std::to_string(v)),
                std::string::npos)
          << e.what();
    }
  }
  // A probe in a version 1 file is damage, not a head.
  with_version(tmp / "probe.bin", 1, tmp / "p1.bin");
  EXPECT_THROW(load_head(tmp / "p1.bin"), Error);
}

// head_predict on a probe: softmax(W·x + b) (three classes) and (1 − σ, σ) of one logit (two).
TEST(ProbeHeadFile, PredictIsTheLinearLayersOutput) {
  for (int classes : {2, 3}) {
    const HeadWeights w = init_head({5, 0, classes}, 3);
    const std::vector<float> x = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f};
    std::vector<float> prob(classes);
    head_predict(w, x.data(), 1, prob.data());
    const int o = w.shape.outputs();
    std::vector<double> z(o);
    for (int k = 0; k < o; ++k) {
      z[k] = w.b1[k];
      for (int j = 0; j < 5; ++j) z[k] += static_cast<double>(w.w1[k * 5 + j]) * x[j];
    }
    if (classes == 2) {
      EXPECT_NEAR(prob[1], 1.0 / (1.0 + std::exp(-z[0])), 1e-6);
      EXPECT_NEAR(prob[0] + prob[1], 1.0, 1e-6);
    } else {
      double s = 0;
      for (double v : z) s += std::exp(v);
      for (int k = 0; k < 3; ++k) EXPECT_NEAR(prob[k], std::exp(z[k]) / s, 1e-6);
    }
  }
}

std::string run_tool(const testing::TempDir& tmp, const std::string& out, const std::string& flags,
                     int want_rc = 0) {
  const testing::ToolRun r = testing::train_head(
      "--train " + shell_quote(tmp / "train") + " --test " + shell_quote(tmp / "test") + " --out " +
      shell_quote(tmp / out) + " --threads 2 " + flags);
  EXPECT_EQ(r.rc, want_rc) << flags << "\n" << r.output;
  return r.output;
}

json read_json(const std::string& path) {
  return json::parse(testing::read_file(path));
}

// From two prepool-f32 caches the L-BFGS probe solves on the scaled window means; its head.bin
// (25088-style full width) equals the --full-width solution to rounding, and a run writes what a
// trained run writes.
TEST(ProbeTool, CompactSolutionIsTheFullWidthOneAndOutputsAreComplete) {
  testing::TempDir tmp;
  testing::make_prepool_cache(tmp / "train", 64, 30, 2, 32);
  testing::make_prepool_cache(tmp / "test", 64, 8, 1, 32);
  const std::string flags = "--hidden 0 --optimizer lbfgs --l2 0.5 --tol 1e-6 --max-iter 300 ";
  const std::string log = run_tool(tmp, "compact", flags + "--val-fraction 0.2");
  EXPECT_NE(log.find("L-BFGS probe on the 288 window means"), std::string::npos) << log;
  EXPECT_NE(log.find("lbfgs    1/300: objective"), std::string::npos) << log;
  run_tool(tmp, "full", flags + "--val-fraction 0.2 --full-width");
  const HeadFile c = load_head(tmp / "compact/head.bin"), f = load_head(tmp / "full/head.bin");
  EXPECT_EQ(c.weights.shape.hidden, 0);
  ASSERT_EQ(c.weights.w1.size(), 32u * 49);
  ASSERT_EQ(c.weights.w1.size(), f.weights.w1.size());
  double num = 0, den = 0;
  for (size_t j = 0; j < c.weights.w1.size(); ++j) {
    num += std::pow(c.weights.w1[j] - f.weights.w1[j], 2);
    den += std::pow(f.weights.w1[j], 2);
  }
  const json s = read_json(tmp / "compact/summary.json");
  const json full_s = read_json(tmp / "full/summary.json");
  // Each stops within ‖∇f‖₂ ≤ √P·n·‖∇f/n‖∞ of the optimum's zero gradient, and f is l2-strongly
  // convex in W, so each W is within ‖∇f‖₂ / l2 of the optimum's: the two within the sum.
  const double n = 48, params = 32 * 49 + 1, l2 = 0.5;
  const double bound = std::sqrt(params) * n / l2 *
                       (s["solver"]["gradient_inf_norm"].get<double>() +
                        full_s["solver"]["gradient_inf_norm"].get<double>()) /
                       std::sqrt(den);
  testing::report_numerics("probe W, window means vs full width", std::sqrt(num / den), bound);
  EXPECT_LT(std::sqrt(num / den), bound);
  EXPECT_EQ(s["settings"]["optimizer"], "lbfgs");
  EXPECT_EQ(s["settings"]["l2"], 0.5);
  EXPECT_TRUE(s["solver"]["converged"].get<bool>()) << s["solver"].dump();
  EXPECT_EQ(s["solver"]["columns"], 32 * 9);
  EXPECT_EQ(s["selection"], "final");
  EXPECT_EQ(s["train_vectors"], 48);  // 60 images, 12 held out, one crop each
  EXPECT_TRUE(s["best"]["val_accuracy"].is_number());
  EXPECT_NEAR(s["solver"]["objective"].get<double>(), full_s["solver"]["objective"].get<double>(),
              1e-6 * std::abs(full_s["solver"]["objective"].get<double>()));
  EXPECT_EQ(testing::read_file(tmp / "compact/predictions.csv").substr(0, 30),
            testing::read_file(tmp / "full/predictions.csv").substr(0, 30));
  for (const char* file : {"metrics.jsonl", "predictions.csv", "report.html"})
    EXPECT_FALSE(testing::read_file(tmp / "compact/" + file).empty()) << file;
}

// Adam trains a probe too (the compact first layer with one row per output), with the imbalance
// flags; class weights with L-BFGS are recorded like Adam's.
TEST(ProbeTool, AdamProbeAndClassWeights) {
  testing::TempDir tmp;
  testing::SyntheticSpec spec;
  spec.class_images = {30, 10, 20};
  testing::make_synthetic_cache(tmp / "train", spec);
  spec.class_images = {8, 8, 8};
  spec.seed = 8;
  testing::make_synthetic_cache(tmp / "test", spec);
  run_tool(tmp, "adam",
           "--hidden 0 --epochs 4 --batch 16 --standardize --class-weight balanced "
           "--sampler balanced --val-fraction 0.2 --select balanced");
  const HeadFile a = load_head(tmp / "adam/head.bin");
  EXPECT_EQ(a.weights.shape.hidden, 0);
  EXPECT_EQ(a.weights.w1.size(), 3u * 64);
  const json s = read_json(tmp / "adam/summary.json");
  EXPECT_GT(s["selected_test"]["accuracy"].get<double>(), 0.5);
  run_tool(tmp, "lbfgs", "--hidden 0 --optimizer lbfgs --class-weight balanced");
  const json l = read_json(tmp / "lbfgs/summary.json");
  ASSERT_TRUE(l["class_weights"].is_array());
  EXPECT_NEAR(l["class_weights"][1].get<double>(), 60.0 / (3 * 10), 1e-6);
  EXPECT_GT(l["selected_test"]["accuracy"].get<double>(), 0.5);
}

TEST(ProbeCli, UsageErrorsNameTheFlag) {
  const char* cases[][2] = {
      {"--optimizer lbfgs", "--optimizer lbfgs trains the linear probe: it needs --hidden 0"},
      {"--optimizer lbfgs --hidden 16", "needs --hidden 0 (got 16)"},
      {"--optimizer adagrad", "--optimizer must be one of adam, sgd, lbfgs (got 'adagrad')"},
      {"--hidden -1", "--hidden must be >= 0"},
      {"--hidden 0 --optimizer lbfgs --l2 0", "--l2 must be in (0, 1e12] (got 0)"},
      {"--hidden 0 --optimizer lbfgs --l2 -1", "--l2 must be in (0, 1e12]"},
      {"--hidden 0 --optimizer lbfgs --l2 nan", "--l2"},
      {"--hidden 0 --optimizer lbfgs --max-iter 0", "--max-iter must be >= 1 (got 0)"},
      {"--hidden 0 --optimizer lbfgs --tol 0", "--tol must be > 0 (got 0)"},
      {"--hidden 0 --optimizer lbfgs --epochs 3", "--epochs does not apply to --optimizer lbfgs"},
      {"--hidden 0 --optimizer lbfgs --lr 1e-3", "--lr does not apply to --optimizer lbfgs"},
      {"--hidden 0 --optimizer lbfgs --sampler balanced",
       "--sampler does not apply to --optimizer lbfgs"},
      {"--l2 1", "--l2 needs --optimizer lbfgs"},
      {"--hidden 0 --max-iter 5", "--max-iter needs --optimizer lbfgs"},
      {"--hidden 0 --dropout 0.3", "--dropout does not apply to --hidden 0"},
      {"--knn 5 --l2 1", "--l2 does not apply to --knn"},
  };
  for (auto& c : cases) {
    testing::ToolRun r = testing::train_head("--train a --test b --out c " + std::string(c[0]));
    EXPECT_EQ(r.rc, 2) << c[0] << ": " << r.output;
    EXPECT_NE(r.output.find(c[1]), std::string::npos) << c[0] << ": " << r.output;
  }
}

// hidden 0 and l2 are sweep keys, optimizer too; an lbfgs configuration is a probe whatever the
// grid's hidden, and Adam's keys do not multiply it. Configurations at the defaults keep their
// settings (hence ids) as before these keys.
TEST(ProbeSweep, KeysRulesAndUnchangedDefaults) {
  const SweepSpec spec = parse_sweep_spec("lr=1e-3,1e-4;hidden=0,256;optimizer=adam,lbfgs");
  TrainParams base;
  base.threads = 1;  // what the command line fills in
  const std::vector<TrainParams> ps = expand_grid(spec, base);
  // adam × {0, 256} × 2 lr + one lbfgs probe (hidden forced to 0, lr back to the base's).
  ASSERT_EQ(ps.size(), 5u);
  int lbfgs = 0;
  for (const TrainParams& p : ps) {
    EXPECT_EQ(validate_train_params(p), "") << config_settings_json(p).dump();
    if (p.optimizer == "lbfgs") {
      ++lbfgs;
      EXPECT_EQ(p.hidden, 0);
      EXPECT_EQ(p.lr, base.lr);
      EXPECT_EQ(config_settings_json(p)["l2"], 1.0);
    } else {
      EXPECT_FALSE(config_settings_json(p).contains("optimizer"));
      EXPECT_FALSE(config_settings_json(p).contains("l2"));
    }
  }
  EXPECT_EQ(lbfgs, 1);
  EXPECT_EQ(config_settings_json(TrainParams{}).dump(),
            R"({"all_crops":false,"batch":100,"dropout":0.5,"epochs":5,"hidden":256,"lr":0.001,)"
            R"("seed":0,"standardize":false,"weight_decay":0.0})");
  // l2 is log-uniform over a range, like lr.
  const SweepSpec r = parse_sweep_spec("optimizer=lbfgs;l2=1e-4..1e2;hidden=0");
  TrainParams lb = lbfgs_params();
  const std::vector<TrainParams> drawn = sample_configs(r, lb, 40, 3);
  int below_1e_2 = 0, above_1 = 0;
  for (const TrainParams& p : drawn) {
    EXPECT_GE(p.l2, 1e-4);
    EXPECT_LE(p.l2, 1e2);
    below_1e_2 += p.l2 < 1e-2;
    above_1 += p.l2 > 1;
  }
  // Log-uniform: a third of the decades below 1e-2 and a third above 1 (uniform would put
  // 99% above 1).
  EXPECT_GT(below_1e_2, 5);
  EXPECT_GT(above_1, 5);
  EXPECT_THROW(parse_sweep_spec("l2=0"), Error);
}

// A sweep mixing Adam probes, two-layer heads and L-BFGS probes runs end to end.
TEST(ProbeSweep, MixedSweepRuns) {
  testing::TempDir tmp;
  testing::SyntheticSpec spec;
  testing::make_synthetic_cache(tmp / "train", spec);
  spec.seed = 8;
  testing::make_synthetic_cache(tmp / "test", spec);
  const std::string log = run_tool(
      tmp, "sweep", "--sweep 'hidden=0,8;optimizer=adam,lbfgs;l2=0.1,10' --epochs 2 --quiet");
  const json res = read_json(tmp / "sweep/results.json");
  std::set<std::string> kinds;
  for (const json& row : res["rows"]) {
    const json& s = row["settings"];
    kinds.insert(s.value("optimizer", "adam") + "/" + std::to_string(s["hidden"].get<int>()));
  }
  // adam/0 and adam/8 (l2 does not apply to Adam: one each), lbfgs/0 twice (two l2 values).
  EXPECT_EQ(kinds, (std::set<std::string>{"adam/0", "adam/8", "lbfgs/0"})) << log;
  EXPECT_EQ(res["rows"].size(), 4u) << log;
  EXPECT_NE(testing::read_file(tmp / "sweep/results.csv").find(",lbfgs,0.1,"), std::string::npos);
}

}  // namespace
}  // namespace vggcache
