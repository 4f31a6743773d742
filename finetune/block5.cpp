#include "finetune/block5.h"

#include <algorithm>
#include <utility>

#include "common/error.h"
#include "finetune/conv3x3.h"

namespace vggcache {

namespace {

constexpr int kC = kBlock5Channels;
constexpr size_t kWeightSize = static_cast<size_t>(kC) * kC * 9;
constexpr int kOut = 7;  // AdaptiveAvgPool2d((7, 7))

// PyTorch's adaptive pooling window for output o of kOut over a length l: [⌊o·l/7⌋, ⌈(o+1)·l/7⌉).
// Windows overlap when l is not a multiple of 7 and repeat cells when l < 7.
int window_begin(int o, int l) {
  return o * l / kOut;
}
int window_end(int o, int l) {
  return ((o + 1) * l + kOut - 1) / kOut;
}

std::string shape_text(int n, int h, int w) {
  return std::to_string(n) + " × 512 × " + std::to_string(h) + " × " + std::to_string(w);
}

void check_layer_index(int layer) {
  if (layer < 0 || layer > 2)
    throw Error(ErrorKind::kInvalidArgument,
                "block 5: layer " + std::to_string(layer) + " does not exist (0, 1 or 2)");
}

void relu_in_place(std::vector<float>& v) {
  for (float& f : v) f = f > 0.0f ? f : 0.0f;
}

// d ← d where the ReLU's output is positive, 0 elsewhere.
void relu_backward_in_place(const std::vector<float>& out, std::vector<float>& d) {
  for (size_t i = 0; i < d.size(); ++i)
    if (!(out[i] > 0.0f)) d[i] = 0.0f;
}

// Throws unless `act` is what forward() leaves for a batch (backward's input).
void check_activations(const Block5Activations& act) {
  const int n = act.n, h = act.h, w = act.w;
  const size_t size = static_cast<size_t>(n) * kC * h * w;
  const size_t pplane = static_cast<size_t>(h / 2) * (w / 2);
  if (n < 1 || h < 2 || w < 2 || act.x.size() != size || act.relu[0].size() != size ||
      act.relu[1].size() != size || act.relu[2].size() != size ||
      act.pool_argmax.size() != static_cast<size_t>(n) * kC * pplane)
    throw Error(
        ErrorKind::kInvalidArgument,
        "block 5: the activations do not come from forward() (shape " + shape_text(n, h, w) + ")");
}

}  // namespace

const char* block5_conv_name(Block5Conv c) {
  switch (c) {
    case Block5Conv::kDirect:
      return "direct";
    case Block5Conv::kWinograd:
      return "winograd";
    case Block5Conv::kAuto:
      return "auto";
  }
  return "?";
}

Block5Conv block5_conv_from_name(const std::string& name) {
  for (Block5Conv c : {Block5Conv::kDirect, Block5Conv::kWinograd, Block5Conv::kAuto})
    if (name == block5_conv_name(c)) return c;
  throw Error(ErrorKind::kInvalidArgument,
              "block 5 convolution '" + name + "': expected auto, direct or winograd");
}

std::vector<std::vector<int>> block5_avgpool_cells(int ph, int pw) {
  std::vector<std::vector<int>> cells(kOut * kOut);
  for (int oy = 0; oy < kOut; ++oy)
    for (int ox = 0; ox < kOut; ++ox)
      for (int y = window_begin(oy, ph); y < window_end(oy, ph); ++y)
        for (int x = window_begin(ox, pw); x < window_end(ox, pw); ++x)
          cells[oy * kOut + ox].push_back(y * pw + x);
  return cells;
}

bool block5_uses_winograd(Block5Conv conv, int h, int w) {
  return conv == Block5Conv::kWinograd || (conv == Block5Conv::kAuto && h >= 4 && w >= 4);
}

std::string Block5::weight_name(int layer) {
  check_layer_index(layer);
  return "features." + std::to_string(24 + 2 * layer) + ".weight";
}

std::string Block5::bias_name(int layer) {
  check_layer_index(layer);
  return "features." + std::to_string(24 + 2 * layer) + ".bias";
}

void Block5::set_layer(int layer, std::vector<float> weight, std::vector<float> bias) {
  check_layer_index(layer);
  if (weight.size() != kWeightSize)
    throw Error(ErrorKind::kMismatch, "block 5: " + weight_name(layer) + " has " +
                                          std::to_string(weight.size()) + " values, expected " +
                                          std::to_string(kWeightSize) + " (512 × 512 × 3 × 3)");
  if (bias.size() != static_cast<size_t>(kC))
    throw Error(ErrorKind::kMismatch, "block 5: " + bias_name(layer) + " has " +
                                          std::to_string(bias.size()) + " values, expected 512");
  weight_[layer] = std::move(weight);
  bias_[layer] = std::move(bias);
}

void Block5::check_ready() const {
  for (int i = 0; i < 3; ++i)
    if (weight_[i].empty())
      throw Error(ErrorKind::kInvalidArgument,
                  "block 5: " + weight_name(i) + " was never set (set_layer)");
}

std::vector<float> Block5::forward_pool5(const std::vector<float>& x, int n, int h, int w,
                                         Block5Activations* act, Block5Conv conv) const {
  check_ready();
  if (n < 1 || h < 2 || w < 2)
    throw Error(ErrorKind::kInvalidArgument,
                "block 5: input " + shape_text(n, h, w) +
                    " is too small (n ≥ 1; h, w ≥ 2 for pool5's 2 × 2 window)");
  const size_t plane = static_cast<size_t>(h) * w, size = static_cast<size_t>(n) * kC * plane;
  if (x.size() != size)
    throw Error(ErrorKind::kMismatch, "block 5: input has " + std::to_string(x.size()) +
                                          " values, expected " + shape_text(n, h, w) + " = " +
                                          std::to_string(size));
  act->n = n;
  act->h = h;
  act->w = w;
  act->x = x;
  const Conv3x3Shape shape{n, kC, kC, h, w};
  const float* in = act->x.data();
  act->winograd = block5_uses_winograd(conv, h, w);
  for (int i = 0; i < 3; ++i) {
    act->relu[i].resize(size);
    if (act->winograd) {
      winograd_prepare(kC, kC, weight_[i].data(), &act->prepared[i]);
      const bool keep = winograd_input_bytes(shape) <= Block5Activations::kKeepInputBytes;
      if (!keep) act->inputs[i] = WinogradInput();
      winograd_forward(shape, in, act->prepared[i], bias_[i].data(), act->relu[i].data(),
                       keep ? &act->inputs[i] : nullptr);
    } else {
      act->prepared[i] = WinogradWeights();
      act->inputs[i] = WinogradInput();
      conv3x3_forward(shape, in, weight_[i].data(), bias_[i].data(), act->relu[i].data());
    }
    relu_in_place(act->relu[i]);
    in = act->relu[i].data();
  }

  const int ph = h / 2, pw = w / 2;  // MaxPool2d floors: an odd last row or column is dropped
  const size_t pplane = static_cast<size_t>(ph) * pw;
  std::vector<float> pooled(static_cast<size_t>(n) * kC * pplane);
  act->pool_argmax.resize(pooled.size());
  for (size_t c = 0; c < static_cast<size_t>(n) * kC; ++c) {
    const float* src = in + c * plane;
    for (int y = 0; y < ph; ++y)
      for (int xx = 0; xx < pw; ++xx) {
        int best = 2 * y * w + 2 * xx;
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx) {
            const int at = (2 * y + dy) * w + 2 * xx + dx;
            if (src[at] > src[best]) best = at;
          }
        pooled[c * pplane + y * pw + xx] = src[best];
        act->pool_argmax[c * pplane + y * pw + xx] = best;
      }
  }
  return pooled;
}

