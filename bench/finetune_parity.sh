#!/usr/bin/env bash
# Statistical parity of fine-tuning: for each of SEEDS, a frozen head trained by train_head on the
# pool5 cache, then block 5 + that head fine-tuned from the pool4 cache of the same extraction
# (--init-head) by train_head and by PyTorch (bench/finetune_parity_peer.py: the same weights, the
# same head, OPTIMIZER in two groups, batch 100, dropout 0.5). Passes when the mean test accuracy
# of ours is within 2 points of PyTorch's; the frozen head's accuracy is printed beside them.
# Seeded random VGG16 weights (no pretrained ones offline), 64-pixel eval views, 2 threads.
# Several minutes on 2 cores; run by hand, not in ctest.
# Usage: bench/finetune_parity.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  a build with bin/extract and bin/train_head (default: build)
#   WORK_DIR   where the weights, the subset and the caches are made once and reused
#              (default: /tmp/vggcache-finetune-parity)
# Env: VGGCACHE_CARBIKE (dataset), VGGCACHE_PYTHON (default /usr/bin/python3), THREADS (2),
#      SEEDS ("1 2 3"), TRAIN_PER_CLASS (1000 = all of carbike64), TEST_PER_CLASS (300 = all),
#      FROZEN_EPOCHS (5), EPOCHS (3, the fine-tune's), TOLERANCE (2, points), OPTIMIZER (adam,
#      train_head's default; or sgd, momentum 0.9 on both sides), LR (1e-3: the frozen head's, and
#      the fine-tune head's unless FT_LR is set), LR_BLOCK5 (1e-4), BLOCK5_CONV (auto: train_head's
#      default, Winograd at 64 px; or direct). The Keras recipe's step 3 is OPTIMIZER=sgd
#      FT_LR=1e-4 LR_BLOCK5=1e-4.
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-finetune-parity}"
seeds="${SEEDS:-1 2 3}"
train_n="${TRAIN_PER_CLASS:-1000}"
test_n="${TEST_PER_CLASS:-300}"
frozen_epochs="${FROZEN_EPOCHS:-5}"
epochs="${EPOCHS:-3}"
tolerance="${TOLERANCE:-2}"
optimizer="${OPTIMIZER:-adam}"
lr="${LR:-1e-3}"
ft_lr="${FT_LR:-$lr}"
lr_block5="${LR_BLOCK5:-1e-4}"
block5_conv="${BLOCK5_CONV:-auto}"
mkdir -p "$work"

bench_subset "$data/train" "$work/data_${train_n}/train" "$train_n"
bench_subset "$data/test" "$work/data_${test_n}/test" "$test_n"
weights="$work/weights/vgg16_zip.pth"
[ -f "$weights" ] || "$py" "$here/../tests/py/make_vgg16_pth.py" "$work/weights" 1 \
  --features-only --formats zip
for cut in pool5 pool4; do
  "$build/bin/extract" --data "$work/data_${train_n}/train" --out "$work/train_${train_n}.$cut" \
    --weights "$weights" --cut "$cut" --eval --quiet
  "$build/bin/extract" --data "$work/data_${test_n}/test" --out "$work/test_${test_n}.$cut" \
    --weights "$weights" --cut "$cut" --eval --quiet
done

common=(--batch 100 --hidden 256 --dropout 0.5 --threads "$threads" --quiet)
tune=(--optimizer "$optimizer" --lr-block5 "$lr_block5")
tr="$work/train_${train_n}" te="$work/test_${test_n}"
results=()
for seed in $seeds; do
  run="$work/runs/seed$seed"
  rm -rf "$run"
  mkdir -p "$work/runs"
  "$build/bin/train_head" --train "$tr.pool5" --test "$te.pool5" \
    --out "$run/frozen" --epochs "$frozen_epochs" --seed "$seed" --lr "$lr" "${common[@]}" \
    > "$run.frozen.log"
  "$build/bin/train_head" --train "$tr.pool4" --test "$te.pool4" \
    --weights "$weights" --init-head "$run/frozen/head.bin" "${tune[@]}" --out "$run/ours" \
    --block5-conv "$block5_conv" --lr "$ft_lr" --epochs "$epochs" --seed "$seed" "${common[@]}" \
    > "$run.ours.log"
  "$py" "$here/finetune_parity_peer.py" --train "$tr.pool4" --test "$te.pool4" \
    --weights "$weights" --init-head "$run/frozen/head.bin" --seed "$seed" --epochs "$epochs" \
    --batch 100 --lr "$ft_lr" "${tune[@]}" --dropout 0.5 \
    --threads "$threads" > "$run.peer.json"
  results+=("$run/ours/summary.json" "$run.peer.json")
done

"$py" - "$tolerance" "$optimizer, lr $ft_lr, block 5 lr $lr_block5, $block5_conv convolutions, $epochs epochs" "${results[@]}" <<'PY'
import json, sys
tol, files = float(sys.argv[1]), sys.argv[3:]
rows = []
for ours_f, peer_f in zip(files[::2], files[1::2]):
    ours, peer = json.load(open(ours_f)), json.load(open(peer_f))
    frozen = ours["finetune"]["init_test"]["accuracy"]
    rows.append((peer["seed"], 100 * frozen, 100 * ours["final"]["test_accuracy"],
                 100 * peer["test_accuracy"], 100 * peer["init_test_accuracy"],
                 ours["final"].get("test_loss", float("nan")), peer["test_loss"]))
print(f"fine-tuning with {sys.argv[2]}")
print(f"{'seed':>4} {'frozen head':>12} {'train_head':>11} {'PyTorch':>8}   (test accuracy, %)"
      f"   {'train_head':>10} {'PyTorch':>8}   (test loss)")
for seed, frozen, ours, peer, peer_init, ours_loss, peer_loss in rows:
    print(f"{seed:>4} {frozen:12.2f} {ours:11.2f} {peer:8.2f}   {ours_loss:21.4f} {peer_loss:8.4f}"
          + ("" if abs(frozen - peer_init) < 1e-6 else f"   (PyTorch's frozen: {peer_init:.2f})"))
mean = [sum(r[i] for r in rows) / len(rows) for i in (1, 2, 3, 5, 6)]
print(f"mean {mean[0]:12.2f} {mean[1]:11.2f} {mean[2]:8.2f}   {mean[3]:21.4f} {mean[4]:8.4f}")
gap = mean[1] - mean[2]
ok = abs(gap) <= tol
print(f"train_head - PyTorch: {gap:+.2f} points (tolerance {tol:g}): {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
