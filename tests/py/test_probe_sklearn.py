#!/usr/bin/env python3
"""train_head --hidden 0 --optimizer lbfgs against scikit-learn on the same vectors.

Usage: test_probe_sklearn.py BUILD_DIR. Extracts a small, unbalanced carbike64 subset with the
real `extract` (random:1 weights, 64 px, one eval view per image: the probe's one vector per
image is then exactly the exported row; prepool-f32, so train_head solves on the scaled window
means and writes the full-width head), exports the pooled vectors (`featcache export`) and fits
LogisticRegression(C = 1 / l2) on them in float64. For each case (no weights; class_weight
"balanced") it checks:
  * test accuracy within 0.5 points of sklearn's;
  * our head's objective Σ w_i·loss_i + (l2/2)·‖W‖², evaluated here in float64 on the exported
    vectors with head.bin's weights, is at most sklearn's solution's (plus 1e-6 relative): both
    minimise the same strictly convex function, so neither may be worse than the other by more
    than the stopping tolerance;
  * the summary's class weights equal compute_class_weight("balanced").
Exit 0 pass, 1 fail, 77 skip (carbike64 or sklearn missing; never under CI=true, which fails).
"""
import json
import os
import shutil
import sys
import tempfile
import time

from ctest_env import ROOT, bin_dir, carbike64, copy_subset, run_tool, skip

sys.path.insert(0, os.path.join(ROOT, "python"))

BIN = bin_dir("test_probe_sklearn.py")
CARBIKE = carbike64()
try:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.class_weight import compute_class_weight
    import vggcache
except ImportError as e:
    skip(f"{e} (scripts/install-deps.sh installs python3-sklearn and python3-lmdb)")

L2 = 1.0  # sklearn's default C = 1; the probe is regularised, so the optimum is well defined


def run(*args, rc=0):
    return run_tool(BIN, *args, rc=rc)


def subset(split, counts, dst):
    copy_subset(os.path.join(CARBIKE, split), counts, dst)


def export(cache, prefix):
    run("featcache", "export", cache, prefix)
    return np.load(prefix + ".npy").astype(np.float64), np.load(prefix + ".labels.npy")


def objective(w, b, X, y, sw, l2):
    """Σ sw_i · BCE(σ(x_i·w + b), y_i) + (l2/2)‖w‖², in float64."""
    z = X @ w + b
    return float(np.sum(sw * np.logaddexp(0.0, -(2.0 * y - 1.0) * z)) + 0.5 * l2 * np.dot(w, w))


def main():
    tmp = tempfile.mkdtemp(prefix="vggcache-probe-")
    failures = []
    try:
        t = time.time()
        subset("train", (90, 40), os.path.join(tmp, "d", "train"))  # unbalanced on purpose
        subset("test", (60, 60), os.path.join(tmp, "d", "test"))
        common = ["--weights", "random:1", "--size", "64", "--eval", "--threads", "2", "--quiet"]
        tr, te = os.path.join(tmp, "tr"), os.path.join(tmp, "te")
        run("extract", "--data", os.path.join(tmp, "d", "train"), "--out", tr, *common)
        run("extract", "--data", os.path.join(tmp, "d", "test"), "--out", te, *common)
        X, y = export(tr, os.path.join(tmp, "tr"))
        Q, yq = export(te, os.path.join(tmp, "te"))
        print(f"caches built and exported in {time.time() - t:.1f} s: train {X.shape}, "
              f"test {Q.shape}", flush=True)

        def case(name, weight):
            out = os.path.join(tmp, name)
            t0 = time.time()
            run("train_head", "--train", tr, "--test", te, "--out", out, "--hidden", "0",
                "--optimizer", "lbfgs", "--l2", str(L2), "--tol", "1e-6", "--max-iter", "500",
                "--class-weight", weight, "--threads", "2", "--quiet")
            ours_s = time.time() - t0
            s = json.load(open(os.path.join(out, "summary.json")))
            h = vggcache.read_head(os.path.join(out, "head.bin"))
            assert h["hidden"] == 0 and h["w1"].shape == (1, X.shape[1]), h["w1"].shape
            w, b = h["w1"][0].astype(np.float64), float(h["b1"][0])
            t0 = time.time()
            m = LogisticRegression(C=1.0 / L2, max_iter=5000, tol=1e-8,
                                   class_weight=None if weight == "none" else "balanced")
            m.fit(X, y)
            peer_s = time.time() - t0
            cw = np.ones(2) if weight == "none" else \
                compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
            if weight != "none":
                assert np.allclose(s["class_weights"], cw, rtol=1e-6), (s["class_weights"], cw)
            sw = cw[y.astype(int)]
            ours_f = objective(w, b, X, y, sw, L2)
            peer_f = objective(m.coef_[0], float(m.intercept_[0]), X, y, sw, L2)
            acc_ours = s["selected_test"]["accuracy"]
            acc_peer = float(m.score(Q, yq))
            rel = np.linalg.norm(w - m.coef_[0]) / np.linalg.norm(m.coef_[0])
            print(f"  {name}: objective ours {ours_f:.10g} vs sklearn {peer_f:.10g}; test accuracy "
                  f"ours {acc_ours:.4f} vs sklearn {acc_peer:.4f}; |W - W_sk|/|W_sk| {rel:.2e}; "
                  f"{s['solver']['iterations']} iterations ({s['solver']['stop']}); "
                  f"{ours_s:.2f} s (whole command) vs sklearn fit {peer_s:.2f} s")
            assert s["solver"]["converged"], s["solver"]
            assert ours_f <= peer_f * (1 + 1e-6) + 1e-9, (ours_f, peer_f)
            assert abs(acc_ours - acc_peer) <= 0.005 + 1e-12, (acc_ours, acc_peer)

        for name, weight in (("plain", "none"), ("balanced", "balanced")):
            try:
                case(name, weight)
                print(f"PASS {name}", flush=True)
            except AssertionError as e:
                failures.append(name)
                print(f"FAIL {name}: {e}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
