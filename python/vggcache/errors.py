"""Exceptions raised by the reader. They mirror the C++ tools' error kinds (common/error.h)."""


class VggCacheError(Exception):
    """Base class of every error this package raises."""


class NotACacheError(VggCacheError):
    """The path is not a vggcache cache (no directory, no data.mdb, no metadata...)."""


class CorruptError(VggCacheError):
    """A record, the metadata or a head file is damaged (bad checksum, sizes, magic...)."""


class SchemaError(VggCacheError):
    """A schema version, record format, codec or head version this reader does not know."""


class IncompleteError(VggCacheError):
    """The cache (or a shard of a set) is not complete; pass allow_incomplete=True to read it."""


class MismatchError(VggCacheError):
    """The shards of a set do not belong together."""
