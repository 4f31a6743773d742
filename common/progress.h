// Progress line for long work: count, rate, ETA. Writes to stderr, at most ~4 times a second;
// a final line on done(). Not thread-safe: update from one thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace vggcache {

class Progress {
 public:
  // `total` items of `unit` (e.g. "images"); `rate_unit` names what the rate counts (e.g. "crops").
  Progress(std::string label, uint64_t total, std::string unit, std::string rate_unit = "");
  // done_items: items finished so far; rate_count: what the rate is computed from (e.g. crops).
  void update(uint64_t done_items, uint64_t rate_count);
  void done(uint64_t done_items, uint64_t rate_count);
  double seconds() const;

 private:
  void print(uint64_t done_items, uint64_t rate_count, bool final);
  std::string label_, unit_, rate_unit_;
  uint64_t total_;
  uint64_t start_items_ = UINT64_MAX;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool tty_;
};

std::string format_duration(double seconds);

// Seconds on the steady clock since `t0`: the one way every tool times its work.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace vggcache
