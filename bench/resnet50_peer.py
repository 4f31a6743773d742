#!/usr/bin/python3
"""PyTorch's side of bench/resnet50_bench.sh: torchvision resnet50() with fc = Identity, eval,
forward only under torch.inference_mode, on the same fixed input pattern as bench_resnet50, at the
same size, batch and thread count.

Usage: /usr/bin/python3 bench/resnet50_peer.py [--size 64] [--batch 32] [--threads 2]
                                               [--images 256]
Prints "torch-forward: <img/s> img/s, <ms> CPU-ms/img (...)" for the faster of NCHW and
channels-last (each timed after one warm-up batch), so the comparison is against PyTorch at its
best on this machine.
"""
import argparse
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()
    model.eval()
    n = args.batch * 3 * args.size * args.size
    # bench_resnet50's pattern: 1.5 sin(0.37 (i mod 100003)).
    x = (1.5 * torch.sin(0.37 * (torch.arange(n) % 100003).float())).view(
        args.batch, 3, args.size, args.size)
    best = None
    for fmt in ("nchw", "channels_last"):
        m, xx = model, x
        if fmt == "channels_last":
            m = model.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            m(xx)  # warm-up
            done, t0, c0 = 0, time.perf_counter(), time.process_time()
            while done < args.images:
                m(xx)
                done += xx.shape[0]
            rate = done / (time.perf_counter() - t0)
            cpu_ms = 1000 * (time.process_time() - c0) / done
        print(f"  torch {fmt}: {rate:.2f} img/s, {cpu_ms:.1f} CPU-ms/img", flush=True)
        if best is None or rate > best[0]:
            best = (rate, cpu_ms, fmt)
    print(f"torch-forward: {best[0]:.2f} img/s, {best[1]:.1f} CPU-ms/img ({best[2]}, batch "
          f"{args.batch}, {args.threads} threads, {args.size} px)")


if __name__ == "__main__":
    main()
