#!/usr/bin/python3
"""TorchScript backbones for the C++ tests (extract --backbone torchscript:FILE).

Usage:
  /usr/bin/python3 tests/py/ref_torchscript.py save MODEL OUT.pt [--seed S] [--size S]
  /usr/bin/python3 tests/py/ref_torchscript.py ref MODEL OUT.f32 --views IN.f32 --size S [--seed S]
  /usr/bin/python3 tests/py/ref_torchscript.py bad DIR

save: torch.manual_seed(S), then torchvision's MODEL with random weights, its classifier removed,
  traced (torch.jit.trace on two random views of S px) and written with torch.jit.save:
    resnet18  fc = Identity: the 512-d global average pool
    resnet50  likewise, 2048-d (bench/head2048_bench.sh)
    vgg16     features + avgpool + flatten: the 25088-d pool5 vector
    vit_b_16  heads = Identity: the 768-d class token (S must be 224, its image size)
ref: the same eager model (same seed, so the same weights) on the n x 3 x S x S float32 views in
  IN.f32 (what extract fed the module), output flattened per view to OUT.f32 (n x dim float32):
  the reference the cache must equal.
bad: modules extract must refuse, in DIR: tuple.pt (returns a tuple), dict.pt (a dict), long.pt
  (an int64 tensor), batchdim.pt (one flat tensor for the whole batch), per_batch.pt (the length
  per view is the batch size), content.pt (the length depends on the values), newer.pt (a
  tiny module whose archive claims format version 99, as a newer PyTorch's would), and
  state_dict.pt (torch.save of a state_dict, not TorchScript).
"""
import argparse
import os
import sys
import zipfile

import numpy as np
import torch
import torchvision


def build(name, seed):
    torch.manual_seed(seed)
    if name == "resnet18":
        m = torchvision.models.resnet18()
        m.fc = torch.nn.Identity()
    elif name == "resnet50":
        m = torchvision.models.resnet50()
        m.fc = torch.nn.Identity()
    elif name == "vgg16":
        v = torchvision.models.vgg16()
        m = torch.nn.Sequential(v.features, v.avgpool, torch.nn.Flatten(1))
    elif name == "vit_b_16":
        m = torchvision.models.vit_b_16()
        m.heads = torch.nn.Identity()
    else:
        sys.exit(f"unknown model {name}")
    return m.eval()


class Tuple(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)), x.amax(dim=(2, 3))


class Dict(torch.nn.Module):
    def forward(self, x):
        return {"features": x.mean(dim=(2, 3))}


class Long(torch.nn.Module):
    def forward(self, x):
        return (x.mean(dim=(2, 3)) * 100).to(torch.int64)


class BatchDim(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)).flatten()


class PerBatch(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=1).flatten(1)[:, : x.shape[0]]


class Content(torch.nn.Module):
    def forward(self, x):
        if bool(x.mean() > 0.0):
            return x.mean(dim=(2, 3))
        return x.mean(dim=1).flatten(1)[:, :5]


def save_bad(out):
    os.makedirs(out, exist_ok=True)
    for name, cls in [("tuple", Tuple), ("dict", Dict), ("long", Long), ("batchdim", BatchDim),
                      ("per_batch", PerBatch), ("content", Content)]:
        torch.jit.save(torch.jit.script(cls()), os.path.join(out, name + ".pt"))
    # A file from a newer PyTorch: the same zip layout with a format version this one lacks.
    good = os.path.join(out, "good.pt")
    torch.jit.save(torch.jit.script(torch.nn.Flatten(1)), good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(os.path.join(out, "newer.pt"), "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("/version"):
                data = b"99\n"
            dst.writestr(item, data)
    torch.save(torch.nn.Linear(3, 2).state_dict(), os.path.join(out, "state_dict.pt"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["save", "ref", "bad"])
    ap.add_argument("model")  # the model name, or DIR for bad
    ap.add_argument("out", nargs="?")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.command == "bad":
        save_bad(a.model)
        return 0
    model = build(a.model, a.seed)
    if a.command == "save":
        with torch.no_grad():
            traced = torch.jit.trace(model, torch.randn(2, 3, a.size, a.size))
        torch.jit.save(traced, a.out)
        return 0
    x = torch.from_numpy(np.fromfile(a.views, dtype="<f4")).reshape(-1, 3, a.size, a.size)
    with torch.inference_mode():
        y = model(x).flatten(1)
    y.numpy().astype("<f4").tofile(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
