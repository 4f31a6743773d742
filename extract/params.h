// Every setting of the `extract` command, with its default. Filled by parse_extract_args()
// (extract/cli.h); the pipeline reads nothing else.
#pragma once
#include <cstdint>
#include <string>

#include "common/cache_meta.h"
#include "extract/view_params.h"

namespace vggcache {

struct ExtractParams : ViewParams {  // --scale --ratio --flip --seed --batch --threads --device
                                     // --quiet: extract/view_params.h
  std::string data_dir;              // --data DIR: one split of an ImageFolder tree (required)
  std::string out_dir;               // --out CACHE: the LMDB cache to create or resume (required)
  std::string backbone = "vgg16";    // --backbone vgg16|resnet50|torchscript:FILE, the name part
  std::string backbone_file;         //   and, for torchscript, FILE (the module is the weights)
  std::string weights;  // --weights FILE|random:SEED (required for vgg16 and resnet50; refused with
                        //   torchscript, whose file is the weights)
  int size = 64;        // --size: output side in pixels (>= 32)
  int crops = 10;       // --crops: RandomResizedCrop views per image (>= 1; 1 with --eval)
  bool eval = false;    // --eval: one deterministic Resize((size, size)) view per image
  bool strict = false;  // --strict: an undecodable image is an error instead of a skip
  bool overwrite = false;          // --overwrite: replace a cache made with different settings
  std::string codec = "auto";      // --codec auto|raw-f32|prepool-f32|raw-f16|prepool-f16: how
                                   //   records store a view (f16: halves, lossy); auto =
                                   //   prepool-f32 when VGG16's last map is smaller than 7×7
                                   //   (size < 224), else raw-f32; raw-f32 for other backbones
  std::string cut = "pool5";       // --cut pool5|pool4: the layer records come from; pool4 stores
                                   //   block 5's input map (raw-f32) for fine-tuning block 5
  std::string precision = "fp32";  // --precision fp32|bf16|fp16: dtype of the forward pass
                                   //   (weights and inputs); records stay float32
  bool batch_auto = false;   // --device cuda without --batch: main sizes the batch from the GPU's
                             //   free memory (extract/batch_size.h) once the weights are loaded
  uint32_t shard_index = 0;  // --shard I/N (or auto): extract only the I-th of N slices of the
  uint32_t shard_count = 0;  //   image list (common/shard_set.h); 0 = no --shard, every image

  // The Preprocess block these settings stand for (what the cache records and compares).
  Preprocess preprocess() const {
    Preprocess p;
    p.size = size;
    p.eval = eval;
    p.crops = eval ? 1 : crops;
    // Eval ignores the crop settings; keeping Preprocess's defaults there means two eval runs
    // never disagree about settings that have no effect.
    if (!eval) {
      p.scale_min = scale_min;
      p.scale_max = scale_max;
      p.ratio_min = ratio_min;
      p.ratio_max = ratio_max;
      p.flip = flip;
    }
    p.seed = seed;
    return p;
  }
};

}  // namespace vggcache
