#include "predict/predict_csv.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/file_util.h"
#include "head/predictions_csv.h"

namespace vggcache {

std::string predictions_table(const std::vector<std::string>& classes,
                              const std::vector<PredictedImage>& images) {
  std::string s = "path,class,probability";
  for (const auto& c : classes) s += "," + csv_field("p_" + c);
  s += "\n";
  for (const auto& img : images) {
    s += fmt::format("{},{},{:.9g}", csv_field(img.path), csv_field(classes.at(img.predicted)),
                     img.probs.at(img.predicted));
    for (float v : img.probs) s += fmt::format(",{:.9g}", v);
    s += "\n";
  }
  return s;
}

void write_output(const std::string& path, const std::string& text) {
  if (path.empty()) {
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout))
      throw Error(ErrorKind::kIo, "cannot write the predictions to stdout");
    return;
  }
  write_file_atomically(path, text);
}

}  // namespace vggcache
