"""OUTDIR/.state: what a build has fetched so far, so a rerun after Ctrl-C or a kill fetches
nothing twice and ends exactly as an uninterrupted run would.

  lock            flock'ed while a build runs (two builders on one directory would race)
  pages/<class>/  search answers as received: a rerun walks the same candidates in the same order
                  even if Flickr's ranking has drifted meanwhile
  pool/<class>/   downloaded photos, <photo id>.jpg
  records.jsonl   one JSON line per photo fetched: its URL, license and sha256, or why it is
                  permanently unusable. Appended after the photo is in the pool, so a record never
                  points at a missing file; a line cut short by a kill is ignored on reading.

Every file is written to a temporary name and renamed, so a kill never leaves half a file under
a real name. Transient failures (timeouts, 5xx) are not recorded: a rerun tries them again.
"""
import fcntl
import hashlib
import json
import os


class StateError(Exception):
    pass


def atomic_write(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_tmp_files(root):
    """Temporaries left by a killed run (ours end in .<pid>.tmp)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".tmp"):
                os.remove(os.path.join(dirpath, name))


class State:
    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self._lock = open(os.path.join(root, "lock"), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another build is writing {os.path.dirname(root)} "
                             f"(lock on {root}/lock is held)") from None
        remove_tmp_files(root)
        self._records = {}
        path = os.path.join(root, "records.jsonl")
        tail_ok = True
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            for line in data.splitlines():
                try:
                    rec = json.loads(line)
                    self._records[(rec["class"], rec["id"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue  # the last line of a killed run
            tail_ok = not data or data.endswith(b"\n")
        self._out = open(path, "ab")
        if not tail_ok:  # start a fresh line after a cut one
            self._out.write(b"\n")

    def _dir(self, *parts):
        d = os.path.join(self.root, *parts)
        os.makedirs(d, exist_ok=True)
        return d

    # Search pages, keyed by page size too: a different --per-page gives different pages.
    def _page_path(self, cls, per_page, page):
        return os.path.join(self._dir("pages", cls), f"{per_page}-{page}.json")

    def page(self, cls, per_page, page):
        try:
            with open(self._page_path(cls, per_page, page), "rb") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save_page(self, cls, per_page, page, photos):
        atomic_write(self._page_path(cls, per_page, page), json.dumps(photos).encode())

    def pool_path(self, cls, pid):
        return os.path.join(self._dir("pool", cls), f"{pid}.jpg")

    def photo(self, cls, pid, url):
        """The record of an earlier fetch of this photo from this URL, or None when it must be
        fetched (never fetched, only failed transiently, or its pool file is gone or altered)."""
        rec = self._records.get((cls, pid))
        if rec is None or rec.get("url") != url:
            return None
        if "error" in rec:
            return rec
        try:
            if sha256_file(self.pool_path(cls, pid)) == rec["sha256"]:
                return rec
        except OSError:
            pass
        return None

    def _append(self, rec):
        self._records[(rec["class"], rec["id"])] = rec
        self._out.write(json.dumps(rec, sort_keys=True).encode() + b"\n")
        self._out.flush()  # survives a kill of this process (not a power cut: no fsync per photo)

    def add_photo(self, cls, pid, url, license_, data, sha):
        atomic_write(self.pool_path(cls, pid), data)
        rec = {"class": cls, "id": pid, "url": url, "license": license_, "sha256": sha,
               "bytes": len(data)}
        self._append(rec)
        return rec

    def add_failure(self, cls, pid, url, reason):
        rec = {"class": cls, "id": pid, "url": url, "error": reason}
        self._append(rec)
        return rec
