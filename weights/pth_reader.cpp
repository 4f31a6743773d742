// torch.save file reader. Both formats pickle the same object graph; they differ in where the
// storage bytes live:
//   legacy: pickle(magic) pickle(protocol) pickle(sys_info) pickle(obj) pickle([storage keys]),
//           then for each key in that list: int64 element count, raw little-endian elements.
//   zip:    <archive>/data.pkl holds the object; storage KEY is the entry <archive>/data/KEY.
// Storages are referenced from the pickle through persistent ids
//   ('storage', torch.<Type>Storage, key, location, numel[, view_metadata])   (legacy has 6).
// The file is memory-mapped: storages of tensors that are not kept are never touched.
#include "weights/pth_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <unordered_map>

#include "common/error.h"
#include "weights/pickle_vm.h"
#include "weights/zip_archive.h"

namespace vggcache {
namespace {

using pickle::Kind;
using pickle::PickleError;
using pickle::Value;

// Problems found while parsing; read_state_dict adds the path and turns them into Error.
class BadFile : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// The file, memory-mapped read-only.

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw BadFile(std::string("cannot open: ") + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw BadFile("not a regular file");
    }
    size_ = size_t(st.st_size);
    if (size_ == 0) {
      ::close(fd);
      throw BadFile("empty file");
    }
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);  // the mapping keeps the file open
    if (p == MAP_FAILED) throw BadFile(std::string("cannot map: ") + std::strerror(err));
    data_ = static_cast<const uint8_t*>(p);
  }
  ~MappedFile() { ::munmap(const_cast<uint8_t*>(data_), size_); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Starts reading the pages of a kept tensor in the background; skipped ones are never read.
  void prefetch(const uint8_t* p, size_t n) const {
    static const uintptr_t kPage = uintptr_t(::sysconf(_SC_PAGESIZE));
    uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~(kPage - 1);
    ::madvise(reinterpret_cast<void*>(start), n + (reinterpret_cast<uintptr_t>(p) - start),
              MADV_WILLNEED);
  }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Storage element types.

enum class DType { kF32, kF64, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

struct DTypeInfo {
  const char* storage;  // pickle global naming the storage class
  DType type;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"torch.FloatStorage", DType::kF32, 4}, {"torch.DoubleStorage", DType::kF64, 8},
    {"torch.HalfStorage", DType::kF16, 2},  {"torch.BFloat16Storage", DType::kBF16, 2},
    {"torch.LongStorage", DType::kI64, 8},  {"torch.IntStorage", DType::kI32, 4},
    {"torch.ShortStorage", DType::kI16, 2}, {"torch.CharStorage", DType::kI8, 1},
    {"torch.ByteStorage", DType::kU8, 1},   {"torch.BoolStorage", DType::kBool, 1},
};

const DTypeInfo* dtype_for(const std::string& storage_class) {
  for (const DTypeInfo& d : kDTypes) {
    if (storage_class == d.storage) return &d;
  }
  return nullptr;
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    float f = float(mant) * (1.0f / 16777216.0f);
    return sign ? -f : f;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // storages are little-endian, as is every host we build for
  return v;
}

float to_float(DType type, const uint8_t* p) {
  switch (type) {
    case DType::kF32:
      return load<float>(p);
    case DType::kF64:
      return float(load<double>(p));
    case DType::kF16:
      return half_to_float(load<uint16_t>(p));
    case DType::kBF16: {
      uint32_t bits = uint32_t(load<uint16_t>(p)) << 16;  // bfloat16 is float's upper half
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DType::kI64:
      return float(load<int64_t>(p));
    case DType::kI32:
      return float(load<int32_t>(p));
    case DType::kI16:
      return float(load<int16_t>(p));
    case DType::kI8:
      return float(int8_t(*p));
    case DType::kU8:
      return float(*p);
    case DType::kBool:
      return *p ? 1.0f : 0.0f;
  }
  return 0;
}

// Converts `count` elements starting at `src`, `step` elements apart, to float.
void convert(const DTypeInfo& dt, const uint8_t* src, int64_t step, size_t count, float* dst) {
  if (dt.type == DType::kF32 && step == 1) {
    std::memcpy(dst, src, count * 4);  // the common case: one bulk copy out of the mapping
    return;
  }
  const size_t step_bytes = size_t(step) * dt.size;
  for (size_t i = 0; i < count; ++i, src += step_bytes) dst[i] = to_float(dt.type, src);
}

// ---------------------------------------------------------------------------------------------
// Storages declared by persistent ids.

struct Root {  // one serialized storage (legacy: one block after the pickles; zip: one entry)
  std::string key;
  const DTypeInfo* dtype = nullptr;
  uint64_t numel = 0;
  const uint8_t* data = nullptr;  // set once located
};

struct StorageRef {  // what a tensor points at: a root, or (old legacy files) a view into one
  size_t root = 0;
  uint64_t offset = 0;  // elements
  uint64_t numel = 0;
};

class Storages {
 public:
  explicit Storages(uint64_t file_size, bool legacy) : file_size_(file_size), legacy_(legacy) {}

  // Interprets one persistent id tuple and returns the index of a StorageRef.
  int64_t declare(const pickle::Machine& m, uint32_t pid) {
    const Value& t = m.at(pid);
    size_t want = legacy_ ? 6 : 5;
    if (t.kind != Kind::kTuple || t.items.size() != want) {
      throw BadFile("persistent id is not a " + std::to_string(want) + "-tuple");
    }
    const Value& tag = m.at(t.items[0]);
    const Value& cls = m.at(t.items[1]);
    const Value& key = m.at(t.items[2]);
    const Value& numel = m.at(t.items[4]);
    if (tag.kind != Kind::kStr || tag.s != "storage")
      throw BadFile("persistent id is not a storage");
    const DTypeInfo* dtype = cls.kind == Kind::kGlobal ? dtype_for(cls.s) : nullptr;
    if (!dtype) throw BadFile("persistent id names no known storage type");
    if (key.kind != Kind::kStr || key.s.size() > 1024) throw BadFile("bad storage key");
    if (numel.kind != Kind::kInt || numel.i < 0) throw BadFile("bad storage size for " + key.s);
    // The bytes must exist in this file; refusing here keeps a forged size from ever reaching an
    // allocation or a pointer computation.
    if (uint64_t(numel.i) > file_size_ / dtype->size) {
      throw BadFile("storage " + key.s + " declares " + std::to_string(numel.i) +
                    " elements, more than the file holds");
    }

    size_t root;
    auto it = by_key_.find(key.s);
    if (it == by_key_.end()) {
      root = roots_.size();
      roots_.push_back(Root{key.s, dtype, uint64_t(numel.i), nullptr});
      by_key_.emplace(key.s, root);
    } else {
      root = it->second;
      if (roots_[root].dtype != dtype || roots_[root].numel != uint64_t(numel.i)) {
        throw BadFile("storage " + key.s + " declared twice with different type or size");
      }
    }
    StorageRef ref{root, 0, uint64_t(numel.i)};
    if (legacy_) {
      const Value& view = m.at(t.items[5]);
      if (view.kind == Kind::kTuple) {
        // (view_key, offset, size): a slice of the root storage, written by old PyTorch.
        if (view.items.size() != 3 || m.at(view.items[1]).kind != Kind::kInt ||
            m.at(view.items[2]).kind != Kind::kInt) {
          throw BadFile("bad storage view of " + key.s);
        }
        int64_t off = m.at(view.items[1]).i, size = m.at(view.items[2]).i;
        if (off < 0 || size < 0 || uint64_t(off) > ref.numel || uint64_t(size) > ref.numel - off) {
          throw BadFile("storage view outside storage " + key.s);
        }
        ref.offset = uint64_t(off);
        ref.numel = uint64_t(size);
      } else if (view.kind != Kind::kNone) {
        throw BadFile("bad storage view of " + key.s);
      }
    }
    refs_.push_back(ref);
    return int64_t(refs_.size() - 1);
  }

  std::vector<Root>& roots() { return roots_; }
  const StorageRef& ref(int64_t i) const { return refs_.at(size_t(i)); }
  Root* find(const std::string& key) {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : &roots_[it->second];
  }

 private:
  uint64_t file_size_;
  bool legacy_;
  std::vector<Root> roots_;
  std::unordered_map<std::string, size_t> by_key_;
  std::vector<StorageRef> refs_;
};

// ---------------------------------------------------------------------------------------------
// From the unpickled object to tensors.

struct Selected {
  std::string name;
  const pickle::TensorRef* tensor;
};

// The top-level object must be a dict of str -> tensor. Returns the kept entries in file order
// (the last one wins for a repeated name, as in Python).
std::vector<Selected> select_tensors(const pickle::Machine& m, uint32_t root,
                                     const std::function<bool(const std::string&)>& keep) {
  const Value& dict = m.at(root);
  if (dict.kind != Kind::kDict) {
    throw BadFile(std::string("top-level object is a ") + pickle::kind_name(dict.kind) +
                  ", not a state_dict");
  }
  std::vector<Selected> out;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const Value& k = m.at(dict.items[i]);
    const Value& v = m.at(dict.items[i + 1]);
    if (k.kind != Kind::kStr) throw BadFile("state_dict key is not a string");
    if (v.kind != Kind::kTensor) {
      throw BadFile("state_dict entry '" + k.s + "' is a " + pickle::kind_name(v.kind) +
                    ", not a tensor");
    }
    Selected s{k.s, &m.tensors()[size_t(v.i)]};
    auto [it, fresh] = index.emplace(k.s, out.size());
    if (fresh) {
      out.push_back(std::move(s));
    } else {
      out[it->second] = std::move(s);
    }
  }
  if (keep) {
    out.erase(
        std::remove_if(out.begin(), out.end(), [&](const Selected& s) { return !keep(s.name); }),
        out.end());
  }
  return out;
}

// Validates a tensor against its storage and returns the number of elements.
uint64_t check_tensor(const Selected& s, const StorageRef& ref) {
  const pickle::TensorRef& t = *s.tensor;
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0 || __builtin_mul_overflow(numel, uint64_t(d), &numel)) {
      throw BadFile("tensor " + s.name + " has an invalid shape");
    }
  }
  if (t.offset < 0) throw BadFile("tensor " + s.name + " has a negative storage offset");
  if (numel == 0) return 0;
  uint64_t last = uint64_t(t.offset);  // largest element index touched
  for (size_t i = 0; i < t.shape.size(); ++i) {
    uint64_t step;
    if (t.stride[i] < 0 ||
        __builtin_mul_overflow(uint64_t(t.shape[i] - 1), uint64_t(t.stride[i]), &step) ||
        __builtin_add_overflow(last, step, &last)) {
      throw BadFile("tensor " + s.name + " has invalid strides");
    }
  }
  if (last >= ref.numel) {
    throw BadFile("tensor " + s.name + " reaches element " + std::to_string(last) +
                  " of a storage with " + std::to_string(ref.numel));
  }
  return numel;
}

