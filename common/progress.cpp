#include "common/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace vggcache {

std::string format_duration(double s) {
  if (s < 0 || s != s) return "?";
  auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Progress::Progress(std::string label, uint64_t total, std::string unit, std::string rate_unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      rate_unit_(rate_unit.empty() ? unit_ : std::move(rate_unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_),
      tty_(isatty(2)) {}

double Progress::seconds() const {
  return seconds_since(start_);
}

void Progress::update(uint64_t done_items, uint64_t rate_count) {
  auto now = std::chrono::steady_clock::now();
  if (start_items_ == UINT64_MAX) start_items_ = done_items;  // resumed runs start mid-way
  // Non-terminals (logs, CI) get a line every 5 s instead of a redrawn one.
  auto every = tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000);
  if (now - last_print_ < every) return;
  last_print_ = now;
  print(done_items, rate_count, false);
}

void Progress::done(uint64_t done_items, uint64_t rate_count) {
  if (start_items_ == UINT64_MAX) start_items_ = done_items;
  print(done_items, rate_count, true);
}

void Progress::print(uint64_t done_items, uint64_t rate_count, bool final) {
  double secs = seconds();
  double rate = secs > 0 ? rate_count / secs : 0;
  double item_rate = secs > 0 ? (done_items - start_items_) / secs : 0;
  double eta = item_rate > 0 ? (total_ - done_items) / item_rate : -1;
  std::string line =
      fmt::format("{}: {}/{} {} ({:.0f}%), {:.1f} {}/s, elapsed {}, ETA {}", label_, done_items,
                  total_, unit_, total_ ? 100.0 * done_items / total_ : 100.0, rate, rate_unit_,
                  format_duration(secs), final ? "0s" : format_duration(eta));
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace vggcache
