// Resume and determinism of `extract`: a run killed with SIGKILL mid-way and rerun equals an
// uninterrupted run record for record, byte for byte; crops do not depend on threads or batch.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "common/cache.h"
#include "common/error.h"
#include "extract_fixture.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::make_split;
using testing::run_extract_cmd;
using testing::shell_quote;
using testing::TempDir;

// Starts `argv` in the background with stdout+stderr to `log`. Everything the child needs is
// built before fork(): between fork and exec only async-signal-safe calls are made.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

class ExtractResume : public ::testing::Test {
 protected:
  void SetUp() override {
    carbike_ = testing::carbike_dir();
    if (carbike_.empty()) return;
    // Enough images that a run lasts a second or two: one image per commit (batch == crops).
    make_split(carbike_, tmp_ / "split", 12, /*with_bad=*/true);
  }
  std::vector<std::string> argv(const std::string& out) const {
    return {testing::extract_bin(),
            "--data",
            tmp_ / "split",
            "--out",
            out,
            "--weights",
            "random:11",
            "--size",
            "64",
            "--crops",
            "2",
            "--batch",
            "2",
            "--threads",
            "2",
            "--flip",
            "--seed",
            "7",
            "--quiet"};
  }
  static std::string join(const std::vector<std::string>& argv) {
    std::string s;
    for (size_t i = 1; i < argv.size(); ++i) s += shell_quote(argv[i]) + " ";
    return s;
  }
  TempDir tmp_;
  std::string carbike_;
};

TEST_F(ExtractResume, SigkillThenRerunEqualsUninterruptedRun) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string full = tmp_ / "full", killed = tmp_ / "killed";
  std::string out;
  ASSERT_EQ(run_extract_cmd(join(argv(full)), &out), 0) << out;
  const CacheMeta full_meta = read_cache_meta(full);
  ASSERT_TRUE(full_meta.complete);
  const uint32_t n_images = static_cast<uint32_t>(full_meta.images.size());

  // Kill the child once a few commits are in, well before the end.
  pid_t pid = spawn(argv(killed), tmp_ / "killed.log");
  ASSERT_GT(pid, 0);
  uint32_t seen = 0;
  bool exited = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    try {
      seen = read_cache_meta(killed).next_image;
    } catch (const Error&) {
      seen = 0;  // not created yet
    }
    if (seen >= 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  ASSERT_FALSE(exited) << "the child finished before it could be killed:\n"
                       << testing::read_file(tmp_ / "killed.log");
  const CacheMeta partial = read_cache_meta(killed);
  ASSERT_FALSE(partial.complete);
  ASSERT_GE(partial.next_image, 4u);
  ASSERT_LT(partial.next_image, n_images) << "killed too late to test resuming";

  // A reader refuses the incomplete cache unless asked.
  try {
    CacheReader::open(killed);
    ADD_FAILURE() << "incomplete cache opened without allow_incomplete";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIncomplete);
  }

  ASSERT_EQ(run_extract_cmd(join(argv(killed)), &out), 0) << out;
  EXPECT_NE(out.find(fmt::format("resumed at image {}", partial.next_image)), std::string::npos)
      << out;
  testing::expect_same_records(full, killed);
  const CacheMeta resumed = read_cache_meta(killed);
  EXPECT_TRUE(resumed.complete);
  EXPECT_EQ(resumed.records, full_meta.records);
  ASSERT_EQ(resumed.skipped.size(), full_meta.skipped.size());
  for (size_t i = 0; i < resumed.skipped.size(); ++i) {
    EXPECT_EQ(resumed.skipped[i].image, full_meta.skipped[i].image);
    EXPECT_EQ(resumed.skipped[i].reason, full_meta.skipped[i].reason);
  }
}

TEST_F(ExtractResume, CropsDoNotDependOnThreadsOrBatch) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string a = tmp_ / "a", b = tmp_ / "b";
  std::string out;
  std::vector<std::string> args_a = argv(a), args_b = argv(b);
  args_b[14] = "1";  // --threads 1
  args_b[12] = "7";  // --batch 7: chunks of 3 images, forward batches of 6 and 1 views
  ASSERT_EQ(run_extract_cmd(join(args_a), &out), 0) << out;
  ASSERT_EQ(run_extract_cmd(join(args_b), &out), 0) << out;
  auto ra = CacheReader::open(a), rb = CacheReader::open(b);
  ASSERT_EQ(ra->record_count(), rb->record_count());
  ReadTxn ta = ra->begin(), tb = rb->begin();
  ta.seek_first();
  tb.seek_first();
  double worst = 0;
  RecordView va, vb;
  while (ta.next(&va)) {
    ASSERT_TRUE(tb.next(&vb));
    const RecordHeader &x = va.header, &y = vb.header;
    ASSERT_EQ(x.image, y.image);
    ASSERT_EQ(x.crop, y.crop);
    EXPECT_TRUE(x.box.x == y.box.x && x.box.y == y.box.y && x.box.w == y.box.w &&
                x.box.h == y.box.h && x.box.flipped == y.box.flipped)
        << "record (" << x.image << ", " << x.crop << ")";
    // Features may differ by rounding (other kernels' summation order: VGG16's thirteen 3×3
    // convolutions of 9·C_in terms each, test_vgg16.cpp's bound), no more.
    double diff = 0, scale = 0;
    for (uint32_t i = 0; i < ra->meta().dim; ++i) {
      diff = std::max(diff, std::abs(double(va.data[i]) - vb.data[i]));
      scale = std::max(scale, std::abs(double(vb.data[i])));
    }
    EXPECT_LE(diff, testing::vgg16_features_bound() * scale)
        << "record (" << x.image << ", " << x.crop << ")";
    worst = std::max(worst, diff / scale);
  }
  testing::report_numerics("resumed features vs one run", worst, testing::vgg16_features_bound());
}

}  // namespace
}  // namespace vggcache
