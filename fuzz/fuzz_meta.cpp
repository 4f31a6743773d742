// Metadata parser: any JSON text must parse into CacheMeta or raise vggcache::Error.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "common/cache_meta.h"
#include "common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    vggcache::CacheMeta m = vggcache::CacheMeta::from_json(j);
    // What the tools do next with a parsed cache: print, compare, fingerprint.
    (void)m.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    (void)vggcache::CacheMeta::first_difference(m, m);
    (void)m.feature_fingerprint();
  } catch (const vggcache::Error&) {
  }
  return 0;
}
