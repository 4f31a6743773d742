// `make -f Makefile.data dataset` (data/flickr_dataset.py) against tests/py/fake_flickr_server.py
// on 127.0.0.1: counts, split, names, dedup, bad downloads, manifest, determinism, resume after a
// kill, and the setup errors. The fake's canned results are listed in its CATALOG; with 4 results
// per page each class spans several pages.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "common/sha256.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace vggcache::testing;

namespace {

const char* kKey = "test-key-0123";
const std::vector<std::string> kClasses = {"car", "bicycle"};
// The first 8 usable, unique photos of each class in rank order (6 train + 2 test need 8).
const std::map<std::string, std::set<std::string>> kKept = {
    {"car", {"1001", "1003", "1005", "1008", "1010", "1012", "1013", "1015"}},
    {"bicycle", {"2001", "2002", "2004", "2006", "2007", "2008", "2009", "2010"}}};

// A child process in its own process group, killed with the whole group when it goes out of
// scope: a failing assertion never leaves a server or a builder running.
class Child {
 public:
  Child(const std::vector<std::string>& argv, bool capture_stdout) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int fds[2] = {-1, -1};
    if (capture_stdout && pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      setpgid(0, 0);
      if (capture_stdout) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
      }
      execvp(args[0], args.data());
      _exit(127);
    }
    setpgid(pid_, pid_);  // also here: whichever side runs first, the group exists before a kill
    if (capture_stdout) {
      close(fds[1]);
      fd_ = fds[0];
    }
  }
  ~Child() {
    stop();
    if (fd_ >= 0) close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // One line of the child's stdout, "" on EOF or after timeout_ms.
  std::string read_line(int timeout_ms) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    char c;
    while (true) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, left) <= 0 || read(fd_, &c, 1) != 1) return "";
      if (c == '\n') return line;
      line += c;
    }
  }
  int wait() {
    int st = 0;
    if (waitpid(pid_, &st, 0) < 0) return -1;
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

struct Row {
  std::string split, cls, file, url, id, license, sha256;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// manifest.csv rows (the canned URLs hold no commas or quotes, so a plain split is exact).
std::vector<Row> read_manifest(const std::string& dir) {
  auto lines = lines_of(read_file(dir + "/manifest.csv"));
  EXPECT_FALSE(lines.empty());
  if (lines.empty()) return {};
  EXPECT_EQ(lines[0], "split,class,file,url,photo_id,license,sha256");
  std::vector<Row> rows;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f;
    std::istringstream in(lines[i]);
    for (std::string x; std::getline(in, x, ',');) f.push_back(x);
    EXPECT_EQ(f.size(), 7u) << lines[i];
    if (f.size() == 7) rows.push_back({f[0], f[1], f[2], f[3], f[4], f[5], f[6]});
  }
  return rows;
}

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> expected_names(const std::string& cls, int n) {
  std::vector<std::string> names;
  char buf[64];
  for (int i = 0; i < n; ++i) {
    snprintf(buf, sizeof buf, "%s_%04d.jpg", cls.c_str(), i);
    names.push_back(buf);
  }
  return names;
}

// Photo id -> how many times the fake served it (photo paths are /live/<server>/<id>_<secret>_c.jpg).
std::map<std::string, int> photo_requests(const std::string& log) {
  std::map<std::string, int> n;
  if (!fs::exists(log)) return n;
  for (const auto& l : lines_of(read_file(log))) {
    if (l.rfind("/live/", 0) != 0) continue;
    std::string name = l.substr(l.rfind('/') + 1);
    ++n[name.substr(0, name.find('_'))];
  }
  return n;
}

int total(const std::map<std::string, int>& m) {
  int t = 0;
  for (const auto& [k, v] : m) t += v;
  return t;
}

class DatasetBuilder : public ::testing::Test {
 protected:
  void SetUp() override { start_server(0.0); }

  void start_server(double delay) {
    server_.reset();
    server_ = std::make_unique<Child>(
        std::vector<std::string>{python(), source_dir() + "/tests/py/fake_flickr_server.py",
                                 "--api-key", kKey, "--log", log_, "--delay",
                                 std::to_string(delay), "--lifetime", "120"},
        true);
    std::string line = server_->read_line(20000);
    ASSERT_FALSE(line.empty()) << "the fake Flickr server did not start";
    port_ = std::stoi(line);
  }

  // The make command line; key "" leaves FLICKR_API_KEY unset. MAKEFLAGS from an outer `make test`
  // must not leak into it.
  std::string command(const std::string& dir, const std::string& key, int train, int test,
                      int seed) const {
    std::string env = "env -u FLICKR_API_KEY -u MAKEFLAGS -u MAKELEVEL -u MFLAGS";
    if (!key.empty()) env += " FLICKR_API_KEY=" + shell_quote(key);
    return "cd " + shell_quote(source_dir()) + " && " + env +
           " make --no-print-directory -f Makefile.data dataset PYTHON=" + shell_quote(python()) +
           " DATASET_DIR=" + shell_quote(dir) + " KEYWORDS='car bicycle'" +
           " TRAIN_PER_CLASS=" + std::to_string(train) + " TEST_PER_CLASS=" +
           std::to_string(test) + " SEED=" + std::to_string(seed) +
           " FLICKR_API_BASE=http://127.0.0.1:" + std::to_string(port_) +
           " DATASET_FLAGS='--per-page 4 --retries 2 --retry-wait 0 --timeout 10'";
  }

  int build(const std::string& dir, std::string* out, int seed = 0, const std::string& key = kKey,
            int train = 6, int test = 2) {
    return run_command(command(dir, key, train, test, seed), out);
  }

  TempDir tmp_;
  std::string log_ = tmp_ / "requests.log";
  std::unique_ptr<Child> server_;
  int port_ = 0;
};

// Checks a complete 6 + 2 build: exact files per split and class, manifest rows matching the
// files, unique content, and exactly the expected photos kept.
void expect_complete(const std::string& dir) {
  for (const auto& cls : kClasses) {
    EXPECT_EQ(listing(dir + "/train/" + cls), expected_names(cls, 6)) << cls;
    EXPECT_EQ(listing(dir + "/test/" + cls), expected_names(cls, 2)) << cls;
  }
  auto rows = read_manifest(dir);
  ASSERT_EQ(rows.size(), 16u);
  std::set<std::string> hashes, files;
  std::map<std::string, std::set<std::string>> ids;
  for (const auto& r : rows) {
    EXPECT_EQ(r.file.rfind(r.split + "/" + r.cls + "/" + r.cls + "_", 0), 0u) << r.file;
    EXPECT_EQ(vggcache::sha256_file(dir + "/" + r.file), r.sha256) << r.file;
    EXPECT_NE(r.url.find("/" + r.id + "_"), std::string::npos) << r.url;
    EXPECT_FALSE(r.license.empty());
    hashes.insert(r.sha256);
    files.insert(r.file);
    EXPECT_TRUE(ids[r.cls].insert(r.id).second) << "photo " << r.id << " used twice";
  }
  EXPECT_EQ(hashes.size(), 16u) << "duplicate content in the dataset";
  EXPECT_EQ(files.size(), 16u);
  EXPECT_EQ(ids, kKept);
}

TEST_F(DatasetBuilder, BuildsExactSplitsOfUniqueValidImagesAndLogsSkips) {
  std::string dir = tmp_ / "ds", out;
  ASSERT_EQ(build(dir, &out), 0) << out;
  expect_complete(dir);

  // Every bad case was met, skipped and logged; both duplicates (one across classes) dropped.
  for (const char* s : {"skip car/1002", "skip car/1004", "skip car/1006", "skip car/1009",
                        "skip car/1011", "skip car/1014", "skip bicycle/2005",
                        "duplicate car/1007", "duplicate bicycle/2003"}) {
    EXPECT_NE(out.find(s), std::string::npos) << s << " not in:\n" << out;
  }
  std::string skipped = read_file(dir + "/skipped.csv");
  for (const char* id : {"1002", "1004", "1006", "1009", "1011", "1014", "2005"}) {
    EXPECT_NE(skipped.find(std::string("\n") + (id[0] == '1' ? "car," : "bicycle,") + id + ","),
              std::string::npos)
        << id << " not in skipped.csv:\n" << skipped;
  }
  EXPECT_NE(out.find("downloads/s, ETA"), std::string::npos) << "no progress line:\n" << out;

  auto req = photo_requests(log_);
  EXPECT_EQ(req["1009"], 3) << "the 500 must be tried 1 + --retries times, no more";
  for (const auto& [cls, ids] : kKept)
    for (const auto& id : ids) EXPECT_EQ(req[id], 1) << id;
  // Collection stops once 8 are found: later results are never downloaded.
  for (const char* id : {"1016", "1017", "2011"}) EXPECT_EQ(req.count(id), 0u) << id;
}

TEST_F(DatasetBuilder, SameSeedSameDatasetOtherSeedOtherSplit) {
  std::string a = tmp_ / "a", b = tmp_ / "b", c = tmp_ / "c", out;
  ASSERT_EQ(build(a, &out, 0), 0) << out;
  ASSERT_EQ(build(b, &out, 0), 0) << out;
  EXPECT_EQ(read_file(a + "/manifest.csv"), read_file(b + "/manifest.csv"));
  for (const auto& r : read_manifest(a))
    EXPECT_EQ(read_file(a + "/" + r.file), read_file(b + "/" + r.file)) << r.file;

  ASSERT_EQ(build(c, &out, 1), 0) << out;
  expect_complete(c);
  auto train_ids = [](const std::string& dir) {
    std::set<std::string> s;
    for (const auto& r : read_manifest(dir))
      if (r.split == "train") s.insert(r.id);
    return s;
  };
  EXPECT_NE(train_ids(a), train_ids(c)) << "seed 1 gave the same split as seed 0";

  // Re-splitting an existing build with seed 1 downloads nothing, leaves no stale files and
  // matches the fresh seed-1 build.
  int before = total(photo_requests(log_));
  ASSERT_EQ(build(a, &out, 1), 0) << out;
  EXPECT_EQ(total(photo_requests(log_)), before + 3) << "only the 500 is retried (3 attempts)";
  expect_complete(a);
  EXPECT_EQ(read_file(a + "/manifest.csv"), read_file(c + "/manifest.csv"));
}

TEST_F(DatasetBuilder, ResumesAfterKillWithoutRefetching) {
  start_server(0.03);  // slow photos, so the kill lands mid-way
  std::string dir = tmp_ / "ds", out;
  {
    Child builder({"/bin/sh", "-c", command(dir, kKey, 6, 2, 0) + " >/dev/null 2>&1"}, false);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (total(photo_requests(log_)) < 6 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    builder.stop();  // SIGKILL to make and the builder: no chance to clean up
  }
  ASSERT_FALSE(fs::exists(dir + "/manifest.csv")) << "the build finished before the kill";
  // What the killed run had committed: photos in the pool are never fetched again.
  std::set<std::string> committed;
  for (const auto& cls : kClasses)
    for (const auto& name : listing(dir + "/.state/pool/" + cls))
      if (name.size() > 4 && name.substr(name.size() - 4) == ".jpg")
        committed.insert(name.substr(0, name.size() - 4));
  ASSERT_GE(committed.size(), 1u);
  // A kill can also land mid-write: a cut record line and a stray temporary.
  {
    std::ofstream rec(dir + "/.state/records.jsonl", std::ios::app);
    rec << "{\"class\": \"car\", \"id\": \"10";
  }
  write_file(dir + "/.state/pool/car/1016.jpg.999.tmp", "partial");

  ASSERT_EQ(build(dir, &out), 0) << out;
  expect_complete(dir);
  auto req = photo_requests(log_);
  for (const auto& id : committed) EXPECT_EQ(req[id], 1) << "photo " << id << " fetched again";
  int good = 0;
  for (const auto& [cls, ids] : kKept)
    for (const auto& id : ids) good += req[id];
  // At most the one photo in flight at the kill is fetched twice.
  EXPECT_LE(good, 17);
  EXPECT_FALSE(fs::exists(dir + "/.state/pool/car/1016.jpg.999.tmp"));

  // Same result as an uninterrupted build.
  std::string ref = tmp_ / "ref";
  ASSERT_EQ(build(ref, &out), 0) << out;
  EXPECT_EQ(read_file(dir + "/manifest.csv"), read_file(ref + "/manifest.csv"));
}

TEST_F(DatasetBuilder, MissingApiKeyIsAClearError) {
  std::string dir = tmp_ / "ds", out;
  EXPECT_NE(build(dir, &out, 0, ""), 0);
  EXPECT_NE(out.find("FLICKR_API_KEY is not set"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(DatasetBuilder, RejectedApiKeyIsAClearError) {
  std::string dir = tmp_ / "ds", out;
  EXPECT_NE(build(dir, &out, 0, "wrong-key"), 0);
  EXPECT_NE(out.find("Flickr API error 100: Invalid API Key"), std::string::npos) << out;
  EXPECT_EQ(out.find("wrong-key"), std::string::npos) << "the key leaked into the output";
  EXPECT_FALSE(fs::exists(dir + "/manifest.csv"));
  EXPECT_FALSE(fs::exists(dir + "/train"));
}

TEST_F(DatasetBuilder, RefusesSymlinkedDatasetDir) {
  // `make -f Makefile.data sample` links the shared dataset as data/dataset: never write there.
  std::string shared = tmp_ / "shared", link = tmp_ / "dataset", out;
  fs::create_directories(shared);
  fs::create_directory_symlink(shared, link);
  EXPECT_NE(build(link, &out), 0);
  EXPECT_NE(out.find("is a symlink"), std::string::npos) << out;
  EXPECT_TRUE(listing(shared).empty());
  EXPECT_TRUE(photo_requests(log_).empty());
}

TEST_F(DatasetBuilder, SearchRunningOutSaysHowManyWereFound) {
  std::string dir = tmp_ / "ds", out;
  EXPECT_NE(build(dir, &out, 0, kKey, 10, 3), 0);
  EXPECT_NE(out.find("car: the search ran out after 17 results with 10 usable unique images; "
                     "13 needed"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("bicycle: the search ran out after 11 results with 9 usable"),
            std::string::npos)
      << out;
  EXPECT_FALSE(fs::exists(dir + "/manifest.csv"));
  EXPECT_FALSE(fs::exists(dir + "/train"));
}

}  // namespace
