#include "predict/inputs.h"

#include <algorithm>
#include <filesystem>

#include "common/error.h"
#include "common/image_folder.h"

namespace fs = std::filesystem;

namespace vggcache {

namespace {

std::vector<std::string> images_under(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!has_image_extension(it->path().filename().string())) continue;
    // Dangling links and folders named like images stay in: decoding reports them as bad files.
    found.push_back(it->path().generic_string());
  }
  if (ec) throw Error(ErrorKind::kIo, dir + ": cannot list: " + ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

InputList collect_inputs(const std::vector<std::string>& paths) {
  InputList in;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
      in.files.push_back(path);
      continue;
    }
    std::vector<std::string> found = images_under(path);
    if (found.empty()) in.empty_folders.push_back(path);
    in.files.insert(in.files.end(), found.begin(), found.end());
  }
  return in;
}

}  // namespace vggcache
