// torchvision 0.14 / PIL 9.4 transforms, reimplemented so that a C++ run gives the same bytes as
// the Python reference. Every place where float32 vs float64 matters follows what torch/PIL do.
#include "extract/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/splitmix64.h"

namespace vggcache {

// torch.exp on a float32 CPU tensor runs SLEEF's expf_u10 (AVX2 + FMA), which differs from libm's
// expf in the last bit for ~9% of inputs. The aspect ratio feeds round(), so reproduce it: the
// same range reduction and polynomial, with fused multiply-adds.
float torch_expf(float d) {
  const float kRLn2 = 1.442695040888963407359924681001892137426645954152985934135449406931f;
  const float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187045e-06f;
  if (std::isnan(d)) return d;
  if (d < -104.0f) return 0.0f;
  if (d > 100.0f) return HUGE_VALF;
  float qf = std::nearbyint(d * kRLn2);
  float s = std::fma(qf, -kLn2Hi, d);
  s = std::fma(qf, -kLn2Lo, s);
  float u = 0.000198527617612853646278381f;
  u = std::fma(u, s, 0.00139304355252534151077271f);
  u = std::fma(u, s, 0.00833336077630519866943359f);
  u = std::fma(u, s, 0.0416664853692054748535156f);
  u = std::fma(u, s, 0.166666671633720397949219f);
  u = std::fma(u, s, 0.5f);
  u = 1.0f + std::fma(s * s, u, s);
  return std::ldexp(u, static_cast<int>(qf));
}

// torch.log(torch.tensor(ratio)) in float32. Correctly rounded here; torch's SLEEF logf_u10
// agrees for the default ratios (3/4, 4/3) and for every ratio the parity test uses.
float torch_logf(float x) {
  return static_cast<float>(std::log(static_cast<double>(x)));
}

SeededCropDraws::SeededCropDraws(uint64_t seed, uint32_t image, uint32_t crop) {
  // Key the stream by (seed, image, crop) only: each output is splitmix64(key + k * gamma), so
  // nothing outside these three numbers can change the draws.
  state_ = splitmix64(splitmix64(splitmix64(seed) ^ image) ^ (uint64_t(crop) << 1 | 1));
}

uint64_t SeededCropDraws::next_u64() {
  return mix64(state_ += kSplitMix64Gamma);
}

float SeededCropDraws::uniform(float lo, float hi) {
  // torch's uniform_ for float: 24 random bits scaled to [0, 1), then x * (hi - lo) + lo in float.
  float x = static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f);
  return x * (hi - lo) + lo;
}

int64_t SeededCropDraws::randint(int64_t lo, int64_t hi) {
  if (hi <= lo) throw Error(ErrorKind::kInvalidArgument, "randint: empty range");
  // Unbiased: reject the top partial block of the 2^64 range (torch itself uses a plain modulo).
  uint64_t range = static_cast<uint64_t>(hi - lo);
  uint64_t limit = (0 - range) % range;  // 2^64 mod range
  uint64_t r;
  do {
    r = next_u64();
  } while (r < limit);
  return lo + static_cast<int64_t>(r % range);
}

bool SeededCropDraws::bernoulli(double p) {
  float x = static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f);  // torch.rand(1)
  return static_cast<double>(x) < p;
}

