#include "train_head/sweep/spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "head/rng.h"

namespace vggcache {

using nlohmann::json;

namespace {

// How a key's values are checked and drawn.
enum class KeyKind {
  kRate,  // real, drawn log-uniformly (lr, weight-decay)
  kReal,  // real, drawn uniformly (dropout)
  kSize,  // integer, ranges drawn log-uniformly (hidden, batch)
  kInt,   // integer, ranges drawn uniformly (epochs, seed)
  kBool,
  kChoice,  // one of a few words, held as their index (class-weight, sampler, optimizer)
};

struct KeyInfo {
  const char* key;
  KeyKind kind;
  double min, max;  // allowed values: min <= v <= max, except where the check below says <
  bool min_open, max_open;
  // kChoice: the words of values 0, 1, ... (max is the last index). A word's value never
  // changes, so specs and ids made before a word was added stay the same.
  std::vector<const char*> words = {};
};

// The bounds repeat validate_train_params()'s, so a spec fails before any training starts; the
// integer caps keep values in an int (seed: exactly representable in a double).
const KeyInfo kKeys[] = {
    {"lr", KeyKind::kRate, 0.0, 1e6, true, true},
    {"weight-decay", KeyKind::kRate, 0.0, 1e6, false, true},
    {"dropout", KeyKind::kReal, 0.0, 1.0, false, true},
    {"hidden", KeyKind::kSize, 0, 1 << 20, false, false},  // 0: the linear probe
    {"batch", KeyKind::kSize, 1, 1 << 24, false, false},
    {"epochs", KeyKind::kInt, 1, 1 << 20, false, false},
    {"standardize", KeyKind::kBool, 0, 1, false, false},
    {"all-crops", KeyKind::kBool, 0, 1, false, false},
    {"seed", KeyKind::kInt, 0, 9007199254740992.0, false, false},
    {"class-weight", KeyKind::kChoice, 0, 1, false, false, {"none", "balanced"}},
    {"sampler", KeyKind::kChoice, 0, 1, false, false, {"uniform", "balanced"}},
    // After the older keys: a spec's canonical JSON lists keys in this order, and specs without
    // these keep the JSON (hence the sweep identity) they had.
    {"optimizer", KeyKind::kChoice, 0, 2, false, false, {"adam", "lbfgs", "sgd"}},
    {"l2", KeyKind::kRate, 0.0, 1e12, true, false},
    // Fine-tuning block 5 from pool4 caches (train_head/finetune_run.h); refused on pool5 caches.
    {"lr-block5", KeyKind::kRate, 0.0, 1e6, true, true},
    {"momentum", KeyKind::kReal, 0.0, 1.0, false, true},
    {"freeze-block5", KeyKind::kBool, 0, 1, false, false},
    // The read order (a different sampling, train_head/batch_schedule.h); --block-records and
    // --block-window come from the command.
    {"order", KeyKind::kChoice, 0, 1, false, false, {"uniform", "blocks"}},
};

// "'adam', 'lbfgs' or 'sgd'".
std::string word_list(const KeyInfo& k) {
  std::string s;
  for (size_t i = 0; i < k.words.size(); ++i)
    s += fmt::format("{}'{}'", i == 0 ? "" : i + 1 == k.words.size() ? " or " : ", ", k.words[i]);
  return s;
}

const KeyInfo* find_key(const std::string& key) {
  for (const KeyInfo& k : kKeys)
    if (key == k.key) return &k;
  return nullptr;
}

Error spec_error(const std::string& msg) {
  return Error(ErrorKind::kInvalidArgument, "sweep spec: " + msg);
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

// "weight_decay", "--lr" → canonical key, or an error listing the keys.
std::string canonical_key(const std::string& raw) {
  std::string k = trim(raw);
  if (k.size() >= 2 && k.front() == '"' && k.back() == '"') k = k.substr(1, k.size() - 2);
  if (k.rfind("--", 0) == 0) k = k.substr(2);
  std::replace(k.begin(), k.end(), '_', '-');
  if (k == "select")
    throw spec_error(
        "select cannot be swept: it is the metric that ranks the configurations "
        "(give --select once)");
  if (!find_key(k)) {
    std::string keys;
    for (const KeyInfo& info : kKeys) keys += std::string(keys.empty() ? "" : ", ") + info.key;
    throw spec_error(fmt::format("unknown key '{}' (keys: {})", trim(raw), keys));
  }
  return k;
}

// Checks a number against the key's bounds and integrality.
void check_value(const KeyInfo& k, double v) {
  const bool low = k.min_open ? !(v > k.min) : !(v >= k.min);
  const bool high = k.max_open ? !(v < k.max) : !(v <= k.max);
  if (low || high)
    throw spec_error(fmt::format("{}: value {} is out of range (must be {} {} and {} {})", k.key,
                                 format_number(v), k.min_open ? ">" : ">=", format_number(k.min),
                                 k.max_open ? "<" : "<=", format_number(k.max)));
  if ((k.kind == KeyKind::kSize || k.kind == KeyKind::kInt) && v != std::floor(v))
    throw spec_error(fmt::format("{}: value {} must be an integer", k.key, format_number(v)));
}

double parse_number(const KeyInfo& k, const std::string& text) {
  const std::string t = trim(text);
  if (t.empty()) throw spec_error(fmt::format("{}: empty value", k.key));
  const char* begin = t.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(begin, &end);
  if (end != begin + t.size() || errno == ERANGE || !std::isfinite(v))
    throw spec_error(fmt::format("{}: '{}' is not a number", k.key, t));
  return v;
}

// One textual value (inline or TOML): a bool word, a number, or lo..hi.
SpecValue parse_token(const KeyInfo& k, const std::string& raw) {
  std::string t = trim(raw);
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = trim(t.substr(1, t.size() - 2));
  SpecValue v;
  if (k.kind == KeyKind::kBool) {
    if (t == "true" || t == "1") {
      v.lo = v.hi = 1;
    } else if (t == "false" || t == "0") {
      v.lo = v.hi = 0;
    } else {
      throw spec_error(fmt::format("{}: '{}' is not true or false", k.key, t));
    }
    return v;
  }
  if (k.kind == KeyKind::kChoice) {
    for (size_t i = 0; i < k.words.size(); ++i)
      if (t == k.words[i]) {
        v.lo = v.hi = static_cast<double>(i);
        return v;
      }
    throw spec_error(fmt::format("{}: '{}' is not {}", k.key, t, word_list(k)));
  }
  const size_t dots = t.find("..");
  if (dots != std::string::npos) {
    v.range = true;
    v.lo = parse_number(k, t.substr(0, dots));
    v.hi = parse_number(k, t.substr(dots + 2));
  } else {
    v.lo = v.hi = parse_number(k, t);
  }
  return v;
}

// Validates a key's full value list and adds it to the spec.
void add_axis(std::map<std::string, SpecAxis>* axes, const std::string& raw_key,
              std::vector<SpecValue> values) {
  const std::string key = canonical_key(raw_key);
  const KeyInfo& k = *find_key(key);
  if (axes->count(key)) throw spec_error(fmt::format("{}: given twice", key));
  if (values.empty()) throw spec_error(fmt::format("{}: no values", key));
  std::set<double> seen;
  for (const SpecValue& v : values) {
    check_value(k, v.lo);
    check_value(k, v.hi);
    if (v.range) {
      if (values.size() > 1)
        throw spec_error(fmt::format("{}: a range must be the key's only value", key));
      if (!(v.lo < v.hi))
        throw spec_error(fmt::format("{}: range {}..{} needs lo < hi", key, format_number(v.lo),
                                     format_number(v.hi)));
      if ((k.kind == KeyKind::kRate || k.kind == KeyKind::kSize) && !(v.lo > 0))
        throw spec_error(fmt::format(
            "{}: range {}..{} is drawn log-uniformly and needs lo > 0 (list 0 as a value instead)",
            key, format_number(v.lo), format_number(v.hi)));
    } else if (!seen.insert(v.lo).second) {
      throw spec_error(fmt::format("{}: value {} listed twice", key, format_number(v.lo)));
    }
  }
  (*axes)[key] = SpecAxis{key, std::move(values)};
}

SweepSpec finish(std::map<std::string, SpecAxis> axes) {
  SweepSpec spec;
  for (const KeyInfo& k : kKeys) {
    auto it = axes.find(k.key);
    if (it != axes.end()) spec.axes.push_back(std::move(it->second));
  }
  if (spec.axes.empty()) throw spec_error("no keys to sweep");
  return spec;
}

SweepSpec parse_inline(const std::string& text) {
  std::map<std::string, SpecAxis> axes;
  for (const std::string& clause : split(text, ';')) {
    if (trim(clause).empty()) continue;
    const size_t eq = clause.find('=');
    if (eq == std::string::npos)
      throw spec_error(fmt::format("'{}' is not key=value[,value...]", trim(clause)));
    const std::string key = clause.substr(0, eq);
    const KeyInfo& k = *find_key(canonical_key(key));
    std::vector<SpecValue> values;
    for (const std::string& tok : split(clause.substr(eq + 1), ','))
      values.push_back(parse_token(k, tok));
    add_axis(&axes, key, std::move(values));
  }
  return finish(std::move(axes));
}

// Removes a # comment outside double quotes.
std::string strip_comment(const std::string& line) {
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"') quoted = !quoted;
    if (line[i] == '#' && !quoted) return line.substr(0, i);
  }
  return line;
}

// The TOML subset: `key = scalar` or `key = [scalar, ...]` (an array may span lines).
SweepSpec parse_toml(const std::string& text) {
  std::map<std::string, SpecAxis> axes;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string t = trim(strip_comment(line));
    if (t.empty()) continue;
    if (t.front() == '[')
      throw spec_error(fmt::format("line {}: TOML tables ('{}') are not supported", line_no, t));
    const size_t eq = t.find('=');
    if (eq == std::string::npos)
      throw spec_error(fmt::format("line {}: '{}' is not key = value", line_no, t));
    const std::string key = t.substr(0, eq);
    const KeyInfo& k = *find_key(canonical_key(key));
    std::string value = trim(t.substr(eq + 1));
    std::vector<SpecValue> values;
    if (!value.empty() && value.front() == '[') {
      while (value.find(']') == std::string::npos) {
        if (!std::getline(in, line))
          throw spec_error(fmt::format("{}: array without a closing ']'", k.key));
        ++line_no;
        value += " " + trim(strip_comment(line));
      }
      const size_t close = value.find(']');
      if (!trim(value.substr(close + 1)).empty())
        throw spec_error(fmt::format("line {}: text after the array of {}", line_no, k.key));
      std::vector<std::string> items = split(value.substr(1, close - 1), ',');
      if (!items.empty() && trim(items.back()).empty()) items.pop_back();  // trailing comma
      for (const std::string& item : items) values.push_back(parse_token(k, item));
    } else {
      values.push_back(parse_token(k, value));
    }
    add_axis(&axes, key, std::move(values));
  }
  return finish(std::move(axes));
}

SpecValue json_value(const KeyInfo& k, const json& v) {
  if (v.is_string()) return parse_token(k, v.get<std::string>());
  if (v.is_boolean()) {
    if (k.kind != KeyKind::kBool)
      throw spec_error(fmt::format("{}: {} is not a number", k.key, v.dump()));
    SpecValue s;
    s.lo = s.hi = v.get<bool>() ? 1 : 0;
    return s;
  }
  if (k.kind == KeyKind::kChoice)
    throw spec_error(fmt::format("{}: {} is not {}", k.key, v.dump(), word_list(k)));
  if (v.is_number()) {
    SpecValue s;
    s.lo = s.hi = v.get<double>();
    if (k.kind == KeyKind::kBool && s.lo != 0 && s.lo != 1)
      throw spec_error(fmt::format("{}: {} is not true or false", k.key, v.dump()));
    return s;
  }
  throw spec_error(fmt::format("{}: {} is not a value", k.key, v.dump()));
}

SweepSpec parse_json(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw spec_error("not valid JSON");
  if (!j.is_object()) throw spec_error("JSON spec must be an object of key: values");
  std::map<std::string, SpecAxis> axes;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const KeyInfo& k = *find_key(canonical_key(it.key()));
    std::vector<SpecValue> values;
    if (it.value().is_array()) {
      for (const json& v : it.value()) values.push_back(json_value(k, v));
    } else {
      values.push_back(json_value(k, it.value()));
    }
    add_axis(&axes, it.key(), std::move(values));
  }
  return finish(std::move(axes));
}

