// Reads PyTorch state_dict files (`torch.save(model.state_dict(), f)`) directly, without Python or
// LibTorch: the legacy format (magic number + pickles + raw storages, e.g. torchvision's
// vgg16-397923af.pth) and the zip format (archive/data.pkl + archive/data/<key>) of newer files.
// Zip entries must be stored, not compressed (torch.save never compresses); zip64 is understood.
//
// Only the plain tensor-dictionary subset of pickle is accepted (dict / OrderedDict of
// torch._utils._rebuild_tensor[_v2] or _rebuild_parameter over torch.<Type>Storage); any other
// global or opcode is refused, so no code is ever run. Float, double, half and bfloat16 storages
// are converted to float, as are integer and bool ones (exactly up to 2^24). Views (offsets,
// strides including 0, storages shared between tensors) are gathered into contiguous copies.
//
// The file is memory-mapped and only the storages of kept tensors are read. Memory is bounded by
// the sizes of the tensors actually kept, plus a parse tree proportional to the pickle; sizes in
// the file are checked against the file size before anything is allocated.
// Reentrant: concurrent calls (on any files) are safe.
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
// read into memory); nullptr keeps all. Every failure, including a missing or unreadable file,
// throws Error(kBadWeights) with a message "<path>: <problem>" (not a torch file, truncated,
// refused global, unsupported opcode, inconsistent sizes, compressed zip entry, ...).
StateDict read_state_dict(const std::string& path,
                          const std::function<bool(const std::string&)>& keep = nullptr);

}  // namespace vggcache
