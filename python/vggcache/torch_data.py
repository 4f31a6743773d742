"""``torch.utils.data.Dataset`` over a cache (imports torch; the rest of the package does not).

Works with ``DataLoader(num_workers > 0)``: the cache is opened lazily in each process (an LMDB
environment must not be used across ``fork``), and ``crop="random"`` draws from torch's RNG,
which DataLoader seeds per worker.
"""
import os

import torch

from .cache import open_cache

# Environments inherited through fork: LMDB forbids using them in the child, and closing them
# there would clear the parent's reader slots in the shared lock file, so they are kept, unused.
_INHERITED = []


class VggCacheDataset(torch.utils.data.Dataset):
    """Items ``(vector, label)``: a float32 tensor of ``dim`` values (prepool maps expanded as
    the C++ reader does) and the int label.

    ``crop``: ``None`` or ``"all"`` — one item per record (image, crop), in key order;
    ``"random"`` — one item per image, a crop drawn at random on each access (what train_head does
    each epoch); an int k — one item per image, its crop k.
    ``generator``: a ``torch.Generator`` for ``"random"`` (default: torch's global RNG).
    ``verify``, ``allow_incomplete``: as for ``open_cache``.
    """

    def __init__(self, path, crop=None, verify=True, allow_incomplete=False, generator=None):
        if not (crop is None or crop in ("all", "random") or
                (isinstance(crop, int) and not isinstance(crop, bool) and crop >= 0)):
            raise ValueError(f"crop must be None, 'all', 'random' or a crop index, not {crop!r}")
        self.path = os.fspath(path)
        self.crop = "all" if crop is None else crop
        self.verify = verify
        self.allow_incomplete = allow_incomplete
        self.generator = generator
        self._cache, self._pid = None, None
        # Opened only for the index and closed again, so DataLoader workers forked from here
        # inherit no open environment; each process opens its own on first access.
        with open_cache(self.path, verify=verify, allow_incomplete=allow_incomplete) as cache:
            self.classes = cache.classes
            self.dim = cache.dim
            keys = list(cache.keys())
        if self.crop == "all":
            self._items = keys
        else:
            by_image = {}
            for image, crop in keys:
                by_image.setdefault(image, []).append(crop)
            self._images = sorted(by_image)
            self._crops = [by_image[i] for i in self._images]
            if self.crop != "random":
                for image, crops in zip(self._images, self._crops):
                    if self.crop not in crops:
                        raise ValueError(f"{self.path}: image {image} has no crop {self.crop}")

    def _open(self):
        if self._cache is None or self._pid != os.getpid():
            if self._cache is not None:  # opened before a fork: never touch it here
                _INHERITED.append(self._cache)
            self._cache = open_cache(self.path, verify=self.verify,
                                     allow_incomplete=self.allow_incomplete)
            self._pid = os.getpid()
        return self._cache

    def __getstate__(self):  # spawn-started workers reopen the cache themselves
        state = self.__dict__.copy()
        state["_cache"], state["_pid"] = None, None
        return state

    def __len__(self):
        return len(self._items) if self.crop == "all" else len(self._images)

    def key(self, i):
        """The (image, crop) of item i (for "random", of the draw this call makes)."""
        if self.crop == "all":
            return self._items[i]
        if self.crop == "random":
            crops = self._crops[i]
            k = int(torch.randint(len(crops), (1,), generator=self.generator))
            return self._images[i], crops[k]
        return self._images[i], self.crop

    def __getitem__(self, i):
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        image, crop = self.key(i)
        cache = self._open()
        with cache.reader() as r:
            rec = r.get(image, crop)
            v = rec.vector()
            v = v.copy() if v is rec.payload else v  # the payload view dies with the transaction
            label = rec.label
        return torch.from_numpy(v), label
