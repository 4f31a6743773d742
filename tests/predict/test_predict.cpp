// The predict command end to end on a small carbike64 split (plus the fixture's bad files), with
// features from random:1 weights: agreement with train_head's RUN_DIR/predictions.csv for the same
// images and head, --tta K against the mean of per-crop probabilities of `extract --crops K`,
// refusal of other weights, bad files, output to stdout and --out; and the pieces (input listing,
// CSV quoting, usage errors) on their own.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "extract/extract_fixture.h"
#include "head/evaluate.h"
#include "head/feature_source.h"
#include "head/head_file.h"
#include "head/predictions_csv.h"
#include "predict/inputs.h"
#include "predict/predict_csv.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace vggcache {
namespace {

using testing::shell_quote;

constexpr int kPerClass = 12;
constexpr double kTolerance = 1e-5;

struct ToolRun {
  int rc = -1;
  std::string output;  // stdout and stderr
};

ToolRun tool(const std::string& name, const std::string& args) {
  ToolRun r;
  r.rc = testing::run_command(shell_quote(testing::bin_dir() + "/" + name) + " " + args, &r.output);
  return r;
}

void must(const ToolRun& r, const std::string& what) {
  if (r.rc != 0)
    throw std::runtime_error(what + " failed (" + std::to_string(r.rc) + "):\n" + r.output);
}

// Built once for the whole suite (a few seconds of VGG16): a test split with bad files, a small
// training split, their caches and a head trained with standardisation. The head is trained
// briefly with a tiny learning rate so its probabilities stay away from 0 and 1, where any
// disagreement would be invisible.
struct World {
  testing::TempDir tmp;
  std::string test_split = tmp / "test", train_split = tmp / "train", run = tmp / "run";
  std::string head() const { return run + "/head.bin"; }

  explicit World(const std::string& carbike) {
    testing::make_split(carbike, test_split, kPerClass, /*with_bad=*/true);
    for (const char* cls : {"bicycle", "car"}) {
      fs::create_directories(fs::path(train_split) / cls);
      for (int i = 0; i < kPerClass; ++i) {
        std::string name = fmt::format("{}_{:04d}.jpg", cls, i);
        fs::copy_file(fmt::format("{}/train/{}/{}", carbike, cls, name),
                      fmt::format("{}/{}/{}", train_split, cls, name));
      }
    }
    must(tool("extract", "--data " + shell_quote(test_split) + " --out " +
                             shell_quote(tmp / "test.cache") +
                             " --weights random:1 --eval --threads 2 --quiet"),
         "extract (test)");
    must(tool("extract", "--data " + shell_quote(train_split) + " --out " +
                             shell_quote(tmp / "train.cache") +
                             " --weights random:1 --crops 2 --threads 2 --quiet"),
         "extract (train)");
    must(tool("train_head", "--train " + shell_quote(tmp / "train.cache") + " --test " +
                                shell_quote(tmp / "test.cache") + " --out " + shell_quote(run) +
                                " --epochs 3 --lr 1e-5 --standardize --threads 2 --quiet"),
         "train_head");
  }

  // predict's CSV for the whole test split with the eval view (run once, on first use).
  std::string eval_csv() {
    const std::string out = tmp / "pred.csv";
    if (!fs::exists(out)) {
      eval_run =
          tool("predict", "--weights random:1 --head " + shell_quote(head()) + " --out " +
                              shell_quote(out) + " --threads 2 --quiet " + shell_quote(test_split));
      must(eval_run, "predict");
    }
    return out;
  }
  ToolRun eval_run;
};

World& world(const std::string& carbike) {
  static std::unique_ptr<World> w;
  if (!w) w = std::make_unique<World>(carbike);
  return *w;
}

struct Row {
  std::string cls;
  double probability = 0;
  std::vector<double> probs;
};

// predict's CSV (the test's paths hold no commas or quotes, so fields split on commas).
std::map<std::string, Row> parse_predict_csv(const std::string& text,
                                             std::vector<std::string>* order = nullptr) {
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "path,class,probability,p_bicycle,p_car");
  std::map<std::string, Row> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    EXPECT_EQ(f.size(), 5u) << line;
    if (f.size() != 5) continue;
    Row r{f[1], std::stod(f[2]), {std::stod(f[3]), std::stod(f[4])}};
    if (order) order->push_back(f[0]);
    rows[f[0]] = r;
  }
  return rows;
}

