// Sweep specs and plans without training: parsing (inline, TOML, JSON) and its errors, grid and
// random expansion, configuration ids, shard slices, units and waves, and the ranking.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/error.h"
#include "train_head/sweep/plan.h"
#include "train_head/sweep/results.h"
#include "train_head/sweep/spec.h"

namespace vggcache {
namespace {

using nlohmann::json;

const char* kIssueSpec = "lr=1e-3,3e-4,1e-4;dropout=0.3,0.5;hidden=128,256;weight-decay=0,1e-4";

std::string key_of(const TrainParams& p) {
  return config_settings_json(p).dump();
}

TEST(SweepSpec, InlineGridExpandsEveryCombinationOnce) {
  SweepSpec spec = parse_sweep_spec(kIssueSpec);
  ASSERT_EQ(spec.axes.size(), 4u);
  // Canonical order, whatever the order written.
  EXPECT_EQ(spec.axes[0].key, "lr");
  EXPECT_EQ(spec.axes[1].key, "weight-decay");
  EXPECT_EQ(spec.axes[2].key, "dropout");
  EXPECT_EQ(spec.axes[3].key, "hidden");
  EXPECT_EQ(grid_size(spec), 24u);
  TrainParams base;
  base.epochs = 7;
  base.batch = 33;
  std::vector<TrainParams> grid = expand_grid(spec, base);
  ASSERT_EQ(grid.size(), 24u);
  std::set<std::string> seen;
  std::map<double, int> lr_count;
  for (const TrainParams& p : grid) {
    EXPECT_TRUE(seen.insert(key_of(p)).second) << key_of(p);
    EXPECT_EQ(p.epochs, 7);  // unswept settings come from the command's flags
    EXPECT_EQ(p.batch, 33);
    ++lr_count[p.lr];
  }
  EXPECT_EQ(lr_count[1e-3], 8);
  EXPECT_EQ(lr_count[3e-4], 8);
  EXPECT_EQ(lr_count[1e-4], 8);
  // First key slowest, last fastest.
  EXPECT_EQ(grid[0].lr, 1e-3);
  EXPECT_EQ(grid[0].weight_decay, 0.0);
  EXPECT_EQ(grid[0].dropout, 0.3);
  EXPECT_EQ(grid[0].hidden, 128);
  EXPECT_EQ(grid[1].hidden, 256);
  EXPECT_EQ(grid[2].dropout, 0.5);
  EXPECT_EQ(grid[23].lr, 1e-4);
  EXPECT_EQ(grid[23].hidden, 256);
}

TEST(SweepSpec, EveryFlagCanBeSwept) {
  SweepSpec spec = parse_sweep_spec(
      "lr=0.01;weight_decay=0.5;dropout=0.25;hidden=8;batch=12;epochs=3;standardize=true;"
      "all-crops=1;seed=42");
  std::vector<TrainParams> g = expand_grid(spec, TrainParams{});
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].lr, 0.01);
  EXPECT_EQ(g[0].weight_decay, 0.5);
  EXPECT_EQ(g[0].dropout, 0.25);
  EXPECT_EQ(g[0].hidden, 8);
  EXPECT_EQ(g[0].batch, 12);
  EXPECT_EQ(g[0].epochs, 3);
  EXPECT_TRUE(g[0].standardize);
  EXPECT_TRUE(g[0].all_crops);
  EXPECT_EQ(g[0].seed, 42u);
}

