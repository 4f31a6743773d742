"""The binary image list of a schema 3 cache (common/image_list.h has the layout and the why).

``decode_image_list(raw, where)`` returns the entries as the JSON list of schemas 1 and 2 holds
them (``path``, ``bytes``, ``sha256``, ``label``, and ``path_hex`` for names that are not UTF-8),
so the rest of the reader treats every schema alike.
"""
from . import crc as _crc
from .errors import CorruptError, SchemaError

MAGIC = b"VGIL"
FORMAT = 1


def is_binary(raw):
    return raw is not None and bytes(raw[:4]) == MAGIC


class _Cursor:
    def __init__(self, buf, pos, end, where):
        self.buf, self.pos, self.end, self.where, self.entry = buf, pos, end, where, 0

    def fail(self, what):
        raise CorruptError(f"{self.where}: the image list is malformed: {what}")

    def varint(self, what):
        v, shift = 0, 0
        while shift < 64:
            if self.pos == self.end:
                self.fail(f"entry {self.entry}: {what} runs past the end")
            b = self.buf[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
        self.fail(f"entry {self.entry}: {what} is not a valid varint")

    def take(self, n, what):
        if n > self.end - self.pos:
            self.fail(f"entry {self.entry}: {what} ({n} bytes) runs past the end")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def _entry(path, size, digest, label):
    # As common/cache_meta.cpp's put_path writes a name into JSON.
    e = {"bytes": size, "sha256": digest, "label": label}
    try:
        e["path"] = path.decode("utf-8")
    except UnicodeDecodeError:
        e["path"] = "".join(chr(c) if c < 0x80 else "?" for c in path)
        e["path_hex"] = path.hex()
    return e


def decode_image_list(raw, where):
    buf = bytes(raw)
    if len(buf) < 9 or buf[:4] != MAGIC:
        raise CorruptError(f"{where}: the image list is malformed: not a binary image list (no "
                           "VGIL header)")
    if buf[4] != FORMAT:
        raise SchemaError(f"{where}: image list format {buf[4]} is not supported (this reader "
                          f"reads format {FORMAT})")
    stored = int.from_bytes(buf[-4:], "little")
    computed = _crc.crc32c(buf[:-4])
    if stored != computed:
        raise CorruptError(f"{where}: the image list is malformed: checksum mismatch (stored "
                           f"{stored:08x}, computed {computed:08x})")
    c = _Cursor(buf, 5, len(buf) - 4, where)
    count = c.varint("the count")
    if count > (c.end - c.pos) // 6:  # every entry takes at least 6 bytes
        c.fail(f"{count} entries cannot fit in {len(buf)} bytes")
    out, prev = [], b""
    for i in range(count):
        c.entry = i
        prefix, suffix = c.varint("the shared start"), c.varint("the shared end")
        if prefix > len(prev) or suffix > len(prev) - prefix:
            c.fail(f"entry {i} shares {prefix} + {suffix} bytes with a {len(prev)}-byte path")
        middle = c.take(c.varint("the path length"), "the path")
        path = prev[:prefix] + middle + prev[len(prev) - suffix:]
        size = c.varint("the file size")
        kind = c.take(1, "the digest kind")[0]
        if kind == 0:
            digest = ""
        elif kind == 1:
            digest = c.take(32, "the SHA-256").hex()
        elif kind == 2:
            digest = c.take(c.varint("the digest length"), "the digest").decode("utf-8",
                                                                             "surrogateescape")
        else:
            c.fail(f"entry {i}: unknown digest kind {kind}")
        label = c.varint("the label")
        if label > 0xFFFFFFFF:
            c.fail(f"entry {i}: label {label} too large")
        if label >= 0x80000000:
            label -= 1 << 32  # stored as the u32 of an int32
        out.append(_entry(path, size, digest, label))
        prev = path
    if c.pos != c.end:
        c.fail(f"{c.end - c.pos} bytes after the last of {count} entries")
    return out