CropBox sample_resized_crop(int width, int height, const Preprocess& p, CropDraws& draws) {
  if (width <= 0 || height <= 0) {
    throw Error(ErrorKind::kInvalidArgument, "sample_resized_crop: empty image");
  }
  // torch refuses uniform_(lo, hi) with lo > hi; a non-positive ratio has no logarithm.
  if (!(p.scale_min <= p.scale_max) || !(p.ratio_min <= p.ratio_max) || !(p.ratio_min > 0)) {
    throw Error(ErrorKind::kInvalidArgument,
                "RandomResizedCrop needs scale_min <= scale_max and 0 < ratio_min <= ratio_max");
  }
  const double area = static_cast<double>(height) * width;  // a Python int, exact in a double
  const float scale_lo = static_cast<float>(p.scale_min),
              scale_hi = static_cast<float>(p.scale_max);
  const float log_lo = torch_logf(static_cast<float>(p.ratio_min));
  const float log_hi = torch_logf(static_cast<float>(p.ratio_max));
  CropBox box;
  for (int attempt = 0; attempt < 10; ++attempt) {
    // .item() turns each float32 into a Python float: the rest is float64 arithmetic.
    double target_area = area * static_cast<double>(draws.uniform(scale_lo, scale_hi));
    double aspect = static_cast<double>(torch_expf(draws.uniform(log_lo, log_hi)));
    // Python's round() is round-half-even, which nearbyint gives in the default rounding mode.
    double wf = std::nearbyint(std::sqrt(target_area * aspect));
    double hf = std::nearbyint(std::sqrt(target_area / aspect));
    if (wf > 0 && wf <= width && hf > 0 && hf <= height) {
      int w = static_cast<int>(wf), h = static_cast<int>(hf);
      box.y = static_cast<int32_t>(draws.randint(0, height - h + 1));
      box.x = static_cast<int32_t>(draws.randint(0, width - w + 1));
      box.w = w;
      box.h = h;
      return box;
    }
  }
  // Central crop fallback; ratio bounds are the Python floats here, not the float32 tensor.
  const double in_ratio = static_cast<double>(width) / height;
  const double rmin = std::min(p.ratio_min, p.ratio_max), rmax = std::max(p.ratio_min, p.ratio_max);
  int w = width, h = height;
  if (in_ratio < rmin) {
    h = static_cast<int>(std::nearbyint(w / rmin));
  } else if (in_ratio > rmax) {
    w = static_cast<int>(std::nearbyint(h * rmax));
  }
  box.w = w;
  box.h = h;
  box.y = (height - h) / 2;  // both >= 0 here, so C++ division floors like Python's //
  box.x = (width - w) / 2;
  return box;
}

CropBox view_box(int width, int height, const Preprocess& p, uint32_t image, uint32_t crop) {
  if (p.eval) {
    CropBox box;
    box.w = width;
    box.h = height;
    return box;
  }
  SeededCropDraws draws(p.seed, image, crop);
  CropBox box = sample_resized_crop(width, height, p, draws);
  // Compose([RandomResizedCrop, RandomHorizontalFlip]): the flip draw comes after the crop's.
  if (p.flip) box.flipped = draws.bernoulli(0.5);
  return box;
}

namespace {

// PIL keeps 8-bit resampling in fixed point: coefficients scaled by 2^22, accumulators start at
// 2^21 (rounding), results are (acc >> 22) clamped to 0..255.
constexpr int kPrecisionBits = 32 - 8 - 2;

// Coefficients for resampling `in_size` samples to `out_size` with PIL's bilinear (triangle)
// filter, support widened by the downscale factor (antialiasing). `first[i]`, `count[i]` give the
// window of output i; its weights are weights[i * ksize .. + count[i]].
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;
};

void precompute(int in_size, int out_size, Coeffs* c) {
  // PIL's box is (0, in_size) in float; in1 - in0 is a float subtraction, exact for image sizes.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  c->ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c->first.resize(out_size);
  c->count.resize(out_size);
  c->weights.assign(size_t(out_size) * c->ksize, 0);
  std::vector<double> k(c->ksize);
  const double inv = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    // PIL rounds with (int)(v + 0.5), i.e. truncation toward zero after adding a half.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::fabs((x + xmin - center + 0.5) * inv);
      double w = t < 1.0 ? 1.0 - t : 0.0;
      k[x] = w;
      total += w;
    }
    int32_t* out = &c->weights[size_t(xx) * c->ksize];
    for (int x = 0; x < xmax; ++x) {
      double w = total != 0.0 ? k[x] / total : k[x];
      out[x] = static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits)
                                          : 0.5 + w * (1 << kPrecisionBits));
    }
    c->first[xx] = xmin;
    c->count[xx] = xmax;
  }
}

