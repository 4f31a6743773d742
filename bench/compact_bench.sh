#!/usr/bin/env bash
# Benchmark of the compact first layer (prepool-f32 cache: head/compact_layout, train_head/compact_step) against PyTorch
# training the seed's head on the 25088-d vectors, in the same run: carbike64 train split with 10
# RandomResizedCrop views per image at 64 px (random:1 weights: speed does not depend on them),
# eval-view test split, hidden 256, batch 100, dropout 0.5, 2 threads; weight decay 0 and 1e-4.
# Targets: >= 20x PyTorch's vectors/s with weight decay 0, >= 6x with 1e-4. Also prints the cache
# sizes (raw-f32 vs prepool-f32; target prepool <= 0.25 GB) and, when train_head has --sweep, the
# 16-configuration sweep of bench/sweep_bench.sh on the compact cache against PyTorch.
# Each measurement is repeated ROUNDS times, ours and PyTorch's interleaved, and the best of each
# is kept: on a shared machine the best round is the least disturbed one. Not a unit test.
# Usage: bench/compact_bench.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  a build with bin/extract, bin/featcache, bin/train_head (default: build)
#   WORK_DIR   caches are extracted there once and reused (default: /tmp/vggcache-compact-bench)
# Env: VGGCACHE_CARBIKE, VGGCACHE_PYTHON (default /usr/bin/python3), EPOCHS (5), THREADS (2),
#      ROUNDS (3), SWEEP (1; 0 skips the sweep).
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-compact-bench}"
epochs="${EPOCHS:-5}"
rounds="${ROUNDS:-3}"
mkdir -p "$work"

# Caches: the default codec at 64 px is prepool-f32; raw-f32 is extracted for its size only.
# extract reuses a complete cache, so only the first run pays for the forward passes.
x=("$build/bin/extract" --weights random:1 --quiet)
"${x[@]}" --data "$data/train" --out "$work/train" --crops 10
"${x[@]}" --data "$data/test" --out "$work/test" --eval
"${x[@]}" --data "$data/train" --out "$work/train_raw" --crops 10 --codec raw-f32
"${x[@]}" --data "$data/test" --out "$work/test_raw" --eval --codec raw-f32
# PyTorch's input: the 25088-d vectors, expanded from the prepool cache by featcache export.
for split in train test; do
  [ -f "$work/${split}_x.npy" ] || "$build/bin/featcache" export "$work/$split" "$work/${split}_x"
done

settings=(--epochs "$epochs" --batch 100 --hidden 256 --dropout 0.5 --lr 1e-3 --threads "$threads")
: > "$work/ours.jsonl"
: > "$work/peer.jsonl"
for round in $(seq "$rounds"); do
  for wd in 0 1e-4; do
    echo "round $round/$rounds, weight decay $wd: train_head (compact, full width), PyTorch"
    for path in compact full-width; do
      flag=(); [ "$path" = full-width ] && flag=(--full-width)
      out="$work/run-$path-$wd"
      "$build/bin/train_head" --train "$work/train" --test "$work/test" --out "$out" \
        "${settings[@]}" --weight-decay "$wd" "${flag[@]}" --quiet > "$work/train_head.log"
      "$py" -c 'import json, sys; s = json.load(open(sys.argv[1]));
print(json.dumps({"path": sys.argv[2], "wd": sys.argv[3], "vps": s["vectors_per_second"],
                  "acc": s["final"]["test_accuracy"]}))' "$out/summary.json" "$path" "$wd" \
        >> "$work/ours.jsonl"
    done
    "$py" "$here/train_peer.py" --train "$work/train_x" --test "$work/test_x" "${settings[@]}" \
      --weight-decay "$wd" | tail -n 1 |
      "$py" -c 'import json, sys; p = json.load(sys.stdin);
print(json.dumps({"wd": sys.argv[1], "vps": p["vectors_per_second"], "acc": p["test_accuracy"]}))' \
        "$wd" >> "$work/peer.jsonl"
  done
done

"$py" - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
ours = [json.loads(l) for l in open(f"{work}/ours.jsonl")]
peer = [json.loads(l) for l in open(f"{work}/peer.jsonl")]
def best(rows, **k):
    return max(r["vps"] for r in rows if all(r[a] == b for a, b in k.items()))
for wd, target in (("0", 20), ("1e-4", 6)):
    c, f, p = best(ours, path="compact", wd=wd), best(ours, path="full-width", wd=wd), best(peer, wd=wd)
    print(f"weight decay {wd:>4}: compact {c:8.0f} vectors/s, full width {f:7.0f}, PyTorch {p:6.0f}"
          f"  ->  compact {c / p:5.1f}x PyTorch (target >= {target}x), full width {f / p:4.1f}x")
def size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
for split in ("train", "test"):
    raw, pre = size(f"{work}/{split}_raw"), size(f"{work}/{split}")
    print(f"{split} cache: raw-f32 {raw / 1e9:6.3f} GB, prepool-f32 {pre / 1e9:6.3f} GB "
          f"({raw / pre:4.1f}x smaller)" + (" (target <= 0.25 GB)" if split == "train" else ""))
PY

if [ "${SWEEP:-1}" = 1 ] && "$build/bin/train_head" --help 2>&1 | grep -q -- --sweep; then
  grid="hidden=128,256;dropout=0.3,0.5;lr=1e-3,3e-4;weight-decay=0,1e-4"
  common=(--train "$work/train" --test "$work/test" --epochs "$epochs" --batch 100
          --threads "$threads" --val-fraction 0.1 --quiet)
  now() { date +%s.%N; }
  # Best of ROUNDS for each, interleaved, as for the single runs above.
  t_sweep=1e99 t_peer=1e99
  for round in $(seq "$rounds"); do
    echo "sweep round $round/$rounds: the 16 configurations in one train_head --sweep (compact" \
      "cache), then PyTorch running them one after another"
    rm -rf "$work/sweep"
    t0=$(now)
    "$build/bin/train_head" "${common[@]}" --out "$work/sweep" --sweep "$grid" > "$work/sweep.log" 2>&1
    t=$(awk "BEGIN{print $(now) - $t0}")
    t_sweep=$(awk "BEGIN{print ($t < $t_sweep) ? $t : $t_sweep}")
    t0=$(now)
    "$py" "$here/sweep_peer.py" --train "$work/train_x" --test "$work/test_x" --grid "$grid" \
      --val-fraction 0.1 --epochs "$epochs" --batch 100 --threads "$threads" > "$work/sweep_peer.json"
    t=$(awk "BEGIN{print $(now) - $t0}")
    t_peer=$(awk "BEGIN{print ($t < $t_peer) ? $t : $t_peer}")
  done
  awk "BEGIN{printf \"sweep %.1f s, PyTorch %.1f s (best of $rounds each): %.1fx (target >= 15x)\n\", \
       $t_sweep, $t_peer, $t_peer / $t_sweep}"
else
  echo "sweep: skipped (SWEEP=0, or this train_head has no --sweep)"
fi
