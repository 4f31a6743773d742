// train_head on pool4 caches end to end (train_head/finetune_run.h), on a tiny carbike64
// extraction (64 px) with seeded random VGG16 weights written as a .pth file:
//  - --freeze-block5 on the pool4 caches gives the run on the pool5 caches of the same extraction
//    (same seed and settings): the same accuracies every epoch and the head's weights within the
//    rounding of the two computations of block 5 (LibTorch in extract, finetune/block5.h here);
//  - fine-tuning from --init-head (a head trained on the pool5 cache) tunes block 5, starts from
//    that head's accuracy, writes head.bin version 2 with the tuned block 5, and predict
//    (LibTorch blocks 1–4, the tuned block 5, the head) gives train_head's test probabilities;
//  - refusals: another weights file (naming both SHA-256s), an --init-head of other weights,
//    fine-tuning flags on pool5 caches, mixed cuts, no --weights.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "common/cache.h"
#include "common/sha256.h"
#include "finetune/block5.h"
#include "finetune_world.h"
#include "head/head_file.h"
#include "head/predictions_csv.h"
#include "test_util.h"
#include "weights/pth_reader.h"

namespace fs = std::filesystem;

namespace vggcache {
namespace {

using nlohmann::json;
using testing::expect_refused;
using testing::read_json;
using testing::read_lines;
using testing::shell_quote;
using testing::tool;
using testing::ToolRun;
using testing::train;
using testing::World;
using testing::world;

// The shared training settings of the compared runs: dropout on (its masks must agree too),
// validation selection on, a small head.
const char* kCommon =
    "--epochs 3 --batch 4 --hidden 32 --lr 1e-3 --dropout 0.5 --seed 3 --val-fraction 0.25 "
    "--threads 2 --quiet";

uint32_t head_version(const std::string& path) {
  const std::string s = testing::read_file(path);
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(s[8 + i])) << 8 * i;
  return v;
}

// The frozen run computes block 5 itself (im2col + OpenBLAS) where the pool5 cache holds
// LibTorch's block 5: features differ by the rounding of three convolutions of 9·512 terms
// (vgg16_features_bound's last three layers), and each training step adds the head's own
// rounding (first-layer sums of 25088 terms forward, of the batch's 4 vectors for ∂W1); steps'
// roundings add up as a random walk (rounding_bound). Relative to how far training moved the
// weights, as tests/finetune/test_finetune_step.cpp compares them.
double frozen_weight_bound(int steps) {
  return 3 * testing::rounding_bound(9.0 * kBlock5Channels, steps) +
         testing::rounding_bound(kBlock5OutputDim, steps) + testing::rounding_bound(4, steps);
}

// ‖x − y‖ / ‖x − from‖: how far apart two trainings of the same tensor ended, relative to how far
// the first moved from `from`.
double relative_difference(const std::vector<float>& x, const std::vector<float>& y,
                           const std::vector<float>& from) {
  double diff2 = 0, move2 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double(x[i]) - y[i], m = double(x[i]) - from[i];
    diff2 += d * d;
    move2 += m * m;
  }
  EXPECT_GT(move2, 0) << "never moved";
  return std::sqrt(diff2 / move2);
}

