"""Input validation shared by the layers and the functional API.

Every check runs before any state is touched, so a rejected call leaves parameters, running
statistics and counters exactly as they were. Messages say what was expected and what was given.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(x, name: str = "input") -> np.ndarray:
    """Return ``x`` as a float32/float64 ndarray without copying; reject anything else."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - numpy's own message is kept
            raise TypeError(f"{name}: expected an array of floats, got {type(x).__name__}") from exc
    if arr.dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    return arr


def check_ndim(x: np.ndarray, allowed, name: str = "input") -> None:
    if x.ndim not in allowed:
        wanted = " or ".join(str(n) for n in sorted(allowed))
        raise ValueError(f"{name}: expected {wanted} dimensions, got {x.ndim} (shape {x.shape})")


def normalize_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis: expected a value in [{-ndim}, {ndim - 1}] for a {ndim}-D input, got {axis}")
    return int(axis) % ndim


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def check_eps(eps, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(eps).__name__}")
    if not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"{name}: expected a finite value > 0, got {eps}")
    return float(eps)


def check_momentum(momentum, allow_none: bool = True, name: str = "momentum"):
    if momentum is None:
        if allow_none:
            return None
        raise TypeError(f"{name}: expected a float in [0, 1], got None")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"{name}: expected a float in [0, 1], got {type(momentum).__name__}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{name}: expected a value in [0, 1], got {momentum}")
    return float(momentum)


def check_finite(x: np.ndarray, name: str = "input") -> None:
    if not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"{name}: expected finite values in a training batch, got {bad} NaN/inf value(s); "
            "running statistics were not updated"
        )


def check_vector(v, size: int, name: str) -> np.ndarray:
    """A per-channel parameter or buffer: a 1-D float array of length ``size``."""
    arr = as_float_array(v, name)
    if arr.shape != (size,):
        raise ValueError(f"{name}: expected shape ({size},), got {arr.shape}")
    return arr


def check_same_shape(dy: np.ndarray, shape, name: str = "dy") -> None:
    if dy.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (the forward output's), got {dy.shape}")
