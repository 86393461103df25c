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


def roofline(row: dict, *, tensors_moved: int = 5) -> dict:
    """What one row of ``torch_tools.bandwidth_sweep`` (or a committed benchmark result) says.

    ``bytes`` is the minimum batch norm must move forward and backward (``tensors_moved`` tensor sizes:
    forward reads x and writes y, backward reads x and dy and writes dx); ``copy_seconds_for_bytes`` is
    how long that traffic would take at the rate the copy achieved; ``tensors_to_explain`` is how many
    tensor sizes batch norm would have to move at the copy's rate to take as long as it did. A
    memory-bound kernel has ``tensors_to_explain`` close to the number of passes it really makes.
    """
    size = row["megabytes"] * 2**20
    bn_bytes = tensors_moved * size
    bn_rate = bn_bytes / row["bn_seconds"]
    copy_rate = 2 * size / row["copy_seconds"]
    return {
        "tensor_bytes": size,
        "bytes": bn_bytes,
        "seconds": row["bn_seconds"],
        "rate": bn_rate,
        "copy_rate": copy_rate,
        "share_of_copy": bn_rate / copy_rate,
        "copy_seconds_for_bytes": bn_bytes / copy_rate,
        "tensors_to_explain": row["bn_seconds"] * copy_rate / size,
    }
