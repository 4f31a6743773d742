// predict's output: CSV with a header line and one row per classified image.
//
// Columns: path,class,probability,p_<class>... (classes in the head's label order)
//   path         the file as given on the command line or found under a given folder
//   class        predicted class name (argmax; two classes: p_<second class> > 0.5)
//   probability  probability of the predicted class
//   p_<class>    probability of each class, averaged over the views (--tta)
// Probabilities are printed %.9g (round-trips a float exactly), as RUN_DIR/predictions.csv.
// Fields are quoted as RFC 4180 says (train_head's csv_field); lines end with LF.
#pragma once
#include <string>
#include <vector>

#include "predict/classify.h"

namespace vggcache {

std::string predictions_table(const std::vector<std::string>& classes,
                              const std::vector<PredictedImage>& images);

// Writes `text` to stdout when `path` is "", else to `path` atomically (a temporary file in the
// same folder, renamed over it), so a reader never sees half a table. Throws Error(kIo).
void write_output(const std::string& path, const std::string& text);

}  // namespace vggcache
