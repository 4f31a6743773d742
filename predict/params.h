// Every setting of the `predict` command, with its default. Filled by parse_predict_args()
// (predict/cli.h); the classifier reads nothing else.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "extract/view_params.h"

namespace vggcache {

struct PredictParams : ViewParams {  // --scale --ratio --flip --seed (--tta views only), --batch
                                     // --threads --device --quiet: extract/view_params.h
  std::string weights;               // --weights FILE|random:SEED (must be the weights the head's
                                     //   features were extracted with; required unless the head's
                                     //   backbone is torchscript, whose file is its weights)
  std::string backbone;              // --backbone: "" = the one the head records; torchscript
                                     //   heads need torchscript:FILE (the head has its SHA-256)
  std::string head;                  // --head RUN_DIR/head.bin (required)
  std::vector<std::string> paths;    // PATH...: image files and folders (walked recursively)
  std::string out;                   // --out FILE: CSV written atomically; "" = stdout
  int tta = 0;                       // --tta K: K RandomResizedCrop views per image, probabilities
                                     //   averaged (>= 1); 0 = not given: the eval view
                                     //   (Resize((size, size)), as extract --eval)
};

}  // namespace vggcache
