#include "export/export_onnx.h"

#include <fmt/core.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <initializer_list>

#include "common/error.h"
#include "export/fold.h"

namespace vggcache {

namespace {

// torchvision's vgg16 configuration "D": channels of each conv, 0 for a 2×2 max-pool.
constexpr int kVgg16Config[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                                0,  512, 512, 512, 0,   512, 512, 512, 0};

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* g) : g_(g) {}

  onnx::NodeProto* node(const std::string& op, std::initializer_list<std::string> in,
                        const std::string& out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(out);
    for (const std::string& x : in) n->add_input(x);
    n->add_output(out);
    return n;
  }

  void initializer(const std::string& name, std::initializer_list<int64_t> shape,
                   const std::vector<float>& values) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t->add_dims(d);
    // raw_data is little-endian by the ONNX spec, as x86 stores floats.
    t->set_raw_data(values.data(), values.size() * sizeof(float));
  }

  void value(bool input, const std::string& name, std::initializer_list<int64_t> dims) {
    onnx::ValueInfoProto* v = input ? g_->add_input() : g_->add_output();
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("batch");
    for (int64_t d : dims) t->mutable_shape()->add_dim()->set_dim_value(d);
  }

 private:
  onnx::GraphProto* g_;
};

void ints(onnx::NodeProto* n, const char* name, std::initializer_list<int64_t> v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void one_int(onnx::NodeProto* n, const char* name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

const TensorData& feature(const StateDict& features, const std::string& name) {
  auto it = features.find(name);
  if (it == features.end())
    throw Error(ErrorKind::kBadWeights, fmt::format("VGG16 weights without '{}'", name));
  return it->second;
}

// Convs and pools as torchvision numbers them; returns the last value's name.
std::string add_features(GraphBuilder* b, const StateDict& features) {
  std::string x = kOnnxInput;
  int index = 0;
  for (int channels : kVgg16Config) {
    const std::string out = fmt::format("features.{}", index);
    if (channels == 0) {
      onnx::NodeProto* n = b->node("MaxPool", {x}, out);
      ints(n, "kernel_shape", {2, 2});
      ints(n, "strides", {2, 2});
      x = out;
      ++index;
      continue;
    }
    const TensorData& w = feature(features, out + ".weight");
    const TensorData& bias = feature(features, out + ".bias");
    if (w.shape.size() != 4 || w.shape[0] != channels || bias.values.size() != size_t(channels))
      throw Error(ErrorKind::kBadWeights,
                  fmt::format("VGG16 weights: {}.weight has the wrong shape", out));
    b->initializer(out + ".weight", {w.shape[0], w.shape[1], w.shape[2], w.shape[3]}, w.values);
    b->initializer(out + ".bias", {channels}, bias.values);
    onnx::NodeProto* n = b->node("Conv", {x, out + ".weight", out + ".bias"}, out);
    ints(n, "kernel_shape", {3, 3});
    ints(n, "pads", {1, 1, 1, 1});
    const std::string relu = fmt::format("features.{}", index + 1);
    b->node("Relu", {out}, relu);
    x = relu;
    index += 2;
  }
  return x;
}

void meta(onnx::ModelProto* m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = m->add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

}  // namespace

std::string onnx_model(const HeadFile& head, const StateDict& features, const ExportInfo& info) {
  const int size = head.features.value("size", 0);
  const int side = vgg16_pool5_side(size);
  if (side < 1)
    throw Error(ErrorKind::kMismatch,
                fmt::format("head {} was trained at {} px; ONNX export needs at least 32",
                            info.head_path, size));
  const HeadShape& s = head.weights.shape;
  const int64_t hidden = s.rows1(), outputs = s.outputs();  // a probe: one Linear to the outputs

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("vggcache");
  model.set_producer_version(VGGCACHE_VERSION);
  model.set_doc_string("VGG16 features + vggcache head: normalised image to class probabilities");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);

  onnx::GraphProto* g = model.mutable_graph();
  g->set_name("vggcache_vgg16_head");
  GraphBuilder b(g);
  b.value(true, kOnnxInput, {3, size, size});
  const std::string pool5 = add_features(&b, features);

  FoldedFirstLayer first = fold_first_layer(head, side, side);
  const int64_t in_dim = int64_t(512) * side * side;
  b.initializer("classifier.0.weight", {hidden, in_dim}, first.w);
  b.initializer("classifier.0.bias", {hidden}, first.b);
  one_int(b.node("Flatten", {pool5}, "flatten"), "axis", 1);
  one_int(b.node("Gemm", {"flatten", "classifier.0.weight", "classifier.0.bias"}, "classifier.0"),
          "transB", 1);
  std::string logits = "classifier.0";  // a probe's logits
  if (!s.probe()) {
    b.initializer("classifier.3.weight", {outputs, hidden}, head.weights.w2);
    b.initializer("classifier.3.bias", {outputs}, head.weights.b2);
    b.node("Relu", {"classifier.0"}, "classifier.1");
    one_int(b.node("Gemm", {"classifier.1", "classifier.3.weight", "classifier.3.bias"},
                   "classifier.3"),
            "transB", 1);
    logits = "classifier.3";
  }
  if (outputs == 1)
    b.node("Sigmoid", {logits}, kOnnxOutput);
  else
    one_int(b.node("Softmax", {logits}, kOnnxOutput), "axis", 1);
  b.value(false, kOnnxOutput, {outputs});

  // The sidecar's facts, flattened to strings: whoever holds the .onnx alone can preprocess
  // inputs correctly and trace the model back to its weights and head.
  nlohmann::json side_car = export_sidecar(head, info);
  meta(&model, "vggcache_version", VGGCACHE_VERSION);
  meta(&model, "classes", nlohmann::json(head.classes).dump());
  meta(&model, "output",
       outputs == 1 ? fmt::format("probabilities[:, 0] is the probability of '{}' (sigmoid)",
                                  head.classes.at(1))
                    : std::string("probabilities: softmax over the classes in label order"));
  meta(&model, "input",
       fmt::format("input: float32 N×3×{0}×{0}, RGB, Resize(({0}, {0})), /255, (x - mean) / std",
                   size));
  for (const char* key : {"size", "mean", "std", "interpolation", "resize", "scale"})
    meta(&model, std::string("preprocessing.") + key,
         side_car["preprocessing"][key].is_string()
             ? side_car["preprocessing"][key].get<std::string>()
             : side_car["preprocessing"][key].dump());
  meta(&model, "weights.name", info.weights.name);
  meta(&model, "weights.sha256", info.weights.sha256);
  meta(&model, "weights.random", info.weights.random ? "true" : "false");
  meta(&model, "head.name", std::filesystem::path(info.head_path).filename().string());
  meta(&model, "head.sha256", info.head_sha256);
  meta(&model, "head", side_car["head"].dump());
  meta(&model, "folding",
       "classifier.0 holds the head's first Linear with its standardisation (if any) and "
       "torchvision's AdaptiveAvgPool2d((7, 7)) over the pool5 map folded in, in float64");

  if (side_car.contains("block5")) meta(&model, "block5", side_car["block5"].get<std::string>());

  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("the ONNX checker rejected the model built from {}: {}", info.head_path,
                            e.what()));
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    throw Error(ErrorKind::kInvalidArgument, "could not serialise the ONNX model");
  return bytes;
}

}  // namespace vggcache
