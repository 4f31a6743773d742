// Test images with their predictions, as the seed's last (unfinished) step meant to show them:
// thumbnails decoded from the split directory, captioned with the predicted class and its
// probability and the true class, wrong ones marked. Drawn as an HTML grid (data: URIs) and as
// a PNG. A file that cannot be read becomes a placeholder; the run does not fail for it.
#pragma once
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace vggcache {

inline constexpr int kThumbSide = 104;  // pixels; carbike64's 64×64 images are enlarged

struct GridCell {
  cv::Mat thumb;      // kThumbSide², BGR
  bool found = true;  // false: thumb is a placeholder
  std::string path;   // relative, for the tooltip
  std::string predicted, actual;
  double probability = 0;  // of the predicted class
  bool wrong = false;
};

// Decodes root/path as extract does (EXIF orientation ignored) and fits it into a square on
// grey. Returns a placeholder with found = false when the file is missing or undecodable.
GridCell load_grid_cell(const std::string& root, const std::string& path);

std::string html_image_grid(const std::vector<GridCell>& cells);
cv::Mat png_image_grid(const std::string& title, const std::vector<GridCell>& cells, int columns);

}  // namespace vggcache
