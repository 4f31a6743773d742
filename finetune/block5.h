// VGG16's block 5 from pool4 maps to the head's input, for fine-tuning on the CPU:
//   conv5_1 → ReLU → conv5_2 → ReLU → conv5_3 → ReLU → MaxPool2d(2, 2) → AdaptiveAvgPool2d((7, 7))
//   → flatten,
// torchvision's vgg16().features[24:31] + avgpool, in float32 (finetune/conv3x3.h does the convs).
//
// Shapes: the input x is n × 512 × h × w (NCHW; VGG16's pool4 output for s-pixel crops has
// h = w = s/16: 4 × 4 at 64 px, 14 × 14 at 224 px), h, w ≥ 2; the output is n × 25088 (512 × 7 × 7,
// row-major, as torch.flatten(1) orders it).
//
// Thread-safety: forward() and backward() are const and keep everything a backward pass needs in
// a Block5Activations the caller owns, so threads may run batches on one Block5 at once, each with
// its own activations, as long as nobody calls set_layer() meanwhile. Both run TBB tasks inside,
// and their results are bitwise the same for any thread count (see conv3x3.h).
//
// Errors: bad shapes, missing or mis-sized weights throw Error with a message saying which.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "finetune/winograd.h"

namespace vggcache {

constexpr int kBlock5Channels = 512;
constexpr int kBlock5OutputDim = kBlock5Channels * 7 * 7;  // 25088

// How block 5's convolutions are computed.
enum class Block5Conv {
  kDirect,    // tap-wise GEMMs (finetune/conv3x3.h): the rounding of a 9·512-term sum
  kWinograd,  // F(4×4, 3×3) (finetune/winograd.h): 2.8× fewer multiplications at 4 × 4 maps,
              //   rounding up to ~10× the direct one's (still ~1e-5 of the largest output)
  kAuto,      // Winograd where the map is at least 4 × 4 (64-px crops and up), else direct
};
const char* block5_conv_name(Block5Conv c);  // "direct", "winograd", "auto"
// Throws Error(kInvalidArgument) naming the accepted values.
Block5Conv block5_conv_from_name(const std::string& name);
// Whether `conv` runs Winograd on h × w maps.
bool block5_uses_winograd(Block5Conv conv, int h, int w);

// The cells of a ph × pw pool5 plane (row-major indices) that each of the 49 outputs of
// AdaptiveAvgPool2d((7, 7)) averages, in the order forward() sums them.
std::vector<std::vector<int>> block5_avgpool_cells(int ph, int pw);

// What forward() leaves for backward(), per batch: 4 · n × 512 × h × w floats (the input and
// three ReLU outputs) and pool5's choices, 9 MB for 64 crops at 64 px, 109 MB at 224 px.
// Public so tests and callers can inspect it; only forward() should fill it.
struct Block5Activations {
  int n = 0, h = 0, w = 0;  // the input's shape (× 512 channels)
  std::vector<float> x;     // the input, n × 512 × h × w (conv5_1's weight gradient needs it)
  // Each conv's output after its ReLU, n × 512 × h × w: the next conv's input, and > 0 exactly
  // where the ReLU passed the gradient (as PyTorch's ReLU backward decides it).
  std::array<std::vector<float>, 3> relu;
  // pool5's choice per output, n × 512 × ⌊h/2⌋ × ⌊w/2⌋: the index within the h × w plane of the
  // first maximum of its 2 × 2 window in row-major order (PyTorch's choice on ties).
  std::vector<int32_t> pool_argmax;
  // With Winograd: the three layers' transformed weights (36 × 512 × 512 floats each, 38 MB),
  // prepared once per batch for both passes; empty with the direct convolution.
  bool winograd = false;
  std::array<WinogradWeights, 3> prepared;
  // With Winograd, each layer's input transform for the backward pass, kept while it takes at
  // most kKeepInputBytes (7.4 MB a layer for 100 crops at 64 px; 118 MB at 224 px is recomputed
  // instead); else empty.
  static constexpr size_t kKeepInputBytes = 32u << 20;
  std::array<WinogradInput, 3> inputs;
};

// Gradients for the six tensors, in the state_dict's layout: weight[i] is
// features.{24,26,28}.weight (512 × 512 × 3 × 3), bias[i] features.{24,26,28}.bias (512).
struct Block5Gradients {
  std::array<std::vector<float>, 3> weight;
  std::array<std::vector<float>, 3> bias;
};

class Block5 {
 public:
  // The state_dict names of layer i's tensors (i = 0, 1, 2: conv5_1..conv5_3), e.g.
  // "features.24.weight".
  static std::string weight_name(int layer);
  static std::string bias_name(int layer);

  // Layer i's weight (512 × 512 × 3 × 3 floats) and bias (512). Throws on a wrong size.
  void set_layer(int layer, std::vector<float> weight, std::vector<float> bias);
  const std::vector<float>& weight(int layer) const { return weight_.at(layer); }
  const std::vector<float>& bias(int layer) const { return bias_.at(layer); }
  // The same values for an optimizer to update in place (set_layer() fixed their sizes; an unset
  // layer gives an empty vector's data). Not while another thread runs forward() or backward().
  float* weight_data(int layer) { return weight_.at(layer).data(); }
  float* bias_data(int layer) { return bias_.at(layer).data(); }

  // out (n × 25088) from x (n × 512 × h × w, x.size() must match); fills *act for backward(),
  // which computes with the same convolution. The direct one by default: evaluation, predict and
  // export keep its tighter rounding; the fine-tuning step passes its own choice.
  std::vector<float> forward(const std::vector<float>& x, int n, int h, int w,
                             Block5Activations* act, Block5Conv conv = Block5Conv::kDirect) const;

  // The gradients of a loss from d_out = ∂loss/∂out (n × 25088) for the batch act came from. When
  // d_x is not null it receives ∂loss/∂x (n × 512 × h × w); pool4 inputs do not need it.
  // `recycled`: earlier gradients whose buffers are reused (a training step's 28 MB would
  // otherwise be allocated and zeroed every step); their values are overwritten.
  Block5Gradients backward(const Block5Activations& act, const std::vector<float>& d_out,
                           std::vector<float>* d_x = nullptr, Block5Gradients recycled = {}) const;

  // The same two passes stopped at pool5: forward_pool5() gives the pool5 map, n × 512 × ⌊h/2⌋ ×
  // ⌊w/2⌋, that forward() averages into 7 × 7 windows (block5_avgpool_cells()), and
  // backward_pool5() takes ∂loss/∂(that map). For a head whose first layer folds the average
  // pool in (FineTuner at 64 px: 2048 inputs instead of 25088).
  std::vector<float> forward_pool5(const std::vector<float>& x, int n, int h, int w,
                                   Block5Activations* act,
                                   Block5Conv conv = Block5Conv::kDirect) const;
  Block5Gradients backward_pool5(const Block5Activations& act, std::vector<float> d_pool5,
                                 std::vector<float>* d_x = nullptr,
                                 Block5Gradients recycled = {}) const;

 private:
  void check_ready() const;
  std::array<std::vector<float>, 3> weight_;
  std::array<std::vector<float>, 3> bias_;
};

}  // namespace vggcache
