#!/usr/bin/env bash
# Benchmark of train_head's L-BFGS linear probe (--hidden 0 --optimizer lbfgs) against
# scikit-learn's LogisticRegression(C = 1/l2, solver "lbfgs") on the same vectors, in the same
# run: carbike64 features (D = 25088), every training crop (2 per image, --all-crops) and the
# test set in eval view. Both sides time the fit alone (ours: summary.json's train_seconds,
# reading the cache into memory included; sklearn: fit on arrays already in memory, float32 as
# exported) and use their default stopping rule (ours --tol 1e-4 on the mean objective's gradient,
# sklearn tol 1e-4), with max_iter MAX_ITER for both. Both caches are prepool-f32 (64 px), so
# train_head solves on the 4,608 scaled window means (README: linear probe); FULL_WIDTH=1 adds
# --full-width (the 25,088-d pooled vectors, as sklearn gets them). Not a unit test.
# Usage: bench/probe_bench.sh [BUILD_DIR] [WORK_DIR]
#   WORK_DIR  where features are extracted once and reused (default: /tmp/vggcache-knn-bench,
#             shared with knn_bench.sh: the same features)
# Env: VGGCACHE_CARBIKE, VGGCACHE_PYTHON, THREADS (default 2), L2 (default 1), MAX_ITER (default
# 1000), FULL_WIDTH.
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-knn-bench}"
l2="${L2:-1}"
max_iter="${MAX_ITER:-1000}"
mkdir -p "$work"
bench_features "$work"

"$build/bin/train_head" --train "$work/train" --test "$work/test" --out "$work/probe" \
  --hidden 0 --optimizer lbfgs --all-crops --l2 "$l2" --max-iter "$max_iter" \
  --threads "$threads" --quiet ${FULL_WIDTH:+--full-width} > "$work/probe.log"
OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" "$py" - "$work" "$l2" "$max_iter" \
  "$threads" <<'PY'
import json, sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
work, l2, max_iter, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
X, y = np.load(f"{work}/train_x.npy"), np.load(f"{work}/train_x.labels.npy")
Q, yq = np.load(f"{work}/test_x.npy"), np.load(f"{work}/test_x.labels.npy")
t = time.perf_counter()
m = LogisticRegression(C=1.0 / l2, max_iter=max_iter).fit(X, y)
peer = time.perf_counter() - t
ours = json.load(open(f"{work}/probe/summary.json"))
a = ours["train_seconds"]
s = ours["solver"]
print(f"train_head lbfgs probe ({ours['settings']['blas']}, {threads} threads): {a:7.2f} s  "
      f"test acc {100 * ours['selected_test']['accuracy']:.2f}%  ({s['iterations']} iterations, "
      f"{s['evaluations']} evaluations, stop: {s['stop']}, {s['columns']} columns)")
print(f"sklearn LogisticRegression(C={1 / l2:g}, lbfgs):   {peer:7.2f} s  "
      f"test acc {100 * m.score(Q, yq):.2f}%  ({int(m.n_iter_[0])} iterations; {len(X)} training "
      f"× dim {X.shape[1]}, {len(Q)} test images)")
print(f"ratio: {peer / a:.2f}x faster")
PY
