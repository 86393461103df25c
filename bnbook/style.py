"""The book's figure style, shared figure helpers, and how printed numbers are formatted.

Okabe & Ito's colour-blind-safe palette, one matplotlib style for every figure, PNG encoding for
the interactive figures' frames, and the few plots several chapters share.
"""

from __future__ import annotations

import io

import numpy as np

#: Okabe & Ito's colour-blind-safe palette (black first, then the eight hues)
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 2.0,
    "image.cmap": "viridis",
    "svg.hashsalt": "bn-book",
}


def use_style():
    """Apply the book's matplotlib style (palette, sizes) to every later figure."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(STYLE)
    mpl.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)


def figure_to_png(fig, dpi=None) -> bytes:
    """Encode a matplotlib figure as PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def compact_png(png: bytes, colors: int = 128) -> bytes:
    """Re-encode a PNG with a palette of ``colors`` (median cut): about a third of the bytes for line
    art, with no visible change. Used for the frames embedded in the HTML book (tens per figure)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def pyplot():
    """matplotlib.pyplot, imported on first use so that importing bnbook stays cheap."""
    import matplotlib.pyplot as plt

    return plt


def frame(ncols=1, figsize=(6.4, 3.4), **adjust):
    """A figure for an interactive frame: fixed margins instead of constrained layout, which would
    draw every frame twice (the latency budget is 150 ms per update)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, ncols, figsize=figsize, layout="none")
    margins = dict(left=0.1, right=0.98, bottom=0.15, top=0.88, wspace=0.3)
    margins.update(adjust)
    fig.subplots_adjust(**margins)
    return fig, axes


def plain_log_ticks(axis):
    """Label a log axis's decades in plain text (0.01, 1, 100, 1e+04) and drop its minor ticks. The
    default labels are mathtext ($10^{-2}$), laid out anew on every draw: about 100 ms of an
    interactive frame's 150 ms budget."""
    plt = pyplot()
    axis.set_major_locator(plt.LogLocator(base=10))
    axis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(plt.NullLocator())


NORM_COLOURS = {"none": PALETTE[7], "batch": PALETTE[0], "layer": PALETTE[1], "group": PALETTE[2]}


ARM_COLOURS = [PALETTE[7], PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4]]


def setting_label(setting, keys):
    return ", ".join(f"{k} {setting.get(k) if setting.get(k) is not None else 'none'}" for k in keys)


def bars(values: dict, *, xlabel, reference=None, reference_label=None):
    """Horizontal bars, one per entry, with an optional dashed reference line."""
    plt = pyplot()
    names = list(values)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
    ax.barh(names, [values[k] for k in names], color=PALETTE[1])
    if reference is not None:
        ax.axvline(reference, color=PALETTE[0], ls="--", lw=2, label=reference_label)
        ax.legend(fontsize=9, loc="lower left")
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
    return fig


def history_curves(groups: dict, key="train_loss", ylabel="training loss", logy=True):
    """One band (min to max over seeds) and mean line per group of Histories."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for (name, histories), colour in zip(groups.items(), (PALETTE[0], PALETTE[1], PALETTE[2])):
        curves = np.array([getattr(h, key) for h in histories])
        epochs = np.arange(1, curves.shape[1] + 1)
        ax.plot(epochs, curves.mean(axis=0), "o-", color=colour, label=name)
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    return fig


def trace_plot(trace, *, reference, reference_label, label, ylabel, xlabel="training step"):
    """One quantity per training step on a log scale, with a dashed reference level."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.semilogy(np.arange(1, len(trace) + 1), trace, color=PALETTE[1], label=label)
    ax.axhline(reference, color=PALETTE[0], ls="--", label=reference_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    return fig


def at_rounding(value, floor=1e-12) -> str:
    """Format a difference that should be rounding error: "< 1e-12" when it is (its exact digits
    change from run to run with multithreaded BLAS), else the value, so a real discrepancy shows."""
    value = float(value)
    return f"< {floor:.0e}" if abs(value) < floor else f"{value:.1e}"
