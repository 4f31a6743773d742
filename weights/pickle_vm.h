// A restricted pickle machine for PyTorch state_dict pickles (protocol 2, plus the cheap protocol
// 3/4 opcodes). It never calls anything: GLOBAL only names one of a fixed allowlist, and REDUCE of
// an allowed name is interpreted here (OrderedDict() -> dict, _rebuild_tensor[_v2] -> tensor
// description, _rebuild_parameter -> its tensor). Anything else is refused.
//
// Values live in an arena and refer to each other by index, so cyclic or very deep structures a
// hostile pickle can build cost no recursion and cannot leak. All limits are checked before the
// memory they guard is allocated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace vggcache::pickle {

enum class Kind : uint8_t {
  kNone,
  kBool,     // i = 0 or 1
  kInt,      // i
  kBigInt,   // an integer that does not fit int64 (e.g. torch's magic number): s = two's
             // complement little-endian bytes as pickled
  kFloat,    // f
  kStr,      // s (UTF-8)
  kBytes,    // s
  kTuple,    // items
  kList,     // items
  kDict,     // items = key0, value0, key1, value1, ... in insertion order (duplicates kept)
  kGlobal,   // s = "module.name", one of the allowlist
  kStorage,  // i = index returned by the persistent-load callback
  kTensor,   // i = index into Machine::tensors()
};

const char* kind_name(Kind k);

struct Value {
  Kind kind = Kind::kNone;
  uint32_t depth = 0;  // container nesting, bounded by Limits::max_depth
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<uint32_t> items;
};

// What torch._utils._rebuild_tensor_v2 was asked to build; the data is not touched here.
struct TensorRef {
  int64_t storage = 0;  // storage index (from the persistent-load callback)
  int64_t offset = 0;   // in elements
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
};

struct Limits {
  size_t max_depth = 1000;       // MARK nesting and container nesting
  size_t max_values = 1u << 22;  // arena size (each value costs ~80 bytes)
  size_t max_stack = 1u << 22;
  size_t max_memo = 1u << 22;
  size_t max_int_bytes = 16;  // LONG1/LONG4 payload
  size_t max_dims = 64;       // tensor rank
};

// Thrown for every malformed or refused pickle; the caller adds the file name.
class PickleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Machine {
 public:
  // Maps a persistent id (the value id of the tuple BINPERSID popped) to a storage index.
  using PersistentLoad = std::function<int64_t(const Machine&, uint32_t pid)>;

  explicit Machine(PersistentLoad persistent_load = nullptr, Limits limits = {});

  // Runs one pickle that starts at data[0] and ends with STOP somewhere in data[0, n). Returns the
  // id of the resulting value; *consumed receives the number of bytes up to and including STOP.
  // Several pickles can be run on one Machine in turn (each starts with an empty stack and memo).
  uint32_t run(const uint8_t* data, size_t n, size_t* consumed);

  const Value& at(uint32_t id) const { return values_[id]; }
  const std::vector<TensorRef>& tensors() const { return tensors_; }

 private:
  uint32_t add(Value v);
  uint32_t pop();
  uint32_t top() const;
  void push(uint32_t id);
  size_t pop_mark();  // returns the stack position of the innermost mark
  uint32_t make_sequence(Kind kind, size_t from);
  void append_to(uint32_t container, uint32_t item);
  void set_item(uint32_t dict, uint32_t key, uint32_t value);
  // Torch-specific: the allowlist and the meaning of each allowed callable (pickle_torch.cpp).
  uint32_t global(const std::string& module, const std::string& name);
  uint32_t reduce(uint32_t callable, uint32_t args);
  uint32_t rebuild_tensor(const Value& args, bool v2);
  int64_t int_arg(uint32_t id, const char* what) const;
  std::vector<int64_t> int_tuple(uint32_t id, const char* what) const;

  PersistentLoad persistent_load_;
  Limits limits_;
  std::vector<Value> values_;
  std::vector<TensorRef> tensors_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
};

}  // namespace vggcache::pickle
