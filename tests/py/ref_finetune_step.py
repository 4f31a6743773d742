#!/usr/bin/python3
"""torch reference for tests/finetune/test_finetune_step.cpp: block 5 + head trained together.

Usage: /usr/bin/python3 tests/py/ref_finetune_step.py DIR

Builds torchvision's vgg16().features[24:31] + avgpool + the head (Linear, ReLU, Dropout(0),
Linear, Sigmoid for two classes) from weights the C++ test wrote, and trains it on the C++
test's batches with torch.optim.Adam or torch.optim.SGD (momentum) in two parameter groups:
block 5 at lr_block5, the head at lr. With "float64": true in config.json it trains the same
network a second time in float64 (the same float32 initial weights and inputs, widened), the
near-exact training the C++ test measures both float32 trainings against. Files in DIR (raw
little-endian arrays, shapes in config.json):
  in:  config.json, x.f32 (pool x 512 x h x w), y.i32 (pool), schedule.i32 (steps x batch),
       conv{1,2,3}_w.f32 (512 x 512 x 3 x 3), conv{1,2,3}_b.f32 (512),
       head_w1.f32 (hidden x 25088), head_b1.f32, head_w2.f32 (outputs x hidden), head_b2.f32
  out: ref_losses.f64 (steps) and ref_<name>.f32 for each of the ten tensors after the last step;
       with float64, also ref64_losses.f64 and ref64_<name>.f64
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn

CONVS = ["conv1", "conv2", "conv3"]


def load(d, name, dtype, shape):
    return np.fromfile(os.path.join(d, name), dtype=dtype).reshape(shape)


def train(d, cfg, dtype):
    """Trains block 5 + head in `dtype`; returns the steps' losses and the final named tensors."""
    pool, h, w, hidden, classes = cfg["pool"], cfg["h"], cfg["w"], cfg["hidden"], cfg["classes"]
    outputs = 1 if classes == 2 else classes
    x = torch.from_numpy(load(d, "x.f32", np.float32, (pool, 512, h, w))).to(dtype)
    y = torch.from_numpy(load(d, "y.i32", np.int32, (pool,)).astype(np.int64))
    sched = torch.from_numpy(
        load(d, "schedule.i32", np.int32, (cfg["steps"], cfg["batch"])).astype(np.int64))

    block5 = nn.Sequential(
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1))
    head = [nn.Linear(25088, hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(hidden, outputs)]
    if outputs == 1:
        head.append(nn.Sigmoid())
    head = nn.Sequential(*head)
    block5.to(dtype)
    head.to(dtype)
    convs = [block5[0], block5[2], block5[4]]

    def set_(param, name, shape):
        param.copy_(torch.from_numpy(load(d, name + ".f32", np.float32, shape)))

    with torch.no_grad():
        for name, conv in zip(CONVS, convs):
            set_(conv.weight, name + "_w", (512, 512, 3, 3))
            set_(conv.bias, name + "_b", (512,))
        set_(head[0].weight, "head_w1", (hidden, 25088))
        set_(head[0].bias, "head_b1", (hidden,))
        set_(head[3].weight, "head_w2", (outputs, hidden))
        set_(head[3].bias, "head_b2", (outputs,))

    groups = [{"params": block5.parameters(), "lr": cfg["lr_block5"]},
              {"params": head.parameters(), "lr": cfg["lr"]}]
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(groups, lr=cfg["lr"], eps=cfg["eps"],
                               weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                              weight_decay=cfg["weight_decay"])
    criterion = nn.BCELoss() if outputs == 1 else nn.CrossEntropyLoss()
    block5.train()
    head.train()
    losses = []
    for s in range(cfg["steps"]):
        idx = sched[s]
        out = head(block5(x[idx]))
        loss = (criterion(out.squeeze(1), y[idx].to(dtype)) if outputs == 1
                else criterion(out, y[idx]))
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()

    tensors = []
    for name, conv in zip(CONVS, convs):
        tensors += [(name + "_w", conv.weight), (name + "_b", conv.bias)]
    tensors += [("head_w1", head[0].weight), ("head_b1", head[0].bias),
                ("head_w2", head[3].weight), ("head_b2", head[3].bias)]
    return losses, tensors


def main():
    d = sys.argv[1]
    cfg = json.load(open(os.path.join(d, "config.json")))
    torch.set_num_threads(cfg.get("threads", 2))
    runs = [("ref", torch.float32, np.float32, "f32")]
    if cfg.get("float64", False):
        runs.append(("ref64", torch.float64, np.float64, "f64"))
    for prefix, dtype, np_dtype, ext in runs:
        losses, tensors = train(d, cfg, dtype)
        np.asarray(losses, dtype=np.float64).tofile(os.path.join(d, prefix + "_losses.f64"))
        for name, t in tensors:
            t.detach().numpy().astype(np_dtype).tofile(
                os.path.join(d, "%s_%s.%s" % (prefix, name, ext)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
