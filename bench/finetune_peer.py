"""The PyTorch peers of bench/finetune_bench.sh: fine-tuning VGG16's block 5 + the head with Adam
(block 5 at LR_BLOCK5, the head at LR, two param groups, as train_head does), batch BATCH, on the
same images and the same weights file as train_head.

  --mode maps    from pool4 maps held in memory (computed once, untimed, by features[:24]), the
                 work train_head does from its pool4 cache
  --mode images  from the images: blocks 1-4 (frozen) run under no_grad on every step, then
                 block 5 + head with gradients, as a plain PyTorch fine-tune does

Images are decoded once into memory (Resize to SIZE, ImageNet normalisation); no augmentation,
which costs no GEMM time. Times STEPS steps after WARMUP untimed ones, cycling over the images;
prints one JSON line with crops_per_second.
Usage: finetune_peer.py --data DIR --weights W.pth --mode maps|images [--batch 100] [--steps 5]
       [--warmup 1] [--threads 2] [--hidden 256] [--dropout 0.5] [--lr 1e-3] [--lr-block5 1e-4]
       [--size 64]"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn


def load_images(root, size):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(classes) < 2:
        sys.exit(f"finetune_peer: {root}: expected an ImageFolder with >= 2 class directories")
    xs, ys = [], []
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    for label, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(root, c))):
            path = os.path.join(root, c, name)
            try:
                img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
            except OSError as e:
                sys.exit(f"finetune_peer: {path}: cannot decode ({e})")
            xs.append(((np.asarray(img, np.float32) / 255 - mean) / std).transpose(2, 0, 1))
            ys.append(label)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys), len(classes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--mode", choices=["maps", "images"], required=True)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-block5", type=float, default=1e-4)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    vgg = torchvision.models.vgg16()
    try:
        vgg.load_state_dict(torch.load(a.weights, map_location="cpu"), strict=False)
    except (OSError, RuntimeError) as e:
        sys.exit(f"finetune_peer: {a.weights}: not a VGG16 state_dict ({e})")
    frozen = vgg.features[:24].eval()  # blocks 1-4, through pool4
    for p in frozen.parameters():
        p.requires_grad_(False)
    block5 = nn.Sequential(vgg.features[24:31], vgg.avgpool, nn.Flatten(1))
    x, y, classes = load_images(a.data, a.size)
    outputs = 1 if classes == 2 else classes
    head = nn.Sequential(nn.Linear(25088, a.hidden), nn.ReLU(), nn.Dropout(a.dropout),
                         nn.Linear(a.hidden, outputs))
    opt = torch.optim.Adam([{"params": block5.parameters(), "lr": a.lr_block5},
                            {"params": head.parameters(), "lr": a.lr}])
    loss_fn = nn.BCEWithLogitsLoss() if outputs == 1 else nn.CrossEntropyLoss()

    if a.mode == "maps":
        with torch.no_grad():
            x = torch.cat([frozen(x[i:i + 256]) for i in range(0, len(x), 256)])

    def step(i):
        lo = (i * a.batch) % len(x)
        idx = torch.arange(lo, lo + a.batch) % len(x)
        xb, yb = x[idx], y[idx]
        if a.mode == "images":
            with torch.no_grad():
                xb = frozen(xb)
        z = head(block5(xb))
        loss = loss_fn(z.squeeze(1), yb.float()) if outputs == 1 else loss_fn(z, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    block5.train()
    head.train()
    for i in range(a.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(a.warmup, a.warmup + a.steps):
        step(i)
    s = time.perf_counter() - t0
    print(json.dumps({"mode": a.mode, "crops_per_second": a.steps * a.batch / s,
                      "steps": a.steps, "batch": a.batch, "threads": a.threads,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