// A stream of our Rng reserved for drawing sweep configurations (rng.h's streams end at 5).
constexpr Stream kSweepSampleStream = static_cast<Stream>(0x53574545);

double unit_double(Rng& rng) {
  return static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
}

// Keeps 3 significant digits, clamped into [lo, hi] so rounding cannot leave the range.
double round3(double v, double lo, double hi) {
  double r = std::strtod(fmt::format("{:.2e}", v).c_str(), nullptr);
  return std::min(hi, std::max(lo, r));
}

double log_uniform(Rng& rng, double lo, double hi) {
  return std::exp(std::log(lo) + unit_double(rng) * (std::log(hi) - std::log(lo)));
}

double draw(const SpecAxis& axis, Rng& rng) {
  const KeyInfo& k = *find_key(axis.key);
  const std::vector<SpecValue>& vs = axis.values;
  if (vs.size() == 1 && vs[0].range) {
    const double lo = vs[0].lo, hi = vs[0].hi;
    switch (k.kind) {
      case KeyKind::kRate:
        return round3(log_uniform(rng, lo, hi), lo, hi);
      case KeyKind::kReal:
        return round3(lo + unit_double(rng) * (hi - lo), lo, hi);
      case KeyKind::kSize:
        return std::min(hi, std::max(lo, std::round(log_uniform(rng, lo, hi))));
      default:  // kInt; bools never hold ranges
        return lo + static_cast<double>(rng.below(static_cast<uint64_t>(hi - lo) + 1));
    }
  }
  if (k.kind == KeyKind::kRate || k.kind == KeyKind::kReal) {
    double lo = 0, hi = 0;
    bool zero = false, any = false;
    for (const SpecValue& v : vs) {
      if (k.kind == KeyKind::kRate && v.lo == 0) {
        zero = true;
        continue;
      }
      lo = any ? std::min(lo, v.lo) : v.lo;
      hi = any ? std::max(hi, v.lo) : v.lo;
      any = true;
    }
    // A listed 0 rate keeps its share of the draws (log-uniform cannot reach it).
    if (zero && (!any || rng.below(vs.size()) == 0)) return 0.0;
    if (lo == hi) return lo;
    return k.kind == KeyKind::kRate ? round3(log_uniform(rng, lo, hi), lo, hi)
                                    : round3(lo + unit_double(rng) * (hi - lo), lo, hi);
  }
  return vs[rng.below(vs.size())].lo;
}

