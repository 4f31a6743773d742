// read_state_dict against files written by real torch.save (tests/py/make_vgg16_pth.py), and
// against malformed or hostile files built by hand here.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.h"
#include "weights/pth_reader.h"
#include "common/sha256.h"
#include "test_util.h"

namespace vggcache {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::python;
using testing::read_file;
using testing::run_command;
using testing::shell_quote;
using testing::source_dir;
using testing::TempDir;
using testing::write_file;

constexpr int kSeed = 7;

std::string script() {
  return source_dir() + "/tests/py/make_vgg16_pth.py";
}

// Files written by the Python script.
struct Generated {
  std::string dir;
  json reference;
  std::unique_ptr<TempDir> owner;  // set when `dir` is temporary
  std::string operator/(const std::string& name) const { return dir + "/" + name; }
};

void run_script(const std::string& dir, const std::string& flags) {
  std::string out;
  std::string cmd = python() + " " + shell_quote(script()) + " " + shell_quote(dir) + " " +
                    std::to_string(kSeed) + " " + flags;
  int rc = run_command(cmd, &out);
  if (rc != 0) {
    throw std::runtime_error("make_vgg16_pth.py failed (" + std::to_string(rc) + "):\n" + out);
  }
}

// The small edge-case files are cached in the build tree, keyed by the script's content: ctest
// runs every test case in a process of its own, and the script costs seconds per run. A fresh
// directory is renamed into place, so concurrent test processes never see a partial one.
const Generated& edge_files() {
  static std::unique_ptr<Generated> g = [] {
    auto g = std::make_unique<Generated>();
    std::string key = sha256_file(script()).substr(0, 16) + "_" + std::to_string(kSeed);
    fs::path dir = fs::path(testing::bin_dir()) / ".." / "test-data" / ("pth_edge_" + key);
    if (!fs::exists(dir)) {
      fs::path tmp = dir.string() + ".tmp" + std::to_string(::getpid());
      fs::create_directories(tmp);
      run_script(tmp.string(), "--no-vgg --edge-cases");
      std::error_code ec;
      fs::rename(tmp, dir, ec);
      if (ec) fs::remove_all(tmp);  // another process got there first
    }
    g->dir = dir.string();
    g->reference = json::parse(read_file(*g / "edge_reference.json"));
    return g;
  }();
  return *g;
}

// The two full-size VGG16 files (~550 MB each) live in a temporary directory.
const Generated& vgg_files() {
  static std::unique_ptr<Generated> g = [] {
    auto g = std::make_unique<Generated>();
    g->owner = std::make_unique<TempDir>();
    g->dir = g->owner->path();
    run_script(g->dir, "");
    g->reference = json::parse(read_file(*g / "vgg16_reference.json"));
    return g;
  }();
  return *g;
}

float json_float(const json& v) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    return NAN;
  }
  return float(v.get<double>());  // exact: the values were float32 to begin with
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

bool is_features(const std::string& name) {
  return name.rfind("features.", 0) == 0;
}

// Runs read_state_dict expecting kBadWeights with `path` and `needle` in the message.
void expect_bad(const std::string& path, const std::string& needle,
                const std::function<bool(const std::string&)>& keep = nullptr) {
  try {
    read_state_dict(path, keep);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadWeights) << e.what();
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
  }
}

// Either loads or fails with kBadWeights naming the file; anything else (another exception
// type, a crash) fails the test.
bool loads_or_bad(const std::string& path) {
  try {
    read_state_dict(path);
    return true;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadWeights) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    return false;
  }
}