void expect_row_consistent(const std::string& path, const Row& r) {
  const int pred = r.probs[1] > 0.5 ? 1 : 0;  // two classes: one sigmoid output
  EXPECT_EQ(r.cls, pred ? "car" : "bicycle") << path;
  EXPECT_EQ(r.probability, r.probs[pred]) << path;
  EXPECT_NEAR(r.probs[0] + r.probs[1], 1.0, 1e-6) << path;
}

// predict's CSV `out` against train_head's PREDICTIONS (paths relative to `split`): every image,
// its class and probabilities within kTolerance, rows self-consistent, not all saturated.
void expect_train_heads_probabilities(const std::string& out, const std::string& predictions,
                                      const std::string& split, const std::string& what) {
  std::map<std::string, Row> got = parse_predict_csv(testing::read_file(out));
  Predictions ref = read_predictions_csv(predictions);
  ASSERT_EQ(got.size(), ref.rows.size());
  bool away_from_0_and_1 = false;
  double worst = 0;
  for (const auto& row : ref.rows) {
    const std::string path = split + "/" + row.path;
    auto it = got.find(path);
    ASSERT_NE(it, got.end()) << path << " missing from predict's output";
    expect_row_consistent(path, it->second);
    EXPECT_EQ(it->second.cls, ref.classes[row.predicted]) << path;
    for (int k = 0; k < 2; ++k) {
      EXPECT_NEAR(it->second.probs[k], row.probs[k], kTolerance) << path;
      worst = std::max(worst, std::abs(it->second.probs[k] - row.probs[k]));
    }
    away_from_0_and_1 |= row.probs[0] > 0.01 && row.probs[0] < 0.99;
  }
  EXPECT_TRUE(away_from_0_and_1) << "saturated probabilities would make the comparison vacuous";
  testing::report_numerics("predict vs train_head probabilities" + what, worst, kTolerance);
}

TEST(Predict, AgreesWithTrainHeadPredictionsAndSkipsBadFiles) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  const std::string out = w.eval_csv();
  const ToolRun& r = w.eval_run;
  for (const auto& bad : testing::bad_files())
    EXPECT_NE(r.output.find(w.test_split + "/" + bad), std::string::npos)
        << bad << " not reported:\n"
        << r.output;
  EXPECT_NE(r.output.find(fmt::format("{} image(s) classified, {} skipped", 2 * kPerClass,
                                      testing::bad_files().size())),
            std::string::npos)
      << r.output;

  Predictions ref = read_predictions_csv(w.run + "/predictions.csv");
  ASSERT_EQ(ref.classes, (std::vector<std::string>{"bicycle", "car"}));
  ASSERT_EQ(ref.rows.size(), static_cast<size_t>(2 * kPerClass));
  expect_train_heads_probabilities(out, w.run + "/predictions.csv", w.test_split, "");
}

