#!/usr/bin/env bash
# Forward-pass throughput of the ResNet-50 backbone against torchvision's resnet50, measured in
# the same run (not a timed test).
#   bench/resnet50_bench.sh [BUILD_DIR]   (env: THREADS=2)
# At 64 px (batch 32, 256 views) and 224 px (batch 8, 32 views), same fixed input, same threads:
#   PyTorch: torchvision resnet50() with fc = Identity, eval, torch.inference_mode, the faster of
#            NCHW and channels-last (bench/resnet50_peer.py)
#   ours:    make_resnet50_net's forward (bench_resnet50, built by `make bench`)
# Two interleaved rounds, best of each side, so load from other processes penalises both alike.
# Target: ours >= 0.95x PyTorch's img/s.
. "$(dirname "$0")/common.sh"
BENCH=$build/bin/bench_resnet50
[ -x "$BENCH" ] || { echo "$BENCH not built (make bench builds it)" >&2; exit 1; }

rate() { sed -n "s/^$1: \([0-9.]*\) img\/s.*/\1/p"; }
cpu_ms() { sed -n "s/^$1: .* \([0-9.]*\) CPU-ms\/img.*/\1/p"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

rows=()
for cfg in "64 32 256" "224 8 32"; do
  read -r size batch images <<<"$cfg"
  torch_best=0 torch_cpu=1e9 ours_best=0 ours_cpu=1e9
  for round in 1 2; do
    out=$("$py" "$here/resnet50_peer.py" --size "$size" --batch "$batch" --threads "$threads" \
            --images "$images")
    echo "$out" >&2
    torch_best=$(max "$torch_best" "$(echo "$out" | rate torch-forward)")
    torch_cpu=$(min "$torch_cpu" "$(echo "$out" | cpu_ms torch-forward)")
    out=$("$BENCH" --size "$size" --batch "$batch" --threads "$threads" --images "$images")
    echo "$out" >&2
    ours_best=$(max "$ours_best" "$(echo "$out" | rate resnet50-forward)")
    ours_cpu=$(min "$ours_cpu" "$(echo "$out" | cpu_ms resnet50-forward)")
  done
  rows+=("$(printf '  %3s px  batch %2s  %10.2f %10.2f  %5s   %8.1f %8.1f  %5s' "$size" "$batch" \
    "$torch_best" "$ours_best" "$(ratio "$ours_best" "$torch_best")" "$torch_cpu" "$ours_cpu" \
    "$(ratio "$torch_cpu" "$ours_cpu")")")
done

echo
echo "resnet50 forward-only benchmark: $threads threads, random weights, best of 2 rounds"
echo "                     img/s: torch       ours  ratio   CPU-ms/img: torch  ours  ratio"
printf '%s\n' "${rows[@]}"
echo "  ratio = ours / torch for img/s, torch / ours for CPU-ms (target >= 0.95)."
