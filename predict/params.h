// Every setting of the `predict` command, with its default. Filled by parse_predict_args()
// (predict/cli.h); the classifier reads nothing else.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vggcache {

struct PredictParams {
  std::string weights;             // --weights FILE|random:SEED (required; must be the weights
                                   //   the head's features were extracted with)
  std::string head;                // --head RUN_DIR/head.bin (required)
  std::vector<std::string> paths;  // PATH...: image files and folders (walked recursively)
  std::string out;                 // --out FILE: CSV written atomically; "" = stdout
  int tta = 0;                     // --tta K: K RandomResizedCrop views per image, probabilities
                                   //   averaged (>= 1); 0 = not given: the eval view
                                   //   (Resize((size, size)), as extract --eval)
  double scale_min = 0.5;          // --scale MIN,MAX: --tta crop area range (extract's default)
  double scale_max = 1.0;
  double ratio_min = 0.75;  // --ratio MIN,MAX: --tta crop aspect range (extract's default)
  double ratio_max = 4.0 / 3.0;
  bool flip = false;           // --flip: --tta views flipped with p = 0.5 (as extract --flip)
  uint64_t seed = 1;           // --seed: view k of input i depends only on (seed, i, k), as in
                               //   extract, so predict --tta K == extract --crops K per image
  int batch = 64;              // --batch N: views per forward pass (>= 1)
  int threads = 0;             // --threads N: decode, LibTorch and head threads (>= 1);
                               //   0 = not given: the number of hardware threads
  std::string device = "cpu";  // --device cpu|cuda
  bool quiet = false;          // --quiet: no progress lines (warnings and summary still printed)
};

}  // namespace vggcache
