#include "train_head/sweep/results.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/file_util.h"
#include "train_head/sweep/spec.h"

namespace vggcache {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::kIo, "cannot read " + path);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error(ErrorKind::kCorrupt, path + " is not valid JSON");
  return j;
}

SweepRow read_row(const std::string& dir, const json& config) {
  SweepRow r;
  r.index = config.at("index").get<size_t>();
  r.id = config.at("id").get<std::string>();
  r.settings = config.at("settings");
  // Sweeps made before these settings trained with their defaults.
  if (!r.settings.contains("class_weight")) r.settings["class_weight"] = "none";
  if (!r.settings.contains("sampler")) r.settings["sampler"] = "uniform";
  if (!r.settings.contains("optimizer")) r.settings["optimizer"] = "adam";
  r.dir = dir;
  const std::string summary_path = dir + "/summary.json";
  try {
    const json s = read_json(summary_path);
    const json done = read_json(dir + "/" + kSweepDoneFile);
    const json& best = s.at("best");
    r.val_accuracy = best.at("val_accuracy").get<double>();
    r.val_balanced_accuracy = best.value("val_balanced_accuracy", 0.0);
    r.val_loss = best.at("val_loss").get<double>();
    r.best_epoch = s.at("selected_epoch").get<int>();
    r.test_accuracy = best.at("test_accuracy").get<double>();
    r.test_loss = best.at("test_loss").get<double>();
    r.final_test_accuracy = s.at("final").at("test_accuracy").get<double>();
    r.seconds = done.at("seconds").get<double>();
  } catch (const json::exception& e) {
    throw Error(ErrorKind::kCorrupt, fmt::format("{}: unexpected content ({})", dir, e.what()));
  }
  return r;
}

std::string setting_text(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_float()) return format_number(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Keys of config_settings_json, in its canonical order; the probe's, fine-tuning's and the block
// order's are columns only in sweeps that have such configurations, so every other sweep's CSV
// keeps its columns.
const char* const kSettingKeys[] = {"lr",    "weight_decay", "dropout",     "hidden",
                                    "batch", "epochs",       "standardize", "all_crops",
                                    "seed",  "class_weight", "sampler"};
const char* const kLbfgsKeys[] = {"optimizer", "l2"};
const char* const kFinetuneKeys[] = {"optimizer", "momentum", "lr_block5", "freeze_block5"};
const char* const kOrderKeys[] = {"order", "block_records", "block_window"};

json row_json(const SweepRow& r, size_t rank) {
  return {{"rank", rank},
          {"id", r.id},
          {"index", r.index},
          {"settings", r.settings},
          {"val_accuracy", r.val_accuracy},
          {"val_balanced_accuracy", r.val_balanced_accuracy},
          {"val_loss", r.val_loss},
          {"best_epoch", r.best_epoch},
          {"test_accuracy", r.test_accuracy},
          {"test_loss", r.test_loss},
          {"final_test_accuracy", r.final_test_accuracy},
          {"seconds", r.seconds},
          {"dir", r.dir}};
}

std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_./=:+,") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::vector<SweepRow> finished_rows(const json& sweep, const std::vector<std::string>& dirs) {
  std::vector<SweepRow> rows;
  for (const json& c : sweep.at("configurations")) {
    const std::string id = c.at("id").get<std::string>();
    for (const std::string& d : dirs) {
      const std::string dir = d + "/" + id;
      std::error_code ec;
      if (fs::exists(dir + "/" + kSweepDoneFile, ec)) {
        rows.push_back(read_row(dir, c));
        break;
      }
    }
  }
  return rows;
}

std::string sweep_select(const json& sweep) {
  return sweep.at("identity").value("select", std::string("accuracy"));
}

