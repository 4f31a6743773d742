// Sweep spec parser (inline, TOML subset, JSON): any text must parse into a spec or raise
// vggcache::Error, and a parsed spec must expand (grid or random draws) or raise Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "train_head/sweep/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks how many random draws to ask for; the rest is the spec text.
  const size_t samples = 1 + data[0] % 16;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    vggcache::SweepSpec spec = vggcache::parse_sweep_spec(text);
    (void)spec.to_json().dump();
    vggcache::TrainParams base;
    try {
      if (vggcache::grid_size(spec) <= 4096) (void)vggcache::expand_grid(spec, base);
    } catch (const vggcache::Error&) {
    }
    (void)vggcache::sample_configs(spec, base, samples, data[0]);
  } catch (const vggcache::Error&) {
  }
  return 0;
}
