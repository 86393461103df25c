"""Chapter 8's GPU measurements: load ``gpu_figures.json`` (written by ``benchmarks/gpu_figures.py``) and draw
its figures. Needs matplotlib for the figures, never torch.

    results = gpu_results.load()            # None when the folder has no gpu_figures.json
    if results:
        fig = gpu_results.bandwidth_vs_copy(results)
        print(gpu_results.provenance_line(results["meta"]))
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict

__all__ = ["FILENAME", "load", "provenance_line", "bandwidth_rows", "bandwidth_vs_copy", "roofline", "epoch_times"]

FILENAME = "gpu_figures.json"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COLORS = {"float32": "C0", "bfloat16": "C1", "float16": "C2"}
_STYLES = {"contiguous": "-", "channels_last": "--"}


def load(folder="book/data/gpu"):
    """The parsed ``gpu_figures.json`` in ``folder`` (or ``folder`` itself if it names a file), else None.

    A relative ``folder`` is looked up from the current directory first, then from the repository root,
    so the default works from the root and from ``book/``."""
    candidates = [folder] if os.path.isabs(folder) else [folder, os.path.join(ROOT, folder)]
    for candidate in candidates:
        path = candidate if os.path.isfile(candidate) else os.path.join(candidate, FILENAME)
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
    return None


def provenance_line(meta) -> str:
    """One line for under a figure: ``NVIDIA H200, 2026-12-02, torch 2.11.0, CUDA 12.8``.

    Accepts the ``meta`` dict or the whole results. Quick (smoke-test) runs say so."""
    meta = meta.get("meta", meta)
    date = (meta.get("date_utc") or meta.get("date") or "unknown date")[:10]
    on_gpu = str(meta.get("device", "")).startswith("cuda")
    # a CPU run says so even with a CUDA build of torch (whose CUDA version the JSON still records)
    cuda = f"CUDA {meta['cuda']}" if on_gpu and meta.get("cuda") else "CPU, no GPU"
    parts = [
        meta.get("device_name") or meta.get("device", "unknown device"),
        date,
        f"torch {meta.get('torch', '?')}",
        cuda,
    ]
    if meta.get("quick"):
        parts.append("quick mode (smoke test, not a measurement)")
    return ", ".join(parts)


def bandwidth_rows(results):
    """The measured (not skipped) rows of the bandwidth sweep, grouped by (dtype, memory format), by size."""
    groups = defaultdict(list)
    for row in results["bandwidth"]["rows"]:
        if "skipped" not in row:
            groups[(row["dtype"], row["memory_format"])].append(row)
    return {key: sorted(rows, key=lambda r: r["bytes_tensor"]) for key, rows in groups.items()}


def _label(dtype, memory_format):
    return f"{dtype}{' (autocast)' if dtype != 'float32' else ''}, {memory_format}"


def _mb(row):
    return row["bytes_tensor"] / 2**20


def _size_axis(ax, groups):
    sizes = sorted({_mb(r) for rows in groups.values() for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("tensor size (MB = 2^20 bytes)")


def _plt():
    import matplotlib.pyplot as plt

    return plt


def bandwidth_vs_copy(results):
    """Achieved GB/s of BatchNorm2d forward+backward (5 tensor sizes moved) per dtype and memory format,
    against ``out.copy_(x)`` (2 sizes) of float32 contiguous tensors, by tensor size."""
    groups = bandwidth_rows(results)
    fig, ax = _plt().subplots(figsize=(7.2, 4.0), layout="constrained")
    for (dtype, fmt), rows in groups.items():
        ax.plot(
            [_mb(r) for r in rows],
            [r["bn_fwdbwd_gbps"] for r in rows],
            _STYLES.get(fmt, ":"),
            marker="o",
            markersize=3.5,
            color=_COLORS.get(dtype, "C3"),
            label=_label(dtype, fmt),
        )
    copy = groups.get(("float32", "contiguous")) or next(iter(groups.values()), [])
    if copy:
        ax.plot(
            [_mb(r) for r in copy],
            [r["copy_gbps"] for r in copy],
            ":",
            marker="s",
            markersize=3.5,
            color="black",
            label=f"copy out.copy_(x), {copy[0]['dtype']} {copy[0]['memory_format']}",
        )
    _size_axis(ax, groups)
    ax.set_yscale("log")
    ax.set_ylabel("achieved bandwidth (GB/s, minimum traffic)")
    ax.set_title("BatchNorm2d forward+backward against a device-to-device copy")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def roofline(results):
    """BatchNorm2d forward+backward bandwidth as a fraction of the copy bandwidth on the same tensor."""
    groups = bandwidth_rows(results)
    fig, ax = _plt().subplots(figsize=(7.2, 4.0), layout="constrained")
    top = 1.0
    for (dtype, fmt), rows in groups.items():
        fractions = [r["bn_fwdbwd_gbps"] / r["copy_gbps"] for r in rows]
        top = max([top, *fractions])
        ax.plot(
            [_mb(r) for r in rows],
            fractions,
            _STYLES.get(fmt, ":"),
            marker="o",
            markersize=3.5,
            color=_COLORS.get(dtype, "C3"),
            label=_label(dtype, fmt),
        )
    ax.axhline(1.0, color="black", linewidth=1, label="copy bandwidth (the roofline)")
    ax.axhline(5 / 8, color="gray", linestyle=":", linewidth=1, label="two-pass bound: 5 of 8 sizes moved")
    _size_axis(ax, groups)
    ax.set_ylim(0, 1.1 * top)
    ax.set_ylabel("fraction of copy bandwidth")
    ax.set_title("BatchNorm2d forward+backward: share of the copy roofline achieved")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def epoch_times(results):
    """Seconds per training epoch of the chapter's small CNN on the CPU and the GPU, with and without
    batch norm: median over seeds, bars from the fastest to the slowest seed, mean accuracy on top."""
    runs = results["cnn"]["runs"]
    devices = list(dict.fromkeys(r["device"] for r in runs))
    models = [True, False]
    fig, ax = _plt().subplots(figsize=(6.4, 3.8), layout="constrained")
    width = 0.8 / max(1, len(devices))
    for j, device in enumerate(devices):
        mine = [[r for r in runs if r["device"] == device and r["batch_norm"] == bn] for bn in models]
        name = next(r["device_name"] for r in runs if r["device"] == device)
        xs, heights, low, high, accs = [], [], [], [], []
        for i, group in enumerate(mine):
            if not group:
                continue
            secs = sorted(r["seconds_per_epoch"] for r in group)
            median = statistics.median(secs)
            xs.append(i + (j - (len(devices) - 1) / 2) * width)
            heights.append(median)
            low.append(median - secs[0])
            high.append(secs[-1] - median)
            accs.append(sum(r["final_accuracy"] for r in group) / len(group))
        bars = ax.bar(
            xs,
            heights,
            width * 0.95,
            yerr=[low, high],
            capsize=3,
            color=f"C{j}",
            label=f"{device.upper() if device == 'cpu' else 'GPU'}: {name}",
        )
        for bar, acc in zip(bars, accs):
            ax.annotate(
                f"acc {acc:.3f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 3),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(models)), ["with batch norm", "without batch norm"])
    ax.set_xlabel("model: bnbook.torch_tools.small_cnn, batch 64, SGD")
    ax.set_ylabel("seconds per epoch (s)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    seeds, epochs = results["cnn"].get("seeds", []), results["cnn"].get("epochs")
    ax.set_title(f"Small CNN on 8x8 digits: time per epoch ({len(seeds)} seed(s), {epochs} epoch(s))")
    ax.legend(fontsize=8)
    return fig
