#!/usr/bin/env bash
# Benchmark of the block-5 fine-tuning engine (finetune/) against PyTorch running the same layers,
# in the same run: forward + backward from pool4 maps of 64-pixel crops (512 × 4 × 4), batch 64.
# Reference: PyTorch fine-tuning block 5 + head from pool4 maps ran at ≈ 69 crops/s on 2 threads.
# Not a unit test. Usage: bench/block5_bench.sh [BUILD_DIR]   (BUILD_DIR with bin/bench_block5)
# Env: VGGCACHE_PYTHON (default /usr/bin/python3), THREADS (default 2), BATCH (64), SIZE (4),
#      ITERS (5).
. "$(dirname "$0")/common.sh"
args=("${BATCH:-64}" "${SIZE:-4}" "${ITERS:-5}" "$threads")
ours=$("$build/bin/bench_block5" --batch "${args[0]}" --size "${args[1]}" --iters "${args[2]}" \
  --threads "$threads")
peer=$("$py" "$here/block5_peer.py" "${args[@]}")
"$py" - "$ours" "$peer" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
a, b = ours["crops_per_second"], peer["crops_per_second"]
split = (f"; forward {ours['forward_ms']:.0f} ms, backward {ours['backward_ms']:.0f} ms, whole "
         f"step with head + Adam {ours['step_crops_per_second']:.1f} crops/s"
         if "step_ms" in ours else "")  # older builds time forward + backward only
print(f"block 5 engine ({ours['blas']}, {ours['threads']} threads): {a:8.1f} crops/s "
      f"(batch {ours['batch']}, pool4 {ours['size']}x{ours['size']}{split})")
print(f"PyTorch peer ({peer['threads']} threads):            {b:8.1f} crops/s")
print(f"ratio: {a / b:.2f}x")
PY
