"""BatchNorm2d forward+backward throughput against a plain device-to-device copy (a roofline view).

For each tensor size: the median time of BatchNorm2d forward+backward and of ``out.copy_(x)``, and the
achieved bandwidth of each, counting the minimum traffic (batch norm: read x, write y; read x and dy,
write dx = 5 tensor sizes; copy: 2 sizes). Runs on the device bnbook.torch_tools.select_device() picks
(set BNBOOK_DEVICE to override). Writes JSON with the device name, date and versions to
benchmarks/results/latest/bandwidth-<device type>.json (--save: the committed benchmarks/results/), or to --out.

    python benchmarks/bench_bandwidth.py [--sizes-mb 1 4 16 64 256] [--repeats 20] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bnbook import torch_tools


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None, help="where to write the JSON (default benchmarks/results/latest/)")
    parser.add_argument(
        "--save", action="store_true", help="overwrite the committed benchmarks/results/bandwidth-<device>.json"
    )
    args = parser.parse_args(argv)
    if any(s <= 0 for s in args.sizes_mb):
        parser.error(f"--sizes-mb: expected positive sizes, got {args.sizes_mb}")
    device = torch_tools.select_device()
    meta = torch_tools.device_report(device)
    print(f"device {meta['device']} ({meta['name']}), torch {meta['torch']}, CUDA {meta['cuda']}", flush=True)

    def progress(k, total, row):
        print(
            f"[{k}/{total}] {row['megabytes']:8.1f} MB: batch norm {row['bn_gbps']:7.1f} GB/s, "
            f"copy {row['copy_gbps']:7.1f} GB/s, ratio {row['bn_gbps'] / row['copy_gbps']:.2f}",
            flush=True,
        )

    rows = torch_tools.bandwidth_sweep(args.sizes_mb, device, repeats=args.repeats, progress=progress)
    folder = ("results",) if args.save else ("results", "latest")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), *folder, f"bandwidth-{device.type}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2)
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
