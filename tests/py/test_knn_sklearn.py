#!/usr/bin/env python3
"""train_head --knn against scikit-learn on the same vectors (`featcache export`).

Usage: test_knn_sklearn.py BUILD_DIR. Builds small caches from carbike64 with the real `extract`
(prepool-f32: the k-NN searches the scaled window means, or with --full-width the pooled vectors
expanded by the feature source; the exports are the pooled vectors), then checks:
  * uniform votes, one view per test image: the predicted class of every view equals
    KNeighborsClassifier(n_neighbors=K, metric="cosine").predict, and p_<class> its predict_proba;
  * uniform votes, three views: each image's p_<class> is the mean of its views' predict_proba and
    the prediction that mean's argmax, ties to the lowest class index;
  * weighted votes: the DINO rule e^{s/T} over sklearn's neighbours (s = 1 − cosine distance);
  * the summary's accuracy, balanced_accuracy and macro_f1 equal sklearn.metrics' on them;
  * K larger than the training vectors is refused naming both numbers.
sklearn runs in float64 on the exported float32 vectors (the exact reference); our similarities
are float32, so probabilities are compared to 1e-6 and classes exactly.
Exit 0 pass, 1 fail, 77 skip (carbike64 or sklearn missing; never under CI=true, which fails).
"""
import csv
import json
import os
import shutil
import sys
import tempfile
import time

from ctest_env import bin_dir, carbike64, copy_subset, run_tool, skip

BIN = bin_dir("test_knn_sklearn.py")
CARBIKE = carbike64()
try:
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, f1_score
    from sklearn.neighbors import KNeighborsClassifier
except ImportError as e:
    skip(f"{e} (scripts/install-deps.sh installs python3-sklearn)")


def run(*args, rc=0):
    return run_tool(BIN, *args, rc=rc)


def subset(split, per_class, dst):
    copy_subset(os.path.join(CARBIKE, split), per_class, dst)


def export(cache, prefix):
    run("featcache", "export", cache, prefix)
    with open(prefix + ".index.csv", newline="") as f:
        images = [int(r["image"]) for r in csv.DictReader(f)]
    return np.load(prefix + ".npy").astype(np.float64), np.load(prefix + ".labels.npy"), \
        np.array(images)


