// The torchvision 0.14 transforms the pipeline reproduces, without LibTorch:
// RandomResizedCrop (get_params + PIL antialiased bilinear resize), RandomHorizontalFlip,
// Resize((s, s)), ToTensor and Normalize.
#pragma once
#include <cstdint>

#include "common/cache_meta.h"
#include "common/record.h"
#include "extract/image.h"

namespace vggcache {

// Source of the random draws RandomResizedCrop.get_params and RandomHorizontalFlip make, in the
// order torchvision makes them. Tests replay torch's own draws through it.
class CropDraws {
 public:
  virtual ~CropDraws() = default;
  // torch.empty(1).uniform_(lo, hi).item(): a float32 in [lo, hi) (lo/hi given as float32)
  virtual float uniform(float lo, float hi) = 0;
  // torch.randint(lo, hi, (1,)).item(): an integer in [lo, hi)
  virtual int64_t randint(int64_t lo, int64_t hi) = 0;
  // torch.rand(1) < p for RandomHorizontalFlip
  virtual bool bernoulli(double p) = 0;
};

// Deterministic draws for crop `crop` of image `image` under `seed`: a counter-based generator, so
// the result never depends on threads, batch size or run order.
class SeededCropDraws : public CropDraws {
 public:
  SeededCropDraws(uint64_t seed, uint32_t image, uint32_t crop);
  float uniform(float lo, float hi) override;
  int64_t randint(int64_t lo, int64_t hi) override;
  bool bernoulli(double p) override;

 private:
  uint64_t next_u64();
  uint64_t state_;
};

// RandomResizedCrop.get_params exactly as torchvision 0.14 (10 attempts, round-half-to-even, then
// the centre-crop fallback with ratio clamping). Returns the box (x = left = j, y = top = i).
CropBox sample_resized_crop(int width, int height, const Preprocess& p, CropDraws& draws);

// The view for record (image, crop): train = sampled crop (+ flip draw when p.flip),
// eval = the whole image.
CropBox view_box(int width, int height, const Preprocess& p, uint32_t image, uint32_t crop);

// Crops `box` from `src`, resizes to out_w × out_h exactly as PIL's Image.resize(BILINEAR) with
// antialiasing (PIL >= 7 "reduce"-free path; support scaled by the downscale factor, uint8
// rounding per pass, horizontal pass first), then flips if box.flipped. `out` is out_h×out_w×3.
void crop_resize_bilinear(const RgbImage& src, const CropBox& box, int out_w, int out_h,
                          uint8_t* out);

// float32 exp/log as torch 1.13 computes them on the CPU (exp: SLEEF expf_u10 with FMA,
// bit-exact; log: correctly rounded, which matches torch for the ratios in use). Exposed for tests.
float torch_expf(float x);
float torch_logf(float x);

// ToTensor + Normalize: writes 3 × h × w float32 (CHW) into `out`.
void to_normalized_chw(const uint8_t* rgb, int w, int h, const Preprocess& p, float* out);

}  // namespace vggcache
