r"""Pure functions for batch, layer and group normalization: forward, backward, running statistics.

Notation (the book's):

.. math::

    \mu = \frac{1}{m}\sum_i x_i,\qquad
    \sigma^2 = \frac{1}{m}\sum_i (x_i-\mu)^2,\qquad
    \hat x_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}},\qquad
    y_i = \gamma\,\hat x_i + \beta

where the sums run over every axis except the feature (channel) axis, so ``m`` is the batch size
times the spatial size. ``inv_std`` is :math:`1/\sqrt{\sigma^2+\epsilon}`.

Nothing here holds state: the layers in :mod:`bnlib.layers` keep parameters, running statistics and
the backward cache, and call these functions. :func:`batch_norm` mirrors
``torch.nn.functional.batch_norm`` (same signature, running buffers updated in place).

The variance is computed in two passes (mean first, then the mean of squared deviations), with the
mean accumulated in float64 for float32 input, so data whose mean is 10^4 times its standard deviation
normalizes as accurately in float32 as the float32 input itself allows. The one-pass formula
``E[x^2] - E[x]^2`` is kept as :func:`one_pass_variance` only so the book can show how it fails.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _checks

__all__ = [
    "reduction_axes",
    "moments",
    "one_pass_variance",
    "unbiased",
    "update_running",
    "cumulative_momentum",
    "batch_norm",
    "batch_norm_forward",
    "batch_norm_train_forward",
    "batch_norm_backward",
    "batch_norm_backward_staged",
    "batch_norm_backward_constant_stats",
    "BatchNormCache",
    "layer_norm",
    "layer_norm_forward",
    "layer_norm_backward",
    "group_norm",
    "group_norm_forward",
    "group_norm_backward",
    "NormCache",
    "combine_moments",
    "fold_batch_norm",
    "sync_moments",
]


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def reduction_axes(ndim: int, axis: int = 1) -> tuple[int, ...]:
    """The axes batch norm averages over: every axis except the feature axis ``axis``."""
    axis = _checks.normalize_axis(axis, ndim)
    return tuple(a for a in range(ndim) if a != axis)


def _count(x: np.ndarray, axes) -> int:
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def _moments(x: np.ndarray, axes) -> tuple[np.ndarray, np.ndarray]:
    """Corrected two-pass mean and biased variance over ``axes`` (keepdims, in ``x.dtype``)."""
    mean0 = x.mean(axis=axes, keepdims=True)
    centered = x - mean0
    correction = centered.mean(axis=axes, keepdims=True)
    var = np.mean(np.square(centered, out=centered), axis=axes, keepdims=True) - np.square(correction)
    return mean0 + correction, np.maximum(var, 0)


def moments(x, axes) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x`` over ``axes`` (two passes, numerically stable).

    Returns arrays with the reduced axes removed, in the dtype of ``x``.
    """
    x = _checks.as_float_array(x)
    axes = tuple(axes)
    mean, var = _moments(x, axes)
    return np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)


def one_pass_variance(x, axes) -> np.ndarray:
    """``E[x^2] - E[x]^2`` computed in the dtype of ``x``.

    This is the textbook shortcut that loses every significant digit when the mean is large
    compared with the spread (catastrophic cancellation). bnlib never uses it; the book does,
    to measure the damage.
    """
    x = _checks.as_float_array(x)
    axes = tuple(axes)
    return np.mean(x * x, axis=axes) - np.square(np.mean(x, axis=axes))


def unbiased(var, count: int) -> np.ndarray:
    """Bessel's correction: the biased variance of ``count`` values times ``count/(count-1)``."""
    if count < 2:
        raise ValueError(f"count: expected at least 2 values for an unbiased variance, got {count}")
    return var * (count / (count - 1))


def update_running(running: np.ndarray, batch_value, momentum: float) -> None:
    """In place: ``running = (1 - momentum) * running + momentum * batch_value``.

    ``momentum`` is the weight of the NEW value (PyTorch's convention). Keras calls the weight of
    the OLD value momentum; pass ``1 - keras_momentum`` to use this function with Keras numbers.
    """
    running *= 1.0 - momentum
    running += momentum * np.asarray(batch_value, dtype=running.dtype)


def cumulative_momentum(num_batches_tracked: int) -> float:
    """The factor PyTorch uses for ``momentum=None``: ``1 / num_batches_tracked``.

    With it the running value is the plain average of every batch statistic seen so far.
    """
    return 1.0 / num_batches_tracked