std::vector<float> Block5::forward(const std::vector<float>& x, int n, int h, int w,
                                   Block5Activations* act, Block5Conv conv) const {
  const std::vector<float> pooled = forward_pool5(x, n, h, w, act, conv);
  const int ph = h / 2, pw = w / 2;
  const size_t pplane = static_cast<size_t>(ph) * pw;
  std::vector<float> out(static_cast<size_t>(n) * kBlock5OutputDim);
  for (size_t c = 0; c < static_cast<size_t>(n) * kC; ++c) {
    const float* src = pooled.data() + c * pplane;
    for (int oy = 0; oy < kOut; ++oy)
      for (int ox = 0; ox < kOut; ++ox) {
        const int y0 = window_begin(oy, ph), y1 = window_end(oy, ph);
        const int x0 = window_begin(ox, pw), x1 = window_end(ox, pw);
        float sum = 0.0f;
        for (int y = y0; y < y1; ++y)
          for (int xx = x0; xx < x1; ++xx) sum += src[y * pw + xx];
        out[c * kOut * kOut + oy * kOut + ox] = sum / static_cast<float>((y1 - y0) * (x1 - x0));
      }
  }
  return out;
}

Block5Gradients Block5::backward(const Block5Activations& act, const std::vector<float>& d_out,
                                 std::vector<float>* d_x, Block5Gradients recycled) const {
  check_ready();
  check_activations(act);
  const int n = act.n, ph = act.h / 2, pw = act.w / 2;
  const size_t pplane = static_cast<size_t>(ph) * pw;
  if (d_out.size() != static_cast<size_t>(n) * kBlock5OutputDim)
    throw Error(ErrorKind::kMismatch, "block 5: output gradient has " +
                                          std::to_string(d_out.size()) + " values, expected " +
                                          std::to_string(n) + " × 25088");

  // Adaptive average pool: each output's gradient spreads evenly over its window.
  std::vector<float> d_pooled(static_cast<size_t>(n) * kC * pplane, 0.0f);
  for (size_t c = 0; c < static_cast<size_t>(n) * kC; ++c) {
    float* dp = d_pooled.data() + c * pplane;
    const float* g = d_out.data() + c * kOut * kOut;
    for (int oy = 0; oy < kOut; ++oy)
      for (int ox = 0; ox < kOut; ++ox) {
        const int y0 = window_begin(oy, ph), y1 = window_end(oy, ph);
        const int x0 = window_begin(ox, pw), x1 = window_end(ox, pw);
        const float share = g[oy * kOut + ox] / static_cast<float>((y1 - y0) * (x1 - x0));
        for (int y = y0; y < y1; ++y)
          for (int xx = x0; xx < x1; ++xx) dp[y * pw + xx] += share;
      }
  }
  return backward_pool5(act, std::move(d_pooled), d_x, std::move(recycled));
}

