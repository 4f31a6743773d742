// Every setting of the `vggcache-export` command, with its default. Filled by parse_export_args()
// (export/cli.h); the exporter reads nothing else.
#pragma once
#include <string>

namespace vggcache {

struct ExportParams {
  std::string weights;         // --weights FILE|random:SEED (required; must be the weights the
                               //   head's features were extracted with, checked as predict does)
  std::string head;            // --head RUN_DIR/head.bin (required)
  std::string out;             // --out FILE (required): the model; for pth FILE.json is its
                               //   sidecar (ONNX keeps the same facts in metadata_props)
  std::string format = "pth";  // --format: "pth" (torchvision vgg16 state_dict, zip format) or
                               //   "onnx" (image to probabilities, export/export_onnx.h)
  bool overwrite = false;      // --overwrite: replace an existing FILE / FILE.json
  bool quiet = false;          // --quiet: no summary line on stderr
};

}  // namespace vggcache
