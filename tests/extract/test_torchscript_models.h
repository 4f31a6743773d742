// TorchScript files for the backbone tests, made by tests/py/ref_torchscript.py with Debian's
// PyTorch, once per build tree (vit_b_16's is ~330 MB and takes seconds to trace), plus the small
// helpers the TorchScript and backbone tests share.
#pragma once
#include <fmt/core.h>
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "test_util.h"

namespace vggcache::testing {

inline std::string ts_script() {
  return source_dir() + "/tests/py/ref_torchscript.py";
}

// testdata/NAME-<key>/ made by `make(tmp)` unless it exists; `key` names what it depends on.
// Published with an atomic rename so that concurrent test processes never see half of it.
template <class Make>
std::string published_dir(const std::string& name, const std::string& key, Make make) {
  namespace fs = std::filesystem;
  const std::string k = read_file(ts_script()) + key;
  const fs::path final_dir = fs::path(bin_dir()).parent_path() / "testdata" /
                             (name + "-" + sha256_hex(k.data(), k.size()).substr(0, 16));
  if (fs::exists(final_dir / "complete")) return final_dir.string();
  fs::create_directories(final_dir.parent_path());
  std::string tmpl = final_dir.string() + ".tmp-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  std::string out;
  make(tmpl, &out);
  if (!fs::exists(fs::path(tmpl) / "complete"))
    throw std::runtime_error("making " + final_dir.string() + " failed:\n" + out);
  std::error_code ec;
  fs::rename(tmpl, final_dir, ec);  // fails when another process published first: use theirs
  if (ec) fs::remove_all(tmpl, ec);
  return final_dir.string();
}

// torchvision's `model` (resnet18, vgg16, vit_b_16) with torch.manual_seed(1) weights, traced at
// `size` px and saved with torch.jit.save: the file's path.
inline std::string torchscript_model(const std::string& model, int size) {
  const std::string dir =
      published_dir("ts-" + model, fmt::format("{} {}", model, size),
                    [&](const std::string& tmp, std::string* out) {
                      if (run_command(fmt::format("{} {} save {} {} --size {} --seed 1", python(),
                                                  shell_quote(ts_script()), model,
                                                  shell_quote(tmp + "/model.pt"), size),
                                      out) == 0)
                        write_file(tmp + "/complete", "");
                    });
  return dir + "/model.pt";
}

// The modules extract must refuse (ref_torchscript.py bad): the directory holding them.
inline std::string bad_torchscript_models() {
  return published_dir("ts-bad", "bad", [&](const std::string& tmp, std::string* out) {
    if (run_command(
            fmt::format("{} {} bad {}", python(), shell_quote(ts_script()), shell_quote(tmp)),
            out) == 0)
      write_file(tmp + "/complete", "");
  });
}

// SPLIT/<class>/<name> for the first `per_class` images of each class of carbike64's `from`
// split ("train" or "test"): a small ImageFolder split.
inline void copy_carbike_split(const std::string& carbike, const std::string& from,
                               const std::string& split, int per_class) {
  namespace fs = std::filesystem;
  for (const char* cls : {"bicycle", "car"}) {
    fs::create_directories(fs::path(split) / cls);
    for (int i = 0; i < per_class; ++i) {
      const std::string name = fmt::format("{}_{:04d}.jpg", cls, i);
      fs::copy_file(fmt::format("{}/{}/{}/{}", carbike, from, cls, name),
                    fmt::format("{}/{}/{}", split, cls, name));
    }
  }
}

struct ToolResult {
  int rc = -1;
  std::string output;  // stdout and stderr
};

inline ToolResult run_tool(const std::string& name, const std::string& args) {
  ToolResult r;
  r.rc = run_command(shell_quote(bin_dir() + "/" + name) + " " + args, &r.output);
  return r;
}

}  // namespace vggcache::testing
