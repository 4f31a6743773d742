#!/usr/bin/env bash
# The main job end to end on the embedded default: carbike64 from ../shared (or a generated
# synthetic set, clearly labelled), official VGG16 weights from data/ (or random:1, announced),
# extract train (10 crops) + test (eval), train the head for 5 epochs, report where results are.
# Later runs reuse the caches (extract resumes / skips complete caches).
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/bin"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${VGGCACHE_DEMO_DIR:-$ROOT/demo}
THREADS=${THREADS:-$(nproc)}
CROPS=${VGGCACHE_DEMO_CROPS:-10}    # training views per image
EPOCHS=${VGGCACHE_DEMO_EPOCHS:-5}
mkdir -p "$OUT"

DATA=""
for cand in ${VGGCACHE_DEMO_DATA:-} "$ROOT/data/dataset" "$ROOT/../shared/datasets/carbike64"; do
  if [ -d "$cand/train" ] && [ -d "$cand/test" ]; then DATA=$(cd "$cand" && pwd); break; fi
done
if [ -z "$DATA" ]; then
  DATA="$OUT/synthetic"
  echo "============================================================================"
  echo " No dataset found (data/dataset or ../shared/datasets/carbike64)."
  echo " Using a GENERATED SYNTHETIC dataset in $DATA: results say nothing about"
  echo " real cars and bicycles."
  echo "============================================================================"
  [ -d "$DATA/train" ] || /usr/bin/python3 "$ROOT/data/make_synthetic.py" "$DATA" --per-class 200 --test-per-class 60
fi

WEIGHTS="$ROOT/data/vgg16-397923af.pth"
if [ -f "$WEIGHTS" ]; then
  WSPEC="$WEIGHTS"
else
  WSPEC="random:1"
  echo "============================================================================"
  echo " data/vgg16-397923af.pth not found: using RANDOM VGG16 weights (random:1)."
  echo " The features are NOT pretrained; accuracy will be far below the real recipe."
  echo " Put torchvision's vgg16-397923af.pth in data/ (make -f Makefile.data weights)."
  echo "============================================================================"
fi
TAG=$(basename "$DATA")-$(basename "$WSPEC" .pth | tr ':' '-')

echo "== dataset: $DATA"
echo "== weights: $WSPEC"
if [ ! -x "$BIN/extract" ]; then echo "demo: $BIN/extract is missing (build failed?)" >&2; exit 1; fi
"$BIN/extract" --data "$DATA/train" --out "$OUT/cache/$TAG/train" --weights "$WSPEC" \
  --size 64 --crops "$CROPS" --threads "$THREADS"
"$BIN/extract" --data "$DATA/test" --out "$OUT/cache/$TAG/test" --weights "$WSPEC" \
  --size 64 --eval --threads "$THREADS"
"$BIN/featcache" verify "$OUT/cache/$TAG/train"
"$BIN/featcache" verify "$OUT/cache/$TAG/test"

if [ ! -x "$BIN/train_head" ]; then echo "demo: $BIN/train_head is missing" >&2; exit 1; fi
RUN="$OUT/runs/$TAG-$(date +%Y%m%d-%H%M%S)-$$"
"$BIN/train_head" --train "$OUT/cache/$TAG/train" --test "$OUT/cache/$TAG/test" --out "$RUN" \
  --epochs "$EPOCHS" --threads "$THREADS"
echo
echo "== results in $RUN: report.html (open it in a browser), metrics.jsonl, summary.json,"
echo "   predictions.csv, head.bin; use the head with: $BIN/predict --weights $WSPEC --head $RUN/head.bin IMAGES..."
