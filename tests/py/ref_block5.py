#!/usr/bin/python3
"""torch reference for the C++ block-5 engine (tests/finetune/test_block5.cpp).

Usage: /usr/bin/python3 tests/py/ref_block5.py DIR N H W [--threads 2]

Reads from DIR (raw little-endian float32, row-major):
  x.f32            N x 512 x H x W, the pool4 maps
  w{1,2,3}.f32     512 x 512 x 3 x 3, b{1,2,3}.f32 512: features.24/26/28
  dout.f32         N x 25088, the gradient of a loss with respect to the output
  mask{1,2,3}.f32  N x 512 x H x W, 1 where the C++ ReLU passed the gradient, else 0
  pick.f32         N x 512 x H/2 x W/2, the input index (within H x W) the C++ pool5 chose
Builds torchvision's vgg16().features[24:31] + avgpool with these weights and writes to DIR:
  out32.f32, out64.f64             the output (float32 and float64 torch)
  pre{1,2,3}.f64, pick64.f64       float64 pre-activations and torch's pool5 choices: the C++
                                   test checks that its own decisions differ only where a
                                   rounding error can flip them
  dw{1,2,3}.f64, db{1,2,3}.f64, dx.f64
                                   float64 autograd gradients of the same piecewise-linear
                                   function with the C++ decisions (ReLU masks, pool5 picks):
                                   near a tie, float32 and float64 may decide differently, and
                                   the gradient would then jump by a whole term; fixing the
                                   decisions leaves only rounding between the two.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F


def load(d, name, shape):
    return torch.from_numpy(np.fromfile(os.path.join(d, name), dtype="<f4").reshape(shape))


def save(d, name, t, dtype):
    t.detach().numpy().astype(dtype).tofile(os.path.join(d, name))


def torchvision_block5(x, ws, bs):
    """The layers as torchvision's features[24:31] and avgpool compute them."""
    for w, b in zip(ws, bs):
        x = F.relu(F.conv2d(x, w, b, padding=1))
    return torch.flatten(F.adaptive_avg_pool2d(F.max_pool2d(x, 2, 2), (7, 7)), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("n", type=int)
    ap.add_argument("h", type=int)
    ap.add_argument("w", type=int)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n, h, w, d = a.n, a.h, a.w, a.dir
    x = load(d, "x.f32", (n, 512, h, w))
    ws = [load(d, f"w{i}.f32", (512, 512, 3, 3)) for i in (1, 2, 3)]
    bs = [load(d, f"b{i}.f32", (512,)) for i in (1, 2, 3)]
    dout = load(d, "dout.f32", (n, 25088))
    masks = [load(d, f"mask{i}.f32", (n, 512, h, w)).double() for i in (1, 2, 3)]
    pick = load(d, "pick.f32", (n, 512, h // 2, w // 2)).long()

    with torch.no_grad():
        save(d, "out32.f32", torchvision_block5(x, ws, bs), "<f4")
        save(d, "out64.f64", torchvision_block5(x.double(), [t.double() for t in ws],
                                                [t.double() for t in bs]), "<f8")
        a64 = x.double()
        for i, (wt, b) in enumerate(zip(ws, bs)):
            pre = F.conv2d(a64, wt.double(), b.double(), padding=1)
            save(d, f"pre{i + 1}.f64", pre, "<f8")
            a64 = F.relu(pre)
        _, pick64 = F.max_pool2d(a64, 2, 2, return_indices=True)
        save(d, "pick64.f64", pick64.double(), "<f8")

    x64 = x.double().requires_grad_()
    w64 = [t.double().requires_grad_() for t in ws]
    b64 = [t.double().requires_grad_() for t in bs]
    act = x64
    for wt, b, m in zip(w64, b64, masks):
        act = F.conv2d(act, wt, b, padding=1) * m
    pooled = act.flatten(2).gather(2, pick.flatten(2)).view(n, 512, h // 2, w // 2)
    out = torch.flatten(F.adaptive_avg_pool2d(pooled, (7, 7)), 1)
    out.backward(dout.double())
    for i in range(3):
        save(d, f"dw{i + 1}.f64", w64[i].grad, "<f8")
        save(d, f"db{i + 1}.f64", b64[i].grad, "<f8")
    save(d, "dx.f64", x64.grad, "<f8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
