"""Reading a vggcache feature cache, or a shard set as the one cache its shards make up.

Layout (README "The cache format"): CACHE/ is an LMDB environment with two sub-databases:
``records`` (key: big-endian image ‖ crop; value: 64-byte header ‖ payload, see records.py) and
``meta`` (key ``meta``: the JSON metadata, see meta.py). A shard set is a directory with
``shards.json`` listing shard caches; each record is read from the shard that holds its image.

Like the C++ reader, ``open_cache`` opens read-only, clears stale reader slots, refuses truncated
files, unknown schema versions and codecs, and incomplete caches unless ``allow_incomplete``;
every record read is checked (CRC-32C, key, codec, size) unless ``verify=False``.

Zero-copy payloads: records read inside a read transaction (``with cache.reader() as r``, or
while a ``cache.records()`` iterator runs) carry ``payload`` as a NumPy view straight into
LMDB's memory map. Such a view is valid only while that transaction is open: after it ends the
pages may be reused by a writer, and after ``cache.close()`` they are unmapped (touching the view
then crashes the process). Call ``.copy()`` (on the array or the Record) to keep data longer.
Everything else (``vector``, ``vectors``, ``labels``, ``batches``) returns arrays that own their
memory.
"""
import bisect
import errno
import os

import lmdb
import numpy as np

from . import meta as _meta
from .errors import CorruptError, IncompleteError, NotACacheError, VggCacheError
from .prepool import expand_prepool
from .records import (CODEC_IDS, Record, decode_key, decode_record, encode_key, peek_key,
                      record_bytes)

INDEX_DTYPE = np.dtype([("image", "<u4"), ("crop", "<u4"), ("label", "<i4"), ("x", "<i4"),
                        ("y", "<i4"), ("w", "<i4"), ("h", "<i4"), ("flipped", "?")])


class _Part:
    """One LMDB environment: the whole cache, or one shard of a set."""

    def __init__(self, path):
        self.path = path
        self.env = _open_env(path)
        try:
            self.records_db = self.env.open_db(b"records", create=False)
            self.meta_db = self.env.open_db(b"meta", create=False)
        except lmdb.Error:
            self.env.close()
            raise NotACacheError(f"{path}: not a vggcache cache (LMDB without its databases)") \
                from None
        with self.env.begin(db=self.meta_db) as txn:
            raw = txn.get(b"meta")
            images_raw = txn.get(b"images")
        if raw is None:
            self.env.close()
            raise NotACacheError(f"{path}: not a vggcache cache (no metadata)")
        try:
            self.meta = _meta.parse_meta(raw, path, images_raw)
        except VggCacheError:
            self.env.close()
            raise
        self.first = self.meta["shard"]["first"] if "shard" in self.meta else 0
        # Schema 2 stores runs of records, each padded to 16 bytes (common/cache.h).
        self.runs = self.meta["schema_version"] >= 2
        self.rec_bytes = record_bytes(CODEC_IDS[self.meta["codec"]], self.meta["payload_floats"])
        self.stride = (self.rec_bytes + 15) // 16 * 16 if self.runs else self.rec_bytes

    def count_in(self, key, value):
        """Records in a value: one, or a run of whole strides."""
        if not self.runs:
            return 1
        if len(value) == 0 or len(value) % self.stride:
            image, crop = decode_key(key)
            raise CorruptError(f"{self.path}: run ({image}, {crop}) of {len(value)} bytes is not a "
                               f"whole number of {self.stride}-byte records")
        return len(value) // self.stride

    def record_at(self, value, i):
        """Record i of a value (a zero-copy slice)."""
        if not self.runs:
            return value
        return memoryview(value)[i * self.stride:i * self.stride + self.rec_bytes]


def _open_env(path):
    if not os.path.isdir(path):
        raise NotACacheError(f"{path}: not a vggcache cache (no such directory)")
    data = os.path.join(path, "data.mdb")
    if not os.path.exists(data):
        raise NotACacheError(f"{path}: not a vggcache cache (no data.mdb)")
    kw = dict(readonly=True, create=False, subdir=True, max_dbs=4)
    try:
        env = lmdb.open(path, lock=True, **kw)
    except lmdb.Error as e:
        # A cache on a read-only medium cannot take reader slots in lock.mdb: read it lock-free
        # (safe as long as nothing writes to it meanwhile).
        if getattr(e, "errno", None) not in (errno.EACCES, errno.EROFS, errno.EPERM) and \
                "Permission denied" not in str(e) and "Read-only" not in str(e):
            raise NotACacheError(f"{path}: not a readable vggcache cache: {e}") from None
        try:
            env = lmdb.open(path, lock=False, **kw)
        except lmdb.Error as e2:
            raise NotACacheError(f"{path}: not a readable vggcache cache: {e2}") from None
    # A data file shorter than the pages its meta page claims would fault (SIGBUS) on the first
    # read through the map; refuse it here, as the C++ reader does.
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    have = os.path.getsize(data)
    if have < need:
        env.close()
        raise CorruptError(f"{path}: data.mdb is truncated ({have} bytes, its pages need {need})")
    try:
        env.reader_check()  # clears the slots of readers that died
    except lmdb.Error:
        pass
    return env


