"""Forward+backward of bnlib.BatchNorm against torch.nn.BatchNorm on the CPU, float32.

Runs are interleaved and paired (bnlib, torch, bnlib, torch, ...) so both see the same machine
state; the reported figure is the median of the per-pair ratios, with the interquartile range.
Also compares the staged backward with the closed form in TRAINING mode (batch statistics), after
checking that they agree. Results are printed and written to benchmarks/results/latest/ (not
committed); --save overwrites the committed benchmarks/results/bench_batchnorm.json.

    python benchmarks/bench_batchnorm.py [--repeats 30] [--out PATH | --save]
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
from bnbook import timing
from bnlib import functional as F

SHAPES = [(256, 1024), (4096, 1024), (64, 64, 32, 32)]
HERE = os.path.dirname(os.path.abspath(__file__))
COMMITTED = os.path.join(HERE, "results", "bench_batchnorm.json")
LATEST = os.path.join(HERE, "results", "latest", "bench_batchnorm.json")


def paired_ratios(fn_a, fn_b, repeats, warmup=3):
    """Per-round times of two functions (bnbook.timing's interleaved rounds) and their ratios."""
    times = timing.paired_timings({"a": fn_a, "b": fn_b}, repeats=repeats, warmup=warmup)
    return times["a"], times["b"], times["a"] / times["b"]


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

    # the backwards of TRAINING mode (batch statistics), checked equal before they are timed
    gamma = layer.gamma
    _, cache = F.batch_norm(x, None, None, gamma, None, True, return_cache=True, fast=True)
    staged = F.batch_norm_backward_staged(dy, x, gamma)
    for name, closed in (
        ("tuned", F.batch_norm_backward(dy, cache, fast=True)),
        ("readable", F.batch_norm_backward(dy, cache)),
    ):
        for got, want in zip(closed, staged):
            err = float(np.abs(np.asarray(got, np.float64) - want).max() / (np.abs(want).max() + 1e-30))
            if err > 1e-4:
                raise AssertionError(f"{shape}: {name} closed-form backward differs from the staged one by {err:.1e}")
    backwards = timing.paired_timings(
        {
            "staged": lambda: F.batch_norm_backward_staged(dy, x, gamma),
            "tuned": lambda: F.batch_norm_backward(dy, cache, fast=True),
            "readable": lambda: F.batch_norm_backward(dy, cache),
        },
        repeats=repeats,
    )
    staged_ratio = backwards["staged"] / backwards["tuned"]
    readable_ratio = backwards["staged"] / backwards["readable"]
    return {
        "shape": list(shape),
        "bnlib_s": summary(t_np),
        "torch_s": summary(t_torch),
        "bnlib_over_torch": summary(ratio),
        "staged_over_closed_backward": summary(staged_ratio),
        "staged_over_readable_closed_backward": summary(readable_ratio),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="paired repetitions per shape (default 30)")
    parser.add_argument("--out", default=None, help=f"where to write the JSON (default {LATEST})")
    parser.add_argument("--save", action="store_true", help=f"overwrite the committed results, {COMMITTED}")
    args = parser.parse_args(argv)
    out = args.out or (COMMITTED if args.save else LATEST)
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
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    with open(out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(
        f"results written to {out}" + ("" if args.save or args.out else " (pass --save to update the committed ones)")
    )


if __name__ == "__main__":
    main()
