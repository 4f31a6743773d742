#!/usr/bin/env python3
"""Tests of the pure-Python reader (python/vggcache) against the C++ tools.

Usage: test_python_reader.py BUILD_DIR. Builds small caches from carbike64 with the real
`extract` (prepool-f32, raw-f32, a pool4 cut, a two-shard set), then checks that the reader gives exactly what
`featcache export` writes (vectors bit for bit, labels, the index CSV), that damaged records and
unknown/incomplete/truncated caches are refused naming the problem, that `head_module` reproduces
`train_head`'s predictions.csv, and that VggCacheDataset yields the reader's vectors.
Exit 0 pass, 1 fail, 77 skip (carbike64 or python3-lmdb missing; never under CI=true, which fails).
Prints a final line "N passed, M failed".
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

from ctest_env import ROOT, bin_dir, carbike64, skip

sys.path.insert(0, os.path.join(ROOT, "python"))

BIN = bin_dir("test_python_reader.py")
CARBIKE = carbike64(counted=True)
try:
    import lmdb  # noqa: F401
except ImportError:
    skip("python3-lmdb is not installed (scripts/install-deps.sh installs it)", counted=True)

import numpy as np  # noqa: E402

import vggcache  # noqa: E402
from vggcache import crc as vcrc  # noqa: E402

RESULTS = []


def check(name):
    def wrap(fn):
        t = time.time()
        try:
            fn()
            RESULTS.append((name, None))
            print(f"PASS {name} ({time.time() - t:.1f} s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
            RESULTS.append((name, traceback.format_exc()))
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        return fn
    return wrap


def run(*args):
    p = subprocess.run([os.path.join(BIN, args[0]), *args[1:]], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def expect_raises(exc, fn, *needles):
    try:
        fn()
    except exc as e:
        msg = str(e)
        for n in needles:
            assert n in msg, f"{exc.__name__} message lacks {n!r}: {msg}"
        return msg
    raise AssertionError(f"no {exc.__name__} raised")


def read_export(prefix):
    with open(prefix + ".index.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["record", "image", "path", "crop", "label", "x", "y", "w", "h", "flip"]
    return np.load(prefix + ".npy"), np.load(prefix + ".labels.npy"), rows[1:]


def same_as_export(path, prefix):
    """The reader over `path` equals `featcache export path prefix`, element for element."""
    run("featcache", "export", path, prefix)
    X, y, rows = read_export(prefix)
    with vggcache.open_cache(path) as c:
        V = c.vectors()
        assert V.dtype == np.float32 and X.dtype == np.float32 and V.shape == X.shape, \
            (V.shape, X.shape)
        assert np.array_equal(V.view(np.uint32), X.view(np.uint32)), \
            f"{path}: {(V.view(np.uint32) != X.view(np.uint32)).sum()} floats differ in bits"
        L = c.labels()
        assert L.dtype == np.int64 and np.array_equal(L, y)
        assert len(c) == len(rows) == len(X)
        i = 0
        with c.reader() as r:
            for rec in r:
                want = rows[i]
                got = [str(i), str(rec.image), rec.path, str(rec.crop), str(rec.label),
                       str(rec.box.x), str(rec.box.y), str(rec.box.w), str(rec.box.h),
                       "1" if rec.box.flipped else "0"]
                assert got == want, (got, want)
                assert np.array_equal(rec.vector(), X[i])
                i += 1
        assert i == len(rows)
        # random access and slices agree with the sequential read
        for k in (0, len(X) // 3, len(X) - 1):
            assert np.array_equal(c.vector(k), X[k])
        assert np.array_equal(c.vectors(3, 11), X[3:11])
        assert np.array_equal(c.vectors(len(X) - 14), X[-14:])  # a set: seeks into the last shard
        got = np.concatenate([v for _, v, _ in c.batches(size=7, start=5)])
        assert np.array_equal(got, X[5:])
        idx = c.index()
        assert [str(v) for v in idx["image"]] == [r[1] for r in rows]
        info = json.loads(run("featcache", "info", path))
        assert info["records"] == len(c) and info["codec"] == c.codec and info["dim"] == c.dim
        assert info["classes"] == c.classes
        assert info["feature_fingerprint"] == c.feature_fingerprint
    return X, y


def main():
    tmp = tempfile.mkdtemp(prefix="vggcache-py-")
    try:
        body(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = sum(1 for _, e in RESULTS if e)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed or not RESULTS else 0


def body(tmp):
    data = os.path.join(tmp, "data", "train")
    for cls in sorted(os.listdir(os.path.join(CARBIKE, "train"))):
        src = os.path.join(CARBIKE, "train", cls)
        os.makedirs(os.path.join(data, cls))
        for f in sorted(os.listdir(src))[:20]:
            shutil.copy(os.path.join(src, f), os.path.join(data, cls, f))
    common = ["--data", data, "--weights", "random:1", "--size", "64", "--crops", "2",
              "--threads", "2", "--quiet"]
    pp, raw = os.path.join(tmp, "pp"), os.path.join(tmp, "raw")
    shards = os.path.join(tmp, "set")
    t = time.time()
    run("extract", *common, "--out", pp)
    run("extract", *common, "--out", raw, "--codec", "raw-f32")
    pool4 = os.path.join(tmp, "pool4")
    run("extract", *common, "--out", pool4, "--cut", "pool4")
    for i in range(2):
        run("extract", *common, "--out", os.path.join(shards, f"shard-{i}"), "--shard", f"{i}/2")
    run("featcache", "make-set", shards, os.path.join(shards, "shard-1"),
        os.path.join(shards, "shard-0"))
    print(f"caches built in {time.time() - t:.1f} s", flush=True)
    ex = os.path.join(tmp, "export")
    os.makedirs(ex)
    X = {}

    @check("prepool-f32 cache equals featcache export (bit for bit)")
    def _():
        with vggcache.open_cache(pp) as c:
            assert c.codec == "prepool-f32" and c.dim == 25088 and c.prepool_shape == (512, 2, 2)
            assert c.meta["complete"] and c.classes == ["bicycle", "car"] and len(c) == 80
        X["pp"] = same_as_export(pp, os.path.join(ex, "pp"))

    @check("raw-f32 cache equals featcache export (bit for bit)")
    def _():
        with vggcache.open_cache(raw) as c:
            assert c.codec == "raw-f32" and c.prepool_shape is None
            with c.reader() as r:  # raw payloads are zero-copy views of the memory map
                rec = next(iter(r))
                assert rec.vector() is rec.payload and not rec.payload.flags.writeable
                assert not rec.payload.flags.owndata
        X["raw"] = same_as_export(raw, os.path.join(ex, "raw"))

    @check("pool4 cache (extract --cut pool4) equals featcache export; same fingerprint as C++")
    def _():
        with vggcache.open_cache(pool4) as c:
            assert c.cut == "pool4" and c.cut_shape == (512, 4, 4) and c.dim == 8192
            assert c.codec == "raw-f32" and len(c) == 80
        with vggcache.open_cache(raw) as c:
            assert c.cut == "pool5" and c.cut_shape is None
        same_as_export(pool4, os.path.join(ex, "pool4"))  # compares the fingerprints too

    @check("shard set reads as one cache, equal to featcache export of the set")
    def _():
        with vggcache.open_cache(shards) as c:
            assert c.is_shard_set and "shard" not in c.meta and c.meta["extra"]["shards"] == 2
            assert len(c) == 80 and c.meta["records"] == 80
            assert [p.first for p in c._parts] == [0, 32]  # both shards hold records
        same_as_export(shards, os.path.join(ex, "set"))
        one = vggcache.open_cache(os.path.join(shards, "shard-1"))  # a shard alone is a cache
        assert one.keys()[0][0] == 32 and len(one) == 16
        one.close()

    @check("prepool expansion matches torch adaptive_avg_pool2d; CRC backends agree")
    def _():
        import torch
        rng = np.random.default_rng(0)
        for h, w in ((2, 2), (3, 3), (4, 4), (3, 5), (7, 7), (9, 10)):
            z = rng.standard_normal((3, 8, h, w)).astype(np.float32)
            got = vggcache.expand_prepool(z.reshape(3, -1), (8, h, w))
            want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(z), 7).numpy()
            assert got.shape == (3, 8 * 49)
            assert np.allclose(got, want.reshape(3, -1), rtol=3e-7, atol=1e-7), (h, w)
        assert vcrc.crc32c(b"123456789") == vcrc.crc32c_numpy(b"123456789") == 0xE3069283
        for n in (0, 3, 64, 1000, 8256, 100416):
            b = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            assert vcrc.crc32c(b, 7) == vcrc.crc32c_numpy(b, 7), n
        print(f"  crc32c backend: {vcrc.BACKEND}")

    @check("a flipped payload byte is refused naming the cache and the record")
    def _():
        bad = os.path.join(tmp, "bad")
        shutil.copytree(pp, bad)
        with vggcache.open_cache(bad) as c, c.reader() as r:
            payload = bytes(r.get(7, 1).payload)
        with open(os.path.join(bad, "data.mdb"), "r+b") as f:
            blob = f.read()
            off = blob.find(payload)
            assert off >= 0 and blob.find(payload, off + 1) < 0
            f.seek(off + 1000)
            f.write(bytes([blob[off + 1000] ^ 0x10]))
        c = vggcache.open_cache(bad)
        msg = expect_raises(vggcache.CorruptError, c.vectors, bad, "record (7, 1)", "checksum")
        print(f"  {msg}")
        expect_raises(vggcache.CorruptError, lambda: c.get(7, 1), "record (7, 1)")
        assert np.array_equal(c.get(7, 0), X["pp"][0][14])  # other records still read
        c.close()
        saved = vcrc.crc32c  # the pure-NumPy CRC finds it too, and passes the intact records
        try:
            vcrc.crc32c = vcrc.crc32c_numpy
            with vggcache.open_cache(bad) as c:
                expect_raises(vggcache.CorruptError, c.vectors, "record (7, 1)", "checksum")
            with vggcache.open_cache(pp) as c:
                assert np.array_equal(c.vectors(), X["pp"][0])
        finally:
            vcrc.crc32c = saved
        with vggcache.open_cache(bad, verify=False) as c:  # unchecked, the damage reads through
            assert not np.array_equal(c.get(7, 1), X["pp"][0][15])
        p = subprocess.run([os.path.join(BIN, "featcache"), "verify", bad], capture_output=True)
        assert p.returncode != 0  # the C++ reader agrees the record is damaged

    @check("unknown schema/codec, incomplete, truncated and non-caches are refused")
    def _():
        def with_meta(name, **changes):
            d = os.path.join(tmp, name)
            shutil.copytree(pp, d)
            env = lmdb.open(d, max_dbs=4)
            db = env.open_db(b"meta")
            with env.begin(write=True, db=db) as txn:
                m = json.loads(bytes(txn.get(b"meta")))
                m.update(changes)
                txn.put(b"meta", json.dumps(m).encode())
            env.close()
            return d

        expect_raises(vggcache.SchemaError, lambda: vggcache.open_cache(
            with_meta("v99", schema_version=99)), "schema version 99")
        expect_raises(vggcache.SchemaError, lambda: vggcache.open_cache(
            with_meta("codec", codec="zstd-f16")), "unknown codec 'zstd-f16'")
        inc = with_meta("inc", complete=False)
        expect_raises(vggcache.IncompleteError, lambda: vggcache.open_cache(inc), inc,
                      "incomplete")
        with vggcache.open_cache(inc, allow_incomplete=True) as c:
            assert len(c) == 80
        trunc = os.path.join(tmp, "trunc")
        shutil.copytree(pp, trunc)
        with open(os.path.join(trunc, "data.mdb"), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(trunc, "data.mdb")) // 2)
        expect_raises(vggcache.CorruptError, lambda: vggcache.open_cache(trunc), "truncated")
        expect_raises(vggcache.NotACacheError, lambda: vggcache.open_cache(data), "no data.mdb")
        expect_raises(vggcache.NotACacheError,
                      lambda: vggcache.open_cache(os.path.join(tmp, "nope")), "no such directory")

    @check("schema 3's binary image list reads as schema 2's JSON list did; damage is refused")
    def _():
        from vggcache import image_list as vil
        with vggcache.open_cache(pp) as c:
            assert c.meta["schema_version"] == 3
            meta3, paths3, V3 = c.meta, c.image_paths, c.vectors()
        env = lmdb.open(pp, max_dbs=4, readonly=True, lock=False)
        with env.begin(db=env.open_db(b"meta", create=False)) as txn:
            raw = bytes(txn.get(b"images"))
        env.close()
        assert raw[:4] == b"VGIL" and len(raw) < 45 * 40, len(raw)  # ~40 bytes an image
        # The same cache as schema 2 stored it: the list as JSON (nlohmann's layout), version 2.
        old = os.path.join(tmp, "schema2")
        shutil.copytree(pp, old)
        env = lmdb.open(old, max_dbs=4)
        with env.begin(write=True, db=env.open_db(b"meta")) as txn:
            m = json.loads(bytes(txn.get(b"meta")))
            m["schema_version"] = 2
            txn.put(b"meta", json.dumps(m, separators=(",", ":"), sort_keys=True).encode())
            txn.put(b"images", json.dumps(vil.decode_image_list(raw, old), sort_keys=True,
                                          separators=(",", ":")).encode())
        env.close()
        info = json.loads(run("featcache", "info", old))  # the C++ reader agrees
        assert info["schema_version"] == 2 and info["images"] == 40
        with vggcache.open_cache(old) as c:
            assert c.meta["schema_version"] == 2
            assert c.meta["images"] == meta3["images"] and c.image_paths == paths3
            assert np.array_equal(c.vectors(), V3)
        assert paths3[0] == "bicycle/" + sorted(os.listdir(os.path.join(data, "bicycle")))[0]
        # Every image of the list decodes to what extract scanned: path, size and SHA-256.
        import hashlib
        for e in meta3["images"]:
            with open(os.path.join(data, e["path"]), "rb") as f:
                blob = f.read()
            assert e["bytes"] == len(blob) and e["sha256"] == hashlib.sha256(blob).hexdigest()
        # A flipped byte in the list fails its checksum, in both readers, naming the cache.
        bad = os.path.join(tmp, "badlist")
        shutil.copytree(pp, bad)
        env = lmdb.open(bad, max_dbs=4)
        with env.begin(write=True, db=env.open_db(b"meta")) as txn:
            txn.put(b"images", raw[:20] + bytes([raw[20] ^ 1]) + raw[21:])
        env.close()
        expect_raises(vggcache.CorruptError, lambda: vggcache.open_cache(bad), bad,
                      "image list", "checksum mismatch")
        p = subprocess.run([os.path.join(BIN, "featcache"), "info", bad], capture_output=True,
                           text=True)
        assert p.returncode != 0 and "image list is malformed: checksum mismatch" in p.stderr, \
            p.stderr
        # One entry cut short (a valid checksum over it): refused as running past the end.
        cut = b"VGIL\x01\x01\x00\x00\x08abcd"
        cut += vcrc.crc32c(cut).to_bytes(4, "little")
        expect_raises(vggcache.CorruptError, lambda: vil.decode_image_list(cut, "x"),
                      "runs past the end")

    runs = {}

    def train(name, train_cache, test_cache, *extra):
        out = os.path.join(tmp, name)
        run("train_head", "--train", train_cache, "--test", test_cache, "--out", out,
            "--epochs", "2", "--hidden", "16", "--threads", "2", "--quiet", *extra)
        runs[name] = (out, test_cache)

    # worst: the largest difference allowed from predictions.csv. 1e-6 for a head alone (both
    # sides compute the same float32 head); a tuned block 5 adds torch's float32 convolutions
    # against the engine's, so the 1e-5 for an exported model against predict applies.
    def check_head(name, standardized, probe=False, tuned=False, tolerance=1e-6):
        import torch
        out, test_cache = runs[name]
        h = vggcache.read_head(os.path.join(out, "head.bin"))
        with open(os.path.join(out, "head.bin"), "rb") as f:
            version = int.from_bytes(f.read(12)[8:], "little")
        assert version == (2 if probe or tuned else 1), version  # 1 unless the head needs 2
        assert h["block5"] == tuned
        if tuned:
            assert h["features.24.weight"].shape == (512, 512, 3, 3)
            assert h["features.28.bias"].shape == (512,)
        if probe:
            assert h["hidden"] == 0 and "w2" not in h and "b2" not in h
            assert h["w1"].shape == (1, 25088) and h["b1"].shape == (1,)
        else:
            assert h["w1"].shape == (16, 25088) and h["b1"].shape == (16,)
            assert h["w2"].shape == (1, 16) and h["b2"].shape == (1,)
        assert h["output"] == "sigmoid" and h["classes"] == ["bicycle", "car"]
        assert h["standardize"] == standardized
        assert ("mean" in h) == ("std" in h) == standardized
        if standardized:
            assert h["mean"].shape == h["std"].shape == (25088,)
        with vggcache.open_cache(test_cache) as c:
            assert h["feature_fingerprint"] == c.feature_fingerprint
            V, L = c.vectors(), c.labels()
            keys = c.keys()
        module = vggcache.head_module(os.path.join(out, "head.bin"))
        assert not module.training
        with torch.no_grad():
            P = module(torch.from_numpy(V)).numpy()
        assert P.shape == (len(V), 2)
        images = sorted({k[0] for k in keys})
        with open(os.path.join(out, "predictions.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["image"]) for r in rows] == images
        worst = 0.0
        for r in rows:
            views = [i for i, k in enumerate(keys) if k[0] == int(r["image"])]
            avg = P[views].sum(axis=0, dtype=np.float32) / np.float32(len(views))
            want = np.array([float(r["p_bicycle"]), float(r["p_car"])])
            worst = max(worst, float(np.abs(avg - want).max()))
            assert r["label"] == h["classes"][int(L[views[0]])]
            assert r["predicted"] == h["classes"][1 if avg[1] > 0.5 else 0]
        print(f"  worst |p - predictions.csv| = {worst:.3g}")
        assert worst <= tolerance, worst

    @check("head_module reproduces predictions.csv (no standardisation)")
    def _():
        train("run_plain", pp, raw)
        check_head("run_plain", False)

    @check("head_module reproduces predictions.csv (--standardize)")
    def _():
        train("run_std", raw, pp, "--standardize")
        check_head("run_std", True)

    @check("head_module reproduces predictions.csv (a probe: --hidden 0 --optimizer lbfgs)")
    def _():
        out = os.path.join(tmp, "run_probe")  # L-BFGS takes no --epochs: train() gives them
        run("train_head", "--train", pp, "--test", raw, "--out", out, "--hidden", "0",
            "--optimizer", "lbfgs", "--standardize", "--max-iter", "30", "--threads", "2",
            "--quiet")
        runs["run_probe"] = (out, raw)
        check_head("run_probe", True, probe=True)

    @check("head_module of a head fine-tuned with block 5 (pool4 maps in) reproduces predictions.csv")
    def _():
        import collections
        import torch
        import torchvision
        # Fine-tuning reads block 5 from a weights file: torchvision's own random init, seeded.
        torch.manual_seed(7)
        sd = collections.OrderedDict(
            ("features." + k, v) for k, v in torchvision.models.vgg16().features.state_dict().items())
        weights = os.path.join(tmp, "vgg16_features.pth")
        torch.save(sd, weights)
        cache = os.path.join(tmp, "pool4_file")
        run("extract", *[weights if a == "random:1" else a for a in common], "--out", cache,
            "--cut", "pool4")
        train("run_tuned", cache, cache, "--weights", weights, "--lr-block5", "1e-3", "--batch", "8")
        check_head("run_tuned", False, tuned=True, tolerance=1e-5)

    @check("a damaged head.bin is refused")
    def _():
        src = os.path.join(runs["run_plain"][0], "head.bin")
        bad = os.path.join(tmp, "bad_head.bin")
        blob = bytearray(open(src, "rb").read())
        blob[len(blob) // 2] ^= 1
        open(bad, "wb").write(blob)
        expect_raises(vggcache.CorruptError, lambda: vggcache.read_head(bad), "checksum")
        blob = bytearray(open(src, "rb").read())
        blob[8] = 3
        open(bad, "wb").write(blob)
        expect_raises(vggcache.SchemaError, lambda: vggcache.read_head(bad), "version 3")

    @check("VggCacheDataset yields the reader's vectors")
    def _():
        import torch
        V = X["pp"][0]
        ds = vggcache.VggCacheDataset(pp)
        assert len(ds) == 80
        for i in (0, 41, 79):
            v, y = ds[i]
            assert v.dtype == torch.float32 and v.shape == (25088,)
            assert np.array_equal(v.numpy(), V[i]) and y == int(X["pp"][1][i])
        loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2)
        got = torch.cat([b for b, _ in loader]).numpy()
        assert np.array_equal(got, V)
        ds1 = vggcache.VggCacheDataset(raw, crop=1)
        assert len(ds1) == 40 and np.array_equal(ds1[3][0].numpy(), X["raw"][0][7])
        dsr = vggcache.VggCacheDataset(pp, crop="random", generator=torch.Generator().manual_seed(0))
        assert len(dsr) == 40
        seen = set()
        for i in range(40):
            v, y = dsr[i]
            k = [j for j in (2 * i, 2 * i + 1) if np.array_equal(v.numpy(), V[j])]
            assert k and y == int(X["pp"][1][k[0]])
            seen.add(k[0] % 2)
        assert seen == {0, 1}


if __name__ == "__main__":
    sys.exit(main())