bool discrete(const SweepSpec& spec) {
  for (const SpecAxis& a : spec.axes) {
    const KeyKind kind = find_key(a.key)->kind;
    for (const SpecValue& v : a.values)
      if (v.range) return false;
    if ((kind == KeyKind::kRate || kind == KeyKind::kReal) && a.values.size() > 1) return false;
  }
  return true;
}

}  // namespace

std::string format_number(double v) {
  return fmt::format("{}", v);
}

const std::vector<std::string>& sweep_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const KeyInfo& info : kKeys) k.push_back(info.key);
    return k;
  }();
  return keys;
}

json SweepSpec::to_json() const {
  json j = json::object();
  for (const SpecAxis& a : axes) {
    const KeyKind kind = find_key(a.key)->kind;
    json values = json::array();
    for (const SpecValue& v : a.values) {
      if (v.range)
        values.push_back(format_number(v.lo) + ".." + format_number(v.hi));
      else if (kind == KeyKind::kBool)
        values.push_back(v.lo != 0);
      else if (kind == KeyKind::kChoice)
        values.push_back(find_key(a.key)->words.at(static_cast<size_t>(v.lo)));
      else if (kind == KeyKind::kSize || kind == KeyKind::kInt)
        values.push_back(static_cast<uint64_t>(v.lo));
      else
        values.push_back(v.lo);
    }
    j[a.key] = values;
  }
  return j;
}

