// torchvision's ResNet-50 as extract's second backbone (issue #16), the parts callers outside
// extract/resnet50.cpp need without LibTorch: the feature size, the input normalisation and the
// state_dict that `random:SEED` stands for. The network itself is make_resnet50_net()
// (extract/feature_net.h).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "weights/pth_reader.h"

namespace vggcache {

// Floats per view: the global average pool of layer4's 2048 channels (torchvision's `fc` input).
constexpr uint32_t kResnet50Dim = 2048;

// The normalisation torchvision's ImageNet ResNet-50 weights (V1 and V2) were trained with:
// ImageNet's channel mean and standard deviation, the same as VGG16's (Preprocess's defaults in
// common/cache_meta.h), so a cache's view settings do not depend on the backbone.
constexpr std::array<double, 3> kResnet50Mean{0.485, 0.456, 0.406};
constexpr std::array<double, 3> kResnet50Std{0.229, 0.224, 0.225};

// The batch-norm epsilon of torchvision's BatchNorm2d layers (nn.BatchNorm2d's default).
constexpr double kResnet50BnEps = 1e-5;

// What `torch.manual_seed(seed); torchvision.models.resnet50()` holds (torchvision 0.14 on
// PyTorch 1.13's CPU generator), named as its state_dict names it, float32: every convolution,
// batch norm (weight, bias, running_mean, running_var; not num_batches_tracked) and fc.weight /
// fc.bias, whose draws come between the convolutions' default and final initialisation.
StateDict resnet50_random_state_dict(uint64_t seed);

}  // namespace vggcache