void expect_equal(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    EXPECT_EQ(t.shape, it->second.shape) << name;
    ASSERT_EQ(t.values.size(), it->second.values.size()) << name;
    if (t.values.empty()) continue;  // memcmp must not see the null data() of empty vectors
    EXPECT_EQ(std::memcmp(t.values.data(), it->second.values.data(), t.values.size() * 4), 0)
        << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-built pickles and legacy files, for inputs torch.save would never write.

class PickleBytes {
 public:
  PickleBytes() { s_ = "\x80\x02"; }  // PROTO 2
  PickleBytes& op(const std::string& raw) { return s_ += raw, *this; }
  PickleBytes& global(const std::string& module, const std::string& name) {
    return op("c" + module + "\n" + name + "\n");
  }
  PickleBytes& str(const std::string& v) {
    s_ += 'X';
    le(v.size(), 4);
    return op(v);
  }
  PickleBytes& integer(int64_t v) {
    s_ += "\x8a\x08";  // LONG1 with 8 bytes covers every int64
    le(uint64_t(v), 8);
    return *this;
  }
  PickleBytes& mark() { return op("("); }
  PickleBytes& tuple() { return op("t"); }
  std::string stop() const { return s_ + "."; }
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s_ += char(v >> (8 * i));
  }

 private:
  std::string s_;
};

// The three pickles every legacy file starts with: magic number, protocol 1001, sys_info.
std::string legacy_prefix() {
  std::string magic("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
  std::string protocol("\x80\x02M\xe9\x03.", 6);
  std::string sys_info("\x80\x02}.", 4);
  return magic + protocol + sys_info;
}

// An OrderedDict {name: tensor} whose tensor is _rebuild_tensor_v2 over storage "0" declared with
// `declared` floats, with the given shape/stride.
std::string one_tensor_pickle(const std::string& name, int64_t declared,
                              const std::vector<int64_t>& shape, const std::vector<int64_t>& stride,
                              bool legacy = true) {
  PickleBytes p;
  p.global("collections", "OrderedDict").op(")R").mark().str(name);
  p.global("torch._utils", "_rebuild_tensor_v2").mark();
  p.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(declared);
  if (legacy) p.op("N");
  p.tuple().op("Q");  // BINPERSID
  p.integer(0);       // storage offset
  p.mark();
  for (int64_t d : shape) p.integer(d);
  p.tuple().mark();
  for (int64_t d : stride) p.integer(d);
  p.tuple().op("\x89").global("collections", "OrderedDict").op(")R");  // requires_grad, hooks
  p.tuple().op("R").op("u");                                           // REDUCE, SETITEMS
  return p.stop();
}

// The key-list pickle ['0'], then storage "0": an int64 element count claiming `count`, followed
// by `real` floats 0, 1, 2, ...
std::string one_storage(int64_t count, int64_t real) {
  std::string out = PickleBytes().op("(").str("0").op("l").stop();
  for (int i = 0; i < 8; ++i) out += char(uint64_t(count) >> (8 * i));
  for (int64_t i = 0; i < real; ++i) {
    float f = float(i);
    out.append(reinterpret_cast<const char*>(&f), 4);
  }
  return out;
}

class PthReaderHandMade : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes) {
    std::string path = dir_ / name;
    write_file(path, bytes);
    return path;
  }
  // A zip archive "archive/data.pkl" (+ "archive/data/0" when given), written by Python's zipfile.
  std::string write_zip(const std::string& name, const std::string& pkl,
                        const std::string& storage = std::string()) {
    write_file(dir_ / "pkl.bin", pkl);
    write_file(dir_ / "storage.bin", storage);
    std::string code =
        "import sys, zipfile\n"
        "z = zipfile.ZipFile(sys.argv[1], 'w')\n"
        "z.writestr('archive/data.pkl', open(sys.argv[2], 'rb').read())\n"
        "s = open(sys.argv[3], 'rb').read()\n"
        "if s: z.writestr('archive/data/0', s)\n"
        "z.writestr('archive/version', '3\\n')\n"
        "z.close()\n";
    std::string path = dir_ / name;
    std::string out;
    int rc =
        run_command(python() + " -c " + shell_quote(code) + " " + shell_quote(path) + " " +
                        shell_quote(dir_ / "pkl.bin") + " " + shell_quote(dir_ / "storage.bin"),
                    &out);
    EXPECT_EQ(rc, 0) << out;
    return path;
  }
  TempDir dir_;
};

