// A trained head and the VGG16 weights its features came from, as one ONNX model from the
// normalised image to class probabilities, built with Debian's ONNX library (libonnx) and checked
// with its checker before it is written.
//
// Graph (opset kOnnxOpset, IR version of the library):
//   input "input":  float32 batch × 3 × size × size, the image as predict's eval view feeds VGG16
//                   (RGB, Resize((size, size)) bilinear, /255, (x − mean) / std per channel; the
//                   values are in metadata_props);
//   features:       Conv 3×3 pad 1 + Relu ×13 and MaxPool 2×2 ×5, named after torchvision's
//                   vgg16().features indices (initializers features.N.weight / .bias; a
//                   head fine-tuned with block 5 brings features.24/26/28: network_features());
//   classifier:     Flatten → Gemm (classifier.0, with the head's standardisation and
//                   torchvision's AdaptiveAvgPool2d((7, 7)) folded in: export/fold.h) → Relu →
//                   Gemm (classifier.3) → Sigmoid | Softmax(axis 1). Dropout is the identity at
//                   inference and is left out.
//   output "probabilities": float32 batch × outputs — one column, the probability of classes[1],
//                   for a two-class (sigmoid) head; else the softmax over the classes in order.
// metadata_props: vggcache_version, classes (JSON), output, preprocessing fields (size, mean,
// std, interpolation, resize), weights (name, sha256, random), head file (name, sha256), the
// folding note, and "block5" for a head with a tuned block 5.
#pragma once
#include <string>

#include "export/export_pth.h"

namespace vggcache {

inline constexpr int kOnnxOpset = 13;
inline constexpr const char* kOnnxInput = "input";
inline constexpr const char* kOnnxOutput = "probabilities";

// The serialised ModelProto. `features` as network_features() gives them (Error(kBadWeights)
// when one is missing); `info.model_*` are not used. The head must pass check_exportable() and
// carry its feature settings' size. Throws Error(kInvalidArgument) if the ONNX checker rejects
// the model (a defect here, never user input).
std::string onnx_model(const HeadFile& head, const StateDict& features, const ExportInfo& info);

}  // namespace vggcache