Block5Gradients Block5::backward_pool5(const Block5Activations& act, std::vector<float> d_pool5,
                                       std::vector<float>* d_x, Block5Gradients recycled) const {
  check_ready();
  check_activations(act);
  const int n = act.n, h = act.h, w = act.w;
  const size_t plane = static_cast<size_t>(h) * w, size = static_cast<size_t>(n) * kC * plane;
  const size_t pplane = static_cast<size_t>(h / 2) * (w / 2);
  if (d_pool5.size() != static_cast<size_t>(n) * kC * pplane)
    throw Error(ErrorKind::kMismatch, "block 5: pool5 gradient has " +
                                          std::to_string(d_pool5.size()) + " values, expected " +
                                          std::to_string(n * kC * pplane));
  // pool5: each pooled cell's gradient goes to the one input it picked (2 × 2 windows are
  // disjoint).
  std::vector<float> d(size, 0.0f);
  for (size_t c = 0; c < static_cast<size_t>(n) * kC; ++c) {
    float* dst = d.data() + c * plane;
    const int32_t* pick = act.pool_argmax.data() + c * pplane;
    const float* dp = d_pool5.data() + c * pplane;
    for (size_t p = 0; p < pplane; ++p) dst[pick[p]] = dp[p];
  }

  Block5Gradients grads = std::move(recycled);
  const Conv3x3Shape shape{n, kC, kC, h, w};
  for (int i = 2; i >= 0; --i) {
    relu_backward_in_place(act.relu[i], d);
    grads.weight[i].resize(kWeightSize);
    grads.bias[i].resize(kC);
    const float* in = i == 0 ? act.x.data() : act.relu[i - 1].data();
    std::vector<float> d_in;
    if (i > 0 || d_x) d_in.resize(size);
    float* dx = d_in.empty() ? nullptr : d_in.data();
    if (act.winograd)
      winograd_backward(shape, in, act.prepared[i], d.data(), grads.weight[i].data(),
                        grads.bias[i].data(), dx, &act.inputs[i]);
    else
      conv3x3_backward(shape, in, weight_[i].data(), d.data(), grads.weight[i].data(),
                       grads.bias[i].data(), dx);
    d = std::move(d_in);
  }
  if (d_x) *d_x = std::move(d);
  return grads;
}

}  // namespace vggcache