// Runs kCommon + `extra` on the pool5 caches and with --freeze-block5 on the pool4 caches into
// tmp/p5 and tmp/p4, and expects the same run from both: the same accuracies each epoch, losses
// and head weights within rounding (no weight off by a tenth of Adam's step), block 5 unchanged.
// Returns the head's largest Frobenius difference relative to how far training moved it.
double expect_frozen_pool4_run_is_the_pool5_run(const World& w, const testing::TempDir& tmp,
                                                const std::string& extra) {
  const std::string common = std::string(kCommon) + " " + extra;
  const ToolRun p5 = train(w, "pool5", tmp / "p5", common);
  EXPECT_EQ(p5.rc, 0) << p5.output;
  const ToolRun p4 = train(w, "pool4", tmp / "p4",
                           common + " --freeze-block5 --weights " + shell_quote(w.weights()));
  EXPECT_EQ(p4.rc, 0) << p4.output;
  if (p5.rc != 0 || p4.rc != 0) return INFINITY;

  const json a = read_json(tmp / "p5/summary.json"), b = read_json(tmp / "p4/summary.json");
  EXPECT_EQ(b["settings"]["freeze_block5"], true);
  EXPECT_EQ(b["finetune"]["block5"], "frozen");
  EXPECT_EQ(a["selected_epoch"], b["selected_epoch"]);
  const std::vector<std::string> lines_a = read_lines(tmp / "p5/metrics.jsonl"),
                                 lines_b = read_lines(tmp / "p4/metrics.jsonl");
  EXPECT_EQ(lines_a.size(), lines_b.size());
  // --val-fraction 0.25 holds out 3 of the 12 training images: 9 images, batches of 4.
  const int steps_per_epoch = 3;
  for (size_t e = 0; e < std::min(lines_a.size(), lines_b.size()); ++e) {
    const json ma = json::parse(lines_a[e]), mb = json::parse(lines_b[e]);
    for (const char* k : {"train_accuracy", "val_accuracy", "test_accuracy"})
      EXPECT_EQ(ma[k], mb[k]) << k << " epoch " << e + 1;
    const double bound = frozen_weight_bound(steps_per_epoch * static_cast<int>(e + 1));
    for (const char* k : {"train_loss", "val_loss", "test_loss"})
      EXPECT_NEAR(mb[k].get<double>(), ma[k].get<double>(), bound * ma[k].get<double>())
          << k << " epoch " << e + 1;
  }

  const HeadFile ha = load_head(tmp / "p5/head.bin"), hb = load_head(tmp / "p4/head.bin");
  const HeadWeights init = init_head(ha.weights.shape, 3);  // both runs' start (--seed 3)
  double worst_rel = 0, worst_elem = 0;
  for (auto [x, y, s, name] : {std::tuple{&ha.weights.w1, &hb.weights.w1, &init.w1, "w1"},
                               std::tuple{&ha.weights.b1, &hb.weights.b1, &init.b1, "b1"},
                               std::tuple{&ha.weights.w2, &hb.weights.w2, &init.w2, "w2"},
                               std::tuple{&ha.weights.b2, &hb.weights.b2, &init.b2, "b2"}}) {
    EXPECT_EQ(x->size(), y->size()) << name;
    if (x->size() != y->size()) return INFINITY;
    double max_diff = 0;
    for (size_t i = 0; i < x->size(); ++i)
      max_diff = std::max(max_diff, std::abs(double((*x)[i]) - (*y)[i]));
    // Adam's step is ±lr where a gradient is rounding noise: no element off by a tenth of it.
    EXPECT_LE(max_diff, 0.1 * 1e-3) << name;
    worst_rel = std::max(worst_rel, relative_difference(*x, *y, *s));
    worst_elem = std::max(worst_elem, max_diff / 1e-4);
  }
  testing::report_numerics("frozen block 5 on pool4 vs pool5 run: head, largest / (0.1 lr)",
                           worst_elem, 1.0);
  // Its block 5 is the weights file's, unchanged.
  EXPECT_FALSE(hb.block5.empty());
  const StateDict sd = read_state_dict(w.weights());
  for (int i = 0; i < 3 && !hb.block5.empty(); ++i) {
    EXPECT_TRUE(hb.block5.weight[i] == sd.at(Block5::weight_name(i)).values) << i;
    EXPECT_TRUE(hb.block5.bias[i] == sd.at(Block5::bias_name(i)).values) << i;
  }
  return worst_rel;
}

TEST(FineTuneRun, FrozenBlock5OnPool4GivesThePool5Run) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  testing::TempDir tmp;
  const double rel = expect_frozen_pool4_run_is_the_pool5_run(world(carbike), tmp, "");
  const int steps = 3 * read_json(tmp / "p5/summary.json")["selected_epoch"].get<int>();
  EXPECT_LE(rel, frozen_weight_bound(steps));
  testing::report_numerics("frozen block 5 on pool4 vs pool5 run: head, Frobenius diff/move", rel,
                           frozen_weight_bound(steps));
}

