"""Update latency of every interactive figure in the book (bnbook.explore.all_figures()).

One update is what happens when a reader moves a control in Jupyter: compute, draw, encode the PNG.
Each figure is warmed up once (imports, the data set), then every combination of its grid is timed
once, in grid order. A figure backed by precomputed training runs (training_curves) trains them all
in its warm-up, about 10 s, as it does on its first display in Jupyter; its updates are redraws. The goal is a median under 150 ms per figure on the 2-core reference machine;
the sum over all frames is also what the book build spends on interactive figures.
Results are printed and written to benchmarks/results/latest/ (not committed); --save overwrites the
committed benchmarks/results/bench_figures.json.

    python benchmarks/bench_figures.py [--out PATH | --save] [--limit-ms 150]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np

from bnbook import explore as explore_module
from bnbook import style

HERE = os.path.dirname(os.path.abspath(__file__))
COMMITTED = os.path.join(HERE, "results", "bench_figures.json")
LATEST = os.path.join(HERE, "results", "latest", "bench_figures.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help=f"where to write the JSON (default {LATEST})")
    parser.add_argument("--save", action="store_true", help=f"overwrite the committed results, {COMMITTED}")
    parser.add_argument("--limit-ms", type=float, default=150.0, help="goal for the median update (default 150)")
    args = parser.parse_args(argv)
    args.out = args.out or (COMMITTED if args.save else LATEST)
    style.use_style()
    registry = explore_module.all_figures()
    results, worst = [], 0.0
    names = sorted(registry)
    print(f"{len(names)} interactive figures; timing every combination of each grid", flush=True)
    for i, name in enumerate(names, 1):
        explorer = explore_module.explore(registry[name])
        explorer.render()  # warm-up: imports, data set
        times = []
        for k, combo in enumerate(explorer.combinations(), 1):
            times.append(explorer.time_update(**combo))
            print(f"\r[{i}/{len(names)}] {name}: {k}/{explorer.n_frames} frames", end="", flush=True)
        t = np.array(times) * 1e3
        row = {
            "figure": name,
            "frames": explorer.n_frames,
            "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)),
            "max_ms": float(t.max()),
            "total_s": float(t.sum() / 1e3),
        }
        results.append(row)
        worst = max(worst, row["median_ms"])
        print(
            f"\r[{i}/{len(names)}] {name}: median {row['median_ms']:.0f} ms, p90 {row['p90_ms']:.0f} ms, "
            f"max {row['max_ms']:.0f} ms over {row['frames']} frames ({row['total_s']:.1f} s in the build)",
            flush=True,
        )
    total = sum(r["total_s"] for r in results)
    ok = worst < args.limit_ms
    print(
        f"worst median {worst:.0f} ms (goal < {args.limit_ms:.0f} ms): {'OK' if ok else 'OVER'}; "
        f"all frames together {total:.1f} s"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "matplotlib": matplotlib.__version__,
        "numpy": np.__version__,
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "limit_ms": args.limit_ms, "results": results}, f, indent=2)
    print(f"results written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