// Fine-tuning's keys (pool4 caches, --weights set): Adam's configurations take the command's
// momentum and frozen ones its lr-block5, so those differing only there are one; settings show
// block 5's rate as used.
TEST(SweepSpec, FineTuningKeysAndTheirRules) {
  TrainParams base;
  base.weights = "vgg16.pth";
  base.momentum = 0.9;
  const SweepSpec spec = parse_sweep_spec(
      "optimizer=adam,sgd;momentum=0.5,0.8;lr_block5=1e-3,2e-4;freeze_block5=false,true");
  std::vector<TrainParams> g = expand_grid(spec, base);
  // adam: 2 rates unfrozen + 1 frozen; sgd: 2 momenta × (2 rates unfrozen + 1 frozen).
  ASSERT_EQ(g.size(), 9u);
  std::set<std::string> seen;
  for (const TrainParams& p : g) {
    const json s = config_settings_json(p);
    EXPECT_TRUE(seen.insert(s.dump()).second) << s.dump();
    EXPECT_EQ(s.at("optimizer"), p.optimizer);
    if (p.optimizer == "adam") {
      EXPECT_EQ(p.momentum, 0.9);
      EXPECT_FALSE(s.contains("momentum"));
    } else {
      EXPECT_EQ(s.at("momentum"), p.momentum);
    }
    if (p.freeze_block5) EXPECT_EQ(s.at("lr_block5"), p.lr / 10);  // the command's: --lr / 10
    EXPECT_FALSE(s.contains("l2"));
  }
  // Without --weights (pool5 caches) nothing of this is in the settings, so ids stay as they were.
  EXPECT_FALSE(config_settings_json(TrainParams{}).contains("lr_block5"));
  // Which caches a spec's keys apply to.
  EXPECT_NO_THROW(check_spec_for_caches(spec, /*finetune=*/true, /*init_head=*/false));
  auto refused = [](const std::string& text, bool finetune, bool init_head) {
    try {
      check_spec_for_caches(parse_sweep_spec(text), finetune, init_head);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(refused("momentum=0.5,0.9", false, false).find("momentum applies to fine-tuning"),
            std::string::npos);
  EXPECT_NE(refused("optimizer=adam,sgd", false, false).find("optimizer sgd"), std::string::npos);
  EXPECT_EQ(refused("optimizer=adam,lbfgs", false, false), "(accepted)");
  EXPECT_NE(refused("hidden=8,16", true, true).find("--init-head"), std::string::npos);
  EXPECT_EQ(refused("hidden=8,16", true, false), "(accepted)");
  EXPECT_NE(refused("l2=1,2", true, false).find("l2"), std::string::npos);
  EXPECT_EQ(refused("standardize=false", true, false), "(accepted)");
  // A word outside the key's list names them all.
  try {
    parse_sweep_spec("optimizer=adam,rmsprop");
    ADD_FAILURE() << "rmsprop accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'adam', 'lbfgs' or 'sgd'"), std::string::npos)
        << e.what();
  }
}

TEST(SweepSpec, SameSpaceInAnySyntax) {
  const std::string toml = R"(# the issue's grid
lr = [1e-3, 3e-4,
      1e-4]          # spans lines
dropout = [0.3, 0.5]
"hidden" = [128, 256]
weight_decay = [0, 1e-4,]
)";
  const std::string js =
      R"({"lr": [1e-3, 3e-4, 1e-4], "dropout": [0.3, 0.5], "hidden": [128, 256],
          "weight-decay": [0, 0.0001]})";
  const json a = parse_sweep_spec(kIssueSpec).to_json();
  EXPECT_EQ(parse_sweep_spec(toml).to_json(), a);
  EXPECT_EQ(parse_sweep_spec(js).to_json(), a);
  EXPECT_EQ(parse_sweep_spec("hidden=128,256;weight-decay=0,1e-4;lr=1e-3,3e-4,1e-4;dropout=0.3,0.5")
                .to_json(),
            a);
  // Booleans and ranges.
  SweepSpec t = parse_sweep_spec("standardize = [true, false]\nlr = \"1e-4..1e-2\"\n");
  SweepSpec j = parse_sweep_spec(R"({"standardize": [true, false], "lr": "1e-4..1e-2"})");
  SweepSpec i = parse_sweep_spec("standardize=true,false;lr=1e-4..1e-2");
  EXPECT_EQ(t.to_json(), j.to_json());
  EXPECT_EQ(t.to_json(), i.to_json());
  EXPECT_EQ(t.to_json()["lr"][0], "0.0001..0.01");
}

