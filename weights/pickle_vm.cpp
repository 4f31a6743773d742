#include "weights/pickle_vm.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace vggcache::pickle {
namespace {

// Opcodes (Python's Lib/pickletools.py documents each one).
enum Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinString = 'T',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kProto = 0x80,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

// Reads opcode arguments with bounds checks; every overrun is a truncated pickle.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  size_t pos() const { return pos_; }
  const uint8_t* take(size_t k) {
    if (k > n_ - pos_)
      throw PickleError("truncated pickle (needs " + std::to_string(k) + " more bytes at offset " +
                        std::to_string(pos_) + ")");
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint8_t u8() { return *take(1); }
  uint64_t le(size_t k) {  // unsigned little-endian integer of k <= 8 bytes
    const uint8_t* b = take(k);
    uint64_t v = 0;
    for (size_t i = 0; i < k; ++i) v |= uint64_t(b[i]) << (8 * i);
    return v;
  }
  std::string bytes(uint64_t k) {
    if (k > n_ - pos_)
      throw PickleError("string of " + std::to_string(k) +
                        " bytes runs past the end of the pickle");
    const uint8_t* b = take(size_t(k));
    return std::string(reinterpret_cast<const char*>(b), size_t(k));
  }
  std::string line() {  // GLOBAL's newline-terminated module and name
    std::string s;
    for (;;) {
      char c = char(u8());
      if (c == '\n') return s;
      if (s.size() >= 256) throw PickleError("GLOBAL name longer than 256 bytes");
      s += c;
    }
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kBigInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kStr:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kTuple:
      return "tuple";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
    case Kind::kStorage:
      return "storage";
    case Kind::kTensor:
      return "tensor";
  }
  return "?";
}

Machine::Machine(PersistentLoad persistent_load, Limits limits)
    : persistent_load_(std::move(persistent_load)), limits_(limits) {}

uint32_t Machine::add(Value v) {
  if (values_.size() >= limits_.max_values) {
    throw PickleError("more than " + std::to_string(limits_.max_values) + " pickle values");
  }
  values_.push_back(std::move(v));
  return uint32_t(values_.size() - 1);
}

void Machine::push(uint32_t id) {
  if (stack_.size() >= limits_.max_stack) throw PickleError("pickle stack overflow");
  stack_.push_back(id);
}

uint32_t Machine::pop() {
  size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) throw PickleError("pickle stack underflow");
  uint32_t id = stack_.back();
  stack_.pop_back();
  return id;
}

uint32_t Machine::top() const {
  size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) throw PickleError("pickle stack underflow");
  return stack_.back();
}

size_t Machine::pop_mark() {
  if (marks_.empty()) throw PickleError("pickle MARK missing");
  size_t m = marks_.back();
  marks_.pop_back();
  return m;
}

uint32_t Machine::make_sequence(Kind kind, size_t from) {
  Value v;
  v.kind = kind;
  v.items.assign(stack_.begin() + ptrdiff_t(from), stack_.end());
  stack_.resize(from);
  uint32_t depth = 0;
  for (uint32_t id : v.items) depth = std::max(depth, values_[id].depth);
  v.depth = depth + 1;
  if (v.depth > limits_.max_depth) {
    throw PickleError("pickle nesting deeper than " + std::to_string(limits_.max_depth));
  }
  return add(std::move(v));
}

void Machine::append_to(uint32_t container, uint32_t item) {
  Value& c = values_[container];
  if (c.kind != Kind::kList) {
    throw PickleError(std::string("APPEND to a ") + kind_name(c.kind) + ", not a list");
  }
  c.depth = std::max(c.depth, values_[item].depth + 1);
  if (c.depth > limits_.max_depth) {
    throw PickleError("pickle nesting deeper than " + std::to_string(limits_.max_depth));
  }
  c.items.push_back(item);
}

void Machine::set_item(uint32_t dict, uint32_t key, uint32_t value) {
  Value& d = values_[dict];
  if (d.kind != Kind::kDict) {
    throw PickleError(std::string("SETITEM on a ") + kind_name(d.kind) + ", not a dict");
  }
  d.depth = std::max({d.depth, values_[key].depth + 1, values_[value].depth + 1});
  if (d.depth > limits_.max_depth) {
    throw PickleError("pickle nesting deeper than " + std::to_string(limits_.max_depth));
  }
  d.items.push_back(key);
  d.items.push_back(value);
}

