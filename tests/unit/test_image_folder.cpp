// ImageFolder scanning: class order, file order, extensions, layout errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "common/image_folder.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace vggcache {
namespace {

using testing::TempDir;
using testing::write_file;

TEST(ImageFolder, SortedClassesAndFilesWithTorchvisionExtensions) {
  TempDir tmp;
  for (auto d : {"car", "bicycle", "bicycle/sub"}) fs::create_directories(tmp / d);
  for (auto f : {"car/b.JPG", "car/a.png", "car/notes.txt", "bicycle/z.jpeg", "bicycle/A.webp",
                 "bicycle/sub/x.tiff", "bicycle/y.gif", "top.jpg"})
    write_file(tmp / f, "x");
  FolderScan s = scan_image_folder(tmp.path());
  EXPECT_EQ(s.classes, (std::vector<std::string>{"bicycle", "car"}));
  std::vector<std::string> got;
  for (auto& e : s.files) got.push_back(e.rel_path + ":" + std::to_string(e.label));
  EXPECT_EQ(got, (std::vector<std::string>{"bicycle/A.webp:0", "bicycle/sub/x.tiff:0",
                                           "bicycle/z.jpeg:0", "car/a.png:1", "car/b.JPG:1"}));
  EXPECT_EQ(s.ignored, (std::vector<std::string>{"bicycle/y.gif", "car/notes.txt", "top.jpg"}));
}

TEST(ImageFolder, LayoutErrorsNameTheDirectory) {
  TempDir tmp;
  auto expect_error = [](const std::string& dir, const std::string& what) {
    try {
      scan_image_folder(dir);
      FAIL() << dir;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
    }
  };
  expect_error(tmp / "missing", "no such directory");
  write_file(tmp / "file", "x");
  expect_error(tmp / "file", "not a directory");
  fs::create_directories(tmp / "flat");
  write_file(tmp / "flat/a.jpg", "x");
  expect_error(tmp / "flat", "no class folders");
  fs::create_directories(tmp / "split/car");
  fs::create_directories(tmp / "split/empty");
  write_file(tmp / "split/car/a.jpg", "x");
  expect_error(tmp / "split", "has no image files");
}

TEST(ImageFolder, OddNamesAndDirectoriesNamedLikeImages) {
  TempDir tmp;
  fs::create_directories(tmp / "only/dir.jpg");
  write_file(tmp / "only/with space.jpg", "x");
  write_file(tmp / "only/new\nline.png", "x");
  write_file(tmp / "only/\xff\xfe.jpg", "x");  // not UTF-8
  fs::create_symlink(tmp / "nowhere.jpg", tmp / "only/dangling.jpg");
  FolderScan s = scan_image_folder(tmp.path());
  ASSERT_EQ(s.classes, std::vector<std::string>{"only"});
  std::vector<std::string> got;
  for (auto& e : s.files) got.push_back(e.rel_path);
  // Everything image-named is listed (bad ones are reported by the decoder), in byte order.
  EXPECT_EQ(got, (std::vector<std::string>{"only/dangling.jpg", "only/dir.jpg",
                                           "only/new\nline.png", "only/with space.jpg",
                                           "only/\xff\xfe.jpg"}));
}

}  // namespace
}  // namespace vggcache