// ---------------------------------------------------------------------------------------------
// Real files.

// The full-size checks share one test case so that ctest (one process per case) writes the
// 1.1 GB of files once.
void check_both_formats_match_reference(const Generated& g) {
  StateDict legacy = read_state_dict(g / "vgg16_legacy.pth");
  StateDict zip = read_state_dict(g / "vgg16_zip.pth");
  const json& tensors = g.reference["tensors"];
  ASSERT_EQ(legacy.size(), tensors.size());
  ASSERT_EQ(legacy.size(), 32u);  // 13 conv + 3 linear layers, weight and bias each
  for (const auto& [name, ref] : tensors.items()) {
    SCOPED_TRACE(name);
    auto it = legacy.find(name);
    ASSERT_NE(it, legacy.end());
    const TensorData& t = it->second;
    EXPECT_EQ(t.shape, ref["shape"].get<std::vector<int64_t>>());
    for (const json& s : ref["samples"]) {
      size_t i = s[0].get<size_t>();
      ASSERT_LT(i, t.values.size());
      EXPECT_EQ(bits(t.values[i]), bits(json_float(s[1]))) << "at " << i;
    }
    double sum = 0, abs_sum = 0;
    for (float v : t.values) sum += v, abs_sum += std::fabs(v);
    EXPECT_NEAR(sum, ref["sum"].get<double>(), 1e-9 * abs_sum + 1e-12);
  }
  EXPECT_EQ(legacy.at("classifier.0.weight").values.size(), 25088u * 4096u);
  expect_equal(legacy, zip);
}

void check_keep_filter_loads_features_only(const Generated& g) {
  for (const char* file : {"vgg16_legacy.pth", "vgg16_zip.pth"}) {
    SCOPED_TRACE(file);
    std::string path = g / file;
    auto t0 = std::chrono::steady_clock::now();
    StateDict sd = read_state_dict(path, is_features);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "[ timing ] " << file << " features only: " << s * 1000 << " ms\n";
    ::testing::Test::RecordProperty(std::string(file) + "_features_ms", int(s * 1000));
    EXPECT_LT(s, 5.0);  // well under a second on a quiet machine; generous for a loaded one
    ASSERT_EQ(sd.size(), 26u);
    for (const auto& [name, t] : sd) EXPECT_TRUE(is_features(name)) << name;
    const json& ref = g.reference["tensors"]["features.28.weight"];
    const TensorData& w = sd.at("features.28.weight");
    EXPECT_EQ(w.shape, (std::vector<int64_t>{512, 512, 3, 3}));
    for (const json& smp : ref["samples"]) {
      EXPECT_EQ(bits(w.values[smp[0].get<size_t>()]), bits(json_float(smp[1])));
    }
  }
}

void check_truncated_file_is_refused_with_features_kept(const Generated& g) {
  // The cut lands inside classifier storages that are never materialised: the legacy reader
  // still walks every storage header, so it notices.
  TempDir tmp;
  for (const char* file : {"vgg16_legacy.pth", "vgg16_zip.pth"}) {
    std::string path = tmp / file;
    fs::copy_file(g / file, path);
    uint64_t size = fs::file_size(path);
    for (uint64_t cut : {size - 1, size - 4096, size / 2, uint64_t(100000), uint64_t(1000)}) {
      SCOPED_TRACE(std::string(file) + " cut at " + std::to_string(cut));
      fs::resize_file(path, cut);  // cuts only shrink, so one copy serves them all
      expect_bad(path, "", is_features);
    }
  }
}

