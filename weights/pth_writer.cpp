#include "weights/pth_writer.h"

#include <fmt/core.h>

#include <array>
#include <cstdint>
#include <deque>
#include <set>
#include <string_view>

#include "common/error.h"
#include "common/file_util.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "pth_writer stores tensors as they lie in memory: little-endian hosts only");

namespace vggcache {

namespace {

constexpr uint64_t kAlignment = 64;       // torch's writer starts every entry's data at 64 bytes
constexpr uint16_t kPadFieldId = 0x4246;  // "FB": the extra field torch pads with
constexpr uint16_t kZipVersion = 20;      // 2.0: stored entries, no zip64
constexpr uint64_t kZipLimit = 0xFFFFFFFFull;

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the zip checksum.
uint32_t crc32(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put16(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v & 0xFF));
  s->push_back(static_cast<char>(v >> 8));
}
void put32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// The pickle opcodes this writer needs (protocol 2).
class Pickler {
 public:
  Pickler() { out_ += "\x80\x02"; }
  void global(const char* module, const char* name) {
    out_ += fmt::format("c{}\n{}\n", module, name);
  }
  void op(char c) { out_.push_back(c); }
  void str(const std::string& s) {
    op('X');  // BINUNICODE
    put32(&out_, static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');  // BININT1
      out_.push_back(static_cast<char>(v));
    } else if (v >= 0 && v < 65536) {
      op('M');  // BININT2
      put16(&out_, static_cast<uint16_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');  // BININT
      put32(&out_, static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      op('\x8a');  // LONG1: 8 bytes two's complement, little-endian
      out_.push_back(8);
      for (int i = 0; i < 8; ++i)
        out_.push_back(static_cast<char>((uint64_t(v) >> (8 * i)) & 0xFF));
    }
  }
  void int_tuple(const std::vector<int64_t>& v) {
    op('(');  // MARK
    for (int64_t x : v) integer(x);
    op('t');  // TUPLE
  }
  std::string finish() {
    op('.');  // STOP
    return std::move(out_);
  }

 private:
  std::string out_;
};

std::string make_pickle(const OrderedStateDict& tensors) {
  Pickler p;
  p.global("collections", "OrderedDict");
  p.op(')');  // EMPTY_TUPLE
  p.op('R');  // REDUCE: OrderedDict()
  p.op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    p.str(name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');  // its arguments
    p.op('(');  // the persistent id
    p.str("storage");
    p.global("torch", "FloatStorage");
    p.str(std::to_string(i));
    p.str("cpu");
    p.integer(static_cast<int64_t>(t.values.size()));
    p.op('t');
    p.op('Q');     // BINPERSID
    p.integer(0);  // storage offset
    p.int_tuple(t.shape);
    std::vector<int64_t> stride(t.shape.size(), 1);
    for (size_t d = t.shape.size(); d-- > 1;) stride[d - 1] = stride[d] * t.shape[d];
    p.int_tuple(stride);
    p.op('\x89');  // NEWFALSE: requires_grad
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');  // backward_hooks = OrderedDict()
    p.op('t');
    p.op('R');  // _rebuild_tensor_v2(...)
  }
  p.op('u');  // SETITEMS
  return p.finish();
}

void check_tensors(const std::string& path, const OrderedStateDict& tensors) {
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || !names.insert(name).second)
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("{}: empty or duplicate tensor name '{}'", path, name));
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        throw Error(ErrorKind::kInvalidArgument,
                    fmt::format("{}: '{}' has a negative dimension", path, name));
      n *= static_cast<uint64_t>(d);
    }
    if (n != t.values.size())
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("{}: '{}' holds {} values, its shape needs {}", path, name,
                              t.values.size(), n));
  }
}

// The archive as pieces: owned headers (in a deque, so their addresses stay put) and views of the
// entries' data.
class ZipBuilder {
 public:
  explicit ZipBuilder(std::string path) : path_(std::move(path)) {}

  void add(const std::string& name, std::string_view data) {
    const uint32_t crc = crc32(data.data(), data.size());
    const uint64_t fixed = 30 + name.size() + 4;  // local header, name, pad field's id and size
    const uint64_t pad = (kAlignment - (offset_ + fixed) % kAlignment) % kAlignment;
    std::string& h = owned_.emplace_back();
    put32(&h, 0x04034b50);
    put16(&h, kZipVersion);
    put16(&h, 0);  // flags
    put16(&h, 0);  // stored
    put32(&h, 0);  // DOS time and date
    put32(&h, crc);
    put32(&h, checked(data.size()));
    put32(&h, checked(data.size()));
    put16(&h, static_cast<uint16_t>(name.size()));
    put16(&h, static_cast<uint16_t>(4 + pad));
    h += name;
    put16(&h, kPadFieldId);
    put16(&h, static_cast<uint16_t>(pad));
    h.append(pad, 'Z');

    put32(&central_, 0x02014b50);
    put16(&central_, kZipVersion);  // made by
    put16(&central_, kZipVersion);  // needed
    put16(&central_, 0);
    put16(&central_, 0);
    put32(&central_, 0);
    put32(&central_, crc);
    put32(&central_, checked(data.size()));
    put32(&central_, checked(data.size()));
    put16(&central_, static_cast<uint16_t>(name.size()));
    for (int i = 0; i < 4; ++i) put16(&central_, 0);  // extra, comment, disk, internal attributes
    put32(&central_, 0);                              // external attributes
    put32(&central_, checked(offset_));
    central_ += name;

    pieces_.push_back(h);
    pieces_.push_back(data);
    offset_ += h.size() + data.size();
    ++entries_;
  }

  void write() {
    std::string& tail = owned_.emplace_back(std::move(central_));
    put32(&tail, 0x06054b50);
    put32(&tail, 0);  // disk numbers
    put16(&tail, static_cast<uint16_t>(entries_));
    put16(&tail, static_cast<uint16_t>(entries_));
    put32(&tail, checked(tail.size() - 12));
    put32(&tail, checked(offset_));
    put16(&tail, 0);  // comment
    checked(offset_ + tail.size());
    pieces_.push_back(tail);
    write_file_atomically(path_, pieces_);
  }

 private:
  uint32_t checked(uint64_t v) const {
    if (v >= kZipLimit || entries_ >= 0xFFFF)
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("{}: archive too large for a zip without zip64 (4 GiB, 65535 "
                              "entries)",
                              path_));
    return static_cast<uint32_t>(v);
  }

  std::string path_;
  std::deque<std::string> owned_;
  std::vector<std::string_view> pieces_;
  std::string central_;
  uint64_t offset_ = 0;
  size_t entries_ = 0;
};

}  // namespace

void write_state_dict(const std::string& path, const OrderedStateDict& tensors) {
  check_tensors(path, tensors);
  const std::string pickle = make_pickle(tensors);
  ZipBuilder zip(path);
  zip.add("archive/data.pkl", pickle);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::vector<float>& v = tensors[i].second.values;
    zip.add("archive/data/" + std::to_string(i),
            std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
  }
  zip.add("archive/version", "3\n");
  zip.add("archive/byteorder", "little");
  zip.write();
}

}  // namespace vggcache
