// 3×3 convolution, stride 1, padding 1, as VGG16's conv layers: NCHW float32, weights in
// torchvision's layout (c_out × c_in × 3 × 3) and a bias of c_out.
//
// Both passes lower the convolution tap by tap to GEMMs (sgemm() of head/linalg.h,
// single-threaded): y = Σ over the 9 taps of W_t · x shifted, each tap multiplying only the pixels
// that read inside the map, so the zero padding costs no flops (31% of im2col's at 4 × 4 maps).
// They run as TBB tasks over a FIXED split that depends only on the shape, never on the thread
// count: the forward pass and the input gradient over blocks of whole images, summing the taps in
// a fixed order; the weight gradient one whole-batch GEMM per tap. No value is ever summed across
// tasks, so every result is bitwise the same for any number of threads. That needs sgemm() itself
// single-threaded: tools call configure_blas_for_tbb() once at start-up, as train_head does.
//
// Thread-safety: concurrent calls are safe when their outputs differ (the only state is scratch
// buffers kept per thread between calls, which a task never shares).
// Errors: a non-positive dimension throws Error(kInvalidArgument).
#pragma once

namespace vggcache {

struct Conv3x3Shape {
  int n = 0;      // images
  int c_in = 0;   // input channels
  int c_out = 0;  // output channels
  int h = 0;      // height of input and output
  int w = 0;      // width of input and output
};

// y (n × c_out × h × w) = conv(x (n × c_in × h × w), weight (c_out × c_in × 3 × 3)) + bias.
void conv3x3_forward(const Conv3x3Shape& s, const float* x, const float* weight, const float* bias,
                     float* y);

// From dy (n × c_out × h × w), the gradient of a loss with respect to y: d_weight (c_out × c_in ×
// 3 × 3), d_bias (c_out), both overwritten, and, when d_x is not null, d_x (n × c_in × h × w).
// x and weight are the forward pass's.
void conv3x3_backward(const Conv3x3Shape& s, const float* x, const float* weight, const float* dy,
                      float* d_weight, float* d_bias, float* d_x);

}  // namespace vggcache
