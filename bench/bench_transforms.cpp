// bench_transforms: the rate of extract's preprocessing steps on one 64×64 image (crop draws,
// bilinear crop+resize with flips, normalisation to CHW floats), to set beside the forward pass's
// (bench_forward): preprocessing must stay a small share of extraction.
//   bench_transforms [N]   (N views, default 20000)
// Prints "[ speed ] per second: ..." to stdout.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "extract/transforms.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: bench_transforms [N > 0]\n");
    return 2;
  }
  RgbImage img;
  img.width = img.height = 64;
  img.pixels.resize(64 * 64 * 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 2654435761u >> 24);
  Preprocess p;
  p.flip = true;
  std::vector<uint8_t> out(64 * 64 * 3);
  std::vector<float> chw(3 * 64 * 64);
  std::vector<CropBox> boxes;
  boxes.reserve(n);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) boxes.push_back(view_box(64, 64, p, i / 10, i % 10));
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) crop_resize_bilinear(img, boxes[i], 64, 64, out.data());
  auto t2 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) to_normalized_chw(out.data(), 64, 64, p, chw.data());
  auto t3 = std::chrono::steady_clock::now();
  auto rate = [&](auto a, auto b) { return n / std::chrono::duration<double>(b - a).count(); };
  // chw[5] is printed through a comparison so the normalisation loop is not optimised away.
  std::printf(
      "[ speed ] per second: %.0f crop draws, %.0f crop+resize to 64x64 (+flip), "
      "%.0f normalisations (%d)\n",
      rate(t0, t1), rate(t1, t2), rate(t2, t3), int(chw[5] > 0));
  return 0;
}
