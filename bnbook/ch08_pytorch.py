"""Chapter 8 (PyTorch): figures (the torch helpers are in :mod:`bnbook.torch_tools`)."""

from __future__ import annotations

from .style import PALETTE, pyplot


def bandwidth_plot(results: dict):
    """Achieved bandwidth of BatchNorm2d forward+backward and of a plain copy, against tensor size,
    one pair of lines per device (``results``: label -> rows from torch_tools.bandwidth_sweep)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    for (label, rows), colour in zip(results.items(), (PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3])):
        mb = [r["megabytes"] for r in rows]
        ax.loglog(mb, [r["copy_gbps"] for r in rows], "s--", color=colour, label=f"{label}: copy")
        ax.loglog(mb, [r["bn_gbps"] for r in rows], "o-", color=colour, label=f"{label}: BatchNorm2d fwd+bwd")
    ax.set_xlabel("tensor size (MB)")
    ax.set_ylabel("achieved bandwidth (GB/s)")
    ax.legend(fontsize=8)
    return fig