SweepSpec parse_sweep_spec(const std::string& text) {
  const std::string t = trim(text);
  if (t.empty()) throw spec_error("empty");
  if (t.front() == '{') return parse_json(t);
  // The inline form never holds newlines, brackets, quotes or comments; TOML usually does.
  if (t.find_first_of("\n[\"#") != std::string::npos) return parse_toml(t);
  return parse_inline(t);
}

SweepSpec load_sweep_spec(const std::string& arg) {
  std::ifstream in(arg, std::ios::binary);
  if (!in) {
    if (arg.find('=') == std::string::npos && arg.find('{') == std::string::npos)
      throw Error(ErrorKind::kIo,
                  "--sweep: '" + arg + "' is neither a readable spec file nor an inline spec");
    return parse_sweep_spec(arg);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorKind::kIo, "cannot read sweep spec " + arg);
  try {
    return parse_sweep_spec(ss.str());
  } catch (const Error& e) {
    throw Error(e.kind(), std::string(e.what()) + " (in " + arg + ")");
  }
}

void check_spec_for_caches(const SweepSpec& spec, bool finetune, bool init_head) {
  for (const SpecAxis& a : spec.axes) {
    auto has = [&](double v) {
      return std::any_of(a.values.begin(), a.values.end(),
                         [v](const SpecValue& x) { return !x.range && x.lo == v; });
    };
    std::string why;
    if (!finetune) {
      if (a.key == "lr-block5" || a.key == "momentum" || a.key == "freeze-block5" ||
          (a.key == "optimizer" && has(2)))
        why = fmt::format(
            "{} applies to fine-tuning block 5 from pool4 caches (extract --cut "
            "pool4); these caches hold pool5 features, on which only the head trains",
            a.key == "optimizer" ? "optimizer sgd" : a.key);
    } else if (a.key == "standardize" && has(1)) {
      why =
          "standardize true does not apply to fine-tuning (block 5's outputs change as it "
          "trains, so no fixed mean and std exist)";
    } else if (a.key == "l2" || (a.key == "optimizer" && has(1)) || (a.key == "hidden" && has(0))) {
      why = fmt::format(
          "{} is the linear probe's, which trains on pool5 features; fine-tuning "
          "block 5 trains a head with a hidden layer (optimizer adam or sgd)",
          a.key == "optimizer" ? "optimizer lbfgs"
          : a.key == "hidden"  ? "hidden 0"
                               : a.key);
    } else if (a.key == "hidden" && init_head) {
      why =
          "hidden cannot be swept with --init-head: the fine-tuned head is that head, of its "
          "own hidden size";
    }
    if (!why.empty()) throw spec_error(why);
  }
}