inline uint8_t clip8(int32_t acc) {
  int32_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

void crop_resize_bilinear(const RgbImage& src, const CropBox& box, int out_w, int out_h,
                          uint8_t* out) {
  if (out_w <= 0 || out_h <= 0) {
    throw Error(ErrorKind::kInvalidArgument, "crop_resize_bilinear: empty output size");
  }
  if (box.w <= 0 || box.h <= 0 || box.x < 0 || box.y < 0 || box.x + box.w > src.width ||
      box.y + box.h > src.height ||
      src.pixels.size() != size_t(src.width) * size_t(src.height) * 3) {
    throw Error(ErrorKind::kInvalidArgument,
                "crop_resize_bilinear: box " + std::to_string(box.x) + "," + std::to_string(box.y) +
                    " " + std::to_string(box.w) + "x" + std::to_string(box.h) + " outside the " +
                    std::to_string(src.width) + "x" + std::to_string(src.height) + " image");
  }
  const size_t stride = size_t(src.width) * 3;
  // torchvision crops first (an integral PIL crop), then resizes the crop with box = whole crop;
  // so windows are clamped to the crop, not to the source image.
  const uint8_t* base = src.pixels.data() + size_t(box.y) * stride + size_t(box.x) * 3;
  const bool need_h = out_w != box.w;
  const bool need_v = out_h != box.h;

  if (!need_h && !need_v) {
    for (int y = 0; y < out_h; ++y)
      std::memcpy(out + size_t(y) * out_w * 3, base + y * stride, size_t(out_w) * 3);
  } else {
    thread_local Coeffs ch, cv;
    thread_local std::vector<uint8_t> tmp;
    precompute(box.h, out_h, &cv);
    // Only the source rows the vertical pass reads are resampled horizontally (as PIL does).
    const int row0 = cv.first[0];
    const int row1 = cv.first[out_h - 1] + cv.count[out_h - 1];
    const uint8_t* vin = base;  // input of the vertical pass
    size_t vin_stride = stride;
    int vin_row0 = 0;  // row of vin that is crop row 0
    if (need_h) {
      precompute(box.w, out_w, &ch);
      const int rows = row1 - row0;
      uint8_t* dst_base = need_v ? nullptr : out;
      if (need_v) {
        tmp.resize(size_t(rows) * out_w * 3);
        dst_base = tmp.data();
      }
      for (int r = 0; r < rows; ++r) {
        const uint8_t* in = base + size_t(r + row0) * stride;
        uint8_t* dst = dst_base + size_t(r) * out_w * 3;
        for (int xx = 0; xx < out_w; ++xx) {
          const int32_t* k = &ch.weights[size_t(xx) * ch.ksize];
          const uint8_t* p = in + size_t(ch.first[xx]) * 3;
          int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
          for (int x = 0; x < ch.count[xx]; ++x, p += 3) {
            s0 += p[0] * k[x];
            s1 += p[1] * k[x];
            s2 += p[2] * k[x];
          }
          dst[xx * 3 + 0] = clip8(s0);
          dst[xx * 3 + 1] = clip8(s1);
          dst[xx * 3 + 2] = clip8(s2);
        }
      }
      vin = tmp.data();
      vin_stride = size_t(out_w) * 3;
      vin_row0 = row0;
    }
    if (need_v) {
      const int width3 = out_w * 3;
      for (int yy = 0; yy < out_h; ++yy) {
        const int32_t* k = &cv.weights[size_t(yy) * cv.ksize];
        const uint8_t* col = vin + size_t(cv.first[yy] - vin_row0) * vin_stride;
        uint8_t* dst = out + size_t(yy) * width3;
        for (int xx = 0; xx < width3; ++xx) {
          int32_t s = 1 << (kPrecisionBits - 1);
          const uint8_t* p = col + xx;
          for (int y = 0; y < cv.count[yy]; ++y, p += vin_stride) s += *p * k[y];
          dst[xx] = clip8(s);
        }
      }
    }
  }

  if (box.flipped) {
    for (int y = 0; y < out_h; ++y) {
      uint8_t* row = out + size_t(y) * out_w * 3;
      for (int a = 0, b = out_w - 1; a < b; ++a, --b) {
        for (int c = 0; c < 3; ++c) std::swap(row[a * 3 + c], row[b * 3 + c]);
      }
    }
  }
}

void to_normalized_chw(const uint8_t* rgb, int w, int h, const Preprocess& p, float* out) {
  if (p.mean.size() != 3 || p.std.size() != 3) {
    throw Error(ErrorKind::kInvalidArgument, "normalisation needs 3 mean and 3 std values");
  }
  const size_t plane = size_t(w) * h;
  for (int c = 0; c < 3; ++c) {
    // torchvision: ToTensor divides by 255 in float32; Normalize does sub_(mean).div_(std) with
    // float32 mean/std tensors, two separately rounded float32 operations.
    const float mean = static_cast<float>(p.mean[c]);
    const float sd = static_cast<float>(p.std[c]);
    if (sd == 0.0f) throw Error(ErrorKind::kInvalidArgument, "normalisation std is zero");
    float lut[256];
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(v) / 255.0f;
      lut[v] = (x - mean) / sd;
    }
    float* o = out + c * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = lut[rgb[i * 3 + c]];
  }
}

}  // namespace vggcache