TEST(Predict, TtaAveragesTheProbabilitiesOfExtractsCrops) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  const int k = 3;
  const std::string cache = w.tmp / "tta.cache";
  must(tool("extract", "--data " + shell_quote(w.test_split) + " --out " + shell_quote(cache) +
                           fmt::format(" --weights random:1 --crops {} --seed 5 --threads 2 "
                                       "--quiet",
                                       k)),
       "extract --crops");
  // Reference: the head on every cached crop, probabilities averaged per image (train_core).
  HeadFile head = load_head(w.head());
  CacheSource src(cache, true);
  ASSERT_EQ(src.crops(), k);
  EvalResult ref = evaluate_head(head.weights, src, src.images(), &head.standardizer);

  const std::string out = w.tmp / "tta.csv";
  ToolRun r = tool("predict", fmt::format("--weights random:1 --head {} --tta {} --seed 5 --batch "
                                          "7 --out {} --threads 2 --quiet {}",
                                          shell_quote(w.head()), k, shell_quote(out),
                                          shell_quote(w.test_split)));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find(fmt::format("{} view(s) each", k)), std::string::npos) << r.output;
  std::map<std::string, Row> got = parse_predict_csv(testing::read_file(out));
  std::map<std::string, Row> eval = parse_predict_csv(testing::read_file(w.eval_csv()));
  ASSERT_EQ(got.size(), src.images().size());
  double max_tta_effect = 0, worst = 0;
  for (size_t i = 0; i < src.images().size(); ++i) {
    const std::string path = w.test_split + "/" + src.meta().images[src.images()[i]].path;
    auto it = got.find(path);
    ASSERT_NE(it, got.end()) << path;
    expect_row_consistent(path, it->second);
    for (int c = 0; c < 2; ++c) {
      EXPECT_NEAR(it->second.probs[c], ref.probs[i * 2 + c], kTolerance);
      worst = std::max(worst, std::abs(it->second.probs[c] - double(ref.probs[i * 2 + c])));
    }
    if (eval.count(path))
      max_tta_effect =
          std::max(max_tta_effect, std::abs(eval[path].probs[0] - it->second.probs[0]));
  }
  EXPECT_GT(max_tta_effect, 1e-4) << "--tta gave the eval view's probabilities";
  testing::report_numerics("predict --tta vs the head on extract's crops", worst, kTolerance);
}

// A linear probe (head.bin version 2, hidden 0) trained by L-BFGS on the same caches: predict
// reads it and gives train_head's probabilities for the eval view.
TEST(Predict, UsesAProbeHead) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  const std::string run = w.tmp / "probe_run", out = w.tmp / "probe.csv";
  // A strong L2 keeps the probabilities away from 0 and 1, where a disagreement would not show.
  must(tool("train_head", "--train " + shell_quote(w.tmp / "train.cache") + " --test " +
                              shell_quote(w.tmp / "test.cache") + " --out " + shell_quote(run) +
                              " --hidden 0 --optimizer lbfgs --l2 1e4 --standardize --threads 2 "
                              "--quiet"),
       "train_head --hidden 0 --optimizer lbfgs");
  EXPECT_EQ(load_head(run + "/head.bin").weights.shape.hidden, 0);
  must(tool("predict", "--weights random:1 --head " + shell_quote(run + "/head.bin") + " --out " +
                           shell_quote(out) + " --threads 2 --quiet " + shell_quote(w.test_split)),
       "predict (probe)");
  expect_train_heads_probabilities(out, run + "/predictions.csv", w.test_split, " (probe)");
}

TEST(Predict, RefusesOtherWeightsBeforeAnyWork) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  const std::string out = w.tmp / "refused.csv";
  ToolRun r = tool("predict", "--weights random:2 --head " + shell_quote(w.head()) + " --out " +
                                  shell_quote(out) + " --threads 2 " + shell_quote(w.test_split));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("random:1"), std::string::npos) << r.output;  // the head's
  EXPECT_NE(r.output.find("random:2"), std::string::npos) << r.output;  // and the given ones
  EXPECT_NE(r.output.find(w.head()), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("skipping"), std::string::npos) << "images were read:\n" << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST(Predict, FilesAndFoldersToStdoutInArgumentOrder) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  const std::string file = w.test_split + "/car/car_0003.jpg";
  const std::string folder = w.test_split + "/bicycle";
  const std::string err = w.tmp / "stderr.txt";
  // stdout alone (the CSV), stderr to a file: no log line may end up among the rows.
  ToolRun r;
  r.rc = testing::run_command("{ " + shell_quote(testing::bin_dir() + "/predict") +
                                  " --weights random:1 --head " + shell_quote(w.head()) +
                                  " --threads 2 " + shell_quote(file) + " " + shell_quote(folder) +
                                  " 2>" + shell_quote(err) + "; }",
                              &r.output);
  ASSERT_EQ(r.rc, 0) << r.output << testing::read_file(err);
  std::vector<std::string> order;
  std::map<std::string, Row> got = parse_predict_csv(r.output, &order);
  ASSERT_EQ(order.size(), 1u + kPerClass) << r.output;
  EXPECT_EQ(order[0], file);
  EXPECT_EQ(order[1], folder + "/bicycle_0000.jpg");
  EXPECT_EQ(order.back(), folder + fmt::format("/bicycle_{:04d}.jpg", kPerClass - 1));
  // Same image, same eval view: the same numbers as the run over the whole split.
  std::map<std::string, Row> all = parse_predict_csv(testing::read_file(w.eval_csv()));
  ASSERT_TRUE(all.count(file));
  EXPECT_NEAR(got[file].probs[0], all[file].probs[0], kTolerance);
  EXPECT_NE(testing::read_file(err).find("2 skipped"), std::string::npos)
      << testing::read_file(err);  // b_empty.jpg and b_truncated.jpg
}