TEST(PthReaderVgg16, FullSizeFiles) {
  const Generated& g = vgg_files();
  {
    SCOPED_TRACE("both formats match the reference");
    check_both_formats_match_reference(g);
  }
  {
    SCOPED_TRACE("keep filter");
    check_keep_filter_loads_features_only(g);
  }
  {
    SCOPED_TRACE("truncated");
    check_truncated_file_is_refused_with_features_kept(g);
  }
}

TEST(PthReaderEdge, AllFormatsMatchReference) {
  const Generated& g = edge_files();
  const json& tensors = g.reference["tensors"];
  StateDict first;
  for (const char* file : {"edge_legacy.pth", "edge_zip.pth", "edge_zip64.pth"}) {
    SCOPED_TRACE(file);
    StateDict sd = read_state_dict(g / file);
    ASSERT_EQ(sd.size(), tensors.size());
    for (const auto& [name, ref] : tensors.items()) {
      SCOPED_TRACE(name);
      auto it = sd.find(name);
      ASSERT_NE(it, sd.end());
      EXPECT_EQ(it->second.shape, ref["shape"].get<std::vector<int64_t>>());
      const json& values = ref["values"];
      ASSERT_EQ(it->second.values.size(), values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        EXPECT_EQ(bits(it->second.values[i]), bits(json_float(values[i]))) << "at " << i;
      }
    }
    if (first.empty()) {
      first = std::move(sd);
    } else {
      expect_equal(first, sd);
    }
  }
}

TEST(PthReaderEdge, OldStyleTensorsAndPython2OrderedDict) {
  // What PyTorch < 0.4 wrote (torchvision's vgg16-397923af.pth among them).
  const Generated& g = edge_files();
  StateDict old = read_state_dict(g / "edge_old_style.pth");
  StateDict ref = read_state_dict(g / "edge_legacy.pth");
  ref.erase("param");
  expect_equal(old, ref);
}

TEST(PthReaderEdge, PlainDict) {
  const Generated& g = edge_files();
  StateDict sd = read_state_dict(g / "edge_plain_dict.pth");
  ASSERT_EQ(sd.size(), 2u);
  StateDict full = read_state_dict(g / "edge_legacy.pth");
  for (const auto& [name, t] : sd) {
    EXPECT_EQ(t.shape, full.at(name).shape);
    EXPECT_EQ(t.values, full.at(name).values);
  }
}

TEST(PthReaderEdge, KeepFilter) {
  const Generated& g = edge_files();
  auto keep = [](const std::string& n) { return n.rfind("shared_", 0) == 0 || n == "int8"; };
  StateDict sd = read_state_dict(g / "edge_zip.pth", keep);
  ASSERT_EQ(sd.size(), 3u);
  EXPECT_TRUE(sd.count("shared_whole") && sd.count("shared_part") && sd.count("int8"));
  EXPECT_TRUE(
      read_state_dict(g / "edge_legacy.pth", [](const std::string&) { return false; }).empty());
}

TEST(PthReaderEdge, SkippedStoragesAreNeverRead) {
  // Drop the zip entry behind "contiguous": loading fails only if that tensor is kept.
  const Generated& g = edge_files();
  TempDir tmp;
  std::string path = tmp / "missing.pth";
  std::string code =
      "import sys, zipfile, pickletools\n"
      "src = zipfile.ZipFile(sys.argv[1])\n"
      "pkl = src.read('edge_zip/data.pkl')\n"
      "key = None\n"
      "for op, arg, pos in pickletools.genops(pkl):\n"  // the first storage key is contiguous's
      "    if op.name == 'BINUNICODE' and arg.isdigit(): key = arg; break\n"
      "dst = zipfile.ZipFile(sys.argv[2], 'w')\n"
      "for n in src.namelist():\n"
      "    if n != 'edge_zip/data/' + key: dst.writestr(n, src.read(n))\n"
      "dst.close()\n";
  std::string out;
  ASSERT_EQ(run_command(python() + " -c " + shell_quote(code) + " " +
                            shell_quote(g / "edge_zip.pth") + " " + shell_quote(path),
                        &out),
            0)
      << out;
  StateDict sd = read_state_dict(path, [](const std::string& n) { return n != "contiguous"; });
  EXPECT_EQ(sd.size(), g.reference["tensors"].size() - 1);
  expect_bad(path, "missing");
}

