#!/usr/bin/python3
"""Writes VGG16 state_dict files with seeded random weights, plus reference data for C++ tests.

Usage: /usr/bin/python3 tests/py/make_vgg16_pth.py OUTDIR SEED [options]

Writes, in OUTDIR:
  vgg16_legacy.pth      torch.save(sd, f, _use_new_zipfile_serialization=False), the format of
                        torchvision's official vgg16-397923af.pth
  vgg16_zip.pth         torch.save(sd, f), the default zip format
  vgg16_reference.json  for every tensor: shape, float64 sum, and values at fixed flat indices
With --edge-cases also small files exercising what real state_dicts rarely contain
(non-contiguous strides, storage offsets, shared storages, other dtypes, zip64, compression):
  edge_legacy.pth, edge_zip.pth, edge_zip64.pth, edge_deflated.pth, edge_plain_dict.pth,
  edge_old_style.pth    (tensors via _rebuild_tensor, Python 2 OrderedDict; no "param" entry)
  edge_reference.json   every value of every edge tensor, row-major, as float

The weights are torchvision.models.vgg16()'s own random init (no download) under
torch.manual_seed(SEED), except that biases (zero-initialised by torchvision) get small seeded
random values too, so that loading them is actually checked. Same SEED -> same weights.
"""
import argparse
import collections
import json
import os
import zipfile

import torch
import torchvision


def sample_indices(n):
    """Fixed flat positions spread over a tensor of n elements (first, last, interior)."""
    if n == 0:
        return []
    picks = {0, n - 1, n // 2, n // 3, (7 * n) // 11, (5 * n) // 13, 12345 % n, 987654321 % n}
    return sorted(picks)


def vgg16_state_dict(seed, features_only):
    torch.manual_seed(seed)
    model = torchvision.models.vgg16()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.01)
    sd = model.state_dict()
    if features_only:
        kept = collections.OrderedDict((k, v) for k, v in sd.items() if k.startswith("features."))
        kept._metadata = sd._metadata
        sd = kept
    return sd


def reference(sd):
    out = collections.OrderedDict()
    for name, t in sd.items():
        flat = t.detach().reshape(-1).double()
        out[name] = {
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "sum": flat.sum().item(),
            "samples": [[i, flat[i].item()] for i in sample_indices(flat.numel())],
        }
    return out


