"""Progress bars for the chapters' long cells, in Jupyter only: :func:`progress_bar`.

A cell that trains dozens of networks (chapter 5's batch-size sweep, the runs behind chapter 7's
training curves) takes tens of seconds; in Jupyter it shows an ipywidgets bar with the runs done and
the seconds spent. Nowhere else does anything appear: not while the book is built (the page shows
results, not waiting), not in plain Python or the tests. The displayed output's ``text/plain`` is a
fixed line, so nbval, which ignores the bar's later updates, compares the same text on every run.
"""

from __future__ import annotations

import time

from .explore import static_mode


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


MIN_TOTAL = 20  # fewer steps than this finish in a few seconds: no bar


def progress_bar(description: str, total: int, unit: str = "runs"):
    """Show a progress bar below the running cell; returns ``update(done, total)``, or None
    outside a live Jupyter kernel or for fewer than :data:`MIN_TOTAL` steps (callers pass it on as
    their ``progress`` argument).

    Examples::

        >>> progress_bar("Training 60 networks", 60) is None  # not in a notebook
        True
    """
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise ValueError(f"total: expected a positive int, got {total!r}")
    if total < MIN_TOTAL or static_mode() or not _in_kernel():
        return None
    try:
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        return None
    bar = w.IntProgress(value=0, min=0, max=total, description=description, style={"description_width": "initial"})
    label = w.Label(f"0/{total} {unit}")
    box = w.HBox([bar, label])
    bundle = dict(box._repr_mimebundle_())
    bundle["text/plain"] = f"{description} (a progress bar while the cell runs)"
    display(bundle, raw=True)
    start = time.perf_counter()

    def update(done, total_=total):
        bar.value = min(done, total_)
        label.value = f"{done}/{total_} {unit}, {time.perf_counter() - start:.0f} s"
        if done >= total_:
            bar.bar_style = "success"
            label.value += ", done"

    return update