TEST(SweepSpec, ErrorsNameTheKeyAndTheProblem) {
  const char* cases[][3] = {
      {"lr=0", "lr", "out of range"},
      {"lr=-1e-3,1e-3", "lr", "out of range"},
      {"dropout=0.5,1", "dropout", "out of range"},
      {"hidden=-1", "hidden", "out of range"},  // 0 is the linear probe
      {"hidden=1.5", "hidden", "integer"},
      {"batch=abc", "batch", "not a number"},
      {"epochs=", "epochs", "empty"},
      {"weight-decay=-1", "weight-decay", "out of range"},
      {"seed=-1", "seed", "out of range"},
      {"standardize=maybe", "standardize", "true or false"},
      {"lr=1e-3,1e-3", "lr", "listed twice"},
      {"lr=1e-3;lr=1e-4", "lr", "given twice"},
      {"learning_rate=1e-3", "learning_rate", "unknown key"},
      {"lr", "lr", "not key=value"},
      {"lr=1e-2..1e-4", "lr", "lo < hi"},
      {"weight-decay=0..1e-3", "weight-decay", "lo > 0"},
      {"lr=1e-4..1e-3,1e-2", "lr", "only value"},
      {"[grid]\nlr = [1e-3]", "[grid]", "not supported"},
      {"lr = [1e-3, 1e-4", "lr", "closing"},
      {"{\"lr\": {\"min\": 1}}", "lr", "not a value"},
      {"{\"hidden\": true}", "hidden", "not a number"},
      {"[1, 2]", "", "not supported"},
      {"{\"lr\": [1e-3,}", "", "not valid JSON"},
      {"   ", "", "empty"},
  };
  for (auto& c : cases) {
    try {
      (void)parse_sweep_spec(c[0]);
      ADD_FAILURE() << "accepted: " << c[0];
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << msg;
      EXPECT_NE(msg.find(c[1]), std::string::npos) << c[0] << " → " << msg;
      EXPECT_NE(msg.find(c[2]), std::string::npos) << c[0] << " → " << msg;
    }
  }
  // A range needs random search.
  try {
    (void)grid_size(parse_sweep_spec("lr=1e-4..1e-2"));
    ADD_FAILURE() << "grid of a range accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--samples"), std::string::npos) << e.what();
  }
  // Too big a grid is refused before anything is allocated.
  EXPECT_THROW(grid_size(parse_sweep_spec("seed=0,1,2,3,4,5,6,7,8,9;hidden=1,2,3,4,5,6,7,8,9,10;"
                                          "batch=1,2,3,4,5,6,7,8,9,10;epochs=1,2,3,4,5,6,7,8,9,10;"
                                          "lr=1,2,3,4,5,6,7,8,9,10;dropout=0,0.5")),
               Error);
}

TEST(SweepSpec, RandomDrawsAreDistinctInRangeAndLogUniform) {
  SweepSpec spec =
      parse_sweep_spec("lr=1e-4..1e-2;weight-decay=0,1e-5,1e-3;dropout=0.1,0.5;hidden=64,128");
  TrainParams base;
  std::vector<TrainParams> a = sample_configs(spec, base, 400, 3);
  ASSERT_EQ(a.size(), 400u);
  std::set<std::string> seen;
  int below_1e3 = 0, wd_zero = 0;
  for (const TrainParams& p : a) {
    EXPECT_TRUE(seen.insert(key_of(p)).second);
    EXPECT_GE(p.lr, 1e-4);
    EXPECT_LE(p.lr, 1e-2);
    below_1e3 += p.lr < 1e-3;
    // 3 significant digits.
    EXPECT_EQ(p.lr, std::stod(fmt::format("{:.2e}", p.lr)));
    EXPECT_TRUE(p.weight_decay == 0 || (p.weight_decay >= 1e-5 && p.weight_decay <= 1e-3));
    wd_zero += p.weight_decay == 0;
    EXPECT_GE(p.dropout, 0.1);
    EXPECT_LE(p.dropout, 0.5);
    EXPECT_TRUE(p.hidden == 64 || p.hidden == 128);
  }
  // Log-uniform: 1e-3 is the middle of [1e-4, 1e-2] on a log scale.
  EXPECT_GT(below_1e3, 140);
  EXPECT_LT(below_1e3, 260);
  // A listed 0 keeps a share of 1/3.
  EXPECT_GT(wd_zero, 90);
  EXPECT_LT(wd_zero, 180);
  // Reproducible from the seed; another seed draws others.
  std::vector<TrainParams> again = sample_configs(spec, base, 400, 3);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(key_of(a[i]), key_of(again[i]));
  EXPECT_NE(key_of(sample_configs(spec, base, 1, 4)[0]), key_of(a[0]));
  // Integer ranges.
  for (const TrainParams& p :
       sample_configs(parse_sweep_spec("hidden=16..1024;epochs=2..4;seed=10..12"), base, 30, 1)) {
    EXPECT_GE(p.hidden, 16);
    EXPECT_LE(p.hidden, 1024);
    EXPECT_GE(p.epochs, 2);
    EXPECT_LE(p.epochs, 4);
    EXPECT_GE(p.seed, 10u);
    EXPECT_LE(p.seed, 12u);
  }
}

