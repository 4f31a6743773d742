"""The PyTorch peer of bench/sweep_bench.sh: the same configurations trained by torch one after
another in one process, on vectors held in memory. Each configuration is one run of the recipe in
tests/py/ref_head_train.py (imported, not copied); the exported vectors are loaded once and
shared, and the same share of training images is held out (a split of numpy's, not train_head's:
this is a speed comparison) so every run trains on as many vectors as train_head's.

Usage: sweep_peer.py --train PREFIX --test PREFIX --grid "lr=1e-3,3e-4;hidden=128,256" \
           [--val-fraction 0.1] [ref_head_train.py flags for the unswept settings...]
Prints one JSON object: seconds (all configurations), and each configuration's settings, train
seconds and test accuracy."""
import argparse
import contextlib
import functools
import importlib.util
import io
import itertools
import json
import os
import sys
import time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "ref_head_train", os.path.join(here, "..", "tests", "py", "ref_head_train.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--grid", required=True)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    a, rest = ap.parse_known_args()

    keys, values = [], []
    for clause in a.grid.split(";"):
        k, v = clause.split("=")
        keys.append(k.strip())
        values.append([x.strip() for x in v.split(",")])

    load = functools.lru_cache(maxsize=None)(ref.load)

    def load_held_out(prefix):
        x, y, groups = load(prefix)
        if prefix != a.train or a.val_fraction <= 0:
            return x, y, groups
        keep = np.random.default_rng(0).permutation(len(groups))
        keep = sorted(keep[round(a.val_fraction * len(groups)):])
        return x, y, [groups[i] for i in keep]

    ref.load = load_held_out
    t0 = time.perf_counter()
    runs = []
    for combo in itertools.product(*values):
        argv = ["ref_head_train.py", "--train", a.train, "--test", a.test] + rest
        for k, v in zip(keys, combo):
            argv += ["--" + k, v]
        sys.argv = argv
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ref.main()
        r = json.loads(out.getvalue().strip().splitlines()[-1])
        runs.append({"settings": dict(zip(keys, combo)), "train_seconds": r["train_seconds"],
                     "test_accuracy": r["test_accuracy"], "threads": r["threads"]})
    print(json.dumps({"seconds": time.perf_counter() - t0, "configurations": len(runs),
                      "runs": runs}))


if __name__ == "__main__":
    main()
