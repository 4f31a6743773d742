#!/usr/bin/env bash
# Benchmark of train_head fine-tuning block 5 + head from pool4 caches against two PyTorch peers
# measured in the same run: the same training from pool4 maps in memory, and the plain fine-tune
# from images (blocks 1-4 frozen, run every step). 64-pixel crops, batch 100, hidden 256, Adam,
# seeded random VGG16 weights (speed does not depend on them).
# Targets (issue #15): ≥ 2.5× the first peer, ≥ 8× the second. The issue's reference figures,
# PyTorch ≈ 69 crops/s from maps and ≈ 21 from images, move with the box's load (47–277 and
# 18–89 on the shared 2-core dev box): only ratios from one run mean anything.
# Not a unit test. Usage: bench/finetune_bench.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  a build with bin/extract and bin/train_head (default: build)
#   WORK_DIR   where the weights, the image subset and the caches are made once and reused
#              (default: /tmp/vggcache-finetune-bench)
# Env: VGGCACHE_CARBIKE (dataset), VGGCACHE_PYTHON (default /usr/bin/python3), THREADS (2),
#      TRAIN_PER_CLASS (400) and TEST_PER_CLASS (100) images of carbike64, EPOCHS (3; crops/s is
#      over epochs 2.. so the first pays for warm-up), PEER_STEPS (5 timed steps per peer).
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-finetune-bench}"
epochs="${EPOCHS:-3}"
train_n="${TRAIN_PER_CLASS:-400}"
test_n="${TEST_PER_CLASS:-100}"
steps="${PEER_STEPS:-5}"
[ "$epochs" -ge 2 ] || { echo "finetune_bench: EPOCHS must be >= 2 (got $epochs)" >&2; exit 2; }
if ! dpkg -s libopenblas0-pthread > /dev/null 2>&1; then
  echo "finetune_bench: libopenblas0-pthread is not installed (scripts/install-deps.sh):" \
    "on reference BLAS the peers run ~10x slower and the ratios would mean nothing" >&2
  exit 2
fi
mkdir -p "$work"

bench_subset "$data/train" "$work/data_${train_n}/train" "$train_n"
bench_subset "$data/test" "$work/data_${test_n}/test" "$test_n"
train_data="$work/data_${train_n}/train"
test_data="$work/data_${test_n}/test"

weights="$work/weights/vgg16_zip.pth"
[ -f "$weights" ] || "$py" "$here/../tests/py/make_vgg16_pth.py" "$work/weights" 1 \
  --features-only --formats zip
"$build/bin/extract" --data "$train_data" --out "$work/train_${train_n}.pool4" \
  --weights "$weights" --cut pool4 --eval --quiet
"$build/bin/extract" --data "$test_data" --out "$work/test_${test_n}.pool4" --weights "$weights" \
  --cut pool4 --eval --quiet

rm -rf "$work/run"
/usr/bin/time -v -o "$work/time.txt" "$build/bin/train_head" \
  --train "$work/train_${train_n}.pool4" --test "$work/test_${test_n}.pool4" --weights "$weights" \
  --out "$work/run" --epochs "$epochs" --batch 100 --hidden 256 --dropout 0.5 --lr 1e-3 \
  --lr-block5 1e-4 --threads "$threads" --quiet > "$work/train_head.log"

peer=(--data "$train_data" --weights "$weights" --batch 100 --hidden 256 --dropout 0.5 --lr 1e-3
  --lr-block5 1e-4 --threads "$threads" --steps "$steps")
"$py" "$here/finetune_peer.py" "${peer[@]}" --mode maps > "$work/peer_maps.json"
"$py" "$here/finetune_peer.py" "${peer[@]}" --mode images > "$work/peer_images.json"

rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
sizes=$(du -sh "$work/train_${train_n}.pool4" "$work/test_${test_n}.pool4" | awk '{print $1}' |
  paste -sd/)
"$py" - "$work/run/metrics.jsonl" "$work/peer_maps.json" "$work/peer_images.json" "$rss_kb" \
  "$sizes" "$threads" <<'PY'
import json, sys
epochs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
maps, images = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
rss_kb, sizes, threads = sys.argv[4], sys.argv[5], sys.argv[6]
steady = epochs[1:]  # the first epoch pays for TBB's workers and first-touch pages
seconds = sum(e["train_seconds"] for e in steady)
ours = sum(e["vectors_per_second"] * e["train_seconds"] for e in steady) / seconds
a, b = maps["crops_per_second"], images["crops_per_second"]
print(f"train_head fine-tune ({threads} threads, epochs 2-{len(epochs)}): {ours:7.1f} crops/s, "
      f"peak RSS {int(rss_kb) / 1024:.0f} MiB, pool4 caches train/test {sizes}")
print(f"PyTorch from pool4 maps ({maps['threads']} threads):       {a:7.1f} crops/s  "
      f"ratio {ours / a:.2f}x (target >= 2.5x)")
print(f"PyTorch from images ({images['threads']} threads):          {b:7.1f} crops/s  "
      f"ratio {ours / b:.2f}x (target >= 8x)")
PY