// --class-weight balanced weighs the fine-tuning loss as it weighs the pool5 head's: the frozen
// run is the weighted pool5 run, and records the same weights. The weights matter here: 9
// training images of 2 classes (3 held out) cannot be balanced.
TEST(FineTuneRun, ClassWeightsWeighAsThePool5RunDoes) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  testing::TempDir tmp;
  const World w = world(carbike);
  // One epoch, so the unweighted run below keeps the same epoch's head.
  const double rel =
      expect_frozen_pool4_run_is_the_pool5_run(w, tmp, "--class-weight balanced --epochs 1");
  const json a = read_json(tmp / "p5/summary.json"), b = read_json(tmp / "p4/summary.json");
  EXPECT_EQ(b["settings"]["class_weight"], "balanced");
  ASSERT_TRUE(b["class_weights"].is_array()) << b.dump(1);
  EXPECT_EQ(a["class_weights"], b["class_weights"]);
  EXPECT_NE(b["class_weights"][0], b["class_weights"][1]);
  // Weighted, a few more first-layer weights fall where Adam's step turns on rounding noise (a
  // gradient near its eps), so the Frobenius difference is measured against what the weights
  // change instead: the unweighted pool5 run's head is over a hundred times farther away.
  ASSERT_EQ(train(w, "pool5", tmp / "plain", std::string(kCommon) + " --epochs 1").rc, 0);
  const HeadFile weighted = load_head(tmp / "p5/head.bin"),
                 plain = load_head(tmp / "plain/head.bin"), tuned = load_head(tmp / "p4/head.bin");
  const double effect = relative_difference(weighted.weights.w1, plain.weights.w1,
                                            init_head(weighted.weights.shape, 3).w1);
  EXPECT_GT(effect, 0.01);
  EXPECT_LE(rel, 1e-2 * effect);
  testing::report_numerics(
      "frozen block 5, class-weighted, vs pool5 run: head diff/move over the weights' effect",
      rel / effect, 1e-2);
}

struct PredictRow {
  std::string cls;
  std::vector<double> probs;
};

// predict's CSV: path,class,probability,p_bicycle,p_car (the test's paths hold no commas).
std::map<std::string, PredictRow> parse_predict_csv(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "path,class,probability,p_bicycle,p_car");
  std::map<std::string, PredictRow> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (f.size() != 5) {
      ADD_FAILURE() << line;
      continue;
    }
    rows[f[0]] = {f[1], {std::stod(f[3]), std::stod(f[4])}};
  }
  return rows;
}

// The SVG chart of report.html whose title is `title` ("" when there is none).
std::string svg_chart(const std::string& html, const std::string& title) {
  const size_t at = html.find("aria-label=\"" + title + "\"");
  if (at == std::string::npos) return "";
  return html.substr(at, html.find("</svg>", at) - at);
}

