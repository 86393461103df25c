"""The introduction's figure: batch norm in one picture."""

from __future__ import annotations

import numpy as np

from bnlib import BatchNorm

from .style import PALETTE, pyplot


def batch_norm_in_one_figure(means=(-3.0, 5.0, 40.0), stds=(0.5, 2.0, 10.0), batch_size=256, seed=0):
    """Three features on very different scales, before and after a BatchNorm layer (gamma=1, beta=0)."""
    plt = pyplot()
    rng = np.random.default_rng(seed)
    x = rng.normal(means, stds, size=(batch_size, len(means)))
    y = BatchNorm(len(means))(x)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2))
    for j in range(len(means)):
        label = f"feature {j + 1}"
        ax1.hist(x[:, j], bins=40, histtype="stepfilled", alpha=0.55, color=PALETTE[j], label=label)
        ax2.hist(y[:, j], bins=40, histtype="step", lw=2, color=PALETTE[j], label=label)
    ax1.set_title("a batch of pre-activations")
    ax2.set_title("the same batch after batch norm")
    for ax in (ax1, ax2):
        ax.set_xlabel("value")
        ax.set_ylabel("count")
    ax1.legend(fontsize=9)
    return fig, x, y
