// train_head --sweep on pool4 caches (train_head/sweep/finetune_sweep.h) on the tiny carbike64
// extraction of finetune_world.h, one epoch of a few batches per configuration:
//  - a grid over optimizer, momentum and lr-block5 from an --init-head trains one fine-tuning run
//    per distinct configuration (Adam's momentum is not its setting: adam × two momenta is one
//    configuration), each with its swept values recorded and its block 5 tuned, the results table
//    has the fine-tuning columns, and best.json's command run alone writes the same head;
//  - keys that do not apply to the caches are refused before anything trains, naming the key.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/sha256.h"
#include "finetune_world.h"
#include "head/head_file.h"
#include "test_util.h"
#include "weights/pth_reader.h"

namespace fs = std::filesystem;

namespace vggcache {
namespace {

using nlohmann::json;
using testing::expect_refused;
using testing::read_json;
using testing::shell_quote;
using testing::ToolRun;
using testing::train;
using testing::World;

const char* kSweepRun = "--epochs 1 --batch 4 --seed 3 --val-fraction 0.25 --threads 2 --quiet";

TEST(FineTuneSweep, OneFineTuningRunPerConfigurationWithItsSweptValues) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const World w = testing::world(carbike);
  testing::TempDir tmp;
  ASSERT_EQ(train(w, "pool5", tmp / "p5", std::string(kSweepRun) + " --hidden 8").rc, 0);
  const ToolRun r =
      train(w, "pool4", tmp / "sw",
            fmt::format("{} --hidden 64 --weights {} --init-head {} --sweep "
                        "'optimizer=adam,sgd;momentum=0.5,0.8;lr_block5=2e-4'",
                        kSweepRun, shell_quote(w.weights()), shell_quote(tmp / "p5/head.bin")));
  ASSERT_EQ(r.rc, 0) << r.output;

  const json results = read_json(tmp / "sw/results.json");
  ASSERT_EQ(results["rows"].size(), 3u) << results.dump(1);
  std::set<std::string> seen;
  const StateDict file = read_state_dict(w.weights());
  for (const json& row : results["rows"]) {
    const json& s = row["settings"];
    const std::string opt = s["optimizer"];
    seen.insert(opt == "sgd" ? fmt::format("sgd {}", s["momentum"].get<double>()) : opt);
    EXPECT_EQ(opt == "sgd", s.contains("momentum")) << s.dump();
    EXPECT_EQ(s["lr_block5"], 2e-4);
    EXPECT_EQ(s["freeze_block5"], false);
    // Each directory is a fine-tuning run's, with the settings the row names.
    const std::string dir = row["dir"];
    const json sum = read_json(dir + "/summary.json");
    EXPECT_EQ(sum["settings"]["optimizer"], opt);
    if (opt == "sgd") EXPECT_EQ(sum["settings"]["momentum"], s["momentum"]);
    EXPECT_EQ(sum["settings"]["lr_block5"], 2e-4);
    EXPECT_EQ(sum["settings"]["hidden"], 8);  // the --init-head's, not --hidden 64
    EXPECT_EQ(sum["finetune"]["block5"], "tuned");
    EXPECT_FALSE(sum["finetune"]["init_test"].is_null());
    // Its report names the published directory, not where it was staged, and shows the warm start.
    const std::string page = testing::read_file(dir + "/report.html");
    EXPECT_NE(page.find("<p class=\"sub\">" + dir), std::string::npos) << dir;
    EXPECT_EQ(page.find(".tmp-" + row["id"].get<std::string>()), std::string::npos) << dir;
    EXPECT_NE(page.find("<h2>Warm start"), std::string::npos) << dir;
    const HeadFile hf = load_head(dir + "/head.bin");
    ASSERT_FALSE(hf.block5.empty()) << dir;
    EXPECT_FALSE(hf.block5.weight[2] == file.at("features.28.weight").values) << dir;
  }
  EXPECT_EQ(seen, (std::set<std::string>{"adam", "sgd 0.5", "sgd 0.8"}));
  // The identity holds both starting files' hashes; the CSV the fine-tuning columns.
  const json sweep = read_json(tmp / "sw/sweep.json");
  EXPECT_FALSE(sweep["identity"]["finetune"]["init_head_sha256"].is_null());
  EXPECT_EQ(sweep["identity"]["finetune"]["weights_sha256"], sha256_file(w.weights()));
  const std::string csv = testing::read_file(tmp / "sw/results.csv");
  EXPECT_NE(csv.find(",optimizer,momentum,lr_block5,freeze_block5,"), std::string::npos) << csv;

