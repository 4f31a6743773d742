// `train_head --sweep SPEC` on pool4 caches: every configuration is a fine-tuning run of block 5
// with the head (train_head/finetune_run.h), writing into SWEEP_DIR/<id>/ exactly what
// `train_head` with its settings writes, ranked and resumed as head sweeps are
// (train_head/sweep/sweep_dir.h).
//
// Sweepable beside the head's keys: optimizer (adam, sgd), momentum, lr-block5, freeze-block5;
// refused (naming the key): standardize, l2, optimizer lbfgs, hidden 0, and hidden with
// --init-head (spec.h: check_spec_for_caches). --weights is required as for a single
// run; its SHA-256 and --init-head's are part of the sweep's identity.
//
// Configurations share no batches (each trains its own block 5): up to --parallel of them train at
// once, all on the one TBB pool of --threads threads, so the sweep never runs more threads than
// asked. Default --parallel: as many as threads, as far as half the available memory holds
// (finetune_config_bytes()); each configuration's result is the same whatever ran beside it
// (block 5 and the head step over fixed blocks, finetune/finetune_step.h).
#pragma once
#include <cstdint>

#include "train_head/params.h"

namespace vggcache {

// Bytes one fine-tuning configuration holds while training: block 5 and the head four times
// (weights, gradients, two Adam moments) plus the kept copies, and a batch's block 5 activations
// for maps of h × w.
uint64_t finetune_config_bytes(int hidden, int batch, int h, int w);

int run_finetune_sweep(const TrainParams& base, const SweepParams& sweep);

}  // namespace vggcache
