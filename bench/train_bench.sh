#!/usr/bin/env bash
# Benchmark of train_head against PyTorch training the same head on the same vectors in memory,
# in the same run: carbike64 features (D = 25088), hidden 256, batch 100, 2 threads.
# Not a unit test. Usage: bench/train_bench.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  a build with bin/extract, bin/featcache, bin/train_head (default: build)
#   WORK_DIR   where features are extracted once and reused (default: /tmp/vggcache-train-bench)
# Env: VGGCACHE_CARBIKE (dataset), VGGCACHE_PYTHON (default /usr/bin/python3), EPOCHS (default 3),
#      THREADS (default 2).
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-train-bench}"
epochs="${EPOCHS:-3}"
mkdir -p "$work"
bench_features "$work"

settings=(--epochs "$epochs" --batch 100 --hidden 256 --dropout 0.5 --lr 1e-3 --threads "$threads")
"$build/bin/train_head" --train "$work/train" --test "$work/test" --out "$work/run" \
  "${settings[@]}" --quiet > "$work/train_head.log"
"$py" "$here/train_peer.py" --train "$work/train_x" --test "$work/test_x" "${settings[@]}" \
  | tail -n 1 > "$work/peer.json"

"$py" - "$work/run/summary.json" "$work/peer.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))
a, b = ours["vectors_per_second"], peer["vectors_per_second"]
print(f"train_head ({ours['settings']['blas']}, {ours['settings']['threads']} threads): "
      f"{a:8.0f} vectors/s  test acc {100 * ours['final']['test_accuracy']:.2f}%")
print(f"PyTorch peer ({peer['threads']} threads):      {b:8.0f} vectors/s  "
      f"test acc {100 * peer['test_accuracy']:.2f}%")
print(f"ratio: {a / b:.2f}x (target >= 3x)")
PY
