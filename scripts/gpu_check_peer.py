#!/usr/bin/env python3
"""PyTorch's own forward-only throughput for VGG16's features, the peer scripts/gpu-check.sh
prints next to extract's images/s. Plain torch.nn (torchvision may be absent): cfg "D"'s 13
convolutions and 5 max-pools, He-initialised (the values do not change the speed), then
AdaptiveAvgPool2d(7, 7), channels-last and inference mode as extract runs it, TF32 off as extract
sets it. Input: random N x 3 x S x S already on the device (no decode, no copy: an upper bound
for extract, which also decodes, augments and copies).
Usage: gpu_check_peer.py --device cuda --size 224 --batch 256 --precision bf16 [--seconds 5]"""
import argparse
import time

import torch

CFG_D = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def vgg16_features():
    layers, c_in = [], 3
    for v in CFG_D:
        if v == 0:
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            conv = torch.nn.Conv2d(c_in, v, 3, padding=1)
            torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(conv.bias)
            layers += [conv, torch.nn.ReLU(inplace=True)]
            c_in = v
    layers.append(torch.nn.AdaptiveAvgPool2d((7, 7)))
    return torch.nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--seconds", type=float, default=5.0, help="timed run length, after warm-up")
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev, dtype = torch.device(a.device), DTYPES[a.precision]
    net = vgg16_features().to(dev, dtype).to(memory_format=torch.channels_last).eval()
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        sync()
        t0, n = time.perf_counter(), 0
        while True:
            net(x).float()
            n += 1
            sync()
            dt = time.perf_counter() - t0
            if dt >= a.seconds:
                break
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"peer: torch {torch.__version__} on {name}: {a.size} px {a.precision} batch {a.batch}: "
          f"{n * a.batch / dt:.1f} images/s forward-only ({n} batches in {dt:.2f} s)")


if __name__ == "__main__":
    main()
