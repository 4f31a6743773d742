// Winograd's F(4×4, 3×3) convolution (finetune/winograd.h) against a direct float64 convolution,
// element by element, within the rounding bound of the computation it does: γ(m) times the same
// computation on absolute values (transforms, data and weights), evaluated here in float64 by an
// independent implementation. m counts the longest chain of roundings (winograd.h). Also: results
// bitwise the same for any thread count, and refusals.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "finetune/conv3x3.h"
#include "finetune/winograd.h"
#include "head/linalg.h"

namespace vggcache {
namespace {

// The transforms, written out again (the test does not read the library's tables).
constexpr double kBt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                              {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
constexpr double kG[6][3] = {{1.0 / 4, 0, 0},
                             {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                             {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                             {1.0 / 24, 1.0 / 12, 1.0 / 6},
                             {1.0 / 24, -1.0 / 12, 1.0 / 6},
                             {0, 0, 1}};
constexpr double kAt[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

// A matrix r × k of absolute values.
struct Abs {
  int r, k;
  std::vector<double> v;
  double at(int i, int j) const { return v[i * k + j]; }
};
template <int R, int K>
Abs abs_of(const double (&m)[R][K], bool transpose) {
  Abs a{transpose ? K : R, transpose ? R : K, {}};
  for (int i = 0; i < a.r; ++i)
    for (int j = 0; j < a.k; ++j) a.v.push_back(std::fabs(transpose ? m[j][i] : m[i][j]));
  return a;
}

// Y (L.r × R.r) = L X Rᵀ for X (L.k × R.k), all row-major.
std::vector<double> lxr(const Abs& L, const std::vector<double>& x, const Abs& R) {
  std::vector<double> y(static_cast<size_t>(L.r) * R.r, 0.0);
  for (int i = 0; i < L.r; ++i)
    for (int j = 0; j < R.r; ++j)
      for (int p = 0; p < L.k; ++p)
        for (int q = 0; q < R.k; ++q) y[i * R.r + j] += L.at(i, p) * x[p * R.k + q] * R.at(j, q);
  return y;
}

double gamma(double m) {
  const double u = std::ldexp(1.0, -24);
  return m * u / (1 - m * u);
}

std::vector<float> normal(size_t n, float sd, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct Case {
  Conv3x3Shape s;
  const char* name;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class WinogradVsFloat64 : public ::testing::TestWithParam<Case> {};

TEST_P(WinogradVsFloat64, ForwardAndGradientsWithinTheirRoundingBounds) {
  configure_blas_for_tbb();
  const Conv3x3Shape s = GetParam().s;
  std::mt19937 rng(7);
  const size_t hw = static_cast<size_t>(s.h) * s.w;
  const size_t in_size = s.n * s.c_in * hw, out_size = s.n * s.c_out * hw;
  std::vector<float> x = normal(in_size, 1.0f, rng);
  for (size_t i = 0; i < in_size; i += 3) x[i] = std::max(0.0f, x[i]);  // some ReLU-like zeros
  const std::vector<float> weight = normal(static_cast<size_t>(s.c_out) * s.c_in * 9, 0.3f, rng);
  const std::vector<float> bias = normal(s.c_out, 0.1f, rng);
  const std::vector<float> dy = normal(out_size, 1.0f, rng);

  WinogradWeights prepared;
  winograd_prepare(s.c_out, s.c_in, weight.data(), &prepared);
  std::vector<float> y(out_size), dw(weight.size()), db(s.c_out), dx(in_size);
  winograd_forward(s, x.data(), prepared, bias.data(), y.data());
  winograd_backward(s, x.data(), prepared, dy.data(), dw.data(), db.data(), dx.data());

  // Exact values: the direct convolution and its gradients in float64.
  auto at = [&](int b, int c, int ch, int yy, int xx) {
    return ((static_cast<size_t>(b) * ch + c) * s.h + yy) * s.w + xx;
  };
  std::vector<double> y64(out_size), dw64(dw.size(), 0), db64(s.c_out, 0), dx64(in_size, 0),
      db_mag(s.c_out, 0);
  for (int b = 0; b < s.n; ++b)
    for (int co = 0; co < s.c_out; ++co)
      for (int yy = 0; yy < s.h; ++yy)
        for (int xx = 0; xx < s.w; ++xx) {
          const size_t o = at(b, co, s.c_out, yy, xx);
          double sum = bias[co];
          db64[co] += dy[o];
          db_mag[co] += std::fabs(dy[o]);
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

  // Magnitudes: Winograd's computation on absolute values, tile by tile.
  const Abs bt = abs_of(kBt, false), b_ = abs_of(kBt, true), g = abs_of(kG, false),
            gt = abs_of(kG, true), at4 = abs_of(kAt, false), a = abs_of(kAt, true);
  const int th = (s.h + 3) / 4, tw = (s.w + 3) / 4;
  std::vector<std::vector<double>> u_abs(static_cast<size_t>(s.c_out) * s.c_in);  // 36 each
  for (size_t k = 0; k < u_abs.size(); ++k) {
    std::vector<double> w9(9);
    for (int t = 0; t < 9; ++t) w9[t] = std::fabs(weight[k * 9 + t]);
    u_abs[k] = lxr(g, w9, g);
  }
  std::vector<double> y_mag(out_size, 0), dw_mag(dw.size(), 0), dx_mag(in_size, 0);
  std::vector<std::vector<double>> du_abs(u_abs.size(), std::vector<double>(36, 0.0));
  for (int b = 0; b < s.n; ++b)
    for (int ty = 0; ty < th; ++ty)
      for (int tx = 0; tx < tw; ++tx) {
        std::vector<std::vector<double>> v_abs(s.c_in), dm_abs(s.c_out);
        for (int ci = 0; ci < s.c_in; ++ci) {
          std::vector<double> d(36, 0.0);
          for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 6; ++j) {
              const int yy = ty * 4 + i - 1, xx = tx * 4 + j - 1;
              if (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w)
                d[i * 6 + j] = std::fabs(x[at(b, ci, s.c_in, yy, xx)]);
            }
          v_abs[ci] = lxr(bt, d, bt);
        }
        for (int co = 0; co < s.c_out; ++co) {
          std::vector<double> gy(16, 0.0), m(36, 0.0);
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              const int yy = ty * 4 + i, xx = tx * 4 + j;
              if (yy < s.h && xx < s.w) gy[i * 4 + j] = std::fabs(dy[at(b, co, s.c_out, yy, xx)]);
            }
          dm_abs[co] = lxr(a, gy, a);
          for (int ci = 0; ci < s.c_in; ++ci)
            for (int e = 0; e < 36; ++e) {
              m[e] += u_abs[co * s.c_in + ci][e] * v_abs[ci][e];
              du_abs[co * s.c_in + ci][e] += dm_abs[co][e] * v_abs[ci][e];
            }
          const std::vector<double> yt = lxr(at4, m, at4);
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              const int yy = ty * 4 + i, xx = tx * 4 + j;
              if (yy < s.h && xx < s.w) y_mag[at(b, co, s.c_out, yy, xx)] = yt[i * 4 + j];
            }
        }
        for (int ci = 0; ci < s.c_in; ++ci) {
          std::vector<double> dv(36, 0.0);
          for (int co = 0; co < s.c_out; ++co)
            for (int e = 0; e < 36; ++e) dv[e] += u_abs[co * s.c_in + ci][e] * dm_abs[co][e];
          const std::vector<double> dd = lxr(b_, dv, b_);
          for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 6; ++j) {
              const int yy = ty * 4 + i - 1, xx = tx * 4 + j - 1;
              if (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w)
                dx_mag[at(b, ci, s.c_in, yy, xx)] += dd[i * 6 + j];
            }
        }
      }
  for (size_t k = 0; k < du_abs.size(); ++k) {
    const std::vector<double> g9 = lxr(gt, du_abs[k], gt);
    for (int t = 0; t < 9; ++t) dw_mag[k * 9 + t] = g9[t];
  }

  // Each element against γ(m) × its magnitude; the worst share of its bound is reported.
  const double tiles = static_cast<double>(s.n) * th * tw;
  auto check = [](const char* what, const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& mag, double bound_factor) {
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double bound = bound_factor * mag[i] + 1e-300;
      const double err = std::fabs(got[i] - want[i]);
      EXPECT_LE(err, bound) << what << "[" << i << "]: " << got[i] << " vs " << want[i];
      worst = std::max(worst, err / bound);
    }
    std::printf("%-3s worst share of its bound %.3f\n", what, worst);
  };
  std::vector<double> y_mag_b(out_size);
  for (size_t i = 0; i < out_size; ++i) y_mag_b[i] = y_mag[i] + std::fabs(bias[(i / hw) % s.c_out]);
  check("y", y, y64, y_mag_b, gamma(s.c_in + 41.0));
  check("dw", dw, dw64, dw_mag, gamma(tiles + 40));
  check("db", db, db64, db_mag, gamma(static_cast<double>(s.n) * hw));
  check("dx", dx, dx64, dx_mag, gamma(s.c_out + 44.0));
}

// Partial tiles (5 × 9), a 1 × 1 and a 2 × 3 map (most of the tile is padding), VGG16's 4 × 4
// and 14 × 14 pool4 maps with fewer channels.
INSTANTIATE_TEST_SUITE_P(Shapes, WinogradVsFloat64,
                         ::testing::Values(Case{{3, 5, 7, 5, 9}, "5x9"},
                                           Case{{2, 3, 2, 1, 1}, "1x1"},
                                           Case{{2, 4, 3, 2, 3}, "2x3"},
                                           Case{{4, 64, 32, 4, 4}, "4x4"},
                                           Case{{2, 32, 16, 14, 14}, "14x14"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Winograd, BitwiseSameForAnyThreadCountAndWithTheInputKept) {
  configure_blas_for_tbb();
  for (const Conv3x3Shape s : {Conv3x3Shape{40, 64, 32, 4, 4}, Conv3x3Shape{3, 32, 16, 14, 14}}) {
    std::mt19937 rng(11);
    const size_t hw = static_cast<size_t>(s.h) * s.w;
    const std::vector<float> x = normal(s.n * s.c_in * hw, 1.0f, rng);
    const std::vector<float> weight = normal(static_cast<size_t>(s.c_out) * s.c_in * 9, 0.1f, rng);
    const std::vector<float> bias = normal(s.c_out, 0.1f, rng);
    const std::vector<float> dy = normal(s.n * s.c_out * hw, 1.0f, rng);
    // keep: the backward pass takes the forward pass's input transform, and is handed zeros for
    // x to show that it reads the transform, not x.
    const std::vector<float> zeros(x.size(), 0.0f);
    auto run = [&](int threads, bool keep = false) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      WinogradWeights w;
      winograd_prepare(s.c_out, s.c_in, weight.data(), &w);
      std::vector<float> y(dy.size()), dw(weight.size()), db(s.c_out), dx(x.size());
      WinogradInput kept;
      winograd_forward(s, x.data(), w, bias.data(), y.data(), keep ? &kept : nullptr);
      if (keep) EXPECT_EQ(kept.v.size() * sizeof(float), winograd_input_bytes(s));
      winograd_backward(s, keep ? zeros.data() : x.data(), w, dy.data(), dw.data(), db.data(),
                        dx.data(), keep ? &kept : nullptr);
      y.insert(y.end(), w.u.begin(), w.u.end());
      y.insert(y.end(), dw.begin(), dw.end());
      y.insert(y.end(), db.begin(), db.end());
      y.insert(y.end(), dx.begin(), dx.end());
      return y;
    };
    const std::vector<float> one = run(1), two = run(2), three = run(3), kept = run(2, true);
    EXPECT_TRUE(one == two) << s.h << "x" << s.w;
    EXPECT_TRUE(one == three) << s.h << "x" << s.w;
    EXPECT_TRUE(one == kept) << s.h << "x" << s.w << ", the input transform kept";
  }
}

TEST(Winograd, RefusesBadShapesAndForeignWeights) {
  std::vector<float> weight(4 * 3 * 9, 0.5f), bias(4), x(2 * 3 * 16), y(2 * 4 * 16);
  WinogradWeights w;
  winograd_prepare(4, 3, weight.data(), &w);
  try {
    winograd_forward(Conv3x3Shape{2, 5, 4, 4, 4}, x.data(), w, bias.data(), y.data());
    FAIL() << "prepared weights of another shape were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("prepared weights are 4 × 3"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(winograd_forward(Conv3x3Shape{0, 3, 4, 4, 4}, x.data(), w, bias.data(), y.data()),
               Error);
  EXPECT_THROW(winograd_prepare(0, 3, weight.data(), &w), Error);
}

}  // namespace
}  // namespace vggcache
