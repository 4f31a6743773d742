// `train_head --sweep` and `--collect` end to end on synthetic caches: every configuration equals
// a single run with its settings, a killed sweep resumes to the same results, shards are disjoint
// and collect into the unsharded table (refusing other sweeps), and selection never reads the
// test set.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/cache.h"
#include "train_fixtures.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::read_file;
using testing::shell_quote;
namespace fs = std::filesystem;

using testing::ToolRun;
using testing::train_head;

json read_json(const std::string& path) {
  return json::parse(read_file(path));
}

// metrics.jsonl without its timings: what must be identical between two runs.
std::vector<json> metrics_without_timing(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> v;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json j = json::parse(line);
    for (const char* k : {"seconds", "train_seconds", "vectors_per_second"}) j.erase(k);
    v.push_back(j);
  }
  return v;
}

// results.json rows without timings and locations.
std::vector<json> result_rows(const std::string& sweep_dir) {
  std::vector<json> rows;
  const json results = read_json(sweep_dir + "/results.json");
  for (json r : results["rows"]) {
    r.erase("seconds");
    r.erase("dir");
    rows.push_back(r);
  }
  return rows;
}

std::set<std::string> finished_ids(const std::string& sweep_dir) {
  std::set<std::string> ids;
  for (const auto& e : fs::directory_iterator(sweep_dir))
    if (e.is_directory() && e.path().filename().string()[0] != '.' &&
        fs::exists(e.path() / "done.json"))
      ids.insert(e.path().filename().string());
  return ids;
}

// The single-run flags of a configuration's settings (as config_settings_json spells them).
std::string single_flags(const json& s, double val_fraction) {
  std::string f = "--epochs " + s["epochs"].dump() + " --batch " + s["batch"].dump() + " --lr " +
                  s["lr"].dump() + " --hidden " + s["hidden"].dump() + " --dropout " +
                  s["dropout"].dump() + " --weight-decay " + s["weight_decay"].dump() + " --seed " +
                  s["seed"].dump() + " --val-fraction " + std::to_string(val_fraction);
  if (s["standardize"].get<bool>()) f += " --standardize";
  if (s["all_crops"].get<bool>()) f += " --all-crops";
  return f;
}

class SweepCli : public ::testing::Test {
 protected:
  void make_pair(int dim = 64, int per_class = 40) {
    testing::SyntheticSpec tr;
    tr.dim = dim;
    tr.crops = 4;
    tr.seed = 1;
    tr.images_per_class = per_class;
    tr.separation = 0.4f;  // not too easy, so configurations differ
    testing::make_synthetic_cache(train_, tr);
    testing::SyntheticSpec te = tr;
    te.crops = 3;
    te.images_per_class = 15;
    te.seed = 2;
    testing::make_synthetic_cache(test_, te);
  }
  std::string caches(const std::string& test = "") {
    return "--train " + shell_quote(train_) + " --test " + shell_quote(test.empty() ? test_ : test);
  }
  std::string sweep(const std::string& out, const std::string& spec, const std::string& extra = "",
                    const std::string& test = "") {
    return caches(test) + " --out " + shell_quote(out) + " --sweep " + shell_quote(spec) +
           " --epochs 3 --batch 16 --threads 2 --val-fraction 0.25 " + extra;
  }
  testing::TempDir tmp_;
  std::string train_ = tmp_ / "train", test_ = tmp_ / "test";
};