class Cache:
    """A cache directory or shard set opened for reading (see ``open_cache``).

    Attributes: ``path``, ``meta`` (the parsed metadata; a set's combined metadata), ``classes``,
    ``dim`` (25088), ``codec`` (``"raw-f32"`` / ``"prepool-f32"``), ``payload_floats``,
    ``prepool_shape`` (``(C, h, w)`` or None), ``cut`` (``"pool5"``, or ``"pool4"``: records are
    block 5's input maps, ``vectors()`` rows reshape to ``cut_shape`` = ``(C, h, w)``; None for
    pool5), ``image_paths`` (relative paths, image order),
    ``is_shard_set``, ``verify``, ``feature_fingerprint`` (what a head trained on it records). ``len(cache)`` is the number of records stored.
    """

    def __init__(self, path, verify=True, allow_incomplete=False):
        self.path = os.fspath(path)
        self.verify = bool(verify)
        self.allow_incomplete = bool(allow_incomplete)
        self._parts = []
        self._keys = None
        self.is_shard_set = _meta.is_shard_set(self.path)
        try:
            if self.is_shard_set:
                self._open_set()
            else:
                part = _Part(self.path)
                self._parts.append(part)
                self.meta = part.meta
                m = self.meta
                if not m["complete"] and not self.allow_incomplete:
                    raise IncompleteError(
                        f"{self.path}: cache is incomplete ({m['records']} records, "
                        f"{m['next_image']} of {len(m['images'])} images done); rerun extract "
                        "with the same command to finish it (or pass allow_incomplete=True)")
        except BaseException:
            self.close()
            raise
        m = self.meta
        self.classes = list(m["classes"])
        self.dim = int(m["dim"])
        self.codec = m["codec"]
        self._codec_id = CODEC_IDS[self.codec]
        self.payload_floats = int(m["payload_floats"])
        self.prepool_shape = (tuple(m["prepool_shape"]) if self.codec.startswith("prepool-")
                              else None)
        self.cut = m.get("cut", "pool5")
        self.cut_shape = tuple(m["cut_shape"]) if self.cut == "pool4" else None
        self.image_paths = [_meta.image_path(e) for e in m["images"]]
        self.complete = bool(m["complete"])
        self.feature_fingerprint = _meta.feature_fingerprint(m)
        self._firsts = [p.first for p in self._parts]
        if self.prepool_shape is None:
            self._expand = None
        else:
            shape = self.prepool_shape
            self._expand = lambda z: expand_prepool(z, shape)

    def _open_set(self):
        dirs = _meta.read_shard_manifest(self.path)
        parts = []
        try:
            for d in dirs:
                try:
                    parts.append(_Part(d))
                except VggCacheError as e:
                    raise type(e)(f"shard set {self.path}: {e}") from None
            try:
                order = _meta.check_shards(dirs, [p.meta for p in parts],
                                           not self.allow_incomplete)
            except VggCacheError as e:
                raise type(e)(f"shard set {self.path}: {e}") from None
        except BaseException:
            for p in parts:
                p.env.close()
            raise
        self._parts = [parts[i] for i in order]
        self.meta = _meta.combined_meta([p.meta for p in self._parts])

    # -- lifetime ----------------------------------------------------------------------------
    def close(self):
        """Closes the LMDB environments. Payload views handed out earlier become invalid."""
        for p in self._parts:
            p.env.close()
        self._parts = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"Cache({self.path!r}, codec={self.codec!r}, records={len(self)}, "
                f"images={len(self.image_paths)}, classes={self.classes})")

    # -- reading -----------------------------------------------------------------------------
    def reader(self):
        """A read transaction (a consistent snapshot) over every part; use as a context manager.
        Records it yields hold zero-copy payload views, valid until it is closed."""
        return Reader(self)

    def records(self):
        """Iterates the records in key order (image, then crop) inside one read transaction,
        which stays open until the iteration ends (or the generator is closed)."""
        with self.reader() as r:
            yield from r

    __iter__ = records

    def __len__(self):
        with self.reader() as r:
            return r.count()

    def keys(self):
        """``[(image, crop), ...]`` in key order (read once, then kept)."""
        if self._keys is None:
            with self.reader() as r:
                self._keys = r.keys()
        return self._keys

    def crops_by_image(self):
        """``{image: [crop, ...]}`` for every image with records, in key order."""
        out = {}
        for image, crop in self.keys():
            out.setdefault(image, []).append(crop)
        return out

    def vector(self, i):
        """The dim-float vector of record ``i`` (key order), as a new float32 array."""
        image, crop = self.keys()[i]
        return self.get(image, crop)

    def get(self, image, crop):
        """The vector of record (image, crop) as a new float32 array; KeyError when absent."""
        with self.reader() as r:
            rec = r.get(image, crop)
            if rec is None:
                raise KeyError(f"{self.path}: no record ({image}, {crop})")
            v = rec.vector()
            return v.copy() if v is rec.payload else v

    def batches(self, size=1024, start=0, stop=None):
        """Yields ``(first, vectors, labels)`` for consecutive records [start, stop) in key
        order, ``size`` at a time: vectors ``(n, dim)`` float32 and labels ``(n,)`` int64, both
        owning their memory. Prepool maps are expanded a batch at a time (same bits as one by
        one)."""
        stop = float("inf") if stop is None else stop
        with self.reader() as r:
            it = r.records_from(start)
            first = start
            while first < stop:
                n = int(min(size, stop - first))
                vecs = np.empty((n, self.dim), dtype=np.float32)
                labels = np.empty(n, dtype=np.int64)
                k = self._fill(it, vecs, labels)
                if k == 0:
                    return
                yield first, vecs[:k], labels[:k]
                first += k
                if k < n:
                    return

    def _fill(self, it, vecs, labels):
        """Reads up to len(vecs) records from ``it`` into vecs/labels; returns how many."""
        n = len(vecs)
        maps = None if self._expand is None else np.empty((min(n, 256), self.payload_floats),
                                                          dtype=np.float32)
        k = 0
        while k < n:
            m = 0
            target = vecs if maps is None else maps
            limit = n - k if maps is None else min(len(maps), n - k)
            for rec in it:
                target[(k if maps is None else 0) + m] = rec.payload
                labels[k + m] = rec.label
                m += 1
                if m == limit:
                    break
            if maps is not None and m:
                expand_prepool(maps[:m], self.prepool_shape, out=vecs[k:k + m])
            k += m
            if m < limit:
                break
        return k

    def vectors(self, start=0, stop=None):
        """The vectors of records [start, stop) in key order: ``(n, dim)`` float32 (for
        prepool-f32 the expansion the C++ reader computes, bit for bit). All in memory:
        ``len(cache) × dim × 4`` bytes; use ``batches`` for large caches."""
        n = len(self) if stop is None else min(stop, len(self))
        out = np.empty((max(0, n - start), self.dim), dtype=np.float32)
        labels = np.empty(len(out), dtype=np.int64)
        with self.reader() as r:
            k = self._fill(r.records_from(start), out, labels)
        return out[:k]

    def labels(self):
        """Record labels in key order, int64 (each record read, and checked when verifying)."""
        with self.reader() as r:
            return np.fromiter((rec.label for rec in r), dtype=np.int64)

    def index(self):
        """Per record in key order: image, crop, label, x, y, w, h, flipped (structured array);
        paths are ``cache.image_paths[index["image"]]``."""
        with self.reader() as r:
            rows = [(rec.image, rec.crop, rec.label) + tuple(rec.box) for rec in r]
        return np.array(rows, dtype=INDEX_DTYPE)

    # -- internals ---------------------------------------------------------------------------
    def _part_of(self, image):
        return max(0, bisect.bisect_right(self._firsts, image) - 1)

    def _decode(self, part, key, value):
        image, crop = decode_key(key, f"{part.path}: record key")
        what = f"{part.path}: record ({image}, {crop})"
        header, payload = decode_record(value, self.verify, what)
        if header.image != image or header.crop != crop:
            raise CorruptError(f"{what}: key and record disagree")
        if header.codec != self._codec_id or header.payload_floats != self.payload_floats:
            raise CorruptError(f"{what}: codec or size differs from the cache metadata")
        if image >= len(self.image_paths):
            raise CorruptError(f"{what}: image index beyond the metadata's "
                               f"{len(self.image_paths)} images")
        return Record(image, crop, header.label, header.box, self.image_paths[image], payload,
                      self._expand)


