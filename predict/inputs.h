// The images `predict` classifies: its PATH arguments expanded to a flat list of files.
#pragma once
#include <string>
#include <vector>

namespace vggcache {

struct InputList {
  // In argument order; a folder's images (recursively, links to folders followed, image
  // extensions as common/image_folder.h) in byte order of their paths, like extract's scan, so
  // a split folder gives the same image indices (and --tta crops) as `extract --data` of it.
  // A file named on the command line is taken whatever its extension; one that does not exist
  // stays in the list, so it is reported and skipped like any other bad file.
  std::vector<std::string> files;
  std::vector<std::string> empty_folders;  // folders without any image file (worth a warning)
};

// Throws Error(kIo) naming the folder when a folder cannot be listed.
InputList collect_inputs(const std::vector<std::string>& paths);

}  // namespace vggcache
