// Record decoder: any bytes must give a header or a vggcache::Error, never a crash or overread.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/error.h"
#include "common/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Copy into an exact-size buffer so ASan catches reads past the record.
  std::vector<uint8_t> buf(data, data + size);
  for (bool verify : {true, false}) {
    try {
      vggcache::RecordHeader h;
      const auto* p = static_cast<const uint8_t*>(
          vggcache::decode_record(buf.data(), buf.size(), verify, &h, "fuzz"));
      volatile uint8_t sink = 0;
      const size_t n =
          vggcache::record_bytes(h.codec, h.payload_floats) - vggcache::kRecordHeaderBytes;
      for (size_t i = 0; i < n; ++i) sink = sink + p[i];
    } catch (const vggcache::Error&) {
    }
  }
  try {
    uint32_t a, b;
    vggcache::decode_key(buf.data(), buf.size(), &a, &b);
  } catch (const vggcache::Error&) {
  }
  return 0;
}
