# Sourced by the head benchmarks: carbike64 features from random VGG16 weights (speed does not
# depend on them), train with 2 crops per image and test in eval view, in WORK, plus their
# 25088-d exports (WORK/{train,test}_x.npy) for the PyTorch peers. extract reuses a complete cache
# and an existing export is kept, so only the first run pays for the forward passes.
# Usage: bench_features BUILD_DIR WORK_DIR DATA_DIR
bench_features() {
  local build=$1 work=$2 data=$3
  "$build/bin/extract" --data "$data/train" --out "$work/train" --weights random:1 --crops 2 --quiet
  "$build/bin/extract" --data "$data/test" --out "$work/test" --weights random:1 --eval --quiet
  for split in train test; do
    [ -f "$work/${split}_x.npy" ] || "$build/bin/featcache" export "$work/$split" "$work/${split}_x"
  done
}
