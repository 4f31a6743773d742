"""Record keys and values of the ``records`` sub-database (common/record.h, common/record.cpp).

Key: big-endian u32 image ‖ big-endian u32 crop (so LMDB's byte order is (image, crop) order).
Value: a 64-byte little-endian header, then the payload floats (little-endian float32)::

     0 magic u32 "VGCR" |  4 record format u16 (1) | 6 codec u16 (1 raw-f32, 2 prepool-f32)
     8 image u32        | 12 crop u32               | 16 label i32
    20 x i32 | 24 y i32 | 28 w i32 | 32 h i32       | 36 flipped u8 | 37..39 zero
    40 payload_floats u32 | 44 CRC-32C u32 | 48..63 zero

The CRC-32C covers the whole record (header and payload) with its own field taken as zero.
"""
import struct
from collections import namedtuple

import numpy as np

from . import crc as _crc
from .errors import CorruptError, SchemaError

HEADER_BYTES = 64
RECORD_MAGIC = 0x52434756  # b"VGCR" read as little-endian u32
RECORD_FORMAT = 1
CRC_OFFSET = 44

CODEC_RAW_F32 = 1
CODEC_PREPOOL_F32 = 2
CODEC_RAW_F16 = 3
CODEC_PREPOOL_F16 = 4
CODEC_IDS = {"raw-f32": CODEC_RAW_F32, "prepool-f32": CODEC_PREPOOL_F32,
             "raw-f16": CODEC_RAW_F16, "prepool-f16": CODEC_PREPOOL_F16}
# Bytes per stored value: float32, or IEEE half (lossy codecs, expanded to float32 on read).
VALUE_BYTES = {CODEC_RAW_F32: 4, CODEC_PREPOOL_F32: 4, CODEC_RAW_F16: 2, CODEC_PREPOOL_F16: 2}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}

_HEADER = struct.Struct("<IHHIIiiiiiB3xII")  # up to and including the CRC field (48 bytes)
_KEY = struct.Struct(">II")

CropBox = namedtuple("CropBox", "x y w h flipped")
CropBox.__doc__ = "Crop rectangle in source pixels (left, top, width, height), flipped after it."

RecordHeader = namedtuple("RecordHeader", "codec image crop label box payload_floats crc")


def record_bytes(codec_id, payload_floats):
    return HEADER_BYTES + VALUE_BYTES[codec_id] * payload_floats


def peek_key(value, offset=0):
    """(image, crop) from a record's header, unchecked (to walk a run of records)."""
    return struct.unpack_from("<II", value, offset + 8)


def encode_key(image, crop):
    return _KEY.pack(image, crop)


def decode_key(key, what="record key"):
    if len(key) != 8:
        raise CorruptError(f"{what}: record key of {len(key)} bytes")
    return _KEY.unpack(key)


def record_crc(value):
    """The CRC-32C the record ``value`` (bytes-like) should carry: header with the field zeroed,
    then the payload, as decode_record in common/record.cpp computes it."""
    mv = memoryview(value)
    head = bytearray(mv[:HEADER_BYTES])
    head[CRC_OFFSET:CRC_OFFSET + 4] = b"\0\0\0\0"
    return _crc.crc32c(mv[HEADER_BYTES:], _crc.crc32c(head))


def decode_record(value, verify=True, what="record"):
    """Parses one record value (bytes-like; a memoryview stays zero-copy).

    Returns ``(RecordHeader, payload)`` where payload is a read-only float32 NumPy view over
    ``value`` (no copy). Raises CorruptError / SchemaError with ``what`` (e.g.
    "CACHE: record (12, 3)") in the message, as the C++ decode_record does.
    """
    n = len(value)
    if n < HEADER_BYTES:
        raise CorruptError(f"{what}: truncated header ({n} bytes)")
    (magic, fmt, codec, image, crop, label, x, y, w, h, flipped, payload_floats,
     stored) = _HEADER.unpack_from(value, 0)
    if magic != RECORD_MAGIC:
        raise CorruptError(f"{what}: bad record magic")
    if fmt != RECORD_FORMAT:
        raise SchemaError(f"{what}: unknown record format {fmt}")
    if codec not in VALUE_BYTES:
        raise CorruptError(f"{what}: unknown codec {codec}")
    if n != record_bytes(codec, payload_floats):
        raise CorruptError(f"{what}: size {n} does not match {payload_floats} payload values of "
                           f"{CODEC_NAMES[codec]}")
    if verify:
        computed = record_crc(value)
        if computed != stored:
            raise CorruptError(f"{what}: checksum mismatch (stored {stored}, computed {computed})")
    header = RecordHeader(codec, image, crop, label, CropBox(x, y, w, h, flipped != 0),
                          payload_floats, stored)
    if VALUE_BYTES[codec] == 2:  # halves, expanded to float32 (a new array)
        payload = np.frombuffer(value, dtype="<f2", count=payload_floats,
                                offset=HEADER_BYTES).astype(np.float32)
    else:
        payload = np.frombuffer(value, dtype="<f4", count=payload_floats, offset=HEADER_BYTES)
    return header, payload


class Record:
    """One (image, crop) record.

    ``payload`` is a zero-copy float32 view into LMDB's memory map: it is valid only while the
    read transaction that produced it is open (inside ``with cache.reader() as r:`` or while a
    ``cache.records()`` iterator has not finished). Keep data beyond that with ``.copy()``.
    ``vector()`` gives the 25088-d vector: for raw-f32 the payload view itself (same lifetime
    rule), for prepool-f32 a new array expanded exactly as the C++ reader expands it.
    """

    __slots__ = ("image", "crop", "label", "box", "path", "payload", "_expand")

    def __init__(self, image, crop, label, box, path, payload, expand):
        self.image = image
        self.crop = crop
        self.label = label
        self.box = box
        self.path = path
        self.payload = payload
        self._expand = expand

    def vector(self):
        return self.payload if self._expand is None else self._expand(self.payload)

    def copy(self):
        """The same record with its own copy of the payload (valid after the transaction)."""
        return Record(self.image, self.crop, self.label, self.box, self.path,
                      self.payload.copy(), self._expand)

    def __iter__(self):  # image, crop, label, box, path, payload = record
        return iter((self.image, self.crop, self.label, self.box, self.path, self.payload))

    def __repr__(self):
        return (f"Record(image={self.image}, crop={self.crop}, label={self.label}, "
                f"box={tuple(self.box)}, path={self.path!r}, payload={self.payload.size} floats)")
