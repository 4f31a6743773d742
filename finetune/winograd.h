// 3×3 convolution, stride 1, padding 1, by Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray
// 2015): NCHW float32 and torchvision's weight layout, as conv3x3.h, with about a third of the
// multiplications. Each 4 × 4 output tile comes from its 6 × 6 input tile d (zero padded) as
//   y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A,
// so a convolution is 36 GEMMs, one per point ξ of the 6 × 6 transformed tile, each
// c_out × c_in × (n · tiles): at 4 × 4 maps (VGG16's pool4 at 64 px) one tile per image and 36
// products per (c_out, c_in) pair and image, against the 100 of the tap-wise GEMMs (2.8× fewer);
// at 14 × 14 maps 16 tiles, 576 against 1,600.
//
// The backward pass differentiates that computation exactly (the gradient of what was computed,
// equal to the convolution's up to rounding):
//   dM = A dY Aᵀ,  ∂U_ξ = dM_ξ · V_ξᵀ,  ∂g = Gᵀ ∂U G,  ∂V_ξ = U_ξᵀ · dM_ξ,  ∂d = B ∂V Bᵀ,
// the input tiles' gradients added where tiles overlap.
//
// Rounding: the transforms multiply by G's entries (1/4, 1/6, 1/12, 1/24, rounded to float) and
// by integers up to 8, so the error is not bounded by the direct sum's Σ|w||x| but by the same
// computation on absolute values, |Aᵀ| (Σ_c |G||g||Gᵀ| ⊙ |Bᵀ||d||B|) |A|, times γ(c_in + 40)
// (γ(m) = m·u / (1 − m·u)): the c_in-term sum of products, plus at most 40 roundings in the
// transforms (two passes of ≤ 4 products and ≤ 5 additions for each of the three) and G's
// representation. The gradients likewise, with the batch's tile count (weights) or c_out
// (input) for c_in. tests/finetune/test_winograd.cpp checks that bound element by element.
//
// Determinism and thread-safety as conv3x3.h: the work splits by a fixed partition that depends
// only on the shape, single-threaded sgemm() inside TBB tasks, so results are bitwise the same
// for any --threads; concurrent calls are safe when their outputs differ.
// Errors: a non-positive dimension, or prepared weights of another shape, throw
// Error(kInvalidArgument).
#pragma once
#include <cstddef>
#include <vector>

#include "finetune/conv3x3.h"  // Conv3x3Shape

namespace vggcache {

// U = G g Gᵀ for every (c_out, c_in) pair: 36 × c_out × c_in floats (ξ-major). Depends only on
// the weight, so a training step prepares it once per layer for its forward and backward passes.
struct WinogradWeights {
  int c_out = 0, c_in = 0;
  std::vector<float> u;
};
void winograd_prepare(int c_out, int c_in, const float* weight, WinogradWeights* out);

// The input's transform V = Bᵀ d B (36 × c_in × n·tiles floats, ξ-major) that a forward pass
// computes and the backward pass's weight gradient needs again: a caller that keeps it between
// the two saves the backward pass recomputing it (a sixth of block 5's transform work at 64 px).
struct WinogradInput {
  int c_in = 0, cols = 0;
  std::vector<float> v;
};
// Its size in bytes for shape s.
size_t winograd_input_bytes(const Conv3x3Shape& s);

// y (n × c_out × h × w) = conv(x, weight) + bias, with `w` prepared from that weight. When `keep`
// is not null it receives the input's transform.
void winograd_forward(const Conv3x3Shape& s, const float* x, const WinogradWeights& w,
                      const float* bias, float* y, WinogradInput* keep = nullptr);

// From dy (n × c_out × h × w): d_weight (c_out × c_in × 3 × 3) and d_bias (c_out), overwritten,
// and, when d_x is not null, d_x (n × c_in × h × w). x and w are the forward pass's (the input's
// transform is recomputed, unless `kept` holds the forward pass's of x: then x is not read).
void winograd_backward(const Conv3x3Shape& s, const float* x, const WinogradWeights& w,
                       const float* dy, float* d_weight, float* d_bias, float* d_x,
                       const WinogradInput* kept = nullptr);

}  // namespace vggcache
