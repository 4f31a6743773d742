// Whole-cache consistency check (what `featcache verify` runs): every record's checksum, key,
// label and crop index against the metadata, and the counts.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vggcache {

struct VerifyReport {
  uint64_t records = 0;              // records scanned
  uint64_t images_with_records = 0;  // distinct images seen
  std::vector<std::string> problems; // empty when the cache is sound
  bool ok() const { return problems.empty(); }
};

// Never throws for data problems (they are collected, up to `max_problems`); throws Error for a
// directory that cannot be opened as a cache at all.
VerifyReport verify_cache(const std::string& dir, size_t max_problems = 20);

}  // namespace vggcache