void rank_rows(std::vector<SweepRow>* rows, const std::string& select) {
  const bool balanced = select == "balanced";
  std::sort(rows->begin(), rows->end(), [balanced](const SweepRow& a, const SweepRow& b) {
    if (balanced && a.val_balanced_accuracy != b.val_balanced_accuracy)
      return a.val_balanced_accuracy > b.val_balanced_accuracy;
    if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
    if (a.val_loss != b.val_loss) return a.val_loss < b.val_loss;
    return a.index < b.index;
  });
}

std::string single_run_command(const json& sweep, const SweepRow& r) {
  const json& s = r.settings;
  if (s.value("optimizer", "adam") == "lbfgs") {  // Adam's flags would be refused
    std::string cmd = fmt::format(
        "train_head --train {} --test {} --out RUN_DIR --hidden 0 --optimizer lbfgs --l2 {} "
        "--max-iter {} --tol {} --seed {} --val-fraction {}",
        shell_word(sweep.value("train_cache", "TRAIN")),
        shell_word(sweep.value("test_cache", "TEST")), setting_text(s.at("l2")),
        setting_text(s.at("max_iter")), setting_text(s.at("tol")), setting_text(s.at("seed")),
        setting_text(sweep.at("identity").at("val_fraction")));
    if (s.at("standardize").get<bool>()) cmd += " --standardize";
    if (s.at("all_crops").get<bool>()) cmd += " --all-crops";
    if (s.value("class_weight", "none") != "none") cmd += " --class-weight balanced";
    if (sweep_select(sweep) != "accuracy") cmd += " --select balanced";
    return cmd;
  }
  std::string cmd = fmt::format(
      "train_head --train {} --test {} --out RUN_DIR --epochs {} --batch {} --lr {} --hidden {} "
      "--dropout {} --weight-decay {} --seed {} --val-fraction {}",
      shell_word(sweep.value("train_cache", "TRAIN")),
      shell_word(sweep.value("test_cache", "TEST")), setting_text(s.at("epochs")),
      setting_text(s.at("batch")), setting_text(s.at("lr")), setting_text(s.at("hidden")),
      setting_text(s.at("dropout")), setting_text(s.at("weight_decay")), setting_text(s.at("seed")),
      setting_text(sweep.at("identity").at("val_fraction")));
  if (s.at("standardize").get<bool>()) cmd += " --standardize";
  if (s.at("all_crops").get<bool>()) cmd += " --all-crops";
  // Rows of sweeps made before these flags lack them: the defaults then.
  if (s.value("class_weight", "none") != "none") cmd += " --class-weight balanced";
  if (s.value("sampler", "uniform") != "uniform") cmd += " --sampler balanced";
  if (s.value("order", "uniform") != "uniform")
    cmd += fmt::format(" --order {} --block-records {} --block-window {}",
                       s.at("order").get<std::string>(), setting_text(s.at("block_records")),
                       setting_text(s.at("block_window")));
  if (sweep_select(sweep) != "accuracy") cmd += " --select balanced";
  if (s.contains("lr_block5")) {  // fine-tuning block 5 (sweep.json names the files it needs)
    cmd += fmt::format(" --weights {}", shell_word(sweep.value("weights", "WEIGHTS.pth")));
    if (sweep.contains("init_head") && !sweep.at("init_head").is_null())
      cmd += " --init-head " + shell_word(sweep.at("init_head").get<std::string>());
    cmd += " --optimizer " + s.at("optimizer").get<std::string>();
    if (s.contains("momentum")) cmd += " --momentum " + setting_text(s.at("momentum"));
    cmd += " --lr-block5 " + setting_text(s.at("lr_block5"));
    if (s.at("freeze_block5").get<bool>()) cmd += " --freeze-block5";
  }
  return cmd;
}

