#!/usr/bin/env bash
# Benchmark of train_head on 2048-d vectors (ResNet-50's global average pool) against PyTorch
# training the same head on the same vectors in memory, in the same run: carbike64 (train 2 crops
# per image, test eval view) at 64 px, hidden 256, batch 100, 2 threads. The compact first layer
# is VGG16's, so this measures the dense path any non-VGG backbone takes.
# Not a unit test. Usage: bench/head2048_bench.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  a build with bin/extract, bin/featcache, bin/train_head (default: build)
#   WORK_DIR   where features are extracted once and reused (default: /tmp/vggcache-head2048-bench)
# Env: VGGCACHE_CARBIKE (dataset), VGGCACHE_PYTHON (default /usr/bin/python3), EPOCHS (default 10),
#      THREADS (default 2), BACKBONE: resnet50 (default, extract's own, random:1 weights) or
#      torchscript (torchvision's resnet50, seed 1, traced by tests/py/ref_torchscript.py): the
#      vectors' values do not matter to the speed, only their 2048 columns.
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-head2048-bench}"
epochs="${EPOCHS:-10}"
backbone="${BACKBONE:-resnet50}"
mkdir -p "$work"
if [ "$backbone" = torchscript ]; then
  [ -f "$work/resnet50.pt" ] ||
    "$py" "$here/../tests/py/ref_torchscript.py" save resnet50 "$work/resnet50.pt" --size 64
  net=(--backbone "torchscript:$work/resnet50.pt")
else
  net=(--backbone resnet50 --weights random:1)
fi
"$build/bin/extract" "${net[@]}" --data "$data/train" --out "$work/train" --crops 2 --quiet
"$build/bin/extract" "${net[@]}" --data "$data/test" --out "$work/test" --eval --quiet
for split in train test; do
  [ -f "$work/${split}_x.npy" ] || "$build/bin/featcache" export "$work/$split" "$work/${split}_x"
done

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
print(f"dim {ours.get('train_cache', {}).get('features', {}).get('dim')}: "
      f"train_head ({ours['settings']['blas']}, {ours['settings']['threads']} threads): "
      f"{a:8.0f} vectors/s  test acc {100 * ours['final']['test_accuracy']:.2f}%")
print(f"PyTorch peer ({peer['threads']} threads):      {b:8.0f} vectors/s  "
      f"test acc {100 * peer['test_accuracy']:.2f}%")
print(f"ratio: {a / b:.2f}x")
PY
