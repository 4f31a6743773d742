// A stand-in for the pretrained VGG16 file in tests that need the weights as a file (fine-tuning
// reads block 5 from it; LibTorch's random:SEED weights exist only inside extract).
#pragma once
#include <fmt/format.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "weights/pth_writer.h"

namespace vggcache::testing {

// VGG16's `features` with torchvision's init (kaiming_normal_, fan_out, ReLU gain) from `seed`,
// biases small and nonzero so that loading them matters, written as a zip-format state_dict.
inline void write_random_vgg16(const std::string& path, uint32_t seed) {
  const int convs[13][3] = {{0, 3, 64},     {2, 64, 64},    {5, 64, 128},   {7, 128, 128},
                            {10, 128, 256}, {12, 256, 256}, {14, 256, 256}, {17, 256, 512},
                            {19, 512, 512}, {21, 512, 512}, {24, 512, 512}, {26, 512, 512},
                            {28, 512, 512}};
  std::mt19937 rng(seed);
  OrderedStateDict sd;
  for (const auto& c : convs) {
    const int idx = c[0], in = c[1], out = c[2];
    std::normal_distribution<float> w(0.0f, std::sqrt(2.0f / (9.0f * out))), b(0.0f, 0.01f);
    TensorData wt{{out, in, 3, 3}, std::vector<float>(static_cast<size_t>(out) * in * 9)};
    for (float& v : wt.values) v = w(rng);
    TensorData bt{{out}, std::vector<float>(out)};
    for (float& v : bt.values) v = b(rng);
    sd.emplace_back(fmt::format("features.{}.weight", idx), std::move(wt));
    sd.emplace_back(fmt::format("features.{}.bias", idx), std::move(bt));
  }
  write_state_dict(path, sd);
}

}  // namespace vggcache::testing
