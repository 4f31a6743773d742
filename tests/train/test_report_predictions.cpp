// RUN_DIR/predictions.csv: one row per test image, consistent with summary.json (confusion
// matrix, accuracy), probabilities summing to 1, RFC 4180 quoting that round-trips.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "train_fixtures.h"
#include "head/predictions_csv.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::shell_quote;

class PredictionsRun : public ::testing::Test {
 protected:
  // Trains on a synthetic pair with 3 test views per image and returns the run directory.
  std::string run(int classes) {
    testing::SyntheticSpec tr;
    tr.classes = classes;
    tr.crops = 4;
    tr.seed = 1;
    tr.separation = 0.35f;  // overlapping clusters: some test images are misclassified
    testing::make_synthetic_cache(tmp_ / "train", tr);
    testing::SyntheticSpec te = tr;
    te.crops = 3;
    te.images_per_class = 15;
    te.seed = 2;
    test_meta_ = testing::make_synthetic_cache(tmp_ / "test", te);
    std::string out = tmp_ / "run", output;
    int rc = testing::run_command(
        shell_quote(testing::bin_dir() + "/train_head") + " --train " +
            shell_quote(tmp_ / "train") + " --test " + shell_quote(tmp_ / "test") + " --out " +
            shell_quote(out) +
            " --epochs 2 --batch 16 --hidden 16 --threads 2 --val-fraction 0.25 --quiet",
        &output);
    EXPECT_EQ(rc, 0) << output;
    return out;
  }
  testing::TempDir tmp_;
  CacheMeta test_meta_;
};

void check_against_summary(const Predictions& p, const json& s, const CacheMeta& meta) {
  const size_t c = meta.classes.size();
  EXPECT_EQ(p.classes, meta.classes);
  ASSERT_EQ(p.rows.size(), meta.images.size());  // every test image, once
  std::vector<std::vector<int64_t>> confusion(c, std::vector<int64_t>(c, 0));
  std::set<uint32_t> seen;
  int correct = 0;
  for (const auto& r : p.rows) {
    EXPECT_TRUE(seen.insert(r.image).second) << r.image;
    ASSERT_LT(r.image, meta.images.size());
    EXPECT_EQ(r.path, meta.images[r.image].path);
    EXPECT_EQ(r.label, meta.images[r.image].label);
    ASSERT_EQ(r.probs.size(), c);
    double sum = 0;
    int argmax = 0;
    for (size_t k = 0; k < c; ++k) {
      EXPECT_GE(r.probs[k], 0.0);
      sum += r.probs[k];
      if (r.probs[k] > r.probs[argmax]) argmax = static_cast<int>(k);
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << r.path;
    EXPECT_EQ(r.predicted, c == 2 ? (r.probs[1] > 0.5 ? 1 : 0) : argmax) << r.path;
    ++confusion[r.label][r.predicted];
    correct += r.label == r.predicted;
  }
  EXPECT_EQ(json(confusion), s["confusion_matrix"]);
  EXPECT_DOUBLE_EQ(static_cast<double>(correct) / p.rows.size(),
                   s["selected_test"]["accuracy"].get<double>());
}

TEST_F(PredictionsRun, TwoClassesAgreeWithSummary) {
  std::string out = run(2);
  std::string text = testing::read_file(out + "/predictions.csv");
  EXPECT_EQ(text.substr(0, text.find('\n')), "image,path,label,predicted,p_class0,p_class1");
  EXPECT_NE(text.find("\n0,class0/img0.jpg,class0,"), std::string::npos) << text.substr(0, 200);
  json s = json::parse(testing::read_file(out + "/summary.json"));
  Predictions p = read_predictions_csv(out + "/predictions.csv");
  check_against_summary(p, s, test_meta_);
  int wrong = 0;
  for (const auto& r : p.rows) wrong += r.label != r.predicted;
  EXPECT_GT(wrong, 0) << "overlapping clusters should leave some errors to report";
}

TEST_F(PredictionsRun, MultiClassHasOneColumnPerClass) {
  std::string out = run(3);
  std::string text = testing::read_file(out + "/predictions.csv");
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "image,path,label,predicted,p_class0,p_class1,p_class2");
  json s = json::parse(testing::read_file(out + "/summary.json"));
  check_against_summary(read_predictions_csv(out + "/predictions.csv"), s, test_meta_);
}

TEST(PredictionsCsv, QuotesAsRfc4180AndRoundTrips) {
  EXPECT_EQ(csv_field("plain/path.jpg"), "plain/path.jpg");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
  testing::TempDir tmp;
  Predictions p;
  p.classes = {"cat, grey", "dog"};
  p.rows.push_back({7, "cat, grey/\"odd\"\nname.jpg", 0, 1, {0.25, 0.75}});
  p.rows.push_back({8, "dog/x.jpg", -1, 0, {0.999999881, 1.1920929e-07}});
  write_predictions_csv(tmp / "p.csv", p);
  EXPECT_EQ(testing::read_file(tmp / "p.csv"),
            "image,path,label,predicted,\"p_cat, grey\",p_dog\n"
            "7,\"cat, grey/\"\"odd\"\"\nname.jpg\",\"cat, grey\",dog,0.25,0.75\n"
            "8,dog/x.jpg,,\"cat, grey\",0.999999881,1.1920929e-07\n");
  Predictions q = read_predictions_csv(tmp / "p.csv");
  EXPECT_EQ(q.classes, p.classes);
  ASSERT_EQ(q.rows.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(q.rows[i].image, p.rows[i].image);
    EXPECT_EQ(q.rows[i].path, p.rows[i].path);
    EXPECT_EQ(q.rows[i].label, p.rows[i].label);
    EXPECT_EQ(q.rows[i].predicted, p.rows[i].predicted);
    EXPECT_EQ(q.rows[i].probs, p.rows[i].probs);
  }
}

TEST(PredictionsCsv, MalformedFilesNameFileAndLine) {
  testing::TempDir tmp;
  struct Case {
    const char* text;
    const char* needle;
  } cases[] = {{"image,path,label,predicted,p_a,p_b\n1,x,a,b,0.5\n", "line 2"},
               {"image,path,label,predicted,p_a,p_b\n1,x,a,z,0.5,0.5\n", "unknown class"},
               {"image,path,label,predicted,p_a,p_b\n1,\"x,a,b,0.5,0.5\n", "quoting"},
               {"img,path,label,predicted,p_a\n", "line 1"}};
  for (const auto& c : cases) {
    testing::write_file(tmp / "bad.csv", c.text);
    try {
      read_predictions_csv(tmp / "bad.csv");
      ADD_FAILURE() << "accepted: " << c.text;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
      EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.csv"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace vggcache