def read_predictions(run_dir, classes):
    with open(os.path.join(run_dir, "predictions.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    image = np.array([int(r["image"]) for r in rows])
    pred = np.array([classes.index(r["predicted"]) for r in rows])
    prob = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    return image, pred, prob


def lowest_argmax(p):
    """argmax with ties to the lowest index (np.argmax's rule), on exactly comparable scores."""
    return np.argmax(p, axis=1)


def main():
    tmp = tempfile.mkdtemp(prefix="vggcache-knn-")
    failures = []
    try:
        t = time.time()
        subset("train", 15, os.path.join(tmp, "d", "train"))
        subset("test", 10, os.path.join(tmp, "d", "test"))
        common = ["--weights", "random:1", "--size", "64", "--threads", "2", "--quiet"]
        tr, te1, te3 = (os.path.join(tmp, n) for n in ("tr", "te1", "te3"))
        run("extract", "--data", os.path.join(tmp, "d", "train"), "--crops", "2", "--out", tr,
            *common)
        run("extract", "--data", os.path.join(tmp, "d", "test"), "--crops", "1", "--out", te1,
            *common)
        run("extract", "--data", os.path.join(tmp, "d", "test"), "--crops", "3", "--out", te3,
            *common)
        X, y, _ = export(tr, os.path.join(tmp, "tr"))
        Q1, y1, img1 = export(te1, os.path.join(tmp, "te1"))
        Q3, y3, img3 = export(te3, os.path.join(tmp, "te3"))
        print(f"caches built and exported in {time.time() - t:.1f} s: train {X.shape}, "
              f"test {Q1.shape} and {Q3.shape}", flush=True)
        classes = json.loads(run("featcache", "info", tr))["classes"]

        def knn(test, out, *extra):
            run("train_head", "--train", tr, "--test", test, "--out", out, "--threads", "2",
                *extra)
            s = json.load(open(os.path.join(out, "summary.json")))
            assert s["method"] == "knn" and s["train_vectors"] == len(X), s
            return read_predictions(out, classes), s

        def check(name, fn):
            try:
                fn()
                print(f"PASS {name}", flush=True)
            except AssertionError as e:
                failures.append(name)
                print(f"FAIL {name}: {e}", flush=True)

        for k, extra in ((1, []), (4, []), (4, ["--full-width"]), (7, [])):
            def per_view(k=k, extra=extra):
                (image, pred, prob), s = knn(te1, os.path.join(tmp, f"u1-{k}-{len(extra)}"),
                                             "--knn", str(k), *extra)
                assert np.array_equal(image, img1)  # one view per image, in record order
                m = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(X, y)
                want = m.predict(Q1)
                bad = np.flatnonzero(want != pred)
                assert bad.size == 0, f"K {k}: views {bad.tolist()} differ: ours " \
                    f"{pred[bad].tolist()}, sklearn {want[bad].tolist()}"
                diff = np.abs(m.predict_proba(Q1) - prob).max()
                assert diff < 1e-6, f"K {k}: p_<class> differs from predict_proba by {diff}"
                acc = float(np.mean(want == y1))
                sel = s["selected_test"]
                assert abs(sel["accuracy"] - acc) < 1e-12, (sel, acc)
                bal = balanced_accuracy_score(y1, want)
                f1 = f1_score(y1, want, average="macro")
                assert abs(sel["balanced_accuracy"] - bal) < 1e-12, (sel, bal)
                assert abs(sel["macro_f1"] - f1) < 1e-12, (sel, f1)
                ties = int(np.sum(np.abs(prob[:, 0] - prob[:, 1]) < 1e-9))
                print(f"  K {k}: {len(pred)} views identical to sklearn ({ties} tied votes), "
                      f"accuracy {acc:.4f}")
            check(f"uniform K={k} {' '.join(extra) or '(window means)'}: every view's class "
                  "equals KNeighborsClassifier(metric=cosine)", per_view)

        def swept():
            out = os.path.join(tmp, "sweep")
            run("train_head", "--train", tr, "--test", te1, "--out", out, "--knn", "7,1,4")
            got = [r["k"] for r in json.load(open(os.path.join(out, "knn_sweep.json")))["results"]]
            assert got == [1, 4, 7], got
            for k in (1, 4, 7):
                _, pred, _ = read_predictions(os.path.join(out, f"k{k}"), classes)
                want = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(X, y).predict(Q1)
                assert np.array_equal(pred, want), (k, np.flatnonzero(pred != want))
        check("--knn 7,1,4 (one search): each K's classes equal KNeighborsClassifier's", swept)

        def averaged():
            k = 4  # even: ties between the two classes happen, and must go to class 0
            (image, pred, prob), _ = knn(te3, os.path.join(tmp, "u3"), "--knn", str(k))
            m = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(X, y)
            views = m.predict_proba(Q3)
            mean = np.stack([views[img3 == i].mean(axis=0) for i in image])
            assert np.abs(mean - prob).max() < 1e-6, np.abs(mean - prob).max()
            counts = np.stack([(views[img3 == i] * k).round().sum(axis=0) for i in image])
            want = lowest_argmax(counts)  # whole counts: exact ties
            ties = int(np.sum(counts[:, 0] == counts[:, 1]))
            assert np.array_equal(want, pred), np.flatnonzero(want != pred)
            print(f"  {len(image)} images × 3 views; {ties} tied images predicted "
                  f"{classes[0]} (lowest index)")
        check("uniform, 3 views: image scores = mean of the views' predict_proba", averaged)

        def weighted():
            k, temp = 7, 0.07
            (image, pred, prob), _ = knn(te3, os.path.join(tmp, "w3"), "--knn", str(k),
                                         "--knn-vote", "weighted", "--knn-temperature", str(temp))
            m = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(X, y)
            dist, idx = m.kneighbors(Q3)
            w = np.exp((1.0 - dist) / temp)
            votes = np.zeros((len(Q3), len(classes)))
            for c in range(len(classes)):
                votes[:, c] = (w * (y[idx] == c)).sum(axis=1)
            votes /= votes.sum(axis=1, keepdims=True)
            mean = np.stack([votes[img3 == i].mean(axis=0) for i in image])
            # e^{s/0.07} turns a float32 similarity error of ~1e-7 into ~1.5e-6 relative
            assert np.abs(mean - prob).max() < 1e-5, np.abs(mean - prob).max()
            assert np.array_equal(lowest_argmax(mean), pred)
            print(f"  max |p - DINO reference| {np.abs(mean - prob).max():.2e}")
        check("weighted (DINO e^{s/T}, T 0.07), 3 views: scores and classes", weighted)

        def too_big():
            out = run("train_head", "--train", tr, "--test", te1, "--out",
                      os.path.join(tmp, "big"), "--knn", str(len(X) + 1), rc=2)
            assert f"--knn {len(X) + 1} exceeds the {len(X)} training vectors" in out, out
        check("K above the number of training vectors is refused", too_big)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
