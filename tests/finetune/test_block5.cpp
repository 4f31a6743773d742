// The block-5 engine (finetune/) against torch: forward and gradients against float64 torch, with
// bounds that follow from the lengths of the sums (tests/test_util.h), at 64 px, 224 px and odd
// sizes; conv3x3 alone against a direct float64 convolution; thread-count independence; refusals.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <thread>
#include <vector>

#include "common/error.h"
#include "finetune/block5.h"
#include "finetune/conv3x3.h"
#include "head/linalg.h"
#include "test_util.h"

namespace vggcache {
namespace {

constexpr int kC = kBlock5Channels;
constexpr double kConvTerms = 9.0 * kC;  // each conv5 output sums 9·512 products

template <typename T>
std::vector<T> read_raw(const std::string& path) {
  const std::string bytes = testing::read_file(path);
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

void write_raw(const std::string& path, const std::vector<float>& v) {
  testing::write_file(
      path, std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
}

std::vector<float> normal(size_t size, float stddev, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(size);
  for (float& f : v) f = dist(rng);
  return v;
}

// max |ours − truth| / max |truth|: rounding errors scale with the sums' magnitudes, which the
// tensor's largest value stands for.
template <typename T>
double max_rel_error(const std::vector<float>& ours, const std::vector<T>& truth) {
  EXPECT_EQ(ours.size(), truth.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < std::min(ours.size(), truth.size()); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(ours[i]) - static_cast<double>(truth[i])));
    scale = std::max(scale, std::abs(static_cast<double>(truth[i])));
  }
  return scale > 0 ? worst / scale : worst;
}

// He-initialised block 5 (torchvision's kaiming_normal_ scale, 2 / fan_out with fan_out = 9·512)
// with small nonzero biases, so the bias gradients are exercised.
Block5 random_block5(std::mt19937& rng) {
  Block5 net;
  for (int i = 0; i < 3; ++i)
    net.set_layer(i, normal(static_cast<size_t>(kC) * kC * 9, std::sqrt(2.0f / 4608.0f), rng),
                  normal(kC, 0.05f, rng));
  return net;
}

// pool4-like maps: a max-pooled ReLU output is nonnegative, with a share of exact zeros.
std::vector<float> pool4_like(size_t size, std::mt19937& rng) {
  std::vector<float> v = normal(size, 1.0f, rng);
  for (float& f : v) f = std::max(0.0f, f + 0.3f);
  return v;
}

struct Case {
  int n, h, w;
  const char* name;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (" << c.n << " × 512 × " << c.h << " × " << c.w << ")";
}

class Block5VsTorch : public ::testing::TestWithParam<Case> {};

TEST_P(Block5VsTorch, ForwardAndGradientsMatchFloat64) {
  const Case c = GetParam();
  const size_t size = static_cast<size_t>(c.n) * kC * c.h * c.w;
  std::mt19937 rng(1500 + c.h);
  const Block5 net = random_block5(rng);
  const std::vector<float> x = pool4_like(size, rng);
  const std::vector<float> d_out = normal(static_cast<size_t>(c.n) * kBlock5OutputDim, 0.01f, rng);

  Block5Activations act;
  const std::vector<float> out = net.forward(x, c.n, c.h, c.w, &act);
  std::vector<float> d_x;
  const Block5Gradients grads = net.backward(act, d_out, &d_x);

  testing::TempDir dir;
  write_raw(dir / "x.f32", x);
  write_raw(dir / "dout.f32", d_out);
  for (int i = 0; i < 3; ++i) {
    write_raw(dir / fmt::format("w{}.f32", i + 1), net.weight(i));
    write_raw(dir / fmt::format("b{}.f32", i + 1), net.bias(i));
    std::vector<float> mask(size);
    for (size_t j = 0; j < size; ++j) mask[j] = act.relu[i][j] > 0.0f ? 1.0f : 0.0f;
    write_raw(dir / fmt::format("mask{}.f32", i + 1), mask);
  }
  write_raw(dir / "pick.f32", std::vector<float>(act.pool_argmax.begin(), act.pool_argmax.end()));
  std::string log;
  const std::string cmd =
      fmt::format("{} {} {} {} {} {}", testing::python(),
                  testing::shell_quote(testing::source_dir() + "/tests/py/ref_block5.py"),
                  testing::shell_quote(dir.path()), c.n, c.h, c.w);
  ASSERT_EQ(testing::run_command(cmd, &log), 0) << log;

  // Forward: each conv's rounding (a sum of 9·512 terms) carries through ReLU into the next conv,
  // which neither damps nor amplifies it, so the three add up; the average pool adds its own sum.
  const int ph = c.h / 2, pw = c.w / 2;
  const int window = ((ph + 6) / 7 + 1) * ((pw + 6) / 7 + 1);  // ≥ the largest adaptive window
  const double fwd_bound =
      3 * testing::rounding_bound(kConvTerms) + testing::rounding_bound(window);
  const double out_err = max_rel_error(out, read_raw<double>(dir / "out64.f64"));
  const double torch_err =
      max_rel_error(read_raw<float>(dir / "out32.f32"), read_raw<double>(dir / "out64.f64"));
  EXPECT_LE(out_err, fwd_bound);
  EXPECT_LE(torch_err, fwd_bound) << "torch's own float32 exceeds the bound: the bound is wrong";
  testing::report_numerics(fmt::format("block5 {} output vs torch f64", c.name), out_err,
                           fwd_bound);
  testing::report_numerics(fmt::format("block5 {} torch f32 output vs f64", c.name), torch_err,
                           fwd_bound);

  // Decisions: a ReLU or pool5 choice may differ from float64's only where the values it compares
  // are within the rounding error of the layer's output (the first i + 1 convs' bounds).
  int flips = 0;
  std::vector<double> pre3;
  for (int i = 0; i < 3; ++i) {
    const std::vector<double> pre = read_raw<double>(dir / fmt::format("pre{}.f64", i + 1));
    ASSERT_EQ(pre.size(), size);
    double scale = 0;
    for (double v : pre) scale = std::max(scale, std::abs(v));
    const double tol = (i + 1) * testing::rounding_bound(kConvTerms) * scale;
    for (size_t j = 0; j < size; ++j)
      if ((act.relu[i][j] > 0.0f) != (pre[j] > 0.0)) {
        ++flips;
        EXPECT_LE(std::abs(pre[j]), tol) << "conv5_" << i + 1 << " ReLU decision " << j;
      }
    if (i == 2) pre3 = pre;
  }
  const std::vector<double> pick64 = read_raw<double>(dir / "pick64.f64");
  ASSERT_EQ(pick64.size(), act.pool_argmax.size());
  {
    double scale = 0;
    for (double v : pre3) scale = std::max(scale, v);
    const double tol = 3 * testing::rounding_bound(kConvTerms) * scale;
    const size_t plane = static_cast<size_t>(c.h) * c.w, pplane = static_cast<size_t>(ph) * pw;
    for (size_t j = 0; j < pick64.size(); ++j) {
      const size_t base = j / pplane * plane;
      const auto theirs = static_cast<size_t>(pick64[j]);
      const auto ours = static_cast<size_t>(act.pool_argmax[j]);
      if (ours == theirs) continue;
      ++flips;
      EXPECT_GE(std::max(pre3[base + ours], 0.0), std::max(pre3[base + theirs], 0.0) - tol)
          << "pool5 decision " << j;
    }
  }
  RecordProperty("decisions_differing_from_f64", flips);

  // Gradients, with the decisions fixed to ours: ∂W and ∂b of each conv sum n·h·w products, whose
  // factors carry the rounding of the two other convs (the forward pass up to the layer's input,
  // the backward pass down from conv5_3); ∂x carries all three backward convs. The adaptive pool's
  // backward sums at most `window` shares.
  const double grad_bound = testing::rounding_bound(static_cast<double>(c.n) * c.h * c.w) +
                            2 * testing::rounding_bound(kConvTerms) +
                            testing::rounding_bound(window);
  const double dx_bound = 3 * testing::rounding_bound(kConvTerms) + testing::rounding_bound(window);
  double worst_w = 0, worst_b = 0;
  for (int i = 0; i < 3; ++i) {
    const double ew =
        max_rel_error(grads.weight[i], read_raw<double>(dir / fmt::format("dw{}.f64", i + 1)));
    const double eb =
        max_rel_error(grads.bias[i], read_raw<double>(dir / fmt::format("db{}.f64", i + 1)));
    EXPECT_LE(ew, grad_bound) << Block5::weight_name(i);
    EXPECT_LE(eb, grad_bound) << Block5::bias_name(i);
    worst_w = std::max(worst_w, ew);
    worst_b = std::max(worst_b, eb);
  }
  const double dx_err = max_rel_error(d_x, read_raw<double>(dir / "dx.f64"));
  EXPECT_LE(dx_err, dx_bound);
  testing::report_numerics(fmt::format("block5 {} weight grads vs torch f64", c.name), worst_w,
                           grad_bound);
  testing::report_numerics(fmt::format("block5 {} bias grads vs torch f64", c.name), worst_b,
                           grad_bound);
  testing::report_numerics(fmt::format("block5 {} input grad vs torch f64", c.name), dx_err,
                           dx_bound);
}

// 64 and 224 px crops; 5 × 5 (80 px) drops pool5's last row and column and gives 2 × 2 maps whose
// 7 × 7 windows repeat and overlap; 6 × 6 (96 px) gives 3 × 3 maps with overlapping windows.
INSTANTIATE_TEST_SUITE_P(Sizes, Block5VsTorch,
                         ::testing::Values(Case{2, 4, 4, "64px"}, Case{2, 14, 14, "224px"},
                                           Case{3, 5, 5, "80px"}, Case{2, 6, 6, "96px"}),
                         [](const auto& info) { return std::string(info.param.name); });

// conv3x3 alone on a non-square map with few channels, against a direct float64 convolution.
TEST(Conv3x3, MatchesDirectConvolution) {
  const Conv3x3Shape s{3, 5, 7, 3, 4};
  std::mt19937 rng(7);
  const size_t in_size = static_cast<size_t>(s.n) * s.c_in * s.h * s.w;
  const size_t out_size = static_cast<size_t>(s.n) * s.c_out * s.h * s.w;
  const std::vector<float> x = normal(in_size, 1.0f, rng);
  const std::vector<float> weight = normal(static_cast<size_t>(s.c_out) * s.c_in * 9, 0.3f, rng);
  const std::vector<float> bias = normal(s.c_out, 0.1f, rng);
  const std::vector<float> dy = normal(out_size, 1.0f, rng);
  std::vector<float> y(out_size), dw(weight.size()), db(s.c_out), dx(in_size);
  conv3x3_forward(s, x.data(), weight.data(), bias.data(), y.data());
  conv3x3_backward(s, x.data(), weight.data(), dy.data(), dw.data(), db.data(), dx.data());

  std::vector<double> y64(out_size), dw64(dw.size(), 0), db64(s.c_out, 0), dx64(in_size, 0);
  auto at = [&](int b, int c, int ch, int y, int x) {
    return ((static_cast<size_t>(b) * ch + c) * s.h + y) * s.w + x;
  };
  for (int b = 0; b < s.n; ++b)
    for (int co = 0; co < s.c_out; ++co)
      for (int yy = 0; yy < s.h; ++yy)
        for (int xx = 0; xx < s.w; ++xx) {
          const size_t o = at(b, co, s.c_out, yy, xx);
          double sum = bias[co];
          db64[co] += dy[o];
          for (int ci = 0; ci < s.c_in; ++ci)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const int sy = yy + ky - 1, sx = xx + kx - 1;
                if (sy < 0 || sy >= s.h || sx < 0 || sx >= s.w) continue;
                const size_t wi = (static_cast<size_t>(co) * s.c_in + ci) * 9 + ky * 3 + kx;
                const size_t xi = at(b, ci, s.c_in, sy, sx);
                sum += static_cast<double>(weight[wi]) * x[xi];
                dw64[wi] += static_cast<double>(dy[o]) * x[xi];
                dx64[xi] += static_cast<double>(dy[o]) * weight[wi];
              }
          y64[o] = sum;
        }
  const double terms = 9.0 * s.c_in + 1;
  EXPECT_LE(max_rel_error(y, y64), testing::rounding_bound(terms));
  EXPECT_LE(max_rel_error(dw, dw64), testing::rounding_bound(s.n * s.h * s.w));
  EXPECT_LE(max_rel_error(db, db64), testing::rounding_bound(s.n * s.h * s.w));
  EXPECT_LE(max_rel_error(dx, dx64), testing::rounding_bound(9.0 * s.c_out));
}

// Enough 4 × 4 images for several blocks, so the weight gradient goes through the reduction tree.
TEST(Conv3x3, BitwiseSameForAnyThreadCount) {
  const Conv3x3Shape s{40, 64, 32, 4, 4};
  configure_blas_for_tbb();
  std::mt19937 rng(11);
  const std::vector<float> x = normal(static_cast<size_t>(s.n) * s.c_in * 16, 1.0f, rng);
  const std::vector<float> weight = normal(static_cast<size_t>(s.c_out) * s.c_in * 9, 0.1f, rng);
  const std::vector<float> bias = normal(s.c_out, 0.1f, rng);
  const std::vector<float> dy = normal(static_cast<size_t>(s.n) * s.c_out * 16, 1.0f, rng);
  auto run = [&](int threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    std::vector<float> y(dy.size()), dw(weight.size()), db(s.c_out), dx(x.size());
    conv3x3_forward(s, x.data(), weight.data(), bias.data(), y.data());
    conv3x3_backward(s, x.data(), weight.data(), dy.data(), dw.data(), db.data(), dx.data());
    y.insert(y.end(), dw.begin(), dw.end());
    y.insert(y.end(), db.begin(), db.end());
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  };
  const std::vector<float> one = run(1);
  for (int threads : {2, 3, 8}) {
    const std::vector<float> many = run(threads);
    ASSERT_EQ(one.size(), many.size());
    EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0)
        << threads << " threads";
  }
}

