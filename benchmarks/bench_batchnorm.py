"""Forward+backward of bnlib.BatchNorm against torch.nn.BatchNorm on the CPU, float32.

Runs are interleaved and paired (bnlib, torch, bnlib, torch, ...) so both see the same machine
state; the reported figure is the median of the per-pair ratios, with the interquartile range.
Also compares the staged backward with the closed form. Results are printed and written to
benchmarks/results/bench_batchnorm.json (override with --out).

    python benchmarks/bench_batchnorm.py [--repeats 30] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import bnlib
from bnlib import functional as F

SHAPES = [(256, 1024), (4096, 1024), (64, 64, 32, 32)]


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ratios(fn_a, fn_b, repeats, warmup=3):
    for _ in range(warmup):
        fn_a(), fn_b()
    a, b = [], []
    for i in range(repeats):
        if i % 2:  # alternate which goes first, so neither always runs on a warm cache
            tb, ta = _time(fn_b), _time(fn_a)
        else:
            ta, tb = _time(fn_a), _time(fn_b)
        a.append(ta)
        b.append(tb)
    a, b = np.array(a), np.array(b)
    return a, b, a / b


def summary(values):
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def bench_shape(shape, repeats):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    c = shape[1]
    layer = bnlib.BatchNorm(c)
    torch_layer = {2: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)](c)
    tx = torch.from_numpy(x).requires_grad_()
    tdy = torch.from_numpy(dy)

    def run_bnlib():
        layer.forward(x)
        layer.backward(dy)

    def run_torch():
        tx.grad = None
        torch_layer(tx).backward(tdy)

    t_np, t_torch, ratio = paired_ratios(run_bnlib, run_torch, repeats)

    mean, var = F.moments(x, F.reduction_axes(x.ndim))
    _, cache = F.batch_norm_forward(x, mean, var, layer.gamma, layer.beta, 1e-5)
    gamma = layer.gamma
    t_staged, t_closed, staged_ratio = paired_ratios(
        lambda: F.batch_norm_backward_staged(dy, x, gamma),
        lambda: F.batch_norm_backward(dy, cache),
        repeats,
    )
    return {
        "shape": list(shape),
        "bnlib_s": summary(t_np),
        "torch_s": summary(t_torch),
        "bnlib_over_torch": summary(ratio),
        "staged_over_closed_backward": summary(staged_ratio),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="paired repetitions per shape (default 30)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_batchnorm.json"))
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error(f"--repeats: expected at least 3, got {args.repeats}")
    results = []
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, float32, "
        f"{args.repeats} paired repeats per shape",
        flush=True,
    )
    for i, shape in enumerate(SHAPES, 1):
        print(f"[{i}/{len(SHAPES)}] shape {shape} ...", end=" ", flush=True)
        r = bench_shape(shape, args.repeats)
        results.append(r)
        print(
            f"bnlib {r['bnlib_s']['median'] * 1e3:.2f} ms, torch {r['torch_s']['median'] * 1e3:.2f} ms, "
            f"ratio {r['bnlib_over_torch']['median']:.2f}x (IQR {r['bnlib_over_torch']['q1']:.2f}-"
            f"{r['bnlib_over_torch']['q3']:.2f}); staged/closed backward "
            f"{r['staged_over_closed_backward']['median']:.2f}x",
            flush=True,
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
