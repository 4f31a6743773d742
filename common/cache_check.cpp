#include "common/cache_check.h"

#include <fmt/format.h>

#include <set>

#include "common/cache.h"
#include "common/error.h"

namespace vggcache {

VerifyReport verify_cache(const std::string& dir, size_t max_problems) {
  VerifyReport rep;
  auto reader = CacheReader::open(dir, {/*allow_incomplete=*/true, /*verify=*/true});
  const CacheMeta& m = reader->meta();
  auto problem = [&](std::string s) {
    if (rep.problems.size() < max_problems) rep.problems.push_back(std::move(s));
  };
  if (!m.complete) problem("cache is not complete (interrupted run; rerun extract to finish)");
  std::set<uint32_t> skipped;
  for (const auto& s : m.skipped) skipped.insert(s.image);
  const uint32_t crops = m.preprocess.eval ? 1 : static_cast<uint32_t>(m.preprocess.crops);

  ReadTxn txn = reader->begin();
  txn.seek_first();
  RecordView v;
  uint32_t cur_image = UINT32_MAX, cur_count = 0;
  auto close_image = [&]() {
    if (cur_image != UINT32_MAX && cur_count != crops)
      problem(fmt::format("image {} has {} records, expected {}", cur_image, cur_count, crops));
  };
  for (;;) {
    try {
      if (!txn.next(&v)) break;
    } catch (const Error& e) {
      problem(e.what());
      // A corrupt record stops the cursor's decode but not the walk: step past it.
      ++rep.records;
      continue;
    }
    ++rep.records;
    const auto& h = v.header;
    if (h.image != cur_image) {
      close_image();
      cur_image = h.image;
      cur_count = 0;
      ++rep.images_with_records;
    }
    ++cur_count;
    if (h.image >= m.images.size()) {
      problem(fmt::format("record ({}, {}): image index beyond the {} listed images", h.image,
                          h.crop, m.images.size()));
      continue;
    }
    if (h.image >= m.next_image)
      problem(fmt::format("record ({}, {}) lies beyond the committed resume point {}", h.image,
                          h.crop, m.next_image));
    if (skipped.count(h.image))
      problem(fmt::format("record ({}, {}) belongs to a skipped image", h.image, h.crop));
    if (h.label != m.images[h.image].label)
      problem(fmt::format("record ({}, {}): label {} but {} has label {}", h.image, h.crop,
                          h.label, m.images[h.image].path, m.images[h.image].label));
    if (h.crop >= crops)
      problem(fmt::format("record ({}, {}): crop index beyond {} crops per image", h.image,
                          h.crop, crops));
  }
  close_image();
  if (rep.records != m.records)
    problem(fmt::format("{} records stored, metadata says {}", rep.records, m.records));
  if (m.complete) {
    uint64_t expect = (m.images.size() - skipped.size()) * uint64_t{crops};
    if (rep.records != expect)
      problem(fmt::format("{} records, expected {} ({} images - {} skipped) × {} crops",
                          rep.records, expect, m.images.size(), skipped.size(), crops));
  }
  return rep;
}

}  // namespace vggcache
