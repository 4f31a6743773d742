#!/usr/bin/env python3
"""Loads a model written by `vggcache-export --format pth` the way its users will, and classifies
images with it in PyTorch alone.

  ref_export_load.py MODEL.pth OUT.csv [--head HEAD.bin [--features CACHE] [--block5-rel E]]
                     IMAGE...

Runs the sidecar's (MODEL.pth.json) `load` snippet verbatim (torchvision vgg16, classifier
replaced by the head, load_state_dict(torch.load(F, weights_only=True)), eval mode), checks the
classifier is the documented Sequential, then preprocesses each image as predict's eval view does
(PIL convert("RGB"), Resize((size, size)) bilinear, ToTensor, Normalize(mean, std) from the
sidecar) and writes `path,p_<class>...` with one probability per class in label order (for one
sigmoid output: 1 - p, p), %.17g. With --head, also OUT.csv.exact: the original head.bin (read by
python/vggcache, standardisation applied explicitly) evaluated in float64 on torchvision's own
features of the same images, which isolates the rounding of the exported (folded) classifier from
the features' differences to predict's. With --features, OUT.csv.features: how far the same
float64 head's probabilities on the cache's vectors (predict's features) are from those on
torchvision's.

A head fine-tuned with block 5 (its head.bin holds features.24/26/28): the float64 references run
its tuned block 5 (conv + ReLU ×3, max-pool, adaptive 7×7 average pool) on the pool4 maps
(torchvision's: m.features[:24] of the exported model, whose blocks 1-4 are the file's; the
cache's: a pool4 cache), and OUT.csv.bound holds, per image and class, what a float32 evaluation
of that block may change the probability by: E × the image's largest pooled feature × the L1
norm of the probability's float64 gradient with respect to the pooled features (E: the caller's
relative rounding bound of the block, --block5-rel).
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
    opts = {"--head": None, "--features": None, "--block5-rel": None}
    while images[:1] and images[0] in opts:
        opts[images[0]] = images[1]
        images = images[2:]
    head_path, cache_path = opts["--head"], opts["--features"]
    from vggcache import read_head
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
    h = read_head(head_path) if head_path else None  # read (and CRC-checked) once
    tuned = h is not None and h["block5"]
    with torch.no_grad():
        y = m(x).double()
        if tuned:  # torchvision's pool4 maps, block 5 in float64 from the head file
            pool4 = m.features[:24](x)
            feats = tuned_block5(h, pool4)
        else:
            feats = torch.flatten(m.avgpool(m.features(x)), 1).double().numpy()
    write(out_path, side, images, two_columns(y.numpy()))
    if h:
        write(out_path + ".exact", side, images, exact_head(h, feats))
    if h and cache_path:
        cached = cache_features(cache_path, images)
        if tuned:
            cached = tuned_block5(h, torch.from_numpy(cached).reshape(pool4.shape))
        ours = exact_head(h, cached)
        write(out_path + ".features", side, images, np.abs(ours - exact_head(h, feats)))
    if tuned:
        rel = float(opts["--block5-rel"])
        grad = gradient_l1(h, feats)  # N × classes
        write(out_path + ".bound", side, images, grad * rel * np.abs(feats).max(axis=1)[:, None])


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


def tuned_block5(h, pool4):
    """N × 25088 float64: the head's tuned block 5 (read_head's dict `h`) on pool4 maps
    (N × 512 × h × w), in float64, then torchvision's max-pool and adaptive 7×7 average pool,
    flattened."""
    x = pool4.double()
    for i in (24, 26, 28):
        w = torch.from_numpy(np.asarray(h[f"features.{i}.weight"], np.float64))
        b = torch.from_numpy(np.asarray(h[f"features.{i}.bias"], np.float64))
        x = torch.relu(torch.nn.functional.conv2d(x, w, b, padding=1))
    x = torch.nn.functional.adaptive_avg_pool2d(torch.nn.functional.max_pool2d(x, 2), (7, 7))
    return torch.flatten(x, 1).numpy()


def head_probabilities(h, x):
    """The head in float64 (torch tensors, so that it can be differentiated): N × classes."""
    t = lambda k: torch.from_numpy(np.asarray(h[k], np.float64))
    if h["standardize"]:
        x = (x - t("mean")) / t("std")
    z = x @ t("w1").T + t("b1")
    if h["hidden"] != 0:  # a linear probe has no second layer
        z = torch.relu(z) @ t("w2").T + t("b2")
    if z.shape[1] == 1:
        p = torch.sigmoid(z)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(z, dim=1)


def exact_head(h, x):
    with torch.no_grad():
        return head_probabilities(h, torch.from_numpy(np.asarray(x, np.float64))).numpy()


def gradient_l1(h, x):
    """N × classes: the L1 norm over the features of each probability's float64 gradient."""
    x = torch.from_numpy(np.asarray(x, np.float64)).requires_grad_(True)
    p = head_probabilities(h, x)
    out = np.zeros(tuple(p.shape))
    for c in range(p.shape[1]):
        (g,) = torch.autograd.grad(p[:, c].sum(), x, retain_graph=True)
        out[:, c] = g.abs().sum(dim=1).numpy()
    return out


def cache_features(path, images):
    """N × dim float64: each image's eval-view vector in the cache at `path` (extract --eval of
    the images' folder, which computes them as predict does; a pool4 cache holds the maps),
    matched by relative path."""
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
