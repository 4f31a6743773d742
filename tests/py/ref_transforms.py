#!/usr/bin/python3
"""Reference data from torch 1.13 / torchvision 0.14 / PIL 9.4 for tests/extract/test_transforms.cpp.

  ref_transforms.py crops OUT.json         RandomResizedCrop.get_params cases with torch's own draws
  ref_transforms.py resize CARBIKE OUT.bin  F.resized_crop (+ hflip) on carbike64 and synthetic images
  ref_transforms.py normalize CARBIKE OUT.bin  ToTensor + Normalize outputs
  ref_transforms.py exp OUT.bin             torch.exp on float32 inputs (bit patterns)

Binary files are little-endian int32 headers followed by raw bytes/float32, described per command.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
import torchvision.transforms.transforms as TT
from PIL import Image


class _Recorder:
    """Stands in for the `torch` module inside torchvision.transforms.transforms and logs every
    random draw get_params makes, with the bounds torch received."""

    def __init__(self):
        self.draws = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *args, **kwargs):
        return _RecordingTensor(torch.empty(*args, **kwargs), self.draws)

    def randint(self, low, high, *args, **kwargs):
        r = torch.randint(low, high, *args, **kwargs)
        self.draws.append(["r", int(low), int(high), int(r.item())])
        return r


class _RecordingTensor:
    def __init__(self, t, draws):
        self.t, self.draws = t, draws

    def uniform_(self, lo, hi):
        self.t.uniform_(lo, hi)
        # torch casts the bounds to float32 before drawing; record them that way.
        self.draws.append(["u", float(np.float32(float(lo))), float(np.float32(float(hi))),
                         float(self.t.item())])
        return self.t


def cmd_crops(out):
    rng = np.random.default_rng(1234)
    cases = []
    sizes = [(64, 64), (1, 1), (2, 3), (3, 2), (500, 375), (375, 500), (1000, 10), (10, 1000),
             (224, 224), (37, 61)]
    params = [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (3 / 4, 4 / 3)),
              ((0.9, 1.0), (3 / 4, 4 / 3)), ((1.0, 1.0), (1.0, 1.0)),
              ((0.9, 1.0), (10.0, 20.0)),    # w > W always: fallback, in_ratio < min(ratio)
              ((0.9, 1.0), (0.05, 0.1)),     # h > H always: fallback, in_ratio > max(ratio)
              ((0.2, 0.6), (0.5, 2.0)), ((0.001, 0.01), (3 / 4, 4 / 3))]
    rec = _Recorder()
    real_torch = TT.torch
    TT.torch = rec
    try:
        for (w, h) in sizes:
            img = Image.new("RGB", (w, h))
            for scale, ratio in params:
                for _ in range(6):
                    seed = int(rng.integers(0, 2**31))
                    torch.manual_seed(seed)
                    rec.draws = []
                    i, j, hh, ww = T.RandomResizedCrop.get_params(img, list(scale), list(ratio))
                    cases.append({"width": w, "height": h, "scale": list(scale),
                                  "ratio": list(ratio), "draws": rec.draws,
                                  "box": [int(j), int(i), int(ww), int(hh)]})
    finally:
        TT.torch = real_torch
    with open(out, "w") as f:
        json.dump({"cases": cases}, f)


def _carbike_files(root, every):
    files = []
    for split in ("train", "test"):
        for cls in ("bicycle", "car"):
            d = os.path.join(root, split, cls)
            files += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    return files[::every]


def _write_case(f, src, box, out_w, out_h, flip, ref):
    h, w = src.shape[:2]
    f.write(struct.pack("<9i", w, h, box[0], box[1], box[2], box[3], out_w, out_h, int(flip)))
    f.write(np.ascontiguousarray(src, dtype=np.uint8).tobytes())
    f.write(np.ascontiguousarray(ref, dtype=np.uint8).tobytes())


def cmd_resize(carbike, out):
    """Cases: int32 W,H,x,y,w,h,out_w,out_h,flip; then W*H*3 source bytes; then out_h*out_w*3."""
    rng = np.random.default_rng(99)
    torch.manual_seed(99)
    with open(out, "wb") as f:
        for path in _carbike_files(carbike, 13):
            img = Image.open(path).convert("RGB")
            src = np.asarray(img)
            W, H = img.size
            for k in range(4):
                if k == 0:
                    box, size = (0, 0, W, H), int(rng.choice([64, 32, 224, 100]))
                else:
                    i, j, hh, ww = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
                    box, size = (j, i, ww, hh), int(rng.choice([64, 32, 224, 57]))
                flip = bool(rng.integers(0, 2))
                ref = F.resized_crop(img, box[1], box[0], box[3], box[2], [size, size])
                if flip:
                    ref = F.hflip(ref)
                _write_case(f, src, box, size, size, flip, np.asarray(ref))
        # Synthetic: big downscales, upscales, non-square outputs, odd boxes, identity sizes.
        synth = [((300, 200), (0, 0, 300, 200), (7, 5)), ((300, 200), (13, 7, 271, 181), (31, 17)),
                 ((5, 3), (0, 0, 5, 3), (224, 224)), ((5, 3), (1, 1, 3, 2), (97, 13)),
                 ((640, 480), (100, 50, 400, 400), (64, 64)), ((64, 64), (3, 5, 40, 40), (40, 40)),
                 ((64, 64), (3, 5, 40, 40), (40, 64)), ((64, 64), (3, 5, 40, 40), (64, 40)),
                 ((1, 1), (0, 0, 1, 1), (64, 64)), ((1000, 7), (0, 0, 1000, 7), (3, 3)),
                 ((99, 101), (0, 0, 99, 101), (100, 100)), ((64, 64), (0, 0, 64, 64), (64, 64))]
        for (W, H), box, (ow, oh) in synth:
            src = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            src[: H // 2, : W // 3] = 255  # flat regions and hard edges as well as noise
            img = Image.fromarray(src)
            for flip in (False, True):
                ref = F.resized_crop(img, box[1], box[0], box[3], box[2], [oh, ow])
                if flip:
                    ref = F.hflip(ref)
                _write_case(f, src, box, ow, oh, flip, np.asarray(ref))


def cmd_normalize(carbike, out):
    """Records: int32 W,H; float32 mean[3], std[3]; W*H*3 bytes; 3*H*W float32 (CHW)."""
    ramp = np.zeros((3, 256, 3), dtype=np.uint8)
    for c in range(3):
        ramp[c, :, c] = np.arange(256)
        ramp[c, :, (c + 1) % 3] = 255 - np.arange(256)
    images = [ramp] + [np.asarray(Image.open(p).convert("RGB")) for p in _carbike_files(carbike, 400)]
    norms = [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5, 0.25, 0.1), (0.3, 0.7, 1.7))]
    with open(out, "wb") as f:
        for mean, std in norms:
            tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
            for a in images:
                t = tf(Image.fromarray(a)).numpy().astype(np.float32)
                f.write(struct.pack("<2i", a.shape[1], a.shape[0]))
                f.write(struct.pack("<6d", *mean, *std))
                f.write(np.ascontiguousarray(a).tobytes())
                f.write(np.ascontiguousarray(t).tobytes())


def cmd_exp(out):
    """int32 n; n float32 inputs; n float32 torch.exp outputs (one tensor, and single elements)."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-0.7, 0.7, 200000), rng.uniform(-20, 20, 20000),
                        np.log(np.float32([0.75, 4 / 3, 0.5, 2.0]))]).astype(np.float32)
    y = torch.exp(torch.from_numpy(x)).numpy()
    y1 = np.float32([torch.exp(torch.tensor([v])).item() for v in x[:2000]])
    assert (y1 == y[:2000]).all(), "torch.exp differs between 1-element and large tensors"
    with open(out, "wb") as f:
        f.write(struct.pack("<i", len(x)))
        f.write(x.tobytes())
        f.write(y.astype(np.float32).tobytes())


def main(argv):
    cmd = argv[1]
    if cmd == "crops":
        cmd_crops(argv[2])
    elif cmd == "resize":
        cmd_resize(argv[2], argv[3])
    elif cmd == "normalize":
        cmd_normalize(argv[2], argv[3])
    elif cmd == "exp":
        cmd_exp(argv[2])
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
