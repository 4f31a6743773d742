#include "common/image_folder.h"

#include <algorithm>
#include <filesystem>

#include "common/error.h"

namespace fs = std::filesystem;

namespace vggcache {

bool has_image_extension(const std::string& name) {
  static const char* kExt[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff",
                               ".webp"};
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* e : kExt) {
    size_t n = std::char_traits<char>::length(e);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, e) == 0) return true;
  }
  return false;
}

FolderScan scan_image_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw Error(ErrorKind::kInvalidArgument, dir + ": no such directory");
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorKind::kInvalidArgument, dir + ": not a directory");
  FolderScan scan;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec))
      scan.classes.push_back(e.path().filename().string());
    else
      scan.ignored.push_back(e.path().filename().string());  // ImageFolder ignores top-level files
  }
  if (ec) throw Error(ErrorKind::kIo, dir + ": cannot list: " + ec.message());
  std::sort(scan.classes.begin(), scan.classes.end());
  if (scan.classes.empty())
    throw Error(ErrorKind::kInvalidArgument,
                dir + ": no class folders (expected DIR/<class>/<image>, e.g. DIR/car/0001.jpg)");
  for (size_t label = 0; label < scan.classes.size(); ++label) {
    const std::string& cls = scan.classes[label];
    std::vector<std::string> found;
    // ImageFolder walks class folders recursively and follows links to folders.
    fs::recursive_directory_iterator it(fs::path(dir) / cls,
                                        fs::directory_options::follow_directory_symlink, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const auto& p = it->path();
      // Lexical, not fs::relative: that one resolves links, and a split made of links must keep
      // its own names.
      std::string rel = p.lexically_relative(dir).generic_string();
      if (it->is_directory(ec)) {
        // A directory named like an image is a bad entry, not a folder to ignore silently.
        if (has_image_extension(p.filename().string())) found.push_back(rel);
        continue;
      }
      if (has_image_extension(p.filename().string()))
        found.push_back(rel);  // dangling links too: decode reports them as bad files
      else
        scan.ignored.push_back(rel);
    }
    if (ec) throw Error(ErrorKind::kIo, dir + "/" + cls + ": cannot list: " + ec.message());
    if (found.empty())
      throw Error(ErrorKind::kInvalidArgument,
                  dir + "/" + cls + ": class folder has no image files (" +
                      "extensions: jpg jpeg png ppm bmp pgm tif tiff webp)");
    std::sort(found.begin(), found.end());
    for (auto& f : found) scan.files.push_back({std::move(f), static_cast<int>(label)});
  }
  std::sort(scan.ignored.begin(), scan.ignored.end());
  return scan;
}

}  // namespace vggcache