size_t grid_size(const SweepSpec& spec) {
  size_t n = 1;
  for (const SpecAxis& a : spec.axes) {
    for (const SpecValue& v : a.values)
      if (v.range)
        throw spec_error(fmt::format("{}: a range ({}..{}) needs --samples (random search)", a.key,
                                     format_number(v.lo), format_number(v.hi)));
    n *= a.values.size();
    if (n > kMaxSweepConfigs)
      throw spec_error(fmt::format("the grid holds more than {} configurations; use --samples",
                                   kMaxSweepConfigs));
  }
  return n;
}

void set_sweep_key(TrainParams* p, const std::string& key, double v) {
  if (key == "lr")
    p->lr = v;
  else if (key == "weight-decay")
    p->weight_decay = v;
  else if (key == "dropout")
    p->dropout = v;
  else if (key == "hidden")
    p->hidden = static_cast<int>(v);
  else if (key == "batch")
    p->batch = static_cast<int>(v);
  else if (key == "epochs")
    p->epochs = static_cast<int>(v);
  else if (key == "standardize")
    p->standardize = v != 0;
  else if (key == "all-crops")
    p->all_crops = v != 0;
  else if (key == "seed")
    p->seed = static_cast<uint64_t>(v);
  else if (key == "class-weight")
    p->class_weight = v != 0 ? "balanced" : "none";
  else if (key == "sampler")
    p->sampler = v != 0 ? "balanced" : "uniform";
  else if (key == "order")
    p->order = v != 0 ? "blocks" : "uniform";
  else if (key == "optimizer")
    p->optimizer = find_key(key)->words.at(static_cast<size_t>(v));
  else if (key == "l2")
    p->l2 = v;
  else if (key == "lr-block5")
    p->lr_block5 = v;
  else if (key == "momentum")
    p->momentum = v;
  else if (key == "freeze-block5")
    p->freeze_block5 = v != 0;
  else
    throw spec_error("unknown key '" + key + "'");
}

