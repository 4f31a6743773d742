#include "train_head/sweep/collect.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/file_util.h"
#include "report/sweep.h"
#include "train_head/sweep/plan.h"
#include "train_head/sweep/results.h"

namespace vggcache {

using nlohmann::json;

namespace {

json read_sweep_json(const std::string& dir) {
  const std::string path = dir + "/sweep.json";
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::kIo, dir + " is not a sweep directory (no readable sweep.json)");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("identity") ||
      !j.contains("configurations"))
    throw Error(ErrorKind::kCorrupt, path + " is not a vggcache sweep.json");
  return j;
}

}  // namespace

CollectSummary collect_sweeps(const std::vector<std::string>& dirs, const std::string& out_dir) {
  if (dirs.empty()) throw Error(ErrorKind::kInvalidArgument, "--collect needs sweep directories");
  const json first = read_sweep_json(dirs.front());
  check_same_sweep(first, first.at("identity"), dirs.front());  // format check
  for (size_t i = 1; i < dirs.size(); ++i)
    check_same_sweep(read_sweep_json(dirs[i]), first.at("identity"), dirs[i]);
  CollectSummary sum;
  sum.out_dir = out_dir.empty() ? dirs.front() : out_dir;
  make_directories(sum.out_dir);
  if (sum.out_dir != dirs.front())
    write_file_atomically(sum.out_dir + "/sweep.json", first.dump(2) + "\n");
  std::vector<SweepRow> rows = finished_rows(first, dirs);
  rank_rows(&rows, sweep_select(first));
  write_sweep_results(sum.out_dir, first, rows);
  write_sweep_report(sum.out_dir);  // report.html, from results.json
  sum.configurations = first.at("configurations").size();
  sum.finished = rows.size();
  fmt::print("{}", top_table(first, rows, 10));
  return sum;
}

bool is_collect_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--collect") == 0 || std::strncmp(argv[i], "--collect=", 10) == 0)
      return true;
  return false;
}

int collect_command(int argc, char** argv) {
  CLI::App app{"train_head --collect: merge the shard directories of one sweep"};
  std::vector<std::string> dirs;
  std::string out;
  app.add_option("--collect", dirs, "sweep directories (shards) to merge")
      ->required()
      ->expected(1, -1);
  app.add_option("--out", out, "where the merged results go (default: the first directory)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  CollectSummary s = collect_sweeps(dirs, out);
  fmt::print("train_head: {} of {} configurations finished{}; results in {}\n", s.finished,
             s.configurations, s.finished < s.configurations ? " (INCOMPLETE)" : "", s.out_dir);
  return 0;
}

}  // namespace vggcache
