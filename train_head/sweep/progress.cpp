#include "train_head/sweep/progress.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>

#include "common/progress.h"

namespace vggcache {

SweepProgress::SweepProgress(size_t configs, size_t done_before, double total_work, bool quiet)
    : configs_(configs),
      done_(done_before),
      total_work_(total_work),
      quiet_(quiet),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

double SweepProgress::seconds() const {
  return seconds_since(start_);
}

void SweepProgress::started(size_t heads) {
  std::lock_guard<std::mutex> lock(mutex_);
  running_ += heads;
}

void SweepProgress::worked(double work) {
  std::lock_guard<std::mutex> lock(mutex_);
  work_ += work;
  print_locked(false);
}

void SweepProgress::finished(const std::string& id, double val_accuracy) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++done_;
  if (running_ > 0) --running_;
  if (!quiet_) fmt::print("sweep: {} finished, val acc {:.2f}%\n", id, 100 * val_accuracy);
  print_locked(true);
}

void SweepProgress::print_locked(bool force) {
  if (quiet_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_print_ < std::chrono::seconds(1)) return;
  last_print_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double share = total_work_ > 0 ? std::min(1.0, work_ / total_work_) : 1.0;
  const std::string eta =
      share > 0 && share < 1 ? format_duration(elapsed * (1 - share) / share) : "-";
  fmt::print("sweep: {}/{} done, {} running, {:.0f}% of the work, {} elapsed, ETA {}\n", done_,
             configs_, running_, 100 * share, format_duration(elapsed), eta);
  std::fflush(stdout);
}

}  // namespace vggcache