def edge_state_dict(seed):
    """Small tensors covering strides, offsets, sharing and dtypes."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    sd = collections.OrderedDict()
    sd["contiguous"] = randn(3, 4)
    sd["transposed"] = randn(4, 5).t()
    base = randn(5, 6)
    sd["offset_slice"] = base[1:, 2:]  # storage offset 8, strides (6, 1) for a 4x4 view
    sd["offset_row"] = base[3]  # contiguous, storage offset 18, same storage as offset_slice
    shared = randn(2, 3, 4)
    sd["shared_whole"] = shared
    sd["shared_part"] = shared[1, :, 1:3]
    sd["permuted4d"] = randn(2, 3, 4, 5).permute(3, 1, 0, 2)
    sd["channels_last"] = randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    sd["expanded"] = randn(3, 1).expand(3, 4)  # stride 0
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["float64"] = randn(3, 2).double()
    sd["float16"] = (randn(2, 3) * 100).half()
    sd["float16_special"] = torch.tensor([0.0, -0.0, 6e-8, 1e-5, 65504.0, float("inf"), -2.5],
                                         dtype=torch.float16)
    sd["bfloat16"] = randn(5).bfloat16()
    sd["int64"] = torch.arange(-3, 4, dtype=torch.int64)
    sd["int32"] = torch.tensor([-7, 0, 2**20], dtype=torch.int32)
    sd["int16"] = torch.tensor([-300, 5], dtype=torch.int16)
    sd["int8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["uint8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(randn(2, 2))  # pickled via torch._utils._rebuild_parameter
    sd._metadata = collections.OrderedDict([("", {"version": 1})])  # as Module.state_dict() does
    return sd


class _OldStyleTensor:
    """Pickles like a tensor did before PyTorch 0.4: torch._utils._rebuild_tensor with four
    arguments (torchvision's vgg16-397923af.pth is of that kind)."""

    def __init__(self, t):
        self.t = t

    def __reduce__(self):
        t = self.t
        return (torch._utils._rebuild_tensor,
                (t.storage(), t.storage_offset(), tuple(t.size()), t.stride()))


class _Python2OrderedDict:
    """Pickles like a Python 2 OrderedDict: OrderedDict([[key, value], ...])."""

    def __init__(self, items):
        self.items = items

    def __reduce__(self):
        return (collections.OrderedDict, ([[k, v] for k, v in self.items],))


def save_old_style(sd, path):
    """A legacy file the way PyTorch 0.1-0.3 under Python 2 wrote it; torch.load still reads it."""
    skip = {"param"}  # _rebuild_tensor has no Parameter counterpart
    obj = _Python2OrderedDict([(k, _OldStyleTensor(v.detach())) for k, v in sd.items()
                               if k not in skip])
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    back = torch.load(path)
    assert list(back.keys()) == [k for k in sd.keys() if k not in skip]
    for k, v in back.items():
        assert torch.equal(v, sd[k].detach()), k


def json_float(v):
    """JSON has no inf/nan literals: those become the strings "inf", "-inf", "nan"."""
    v = float(v)
    return v if v == v and abs(v) != float("inf") else repr(v)


def edge_reference(sd):
    out = collections.OrderedDict()
    for name, t in sd.items():
        out[name] = {
            "shape": list(t.shape),
            "values": [json_float(v) for v in t.detach().float().reshape(-1).tolist()],
        }
    return out


def repack(src, dst, compression=zipfile.ZIP_STORED, zip64=False):
    """Copies a zip archive entry by entry, optionally compressed or with zip64 records."""
    saved_limit = zipfile.ZIP64_LIMIT
    if zip64:
        # Forces zip64 extra fields and end records even for tiny archives (zipfile decides by
        # comparing against this module constant).
        zipfile.ZIP64_LIMIT = 0
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))
    finally:
        zipfile.ZIP64_LIMIT = saved_limit


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("seed", type=int)
    ap.add_argument("--features-only", action="store_true",
                    help="keep only features.* tensors (~59 MB instead of ~528 MB per file)")
    ap.add_argument("--formats", default="legacy,zip",
                    help="comma-separated subset of legacy,zip for the vgg16 files")
    ap.add_argument("--no-vgg", action="store_true", help="skip the vgg16 files")
    ap.add_argument("--edge-cases", action="store_true", help="also write the edge_* files")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    formats = {f for f in args.formats.split(",") if f}
    if not formats <= {"legacy", "zip"}:
        ap.error("--formats takes legacy and/or zip")

    def out(name):
        return os.path.join(args.outdir, name)

    if not args.no_vgg:
        sd = vgg16_state_dict(args.seed, args.features_only)
        if "legacy" in formats:
            torch.save(sd, out("vgg16_legacy.pth"), _use_new_zipfile_serialization=False)
        if "zip" in formats:
            torch.save(sd, out("vgg16_zip.pth"))
        write_json(out("vgg16_reference.json"),
                   {"seed": args.seed, "torch": torch.__version__,
                    "order": list(sd.keys()), "tensors": reference(sd)})

    if args.edge_cases:
        sd = edge_state_dict(args.seed)
        torch.save(sd, out("edge_legacy.pth"), _use_new_zipfile_serialization=False)
        torch.save(sd, out("edge_zip.pth"))
        repack(out("edge_zip.pth"), out("edge_zip64.pth"), zip64=True)
        repack(out("edge_zip.pth"), out("edge_deflated.pth"), compression=zipfile.ZIP_DEFLATED)
        save_old_style(sd, out("edge_old_style.pth"))
        plain = {k: sd[k] for k in ("contiguous", "transposed")}  # a plain dict, not OrderedDict
        torch.save(plain, out("edge_plain_dict.pth"), _use_new_zipfile_serialization=False)
        write_json(out("edge_reference.json"),
                   {"seed": args.seed, "torch": torch.__version__,
                    "order": list(sd.keys()), "tensors": edge_reference(sd),
                    "plain_dict": list(plain.keys())})


if __name__ == "__main__":
    main()
