#!/usr/bin/env bash
# Benchmark of train_head --knn against scikit-learn's KNeighborsClassifier(metric="cosine",
# algorithm="brute") on the same vectors, in the same run: carbike64 features (D = 25088), every
# training crop (2 per image) searched for each test image, K 20, uniform votes, THREADS threads.
# Both sides time the search alone (ours: summary.json's train_seconds, reading the cache
# included; sklearn: fit + predict on arrays already in memory, float32 as exported) and must
# agree on every prediction. Both caches are prepool-f32 (64 px), so train_head searches the
# 4,608 scaled window means (README: k-NN); FULL_WIDTH=1 adds --full-width (the 25,088-d pooled
# vectors, as sklearn gets them). Not a unit test. Usage: bench/knn_bench.sh [BUILD_DIR] [WORK_DIR]
#   WORK_DIR  where features are extracted once and reused (default: /tmp/vggcache-knn-bench)
# Env: VGGCACHE_CARBIKE, VGGCACHE_PYTHON, THREADS (default 2), K (default 20), FULL_WIDTH.
. "$(dirname "$0")/common.sh"
work="${2:-/tmp/vggcache-knn-bench}"
k="${K:-20}"
mkdir -p "$work"
bench_features "$work"

"$build/bin/train_head" --train "$work/train" --test "$work/test" --out "$work/run" --knn "$k" \
  --threads "$threads" ${FULL_WIDTH:+--full-width} > "$work/train_head.log"
OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" "$py" - "$work" "$k" "$threads" <<'PY'
import csv, json, sys, time
import numpy as np
from sklearn.neighbors import KNeighborsClassifier
work, k, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X, y = np.load(f"{work}/train_x.npy"), np.load(f"{work}/train_x.labels.npy")
Q = np.load(f"{work}/test_x.npy")
t = time.perf_counter()
m = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=threads)
pred = m.fit(X, y).predict(Q)
peer = time.perf_counter() - t
ours = json.load(open(f"{work}/run/summary.json"))
classes = ours["classes"]
with open(f"{work}/run/predictions.csv", newline="") as f:
    mine = np.array([classes.index(r["predicted"]) for r in csv.DictReader(f)])
same = int(np.sum(mine == pred))
a = ours["train_seconds"]
print(f"train_head --knn {k} ({ours['settings']['blas']}, {threads} threads): {a:7.2f} s  "
      f"test acc {100 * ours['selected_test']['accuracy']:.2f}%")
print(f"sklearn KNeighborsClassifier (n_jobs {threads}):        {peer:7.2f} s  "
      f"({len(X)} training × {len(Q)} test vectors, dim {X.shape[1]})")
print(f"same prediction on {same} of {len(Q)} test images; ratio: {peer / a:.2f}x faster")
PY
