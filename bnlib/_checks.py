"""Input validation shared by the layers and the functional API.

Every public function checks all of its arguments before it changes anything, so a rejected call
leaves parameters, running statistics, counters and caches exactly as they were. Messages say what
was expected and what was given.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(x, name: str = "input") -> np.ndarray:
    """Return ``x`` as a float32/float64 ndarray without copying; reject anything else.

    Integer, boolean, complex, float16 and object arrays are refused rather than converted: a
    silent conversion would hide the caller's mistake (and float16 has too few digits for the
    statistics to mean what the book says they mean).
    """
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (list, tuple)) or np.isscalar(x):
        arr = np.asarray(x)
        if arr.dtype.kind in "iu" and arr.size:  # a list of Python ints is a list of numbers
            arr = arr.astype(np.float64)
    else:
        raise TypeError(f"{name}: expected a NumPy array of float32 or float64, got {type(x).__name__}")
    if arr.dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    return arr


def check_ndim(x: np.ndarray, allowed, name: str = "input") -> None:
    if x.ndim not in allowed:
        wanted = " or ".join(str(n) for n in sorted(allowed))
        raise ValueError(f"{name}: expected {wanted} dimensions, got {x.ndim} (shape {x.shape})")


def check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return int(value)


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    axis = check_int(axis, name)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: expected a value in [{-ndim}, {ndim - 1}] for a {ndim}-D input, got {axis}")
    return axis % ndim


def normalize_axes(axes, ndim: int) -> tuple:
    """An int or a sequence of ints as a sorted tuple of distinct non-negative axes."""
    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        axes = (axes,)
    if not isinstance(axes, (tuple, list)):
        raise TypeError(f"axes: expected an int or a tuple of ints, got {type(axes).__name__}")
    out = tuple(sorted(normalize_axis(a, ndim, "axes") for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"axes: expected distinct axes, got {tuple(axes)}")
    return out


def count_over(shape, axes) -> int:
    """Number of values each statistic averages: the product of the reduced sizes."""
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


def check_positive_int(value, name: str) -> int:
    value = check_int(value, name)
    if value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return value


def check_shape(shape, name: str) -> tuple:
    """A shape given as an int or a sequence of positive ints."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"{name}: expected a positive int or a non-empty tuple of them, got {shape!r}")
    return tuple(check_positive_int(s, name) for s in shape)


def check_eps(eps, name: str = "eps", dtype=np.float64) -> float:
    """eps > 0, finite, and representable (normal) in ``dtype``: an eps that rounds to 0 in float32
    would let a constant feature divide 0 by 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(eps).__name__}")
    if not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"{name}: expected a finite value > 0, got {eps}")
    tiny = float(np.finfo(dtype).tiny)
    if eps < tiny:
        raise ValueError(
            f"{name}: {eps:g} is below the smallest normal {np.dtype(dtype).name} ({tiny:.3g}) and would round "
            f"towards 0 there; use eps >= {tiny:.3g}"
        )
    return float(eps)


def check_momentum(momentum, allow_none: bool = True, name: str = "momentum"):
    if momentum is None:
        if allow_none:
            return None
        raise TypeError(f"{name}: expected a float in [0, 1], got None")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"{name}: expected a float in [0, 1], got {type(momentum).__name__}")
    if not 0.0 <= momentum <= 1.0:  # also False for NaN
        raise ValueError(f"{name}: expected a value in [0, 1], got {momentum}")
    return float(momentum)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} ({value!r})")
    return bool(value)


def check_finite(x: np.ndarray, name: str = "input") -> None:
    if not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"{name}: expected finite values in a training batch, got {bad} NaN/inf value(s); "
            "running statistics were not updated"
        )


def check_vector(v, size: int, name: str) -> np.ndarray:
    """A per-channel parameter: a 1-D float array of length ``size`` (no broadcasting)."""
    arr = as_float_array(v, name)
    if arr.shape != (size,):
        raise ValueError(f"{name}: expected shape ({size},), got {arr.shape}")
    return arr


def check_buffer(buffer, size: int, name: str) -> np.ndarray:
    """A running buffer updated in place: a writable 1-D float ndarray of length ``size``
    (``size=-1``: any length)."""
    if not isinstance(buffer, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy float array updated in place, got {type(buffer).__name__}")
    if buffer.dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {buffer.dtype}")
    if buffer.ndim != 1 or (size >= 0 and buffer.shape[0] != size):
        wanted = f"({size},)" if size >= 0 else "a 1-D array"
        raise ValueError(f"{name}: expected shape {wanted}, got {buffer.shape}")
    if not buffer.flags.writeable:
        raise ValueError(f"{name}: expected a writable array (it is updated in place), got a read-only one")
    return buffer


def check_same_shape(dy: np.ndarray, shape, name: str = "dy") -> None:
    if dy.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (the forward output's), got {dy.shape}")


def check_param(value, name: str, shape):
    """A parameter attribute: None, or a float ndarray of exactly ``shape`` (no lists, no broadcasting)."""
    if value is None:
        return None
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name}: expected a NumPy float array of shape {tuple(shape)} or None, got {type(value).__name__}"
        )
    if value.dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {value.dtype}")
    if value.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {value.shape}")
    return value


def check_at_least(value, name: str, low: float) -> float:
    """A finite real number >= ``low`` (no bools), as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a number >= {low:g}, got {type(value).__name__}")
    if not (np.isfinite(value) and value >= low):
        raise ValueError(f"{name}: expected a finite number >= {low:g}, got {value}")
    return float(value)
