"""Argument checks shared by the chapters' experiment drivers: a wrong argument is a ValueError that
names it, before any training starts."""

from __future__ import annotations

import numbers


def check_seeds(seeds) -> tuple:
    """A non-empty sequence of int seeds, as a tuple."""
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds: expected a non-empty sequence of ints, got {seeds!r}")
    return seeds


def check_count(value, name: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (epochs, depths, batch sizes, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def check_rate(value, name: str) -> float:
    """A number >= 0, not NaN (learning rates, weight decays)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)
