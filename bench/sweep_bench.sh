#!/usr/bin/env bash
# Benchmark of `train_head --sweep` against the same configurations as separate train_head runs
# and as PyTorch runs one after another, all in the same run: carbike64 features (D = 25088,
# random:1 weights, 2 training crops, eval-view test), the 16-configuration grid
# hidden {128, 256} × dropout {0.3, 0.5} × lr {1e-3, 3e-4} × weight-decay {0, 1e-4}, 5 epochs,
# batch 100, 10% of the training images held out. Targets: sweep <= 0.8 × separate runs, and
# >= 3× faster than PyTorch. Also checks that every sweep head equals its separate run's, byte
# for byte. Not a unit test.
# Usage: bench/sweep_bench.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  a build with bin/extract, bin/featcache, bin/train_head (default: build)
#   WORK_DIR   features are extracted there once and reused (default: /tmp/vggcache-train-bench,
#              shared with bench/train_bench.sh)
# Env: VGGCACHE_CARBIKE, VGGCACHE_PYTHON (default /usr/bin/python3), EPOCHS (5), THREADS (2).
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-train-bench}"
epochs="${EPOCHS:-5}"
grid="hidden=128,256;dropout=0.3,0.5;lr=1e-3,3e-4;weight-decay=0,1e-4"
mkdir -p "$work"

bench_features "$work"

now() { date +%s.%N; }
common=(--train "$work/train" --test "$work/test" --epochs "$epochs" --batch 100
        --threads "$threads" --val-fraction 0.1 --quiet)

echo "sweep: 16 configurations in one train_head --sweep"
rm -rf "$work/sweep"
t0=$(now)
"$build/bin/train_head" "${common[@]}" --out "$work/sweep" --sweep "$grid" > "$work/sweep.log" 2>&1
t_sweep=$(awk "BEGIN{print $(now) - $t0}")

echo "separate: 16 train_head runs"
rm -rf "$work/separate"
t0=$(now)
i=0
for hidden in 128 256; do for dropout in 0.3 0.5; do for lr in 1e-3 3e-4; do for wd in 0 1e-4; do
  "$build/bin/train_head" "${common[@]}" --out "$work/separate/$i" --hidden "$hidden" \
    --dropout "$dropout" --lr "$lr" --weight-decay "$wd" > "$work/separate.$i.log" 2>&1
  i=$((i + 1))
done; done; done; done
t_separate=$(awk "BEGIN{print $(now) - $t0}")

echo "PyTorch: the 16 configurations one after another"
t0=$(now)
"$py" "$here/sweep_peer.py" --train "$work/train_x" --test "$work/test_x" --grid "$grid" \
  --val-fraction 0.1 --epochs "$epochs" --batch 100 --threads "$threads" > "$work/peer.json"
t_peer=$(awk "BEGIN{print $(now) - $t0}")

"$py" - "$work" "$t_sweep" "$t_separate" "$t_peer" <<'PY'
import json, os, sys
work, t_sweep, t_sep, t_peer = sys.argv[1], *map(float, sys.argv[2:])
sweep = json.load(open(f"{work}/sweep/sweep.json"))
by_settings = {json.dumps(c["settings"], sort_keys=True): c["id"] for c in sweep["configurations"]}
same = 0
for i in range(16):
    s = json.load(open(f"{work}/separate/{i}/summary.json"))["settings"]
    key = {k: s[k] for k in ("lr", "weight_decay", "dropout", "hidden", "batch", "epochs",
                             "standardize", "all_crops", "seed")}
    cid = by_settings[json.dumps(key, sort_keys=True)]
    same += open(f"{work}/separate/{i}/head.bin", "rb").read() == \
        open(f"{work}/sweep/{cid}/head.bin", "rb").read()
best = json.load(open(f"{work}/sweep/best.json"))["best"]
peer = json.load(open(f"{work}/peer.json"))
print(f"heads equal to the separate runs': {same}/16")
print(f"best by validation: {best['id']} {best['settings']} val {100 * best['val_accuracy']:.2f}% "
      f"test {100 * best['test_accuracy']:.2f}%")
print(f"sweep (1 process):          {t_sweep:7.1f} s")
print(f"16 separate train_head:     {t_sep:7.1f} s")
print(f"PyTorch, 16 in sequence:    {t_peer:7.1f} s  ({peer['runs'][0]['threads']} threads; "
      f"training alone {sum(r['train_seconds'] for r in peer['runs']):.1f} s)")
print(f"sweep / separate: {t_sweep / t_sep:.2f} (target <= 0.8)")
print(f"PyTorch / sweep:  {t_peer / t_sweep:.2f}x (target >= 3x)")
PY
