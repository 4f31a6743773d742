#include "finetune_world.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "common/sha256.h"
#include "random_vgg16.h"
#include "test_util.h"
#include "weights/pth_writer.h"

namespace fs = std::filesystem;

namespace vggcache::testing {

using nlohmann::json;

ToolRun tool(const std::string& name, const std::string& args) {
  ToolRun r;
  r.rc = run_command(shell_quote(bin_dir() + "/" + name) + " " + args, &r.output);
  return r;
}

namespace {

void copy_split(const std::string& carbike, const std::string& from, const std::string& dir,
                int per_class) {
  for (const char* cls : {"bicycle", "car"}) {
    fs::create_directories(fs::path(dir) / cls);
    for (int i = 0; i < per_class; ++i) {
      const std::string name = fmt::format("{}_{:04d}.jpg", cls, i);
      fs::copy_file(fmt::format("{}/{}/{}/{}", carbike, from, cls, name),
                    fmt::format("{}/{}/{}", dir, cls, name));
    }
  }
}

// The weights file, the splits and their pool4 and pool5 caches: made once per build tree (each
// test runs in its own process; extract costs a few seconds), keyed on the extract binary, and
// published with an atomic rename so concurrent test processes never see half of it.

void build_world(const std::string& carbike, const std::string& dir) {
  write_random_vgg16(dir + "/vgg16_a.pth", 11);
  // Another file: only its SHA-256 matters to the refusal.
  write_state_dict(dir + "/vgg16_b.pth", {{"features.24.bias", TensorData{{2}, {1.0f, 2.0f}}}});
  copy_split(carbike, "train", dir + "/train", kTrainPerClass);
  copy_split(carbike, "test", dir + "/test", kTestPerClass);
  for (const char* cut : {"pool4", "pool5"}) {
    for (const char* split : {"train", "test"}) {
      const std::string view = std::string(split) == "train"
                                   ? fmt::format("--crops {} --flip", kCrops)
                                   : std::string("--eval");
      ToolRun r = tool("extract", fmt::format("--data {} --out {} --weights {} --cut {} {} "
                                              "--threads 2 --quiet",
                                              shell_quote(dir + "/" + split),
                                              shell_quote(fmt::format("{}/{}.{}", dir, split, cut)),
                                              shell_quote(dir + "/vgg16_a.pth"), cut, view));
      if (r.rc != 0) throw std::runtime_error("extract failed:\n" + r.output);
    }
  }
  write_file(dir + "/complete", "");
}

}  // namespace

World world(const std::string& carbike) {
  struct stat st {};
  const std::string extract = bin_dir() + "/extract";
  stat(extract.c_str(), &st);
  const std::string key =
      fmt::format("v1 {} {} {} {} {} {}", carbike, kTrainPerClass, kTestPerClass, kCrops,
                  static_cast<long long>(st.st_size), static_cast<long long>(st.st_mtime));
  const fs::path final_dir = fs::path(bin_dir()).parent_path() / "testdata" /
                             ("finetune-run-" + sha256_hex(key.data(), key.size()).substr(0, 16));
  if (fs::exists(final_dir / "complete")) return World{final_dir.string()};
  fs::create_directories(final_dir.parent_path());
  std::string tmpl = final_dir.string() + ".tmp-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  build_world(carbike, tmpl);
  std::error_code ec;
  fs::rename(tmpl, final_dir, ec);  // fails when another process published first: use theirs
  if (ec) fs::remove_all(tmpl, ec);
  return World{final_dir.string()};
}

ToolRun train(const World& w, const std::string& cut, const std::string& out,
              const std::string& extra) {
  return tool("train_head",
              fmt::format("--train {} --test {} --out {} {}", shell_quote(w.cache("train", cut)),
                          shell_quote(w.cache("test", cut)), shell_quote(out), extra));
}

json read_json(const std::string& path) {
  return json::parse(read_file(path));
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> v;
  std::istringstream in(read_file(path));
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

void expect_refused(const ToolRun& r, int rc, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.rc, rc) << r.output;
  for (const std::string& p : parts)
    EXPECT_NE(r.output.find(p), std::string::npos) << "'" << p << "' not in:\n" << r.output;
}

}  // namespace vggcache::testing