void write_sweep_results(const std::string& dir, const json& sweep,
                         const std::vector<SweepRow>& ranked) {
  const size_t total = sweep.at("configurations").size();
  bool lbfgs = false, finetune = false, order = false;
  for (const json& c : sweep.at("configurations")) {
    lbfgs |= c.at("settings").value("optimizer", "adam") == "lbfgs";
    finetune |= c.at("settings").contains("lr_block5");
    order |= c.at("settings").contains("order");
  }
  std::vector<const char*> keys(std::begin(kSettingKeys), std::end(kSettingKeys));
  if (lbfgs) keys.insert(keys.end(), std::begin(kLbfgsKeys), std::end(kLbfgsKeys));
  if (finetune) keys.insert(keys.end(), std::begin(kFinetuneKeys), std::end(kFinetuneKeys));
  if (order) keys.insert(keys.end(), std::begin(kOrderKeys), std::end(kOrderKeys));
  std::string csv = "rank,id";
  for (const char* k : keys) csv += std::string(",") + k;
  csv +=
      ",val_accuracy,val_loss,best_epoch,test_accuracy,test_loss,final_test_accuracy,seconds,"
      "dir\n";
  json rows = json::array();
  for (size_t i = 0; i < ranked.size(); ++i) {
    const SweepRow& r = ranked[i];
    csv += fmt::format("{},{}", i + 1, r.id);
    for (const char* k : keys)  // l2 is empty for Adam (its L2 is weight_decay), momentum for Adam
      csv += "," + (r.settings.contains(k) ? setting_text(r.settings.at(k)) : std::string());
    csv += fmt::format(",{},{},{},{},{},{},{:.3f},{}\n", format_number(r.val_accuracy),
                       format_number(r.val_loss), r.best_epoch, format_number(r.test_accuracy),
                       format_number(r.test_loss), format_number(r.final_test_accuracy), r.seconds,
                       csv_field(r.dir));
    rows.push_back(row_json(r, i + 1));
  }
  write_file_atomically(dir + "/results.csv", csv);
  const json head = {{"sweep", sweep.at("identity_hash")},
                     {"configurations", total},
                     {"finished", ranked.size()},
                     {"complete", ranked.size() == total},
                     {"selection", sweep_select(sweep) == "balanced"
                                       ? "val_balanced_accuracy, then val_loss (the test set is "
                                         "never used)"
                                       : "val_accuracy, then val_loss (the test set is never "
                                         "used)"}};
  json results = head;
  results["rows"] = rows;
  write_file_atomically(dir + "/results.json", results.dump(2) + "\n");
  json best = head;
  if (!ranked.empty()) {
    best["best"] = row_json(ranked.front(), 1);
    best["head"] = ranked.front().dir + "/head.bin";
    best["command"] = single_run_command(sweep, ranked.front());
  } else {
    best["best"] = nullptr;
  }
  write_file_atomically(dir + "/best.json", best.dump(2) + "\n");
}

std::string top_table(const json& sweep, const std::vector<SweepRow>& ranked, size_t k) {
  std::vector<std::string> keys;  // swept keys, as config_settings_json spells them
  for (auto it = sweep.at("identity").at("spec").begin();
       it != sweep.at("identity").at("spec").end(); ++it) {
    std::string key = it.key();
    std::replace(key.begin(), key.end(), '-', '_');
    keys.push_back(key);
  }
  std::string s = fmt::format("{:>4} {:<12}", "rank", "id");
  for (const std::string& key : keys) s += fmt::format(" {:>12}", key);
  s += fmt::format(" {:>8} {:>5} {:>9} {:>8}\n", "val_acc", "epoch", "test_acc", "seconds");
  for (size_t i = 0; i < ranked.size() && i < k; ++i) {
    const SweepRow& r = ranked[i];
    s += fmt::format("{:>4} {:<12}", i + 1, r.id);
    for (const std::string& key : keys)  // l2 is absent from Adam's rows (not theirs)
      s +=
          fmt::format(" {:>12}", r.settings.contains(key) ? setting_text(r.settings.at(key)) : "-");
    s += fmt::format(" {:>7.2f}% {:>5} {:>8.2f}% {:>8.1f}\n", 100 * r.val_accuracy, r.best_epoch,
                     100 * r.test_accuracy, r.seconds);
  }
  return s;
}

}  // namespace vggcache
