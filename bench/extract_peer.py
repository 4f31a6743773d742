#!/usr/bin/python3
"""PyTorch's side of bench/extract_bench.sh: torchvision vgg16().features + avgpool + flatten,
forward only, on real images of the split, at the same size, batch and thread count.

Usage: /usr/bin/python3 bench/extract_peer.py DIR [--size 64] [--batch 64] [--threads 2]
                                              [--views 512]
Prints "torch-forward: <img/s> img/s (...)" for the faster of NCHW and channels-last (timed after
one warm-up batch each), so the comparison is against PyTorch at its best on this machine.
"""
import argparse
import os
import time

import torch
import torchvision
from PIL import Image
from torchvision import transforms


def first_images(root, n):
    paths = []
    for cls in sorted(os.listdir(root)):
        d = os.path.join(root, cls)
        for name in sorted(os.listdir(d)):
            paths.append(os.path.join(d, name))
            if len(paths) >= n:
                return paths
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--views", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = torchvision.models.vgg16()
    net = torch.nn.Sequential(model.features, model.avgpool, torch.nn.Flatten(1)).eval()
    tf = transforms.Compose([
        transforms.Resize((args.size, args.size)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in first_images(args.dir, args.batch)])
    best = None
    for fmt in ("nchw", "channels_last"):
        m, xx = net, x
        if fmt == "channels_last":
            m = net.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            m(xx)  # warm-up
            done, t0, c0 = 0, time.perf_counter(), time.process_time()
            while done < args.views:
                m(xx)
                done += xx.shape[0]
            rate = done / (time.perf_counter() - t0)
            cpu_ms = 1000 * (time.process_time() - c0) / done
        print(f"  torch {fmt}: {rate:.2f} img/s, {cpu_ms:.1f} CPU-ms/img", flush=True)
        if best is None or rate > best[0]:
            best = (rate, fmt)
    print(f"torch-forward: {best[0]:.2f} img/s ({best[1]}, batch {x.shape[0]}, "
          f"{args.threads} threads, {args.size} px)")


if __name__ == "__main__":
    main()
