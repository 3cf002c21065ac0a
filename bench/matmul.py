"""The machine's fp32 matmul rate: the 'limit' that training FLOP/s are compared against."""
import argparse
import json

import torch

from common import Timer, set_threads

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--size", type=int, default=1024)
args = ap.parse_args()
set_threads(args.threads)
n = args.size
a, b = torch.randn(n, n), torch.randn(n, n)
for _ in range(3):
    a @ b
reps = 20
with Timer() as t:
    for _ in range(reps):
        a @ b
print(json.dumps({"case": f"matmul {n}x{n} fp32", "gflops": 2 * n**3 * reps / t.seconds / 1e9}))