def combine_moments(counts, means, m2s):
    """Merge per-part (count, mean, M2) triples into the whole's, as in Chan et al. (1979).

    ``M2`` is the sum of squared deviations from the part's own mean (``count * biased_var``).
    This is what a synchronized batch norm all-reduces across processes: summing counts,
    ``count * mean`` and ``M2 + count * (mean - global_mean)^2`` gives exactly the statistics of the
    concatenated batch, without moving the data. Arrays may carry a trailing feature axis.

    Returns ``(count, mean, M2)`` of the union.
    """
    counts = np.asarray(counts, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    m2s = np.asarray(m2s, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts: expected a non-empty 1-D array, got shape {counts.shape}")
    if (counts <= 0).any():
        raise ValueError(f"counts: expected positive counts, got {counts.tolist()}")
    if means.shape[:1] != counts.shape or m2s.shape != means.shape:
        raise ValueError(
            f"means and m2s: expected leading length {counts.size} and equal shapes, "
            f"got {means.shape} and {m2s.shape}"
        )
    weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))
    total = counts.sum()
    mean = (weights * means).sum(axis=0) / total
    m2 = (m2s + weights * np.square(means - mean)).sum(axis=0)
    return total, mean, m2


# --------------------------------------------------------------------------------------------
# Batch norm
# --------------------------------------------------------------------------------------------


class BatchNormCache(NamedTuple):
    """What batch norm's backward needs from its forward.

    The normalized input is ``xhat = (centered - offset) * inv_std``; it is not stored, because the
    backward only needs two per-channel sums of it and recomputing them from ``centered`` saves two
    full passes over memory. ``centered`` is ``x - mean0`` in training (``offset`` the small
    correction of the corrected two-pass mean) and ``x`` itself in eval mode (``offset`` the running
    mean). Arrays have the (A, C, B) view shape, ``shape`` the input's.
    """

    centered: np.ndarray  # (A, C, B), or (A, C) when B == 1
    offset: np.ndarray  # per channel, shaped to broadcast against ``centered``
    inv_std: np.ndarray  # per channel: 1 / sqrt(var + eps)
    gamma: np.ndarray | None  # per channel, or None (no scale)
    batch_stats: bool  # True: mean/var came from this batch and depend on x
    shape: tuple  # the input's shape
    axis: int  # the feature axis of the input

    @property
    def xhat(self) -> np.ndarray:
        """The normalized input, in the input's shape."""
        return ((self.centered - self.offset) * self.inv_std).reshape(self.shape)