  // best.json's command, run alone, trains the same head as its sweep configuration.
  const json best = read_json(tmp / "sw/best.json");
  std::string cmd = best["command"];
  ASSERT_EQ(cmd.rfind("train_head ", 0), 0u) << cmd;
  cmd.replace(cmd.find("RUN_DIR"), 7, shell_quote(tmp / "single"));
  cmd = shell_quote(testing::bin_dir() + "/train_head") + cmd.substr(10) + " --threads 1 --quiet";
  std::string out;
  ASSERT_EQ(testing::run_command(cmd, &out), 0) << cmd << "\n" << out;
  const HeadFile a = load_head(best["head"].get<std::string>()),
                 b = load_head(tmp / "single/head.bin");
  EXPECT_TRUE(a.weights.w1 == b.weights.w1);
  EXPECT_TRUE(a.weights.w2 == b.weights.w2);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(a.block5.weight[i] == b.block5.weight[i]) << i;
}

TEST(FineTuneSweep, RefusesKeysThatDoNotApplyToTheCaches) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const World w = testing::world(carbike);
  testing::TempDir tmp;
  const std::string weights = " --weights " + shell_quote(w.weights());
  auto sweep = [&](const std::string& cut, const std::string& dir, const std::string& spec,
                   const std::string& extra) {
    return train(w, cut, tmp / dir,
                 fmt::format("{} --sweep {}{}", kSweepRun, shell_quote(spec), extra));
  };
  // Fine-tuning has no standardisation and no probe.
  expect_refused(sweep("pool4", "s1", "standardize=false,true", weights), 2,
                 {"standardize", "fine-tuning"});
  expect_refused(sweep("pool4", "s2", "optimizer=adam,lbfgs", weights), 2,
                 {"optimizer lbfgs", "linear probe"});
  expect_refused(sweep("pool4", "s3", "hidden=0,8", weights), 2, {"hidden 0"});
  expect_refused(sweep("pool4", "s4", "l2=1,10", weights), 2, {"l2", "linear probe"});
  // --momentum with no SGD configuration would be unused.
  expect_refused(sweep("pool4", "s9", "lr=1e-3,1e-4", weights + " --momentum 0.5"), 2,
                 {"--momentum", "sgd"});
  // --weights is required as for a single run.
  expect_refused(sweep("pool4", "s5", "lr=1e-3,1e-4", ""), 2, {"--weights"});
  // Fine-tuning keys and flags on pool5 caches.
  expect_refused(sweep("pool5", "s6", "lr_block5=1e-4,1e-3", ""), 2, {"lr-block5", "pool4"});
  expect_refused(sweep("pool5", "s7", "optimizer=adam,sgd", ""), 2, {"optimizer sgd", "pool4"});
  expect_refused(sweep("pool5", "s8", "lr=1e-3,1e-4", weights), 2, {"--weights", "pool4"});
  expect_refused(sweep("pool5", "s10", "lr=1e-3,1e-4", " --momentum 0.5"), 2,
                 {"--momentum", "pool4"});
  for (const char* d : {"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10"})
    EXPECT_FALSE(fs::exists(tmp / (std::string(d) + "/sweep.json"))) << d;
}

}  // namespace
}  // namespace vggcache
