"""The one timing helper the chapters and the benchmarks share: paired, interleaved repeats.

Several functions are timed in rounds; each round runs every function once, in a rotating order,
so they share the machine's state (caches, clock speed, other load) and their ratio is fair even
on a busy machine. Report medians (and spreads) of the repeats, never a single sample.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["paired_timings", "median_time"]


def paired_timings(functions: dict, *, repeats=30, warmup=3, sync=None) -> dict:
    """Time ``functions`` (name -> callable) in ``repeats`` interleaved rounds after ``warmup`` rounds.

    ``sync`` (optional) is called after each run before the clock stops: pass
    ``torch.cuda.synchronize`` for GPU work, which is otherwise timed only as far as its launch.

    Returns:
        name -> array of ``repeats`` durations in seconds.

    Examples::

        >>> times = paired_timings({"a": lambda: None, "b": lambda: sum(range(100))}, repeats=5)
        >>> sorted(times), times["a"].shape
        (['a', 'b'], (5,))
    """
    if not functions:
        raise ValueError("functions: expected at least one name -> callable, got none")
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"functions[{name!r}]: expected a callable, got {type(fn).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    sync = sync or (lambda: None)
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    sync()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            functions[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def median_time(fn, *, repeats=30, warmup=3, sync=None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (:func:`paired_timings` of one function)."""
    return float(np.median(paired_timings({"fn": fn}, repeats=repeats, warmup=warmup, sync=sync)["fn"]))
