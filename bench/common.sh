# The opening every bench/*_bench.sh sources first: strict mode, where things are, and the
# features the head benchmarks share.
#   . "$(dirname "$0")/common.sh"   (with the script's own arguments still in "$@")
# Sets: here (bench/), build (BUILD_DIR = $1, default build/, made absolute), data (carbike64;
# env VGGCACHE_CARBIKE), py (env VGGCACHE_PYTHON, default /usr/bin/python3), threads (env
# THREADS, default 2).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$(cd "${1:-$here/../build}" && pwd)"
data="${VGGCACHE_CARBIKE:-$here/../../shared/datasets/carbike64}"
py="${VGGCACHE_PYTHON:-/usr/bin/python3}"
threads="${THREADS:-2}"

# carbike64 features from random VGG16 weights (speed does not depend on them), train with 2
# crops per image and test in eval view, in WORK, plus their 25088-d exports
# (WORK/{train,test}_x.npy) for the PyTorch peers. extract reuses a complete cache and an existing
# export is kept, so only the first run pays for the forward passes.
# Usage: bench_features WORK_DIR
bench_features() {
  local work=$1
  "$build/bin/extract" --data "$data/train" --out "$work/train" --weights random:1 --crops 2 --quiet
  "$build/bin/extract" --data "$data/test" --out "$work/test" --weights random:1 --eval --quiet
  for split in train test; do
    [ -f "$work/${split}_x.npy" ] || "$build/bin/featcache" export "$work/$split" "$work/${split}_x"
  done
}

# The first N images of each class of an ImageFolder split, as symlinks in DST (made once): a
# subset that our tools and the PyTorch peers read alike.
# Usage: bench_subset SRC_SPLIT DST N
bench_subset() {
  local src=$1 dst=$2 n=$3
  [ -d "$dst" ] && return 0
  rm -rf "$dst.tmp"
  for cls in "$src"/*/; do
    mkdir -p "$dst.tmp/$(basename "$cls")"
    # sed, not head: head's early exit would fail the pipeline under pipefail
    find "$(realpath "$cls")" -maxdepth 1 -type f | sort | sed -n "1,${n}p" | while read -r f; do
      ln -s "$f" "$dst.tmp/$(basename "$cls")/$(basename "$f")"
    done
  done
  mv "$dst.tmp" "$dst"
}
