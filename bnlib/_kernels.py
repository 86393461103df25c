"""The tuned batch-norm kernels behind ``fast=True``: the same numbers as :mod:`bnlib.functional`
(to rounding; ``tests/bnlib/test_kernels.py`` checks it), in fewer, cheaper passes over memory.

Read :mod:`bnlib.functional` to learn the math; this module only makes it fast in NumPy:

* The input is viewed as a contiguous (A, C, B) array (A = sizes before the feature axis, B =
  after), or (A, C) when B == 1, so per-channel vectors broadcast along a contiguous axis.
* Per-channel sums are BLAS matrix-vector products in the input's dtype over blocks of at most
  ``BLOCK`` rows, and the block totals are added in float64. Float32 rounding therefore grows with
  the block, not with the batch: the statistics stay accurate at any N, without converting the
  whole input to float64 (which would double the memory traffic).
* The mean is split into a float32 part ``hi`` (subtracting it from float32 data close to it is
  exact) and a small remainder, so a mean 10^5 times the spread costs no accuracy.
* Every elementwise step writes into one new array in place: no temporaries.
"""

from __future__ import annotations

import numpy as np

#: rows per float32 partial sum; totals of blocks are accumulated in float64
BLOCK = 64
#: longest contiguous run summed in the input's dtype by one BLAS dot product
MAX_RUN = 4096


def view3d(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` as a contiguous (A, C, B) array, or (A, C) when B == 1 (a copy only if ``x`` is not
    C-contiguous)."""
    a = int(np.prod(x.shape[:axis], dtype=np.int64))
    b = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    x = np.ascontiguousarray(x)
    return x.reshape(a, x.shape[axis]) if b == 1 else x.reshape(a, x.shape[axis], b)


def _per_channel(v, like: np.ndarray) -> np.ndarray:
    """A per-channel vector shaped to broadcast against a :func:`view3d` view, in its dtype."""
    v = np.asarray(v).astype(like.dtype, copy=False)
    return v.reshape(-1) if like.ndim == 2 else v.reshape(1, -1, 1)


def _column_sums(m: np.ndarray) -> np.ndarray:
    """Float64 sums over axis 0 of a 2-D (rows, C) array, in blocks of ``BLOCK`` rows."""
    rows, c = m.shape
    if m.dtype == np.float64:
        return np.ones(rows) @ m if rows else np.zeros(c)
    full = rows - rows % BLOCK
    total = np.zeros(c)
    if full:
        blocks = np.ones(BLOCK, dtype=m.dtype) @ m[:full].reshape(-1, BLOCK, c)
        total += blocks.sum(axis=0, dtype=np.float64)
    if rows - full:
        total += m[full:].sum(axis=0, dtype=np.float64)
    return total


def channel_sums(x3: np.ndarray) -> np.ndarray:
    """Per-channel float64 sum of a :func:`view3d` view."""
    if x3.ndim == 2:
        return _column_sums(x3)
    a, c, b = x3.shape
    if b > MAX_RUN or x3.dtype == np.float64:
        runs = x3.sum(axis=2, dtype=np.float64)
    else:
        runs = (x3.reshape(a * c, b) @ np.ones(b, dtype=x3.dtype)).reshape(a, c)
    return _column_sums(runs)


def channel_dots(u3: np.ndarray, v3: np.ndarray) -> np.ndarray:
    """Per-channel float64 sum of ``u3 * v3``, without materializing the product."""
    if u3.ndim == 2:
        rows, c = u3.shape
        if u3.dtype == np.float64:
            return np.einsum("ac,ac->c", u3, v3)
        full = rows - rows % BLOCK
        total = np.zeros(c)
        if full:
            blocks = np.einsum("kbc,kbc->kc", u3[:full].reshape(-1, BLOCK, c), v3[:full].reshape(-1, BLOCK, c))
            total += blocks.sum(axis=0, dtype=np.float64)
        if rows - full:
            total += np.einsum("ac,ac->c", u3[full:], v3[full:], dtype=np.float64)
        return total
    if u3.shape[2] > MAX_RUN or u3.dtype == np.float64:
        runs = np.einsum("acb,acb->ac", u3, v3, dtype=np.float64)
    else:
        runs = np.einsum("acb,acb->ac", u3, v3)
    return _column_sums(runs)


def batch_norm_train(x: np.ndarray, gamma, beta, eps: float, axis: int):
    """:func:`bnlib.functional.batch_norm_train` on validated arguments.

    Returns ``(y, xhat, mean, var, inv_std)``: ``y`` and ``xhat`` in the input's shape and dtype,
    the statistics as float64 vectors of shape (C,).
    """
    x3 = view3d(x, axis)
    dtype = x3.dtype
    n = x3.size // x3.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN in, NaN out (the caller decides)
        hi = (channel_sums(x3) / n).astype(dtype)  # a first mean, rounded to the input's dtype
        xhat = np.subtract(x3, _per_channel(hi, x3))  # exact for data close to its mean
        remainder = channel_sums(xhat) / n  # the mean of the deviations from hi (float64)
        var = np.maximum(channel_dots(xhat, xhat) / n - np.square(remainder), 0.0)
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat -= _per_channel(remainder, x3)
        xhat *= _per_channel(inv_std, x3)
    if gamma is None:
        y = xhat.copy()
    else:
        y = np.multiply(xhat, _per_channel(gamma, x3))
    if beta is not None:
        y += _per_channel(beta, x3)
    mean = hi.astype(np.float64) + remainder
    return y.reshape(x.shape), xhat.reshape(x.shape), mean, var, inv_std


def batch_norm_backward(dy: np.ndarray, xhat: np.ndarray, inv_std, gamma, axis: int, batch_stats: bool):
    """:func:`bnlib.functional.batch_norm_backward` on validated arguments: ``(dx, dgamma, dbeta)``.

    ``dx = a * (dy - dbeta / n - xhat * dgamma / n)`` with ``a = gamma * inv_std``, formed in four
    in-place passes over one new array.
    """
    dy3 = view3d(dy, axis)
    xhat3 = view3d(xhat, axis)
    dbeta = channel_sums(dy3)
    dgamma = channel_dots(dy3, xhat3)
    inv_std = np.reshape(inv_std, -1)
    a = inv_std if gamma is None else np.asarray(gamma, dtype=np.float64) * inv_std
    if not batch_stats:
        return (dy3 * _per_channel(a, dy3)).reshape(dy.shape), dgamma, dbeta
    n = dy3.size // dy3.shape[1]
    dx = np.multiply(xhat3, _per_channel(-dgamma / n, dy3))
    dx += dy3
    dx -= _per_channel(dbeta / n, dy3)
    dx *= _per_channel(a, dy3)
    return dx.reshape(dy.shape), dgamma, dbeta
