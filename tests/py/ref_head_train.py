"""PyTorch reference run of the head, on vectors held in memory.

The same recipe as train_head (and the seed's notebook): Linear(D, hidden) -> ReLU -> Dropout ->
Linear(hidden, 1) -> Sigmoid with BCELoss (softmax cross-entropy for more classes), Adam; every
epoch each training image contributes one of its cached crops (--all-crops: all), batches
shuffled; test views averaged per image. Randomness comes from torch/numpy seeded by --seed, so
runs are statistically, not bitwise, comparable with train_head.

Inputs are `featcache export` outputs: PREFIX.npy (records x D float32), PREFIX.labels.npy,
PREFIX.index.csv (record, image, path, crop, label, ...).
--class-weight balanced weighs each sample's loss by n_images / (classes * n_class) over the
training images (sklearn's "balanced"), mean reduction dividing by the batch size N (BCELoss's
per-sample weight; for softmax, CrossEntropyLoss(reduction="none") * w[y], then .mean()), as
train_head does (head/loss.h).
Prints one JSON object: vectors_per_second, train_seconds, per-epoch metrics, final test accuracy
and balanced accuracy (mean recall over the test classes).
Used by tests/train/test_train_stat_parity.cpp, tests/train/test_imbalance.cpp and
bench/train_bench.sh.
"""
import argparse
import csv
import json
import time

import numpy as np
import torch
from torch import nn


def load(prefix):
    x = np.load(prefix + ".npy")
    labels = np.load(prefix + ".labels.npy").astype(np.int64)
    images = {}
    with open(prefix + ".index.csv") as f:
        for row in csv.DictReader(f):
            images.setdefault(int(row["image"]), []).append(int(row["record"]))
    order = sorted(images)
    return torch.from_numpy(x), torch.from_numpy(labels), [images[i] for i in order]


def balanced_accuracy(pred, lab):
    recalls = [float((pred[lab == c] == c).float().mean()) for c in torch.unique(lab)]
    return sum(recalls) / len(recalls)


def evaluate(model, x, y, groups, classes, crit_binary):
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 512]) for i in range(0, len(x), 512)])
        prob = torch.cat([1 - out, out], 1) if classes == 2 else torch.softmax(out, 1)
        avg = torch.stack([prob[g].mean(0) for g in groups])
        lab = torch.stack([y[g[0]] for g in groups])
        pred = (avg[:, 1] > 0.5).long() if classes == 2 else avg.argmax(1)
        p = avg.gather(1, lab[:, None]).squeeze(1)
        loss = -torch.clamp(torch.log(p), min=-100).mean()
    model.train()
    return float(loss), float((pred == lab).float().mean()), balanced_accuracy(pred, lab)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--all-crops", action="store_true")
    ap.add_argument("--standardize", action="store_true")
    ap.add_argument("--class-weight", choices=["none", "balanced"], default="none")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    xtr, ytr, gtr = load(a.train)
    xte, yte, gte = load(a.test)
    classes = int(max(ytr.max(), yte.max())) + 1
    if a.standardize:
        mean = xtr.double().mean(0)
        std = xtr.double().std(0, unbiased=False)
        std[std < 1e-6] = 1.0
        xtr = ((xtr.double() - mean) / std).float()
        xte = ((xte.double() - mean) / std).float()
    dim = xtr.shape[1]
    outputs = 1 if classes == 2 else classes
    layers = [nn.Linear(dim, a.hidden), nn.ReLU(), nn.Dropout(a.dropout),
              nn.Linear(a.hidden, outputs)]
    if outputs == 1:
        layers.append(nn.Sigmoid())
    model = nn.Sequential(*layers)
    crit = nn.BCELoss(reduction="none") if outputs == 1 else nn.CrossEntropyLoss(reduction="none")
    # Per-class weights over the training images (one label each), sklearn's "balanced" formula.
    image_labels = torch.stack([ytr[g[0]] for g in gtr])
    counts = torch.bincount(image_labels, minlength=classes).double()
    weight = torch.ones(classes)
    if a.class_weight == "balanced":
        present = int((counts > 0).sum())
        weight = torch.where(counts > 0, len(image_labels) / (present * counts),
                             torch.zeros_like(counts)).float()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)

    epochs, train_seconds, vectors = [], 0.0, 0
    for e in range(a.epochs):
        if a.all_crops:
            rows = np.array([r for g in gtr for r in g])
        else:
            rows = np.array([g[rng.integers(len(g))] for g in gtr])
        rows = torch.from_numpy(rng.permutation(rows))
        t0 = time.perf_counter()
        loss_sum, correct = 0.0, 0
        for i in range(0, len(rows), a.batch):
            idx = rows[i:i + a.batch]
            xb, yb = xtr[idx], ytr[idx]
            out = model(xb)
            if outputs == 1:
                out = out.squeeze(1)
                loss = (crit(out, yb.float()) * weight[yb]).mean()
                correct += int(((out > 0.5).long() == yb).sum())
            else:
                loss = (crit(out, yb) * weight[yb]).mean()
                correct += int((out.argmax(1) == yb).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(idx)
        dt = time.perf_counter() - t0
        train_seconds += dt
        vectors += len(rows)
        tl, ta, tb = evaluate(model, xte, yte, gte, classes, outputs == 1)
        epochs.append({"epoch": e + 1, "train_loss": loss_sum / len(rows),
                       "train_accuracy": correct / len(rows), "test_loss": tl,
                       "test_accuracy": ta, "test_balanced_accuracy": tb, "seconds": dt})
    print(json.dumps({"vectors_per_second": vectors / train_seconds, "train_seconds": train_seconds,
                      "train_vectors": vectors, "epochs": epochs,
                      "test_accuracy": epochs[-1]["test_accuracy"],
                      "test_balanced_accuracy": epochs[-1]["test_balanced_accuracy"],
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