uint32_t Machine::run(const uint8_t* data, size_t n, size_t* consumed) {
  stack_.clear();
  marks_.clear();
  memo_.clear();
  Cursor in(data, n);
  auto memo_put = [&](uint64_t key) {
    if (memo_.size() >= limits_.max_memo && !memo_.count(key)) {
      throw PickleError("pickle memo larger than " + std::to_string(limits_.max_memo));
    }
    memo_[key] = top();
  };
  auto memo_get = [&](uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) throw PickleError("pickle memo key " + std::to_string(key) + " unset");
    push(it->second);
  };
  auto scalar = [&](Kind kind, int64_t i) {
    Value v;
    v.kind = kind;
    v.i = i;
    push(add(std::move(v)));
  };
  auto text = [&](Kind kind, uint64_t len) {
    Value v;
    v.kind = kind;
    v.s = in.bytes(len);
    push(add(std::move(v)));
  };
  for (;;) {
    size_t op_pos = in.pos();
    uint8_t op = in.u8();
    switch (op) {
      case kProto: {
        uint8_t version = in.u8();
        if (version > 5) throw PickleError("pickle protocol " + std::to_string(version));
        break;
      }
      case kFrame:
        in.le(8);  // framing only helps buffered readers; the whole pickle is in memory
        break;
      case kStop: {
        if (!marks_.empty()) throw PickleError("pickle ends inside a MARK");
        uint32_t result = pop();
        *consumed = in.pos();
        return result;
      }
      case kMark:
        if (marks_.size() >= limits_.max_depth) {
          throw PickleError("pickle nesting deeper than " + std::to_string(limits_.max_depth));
        }
        marks_.push_back(stack_.size());
        break;
      case kPop:
        pop();
        break;
      case kPopMark:
        stack_.resize(pop_mark());
        break;
      case kDup:
        push(top());
        break;
      case kNone:
        scalar(Kind::kNone, 0);
        break;
      case kNewTrue:
        scalar(Kind::kBool, 1);
        break;
      case kNewFalse:
        scalar(Kind::kBool, 0);
        break;
      case kBinInt:
        scalar(Kind::kInt, int32_t(uint32_t(in.le(4))));
        break;
      case kBinInt1:
        scalar(Kind::kInt, in.le(1));
        break;
      case kBinInt2:
        scalar(Kind::kInt, in.le(2));
        break;
      case kLong1:
      case kLong4: {
        uint64_t len = in.le(op == kLong1 ? 1 : 4);
        if (len > limits_.max_int_bytes) {
          throw PickleError("pickled integer of " + std::to_string(len) + " bytes");
        }
        Value v;
        v.s = in.bytes(len);
        if (len <= 8) {
          // Sign-extend the two's complement little-endian value.
          uint64_t u = 0;
          for (size_t i = 0; i < len; ++i) u |= uint64_t(uint8_t(v.s[i])) << (8 * i);
          if (len > 0 && len < 8 && (uint8_t(v.s[len - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * len);
          v.kind = Kind::kInt;
          v.i = int64_t(u);
        } else {
          v.kind = Kind::kBigInt;
        }
        push(add(std::move(v)));
        break;
      }
      case kBinFloat: {
        const uint8_t* b = in.take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | b[i];  // big-endian
        Value v;
        v.kind = Kind::kFloat;
        std::memcpy(&v.f, &bits, 8);
        push(add(std::move(v)));
        break;
      }
      case kShortBinUnicode:
        text(Kind::kStr, in.le(1));
        break;
      case kBinUnicode:
        text(Kind::kStr, in.le(4));
        break;
      case kBinUnicode8:
        text(Kind::kStr, in.le(8));
        break;
      case kShortBinString:  // Python 2 str, which Python 3 decodes to str
        text(Kind::kStr, in.le(1));
        break;
      case kBinString: {
        int32_t len = int32_t(uint32_t(in.le(4)));
        if (len < 0) throw PickleError("negative BINSTRING length");
        text(Kind::kStr, uint64_t(len));
        break;
      }
      case kShortBinBytes:
        text(Kind::kBytes, in.le(1));
        break;
      case kBinBytes:
        text(Kind::kBytes, in.le(4));
        break;
      case kBinBytes8:
        text(Kind::kBytes, in.le(8));
        break;
      case kEmptyTuple:
        push(make_sequence(Kind::kTuple, stack_.size()));
        break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        size_t k = op - kTuple1 + 1;
        size_t floor = marks_.empty() ? 0 : marks_.back();
        if (stack_.size() < floor + k) throw PickleError("pickle stack underflow");
        push(make_sequence(Kind::kTuple, stack_.size() - k));
        break;
      }
      case kTuple:
        push(make_sequence(Kind::kTuple, pop_mark()));
        break;
      case kEmptyList:
        push(make_sequence(Kind::kList, stack_.size()));
        break;
      case kList:
        push(make_sequence(Kind::kList, pop_mark()));
        break;
      case kAppend: {
        uint32_t item = pop();
        append_to(top(), item);
        break;
      }
      case kAppends: {
        size_t m = pop_mark();
        if (m == 0 || (!marks_.empty() && m <= marks_.back())) {
          throw PickleError("APPENDS without a list");
        }
        uint32_t list = stack_[m - 1];
        for (size_t i = m; i < stack_.size(); ++i) append_to(list, stack_[i]);
        stack_.resize(m);
        break;
      }
      case kEmptyDict: {
        Value v;
        v.kind = Kind::kDict;
        v.depth = 1;
        push(add(std::move(v)));
        break;
      }
      case kDict: {
        size_t m = pop_mark();
        if ((stack_.size() - m) % 2 != 0) throw PickleError("DICT with an odd number of items");
        Value v;
        v.kind = Kind::kDict;
        v.depth = 1;
        uint32_t dict = add(std::move(v));
        for (size_t i = m; i < stack_.size(); i += 2) set_item(dict, stack_[i], stack_[i + 1]);
        stack_.resize(m);
        push(dict);
        break;
      }
      case kSetItem: {
        uint32_t value = pop();
        uint32_t key = pop();
        set_item(top(), key, value);
        break;
      }
      case kSetItems: {
        size_t m = pop_mark();
        if (m == 0 || (!marks_.empty() && m <= marks_.back())) {
          throw PickleError("SETITEMS without a dict");
        }
        if ((stack_.size() - m) % 2 != 0) throw PickleError("SETITEMS with an odd number of items");
        uint32_t dict = stack_[m - 1];
        for (size_t i = m; i < stack_.size(); i += 2) set_item(dict, stack_[i], stack_[i + 1]);
        stack_.resize(m);
        break;
      }
      case kGlobal: {
        std::string module = in.line();
        std::string name = in.line();
        push(global(module, name));
        break;
      }
      case kStackGlobal: {
        uint32_t name = pop();
        uint32_t module = pop();
        if (values_[name].kind != Kind::kStr || values_[module].kind != Kind::kStr) {
          throw PickleError("STACK_GLOBAL needs two strings");
        }
        push(global(values_[module].s, values_[name].s));
        break;
      }
      case kReduce: {
        uint32_t args = pop();
        uint32_t fn = pop();
        push(reduce(fn, args));
        break;
      }
      case kBuild: {
        // Sets attributes from a state; torch uses it only to attach `_metadata` (layer versions)
        // to the OrderedDict, which a reader of tensor values can ignore.
        pop();
        if (values_[top()].kind != Kind::kDict) {
          throw PickleError(std::string("BUILD on a ") + kind_name(values_[top()].kind));
        }
        break;
      }
      case kBinPersId: {
        if (!persistent_load_) throw PickleError("unexpected persistent id");
        uint32_t pid = pop();
        int64_t storage = persistent_load_(*this, pid);
        scalar(Kind::kStorage, storage);
        break;
      }
      case kBinPut:
        memo_put(in.le(1));
        break;
      case kLongBinPut:
        memo_put(in.le(4));
        break;
      case kMemoize:
        memo_put(memo_.size());
        break;
      case kBinGet:
        memo_get(in.le(1));
        break;
      case kLongBinGet:
        memo_get(in.le(4));
        break;
      default: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x at offset %zu", op,
                      op_pos);
        throw PickleError(buf);
      }
    }
  }
}

}  // namespace vggcache::pickle
