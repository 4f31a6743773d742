#!/usr/bin/python3
"""torchvision reference features for the C++ VGG16 parity tests.

Usage:
  /usr/bin/python3 tests/py/ref_vgg16.py --weights FILE|random:SEED --root DIR --out OUT
                                         [--size 64] [--threads 2] IMAGE...
  /usr/bin/python3 tests/py/ref_vgg16.py --weights random:SEED --save-state OUT.pth

IMAGE paths are relative to --root. For each image, the torchvision eval view:
PIL open + convert("RGB") (ImageFolder's loader), Resize((size, size)), ToTensor, Normalize(ImageNet),
then vgg16().features + avgpool + flatten. Writes
  OUT.features.f32  n x 25088 float32, little-endian, row-major
  OUT.pool4.f32     n x 512 x size/16 x size/16 float32: features[:24], block 5's input
  OUT.input.f32     n x 3 x size x size float32: the network input, so the C++ side can check the
                    network alone on exactly the same tensor
--weights FILE loads a torchvision state_dict (features.* are used); random:SEED is
torch.manual_seed(SEED); torchvision.models.vgg16(), the init `extract --weights random:SEED` replays.
--save-state saves that model's features.* state_dict (zip format), so the C++ test can compare its
own random init with torch's through the same loader and kernels, bit for bit.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms


def build_model(spec):
    if spec.startswith("random:"):
        torch.manual_seed(int(spec[len("random:"):]))
        return torchvision.models.vgg16()
    model = torchvision.models.vgg16()
    sd = torch.load(spec, map_location="cpu")
    features = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    model.features.load_state_dict(features, strict=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--root")
    ap.add_argument("--out")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-state")
    ap.add_argument("images", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.weights).eval()

    if args.save_state:
        sd = model.state_dict()
        torch.save({k: v for k, v in sd.items() if k.startswith("features.")}, args.save_state)
        return 0

    if not args.out or not args.root or not args.images:
        ap.error("--out, --root and at least one IMAGE are required")
    tf = transforms.Compose([
        transforms.Resize((args.size, args.size)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    views = []
    for rel in args.images:
        with open(os.path.join(args.root, rel), "rb") as f:
            views.append(tf(Image.open(f).convert("RGB")))
    x = torch.stack(views)  # n x 3 x size x size
    net = torch.nn.Sequential(model.features, model.avgpool, torch.nn.Flatten(1))
    with torch.inference_mode():
        y = net(x)  # n x 25088
        pool4 = model.features[:24](x)
    x.numpy().astype("<f4").tofile(args.out + ".input.f32")
    y.numpy().astype("<f4").tofile(args.out + ".features.f32")
    pool4.numpy().astype("<f4").tofile(args.out + ".pool4.f32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
