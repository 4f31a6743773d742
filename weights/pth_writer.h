// Writes a float32 state_dict in torch's zip format, the file `torch.save(state_dict, f)` makes and
// `torch.load(f, weights_only=True)` accepts (PyTorch 1.13 and later), without Python or LibTorch:
//   archive/data.pkl    pickle protocol 2: collections.OrderedDict of name → tensor, each tensor
//                       torch._utils._rebuild_tensor_v2(storage, 0, shape, contiguous strides,
//                       False, OrderedDict()) with storage the persistent id
//                       ('storage', torch.FloatStorage, KEY, 'cpu', numel). These three globals
//                       are all it names, all on weights_only's allowlist.
//   archive/data/KEY    the tensor's values, raw little-endian float32 (KEY = "0", "1", ...)
//   archive/version     "3\n"
//   archive/byteorder   "little"
// Entries are stored uncompressed with their CRC-32, each one's data starting at a multiple of
// 64 bytes (padding in an extra field, as torch's own writer does). No zip64: an archive that
// would pass 4 GiB is refused.
//
// Thread-safety: reentrant; concurrent calls on different paths are safe.
// Ownership: the tensors' values are read during the call only; nothing is retained.
// Failure: throws Error(kInvalidArgument) "PATH: ..." for an inconsistent tensor (values ≠
// product of the shape, empty or duplicate name) and Error(kIo) naming the file when it cannot be
// written. The file is written atomically (common/file_util.h): on failure an existing file at
// `path` is left as it was.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "weights/pth_reader.h"

namespace vggcache {

// A state_dict in the order it is to be pickled (PyTorch keeps insertion order).
using OrderedStateDict = std::vector<std::pair<std::string, TensorData>>;

void write_state_dict(const std::string& path, const OrderedStateDict& tensors);

}  // namespace vggcache