void apply_optimizer_rules(TrainParams* p, const TrainParams& base) {
  if (p->optimizer != "sgd") p->momentum = base.momentum;
  if (p->freeze_block5) p->lr_block5 = base.lr_block5;
  if (p->optimizer != "lbfgs") return;
  p->hidden = 0;
  p->lr = base.lr;
  p->weight_decay = base.weight_decay;
  p->dropout = base.dropout;
  p->batch = base.batch;
  p->epochs = base.epochs;
  p->sampler = "uniform";
  p->order = "uniform";  // every step reads every vector: no order
}

std::vector<TrainParams> expand_grid(const SweepSpec& spec, const TrainParams& base) {
  const size_t n = grid_size(spec);
  std::vector<TrainParams> out;
  out.reserve(n);
  std::set<std::string> seen;  // an L-BFGS configuration repeated over Adam's keys counts once
  std::vector<size_t> idx(spec.axes.size(), 0);  // odometer, last axis fastest
  for (size_t c = 0; c < n; ++c) {
    TrainParams p = base;
    for (size_t a = 0; a < spec.axes.size(); ++a)
      set_sweep_key(&p, spec.axes[a].key, spec.axes[a].values[idx[a]].lo);
    apply_optimizer_rules(&p, base);
    if (seen.insert(config_settings_json(p).dump()).second) out.push_back(p);
    for (size_t a = spec.axes.size(); a-- > 0;) {
      if (++idx[a] < spec.axes[a].values.size()) break;
      idx[a] = 0;
    }
  }
  return out;
}

std::vector<TrainParams> sample_configs(const SweepSpec& spec, const TrainParams& base,
                                        size_t samples, uint64_t seed) {
  if (samples < 1 || samples > kMaxSweepConfigs)
    throw spec_error(
        fmt::format("--samples must be in [1, {}] (got {})", kMaxSweepConfigs, samples));
  if (discrete(spec)) {
    size_t space = 1;
    for (const SpecAxis& a : spec.axes) space = std::min(space * a.values.size(), samples + 1);
    if (space < samples)
      throw spec_error(
          fmt::format("the spec holds only {} distinct configurations, fewer than --samples {}",
                      space, samples));
  }
  Rng rng(seed, kSweepSampleStream);
  std::vector<TrainParams> out;
  std::set<std::string> seen;
  // Rounded draws may repeat; a repeat is drawn again (the stream stays deterministic).
  const size_t max_draws = samples * 100 + 1000;
  for (size_t d = 0; d < max_draws && out.size() < samples; ++d) {
    TrainParams p = base;
    for (const SpecAxis& a : spec.axes) set_sweep_key(&p, a.key, draw(a, rng));
    apply_optimizer_rules(&p, base);
    if (seen.insert(config_settings_json(p).dump()).second) out.push_back(p);
  }
  if (out.size() < samples)
    throw spec_error(fmt::format("could draw only {} distinct configurations of the {} asked for",
                                 out.size(), samples));
  return out;
}

json config_settings_json(const TrainParams& p) {
  json j = {{"lr", p.lr},
            {"weight_decay", p.weight_decay},
            {"dropout", p.dropout},
            {"hidden", p.hidden},
            {"batch", p.batch},
            {"epochs", p.epochs},
            {"standardize", p.standardize},
            {"all_crops", p.all_crops},
            {"seed", p.seed}};
  // Only when not the default, so configurations (and their ids) of sweeps made before these
  // settings existed stay the same and such a sweep still resumes.
  if (p.class_weight != "none") j["class_weight"] = p.class_weight;
  if (p.sampler != "uniform") j["sampler"] = p.sampler;
  if (p.order != "uniform") {  // a different sampling: part of what each configuration trained
    j["order"] = p.order;
    j["block_records"] = p.block_records;
    j["block_window"] = p.block_window;
  }
  if (!p.weights.empty()) {  // fine-tuning block 5 (pool4 caches: --weights is required)
    j["optimizer"] = p.optimizer;
    if (p.optimizer == "sgd") j["momentum"] = p.momentum;
    j["lr_block5"] = effective_lr_block5(p);
    j["freeze_block5"] = p.freeze_block5;
  } else if (p.optimizer != "adam") {
    j["optimizer"] = p.optimizer;
    j["l2"] = p.l2;
    j["max_iter"] = p.max_iter;
    j["tol"] = p.tol;
  }
  return j;
}

}  // namespace vggcache
