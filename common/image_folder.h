// Scans one split of an ImageFolder tree: DIR/<class>/<image>. Classes are the sorted sub-folder
// names (label = position); files are taken in sorted order (byte order of the relative path, as
// Python's sorted() on str does for ASCII), with torchvision's extensions, case-insensitive.
#pragma once
#include <string>
#include <vector>

namespace vggcache {

struct FolderEntry {
  std::string rel_path;  // "<class>/<file>", relative to the split directory
  int label = 0;
};

struct FolderScan {
  std::vector<std::string> classes;
  std::vector<FolderEntry> files;
  std::vector<std::string> ignored;  // files present but without an image extension
};

// Throws Error(kInvalidArgument) naming DIR when it does not exist, is not a directory, or has no
// class folders; a class folder without any image is an error too (torchvision raises the same).
// Sub-folders inside a class folder are walked recursively (as ImageFolder does).
FolderScan scan_image_folder(const std::string& dir);

bool has_image_extension(const std::string& name);

}  // namespace vggcache