TEST_F(SweepCli, EveryConfigurationEqualsItsSingleRun) {
  make_pair();
  // 16 configurations in 4 schedules (seed × batch) trained 5 at a time: units of one schedule
  // share batches, units of different schedules train concurrently.
  const std::string spec = "lr=3e-3,1e-3;hidden=16,32;seed=0,1;batch=16,20;dropout=0.3";
  ToolRun r = train_head(sweep(tmp_ / "sw", spec, "--parallel 5 --standardize"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("16 to train"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ETA"), std::string::npos) << r.output;      // progress
  EXPECT_NE(r.output.find("val_acc"), std::string::npos) << r.output;  // top table

  json sw = read_json(tmp_ / "sw/sweep.json");
  ASSERT_EQ(sw["configurations"].size(), 16u);
  for (const json& c : sw["configurations"]) {
    const std::string id = c["id"], dir = tmp_ / ("sw/" + id);
    ASSERT_TRUE(fs::exists(dir + "/done.json")) << id;
    const std::string single = tmp_ / ("single_" + id);
    ToolRun s = train_head(caches() + " --out " + shell_quote(single) + " --threads 1 --quiet " +
                           single_flags(c["settings"], 0.25));
    ASSERT_EQ(s.rc, 0) << s.output;
    // Bit for bit: the head file and every metric but the timings.
    EXPECT_EQ(read_file(dir + "/head.bin"), read_file(single + "/head.bin")) << id;
    EXPECT_EQ(metrics_without_timing(dir + "/metrics.jsonl"),
              metrics_without_timing(single + "/metrics.jsonl"))
        << id;
    json a = read_json(dir + "/summary.json"), b = read_json(single + "/summary.json");
    for (const char* k : {"selected_epoch", "selected_test", "final_test", "val_images"})
      EXPECT_EQ(a[k], b[k]) << id << " " << k;
    a["settings"].erase("threads");
    b["settings"].erase("threads");
    EXPECT_EQ(a["settings"], b["settings"]) << id;
  }

  // The tables: one row per configuration, best validation first; best.json names the top row.
  json results = read_json(tmp_ / "sw/results.json");
  ASSERT_EQ(results["rows"].size(), 16u);
  EXPECT_TRUE(results["complete"].get<bool>());
  for (size_t i = 1; i < 16; ++i) {
    const json &p = results["rows"][i - 1], &q = results["rows"][i];
    EXPECT_TRUE(p["val_accuracy"] > q["val_accuracy"] ||
                (p["val_accuracy"] == q["val_accuracy"] && p["val_loss"] <= q["val_loss"]));
  }
  json best = read_json(tmp_ / "sw/best.json");
  EXPECT_EQ(best["best"]["id"], results["rows"][0]["id"]);
  EXPECT_NE(best["command"].get<std::string>().find("--val-fraction"), std::string::npos);
  std::string csv = read_file(tmp_ / "sw/results.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 17);
  EXPECT_EQ(csv.rfind("rank,id,lr,weight_decay,dropout,hidden,batch,epochs,standardize,all_crops,"
                      "seed,class_weight,sampler,val_accuracy,val_loss,best_epoch,test_accuracy",
                      0),
            0u);
  EXPECT_NE(csv.find("\n1," + results["rows"][0]["id"].get<std::string>() + ","),
            std::string::npos);

  // Rerun: everything finished, nothing trained again, same table.
  const std::vector<json> before = result_rows(tmp_ / "sw");
  ToolRun again = train_head(sweep(tmp_ / "sw", spec, "--parallel 5 --standardize"));
  ASSERT_EQ(again.rc, 0) << again.output;
  EXPECT_NE(again.output.find("16 already finished, 0 to train"), std::string::npos)
      << again.output;
  EXPECT_EQ(result_rows(tmp_ / "sw"), before);
}

// A prepool-f32 cache (C × 2 × 2 maps, as VGG16 leaves 64-px images): single runs and sweeps
// train it through the compact first layer.
void make_prepool_cache(const std::string& dir, int channels, int per_class, int crops,
                        uint64_t seed) {
  constexpr int kSide = 2;
  const int floats = channels * kSide * kSide;
  CacheMeta meta;
  meta.tool_version = "test";
  meta.codec = Codec::kPrepoolF32;
  meta.dim = channels * 49;
  meta.payload_floats = floats;
  meta.prepool_shape = {channels, kSide, kSide};
  meta.classes = {"a", "b"};
  meta.source_dir = "synthetic";
  meta.weights = {"random:1", "", true};
  meta.preprocess.size = 64;
  meta.preprocess.crops = crops;
  meta.preprocess.eval = crops == 1;
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < per_class; ++i)
      meta.images.push_back(
          {meta.classes[c] + "/" + std::to_string(i) + ".jpg", 1000, std::string(64, '0'), c});
  Rng centre_rng(5, Stream::kInit), rng(seed, Stream::kShuffle);
  std::vector<float> centres(2 * static_cast<size_t>(floats));
  for (auto& v : centres) v = 0.5f * testing::gaussian(centre_rng);
  auto writer = CacheWriter::open(dir, meta, WriterOptions{64ull << 20, true});
  std::vector<std::vector<float>> maps;
  std::vector<RecordIn> recs;
  for (uint32_t img = 0; img < meta.images.size(); ++img)
    for (int k = 0; k < crops; ++k) {
      const int label = meta.images[img].label;
      std::vector<float> z(floats);
      for (int j = 0; j < floats; ++j)
        z[j] = std::max(0.0f,
                        centres[static_cast<size_t>(label) * floats + j] + testing::gaussian(rng));
      maps.push_back(std::move(z));
      recs.push_back({img, static_cast<uint32_t>(k), label, {}, nullptr});
    }
  for (size_t i = 0; i < recs.size(); ++i) recs[i].data = maps[i].data();
  writer->put_batch(recs, static_cast<uint32_t>(meta.images.size()));
  writer->finish();
}

TEST_F(SweepCli, CompactCachesEqualSingleRunsToo) {
  make_prepool_cache(train_, 48, 40, 3, 1);
  make_prepool_cache(test_, 48, 12, 1, 2);
  // Weight decay 0 and > 0 take different compact paths; standardize exercises its expansion.
  const std::string spec = "lr=3e-3,1e-3;weight-decay=0,1e-4;standardize=false,true";
  ToolRun r = train_head(sweep(tmp_ / "sw", spec, "--hidden 16"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("compact first layer"), std::string::npos) << r.output;
  const json sw = read_json(tmp_ / "sw/sweep.json");
  ASSERT_EQ(sw["configurations"].size(), 8u);
  for (const json& c : sw["configurations"]) {
    const std::string id = c["id"], single = tmp_ / ("single_" + id);
    ToolRun s = train_head(caches() + " --out " + shell_quote(single) + " --threads 2 --quiet " +
                           single_flags(c["settings"], 0.25));
    ASSERT_EQ(s.rc, 0) << s.output;
    EXPECT_NE(s.output.find("compact first layer"), std::string::npos) << s.output;
    EXPECT_EQ(read_file(tmp_ / ("sw/" + id + "/head.bin")), read_file(single + "/head.bin")) << id;
    EXPECT_EQ(metrics_without_timing(tmp_ / ("sw/" + id + "/metrics.jsonl")),
              metrics_without_timing(single + "/metrics.jsonl"))
        << id;
  }
}

TEST_F(SweepCli, KilledSweepResumesToTheSameResults) {
  // Big enough that one configuration takes a noticeable time, so the kill lands mid-sweep.
  make_pair(8192, 150);
  const std::string spec = "lr=3e-3,1e-3,3e-4;hidden=32,64";
  const std::string extra = "--parallel 1 --quiet --epochs 30";
  ToolRun whole = train_head(sweep(tmp_ / "whole", spec, extra));
  ASSERT_EQ(whole.rc, 0) << whole.output;

  // Kill -9 as soon as the first configuration is published.
  const std::string dir = tmp_ / "killed";
  const std::string script =
      shell_quote(testing::bin_dir() + "/train_head") + " " + sweep(dir, spec, extra) +
      " >/dev/null 2>&1 & pid=$!; for i in $(seq 1 3000); do ls " + shell_quote(dir) +
      "/*/done.json >/dev/null 2>&1 && break; sleep 0.01; done; kill -9 $pid; wait $pid; true";
  ASSERT_EQ(testing::run_command("bash -c " + shell_quote(script)), 0);
  const size_t done_at_kill = finished_ids(dir).size();
  ASSERT_GE(done_at_kill, 1u);
  ASSERT_LT(done_at_kill, 6u) << "the sweep finished before the kill; make it bigger";
  // Leftovers of a kill at other moments: a half-written configuration directory, and a
  // published-looking one without its done marker. Both must be trained again.
  std::vector<std::string> unfinished;
  const json sweep_doc = read_json(dir + "/sweep.json");
  for (const json& c : sweep_doc["configurations"])
    if (!fs::exists(dir + "/" + c["id"].get<std::string>() + "/done.json"))
      unfinished.push_back(c["id"]);
  ASSERT_GE(unfinished.size(), 2u);
  fs::create_directories(dir + "/.tmp-" + unfinished[0]);
  testing::write_file(dir + "/.tmp-" + unfinished[0] + "/metrics.jsonl", "{\"epoch\": 1, \"tr");
  fs::create_directories(dir + "/" + unfinished[1]);
  testing::write_file(dir + "/" + unfinished[1] + "/head.bin", "junk");

  ToolRun resumed = train_head(sweep(dir, spec, extra));
  ASSERT_EQ(resumed.rc, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(std::to_string(done_at_kill) + " already finished"),
            std::string::npos)
      << resumed.output;
  EXPECT_EQ(finished_ids(dir), finished_ids(tmp_ / "whole"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "leftover " << e.path();
  for (const std::string& id : finished_ids(dir)) {
    EXPECT_EQ(read_file(dir + "/" + id + "/head.bin"),
              read_file(tmp_ / ("whole/" + id + "/head.bin")));
    EXPECT_EQ(metrics_without_timing(dir + "/" + id + "/metrics.jsonl"),
              metrics_without_timing(tmp_ / ("whole/" + id + "/metrics.jsonl")));
  }
  EXPECT_EQ(result_rows(dir), result_rows(tmp_ / "whole"));
  EXPECT_EQ(read_json(dir + "/best.json")["best"]["id"],
            read_json(tmp_ / "whole/best.json")["best"]["id"]);
}

TEST_F(SweepCli, ShardsCollectIntoTheWholeSweep) {
  make_pair();
  const std::string spec = "lr=3e-3,1e-3;hidden=8,16;dropout=0,0.5;seed=0,1";
  ToolRun whole = train_head(sweep(tmp_ / "whole", spec));
  ASSERT_EQ(whole.rc, 0) << whole.output;
  std::set<std::string> all;
  std::string dirs;
  for (int i = 0; i < 3; ++i) {
    const std::string d = tmp_ / ("shard" + std::to_string(i));
    ToolRun r = train_head(sweep(d, spec, "--shard " + std::to_string(i) + "/3"));
    ASSERT_EQ(r.rc, 0) << r.output;
    for (const std::string& id : finished_ids(d)) EXPECT_TRUE(all.insert(id).second) << id;
    dirs += " " + shell_quote(d);
  }
  EXPECT_EQ(all, finished_ids(tmp_ / "whole"));  // disjoint, and together the whole sweep

  ToolRun c = train_head("--collect" + dirs + " --out " + shell_quote(tmp_ / "merged"));
  ASSERT_EQ(c.rc, 0) << c.output;
  EXPECT_NE(c.output.find("16 of 16"), std::string::npos) << c.output;
  EXPECT_EQ(result_rows(tmp_ / "merged"), result_rows(tmp_ / "whole"));
  EXPECT_TRUE(read_json(tmp_ / "merged/results.json")["complete"].get<bool>());
  // Two shards only: incomplete, said so.
  ToolRun part = train_head("--collect " + shell_quote(tmp_ / "shard0") + " " +
                            shell_quote(tmp_ / "shard2") + " --out " + shell_quote(tmp_ / "part"));
  ASSERT_EQ(part.rc, 0) << part.output;
  EXPECT_NE(part.output.find("INCOMPLETE"), std::string::npos) << part.output;
  EXPECT_FALSE(read_json(tmp_ / "part/results.json")["complete"].get<bool>());

  // Another sweep's directory is refused, by collect and by a run into it.
  ToolRun other = train_head(sweep(tmp_ / "other", "lr=3e-3,1e-3;hidden=8,16", "--shard 0/2"));
  ASSERT_EQ(other.rc, 0) << other.output;
  ToolRun mixed = train_head("--collect" + dirs + " " + shell_quote(tmp_ / "other"));
  EXPECT_EQ(mixed.rc, 1) << mixed.output;
  EXPECT_NE(mixed.output.find(tmp_ / "other"), std::string::npos) << mixed.output;
  EXPECT_NE(mixed.output.find("another sweep"), std::string::npos) << mixed.output;
  ToolRun into = train_head(sweep(tmp_ / "other", spec));
  EXPECT_EQ(into.rc, 1) << into.output;
  EXPECT_NE(into.output.find("another sweep"), std::string::npos) << into.output;
}

TEST_F(SweepCli, SelectionNeverReadsTheTestSet) {
  make_pair();
  // A test cache with the classes' centres swapped: every test accuracy changes, the ranking
  // and the choice must not.
  testing::SyntheticSpec sw;
  sw.crops = 3;
  sw.images_per_class = 15;
  sw.seed = 2;
  sw.separation = 0.4f;
  sw.swap_centres = true;
  testing::make_synthetic_cache(tmp_ / "swapped", sw);
  const std::string spec = "lr=3e-3,1e-3,3e-4;hidden=8,32;dropout=0,0.5";
  ToolRun a = train_head(sweep(tmp_ / "a", spec, "--quiet"));
  ToolRun b = train_head(sweep(tmp_ / "b", spec, "--quiet", tmp_ / "swapped"));
  ASSERT_EQ(a.rc, 0) << a.output;
  ASSERT_EQ(b.rc, 0) << b.output;
  json ra = read_json(tmp_ / "a/results.json"), rb = read_json(tmp_ / "b/results.json");
  ASSERT_EQ(ra["rows"].size(), 12u);
  ASSERT_EQ(rb["rows"].size(), 12u);
  bool test_differs = false;
  for (size_t i = 0; i < 12; ++i) {
    // Ids hash the test cache too, so compare by settings.
    EXPECT_EQ(ra["rows"][i]["settings"], rb["rows"][i]["settings"]) << i;
    EXPECT_EQ(ra["rows"][i]["val_accuracy"], rb["rows"][i]["val_accuracy"]) << i;
    EXPECT_EQ(ra["rows"][i]["best_epoch"], rb["rows"][i]["best_epoch"]) << i;
    test_differs |= ra["rows"][i]["test_accuracy"] != rb["rows"][i]["test_accuracy"];
  }
  EXPECT_TRUE(test_differs);
  EXPECT_EQ(read_json(tmp_ / "a/best.json")["best"]["settings"],
            read_json(tmp_ / "b/best.json")["best"]["settings"]);
}

TEST_F(SweepCli, RandomSamplesAndUsageErrors) {
  make_pair();
  ToolRun r = train_head(sweep(tmp_ / "rnd", "lr=1e-4..1e-2;hidden=8,16", "--samples 5 --quiet"));
  ASSERT_EQ(r.rc, 0) << r.output;
  json s = read_json(tmp_ / "rnd/sweep.json");
  EXPECT_EQ(s["configurations"].size(), 5u);
  EXPECT_EQ(s["identity"]["mode"], "random");
  // A spec file (TOML) is the same sweep as the inline spec.
  testing::write_file(tmp_ / "spec.toml", "lr = \"1e-4..1e-2\"  # log-uniform\nhidden = [8, 16]\n");
  ToolRun f = train_head(sweep(tmp_ / "rnd", tmp_ / "spec.toml", "--samples 5 --quiet"));
  ASSERT_EQ(f.rc, 0) << f.output;
  EXPECT_NE(f.output.find("5 already finished"), std::string::npos) << f.output;

  const char* usage[][2] = {{"--samples 3", "--samples needs --sweep"},
                            {"--shard 1/2", "--shard needs --sweep"},
                            {"--sweep lr=1e-3 --shard 2/2", "--shard"},
                            {"--sweep lr=1e-3 --shard x", "--shard"},
                            {"--sweep lr=1e-3 --parallel 0", "--parallel"},
                            {"--sweep lr=1e-3 --val-fraction 0", "--val-fraction"}};
  for (auto& u : usage) {
    ToolRun e = train_head(caches() + " --out " + shell_quote(tmp_ / "u") + " " + u[0]);
    EXPECT_EQ(e.rc, 2) << u[0] << ": " << e.output;
    EXPECT_NE(e.output.find(u[1]), std::string::npos) << u[0] << ": " << e.output;
  }
  ToolRun bad = train_head(sweep(tmp_ / "bad", "lr=1e-3;dropout=1.5"));
  EXPECT_EQ(bad.rc, 2) << bad.output;  // a usage error
  EXPECT_NE(bad.output.find("dropout"), std::string::npos) << bad.output;
  ToolRun missing = train_head(sweep(tmp_ / "bad", tmp_ / "nope.toml"));
  EXPECT_EQ(missing.rc, 1) << missing.output;
  EXPECT_NE(missing.output.find("nope.toml"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace vggcache
