// PyTorch parity: the same initial weights and batch order given to torch.optim.Adam
// (tests/py/ref_head_parity.py) and to HeadOptimizer, dropout 0. Both are float32 evaluations of
// the same training with other summation orders (and, under OPENBLAS_CORETYPE or
// ONEDNN_MAX_CPU_ISA, the same kernels forced on both), so they may differ by rounding alone:
// step t's loss within testing::rounding_bound(dim, t) (sums of dim terms, t steps), the final
// weights within rounding_bound(dim, steps) relative (Frobenius), and no single weight by more
// than a tenth of one Adam step (0.1·lr): a rounding difference never moves a weight by a visible
// fraction of a step, while a wrong update moves it by a whole one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "train_fixtures.h"
#include "head/head_model.h"
#include "head/linalg.h"
#include "train_head/train_step.h"

namespace vggcache {
namespace {

using testing::read_raw;
using testing::write_raw;

struct ParityCase {
  int dim, hidden, classes;
  double weight_decay;
};

void run_parity(const ParityCase& pc) {
  constexpr int kPool = 300, kSteps = 20, kBatch = 100;
  configure_blas_for_tbb();
  testing::TempDir tmp;
  HeadShape shape{pc.dim, pc.hidden, pc.classes};
  HeadWeights w = init_head(shape, 42);

  // ReLU-like inputs (half zeros), labels from a random linear rule, so training makes progress.
  Rng rng(5, Stream::kInit);
  std::vector<float> x(static_cast<size_t>(kPool) * pc.dim);
  for (auto& v : x) v = std::max(0.0f, testing::gaussian(rng));
  std::vector<float> dir(static_cast<size_t>(pc.classes) * pc.dim);
  for (auto& v : dir) v = testing::gaussian(rng);
  std::vector<int32_t> y(kPool);
  for (int i = 0; i < kPool; ++i) {
    double best = -1e30;
    for (int c = 0; c < pc.classes; ++c) {
      double s = 0;
      for (int j = 0; j < pc.dim; ++j)
        s += (x[size_t(i) * pc.dim + j] - 0.4) * dir[size_t(c) * pc.dim + j];
      if (s > best) best = s, y[i] = c;
    }
  }
  std::vector<int32_t> schedule;
  std::vector<uint32_t> perm(kPool);
  for (int s = 0; s < kSteps; ++s) {
    for (int i = 0; i < kPool; ++i) perm[i] = i;
    Rng srng(11, Stream::kShuffle, s);
    shuffle_in_place(perm.data(), perm.size(), srng);
    schedule.insert(schedule.end(), perm.begin(), perm.begin() + kBatch);
  }

  write_raw(tmp / "x.f32", x);
  write_raw(tmp / "y.i32", y);
  write_raw(tmp / "schedule.i32", schedule);
  write_raw(tmp / "w1.f32", w.w1);
  write_raw(tmp / "b1.f32", w.b1);
  write_raw(tmp / "w2.f32", w.w2);
  write_raw(tmp / "b2.f32", w.b2);
  nlohmann::json cfg = {{"dim", pc.dim},
                        {"hidden", pc.hidden},
                        {"classes", pc.classes},
                        {"pool", kPool},
                        {"steps", kSteps},
                        {"batch", kBatch},
                        {"lr", 1e-3},
                        {"weight_decay", pc.weight_decay}};
  testing::write_file(tmp / "config.json", cfg.dump());
  std::string out;
  int rc = testing::run_command(
      testing::python() + " " +
          testing::shell_quote(testing::source_dir() + "/tests/py/ref_head_parity.py") + " " +
          testing::shell_quote(tmp.path()),
      &out);
  ASSERT_EQ(rc, 0) << out;

  AdamConfig adam;
  adam.lr = 1e-3;
  adam.weight_decay = pc.weight_decay;
  HeadOptimizer opt(w, adam, /*dropout=*/0.0, /*seed=*/1);
  std::vector<float> batch(static_cast<size_t>(kBatch) * pc.dim);
  std::vector<int32_t> labels(kBatch);
  std::vector<double> ref_losses = read_raw<double>(tmp / "ref_losses.f64");
  ASSERT_EQ(ref_losses.size(), static_cast<size_t>(kSteps));
  double worst_rel = 0, worst_share = 0;
  for (int s = 0; s < kSteps; ++s) {
    for (int i = 0; i < kBatch; ++i) {
      int row = schedule[s * kBatch + i];
      std::copy_n(x.data() + size_t(row) * pc.dim, pc.dim, batch.data() + size_t(i) * pc.dim);
      labels[i] = y[row];
    }
    StepStats st = opt.step(batch.data(), labels.data(), kBatch, s);
    const double tol = testing::rounding_bound(pc.dim, s + 1);
    EXPECT_NEAR(st.loss, ref_losses[s], tol * std::abs(ref_losses[s])) << "step " << s + 1;
    const double rel = std::abs(st.loss - ref_losses[s]) / std::abs(ref_losses[s]);
    worst_rel = std::max(worst_rel, rel);
    worst_share = std::max(worst_share, rel / tol);
  }
  testing::report_numerics("step loss vs torch (share of bound)", worst_share, 1.0);
  std::printf("loss %.5f -> %.5f, worst relative loss difference %.2e\n", ref_losses.front(),
              ref_losses.back(), worst_rel);
  EXPECT_LT(ref_losses.back(), ref_losses.front());  // the comparison is not of a flat line
  w = opt.weights();

  auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
      m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
    return m;
  };
  auto rel_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  };
  const double step_bound = 0.1 * adam.lr, rel_bound = testing::rounding_bound(pc.dim, kSteps);
  double worst_step = 0, worst_rel_w = 0;
  for (auto [ours, file] : {std::pair{&w.w1, "ref_w1.f32"}, std::pair{&w.b1, "ref_b1.f32"},
                            std::pair{&w.w2, "ref_w2.f32"}, std::pair{&w.b2, "ref_b2.f32"}}) {
    const std::vector<float> theirs = read_raw<float>(tmp / file);
    const double d = max_diff(*ours, theirs), r = rel_diff(*ours, theirs);
    EXPECT_LE(d, step_bound) << file;
    EXPECT_LE(r, rel_bound) << file;
    worst_step = std::max(worst_step, d);
    worst_rel_w = std::max(worst_rel_w, r);
  }
  std::printf("max |W - W_torch| = %.2e\n", worst_step);
  testing::report_numerics("weights vs torch, largest element difference", worst_step, step_bound);
  testing::report_numerics("weights vs torch, relative", worst_rel_w, rel_bound);
}

TEST(TrainParity, BinaryMatchesTorchAdam) {
  run_parity({25088, 256, 2, 0.0});
}
TEST(TrainParity, BinaryWithWeightDecayMatchesTorchAdam) {
  run_parity({25088, 256, 2, 0.05});
}
TEST(TrainParity, ThreeClassesMatchTorchAdam) {
  run_parity({4096, 256, 3, 0.01});
}

}  // namespace
}  // namespace vggcache
