// extract's batch size from free GPU memory (extract/batch_size.h), as plain arithmetic: the CUDA
// query itself only runs on a GPU (scripts/gpu-check.sh).
#include <gtest/gtest.h>

#include "common/error.h"
#include "extract/batch_size.h"

namespace vggcache {
namespace {

TEST(BatchSize, ViewBytesAreConv12PlusInputs) {
  // 224 px fp32: 128 channels × 224² × 4 B for conv1_2's input and output, 3 × 224² × (4 + 8) B.
  EXPECT_EQ(vgg16_view_bytes(224, 4), 128ull * 50176 * 4 + 3ull * 50176 * 12);
  EXPECT_EQ(vgg16_view_bytes(64, 2), 128ull * 4096 * 2 + 3ull * 4096 * 8);
}

TEST(BatchSize, FromFreeMemory) {
  const uint64_t gib = 1ull << 30;
  // 8 GiB free, 224 px fp32: 0.9 · 8 GiB / (2 · 27.5 MB) = 140.6 → 136 (multiple of 8).
  EXPECT_EQ(auto_batch_size(8 * gib, 224, 4), 136);
  // Half the bytes per value: about twice the views.
  EXPECT_EQ(auto_batch_size(8 * gib, 224, 2), 272);
  // An H200's ~139 GiB at 64 px: capped.
  EXPECT_EQ(auto_batch_size(139 * gib, 64, 4), 1024);
  // Below 8 no rounding: 0.9 · 400 MiB / 55 MB = 6.9 → 6.
  EXPECT_EQ(auto_batch_size(400ull << 20, 224, 4), 6);
  AutoBatch a;
  a.safety = 1;
  a.usable = 1;
  a.max_batch = 1 << 30;
  EXPECT_EQ(auto_batch_size(10 * vgg16_view_bytes(96, 4) + 1, 96, 4, a), 8);  // 10 → 8
}

TEST(BatchSize, NotOneViewIsAnErrorNamingBatch) {
  try {
    auto_batch_size(16ull << 20, 224, 4);
    FAIL() << "16 MiB accepted for a 224 px view";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("16 MiB free"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--batch"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vggcache
