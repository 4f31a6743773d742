#include "train_head/sweep/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "common/error.h"
#include "common/sha256.h"
#include "train_head/cli.h"
#include "train_head/sweep/spec.h"

namespace vggcache {

using nlohmann::json;

namespace {

std::string hash_hex(const std::string& s, size_t digits) {
  return sha256_hex(s.data(), s.size()).substr(0, digits);
}

}  // namespace

SweepPlan make_sweep_plan(const SweepSpec& spec, const SweepParams& sweep, const TrainParams& base,
                          const std::string& train_fingerprint, const std::string& test_fingerprint,
                          const json& finetune) {
  SweepPlan plan;
  // Unswept settings only: "--lr 1e-3 --sweep lr=..." and "--sweep lr=..." are one sweep.
  json fixed = config_settings_json(base);
  for (const SpecAxis& a : spec.axes) {
    std::string k = a.key;
    std::replace(k.begin(), k.end(), '-', '_');
    fixed.erase(k);
  }
  plan.identity = {{"spec", spec.to_json()},
                   {"mode", sweep.samples > 0 ? "random" : "grid"},
                   {"samples", sweep.samples},
                   {"seed", base.seed},
                   {"val_fraction", base.val_fraction},
                   {"fixed", fixed},
                   {"full_width", base.full_width},  // compact training rounds differently
                   {"train_cache", train_fingerprint},
                   {"test_cache", test_fingerprint}};
  // It picks each epoch and ranks the rows; absent at the default, as in sweeps made before it.
  if (base.select != "accuracy") plan.identity["select"] = base.select;
  if (!finetune.is_null()) plan.identity["finetune"] = finetune;
  plan.identity_hash = hash_hex(plan.identity.dump(), 16);
  std::vector<TrainParams> ps =
      sweep.samples > 0 ? sample_configs(spec, base, static_cast<size_t>(sweep.samples), base.seed)
                        : expand_grid(spec, base);
  for (size_t i = 0; i < ps.size(); ++i) {
    std::string err = validate_train_params(ps[i]);
    if (!err.empty())
      throw Error(ErrorKind::kInvalidArgument,
                  "sweep configuration " + std::to_string(i) + ": " + err);
    SweepConfig c;
    c.index = i;
    c.params = ps[i];
    c.id = hash_hex(plan.identity_hash + "\n" + config_settings_json(ps[i]).dump(), 12);
    plan.configs.push_back(std::move(c));
  }
  return plan;
}

json sweep_json(const SweepPlan& plan, const TrainParams& base) {
  json configs = json::array();
  for (const SweepConfig& c : plan.configs)
    configs.push_back(
        {{"index", c.index}, {"id", c.id}, {"settings", config_settings_json(c.params)}});
  json doc = {{"format", "vggcache-sweep"},      {"version", 1},
              {"identity", plan.identity},       {"identity_hash", plan.identity_hash},
              {"train_cache", base.train_cache}, {"test_cache", base.test_cache},
              {"configurations", configs}};
  // Where the files a fine-tuning sweep starts from were (identity.finetune holds their hashes).
  if (!base.weights.empty()) {
    doc["weights"] = base.weights;
    doc["init_head"] = base.init_head.empty() ? json(nullptr) : json(base.init_head);
  }
  return doc;
}

std::string json_difference(const json& a, const json& b, const std::string& prefix) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string name = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (!b.contains(it.key())) return name + ": " + it.value().dump() + " vs (absent)";
      std::string d = json_difference(it.value(), b[it.key()], name);
      if (!d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key()))
        return (prefix.empty() ? it.key() : prefix + "." + it.key()) + ": (absent) vs " +
               it.value().dump();
    return "";
  }
  if (a == b) return "";
  return (prefix.empty() ? "value" : prefix) + ": " + a.dump() + " vs " + b.dump();
}

void check_same_sweep(const json& stored, const json& identity, const std::string& what) {
  if (!stored.is_object() || stored.value("format", "") != "vggcache-sweep" ||
      !stored.contains("identity"))
    throw Error(ErrorKind::kCorrupt, what + " is not a vggcache sweep.json");
  const std::string d = json_difference(stored["identity"], identity);
  if (!d.empty())
    throw Error(ErrorKind::kMismatch,
                what + " belongs to another sweep (" + d +
                    "); use another --out directory, or the same command as before");
}