TEST(SweepSpec, RandomRefusesMoreSamplesThanTheSpaceHolds) {
  SweepSpec spec = parse_sweep_spec("hidden=8,16;seed=1,2");
  EXPECT_EQ(sample_configs(spec, TrainParams{}, 4, 0).size(), 4u);
  try {
    (void)sample_configs(spec, TrainParams{}, 5, 0);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only 4"), std::string::npos) << e.what();
  }
}

SweepPlan plan_of(const std::string& spec, SweepParams sweep = {}, TrainParams base = {},
                  const std::string& train_fp = "t", const std::string& test_fp = "e") {
  base.threads = 2;
  base.val_fraction = 0.1;
  return make_sweep_plan(parse_sweep_spec(spec), sweep, base, train_fp, test_fp);
}

TEST(SweepPlan, IdsAreStableShortAndNameTheSweep) {
  SweepPlan a = plan_of(kIssueSpec);
  ASSERT_EQ(a.configs.size(), 24u);
  std::set<std::string> ids;
  for (const SweepConfig& c : a.configs) {
    EXPECT_EQ(c.id.size(), 12u);
    EXPECT_EQ(c.id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(c.id);
  }
  EXPECT_EQ(ids.size(), 24u);
  // Same sweep written otherwise, or with other threads: same ids.
  TrainParams threads;
  threads.threads = 8;
  SweepPlan b =
      plan_of("hidden=128,256;weight_decay=0,1e-4;lr=1e-3,3e-4,1e-4;dropout=0.3,0.5", {}, threads);
  EXPECT_EQ(a.identity_hash, b.identity_hash);
  for (size_t i = 0; i < a.configs.size(); ++i) EXPECT_EQ(a.configs[i].id, b.configs[i].id);
  // A swept key's base value is not part of the identity.
  TrainParams lr;
  lr.lr = 0.5;
  EXPECT_EQ(plan_of(kIssueSpec, {}, lr).identity_hash, a.identity_hash);
  // Another sweep: other ids.
  TrainParams epochs;
  epochs.epochs = 9;
  EXPECT_NE(plan_of(kIssueSpec, {}, epochs).configs[0].id, a.configs[0].id);
  EXPECT_NE(plan_of(kIssueSpec, {}, {}, "other").configs[0].id, a.configs[0].id);
  EXPECT_NE(plan_of(kIssueSpec, {}, {}, "t", "other").identity_hash, a.identity_hash);
  // The first difference is named.
  EXPECT_EQ(json_difference(a.identity, plan_of(kIssueSpec, {}, epochs).identity),
            "fixed.epochs: 5 vs 9");
  EXPECT_THROW(check_same_sweep(sweep_json(a, {}), plan_of("lr=1e-3").identity, "dir"), Error);
  EXPECT_NO_THROW(check_same_sweep(sweep_json(a, {}), b.identity, "dir"));
}

TEST(SweepPlan, ShardsAreDisjointAndCoverTheSweep) {
  SweepPlan plan = plan_of("lr=1e-3,3e-4,1e-4;hidden=8,16;seed=0,1;batch=10,20,30");
  const size_t n = plan.configs.size();
  ASSERT_EQ(n, 36u);
  for (int count = 1; count <= 8; ++count) {
    std::vector<int> owner(n, -1);
    size_t smallest = n, largest = 0;
    for (int i = 0; i < count; ++i) {
      std::vector<size_t> slice = shard_configs(plan.configs, i, count);
      smallest = std::min(smallest, slice.size());
      largest = std::max(largest, slice.size());
      for (size_t c : slice) {
        EXPECT_EQ(owner[c], -1) << "configuration " << c << " in two shards of " << count;
        owner[c] = i;
      }
    }
    for (size_t c = 0; c < n; ++c) EXPECT_NE(owner[c], -1) << c << " in no shard of " << count;
    EXPECT_LE(largest - smallest, 1u);
  }
  // Shards keep schedule groups whole where the counts allow: 6 groups of 6 over 3 shards.
  for (int i = 0; i < 3; ++i) {
    std::set<std::string> keys;
    for (size_t c : shard_configs(plan.configs, i, 3))
      keys.insert(schedule_key(plan.configs[c].params));
    EXPECT_EQ(keys.size(), 2u);  // 12 configurations: 2 whole groups of 6
  }
  EXPECT_THROW(shard_configs(plan.configs, 3, 3), Error);
}

TEST(SweepPlan, UnitsShareOneScheduleAndWavesRespectParallel) {
  SweepPlan plan = plan_of("lr=1e-3,3e-4,1e-4;hidden=8,16;seed=0,1;batch=10,20");
  std::vector<size_t> pending;
  for (size_t i = 0; i < plan.configs.size(); i += (i % 5 == 3) ? 2 : 1) pending.push_back(i);
  for (int k : {1, 2, 3, 5, 6, 100}) {
    std::vector<SweepWave> waves = plan_waves(plan.configs, pending, k);
    std::multiset<size_t> got;
    for (const SweepWave& w : waves) {
      size_t heads = 0;
      for (const SweepUnit& u : w) {
        ASSERT_FALSE(u.empty());
        heads += u.size();
        for (size_t c : u) {
          got.insert(c);
          EXPECT_EQ(schedule_key(plan.configs[c].params), schedule_key(plan.configs[u[0]].params));
        }
      }
      EXPECT_LE(heads, static_cast<size_t>(k));
    }
    EXPECT_EQ(got, std::multiset<size_t>(pending.begin(), pending.end())) << k;
  }
  // With room for all, each schedule is one unit: 4 schedules (seed × batch).
  size_t units = 0;
  std::vector<size_t> all;
  for (size_t i = 0; i < plan.configs.size(); ++i) all.push_back(i);
  for (const SweepWave& w : plan_waves(plan.configs, all, 100)) units += w.size();
  EXPECT_EQ(units, 4u);
}

TEST(SweepPlan, DefaultParallelFitsMemoryAndThreads) {
  SweepPlan plan = plan_of(kIssueSpec);
  std::vector<size_t> all;
  for (size_t i = 0; i < plan.configs.size(); ++i) all.push_back(i);
  const uint64_t per = head_training_bytes(25088, 256, 2);
  // Memory bounds it...
  EXPECT_EQ(default_parallel(plan.configs, all, 25088, 2, 5 * per, 64), 5);
  EXPECT_EQ(default_parallel(plan.configs, all, 25088, 2, 1, 64), 1);
  // ...then 4 configurations per thread, then the configurations there are.
  EXPECT_EQ(default_parallel(plan.configs, all, 25088, 2, 1000 * per, 2), 8);
  EXPECT_EQ(default_parallel(plan.configs, all, 25088, 2, 1000 * per, 3), 12);
  EXPECT_EQ(default_parallel(plan.configs, all, 25088, 2, 1000 * per, 64), 24);
  EXPECT_EQ(default_parallel(plan.configs, {all.begin(), all.begin() + 3}, 25088, 2, 1000 * per, 2),
            3);
}

TEST(SweepResults, RankingUsesValidationOnly) {
  std::vector<SweepRow> rows(6);
  const double val[] = {0.8, 0.9, 0.9, 0.7, 0.9, 0.8};
  const double loss[] = {0.3, 0.2, 0.1, 0.5, 0.1, 0.3};
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].index = i;
    rows[i].id = "c" + std::to_string(i);
    rows[i].val_accuracy = val[i];
    rows[i].val_loss = loss[i];
    rows[i].test_accuracy = 0.1 * i;
  }
  std::vector<SweepRow> a = rows;
  rank_rows(&a, "accuracy");
  std::vector<std::string> order;
  for (const SweepRow& r : a) order.push_back(r.id);
  EXPECT_EQ(order, (std::vector<std::string>{"c2", "c4", "c1", "c0", "c5", "c3"}));
  // Any test results: the same ranking.
  std::vector<SweepRow> b = rows;
  for (size_t i = 0; i < b.size(); ++i) {
    b[i].test_accuracy = 1.0 - 0.13 * i;
    b[i].test_loss = 0.7 * i;
    b[i].final_test_accuracy = 0.01 * i;
  }
  rank_rows(&b, "accuracy");
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].id, b[i].id);
}

}  // namespace
}  // namespace vggcache