// The fine-tuned run's report shows the --init-head's own run (`frozen`, its summary.json) beside
// it (`tuned`): both test accuracies with their kept epochs, and each run's accuracy curves, the
// frozen run's epochs on the left.
void expect_warm_start_section(const std::string& run_dir, const json& frozen, const json& tuned) {
  const std::string html = testing::read_file(run_dir + "/report.html");
  const size_t at = html.find("<h2>Warm start: the frozen head's run beside this fine-tuning");
  ASSERT_NE(at, std::string::npos);
  const std::string section = html.substr(at, html.find("<h2>", at + 4) - at);
  auto box = [](double accuracy, const std::string& what) {
    return fmt::format("<b>{:.2f}%</b><span>{}</span>", 100 * accuracy, what);
  };
  EXPECT_NE(section.find(box(frozen["selected_test"]["accuracy"].get<double>(),
                             fmt::format("frozen head: test accuracy (its run, epoch {} head)",
                                         frozen["selected_epoch"].get<int>()))),
            std::string::npos)
      << section.substr(0, 800);
  EXPECT_NE(section.find(box(tuned["finetune"]["init_test"]["accuracy"].get<double>(),
                             "frozen head on this test set, before fine-tuning")),
            std::string::npos);
  EXPECT_NE(section.find(box(tuned["selected_test"]["accuracy"].get<double>(),
                             fmt::format("fine-tuned: test accuracy (epoch {} head)",
                                         tuned["selected_epoch"].get<int>()))),
            std::string::npos);
  // Left the frozen run's curves (its epochs and kept epoch), right this run's.
  const std::string left = svg_chart(section, "Frozen head (pool5 run): accuracy per epoch"),
                    right = svg_chart(section, "Fine-tuned (block 5 + head): accuracy per epoch");
  ASSERT_FALSE(left.empty());
  ASSERT_FALSE(right.empty());
  EXPECT_LT(section.find(left), section.find(right));
  const size_t frozen_epochs =
                   read_lines(fs::path(run_dir).parent_path() / "p5/metrics.jsonl").size(),
               tuned_epochs = read_lines(run_dir + "/metrics.jsonl").size();
  ASSERT_NE(frozen_epochs, tuned_epochs) << "the charts could not be told apart";
  for (const auto& [chart, epochs, kept] :
       {std::tuple{&left, frozen_epochs, frozen["selected_epoch"].get<int>()},
        std::tuple{&right, tuned_epochs, tuned["selected_epoch"].get<int>()}}) {
    EXPECT_NE(chart->find(fmt::format("head kept: epoch {}", kept)), std::string::npos);
    // The last epoch is the x axis's last tick; one more epoch is not on it.
    EXPECT_NE(chart->find(fmt::format(">{}</text>", epochs)), std::string::npos) << *chart;
    EXPECT_EQ(chart->find(fmt::format(">{}</text>", epochs + 1)), std::string::npos) << *chart;
  }
}

