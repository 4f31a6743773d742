#!/usr/bin/env python3
"""Writes the seed corpora for the fuzz targets into OUTDIR/{record,meta,pth}: valid records
(with correct CRC-32C), valid cache metadata, and small state_dict files in both torch formats
(needs Debian's python3-torch: run with /usr/bin/python3)."""
import json
import os
import struct
import sys


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def record(image, crop, label, floats, codec=1):
    head = bytearray(64)
    struct.pack_into("<IHHIIiiiiiB", head, 0, 0x52434756, 1, codec, image, crop, label, 1, 2, 30, 31, 1)
    struct.pack_into("<I", head, 40, len(floats))
    body = bytes(head) + struct.pack("<%df" % len(floats), *floats)
    crc = crc32c(body)
    return body[:44] + struct.pack("<I", crc) + body[48:]


def meta():
    return {
        "schema_version": 1, "tool_version": "0.1.0", "codec": "raw-f32", "dim": 4,
        "payload_floats": 4, "prepool_shape": [], "classes": ["bicycle", "car"],
        "source_dir": "d", "images": [{"path": "car/a.jpg", "bytes": 3, "sha256": "ab", "label": 1},
                                      {"path": "x", "path_hex": "ff41", "bytes": 1, "sha256": "", "label": 0}],
        "weights": {"name": "random:1", "sha256": "", "random": True},
        "preprocess": {"size": 64, "view": "train", "crops": 10, "scale": [0.5, 1.0],
                       "ratio": [0.75, 1.3333333], "flip": False, "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], "interpolation": "bilinear-antialias", "seed": 1},
        "skipped": [{"image": 1, "path": "x", "reason": "truncated"}], "complete": True,
        "records": 10, "next_image": 2, "extra": {}}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def image_list(entries):
    """Schema 3's binary image list (common/image_list.h) without its CRC-32C, which the fuzz
    target appends: each path stored whole (prefix and suffix 0), digests of every kind."""
    body = bytearray(b"VGIL\x01") + varint(len(entries))
    for path, size, digest, label in entries:
        body += varint(0) + varint(0) + varint(len(path)) + path + varint(size)
        if digest is None:
            body += b"\x00"
        elif len(digest) == 32:
            body += b"\x01" + digest
        else:
            body += b"\x02" + varint(len(digest)) + digest
        body += varint(label)
    return bytes(body)


def main():
    out = sys.argv[1]
    for d in ("record", "meta", "pth", "image_list"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    open(os.path.join(out, "record", "r1"), "wb").write(record(3, 7, 1, [0.5, -1.0, 2.25, 0.0]))
    open(os.path.join(out, "record", "r2"), "wb").write(record(0, 0, 0, [1.0] * 18, codec=2))
    open(os.path.join(out, "image_list", "l1"), "wb").write(image_list([
        (b"bicycle/bicycle_0001.jpg", 2301, bytes(range(32)), 0),
        (b"bicycle/bicycle_0002.jpg", 2388, None, 0),
        (b"car/\xff\xfe.jpg", 70000, b"ab", 1)]))
    m = meta()
    open(os.path.join(out, "meta", "m1.json"), "w").write(json.dumps(m))
    m2 = dict(m, codec="prepool-f32", dim=98, payload_floats=8, prepool_shape=[2, 2, 2])
    open(os.path.join(out, "meta", "m2.json"), "w").write(json.dumps(m2))
    import collections
    import torch
    torch.manual_seed(0)
    sd = collections.OrderedDict()
    sd["features.0.weight"] = torch.randn(2, 3, 1, 1)
    sd["features.0.bias"] = torch.randn(2)
    sd["t"] = torch.randn(3, 2).t()  # non-contiguous view
    torch.save(sd, os.path.join(out, "pth", "small_zip.pth"))
    torch.save(sd, os.path.join(out, "pth", "small_legacy.pth"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