TEST(PthReaderEdge, CompressedEntryIsRefused) {
  expect_bad(edge_files() / "edge_deflated.pth", "compressed");
}

TEST(PthReaderEdge, TruncatedAtEveryByte) {
  const Generated& g = edge_files();
  TempDir tmp;
  for (const char* file :
       {"edge_legacy.pth", "edge_zip.pth", "edge_zip64.pth", "edge_old_style.pth"}) {
    std::string path = tmp / file;
    fs::copy_file(g / file, path);
    // Shrink one copy step by step: much cheaper than rewriting a file per cut point.
    for (size_t cut = fs::file_size(path); cut-- > 0;) {
      fs::resize_file(path, cut);
      try {
        read_state_dict(path);
        ADD_FAILURE() << file << " cut at " << cut << " loaded";
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kBadWeights) << e.what();
        ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      }
    }
  }
}

TEST(PthReaderEdge, RandomByteCorruptionNeverCrashes) {
  const Generated& g = edge_files();
  TempDir tmp;
  std::mt19937 rng(1234);
  for (const char* file : {"edge_legacy.pth", "edge_zip.pth", "edge_old_style.pth"}) {
    std::string bytes = read_file(g / file);
    std::string path = tmp / file;
    int loaded = 0, refused = 0;
    for (int trial = 0; trial < 1500; ++trial) {
      std::string b = bytes;
      int flips = 1 + int(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = char(rng());
      write_file(path, b);
      (loads_or_bad(path) ? loaded : refused)++;
    }
    // Corrupting tensor data goes unnoticed (there is no checksum to check); corrupting the
    // pickle or the headers must not.
    EXPECT_GT(refused, 0) << file;
    EXPECT_GT(loaded, 0) << file;
  }
}

TEST(PthReaderEdge, WrongMagic) {
  TempDir tmp;
  std::string bytes = read_file(edge_files() / "edge_legacy.pth");
  bytes[6] ^= 0x01;  // inside the LONG1 magic number
  std::string path = tmp / "magic.pth";
  write_file(path, bytes);
  expect_bad(path, "magic");
}

// ---------------------------------------------------------------------------------------------
// Hand-made files.

TEST_F(PthReaderHandMade, ValidLegacyFileLoads) {
  // Sanity check of the builders the hostile files below are made with.
  std::string path = write(
      "ok.pth", legacy_prefix() + one_tensor_pickle("w", 6, {2, 3}, {3, 1}) + one_storage(6, 6));
  StateDict sd = read_state_dict(path);
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd.at("w").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(sd.at("w").values, (std::vector<float>{0, 1, 2, 3, 4, 5}));

  std::string storage;
  for (int i = 0; i < 6; ++i) {
    float f = float(i);
    storage.append(reinterpret_cast<const char*>(&f), 4);
  }
  std::string zpath =
      write_zip("ok.zip", one_tensor_pickle("w", 6, {3, 2}, {1, 3}, false), storage);
  StateDict zsd = read_state_dict(zpath);
  EXPECT_EQ(zsd.at("w").values, (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST_F(PthReaderHandMade, LegacyStorageView) {
  // Pre-1.0 files could point a tensor at a slice of a storage: view_metadata =
  // (view_key, offset, size) in the persistent id.
  PickleBytes p;
  p.global("collections", "OrderedDict").op(")R").mark().str("v");
  p.global("torch._utils", "_rebuild_tensor").mark();
  p.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(6);
  p.mark().str("view").integer(2).integer(3).tuple();  // elements 2, 3, 4
  p.tuple().op("Q").integer(1).mark().integer(2).tuple().mark().integer(1).tuple();
  p.tuple().op("R").op("u");
  std::string path = write("view.pth", legacy_prefix() + p.stop() + one_storage(6, 6));
  StateDict sd = read_state_dict(path);
  EXPECT_EQ(sd.at("v").values, (std::vector<float>{3, 4}));  // offset 1 within the view

  PickleBytes bad;  // a view reaching past its storage
  bad.global("collections", "OrderedDict").op(")R").mark().str("v");
  bad.global("torch._utils", "_rebuild_tensor").mark();
  bad.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(6);
  bad.mark().str("view").integer(4).integer(3).tuple();
  bad.tuple().op("Q").integer(0).mark().integer(3).tuple().mark().integer(1).tuple();
  bad.tuple().op("R").op("u");
  expect_bad(write("bad_view.pth", legacy_prefix() + bad.stop() + one_storage(6, 6)),
             "outside storage");
}

TEST_F(PthReaderHandMade, EmptyAndMissingFiles) {
  expect_bad(write("empty.pth", ""), "empty");
  expect_bad(dir_ / "does_not_exist.pth", "cannot open");
}

TEST_F(PthReaderHandMade, RandomBytes) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    std::string b(1 + rng() % 3000, '\0');
    for (char& c : b) c = char(rng());
    if (trial % 3 == 1) b.replace(0, 2, "\x80\x02");    // looks like a pickle
    if (trial % 3 == 2) b.replace(0, 4, "PK\x03\x04");  // looks like a zip
    std::string path = write("random.pth", b);
    EXPECT_FALSE(loads_or_bad(path)) << "trial " << trial;
  }
}

TEST_F(PthReaderHandMade, HostileGlobalIsRefusedAndNothingRuns) {
  std::string marker = dir_ / "pwned";
  std::string cmd = "touch " + marker;
  auto hostile = [&](const std::string& module, const std::string& name) {
    return PickleBytes().global(module, name).str(cmd).op("\x85R").stop();  // f(cmd)
  };
  struct Case {
    std::string module, name;
  } cases[] = {{"os", "system"},
               {"posix", "system"},
               {"builtins", "eval"},
               {"subprocess", "call"},
               {"torch", "load"},
               {"torch._utils", "_rebuild_qtensor"},
               {"collections", "OrderedDict.__class__"}};
  for (const Case& c : cases) {
    std::string full = c.module + "." + c.name;
    SCOPED_TRACE(full);
    expect_bad(write("hostile.pth", legacy_prefix() + hostile(c.module, c.name)), full);
    expect_bad(write_zip("hostile.zip", hostile(c.module, c.name)), full);
    // Protocol 4 spelling of the same thing: STACK_GLOBAL.
    std::string stack =
        PickleBytes().str(c.module).str(c.name).op("\x93").str(cmd).op("\x85R").stop();
    expect_bad(write("hostile4.pth", legacy_prefix() + stack), full);
  }
  EXPECT_FALSE(fs::exists(marker));
  // A storage class is allowed as a name but must not be callable.
  expect_bad(write("call_storage.pth",
                   legacy_prefix() + PickleBytes().global("torch", "FloatStorage").op(")R").stop()),
             "torch.FloatStorage");
}

TEST_F(PthReaderHandMade, DeepNesting) {
  std::string marks = PickleBytes().op(std::string(100000, '(')).stop();
  expect_bad(write("marks.pth", legacy_prefix() + marks), "nesting");
  // ((((x,),),)...) with TUPLE1, and [[[...]]] with EMPTY_LIST + APPEND.
  std::string tuples = PickleBytes().op("N").op(std::string(5000, '\x85')).stop();
  expect_bad(write("tuples.pth", legacy_prefix() + tuples), "nesting");
  std::string lists = PickleBytes().op(std::string(5000, ']')).op(std::string(4999, 'a')).stop();
  expect_bad(write("lists.pth", legacy_prefix() + lists), "nesting");
  // Nesting below the limit is accepted (this file then fails only for holding no state_dict).
  std::string shallow = PickleBytes().op("N").op(std::string(900, '\x85')).stop();
  expect_bad(write("shallow.pth", legacy_prefix() + shallow), "not a state_dict");
}

TEST_F(PthReaderHandMade, HugeDeclaredSizes) {
  const int64_t huge = int64_t(1) << 60;
  // Storage size in the persistent id.
  expect_bad(write("huge_pid.pth",
                   legacy_prefix() + one_tensor_pickle("w", huge, {2}, {1}) + one_storage(huge, 2)),
             "declares");
  expect_bad(write_zip("huge_pid.zip", one_tensor_pickle("w", huge, {2}, {1}, false), "abcdefgh"),
             "declares");
  // Element count in the storage header disagreeing with the pickle.
  expect_bad(write("huge_count.pth",
                   legacy_prefix() + one_tensor_pickle("w", 2, {2}, {1}) + one_storage(huge, 2)),
             "holds");
  // A shape reaching past its storage.
  expect_bad(
      write("huge_shape.pth", legacy_prefix() + one_tensor_pickle("w", 4, {int64_t(1) << 40}, {1}) +
                                  one_storage(4, 4)),
      "reaches element");
  // Overflowing shape products.
  expect_bad(write("overflow.pth", legacy_prefix() +
                                       one_tensor_pickle("w", 4, {huge, huge, huge}, {0, 0, 0}) +
                                       one_storage(4, 4)),
             "invalid shape");
  // Zero strides let one element describe a terabyte: refused before allocating.
  expect_bad(write("expand.pth",
                   legacy_prefix() +
                       one_tensor_pickle("w", 1, {int64_t(1) << 20, int64_t(1) << 20}, {0, 0}) +
                       one_storage(1, 1)),
             "memory");
  // A zip entry smaller than its declared storage.
  expect_bad(write_zip("short_entry.zip", one_tensor_pickle("w", 6, {6}, {1}, false), "abcd"),
             "bytes, needs");
  // A string length beyond the end of the pickle.
  std::string long_str = PickleBytes().op("X\xff\xff\xff\x7f").stop();
  expect_bad(write("long_str.pth", legacy_prefix() + long_str), "past the end");
}

TEST_F(PthReaderHandMade, MalformedPickles) {
  auto legacy = [&](const std::string& name, const std::string& pkl) {
    return write(name, legacy_prefix() + pkl);
  };
  expect_bad(legacy("opcode.pth", PickleBytes().op("i").stop()), "unsupported pickle opcode");
  expect_bad(legacy("memo.pth", PickleBytes().op("h\x05").stop()), "memo");
  expect_bad(legacy("underflow.pth", PickleBytes().op("t").stop()), "MARK");
  expect_bad(legacy("underflow2.pth", PickleBytes().op("\x87").stop()), "underflow");
  expect_bad(legacy("nostop.pth", PickleBytes().op("N").stop().substr(0, 3)), "truncated");
  expect_bad(legacy("notensor.pth", PickleBytes().op("}").str("epoch").integer(3).op("s").stop()),
             "'epoch' is a int");
  expect_bad(legacy("list.pth", PickleBytes().op("]").stop()), "not a state_dict");
  expect_bad(write("proto.pth", legacy_prefix().substr(0, 15) + "\x80\x02M\x01\x02."),
             "protocol version");
  expect_bad(write("no_magic.pth", "\x80\x02N."), "magic");
  std::string tar(1024, '\0');
  tar.replace(257, 5, "ustar");
  expect_bad(write("tar.pth", tar), "tar");
  PickleBytes od;  // OrderedDict([1, 2]): items that are not pairs
  od.global("collections", "OrderedDict").op("]").integer(1).op("a").integer(2).op("a");
  expect_bad(legacy("od.pth", od.op("\x85R").stop()), "pair");
}

}  // namespace
}  // namespace vggcache