// forward() and backward() are const and keep their state in the caller's activations: two
// threads on one Block5 get what one thread alone gets (and TSan, in check-hard, sees no race).
TEST(Block5, ConcurrentBatchesOnOneBlockAgreeWithSerial) {
  std::mt19937 rng(21);
  const Block5 net = random_block5(rng);
  const std::vector<float> x = pool4_like(static_cast<size_t>(2) * kC * 16, rng);
  const std::vector<float> d_out = normal(static_cast<size_t>(2) * kBlock5OutputDim, 0.01f, rng);
  auto run = [&] {
    Block5Activations act;
    std::vector<float> result = net.forward(x, 2, 4, 4, &act);
    const Block5Gradients g = net.backward(act, d_out);
    for (int i = 0; i < 3; ++i) {
      result.insert(result.end(), g.weight[i].begin(), g.weight[i].end());
      result.insert(result.end(), g.bias[i].begin(), g.bias[i].end());
    }
    return result;
  };
  const std::vector<float> serial = run();
  std::vector<float> a, b;
  std::thread ta([&] { a = run(); });
  std::thread tb([&] { b = run(); });
  ta.join();
  tb.join();
  EXPECT_TRUE(a == serial);
  EXPECT_TRUE(b == serial);
}

template <typename F>
void expect_error(ErrorKind kind, const std::string& part, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning \"" << part << "\"";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Block5Errors, BadShapesAndWeightsThrow) {
  Block5 net;
  Block5Activations act;
  const std::vector<float> x4(static_cast<size_t>(kC) * 16, 1.0f);
  expect_error(ErrorKind::kInvalidArgument, "features.24.weight was never set",
               [&] { net.forward(x4, 1, 4, 4, &act); });
  expect_error(ErrorKind::kMismatch, "features.26.weight has 10 values",
               [&] { net.set_layer(1, std::vector<float>(10), std::vector<float>(kC)); });
  expect_error(ErrorKind::kMismatch, "features.28.bias has 3 values", [&] {
    net.set_layer(2, std::vector<float>(static_cast<size_t>(kC) * kC * 9), std::vector<float>(3));
  });
  expect_error(ErrorKind::kInvalidArgument, "layer 3",
               [&] { net.set_layer(3, std::vector<float>(), std::vector<float>()); });
  for (int i = 0; i < 3; ++i)
    net.set_layer(i, std::vector<float>(static_cast<size_t>(kC) * kC * 9), std::vector<float>(kC));

  const std::vector<float> x1(static_cast<size_t>(kC) * 4, 1.0f);
  expect_error(ErrorKind::kInvalidArgument, "1 × 512 × 1 × 4 is too small",
               [&] { net.forward(x1, 1, 1, 4, &act); });
  expect_error(ErrorKind::kInvalidArgument, "1 × 512 × 4 × 1 is too small",
               [&] { net.forward(x1, 1, 4, 1, &act); });
  expect_error(ErrorKind::kInvalidArgument, "0 × 512 × 4 × 4 is too small",
               [&] { net.forward(x4, 0, 4, 4, &act); });
  expect_error(ErrorKind::kMismatch, "expected 2 × 512 × 4 × 4 = 16384",
               [&] { net.forward(x4, 2, 4, 4, &act); });

  expect_error(ErrorKind::kInvalidArgument, "do not come from forward()",
               [&] { net.backward(Block5Activations(), std::vector<float>(kBlock5OutputDim)); });
  const std::vector<float> out = net.forward(x4, 1, 4, 4, &act);
  EXPECT_EQ(out.size(), static_cast<size_t>(kBlock5OutputDim));
  expect_error(ErrorKind::kMismatch, "expected 1 × 25088",
               [&] { net.backward(act, std::vector<float>(100)); });
  Block5Activations cut = act;
  cut.relu[1].pop_back();
  expect_error(ErrorKind::kInvalidArgument, "do not come from forward()",
               [&] { net.backward(cut, std::vector<float>(kBlock5OutputDim)); });

  float dummy = 0;
  expect_error(ErrorKind::kInvalidArgument, "c_in=0", [&] {
    conv3x3_forward(Conv3x3Shape{1, 0, 1, 1, 1}, &dummy, &dummy, &dummy, &dummy);
  });
}

}  // namespace
}  // namespace vggcache
