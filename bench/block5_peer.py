"""The PyTorch peer of bench/block5_bench.sh: torchvision's block 5 (features[24:31] + avgpool),
forward and backward for the six conv tensors from pool4-like inputs, best of ITERS rounds.
Usage: block5_peer.py BATCH SIZE ITERS THREADS   (SIZE: pool4's side, 4 for 64-pixel crops)"""
import json
import sys
import time

import torch
import torch.nn.functional as F

batch, size, iters, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(3)
ws = [(torch.randn(512, 512, 3, 3) * (2 / 4608) ** 0.5).requires_grad_() for _ in range(3)]
bs = [torch.zeros(512, requires_grad=True) for _ in range(3)]
x = torch.randn(batch, 512, size, size).clamp_(min=0)
d_out = torch.randn(batch, 25088)
best = float("inf")
for it in range(iters + 1):  # the first round warms up
    t0 = time.perf_counter()
    a = x
    for w, b in zip(ws, bs):
        a = F.relu(F.conv2d(a, w, b, padding=1))
    out = torch.flatten(F.adaptive_avg_pool2d(F.max_pool2d(a, 2, 2), (7, 7)), 1)
    out.backward(d_out)
    s = time.perf_counter() - t0
    if it > 0:
        best = min(best, s)
print(json.dumps({"crops_per_second": batch / best, "threads": threads}))
