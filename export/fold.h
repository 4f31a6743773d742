// The head's first Linear with what precedes it in vggcache but has no place in an exported
// model folded in: the head's standardisation x' = (x − mean) / std, and, for ONNX (which has no
// adaptive pooling), torchvision's AdaptiveAvgPool2d((7, 7)) over the pool5 map.
#pragma once
#include <vector>

#include "head/head_file.h"

namespace vggcache {

struct FoldedFirstLayer {
  int map_h = 7, map_w = 7;  // the pool5 map the weights take
  std::vector<float> w;      // rows1 (hidden, or a probe's outputs) × (512·map_h·map_w), columns
                             //   in NCHW flatten order
  std::vector<float> b;      // rows1
};

// In float64, each result rounded to float32 once:
//   standardisation:  W' = W / std (per input column), b' = b − W'·mean;
//   pooling:          W''[k, c, i, j] = Σ over the 7×7 cells (oi, oj) whose adaptive window
//                     holds (i, j) of W'[k, c, oi, oj] / |window(oi, oj)|,
// windows as PyTorch's adaptive average pooling draws them: [⌊o·L/7⌋, ⌈(o+1)·L/7⌉). A 7×7 map
// (224 px) leaves W' as it is, so map 7×7 gives the torchvision layout's classifier.0. The head's
// input must be 512·7·7 (check_exportable).
FoldedFirstLayer fold_first_layer(const HeadFile& head, int map_h = 7, int map_w = 7);

// VGG16's pool5 side for a square input of `size` pixels (five floor-mode 2×2 pools).
int vgg16_pool5_side(int size);

}  // namespace vggcache
