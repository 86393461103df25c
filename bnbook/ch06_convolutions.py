"""Chapter 6 (convolutions): which values share statistics, folding errors, per-channel spread."""

from __future__ import annotations

import numpy as np

from .style import PALETTE, pyplot


def normalization_groups(n=4, c=6, positions=4, groups=2):
    """Which elements of an (N, C, H*W) activation share one mean and variance, for four normalizations.

    Rows are samples; each channel is a block of ``positions`` columns (its H*W spatial positions).
    One colour = one set of statistics."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    ni, ci, pi = np.meshgrid(np.arange(n), np.arange(c), np.arange(positions), indexing="ij")
    layouts = {
        "batch norm: one set per channel": ci,
        "layer norm: one set per sample": ni,
        "instance norm: per sample and channel": ni * c + ci,
        f"group norm ({groups} groups): per sample and group": ni * groups + ci // (c // groups),
    }
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
    for ax, (title, ids) in zip(axes, layouts.items()):
        image = ids.reshape(n, c * positions)
        ax.imshow(image % 7, cmap=ListedColormap(PALETTE[:7]), aspect="auto", interpolation="nearest")
        for k in range(1, c):
            ax.axvline(k * positions - 0.5, color="white", lw=2)
        for k in range(1, n):
            ax.axhline(k - 0.5, color="white", lw=2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(
            [positions * k + (positions - 1) / 2 for k in range(c)], [f"C{k + 1}" for k in range(c)], fontsize=8
        )
        ax.set_yticks(range(n), [f"N{k + 1}" for k in range(n)], fontsize=8)
        ax.grid(False)
    return fig


def folding_errors(rows: dict):
    """Largest |folded - original| output difference per case, on a log scale (eval vs train mode)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    names = list(rows)
    values = [max(rows[k], 1e-17) for k in names]
    colours = [PALETTE[0] if "eval" in k else PALETTE[1] for k in names]
    ax.barh(names, values, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("largest |folded - unfolded| output")
    ax.axvline(1e-12, color="0.4", ls=":", lw=1)
    ax.invert_yaxis()
    return fig


def per_channel_spread(spreads: dict):
    """Per-channel output standard deviation for several ways of normalizing (1 is right), log scale."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = list(spreads)
    channels = len(next(iter(spreads.values())))
    width = 0.8 / len(names)
    for k, (name, colour) in enumerate(zip(names, (PALETTE[0], PALETTE[1], PALETTE[4]))):
        ax.bar(np.arange(channels) + (k - (len(names) - 1) / 2) * width, spreads[name], width, color=colour, label=name)
    ax.axhline(1.0, color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(channels), [f"channel {c + 1}" for c in range(channels)])
    ax.set_ylabel("output std per channel")
    ax.legend(fontsize=8)
    return fig
