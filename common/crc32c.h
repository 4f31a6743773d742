// CRC-32C (Castagnoli): the checksum of cache records (common/record.h) and head.bin
// (head/head_file.h). Pure function; thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vggcache {

// CRC-32C of `n` bytes at `data`, continuing from `crc` (0 to start); hardware-accelerated when
// SSE4.2 is available. Chained calls over consecutive pieces equal one call over their join.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace vggcache
