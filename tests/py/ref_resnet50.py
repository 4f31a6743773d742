#!/usr/bin/python3
"""torchvision reference data for the C++ ResNet-50 parity tests (tests/extract/test_resnet50.cpp).

Usage: /usr/bin/python3 tests/py/ref_resnet50.py OUT_DIR [--threads 2]

Writes into OUT_DIR:
  resnet50_legacy.pth, resnet50_zip.pth
      one torchvision resnet50 state_dict in torch's legacy format
      (_use_new_zipfile_serialization=False; without num_batches_tracked, like torchvision's
      resnet50-0676ba61.pth) and in the zip format (every key, like resnet50-11ad3fa6.pth). Its
      weights are torch.manual_seed(3); resnet50(), with non-trivial batch norms: running
      statistics measured on random images in train mode (so activations keep ImageNet-like
      scales through the 16 blocks instead of growing block by block), then random affine
      weight in [0.5, 1.5) and bias ~ N(0, 0.2²), so every part of eval-mode BN matters.
  random5.pth
      the state_dict of torch.manual_seed(5); resnet50() untouched (zip format): what
      `extract --weights random:5` must hold bit for bit.
  input_S.f32      n x 3 x S x S float32 normalised inputs (S = 64, 100, 224)
  features_S.f32   n x 2048: resnet50_zip.pth's model (fc = Identity, eval) on input_S
  random5_64.f32   n x 2048: the random:5 model on input_64
All float32 files are little-endian and row-major.
"""
import argparse
import os
import sys

import torch
import torchvision

SIZES = {64: 3, 100: 2, 224: 2}  # side -> images (a few: 224 px costs ~0.2 s per image per side)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def inputs(size, n, seed):
    """Normalised images: smooth random colour fields (bilinear upsampling of a coarse grid) plus
    pixel noise, in [0, 1] before Normalize, like ToTensor's output of a photo."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                        align_corners=False)
    x = (x + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    return (x - MEAN) / STD


def perturbed_model():
    torch.manual_seed(3)
    model = torchvision.models.resnet50()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0  # running stats := this batch's statistics
    model.train()
    with torch.no_grad():
        model(inputs(64, 8, seed=11))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
            bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=g))
            bn.momentum = 0.1
    return model.eval()


def features(model, x):
    model.fc = torch.nn.Identity()
    with torch.inference_mode():
        return model.eval()(x)


def write_f32(path, t):
    t.detach().contiguous().numpy().astype("<f4").tofile(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    model = perturbed_model()
    sd = model.state_dict()
    # Legacy without the batch counters, like torchvision's resnet50-0676ba61.pth (older than
    # num_batches_tracked); the zip file has them, like resnet50-11ad3fa6.pth.
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, os.path.join(args.out, "resnet50_legacy.pth"),
               _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(args.out, "resnet50_zip.pth"))
    for size, n in SIZES.items():
        x = inputs(size, n, seed=size)
        write_f32(os.path.join(args.out, f"input_{size}.f32"), x)
        write_f32(os.path.join(args.out, f"features_{size}.f32"), features(model, x))

    torch.manual_seed(5)
    rand = torchvision.models.resnet50()
    torch.save(rand.state_dict(), os.path.join(args.out, "random5.pth"))
    write_f32(os.path.join(args.out, "random5_64.f32"), features(rand, inputs(64, 3, seed=64)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
