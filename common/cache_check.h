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
// allow_incomplete: an interrupted cache is checked as far as it was committed, without counting
// its incompleteness as a problem (what a reader of a cache being written may rely on).
VerifyReport verify_cache(const std::string& dir, size_t max_problems = 20,
                          bool allow_incomplete = false);

// Compares two caches record for record: same keys, headers and payload bytes, and the same
// settings (CacheMeta::first_difference) and skipped list. Returns "" when equal, else the first
// difference. Both may be incomplete. Throws Error when either cannot be opened.
std::string diff_caches(const std::string& a, const std::string& b);

}  // namespace vggcache
