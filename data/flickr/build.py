"""Collects unique, valid images per class from the search results, splits them from the seed and
writes OUTDIR/{train,test}/<class>/<class>_NNNN.jpg with OUTDIR/manifest.csv."""
import csv
import hashlib
import io
import os
import random
import re
import shutil
import sys
import time

from PIL import Image, UnidentifiedImageError

from .net import FetchError, search_page
from .state import atomic_write, remove_tmp_files, sha256_file

SPLITS = ("train", "test")
MANIFEST_FIELDS = ["split", "class", "file", "url", "photo_id", "license", "sha256"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def image_problem(data):
    """Why these bytes are not a usable image, or None. verify() checks the structure only;
    load() then decodes every pixel, which is what catches a truncated JPEG."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except UnidentifiedImageError:  # its message names a BytesIO address: useless in a log
        return "not an image (unrecognised format)"
    except Exception as e:  # PIL signals bad data with many exception types
        return f"not an image ({e.__class__.__name__}: {e})"
    return None


def _duration(s):
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """One stderr line per second at most: images kept, downloads per second, ETA."""

    def __init__(self, cls, need):
        self.cls, self.need = cls, need
        self.t0 = self.last = time.monotonic()
        self.downloads = 0  # this run only: reused photos cost nothing and would inflate the rate

    def show(self, have, skipped, dups, final=False):
        now = time.monotonic()
        if not final and now - self.last < 1.0:
            return
        self.last = now
        rate = self.downloads / max(now - self.t0, 1e-9)
        eta = "-" if final or rate == 0 else _duration((self.need - have) / rate)
        log(f"{self.cls}: {have}/{self.need} images, {skipped} skipped, {dups} duplicates, "
            f"{rate:.1f} downloads/s, ETA {eta}")


class Collector:
    def __init__(self, state, fetcher, api_base, api_key, per_page):
        self.state, self.fetcher = state, fetcher
        self.api_base, self.api_key, self.per_page = api_base, api_key, per_page
        # Content hashes across all classes: one photo under two keywords would be label noise.
        self.owner = {}
        self.skipped = []  # (class, photo id, url, reason) for skipped.csv

    def _pages(self, cls):
        """Search results in rank order, each photo id once. Stops at the last page, or when a page
        brings nothing new (Flickr repeats results past the end of a deep search)."""
        seen, page = set(), 1
        while True:
            photos = self.state.page(cls, self.per_page, page)
            if photos is None:
                photos = search_page(self.fetcher, self.api_base, self.api_key, cls, page,
                                     self.per_page)
                self.state.save_page(cls, self.per_page, page, photos)
            fresh = [p for p in photos["photo"] if str(p.get("id", "")) not in seen]
            for p in fresh:
                seen.add(str(p.get("id", "")))
                yield p
            if not fresh or page >= int(photos.get("pages") or 0):
                return
            page += 1

    def _skip(self, cls, pid, url, reason):
        self.skipped.append((cls, pid, url, reason))
        log(f"skip {cls}/{pid} {url or '-'}: {reason}")

    def _fetch(self, cls, pid, url, license_, progress):
        """The photo's record (reused from the state or freshly downloaded), or None if unusable."""
        rec = self.state.photo(cls, pid, url)
        if rec is not None:
            if "error" in rec:
                self._skip(cls, pid, url, rec["error"] + " (recorded by an earlier run)")
                return None
            return rec
        try:
            data, final_url = self.fetcher.get(url)
        except FetchError as e:
            if e.permanent:
                self.state.add_failure(cls, pid, url, str(e))
            self._skip(cls, pid, url, str(e))
            return None
        progress.downloads += 1
        if "photo_unavailable" in final_url:  # where Flickr redirects deleted or private photos
            reason = "redirected to Flickr's 'photo unavailable' placeholder"
        else:
            reason = image_problem(data)
        if reason:
            self.state.add_failure(cls, pid, url, reason)
            self._skip(cls, pid, url, reason)
            return None
        return self.state.add_photo(cls, pid, url, license_, data, hashlib.sha256(data).hexdigest())

    def collect(self, cls, need):
        """Up to `need` unique valid photos of one class in search order, and how many search
        results were looked at."""
        kept, looked, dups = [], 0, 0
        skipped0 = len(self.skipped)
        progress = Progress(cls, need)
        if need <= 0:
            return kept, looked
        for p in self._pages(cls):
            looked += 1
            pid, url = str(p.get("id", "")), p.get("url_c") or ""
            if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", pid):
                self._skip(cls, pid, url, "unexpected photo id")
                continue
            if not url:
                self._skip(cls, pid, url, "no url_c size (photo too small or too old)")
                continue
            rec = self._fetch(cls, pid, url, str(p.get("license", "")), progress)
            if rec is None:
                continue
            first = self.owner.get(rec["sha256"])
            if first:
                dups += 1
                log(f"duplicate {cls}/{pid}: same content as {first}, dropped")
                continue
            self.owner[rec["sha256"]] = f"{cls}/{pid}"
            kept.append(rec)
            if len(kept) >= need:  # before the generator fetches another page
                break
            progress.show(len(kept), len(self.skipped) - skipped0, dups)
        progress.show(len(kept), len(self.skipped) - skipped0, dups, final=True)
        return kept, looked


def assign(kept, n_train, n_test, seed, cls):
    """Shuffles the class's photos with its own generator, seeded from (seed, class) so each class
    gets an independent permutation; the first n_train go to train, the next n_test to test."""
    order = list(kept)
    random.Random(f"{seed}/{cls}").shuffle(order)
    return {"train": order[:n_train], "test": order[n_train:n_train + n_test]}


def _place(src, dest):
    """dest becomes a copy of src, atomically; a hard link where possible (no second copy)."""
    tmp = f"{dest}.{os.getpid()}.tmp"
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def write_class(out, cls, splits, state):
    """Writes one class's files into every split and returns their manifest rows. Files already in
    place with the right content are kept; stale <class>_NNNN.jpg from another run are removed."""
    ours = re.compile(re.escape(cls) + r"_\d{4,}\.jpg")
    rows = []
    for split in SPLITS:
        d = os.path.join(out, split, cls)
        os.makedirs(d, exist_ok=True)
        remove_tmp_files(d)
        wanted = set()
        for i, rec in enumerate(splits[split]):
            name = f"{cls}_{i:04d}.jpg"
            wanted.add(name)
            dest = os.path.join(d, name)
            if not (os.path.isfile(dest) and sha256_file(dest) == rec["sha256"]):
                _place(state.pool_path(cls, rec["id"]), dest)
            rows.append({"split": split, "class": cls, "file": f"{split}/{cls}/{name}",
                         "url": rec["url"], "photo_id": rec["id"], "license": rec["license"],
                         "sha256": rec["sha256"]})
        for name in sorted(os.listdir(d)):
            if name not in wanted and ours.fullmatch(name):
                os.remove(os.path.join(d, name))
    return rows


def write_csv(path, fields, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    w.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def write_manifest(out, rows):
    write_csv(os.path.join(out, "manifest.csv"), MANIFEST_FIELDS,
              [[r[f] for f in MANIFEST_FIELDS] for r in rows])