class Reader:
    """A read transaction over a cache (every shard of a set). Not thread-safe; one per thread.
    Payload views of the records it returns are valid until ``close()`` / the ``with`` ends."""

    def __init__(self, cache):
        if not cache._parts:
            raise VggCacheError(f"{cache.path}: cache is closed")
        self.cache = cache
        self._txns = []
        try:
            for p in cache._parts:
                self._txns.append(p.env.begin(db=p.records_db, buffers=True))
        except BaseException:
            self.close()
            raise

    def close(self):
        for t in self._txns:
            t.abort()
        self._txns = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def count(self):
        n = 0
        for t, p in zip(self._txns, self.cache._parts):
            if not p.runs:
                n += t.stat(p.records_db)["entries"]
                continue
            with t.cursor() as cur:
                for k, v in cur.iternext(keys=True, values=True):
                    n += p.count_in(k, v)
        return n

    def keys(self):
        out = []
        for t, p in zip(self._txns, self.cache._parts):
            with t.cursor() as cur:
                if not p.runs:
                    out.extend(decode_key(k) for k in cur.iternext(keys=True, values=False))
                    continue
                for k, v in cur.iternext(keys=True, values=True):
                    out.extend(peek_key(v, i * p.stride) for i in range(p.count_in(k, v)))
        return out

    def _run_records(self, part, key, value, skip_before=None):
        """Decoded records of one value (a run, or one record), from the first key at or
        after ``skip_before`` (a (image, crop) pair)."""
        n = part.count_in(key, value)
        for i in range(n):
            rec = part.record_at(value, i)
            k = key if i == 0 else encode_key(*peek_key(rec))
            if skip_before is not None and decode_key(k) < skip_before:
                continue
            yield self.cache._decode(part, k, rec)

    def __iter__(self):
        return self.records_from(0)

    def records_from(self, i=0):
        """Records in key order from the i-th on (i > 0 seeks by key; LMDB has no positions)."""
        cache = self.cache
        first_part, seek = 0, None
        if i > 0:
            keys = cache.keys()
            if i >= len(keys):
                return
            seek = encode_key(*keys[i])
            first_part = cache._part_of(keys[i][0])
        for k in range(first_part, len(self._txns)):
            part = cache._parts[k]
            with self._txns[k].cursor() as cur:
                skip = None
                if seek is not None and k == first_part:
                    ok = cur.set_range(seek)
                    if part.runs and (not ok or cur.key() != seek):
                        # The record may sit inside the run before.
                        ok = cur.prev() if ok else cur.last()
                        if not ok:
                            ok = cur.first()
                        skip = decode_key(seek)
                else:
                    ok = cur.first()
                while ok:
                    yield from self._run_records(part, cur.key(), cur.value(), skip)
                    ok = cur.next()

    def get(self, image, crop):
        """Record (image, crop), or None when there is none."""
        k = self.cache._part_of(image)
        part = self.cache._parts[k]
        key = encode_key(image, crop)
        if not part.runs:
            v = self._txns[k].get(key)
            return None if v is None else self.cache._decode(part, key, v)
        with self._txns[k].cursor() as cur:
            ok = cur.set_range(key)
            if ok and cur.key() == key:
                return self.cache._decode(part, key, part.record_at(cur.value(), 0))
            ok = cur.prev() if ok else cur.last()
            if not ok:
                return None
            value = cur.value()
            for i in range(part.count_in(cur.key(), value)):
                if peek_key(value, i * part.stride) == (image, crop):
                    return self.cache._decode(part, key, part.record_at(value, i))
            return None

    def record(self, i):
        """The i-th record in key order."""
        image, crop = self.cache.keys()[i]
        return self.get(image, crop)


def open_cache(path, verify=True, allow_incomplete=False):
    """Opens a cache directory or a shard set (a directory with ``shards.json``) for reading.

    ``verify``: check every record's CRC-32C (and key, codec, size) as it is read (default, as
    the C++ tools do). ``allow_incomplete``: read a cache (or set) whose extraction has not
    finished. Raises NotACacheError, SchemaError, CorruptError, IncompleteError, MismatchError.
    """
    return Cache(path, verify=verify, allow_incomplete=allow_incomplete)
