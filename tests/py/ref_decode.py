#!/usr/bin/python3
"""Reference decodes with PIL 9.4 (what torchvision's ImageFolder loader does:
Image.open(path).convert("RGB")) for tests/extract/test_image_decode.cpp.

  ref_decode.py cases DIR          writes edge-case image files into DIR and DIR/manifest.txt:
                                   one line per file "<name> ok <W> <H>" (DIR/<name>.rgb holds
                                   PIL's pixels) or "<name> error <PIL's exception>"
  ref_decode.py dump OUT LIST      OUT = for each path in the text file LIST (one a line):
                                   int32 W, H then H*W*3 RGB bytes
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(width, height, color_type, depth, rows):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) +
            _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _save(img, **kw):
    buf = io.BytesIO()
    img.save(buf, **kw)
    return buf.getvalue()


def make_cases(d):
    rng = np.random.default_rng(0)

    def rnd(*shape):
        return rng.integers(0, 256, shape, dtype=np.uint8)

    files = {}
    rgb = Image.fromarray(rnd(17, 23, 3))
    files["rgb.png"] = _save(rgb, format="PNG")
    files["rgb.jpg"] = _save(rgb, format="JPEG", quality=90)
    files["gray.png"] = _save(Image.fromarray(rnd(17, 23)), format="PNG")
    files["gray.jpg"] = _save(Image.fromarray(rnd(17, 23)), format="JPEG", quality=90)
    files["rgba.png"] = _save(Image.fromarray(rnd(17, 23, 4), "RGBA"), format="PNG")
    files["la.png"] = _save(Image.fromarray(rnd(17, 23, 2), "LA"), format="PNG")
    pal = Image.fromarray(rnd(17, 23, 3)).convert("P", palette=Image.ADAPTIVE, colors=50)
    files["palette.png"] = _save(pal, format="PNG")
    files["palette_trns.png"] = _save(pal, format="PNG", transparency=3)
    files["bilevel.png"] = _save(Image.fromarray(rnd(17, 23) > 127), format="PNG")
    files["gray16.png"] = _save(Image.fromarray(rng.integers(0, 65536, (17, 23), dtype=np.uint16)),
                                format="PNG")
    files["gray16_small.png"] = _save(
        Image.fromarray(rng.integers(0, 300, (17, 23), dtype=np.uint16)), format="PNG")
    for name, ctype, ch in (("rgb16.png", 2, 3), ("rgba16.png", 6, 4), ("la16.png", 4, 2)):
        a = rng.integers(0, 65536, (9, 11, ch), dtype=np.uint16)
        files[name] = _raw_png(11, 9, ctype, 16, [a[y].astype(">u2").tobytes() for y in range(9)])
    files["cmyk.jpg"] = _save(Image.fromarray(rnd(17, 23, 4), "CMYK"), format="JPEG", quality=95)
    # EXIF Orientation = 6 (rotate 90): PIL's loader does not apply it, so neither may we.
    exif = Image.Exif()
    exif[0x0112] = 6
    files["exif_rotated.jpg"] = _save(Image.fromarray(rnd(64, 48, 3)), format="JPEG", quality=90,
                                      exif=exif.tobytes())
    files["one.png"] = _save(Image.fromarray(rnd(1, 1, 3)), format="PNG")
    files["one.jpg"] = _save(Image.fromarray(rnd(1, 1, 3)), format="JPEG")
    files["progressive.jpg"] = _save(Image.fromarray(rnd(40, 40, 3)), format="JPEG",
                                     progressive=True, quality=85)
    files["q444.jpg"] = _save(Image.fromarray(rnd(40, 40, 3)), format="JPEG", subsampling=0)
    files["q422.jpg"] = _save(Image.fromarray(rnd(41, 39, 3)), format="JPEG", subsampling=1)
    files["q420_odd.jpg"] = _save(Image.fromarray(rnd(33, 35, 3)), format="JPEG", subsampling=2)
    files["rgb.bmp"] = _save(rgb, format="BMP")
    files["rgb.tif"] = _save(rgb, format="TIFF")
    files["gray16.tif"] = _save(Image.fromarray(rng.integers(0, 600, (5, 7), dtype=np.uint16)),
                                format="TIFF")
    files["rgb.webp"] = _save(rgb, format="WEBP", lossless=True)
    files["rgba.webp"] = _save(Image.fromarray(rnd(17, 23, 4), "RGBA"), format="WEBP", lossless=True)
    files["rgb.ppm"] = _save(rgb, format="PPM")
    files["gray.pgm"] = _save(Image.fromarray(rnd(17, 23)), format="PPM")
    files["maxval15.pgm"] = b"P5\n4 2\n15\n" + bytes(rng.integers(0, 16, 8, dtype=np.uint8))
    files["maxval999.ppm"] = b"P6\n# comment\n5 2\n999\n" + rng.integers(
        0, 1000, 30).astype(">u2").tobytes()
    files["maxval65535.ppm"] = b"P6 5 2 65535\n" + rng.integers(0, 65536, 30).astype(">u2").tobytes()
    files["gray16.pgm"] = b"P5 5 2 65535\n" + rng.integers(0, 600, 10).astype(">u2").tobytes()
    png = files["rgb.png"]
    files["png_no_iend.png"] = png[:-12]  # ends cleanly after IDAT: PIL decodes it
    jpg = files["rgb.jpg"]
    files["trailing_garbage.jpg"] = jpg + b"garbage after EOI"
    # Broken files: PIL raises on every one of these (checked below), so must we.
    files["empty.jpg"] = b""
    files["truncated_eoi.jpg"] = jpg[:-1]
    files["truncated_half.jpg"] = jpg[: len(jpg) // 2]
    files["truncated_header.jpg"] = jpg[:100]
    files["truncated_progressive.jpg"] = files["progressive.jpg"][:-40]
    files["truncated_half.png"] = png[: len(png) // 2]
    files["truncated_idat.png"] = png[:-40]
    files["random.jpg"] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    files["text.jpg"] = b"this is not an image, just text named .jpg\n" * 10
    files["bomb.png"] = _raw_png(100000, 100000, 2, 8, [])  # declares 10^10 pixels, tiny file
    tiff_ifd = struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 100000) + \
        struct.pack("<HHII", 257, 4, 1, 100000) + struct.pack("<I", 0)
    files["bomb.tif"] = b"II*\x00" + struct.pack("<I", 8) + tiff_ifd
    files["bomb.jpg"] = jpg[:2] + b"\xff\xc0\x00\x11\x08\xea\x60\xea\x60\x03" + b"\x01\x22\x00" \
        b"\x02\x11\x01\x03\x11\x01" + jpg[2:]  # a bogus SOF declaring 60000x60000 first

    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    os.symlink(os.path.join(d, "does-not-exist.jpg"), os.path.join(d, "dangling.jpg"))
    os.mkdir(os.path.join(d, "directory.jpg"))

    names = sorted(files) + ["dangling.jpg", "directory.jpg"]
    with open(os.path.join(d, "manifest.txt"), "w") as m:
        for name in names:
            path = os.path.join(d, name)
            try:
                with Image.open(path) as im:
                    a = np.asarray(im.convert("RGB"))
            except Exception as e:  # what ImageFolder would raise
                m.write("%s error %s\n" % (name, type(e).__name__))
                continue
            a.tofile(path + ".rgb")
            m.write("%s ok %d %d\n" % (name, a.shape[1], a.shape[0]))


def dump(out, listfile):
    with open(listfile) as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    with open(out, "wb") as f:
        for p in paths:
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
            f.write(struct.pack("<2i", a.shape[1], a.shape[0]))
            f.write(a.tobytes())


if __name__ == "__main__":
    if sys.argv[1] == "cases":
        make_cases(sys.argv[2])
    elif sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("unknown command " + sys.argv[1])