def _view3d(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` as a contiguous (A, C, B) array (A = sizes before the feature axis, B = after), or as
    (A, C) when B == 1: per-channel vectors then broadcast along the contiguous last axis, which is
    twice as fast as along a middle axis with an inner loop of length 1."""
    a = int(np.prod(x.shape[:axis], dtype=np.int64))
    b = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    x = np.ascontiguousarray(x)
    return x.reshape(a, x.shape[axis]) if b == 1 else x.reshape(a, x.shape[axis], b)


def _per_channel(v, like: np.ndarray):
    """A per-channel vector shaped to broadcast against a view from :func:`_view3d`."""
    return np.reshape(v, (-1,) if like.ndim == 2 else (1, -1, 1))


def _channel_sum(x3: np.ndarray) -> np.ndarray:
    """Per-channel sum of an (A, C[, B]) view, as matrix-vector products (BLAS, multithreaded)."""
    if x3.ndim == 2:
        return np.ones(x3.shape[0], dtype=x3.dtype) @ x3
    a, c, b = x3.shape
    rows = x3.reshape(a * c, b) @ np.ones(b, dtype=x3.dtype)
    return np.ones(a, dtype=x3.dtype) @ rows.reshape(a, c)


def _channel_dot(u3: np.ndarray, v3: np.ndarray) -> np.ndarray:
    """Per-channel sum of ``u3 * v3`` without materializing the product."""
    if u3.ndim == 2:
        return np.einsum("ac,ac->c", u3, v3)
    return np.einsum("acb,acb->c", u3, v3)


def _batch_moments(x3: np.ndarray):
    """Corrected two-pass moments of an (A, C, B) array over A and B.

    Pass 1 takes a first mean; pass 2 centres on it and sums the deviations and their squares.
    The sum of deviations is the rounding error of the first mean (tiny, and computed from values
    of the size of the standard deviation, so accurately): adding it back gives the mean, and
    subtracting its square gives the variance with no cancellation. Returns
    ``(centered, mean0, correction, var, count)``; the mean is ``mean0 + correction``.
    """
    n = x3.size // x3.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):  # a NaN/inf batch is rejected by the caller
        mean0 = _per_channel((_channel_sum(x3) / n).astype(x3.dtype, copy=False), x3)
        centered = x3 - mean0
        correction = _per_channel(_channel_sum(centered) / n, x3)
        var = _per_channel(_channel_dot(centered, centered), x3) / n - np.square(correction)
    np.maximum(var, 0, out=var)
    return centered, mean0, correction, var, n


def _vector(v, dtype, like):
    return None if v is None else _per_channel(np.asarray(v).astype(dtype, copy=False), like)


def _affine(x3, offset, inv_std, gamma, beta, dtype):
    """``y = (x3 - offset) * inv_std * gamma + beta`` as ``x3 * scale + shift``: two passes."""
    g = _vector(gamma, dtype, x3)
    scale = (inv_std if g is None else g * inv_std).astype(dtype, copy=False)
    shift = -offset * scale
    if beta is not None:
        shift = shift + _vector(beta, dtype, x3)
    y = x3 * scale
    y += shift.astype(dtype, copy=False)
    return y, g


def batch_norm_forward(x, mean, var, gamma=None, beta=None, eps=1e-5, *, axis=1):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with given per-feature ``mean`` and ``var``.

    This is inference-mode batch norm (the statistics are constants, for example running
    estimates). Returns ``(y, cache)`` for :func:`batch_norm_backward`.
    """
    axis = _checks.normalize_axis(axis, x.ndim)
    x3 = _view3d(x, axis)
    dtype = x.dtype
    offset = _vector(mean, dtype, x3)
    inv_std = (1.0 / np.sqrt(_vector(var, np.float64, x3) + eps)).astype(dtype)
    y, g = _affine(x3, offset, inv_std, gamma, beta, dtype)
    return y.reshape(x.shape), BatchNormCache(x3, offset, inv_std, g, False, x.shape, axis)


def batch_norm_train_forward(x, gamma=None, beta=None, eps=1e-5, *, axis=1):
    """Training-mode batch norm: normalize with this batch's mean and biased variance.

    Returns ``(y, mean, var, cache)``; ``mean`` and ``var`` (shape (C,)) are what a layer feeds
    to its running estimates. Raises if the batch holds a NaN or inf.
    """
    axis = _checks.normalize_axis(axis, x.ndim)
    x3 = _view3d(x, axis)
    dtype = x.dtype
    centered, mean0, correction, var, n = _batch_moments(x3)
    if not (np.isfinite(mean0).all() and np.isfinite(var).all()):
        _checks.check_finite(x)
    inv_std = 1.0 / np.sqrt(var + dtype.type(eps))
    y, g = _affine(centered, correction, inv_std, gamma, beta, dtype)
    cache = BatchNormCache(centered, correction, inv_std, g, True, x.shape, axis)
    return y.reshape(x.shape), (mean0 + correction).reshape(-1), var.reshape(-1), cache


def batch_norm_backward(dy, cache: BatchNormCache):
    r"""Closed-form backward of batch norm: returns ``(dx, dgamma, dbeta)``.

    With batch statistics (training):

    .. math:: dx = \gamma\,\mathrm{inv\_std}\,\bigl(dy - \overline{dy} - \hat x\,\overline{dy\,\hat x}\bigr)

    (bars are means over the reduced axes), which is what PyTorch and TensorFlow compute. With
    fixed statistics (inference) ``dx = gamma * inv_std * dy``. In both cases
    ``dgamma = sum(dy * xhat)`` and ``dbeta = sum(dy)``.

    Since ``xhat = (centered - offset) * inv_std``, the sums and ``dx`` are formed from ``centered``
    directly: ``dx = a * dy + b * centered + c`` with per-channel a, b, c.
    """
    centered, offset, inv_std, g, batch_stats, shape, axis = cache
    dy3 = _view3d(dy, axis)
    dbeta = _per_channel(_channel_sum(dy3), dy3)
    dgamma = inv_std * (_per_channel(_channel_dot(dy3, centered), dy3) - offset * dbeta)
    a = inv_std if g is None else g * inv_std
    if not batch_stats:
        return (dy3 * a).reshape(shape), dgamma.reshape(-1), dbeta.reshape(-1)
    n = centered.size // centered.shape[1]
    # dx = a * (dy + (b/a) * centered + c/a): four in-place passes over one new array, no temporaries
    b_over_a = -inv_std * dgamma / n
    c_over_a = -dbeta / n - offset * b_over_a
    dx = np.multiply(centered, b_over_a.astype(dy3.dtype, copy=False))
    dx += dy3
    dx += c_over_a.astype(dy3.dtype, copy=False)
    dx *= a.astype(dy3.dtype, copy=False)
    return dx.reshape(shape), dgamma.reshape(-1), dbeta.reshape(-1)


def _broadcast(v, ndim: int, axis: int, dtype):
    """A per-feature vector reshaped to broadcast against an ``ndim``-D input on ``axis``."""
    if v is None:
        return None
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(v).astype(dtype, copy=False).reshape(shape)


def batch_norm_backward_staged(dy, x, gamma=None, eps=1e-5, *, axis=1):
    """Backward of training-mode batch norm, one step per node of the computational graph.

    The forward is recomputed as eight elementary nodes (mean, centre, square, variance, std,
    reciprocal, normalize, affine) and each node's local derivative is applied in reverse order.
    It gives the same numbers as :func:`batch_norm_backward` (to rounding); the book uses it to
    derive the closed form and to compare their speed. Returns ``(dx, dgamma, dbeta)``.
    """
    x = _checks.as_float_array(x)
    dy = _checks.as_float_array(dy, "dy")
    _checks.check_same_shape(dy, x.shape)
    axis = _checks.normalize_axis(axis, x.ndim)
    axes = reduction_axes(x.ndim, axis)
    n = _count(x, axes)
    g = _broadcast(gamma, x.ndim, axis, x.dtype)
    if g is None:
        g = x.dtype.type(1.0)
    # forward, node by node
    mu = x.sum(axis=axes, keepdims=True) / n  # 1. mean
    xc = x - mu  # 2. centre
    sq = xc**2  # 3. square
    var = sq.sum(axis=axes, keepdims=True) / n  # 4. variance
    std = np.sqrt(var + eps)  # 5. standard deviation
    inv = 1.0 / std  # 6. reciprocal
    xhat = xc * inv  # 7. normalize
    # 8. y = g * xhat + beta
    # backward, in reverse order
    dbeta = dy.sum(axis=axes)  # 8
    dgamma = (dy * xhat).sum(axis=axes)  # 8
    dxhat = dy * g  # 8
    dinv = (dxhat * xc).sum(axis=axes, keepdims=True)  # 7
    dxc = dxhat * inv  # 7
    dstd = -dinv / std**2  # 6
    dvar = dstd * 0.5 / std  # 5
    dsq = np.ones_like(sq) * dvar / n  # 4
    dxc = dxc + 2.0 * xc * dsq  # 3
    dmu = -dxc.sum(axis=axes, keepdims=True)  # 2
    dx = dxc + dmu / n  # 1 (and the direct path of 2)
    return dx, dgamma, dbeta


def batch_norm_backward_constant_stats(dy, x, gamma=None, eps=1e-5, *, axis=1):
    """The WRONG training-mode backward that treats the batch mean and variance as constants.

    ``dx = gamma * dy / sqrt(var + eps)``. It ignores that every output depends on every input
    of the batch through the statistics. Kept so the book and the tests can measure its error
    (a gradient check catches it); never use it to train.
    """
    x = _checks.as_float_array(x)
    dy = _checks.as_float_array(dy, "dy")
    _checks.check_same_shape(dy, x.shape)
    axis = _checks.normalize_axis(axis, x.ndim)
    axes = reduction_axes(x.ndim, axis)
    mean, var = _moments(x, axes)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    g = _broadcast(gamma, x.ndim, axis, x.dtype)
    scale = inv_std if g is None else g * inv_std
    return dy * scale, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
    *,
    axis=1,
):
    """``torch.nn.functional.batch_norm`` in NumPy.

    In training mode the batch's mean and biased variance normalize the input and, when the buffers
    are given, ``running_mean`` and ``running_var`` are updated IN PLACE with
    ``running = (1 - momentum) * running + momentum * batch`` where the variance fed to the running
    estimate is the unbiased one (``m/(m-1)``). In eval mode the running buffers normalize.

    Args:
        input: array (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); float32 or float64.
        running_mean, running_var: arrays of shape (C,) or None (training only).
        weight, bias: gamma and beta, shape (C,), or None.
        training: use batch statistics (True) or the running buffers (False).
        momentum: weight of the new batch in the running update, in [0, 1].
        eps: added to the variance, > 0.
        axis: the feature axis (keyword-only extension; PyTorch fixes it at 1).

    Returns:
        The normalized array, same shape and dtype as ``input``.
    """
    y, _ = _batch_norm_functional(input, running_mean, running_var, weight, bias, training, momentum, eps, axis)
    return y


def _batch_norm_functional(x, running_mean, running_var, weight, bias, training, momentum, eps, axis):
    x = _checks.as_float_array(x)
    _checks.check_ndim(x, (2, 3, 4, 5))
    axis = _checks.normalize_axis(axis, x.ndim)
    channels = x.shape[axis]
    eps = _checks.check_eps(eps)
    momentum = _checks.check_momentum(momentum, allow_none=False)
    for name, v in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if v is not None:
            _checks.check_vector(v, channels, name)
    axes = reduction_axes(x.ndim, axis)
    count = _count(x, axes)
    if training:
        if count <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input shape {x.shape} "
                f"(batch size times spatial size is {count})"
            )
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var: expected both arrays or both None")
        y, mean, var, cache = batch_norm_train_forward(x, weight, bias, eps, axis=axis)
        if running_mean is not None:
            update_running(running_mean, mean, momentum)
            update_running(running_var, unbiased(var, count), momentum)
        return y, cache
    if running_mean is None or running_var is None:
        raise ValueError("running_mean and running_var: expected arrays in eval mode (training=False), got None")
    return batch_norm_forward(x, running_mean, running_var, weight, bias, eps, axis=axis)


# --------------------------------------------------------------------------------------------
# Layer norm and group norm: per-sample statistics, same backward shape
# --------------------------------------------------------------------------------------------


class NormCache(NamedTuple):
    """What layer/group norm's backward needs: normalized values grouped so stats run over ``axes``."""

    xhat: np.ndarray  # grouped shape
    inv_std: np.ndarray  # keepdims over ``axes`` of the grouped shape
    axes: tuple
    shape: tuple  # the input's shape


def _normalize(x, axes, eps):
    mean, var = _moments(x, axes)
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = x - mean
    xhat *= inv_std
    return xhat, inv_std


def _normalize_backward(dxhat, xhat, inv_std, axes):
    """dx for ``xhat = (x - mean(x)) * inv_std`` with statistics over ``axes``."""
    mean_dxhat = dxhat.mean(axis=axes, keepdims=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def _layer_norm_axes(x, normalized_shape):
    normalized_shape = tuple(int(s) for s in np.atleast_1d(normalized_shape))
    k = len(normalized_shape)
    if x.ndim < k + 1 or x.shape[-k:] != normalized_shape:
        raise ValueError(
            f"input: expected shape (*, {', '.join(map(str, normalized_shape))}) with at least one "
            f"leading dimension, got {x.shape}"
        )
    return tuple(range(x.ndim - k, x.ndim)), normalized_shape


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer norm (PyTorch semantics): statistics per sample over the trailing ``normalized_shape``.

    ``weight`` and ``bias`` have shape ``normalized_shape`` (elementwise affine). Returns ``(y, cache)``.
    """
    x = _checks.as_float_array(x)
    axes, normalized_shape = _layer_norm_axes(x, normalized_shape)
    eps = _checks.check_eps(eps)
    xhat, inv_std = _normalize(x, axes, eps)
    y = xhat.copy()
    if weight is not None:
        y *= np.asarray(weight, dtype=x.dtype)
    if bias is not None:
        y += np.asarray(bias, dtype=x.dtype)
    return y, NormCache(xhat, inv_std, axes, x.shape)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm`` in NumPy."""
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(dy, cache: NormCache, weight=None):
    """Returns ``(dx, dweight, dbias)``; ``dweight``/``dbias`` sum over the leading (batch) axes."""
    xhat, inv_std, axes, shape = cache
    lead = tuple(range(len(shape) - len(axes)))
    dweight = (dy * xhat).sum(axis=lead)
    dbias = dy.sum(axis=lead)
    dxhat = dy if weight is None else dy * np.asarray(weight, dtype=dy.dtype)
    return _normalize_backward(dxhat, xhat, inv_std, axes), dweight, dbias


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Group norm (PyTorch semantics): per sample, statistics over each group of C/G channels and
    all spatial positions; per-channel ``weight``/``bias``. Input (N, C, *). Returns ``(y, cache)``.
    """
    x = _checks.as_float_array(x)
    _checks.check_ndim(x, (2, 3, 4, 5))
    groups = _checks.check_positive_int(num_groups, "num_groups")
    channels = x.shape[1]
    if channels % groups:
        raise ValueError(f"num_groups: expected a divisor of the channel count {channels}, got {groups}")
    eps = _checks.check_eps(eps)
    grouped = x.reshape(x.shape[0], groups, -1)
    xhat, inv_std = _normalize(grouped, (2,), eps)
    y = xhat.reshape(x.shape).copy()
    w = _broadcast(weight, x.ndim, 1, x.dtype)
    b = _broadcast(bias, x.ndim, 1, x.dtype)
    if w is not None:
        y *= w
    if b is not None:
        y += b
    return y, NormCache(xhat, inv_std, (2,), x.shape)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm`` in NumPy."""
    return group_norm_forward(x, num_groups, weight, bias, eps)[0]


def group_norm_backward(dy, cache: NormCache, weight=None):
    """Returns ``(dx, dweight, dbias)`` with per-channel ``dweight``/``dbias``."""
    xhat, inv_std, axes, shape = cache
    channel_axes = tuple(a for a in range(len(shape)) if a != 1)
    xhat_full = xhat.reshape(shape)
    dweight = (dy * xhat_full).sum(axis=channel_axes)
    dbias = dy.sum(axis=channel_axes)
    w = _broadcast(weight, len(shape), 1, dy.dtype)
    dxhat = dy if w is None else dy * w
    dx = _normalize_backward(dxhat.reshape(xhat.shape), xhat, inv_std, axes)
    return dx.reshape(shape), dweight, dbias


# --------------------------------------------------------------------------------------------
# Folding batch norm into the layer before it (inference only)
# --------------------------------------------------------------------------------------------


def fold_batch_norm(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    r"""Fold an eval-mode batch norm into the linear or convolution layer in front of it.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel, ``BN(W x + b) = (s W) x + (s (b - mean) + beta)``.
    ``weight`` has the output channels first: (out, in) for a linear layer, (out, in, kh, kw) for a
    convolution (PyTorch's layouts). Returns ``(folded_weight, folded_bias)`` in float64 arithmetic.

    Exact only in inference mode: in training the layer normalizes with the batch's statistics,
    which the folded weights cannot know.
    """
    weight = _checks.as_float_array(weight, "weight")
    out = weight.shape[0]
    running_mean = _checks.check_vector(running_mean, out, "running_mean")
    running_var = _checks.check_vector(running_var, out, "running_var")
    gamma = np.ones(out) if gamma is None else _checks.check_vector(gamma, out, "gamma")
    beta = np.zeros(out) if beta is None else _checks.check_vector(beta, out, "beta")
    bias = np.zeros(out) if bias is None else _checks.check_vector(bias, out, "bias")
    eps = _checks.check_eps(eps)
    scale = gamma / np.sqrt(running_var + eps)
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    folded_bias = (bias - running_mean) * scale + beta
    return folded_weight.astype(weight.dtype, copy=False), folded_bias


def sync_moments(x, all_reduce, *, axis=1):
    """Batch mean and biased variance over the union of every process's batch, as a synchronized
    batch norm computes them, from this process's part ``x`` and an ``all_reduce``.

    ``all_reduce(array)`` must return the elementwise sum of ``array`` over all processes (for example
    ``torch.distributed.all_reduce`` wrapped to work on NumPy arrays). Two rounds, each moving one small
    vector per channel, never the data: first the counts and sums give the global mean; then each process
    contributes ``M2 + n * (mean_local - mean_global)^2`` (Chan et al.'s combination, see
    :func:`combine_moments`), whose sum is the global M2. Returns ``(mean, var, count)``.
    """
    x = _checks.as_float_array(x)
    axis = _checks.normalize_axis(axis, x.ndim)
    axes = reduction_axes(x.ndim, axis)
    n = _count(x, axes)
    local_mean, local_var = _moments(x.astype(np.float64), axes)
    local_mean, local_var = local_mean.reshape(-1), local_var.reshape(-1)
    first = np.asarray(all_reduce(np.concatenate([[float(n)], n * local_mean])), dtype=np.float64)
    count, mean = first[0], first[1:] / first[0]
    m2 = np.asarray(all_reduce(n * local_var + n * np.square(local_mean - mean)), dtype=np.float64)
    return mean, m2 / count, int(round(count))