// Copies the tensor's elements in row-major order, converting to float.
void gather(const pickle::TensorRef& t, const Root& root, const StorageRef& ref, float* out,
            uint64_t numel) {
  const DTypeInfo& dt = *root.dtype;
  const uint8_t* base = root.data + (ref.offset + uint64_t(t.offset)) * dt.size;
  size_t nd = t.shape.size();
  if (nd == 0) {
    convert(dt, base, 1, 1, out);
    return;
  }
  // Contiguous when every stride equals the product of the later sizes (size-1 dims excepted).
  bool contiguous = true;
  int64_t expect = 1;
  for (size_t i = nd; i-- > 0;) {
    if (t.shape[i] != 1 && t.stride[i] != expect) contiguous = false;
    expect *= t.shape[i];
  }
  if (contiguous) {
    convert(dt, base, 1, size_t(numel), out);
    return;
  }
  // Walk the outer indices like an odometer; each step converts one innermost row.
  const uint64_t row = uint64_t(t.shape[nd - 1]);
  std::vector<int64_t> idx(nd - 1, 0);
  for (uint64_t done = 0; done < numel; done += row) {
    int64_t off = 0;
    for (size_t i = 0; i + 1 < nd; ++i) off += idx[i] * t.stride[i];
    convert(dt, base + uint64_t(off) * dt.size, t.stride[nd - 1], size_t(row), out + done);
    for (size_t i = nd - 1; i-- > 0;) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
}

// Turns the kept tensors into TensorData. Every storage they use must have been located.
StateDict materialise(const std::vector<Selected>& selected, Storages& storages,
                      const MappedFile& file) {
  // Shared storages and zero strides let a small file describe huge tensors; cap what we
  // allocate at a generous multiple of the file size (float from uint8 is 4x, plus sharing).
  const uint64_t budget = 8 * uint64_t(file.size()) + (uint64_t(256) << 20);
  uint64_t total = 0;
  std::vector<uint64_t> counts;
  for (const Selected& s : selected) {
    const StorageRef& ref = storages.ref(s.tensor->storage);
    uint64_t n = check_tensor(s, ref);
    if (n > budget / 4 || (total += n * 4) > budget) {
      throw BadFile("tensors need more memory than a file of this size can justify (at " + s.name +
                    ")");
    }
    counts.push_back(n);
    const Root& root = storages.roots()[ref.root];
    if (n > 0) {
      file.prefetch(root.data + ref.offset * root.dtype->size, ref.numel * root.dtype->size);
    }
  }
  StateDict out;
  for (size_t i = 0; i < selected.size(); ++i) {
    const Selected& s = selected[i];
    const StorageRef& ref = storages.ref(s.tensor->storage);
    TensorData td;
    td.shape = s.tensor->shape;
    td.values.resize(size_t(counts[i]));
    if (counts[i] > 0) {
      gather(*s.tensor, storages.roots()[ref.root], ref, td.values.data(), counts[i]);
    }
    out[s.name] = std::move(td);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The two container formats.

// The first pickle of a legacy file: this integer, as LONG1 little-endian bytes.
constexpr uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr int64_t kLegacyProtocol = 1001;

StateDict read_legacy(const MappedFile& file, const std::function<bool(const std::string&)>& keep) {
  const uint8_t* p = file.data();
  size_t left = file.size(), used = 0;
  auto next = [&](pickle::Machine& m) {
    uint32_t v = m.run(p, left, &used);
    p += used;
    left -= used;
    return v;
  };

  // torch.save before PyTorch 0.1.10 wrote a tar archive; torch.load still reads it, we do not.
  if (file.size() >= 262 && std::memcmp(file.data() + 257, "ustar", 5) == 0) {
    throw BadFile("tar-based torch file (PyTorch < 0.1.10) is not supported; re-save it");
  }
  {
    pickle::Machine m;
    uint32_t magic;
    try {
      magic = next(m);
    } catch (const PickleError&) {
      throw BadFile("not a PyTorch file (no magic number)");
    }
    const Value& v = m.at(magic);
    if (v.kind != Kind::kBigInt || v.s.size() != sizeof kLegacyMagic ||
        std::memcmp(v.s.data(), kLegacyMagic, sizeof kLegacyMagic) != 0) {
      throw BadFile("not a PyTorch file (wrong magic number)");
    }
  }
  {
    pickle::Machine m;
    const Value& v = m.at(next(m));
    if (v.kind != Kind::kInt || v.i != kLegacyProtocol) {
      throw BadFile("unsupported legacy protocol version");
    }
  }
  {
    pickle::Machine m;
    const Value& info = m.at(next(m));
    if (info.kind != Kind::kDict) throw BadFile("bad sys_info record");
    for (size_t i = 0; i + 1 < info.items.size(); i += 2) {
      const Value& k = m.at(info.items[i]);
      const Value& v = m.at(info.items[i + 1]);
      if (k.kind == Kind::kStr && k.s == "little_endian" && !(v.kind == Kind::kBool && v.i)) {
        throw BadFile("big-endian files are not supported");
      }
    }
  }

  Storages storages(file.size(), /*legacy=*/true);
  pickle::Machine main(
      [&](const pickle::Machine& m, uint32_t pid) { return storages.declare(m, pid); });
  std::vector<Selected> selected = select_tensors(main, next(main), keep);

  pickle::Machine keys_machine;
  const Value& keys = keys_machine.at(next(keys_machine));
  if (keys.kind != Kind::kList) throw BadFile("storage key list missing");
  if (keys.items.size() != storages.roots().size()) {
    throw BadFile("storage key list has " + std::to_string(keys.items.size()) +
                  " entries but the pickle uses " + std::to_string(storages.roots().size()));
  }
  // Storages follow in key-list order, each as an int64 count and the raw elements. Only the
  // 8-byte counts are read here; the data stay untouched unless a kept tensor uses them.
  for (uint32_t id : keys.items) {
    const Value& key = keys_machine.at(id);
    if (key.kind != Kind::kStr) throw BadFile("storage key is not a string");
    Root* root = storages.find(key.s);
    if (!root) throw BadFile("storage " + key.s + " is not used by the pickle");
    if (root->data) throw BadFile("storage " + key.s + " listed twice");
    if (left < 8) throw BadFile("truncated (storage " + key.s + " missing)");
    int64_t count = load<int64_t>(p);
    p += 8;
    left -= 8;
    if (count < 0 || uint64_t(count) != root->numel) {
      throw BadFile("storage " + key.s + " holds " + std::to_string(count) +
                    " elements, the pickle declared " + std::to_string(root->numel));
    }
    uint64_t bytes = root->numel * root->dtype->size;  // <= file size, checked in declare()
    if (bytes > left) throw BadFile("truncated (storage " + key.s + " cut short)");
    root->data = p;
    p += bytes;
    left -= size_t(bytes);
  }
  return materialise(selected, storages, file);
}

StateDict read_zip(const MappedFile& file, const std::function<bool(const std::string&)>& keep) {
  zip::Archive archive(file.data(), file.size());
  // The archive's top folder is named after the file torch.save was given, so look for any
  // single-level "<name>/data.pkl".
  std::string prefix;
  for (const zip::Entry& e : archive.entries()) {
    size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (!prefix.empty()) throw BadFile("zip archive holds more than one data.pkl");
      prefix = e.name.substr(0, slash);
    }
  }
  if (prefix.empty()) throw BadFile("zip archive without <archive>/data.pkl (not a torch file)");
  if (const zip::Entry* order = archive.find(prefix + "/byteorder")) {
    // Written by newer torch versions; absent means little-endian.
    const uint8_t* d = archive.stored_data(*order);
    if (order->size != 6 || std::memcmp(d, "little", 6) != 0) {
      throw BadFile("only little-endian files are supported");
    }
  }
  const zip::Entry& pkl = *archive.find(prefix + "/data.pkl");
  const uint8_t* pkl_data = archive.stored_data(pkl);

  Storages storages(file.size(), /*legacy=*/false);
  pickle::Machine m(
      [&](const pickle::Machine& mm, uint32_t pid) { return storages.declare(mm, pid); });
  size_t used = 0;
  std::vector<Selected> selected =
      select_tensors(m, m.run(pkl_data, size_t(pkl.size), &used), keep);

  // Locate only the storages kept tensors use.
  for (const Selected& s : selected) {
    Root& root = storages.roots()[storages.ref(s.tensor->storage).root];
    if (root.data) continue;
    const zip::Entry* e = archive.find(prefix + "/data/" + root.key);
    if (!e) throw BadFile("storage " + root.key + " missing from the archive");
    const uint8_t* data = archive.stored_data(*e);
    if (e->size < root.numel * root.dtype->size) {
      throw BadFile("storage " + root.key + " has " + std::to_string(e->size) + " bytes, needs " +
                    std::to_string(root.numel * root.dtype->size));
    }
    root.data = data;
  }
  return materialise(selected, storages, file);
}

}  // namespace

StateDict read_state_dict(const std::string& path,
                          const std::function<bool(const std::string&)>& keep) {
  auto fail = [&](const std::string& problem) {
    return Error(ErrorKind::kBadWeights, path + ": " + problem);
  };
  try {
    MappedFile file(path);
    if (file.size() >= 4 && std::memcmp(file.data(), zip::kLocalHeaderMagic, 4) == 0) {
      return read_zip(file, keep);
    }
    return read_legacy(file, keep);
  } catch (const BadFile& e) {
    throw fail(e.what());
  } catch (const PickleError& e) {
    throw fail(e.what());
  } catch (const zip::ZipError& e) {
    throw fail(e.what());
  } catch (const std::bad_alloc&) {
    throw fail("out of memory while reading");
  } catch (const std::length_error&) {
    throw fail("out of memory while reading");
  }
}

}  // namespace vggcache