TEST(FineTuneRun, TunesBlock5FromAPool5HeadAndPredictAgrees) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const World w = world(carbike);
  testing::TempDir tmp;
  ASSERT_EQ(train(w, "pool5", tmp / "p5", kCommon).rc, 0);
  const ToolRun r =
      train(w, "pool4", tmp / "ft",
            fmt::format("--epochs 2 --batch 4 --lr 1e-4 --dropout 0 --seed 3 --threads 2 --quiet "
                        "--weights {} --init-head {}",
                        shell_quote(w.weights()), shell_quote(tmp / "p5/head.bin")));
  ASSERT_EQ(r.rc, 0) << r.output;

  // The starting point is the pool5 run's head on the same test images.
  const json s5 = read_json(tmp / "p5/summary.json"), s = read_json(tmp / "ft/summary.json");
  EXPECT_EQ(s["finetune"]["init_test"]["accuracy"], s5["selected_test"]["accuracy"]);
  EXPECT_NEAR(s["finetune"]["init_test"]["loss"].get<double>(),
              s5["selected_test"]["loss"].get<double>(), 1e-4);
  EXPECT_DOUBLE_EQ(s["settings"]["lr_block5"].get<double>(), 1e-5);  // default: lr / 10
  EXPECT_EQ(s["settings"]["hidden"], 32);                            // the init head's
  for (const char* f : {"metrics.jsonl", "predictions.csv", "report.html", "warm_start.png"})
    EXPECT_TRUE(fs::exists(tmp / ("ft/" + std::string(f)))) << f;
  expect_warm_start_section(tmp / "ft", s5, s);

  // head.bin: version 2, its block 5 tuned away from the weights file's, features cut at pool4.
  EXPECT_EQ(head_version(tmp / "p5/head.bin"), 1u);  // an ordinary head stays version 1
  EXPECT_EQ(head_version(tmp / "ft/head.bin"), 2u);
  const HeadFile hf = load_head(tmp / "ft/head.bin");
  ASSERT_FALSE(hf.block5.empty());
  const StateDict sd = read_state_dict(w.weights());
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(hf.block5.weight[i] == sd.at(Block5::weight_name(i)).values);
  auto reader = CacheReader::open(w.cache("train", "pool4"));
  EXPECT_EQ(hf.features["fingerprint"], reader->meta().feature_fingerprint());

  // predict: LibTorch blocks 1–4, the tuned block 5, the head; train_head's test predictions.
  const std::string csv = tmp / "pred.csv";
  const ToolRun pr =
      tool("predict", fmt::format("--weights {} --head {} --out {} --threads 2 "
                                  "--quiet {}",
                                  shell_quote(w.weights()), shell_quote(tmp / "ft/head.bin"),
                                  shell_quote(csv), shell_quote(w.test_split())));
  ASSERT_EQ(pr.rc, 0) << pr.output;
  const std::map<std::string, PredictRow> got = parse_predict_csv(testing::read_file(csv));
  const Predictions ref = read_predictions_csv(tmp / "ft/predictions.csv");
  ASSERT_EQ(got.size(), ref.rows.size());
  ASSERT_EQ(ref.rows.size(), static_cast<size_t>(2 * testing::kTestPerClass));
  double worst = 0;
  bool away_from_0_and_1 = false;
  for (const PredictionRow& row : ref.rows) {
    const auto it = got.find(w.test_split() + "/" + row.path);
    ASSERT_NE(it, got.end()) << row.path;
    EXPECT_EQ(it->second.cls, ref.classes[row.predicted]) << row.path;
    for (int k = 0; k < 2; ++k) {
      EXPECT_NEAR(it->second.probs[k], row.probs[k], 1e-5) << row.path;
      worst = std::max(worst, std::abs(it->second.probs[k] - row.probs[k]));
    }
    away_from_0_and_1 |= row.probs[0] > 0.01 && row.probs[0] < 0.99;
  }
  EXPECT_TRUE(away_from_0_and_1) << "saturated probabilities would make the comparison vacuous";
  testing::report_numerics("predict vs train_head, fine-tuned block 5", worst, 1e-5);

  // predict with other weights refuses the tuned head as it refuses a pool5 head.
  const ToolRun bad =
      tool("predict", fmt::format("--weights random:1 --head {} --quiet {}",
                                  shell_quote(tmp / "ft/head.bin"), shell_quote(w.test_split())));
  EXPECT_EQ(bad.rc, 1) << bad.output;
  EXPECT_NE(bad.output.find("weights"), std::string::npos) << bad.output;
}

TEST(FineTuneRun, SgdTrainsBlock5AndRecordsItsSettings) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const World w = world(carbike);
  testing::TempDir tmp;
  const ToolRun r = train(w, "pool4", tmp / "sgd",
                          "--epochs 1 --batch 4 --hidden 16 --optimizer sgd --momentum 0.8 --lr "
                          "1e-3 --lr-block5 2e-4 --threads 2 --weights " +
                              shell_quote(w.weights()));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("crops/s"), std::string::npos) << r.output;
  const json s = read_json(tmp / "sgd/summary.json");
  EXPECT_EQ(s["settings"]["optimizer"], "sgd");
  EXPECT_EQ(s["settings"]["momentum"], 0.8);
  EXPECT_EQ(s["settings"]["lr_block5"], 2e-4);
  EXPECT_EQ(s["finetune"]["block5"], "tuned");
  // Without --init-head there is no frozen run to show.
  EXPECT_EQ(testing::read_file(tmp / "sgd/report.html").find("Warm start"), std::string::npos);
  const HeadFile hf = load_head(tmp / "sgd/head.bin");
  const StateDict sd = read_state_dict(w.weights());
  EXPECT_FALSE(hf.block5.weight[2] == sd.at(Block5::weight_name(2)).values);
}

