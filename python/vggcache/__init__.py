"""vggcache: a pure-Python reader for vggcache feature caches and trained heads.

NumPy and Debian's ``python3-lmdb`` are all it needs (``python3-crcmod`` makes checksum
verification fast; without it a pure-NumPy CRC-32C is used). PyTorch is imported only by
``VggCacheDataset`` and ``head_module``.

    from vggcache import open_cache, read_head
    with open_cache("caches/train") as cache:          # a cache directory or a shard set
        X, y = cache.vectors(), cache.labels()         # (records, 25088) float32, int64
"""
from .cache import Cache, Reader, open_cache
from .errors import (CorruptError, IncompleteError, MismatchError, NotACacheError, SchemaError,
                     VggCacheError)
from .head import head_module, read_head
from .prepool import expand_prepool
from .records import CropBox, Record

__all__ = ["open_cache", "Cache", "Reader", "Record", "CropBox", "expand_prepool", "read_head",
           "head_module", "VggCacheDataset", "VggCacheError", "NotACacheError", "CorruptError",
           "SchemaError", "IncompleteError", "MismatchError"]
__version__ = "0.1.0"


def __getattr__(name):
    # torch is imported only when the Dataset is asked for.
    if name == "VggCacheDataset":
        from .torch_data import VggCacheDataset
        return VggCacheDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
