// `make -f Makefile.data weights` and data/check_weights.sh without network: a real file with its
// real SHA-256 prefix is kept, a wrong one is deleted with a clear message, an existing file is
// only checked (curl is replaced by a stub that records any call), and a missing one is
// "downloaded" by the stub to WEIGHTS.part, checked there and renamed only when it matches.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/sha256.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace vggcache::testing;

namespace {

const std::string kContent = "not really vgg16 weights, but bytes with a known SHA-256\n";

std::string content_sha() {
  return vggcache::sha256_hex(kContent.data(), kContent.size());
}

int check(const std::string& file, const std::string& prefix, std::string* out) {
  return run_command("sh " + shell_quote(source_dir() + "/data/check_weights.sh") + " " +
                         shell_quote(file) + " " + shell_quote(prefix),
                     out);
}

// A PATH directory whose `curl` records its arguments in CALLED and writes kContent to its -o file.
std::string fake_curl_dir(const TempDir& tmp) {
  const std::string dir = tmp / "fakebin";
  fs::create_directories(dir);
  write_file(dir + "/curl",
             "#!/bin/sh\n"
             "echo \"$@\" >> " +
                 shell_quote(tmp / "CALLED") +
                 "\n"
                 "while [ $# -gt 0 ]; do\n"
                 "  if [ \"$1\" = -o ]; then printf '%s' " +
                 shell_quote(kContent) +
                 " > \"$2\"; fi\n"
                 "  shift\n"
                 "done\n");
  fs::permissions(dir + "/curl", fs::perms::owner_all);
  return dir;
}

int make_weights(const TempDir& tmp, const std::string& weights, const std::string& prefix,
                 std::string* out) {
  std::string cmd = "PATH=" + shell_quote(fake_curl_dir(tmp)) + ":\"$PATH\" make -s -C " +
                    shell_quote(source_dir()) +
                    " -f Makefile.data weights WEIGHTS=" + shell_quote(weights) +
                    " WEIGHTS_URL=https://example.invalid/vgg16.pth";
  if (!prefix.empty()) cmd += " WEIGHTS_SHA_PREFIX=" + shell_quote(prefix);
  return run_command(cmd, out);
}

TEST(CheckWeights, MatchingPrefixKeepsTheFile) {
  TempDir tmp;
  const std::string f = tmp / "w.pth";
  write_file(f, kContent);
  std::string out;
  EXPECT_EQ(check(f, content_sha().substr(0, 8), &out), 0) << out;
  EXPECT_TRUE(fs::exists(f));
  EXPECT_NE(out.find("OK"), std::string::npos) << out;
  // The whole digest and upper-case hex are prefixes too.
  EXPECT_EQ(check(f, content_sha(), &out), 0) << out;
  std::string upper = content_sha().substr(0, 8);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(check(f, upper, &out), 0) << out;
}

TEST(CheckWeights, WrongPrefixDeletesTheFileAndSaysWhy) {
  TempDir tmp;
  const std::string f = tmp / "w.pth";
  write_file(f, kContent);
  const std::string got = content_sha().substr(0, 8);
  const std::string wrong = got[0] == '0' ? "1" + got.substr(1) : "0" + got.substr(1);
  std::string out;
  EXPECT_EQ(check(f, wrong, &out), 1) << out;
  EXPECT_FALSE(fs::exists(f));
  EXPECT_NE(out.find(f), std::string::npos) << out;
  EXPECT_NE(out.find(got), std::string::npos) << out;
  EXPECT_NE(out.find(wrong), std::string::npos) << out;
  EXPECT_NE(out.find("deleting"), std::string::npos) << out;
}

TEST(CheckWeights, UsageErrorsAndMissingFile) {
  TempDir tmp;
  const std::string f = tmp / "w.pth";
  write_file(f, kContent);
  std::string out;
  EXPECT_EQ(check(f, "not-hex", &out), 2) << out;
  EXPECT_EQ(check(f, "", &out), 2) << out;
  EXPECT_TRUE(fs::exists(f)) << "a usage error must not delete anything";
  EXPECT_EQ(check(tmp / "missing.pth", "397923af", &out), 1) << out;
  EXPECT_NE(out.find("no such file"), std::string::npos) << out;
}

TEST(MakeWeights, ExistingWrongFileIsDeletedWithoutDownloading) {
  TempDir tmp;
  const std::string f = tmp / "vgg16-397923af.pth";
  write_file(f, kContent);  // its SHA-256 does not start with 397923af
  std::string out;
  EXPECT_NE(make_weights(tmp, f, "", &out), 0) << out;
  EXPECT_FALSE(fs::exists(f));
  EXPECT_NE(out.find("expected 397923af"), std::string::npos) << out;
  EXPECT_NE(out.find("again"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(tmp / "CALLED")) << "an existing file must not be downloaded again";
}

TEST(MakeWeights, ExistingRightFileIsKeptWithoutDownloading) {
  TempDir tmp;
  const std::string f = tmp / "w.pth";
  write_file(f, kContent);
  std::string out;
  EXPECT_EQ(make_weights(tmp, f, content_sha().substr(0, 8), &out), 0) << out;
  EXPECT_EQ(read_file(f), kContent);
  EXPECT_FALSE(fs::exists(tmp / "CALLED"));
}

TEST(MakeWeights, MissingFileIsDownloadedCheckedAndRenamed) {
  TempDir tmp;
  const std::string f = tmp / "w.pth";
  std::string out;
  EXPECT_EQ(make_weights(tmp, f, content_sha().substr(0, 8), &out), 0) << out;
  EXPECT_TRUE(fs::exists(tmp / "CALLED"));
  EXPECT_EQ(read_file(f), kContent);
  EXPECT_FALSE(fs::exists(f + ".part"));
}

TEST(MakeWeights, WrongDownloadIsDeletedAndNeverRenamed) {
  TempDir tmp;
  const std::string f = tmp / "vgg16-397923af.pth";
  std::string out;
  EXPECT_NE(make_weights(tmp, f, "", &out), 0) << out;
  EXPECT_TRUE(fs::exists(tmp / "CALLED"));
  EXPECT_FALSE(fs::exists(f));
  EXPECT_FALSE(fs::exists(f + ".part"));
  EXPECT_NE(out.find("expected 397923af"), std::string::npos) << out;
}

}  // namespace