std::string schedule_key(const TrainParams& p) {
  // L-BFGS has no batches to share: each configuration is a unit of its own.
  if (p.optimizer == "lbfgs") return "lbfgs/" + config_settings_json(p).dump();
  // A fine-tuning configuration trains block 5 too: its batches go through its own block 5, so
  // there is nothing for configurations to share but reading the maps.
  if (!p.weights.empty()) return "finetune/" + config_settings_json(p).dump();
  std::string key =
      fmt::format("b{}/e{}/s{}/a{}/z{}/{}", p.batch, p.epochs, p.seed, p.all_crops ? 1 : 0,
                  p.standardize ? 1 : 0, p.sampler == "uniform" ? 0 : 1);
  // Appended only for --order blocks, so the default order's keys (and plans) stay as they were.
  if (p.order != "uniform")
    key += fmt::format("/{}{}x{}", p.order, p.block_records, p.block_window);
  return key;
}

std::vector<size_t> shard_configs(const std::vector<SweepConfig>& configs, int index, int count) {
  if (count < 1 || index < 0 || index >= count)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("--shard {}/{}: need 0 <= I < N", index, count));
  std::vector<size_t> order(configs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return schedule_key(configs[a].params) < schedule_key(configs[b].params);
  });
  const size_t n = order.size();
  const size_t lo = n * static_cast<size_t>(index) / count,
               hi = n * static_cast<size_t>(index + 1) / count;
  std::vector<size_t> slice(order.begin() + lo, order.begin() + hi);
  std::sort(slice.begin(), slice.end());
  return slice;
}

std::vector<SweepWave> plan_waves(const std::vector<SweepConfig>& configs,
                                  const std::vector<size_t>& pending, int parallel) {
  const size_t k = static_cast<size_t>(std::max(1, parallel));
  // Groups in order of first appearance, so the plan follows the configuration order.
  std::vector<std::string> keys;
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i : pending) {
    const std::string key = schedule_key(configs[i].params);
    if (!groups.count(key)) keys.push_back(key);
    groups[key].push_back(i);
  }
  // A group larger than k splits into near-equal units, not k + k + remainder.
  std::vector<SweepUnit> units;
  for (const std::string& key : keys) {
    const std::vector<size_t>& g = groups[key];
    const size_t parts = (g.size() + k - 1) / k;
    for (size_t p = 0; p < parts; ++p)
      units.emplace_back(g.begin() + g.size() * p / parts, g.begin() + g.size() * (p + 1) / parts);
  }
  // First fit: each unit joins the first wave that still has room.
  std::vector<SweepWave> waves;
  std::vector<size_t> load;
  for (SweepUnit& u : units) {
    size_t w = 0;
    while (w < waves.size() && load[w] + u.size() > k) ++w;
    if (w == waves.size()) {
      waves.emplace_back();
      load.push_back(0);
    }
    load[w] += u.size();
    waves[w].push_back(std::move(u));
  }
  return waves;
}

uint64_t head_training_bytes(int dim, int hidden, int classes) {
  // W1 in nn.Linear layout, blocked, Adam m and v, final and selected copies: 6 × hidden × dim,
  // plus the per-step workspaces (~ blocks × batch × hidden, small next to it).
  const uint64_t w1 = static_cast<uint64_t>(dim) * hidden * sizeof(float);
  return 6 * w1 + 4ull * hidden * (classes + 1) * sizeof(float) + (8ull << 20);
}

int default_parallel(const std::vector<SweepConfig>& configs, const std::vector<size_t>& pending,
                     int dim, int classes, uint64_t memory_budget, int threads) {
  if (pending.empty()) return 1;
  int biggest = 1;
  for (size_t i : pending) biggest = std::max(biggest, configs[i].params.hidden);
  const uint64_t per_head = head_training_bytes(dim, biggest, classes);
  const uint64_t fit = std::max<uint64_t>(1, memory_budget / per_head);
  const uint64_t busy = 4ull * static_cast<uint64_t>(std::max(1, threads));
  return static_cast<int>(std::min<uint64_t>({fit, busy, pending.size()}));
}

}  // namespace vggcache