// An --init-head whose directory holds only the head (copied away from its run): the report says
// why the frozen curves are missing, shows the fine-tuned ones, and the run succeeds.
TEST(FineTuneRun, ReportSaysWhenTheInitHeadsRunHasNoCurves) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const World w = world(carbike);
  testing::TempDir tmp;
  ASSERT_EQ(train(w, "pool5", tmp / "p5", "--epochs 1 --hidden 8 --threads 2 --quiet").rc, 0);
  fs::create_directories(tmp / "bare");
  fs::copy_file(tmp / "p5/head.bin", tmp / "bare/head.bin");
  const ToolRun r =
      train(w, "pool4", tmp / "ft",
            "--epochs 1 --batch 4 --threads 2 --quiet --weights " + shell_quote(w.weights()) +
                " --init-head " + shell_quote(tmp / "bare/head.bin"));
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string html = testing::read_file(tmp / "ft/report.html");
  EXPECT_NE(html.find("The frozen head's curves cannot be shown: its run directory <span "
                      "class=\"mono\">" +
                      (tmp / "bare") + "</span>"),
            std::string::npos);
  EXPECT_NE(html.find("has no summary.json"), std::string::npos);
  EXPECT_TRUE(svg_chart(html, "Frozen head (pool5 run): accuracy per epoch").empty());
  EXPECT_FALSE(svg_chart(html, "Fine-tuned (block 5 + head): accuracy per epoch").empty());
  EXPECT_FALSE(fs::exists(tmp / "ft/warm_start.png"));
}

TEST(FineTuneRun, RefusesOtherWeightsHeadsAndFlags) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const World w = world(carbike);
  testing::TempDir tmp;
  const std::string sha_a = sha256_file(w.weights()), sha_b = sha256_file(w.other_weights());
  // Another weights file: both files and both hashes named.
  expect_refused(
      train(w, "pool4", tmp / "r1", "--epochs 1 --weights " + shell_quote(w.other_weights())), 1,
      {w.other_weights(), sha_b, sha_a, "vgg16_a.pth", w.cache("train", "pool4")});
  // No --weights on a pool4 cache.
  expect_refused(train(w, "pool4", tmp / "r2", "--epochs 1"), 2, {"--weights", sha_a});
  // Fine-tuning flags on pool5 caches.
  expect_refused(train(w, "pool5", tmp / "r3", "--epochs 1 --optimizer sgd"), 2,
                 {"--optimizer sgd", "pool4", w.cache("train", "pool5")});
  expect_refused(train(w, "pool5", tmp / "r4", "--epochs 1 --weights " + shell_quote(w.weights())),
                 2, {"--weights", "pool4"});
  // The linear probe is not a fine-tuning head.
  expect_refused(train(w, "pool4", tmp / "r8",
                       "--hidden 0 --optimizer lbfgs --weights " + shell_quote(w.weights())),
                 2, {"linear probe", "pool5"});
  // --momentum without SGD is a usage error.
  expect_refused(train(w, "pool4", tmp / "r5", "--momentum 0.5"), 2, {"--momentum"});
  // Mixed cuts: the pool5 cache is named.
  expect_refused(tool("train_head", fmt::format("--train {} --test {} --out {} --weights {}",
                                                shell_quote(w.cache("train", "pool4")),
                                                shell_quote(w.cache("test", "pool5")),
                                                shell_quote(tmp / "r6"), shell_quote(w.weights()))),
                 1, {w.cache("test", "pool5"), "pool5"});

  // An --init-head trained on other weights' features (the pool5 head with another weights
  // identity, as a head of another weights file records it).
  ASSERT_EQ(train(w, "pool5", tmp / "p5", "--epochs 1 --hidden 8 --threads 2 --quiet").rc, 0);
  HeadFile h = load_head(tmp / "p5/head.bin");
  h.features["weights"]["sha256"] = sha_b;
  save_head(tmp / "other.bin", h);
  expect_refused(train(w, "pool4", tmp / "r7",
                       "--epochs 1 --weights " + shell_quote(w.weights()) + " --init-head " +
                           shell_quote(tmp / "other.bin")),
                 1, {tmp / "other.bin", "weights:"});
  for (const char* d : {"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"})
    EXPECT_FALSE(fs::exists(tmp / (std::string(d) + "/head.bin"))) << d;
}

}  // namespace
}  // namespace vggcache