TEST(Predict, NothingClassifiedIsAnError) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  const std::string out = w.tmp / "none.csv";
  ToolRun r = tool("predict", "--weights random:1 --head " + shell_quote(w.head()) + " --out " +
                                  shell_quote(out) + " --threads 2 " +
                                  shell_quote(w.test_split + "/car/c_text.png") + " " +
                                  shell_quote(w.tmp / "no-such-file.jpg"));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("none of 2 input file(s) could be classified"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("no-such-file.jpg"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST(PredictUsage, BadArgumentsExitTwo) {
  for (const std::string args :
       {"--head h.bin x.jpg", "--weights random:1 x.jpg", "--weights random:1 --head h.bin",
        "--weights random:1 --head h.bin --tta 0 x.jpg",
        "--weights random:1 --head h.bin --batch 0 x.jpg",
        "--weights random:1 --head h.bin --tta 2 --scale 0.5 x.jpg",
        "--weights random:1 --head h.bin --device tpu x.jpg"}) {
    ToolRun r = tool("predict", args);
    EXPECT_EQ(r.rc, 2) << args << "\n" << r.output;
  }
  ToolRun r = tool("predict", "--help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.output.find("--tta"), std::string::npos);
}

TEST(PredictUsage, MissingHeadIsAClearError) {
  testing::TempDir tmp;
  ToolRun r = tool("predict", "--weights random:1 --head " + shell_quote(tmp / "none.bin") + " " +
                                  shell_quote(tmp.path()));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find(tmp / "none.bin"), std::string::npos) << r.output;
}

TEST(PredictInputs, FoldersAreWalkedRecursivelyAndSorted) {
  testing::TempDir tmp;
  for (const char* f : {"b/z.jpg", "b/a.PNG", "b/deep/er/m.webp", "b/notes.txt", "a.jpg"}) {
    fs::create_directories((fs::path(tmp.path()) / f).parent_path());
    testing::write_file(tmp / f, "x");
  }
  fs::create_directories(tmp / "empty");
  InputList in = collect_inputs({tmp / "b", tmp / "a.jpg", tmp / "empty", tmp / "missing.jpg"});
  EXPECT_EQ(in.files,
            (std::vector<std::string>{tmp / "b/a.PNG", tmp / "b/deep/er/m.webp", tmp / "b/z.jpg",
                                      tmp / "a.jpg", tmp / "missing.jpg"}));
  EXPECT_EQ(in.empty_folders, (std::vector<std::string>{tmp / "empty"}));
}

TEST(PredictCsv, QuotesFieldsAsRfc4180) {
  PredictedImage a;
  a.path = "dir/with,comma \"and quotes\".jpg";
  a.probs = {0.25f, 0.75f};
  a.predicted = 1;
  PredictedImage b;
  b.path = "plain.jpg";
  b.probs = {0.5f, 0.5f};
  b.predicted = 0;
  EXPECT_EQ(predictions_table({"bi,ke", "car"}, {a, b}),
            "path,class,probability,\"p_bi,ke\",p_car\n"
            "\"dir/with,comma \"\"and quotes\"\".jpg\",car,0.75,0.25,0.75\n"
            "plain.jpg,\"bi,ke\",0.5,0.5,0.5\n");
}

}  // namespace
}  // namespace vggcache
