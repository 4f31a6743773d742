// The torch-specific half of the pickle machine: which globals a state_dict may name, and what
// REDUCE of each means. Interpreting them here, instead of calling anything, is what makes
// loading an untrusted file safe.
#include <algorithm>

#include "weights/pickle_vm.h"

namespace vggcache::pickle {
namespace {

// The only names a state_dict pickle needs. Storage classes are legal only as the type field of
// a persistent id; calling one is refused in reduce().
bool allowed_global(const std::string& full) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor",  // PyTorch < 0.4, e.g. torchvision's vgg16-397923af.pth
      "torch._utils._rebuild_parameter",
      "torch.FloatStorage",
      "torch.DoubleStorage",
      "torch.HalfStorage",
      "torch.BFloat16Storage",
      "torch.LongStorage",
      "torch.IntStorage",
      "torch.ShortStorage",
      "torch.CharStorage",
      "torch.ByteStorage",
      "torch.BoolStorage",
  };
  for (const char* a : kAllowed) {
    if (full == a) return true;
  }
  return false;
}

}  // namespace

uint32_t Machine::global(const std::string& module, const std::string& name) {
  std::string full = module + "." + name;
  if (!allowed_global(full)) {
    throw PickleError("refusing pickle global '" + full +
                      "' (only tensor dictionaries are accepted; nothing was executed)");
  }
  Value v;
  v.kind = Kind::kGlobal;
  v.s = std::move(full);
  return add(std::move(v));
}

int64_t Machine::int_arg(uint32_t id, const char* what) const {
  const Value& v = values_[id];
  if (v.kind != Kind::kInt && v.kind != Kind::kBool) {
    throw PickleError(std::string(what) + " is a " + kind_name(v.kind) + ", expected an int");
  }
  return v.i;
}

std::vector<int64_t> Machine::int_tuple(uint32_t id, const char* what) const {
  const Value& v = values_[id];
  if (v.kind != Kind::kTuple && v.kind != Kind::kList) {
    throw PickleError(std::string(what) + " is a " + kind_name(v.kind) + ", expected a tuple");
  }
  if (v.items.size() > limits_.max_dims) {
    throw PickleError(std::string(what) + " has more than " + std::to_string(limits_.max_dims) +
                      " dimensions");
  }
  std::vector<int64_t> out;
  for (uint32_t item : v.items) out.push_back(int_arg(item, what));
  return out;
}

uint32_t Machine::rebuild_tensor(const Value& args, bool v2) {
  // _rebuild_tensor(storage, storage_offset, size, stride) and
  // _rebuild_tensor_v2(same four, requires_grad, backward_hooks[, metadata]): only the first four
  // matter for the values.
  size_t n = args.items.size();
  if (v2 ? (n != 6 && n != 7) : n != 4) {
    throw PickleError(std::string(v2 ? "_rebuild_tensor_v2" : "_rebuild_tensor") + " called with " +
                      std::to_string(n) + " arguments");
  }
  const Value& storage = values_[args.items[0]];
  if (storage.kind != Kind::kStorage) {
    throw PickleError(std::string("_rebuild_tensor_v2 storage argument is a ") +
                      kind_name(storage.kind));
  }
  TensorRef t;
  t.storage = storage.i;
  t.offset = int_arg(args.items[1], "tensor storage_offset");
  t.shape = int_tuple(args.items[2], "tensor size");
  t.stride = int_tuple(args.items[3], "tensor stride");
  if (t.shape.size() != t.stride.size()) {
    throw PickleError("tensor size has " + std::to_string(t.shape.size()) +
                      " dimensions but stride has " + std::to_string(t.stride.size()));
  }
  tensors_.push_back(std::move(t));
  Value v;
  v.kind = Kind::kTensor;
  v.i = int64_t(tensors_.size() - 1);
  return add(std::move(v));
}

uint32_t Machine::reduce(uint32_t callable, uint32_t args_id) {
  const Value& fn = values_[callable];
  const Value& args = values_[args_id];
  if (fn.kind != Kind::kGlobal) {
    throw PickleError(std::string("REDUCE of a ") + kind_name(fn.kind) + ", not a global");
  }
  if (args.kind != Kind::kTuple) {
    throw PickleError("REDUCE arguments for " + fn.s + " are a " + kind_name(args.kind));
  }
  if (fn.s == "collections.OrderedDict") {
    // Python 3 pickles OrderedDict as OrderedDict() followed by SETITEMS; Python 2 passed the
    // items as one argument, a list of [key, value] lists.
    if (args.items.size() > 1) throw PickleError("OrderedDict called with several arguments");
    std::vector<uint32_t> pairs;
    if (args.items.size() == 1) {
      const Value& list = values_[args.items[0]];
      if (list.kind != Kind::kList && list.kind != Kind::kTuple) {
        throw PickleError(std::string("OrderedDict called with a ") + kind_name(list.kind));
      }
      pairs = list.items;
    }
    Value v;
    v.kind = Kind::kDict;
    v.depth = 1;
    uint32_t dict = add(std::move(v));
    for (uint32_t id : pairs) {
      const Value& pair = values_[id];
      if ((pair.kind != Kind::kList && pair.kind != Kind::kTuple) || pair.items.size() != 2) {
        throw PickleError("OrderedDict item is not a (key, value) pair");
      }
      set_item(dict, pair.items[0], pair.items[1]);
    }
    return dict;
  }
  if (fn.s == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args, true);
  if (fn.s == "torch._utils._rebuild_tensor") return rebuild_tensor(args, false);
  if (fn.s == "torch._utils._rebuild_parameter") {
    // _rebuild_parameter(data, requires_grad, backward_hooks): a Parameter is its tensor here.
    if (args.items.size() != 3 || values_[args.items[0]].kind != Kind::kTensor) {
      throw PickleError("_rebuild_parameter needs (tensor, requires_grad, hooks)");
    }
    return args.items[0];
  }
  throw PickleError("refusing to call pickle global '" + fn.s + "'");
}

}  // namespace vggcache::pickle
