#!/usr/bin/env python3
"""Loads a model written by `vggcache-export --format pth` the way its users will, and classifies
images with it in PyTorch alone.

  ref_export_load.py MODEL.pth OUT.csv IMAGE...

Runs the sidecar's (MODEL.pth.json) `load` snippet verbatim (torchvision vgg16, classifier
replaced by the head, load_state_dict(torch.load(F, weights_only=True)), eval mode), checks the
classifier is the documented Sequential, then preprocesses each image as predict's eval view does
(PIL convert("RGB"), Resize((size, size)) bilinear, ToTensor, Normalize(mean, std) from the
sidecar) and writes `path,p_<class>...` with one probability per class in label order (for one
sigmoid output: 1 - p, p), %.9g.
"""
import json
import os
import sys

import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn


def main():
    model_path, out_path, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    torch.set_num_threads(2)
    with open(model_path + ".json") as f:
        side = json.load(f)
    assert side["format"] == "pth" and side["file"] == os.path.basename(model_path), side
    here = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(model_path)))  # the snippet names the file alone
    scope = {}
    exec(side["load"], scope)
    os.chdir(here)
    m = scope["m"]
    head = side["head"]
    c = m.classifier
    assert isinstance(c, nn.Sequential) and len(c) == 5, c
    assert isinstance(c[0], nn.Linear) and c[0].in_features == 25088
    assert c[0].out_features == head["hidden"] and c[3].out_features == head["outputs"]
    assert isinstance(c[1], nn.ReLU) and isinstance(c[2], nn.Dropout)
    assert isinstance(c[4], nn.Sigmoid if head["outputs"] == 1 else nn.Softmax)
    assert not m.training

    pre = side["preprocessing"]
    size = pre["size"]
    tf = T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR),
        T.ToTensor(),
        T.Normalize(pre["mean"], pre["std"]),
    ])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        y = m(x).double()
    if head["outputs"] == 1:
        y = torch.cat([1 - y, y], dim=1)
    with open(out_path, "w") as f:
        f.write("path," + ",".join("p_" + c for c in side["classes"]) + "\n")
        for p, row in zip(images, y.tolist()):
            f.write(p + "," + ",".join("%.9g" % v for v in row) + "\n")


if __name__ == "__main__":
    main()
