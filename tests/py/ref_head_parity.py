"""PyTorch reference for tests/train/test_train_parity.cpp.

Trains the head with torch.optim.Adam from initial weights and a batch schedule written by the
C++ test, dropout 0, and writes the loss of every step and the final weights, so the C++ trainer
can be compared step by step. Files in DIR (raw little-endian arrays, shapes in config.json):
  in:  config.json, x.f32 (pool × dim), y.i32 (pool), schedule.i32 (steps × batch),
       w1.f32 (hidden × dim), b1.f32, w2.f32 (outputs × hidden), b2.f32
  out: ref_losses.f64 (steps), ref_w1.f32, ref_b1.f32, ref_w2.f32, ref_b2.f32
Usage: python3 ref_head_parity.py DIR
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn


def load(d, name, dtype, shape):
    return np.fromfile(os.path.join(d, name), dtype=dtype).reshape(shape)


def main():
    d = sys.argv[1]
    cfg = json.load(open(os.path.join(d, "config.json")))
    dim, hidden, classes = cfg["dim"], cfg["hidden"], cfg["classes"]
    outputs = 1 if classes == 2 else classes
    torch.set_num_threads(cfg.get("threads", 2))
    x = torch.from_numpy(load(d, "x.f32", np.float32, (cfg["pool"], dim)))
    y = torch.from_numpy(load(d, "y.i32", np.int32, (cfg["pool"],)).astype(np.int64))
    sched = torch.from_numpy(
        load(d, "schedule.i32", np.int32, (cfg["steps"], cfg["batch"])).astype(np.int64))

    layers = [nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(hidden, outputs)]
    if outputs == 1:
        layers.append(nn.Sigmoid())
    model = nn.Sequential(*layers)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(load(d, "w1.f32", np.float32, (hidden, dim))))
        model[0].bias.copy_(torch.from_numpy(load(d, "b1.f32", np.float32, (hidden,))))
        model[3].weight.copy_(torch.from_numpy(load(d, "w2.f32", np.float32, (outputs, hidden))))
        model[3].bias.copy_(torch.from_numpy(load(d, "b2.f32", np.float32, (outputs,))))
    criterion = nn.BCELoss() if outputs == 1 else nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    model.train()
    losses = []
    for s in range(cfg["steps"]):
        idx = sched[s]
        out = model(x[idx])
        if outputs == 1:
            loss = criterion(out.squeeze(1), y[idx].float())
        else:
            loss = criterion(out, y[idx])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()

    np.asarray(losses, dtype=np.float64).tofile(os.path.join(d, "ref_losses.f64"))
    for name, t in (("w1", model[0].weight), ("b1", model[0].bias), ("w2", model[3].weight),
                    ("b2", model[3].bias)):
        t.detach().numpy().astype(np.float32).tofile(os.path.join(d, "ref_%s.f32" % name))


if __name__ == "__main__":
    main()
