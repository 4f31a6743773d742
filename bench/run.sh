#!/usr/bin/env bash
# Runs every benchmark (bench/*_bench.sh) against its PyTorch peer, measured in the same run, and
# prints the ratios. Not part of the tests: speed targets live here, never in timed unit tests.
# Usage: bench/run.sh [BUILD_DIR]   (env: THREADS=2, VGGCACHE_CARBIKE=path)
# scale_bench.sh (training from a cache 4x larger than its memory limit) needs root and cgroup v1
# and the scale_cache_writer test target; its peer is the unlimited run, not PyTorch.
set -euo pipefail
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
export BIN=$(cd "$BUILD/bin" && pwd)
export THREADS=${THREADS:-2}
export CARBIKE=${VGGCACHE_CARBIKE:-$HERE/../../shared/datasets/carbike64}
[ -d "$CARBIKE/train" ] || { echo "bench: carbike64 not found at $CARBIKE" >&2; exit 1; }
dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "ok installed" ||
  { echo "bench: install libopenblas0-pthread first (PyTorch on reference BLAS is 10x slower)" >&2; exit 1; }
status=0
for b in "$HERE"/*_bench.sh; do
  [ -e "$b" ] || continue
  echo "=== $(basename "$b")"
  bash "$b" "$BUILD" || status=1
done
exit $status
