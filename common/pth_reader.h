// Reads PyTorch state_dict files (`torch.save(model.state_dict(), f)`) directly, without Python or
// LibTorch: the legacy format (magic number + pickles + raw storages, e.g. torchvision's
// vgg16-397923af.pth) and the zip format (archive/data.pkl + archive/data/<key>) of newer files.
//
// Only the plain tensor-dictionary subset of pickle is accepted (dict / OrderedDict of
// torch._utils._rebuild_tensor_v2 over FloatStorage etc.); any other global or opcode is refused,
// so no code is ever run. Memory is bounded by the sizes of the tensors actually kept.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace vggcache {

struct TensorData {
  std::vector<int64_t> shape;  // row-major, contiguous
  std::vector<float> values;   // product(shape) floats (converted from the stored dtype)
};

using StateDict = std::map<std::string, TensorData>;

// keep(name) decides which tensors are materialised (others are parsed but their data is not
// read into memory). Throws Error(kBadWeights) with a message naming `path` and the problem
// (not a torch file, truncated, unsupported opcode/global, inconsistent sizes, ...).
StateDict read_state_dict(const std::string& path,
                          const std::function<bool(const std::string&)>& keep = nullptr);

}  // namespace vggcache
