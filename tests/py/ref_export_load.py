#!/usr/bin/env python3
"""Loads a model written by `vggcache-export --format pth` the way its users will, and classifies
images with it in PyTorch alone.

  ref_export_load.py MODEL.pth OUT.csv [--head HEAD.bin [--features CACHE]] IMAGE...

Runs the sidecar's (MODEL.pth.json) `load` snippet verbatim (torchvision vgg16, classifier
replaced by the head, load_state_dict(torch.load(F, weights_only=True)), eval mode), checks the
classifier is the documented Sequential, then preprocesses each image as predict's eval view does
(PIL convert("RGB"), Resize((size, size)) bilinear, ToTensor, Normalize(mean, std) from the
sidecar) and writes `path,p_<class>...` with one probability per class in label order (for one
sigmoid output: 1 - p, p), %.17g. With --head, also OUT.csv.exact: the original head.bin (read by
python/vggcache, standardisation applied explicitly) evaluated in float64 on torchvision's own
features of the same images, which isolates the rounding of the exported (folded) classifier from
the features' differences to predict's.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../python"))


def main():
    model_path, out_path, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    head_path, cache_path = None, None
    while images[:1] in (["--head"], ["--features"]):
        if images[0] == "--head":
            head_path = images[1]
        else:
            cache_path = images[1]
        images = images[2:]
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
    if head["hidden"] == 0:  # a linear probe: Linear, then the output
        assert isinstance(c, nn.Sequential) and len(c) == 2, c
        assert isinstance(c[0], nn.Linear) and c[0].in_features == 25088
        assert c[0].out_features == head["outputs"]
        assert isinstance(c[1], nn.Sigmoid if head["outputs"] == 1 else nn.Softmax)
    else:
        assert isinstance(c, nn.Sequential) and len(c) == 5, c
        assert isinstance(c[0], nn.Linear) and c[0].in_features == 25088
        assert c[0].out_features == head["hidden"] and c[3].out_features == head["outputs"]
        assert isinstance(c[1], nn.ReLU) and isinstance(c[2], nn.Dropout)
        assert isinstance(c[4], nn.Sigmoid if head["outputs"] == 1 else nn.Softmax)
    assert not m.training

    pre = side["preprocessing"]
    x = eval_inputs(images, pre["size"], pre["mean"], pre["std"])
    with torch.no_grad():
        y = m(x).double()
        feats = torch.flatten(m.avgpool(m.features(x)), 1).double().numpy()
    write(out_path, side, images, two_columns(y.numpy()))
    if head_path:
        write(out_path + ".exact", side, images, exact_head(head_path, feats))
    if head_path and cache_path:
        ours = exact_head(head_path, cache_features(cache_path, images))
        write(out_path + ".features", side, images, np.abs(ours - exact_head(head_path, feats)))


def eval_inputs(images, size, mean, std):
    """N × 3 × size × size float32: predict's eval view of each image, in torchvision."""
    tf = T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
    return torch.stack([tf(Image.open(p).convert("RGB")) for p in images])


def two_columns(p):
    return np.concatenate([1 - p, p], axis=1) if p.shape[1] == 1 else p


def exact_head(path, x):
    from vggcache import read_head
    h = read_head(path)
    w1, b1 = (np.asarray(h[k], np.float64) for k in ("w1", "b1"))
    if h["standardize"]:
        x = (x - np.asarray(h["mean"], np.float64)) / np.asarray(h["std"], np.float64)
    if h["hidden"] == 0:  # a linear probe
        z = x @ w1.T + b1
    else:
        w2, b2 = (np.asarray(h[k], np.float64) for k in ("w2", "b2"))
        z = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    if z.shape[1] == 1:
        return two_columns(1 / (1 + np.exp(-z)))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cache_features(path, images):
    """N × 25088 float64: each image's eval-view vector in the cache at `path` (extract --eval of
    the images' folder, which computes them as predict does), matched by relative path."""
    from vggcache import Cache
    with Cache(path) as c:
        vecs, idx = c.vectors(), c.index()
        by_path = {c.image_paths[int(r["image"])]: vecs[i] for i, r in enumerate(idx)}
    out = []
    for p in images:
        hits = [v for rel, v in by_path.items() if p.endswith(os.sep + rel)]
        assert len(hits) == 1, (p, len(hits))
        out.append(hits[0])
    return np.asarray(out, np.float64)


def write(path, side, images, probs):
    with open(path, "w") as f:
        f.write("path," + ",".join("p_" + c for c in side["classes"]) + "\n")
        for p, row in zip(images, probs.tolist()):
            f.write(p + "," + ",".join("%.17g" % v for v in row) + "\n")


if __name__ == "__main__":
    main()
