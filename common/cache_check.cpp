#include "common/cache_check.h"

#include <fmt/format.h>

#include <cstring>
#include <set>

#include "common/cache.h"
#include "common/error.h"
#include "common/shard_set.h"

namespace vggcache {

VerifyReport verify_cache(const std::string& dir, size_t max_problems, bool allow_incomplete) {
  if (is_shard_set(dir)) return verify_shard_set(dir, max_problems, allow_incomplete);
  VerifyReport rep;
  auto reader = CacheReader::open(dir, {/*allow_incomplete=*/true, /*verify=*/true});
  const CacheMeta& m = reader->meta();
  auto problem = [&](std::string s) {
    if (rep.problems.size() < max_problems) rep.problems.push_back(std::move(s));
  };
  if (!m.complete && !allow_incomplete)
    problem("cache is not complete (interrupted run; rerun extract to finish)");
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
    if (h.image < m.first_image() || h.image >= m.end_image())
      problem(fmt::format("record ({}, {}) lies outside the shard's images [{}, {})", h.image,
                          h.crop, m.first_image(), m.end_image()));
    if (h.image >= m.next_image)
      problem(fmt::format("record ({}, {}) lies beyond the committed resume point {}", h.image,
                          h.crop, m.next_image));
    if (skipped.count(h.image))
      problem(fmt::format("record ({}, {}) belongs to a skipped image", h.image, h.crop));
    if (h.label != m.images[h.image].label)
      problem(fmt::format("record ({}, {}): label {} but {} has label {}", h.image, h.crop, h.label,
                          m.images[h.image].path, m.images[h.image].label));
    if (h.crop >= crops)
      problem(fmt::format("record ({}, {}): crop index beyond {} crops per image", h.image, h.crop,
                          crops));
  }
  close_image();
  if (rep.records != m.records)
    problem(fmt::format("{} records stored, metadata says {}", rep.records, m.records));
  if (m.complete) {
    // A shard holds its slice of the image list only (its skipped images lie in the slice).
    const uint64_t images = m.end_image() - m.first_image();
    uint64_t expect = (images - skipped.size()) * uint64_t{crops};
    if (rep.records != expect)
      problem(fmt::format("{} records, expected {} ({} images - {} skipped) × {} crops",
                          rep.records, expect, images, skipped.size(), crops));
  }
  return rep;
}

std::string diff_caches(const std::string& a, const std::string& b) {
  auto ra = CacheReader::open(a, {/*allow_incomplete=*/true, /*verify=*/true, /*expand=*/false});
  auto rb = CacheReader::open(b, {/*allow_incomplete=*/true, /*verify=*/true, /*expand=*/false});
  const CacheMeta &ma = ra->meta(), &mb = rb->meta();
  std::string d = CacheMeta::first_difference(ma, mb);
  if (!d.empty()) return "settings differ: " + d;
  if (ma.complete != mb.complete)
    return fmt::format("complete: {} vs {}", ma.complete, mb.complete);
  if (ma.records != mb.records) return fmt::format("records: {} vs {}", ma.records, mb.records);
  if (ma.skipped.size() != mb.skipped.size())
    return fmt::format("skipped images: {} vs {}", ma.skipped.size(), mb.skipped.size());
  for (size_t i = 0; i < ma.skipped.size(); ++i)
    if (ma.skipped[i].image != mb.skipped[i].image || ma.skipped[i].reason != mb.skipped[i].reason)
      return fmt::format("skipped[{}]: image {} ({}) vs image {} ({})", i, ma.skipped[i].image,
                         ma.skipped[i].reason, mb.skipped[i].image, mb.skipped[i].reason);
  ReadTxn ta = ra->begin(), tb = rb->begin();
  ta.seek_first();
  tb.seek_first();
  RecordView va, vb;
  for (uint64_t n = 0;; ++n) {
    bool ha = ta.next(&va), hb = tb.next(&vb);
    if (!ha || !hb) {
      if (ha != hb) return fmt::format("record count differs after {} records", n);
      return "";
    }
    const auto &x = va.header, &y = vb.header;
    if (x.image != y.image || x.crop != y.crop)
      return fmt::format("record {}: key ({}, {}) vs ({}, {})", n, x.image, x.crop, y.image,
                         y.crop);
    if (x.label != y.label || x.box.x != y.box.x || x.box.y != y.box.y || x.box.w != y.box.w ||
        x.box.h != y.box.h || x.box.flipped != y.box.flipped)
      return fmt::format("record ({}, {}): label or crop box differs", x.image, x.crop);
    if (x.payload_floats != y.payload_floats ||
        std::memcmp(va.payload, vb.payload, x.payload_floats * sizeof(float)) != 0)
      return fmt::format("record ({}, {}): vector bytes differ", x.image, x.crop);
  }
}

}  // namespace vggcache
