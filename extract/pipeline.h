// The extraction pipeline: ImageFolder scan → metadata → cache (create or resume) → chunks of
// whole images, decoded and augmented in parallel (TBB) while the previous chunk runs through the
// network → one LMDB transaction per chunk. No LibTorch here: the network is a FeatureNet.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "common/image_folder.h"
#include "common/record.h"
#include "extract/feature_net.h"
#include "extract/params.h"
#include "extract/torchscript_net.h"

namespace vggcache {

struct ExtractSummary {
  uint64_t images = 0;            // images in the split
  uint64_t images_run = 0;        // images processed by this run (after the resume point)
  uint64_t records = 0;           // records in the cache
  uint64_t records_run = 0;       // records written by this run
  uint64_t skipped = 0;           // images skipped in the whole cache
  uint32_t resumed_from = 0;      // next_image found at open (0 for a fresh cache)
  bool already_complete = false;  // the cache was complete before this run
  double seconds = 0;             // wall time of this run's loop
  double cpu_seconds = 0;         // CPU time of the process (all threads) during the loop
};

// CPU seconds used by this process so far, all threads (a load-independent cost measure).
double process_cpu_seconds();

// Metadata for a fresh cache: classes and images (size + SHA-256 of each file, hashed in
// parallel; "" for unreadable files), weights identity, preprocess settings, codec raw-f32
// (run_extract then applies --codec).
CacheMeta build_cache_meta(const ExtractParams& p, const FolderScan& scan,
                           const WeightsIdentity& weights, uint32_t dim);

// A TorchScript backbone's output length, from its run on the first decodable images' views (up
// to p.batch of them; net.learn_dim() also runs the first view alone, so a length that depends on
// the batch is refused here). Called before run_extract() opens the cache, so a module that
// returns something unusable leaves nothing written. Throws Error(kBadWeights) from the module's
// checks, Error(kBadImage) when no image decodes.
uint32_t learn_output_dim(const ExtractParams& p, const FolderScan& scan, TorchScriptNet& net);

// Runs (or resumes) the extraction into p.out_dir. Throws Error on a bad image with p.strict, on
// mismatched settings without p.overwrite, and on I/O failures; earlier commits stay valid.
ExtractSummary run_extract(const ExtractParams& p, const FolderScan& scan, FeatureNet& net,
                           const WeightsIdentity& weights);

// Decodes and preprocesses views [first, end) of `scan` into `out` (n × 3 × s × s), in parallel
// with `threads` threads. Exposed for the forward benchmark and tests.
struct PreparedView {
  uint32_t image = 0;
  uint32_t crop = 0;
  int32_t label = 0;
  CropBox box;
};
struct PreparedChunk {
  uint32_t first = 0, end = 0;        // images [first, end)
  HostBuffer input;                   // views × 3 × s × s, the first views.size() are valid
  std::vector<PreparedView> views;    // in (image, crop) order
  std::vector<SkippedEntry> skipped;  // images of the chunk that could not be decoded
};
PreparedChunk prepare_chunk(const ExtractParams& p, const FolderScan& scan, uint32_t first,
                            uint32_t end, FeatureNet& net);

}  // namespace vggcache
