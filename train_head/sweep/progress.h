// The sweep's progress line: configurations done and running, share of the work, ETA. The work
// of a configuration is estimated as epochs × hidden × (3 × training vectors + evaluated vectors)
// (a training step costs about three forward passes). Thread-safe; prints at most once a second.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace vggcache {

class SweepProgress {
 public:
  // `configs`: in this run's slice; `done_before`: of them, finished by an earlier run.
  SweepProgress(size_t configs, size_t done_before, double total_work, bool quiet);
  void started(size_t heads);  // a unit of `heads` configurations began
  void worked(double work);    // an epoch of one configuration finished
  void finished(const std::string& id, double val_accuracy);  // a configuration was published
  double seconds() const;

 private:
  void print_locked(bool force);
  std::mutex mutex_;
  size_t configs_, done_, running_ = 0;
  double total_work_, work_ = 0.0;
  bool quiet_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace vggcache
