"""The PyTorch side of bench/finetune_parity.sh: the fine-tune train_head runs, done by torch.

Reads the pool4 caches with the repository's Python reader (python/vggcache), starts block 5
from the weights file and the head from a frozen run's head.bin, trains both with Adam or SGD with
momentum (block 5 at LR_BLOCK5, the head at LR, two param groups), batch BATCH, dropout DROPOUT,
EPOCHS passes in a torch.manual_seed(SEED) shuffle, then evaluates the test cache in eval mode.
Prints one JSON line: test_accuracy, and init_test_accuracy (the head before fine-tuning).
Usage: finetune_parity_peer.py --train A.pool4 --test B.pool4 --weights W.pth --init-head H.bin
       --seed S [--epochs 3] [--batch 100] [--lr 1e-3] [--lr-block5 1e-4] [--dropout 0.5]
       [--threads 2] [--optimizer adam|sgd] [--momentum 0.9]"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torchvision
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from vggcache import VggCacheError, open_cache, read_head  # noqa: E402


def load_maps(path):
    try:
        with open_cache(path) as c:
            if c.cut != "pool4":
                sys.exit(f"finetune_parity_peer: {path}: a {c.cut} cache, expected pool4")
            x = c.vectors().reshape((-1,) + c.cut_shape)
            y = c.labels()
    except VggCacheError as e:
        sys.exit(f"finetune_parity_peer: {path}: {e}")
    return torch.from_numpy(x), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--train", "--test", "--weights", "--init-head"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-block5", type=float, default=1e-4)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--momentum", type=float, default=0.9)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    vgg = torchvision.models.vgg16()
    try:
        vgg.load_state_dict(torch.load(a.weights, map_location="cpu"), strict=False)
    except (OSError, RuntimeError) as e:
        sys.exit(f"finetune_parity_peer: {a.weights}: not a VGG16 state_dict ({e})")
    block5 = nn.Sequential(vgg.features[24:31], vgg.avgpool, nn.Flatten(1))
    try:
        h = read_head(a.init_head)
    except VggCacheError as e:
        sys.exit(f"finetune_parity_peer: {a.init_head}: {e}")
    if h["hidden"] == 0 or h["standardize"]:
        sys.exit(f"finetune_parity_peer: {a.init_head}: expected a hidden-layer head without "
                 "--standardize (what fine-tuning accepts)")
    head = nn.Sequential(nn.Linear(h["dim"], h["hidden"]), nn.ReLU(), nn.Dropout(a.dropout),
                         nn.Linear(h["hidden"], h["outputs"]))
    with torch.no_grad():
        for layer, w, b in ((head[0], "w1", "b1"), (head[3], "w2", "b2")):
            layer.weight.copy_(torch.from_numpy(h[w]))
            layer.bias.copy_(torch.from_numpy(h[b]))
    binary = h["outputs"] == 1
    loss_fn = nn.BCEWithLogitsLoss() if binary else nn.CrossEntropyLoss()
    model = nn.Sequential(block5, head)

    x, y = load_maps(a.train)
    tx, ty = load_maps(a.test)

    def evaluate():  # test accuracy and mean loss, as train_head's metrics.jsonl reports them
        model.eval()
        with torch.no_grad():
            z = torch.cat([model(tx[i:i + 200]) for i in range(0, len(tx), 200)])
            loss = loss_fn(z.squeeze(1), ty.float()) if binary else loss_fn(z, ty)
        pred = (z.squeeze(1) > 0).long() if binary else z.argmax(1)
        return float((pred == ty).double().mean()), float(loss)

    init, init_loss = evaluate()
    groups = [{"params": block5.parameters(), "lr": a.lr_block5},
              {"params": head.parameters(), "lr": a.lr}]
    opt = (torch.optim.Adam(groups) if a.optimizer == "adam" else
           torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum))
    per_epoch = []  # as train_head's metrics.jsonl: the epoch's mean train loss and accuracy
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(x))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(x), a.batch):
            idx = order[i:i + a.batch]
            z = model(x[idx])
            loss = loss_fn(z.squeeze(1), y[idx].float()) if binary else loss_fn(z, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                pred = (z.squeeze(1) > 0).long() if binary else z.argmax(1)
                correct += int((pred == y[idx]).sum())
                loss_sum += float(loss) * len(idx)
        test_acc, test_loss = evaluate()
        per_epoch.append({"epoch": epoch + 1, "train_loss": loss_sum / len(x),
                          "train_accuracy": correct / len(x), "test_accuracy": test_acc,
                          "test_loss": test_loss})
    last = per_epoch[-1] if per_epoch else {"test_accuracy": init, "test_loss": init_loss}
    print(json.dumps({"seed": a.seed, "test_accuracy": last["test_accuracy"],
                      "test_loss": last["test_loss"], "init_test_accuracy": init,
                      "init_test_loss": init_loss, "epochs": a.epochs, "train": len(x),
                      "test": len(tx), "per_epoch": per_epoch}))


if __name__ == "__main__":
    main()
