r"""Pure functions for batch, layer and group normalization: statistics, forward, backward.

Notation (the book's):

.. math::

    \mu = \frac{1}{m}\sum_i x_i,\qquad
    \sigma^2 = \frac{1}{m}\sum_i (x_i-\mu)^2,\qquad
    \hat x_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}},\qquad
    y_i = \gamma\,\hat x_i + \beta

The three normalizations differ only in the axes the sums run over (as in flax's
``normalization.py``): batch norm over every axis except the feature axis, layer norm over the
trailing axes of each sample, group norm over each group of channels of each sample. So there is
one core, :func:`normalize` and :func:`normalize_backward`, and three thin wrappers.

Accuracy: statistics are accumulated in float64 whatever the input dtype, and the variance is a
corrected two-pass one (the mean first, then the mean of squared deviations, with the rounding
error of the mean added back). Float32 input therefore normalizes as accurately as float32 allows
at any batch size and any mean-to-spread ratio. The textbook one-pass ``E[x^2] - E[x]^2`` is kept
as :func:`one_pass_variance` only so the book can show how it fails.

This module is the readable reference. The layers in :mod:`bnlib.layers` call
:func:`batch_norm` (the one training path, with ``torch.nn.functional.batch_norm``'s signature)
and :func:`batch_norm_backward`; with ``fast=True`` both run the tuned kernels of
:mod:`bnlib._kernels` instead, which the tests check against this module.

Vocabulary: the scale and shift are ``gamma`` and ``beta``; ``weight``/``bias`` appear only in the
signatures that copy PyTorch's (:func:`batch_norm`, :func:`layer_norm`, :func:`group_norm`) and for
the layer in front of a batch norm (:func:`fold_batch_norm`). Every backward returns
``(dx, dgamma, dbeta)``; every forward that keeps a cache returns ``(y, cache)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _checks, _kernels

__all__ = [
    "reduction_axes",
    "moments",
    "one_pass_variance",
    "unbiased",
    "update_running",
    "cumulative_momentum",
    "combine_moments",
    "sync_moments",
    "NormCache",
    "normalize",
    "normalize_backward",
    "batch_norm",
    "batch_norm_train",
    "batch_norm_eval",
    "batch_norm_backward",
    "batch_norm_backward_staged",
    "BatchRenormCache",
    "batch_renorm_train",
    "batch_renorm_backward",
    "renorm_limits",
    "layer_norm",
    "layer_norm_forward",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_forward",
    "rms_norm_backward",
    "group_norm",
    "group_norm_forward",
    "group_norm_backward",
    "fold_batch_norm",
]


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def reduction_axes(ndim: int, axis: int = 1) -> tuple[int, ...]:
    """The axes batch norm averages over: every axis except the feature axis ``axis``.

    Examples::

        >>> reduction_axes(4)          # (N, C, H, W): over N, H and W
        (0, 2, 3)
        >>> reduction_axes(4, axis=-1)  # (N, H, W, C)
        (0, 1, 2)
    """
    axis = _checks.normalize_axis(axis, ndim)
    return tuple(a for a in range(ndim) if a != axis)


def _centered_moments(x: np.ndarray, axes: tuple):
    """The corrected two-pass method, in float64: returns ``(x - mean, mean, var)`` (keepdims).

    Pass 1 takes a first mean; pass 2 sums the deviations from it and their squares. The mean of
    the deviations is the rounding error of the first mean (tiny, and computed from numbers the
    size of the spread, so accurately): subtracting it centres exactly, and subtracting its square
    gives the biased variance with no cancellation.
    """
    x64 = x.astype(np.float64, copy=False)
    mean0 = x64.mean(axis=axes, keepdims=True)
    deviation = x64 - mean0
    correction = deviation.mean(axis=axes, keepdims=True)
    var = np.maximum(np.mean(np.square(deviation), axis=axes, keepdims=True) - np.square(correction), 0.0)
    deviation -= correction
    return deviation, mean0 + correction, var


def moments(x, axes) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x`` over ``axes``, accumulated in float64.

    Args:
        x: float32 or float64 array.
        axes: the axes to reduce (an int or a tuple of ints).

    Returns:
        ``(mean, var)``: float64 arrays with the reduced axes removed.

    Examples::

        >>> mean, var = moments(np.array([[1.0, 10.0], [3.0, 30.0]]), 0)
        >>> mean.tolist(), var.tolist()
        ([2.0, 20.0], [1.0, 100.0])
    """
    x = _checks.as_float_array(x)
    axes = _checks.normalize_axes(axes, x.ndim)
    if not axes:
        raise ValueError("axes: expected at least one axis to reduce, got none")
    _, mean, var = _centered_moments(x, axes)
    return np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)


def one_pass_variance(x, axes) -> np.ndarray:
    """``E[x^2] - E[x]^2`` computed in the dtype of ``x``: the textbook shortcut.

    It cancels catastrophically when the mean is large compared with the spread (and can come out
    negative). bnlib never uses it; the book does, to measure the damage.

    Examples::

        >>> x = (1e4 + np.random.default_rng(0).standard_normal((4096, 1))).astype(np.float32)
        >>> bool(abs(one_pass_variance(x, 0)[0] - 1.0) > 0.5)   # true variance about 1
        True
    """
    x = _checks.as_float_array(x)
    axes = _checks.normalize_axes(axes, x.ndim)
    return np.mean(x * x, axis=axes) - np.square(np.mean(x, axis=axes))


def unbiased(var, count: int) -> np.ndarray:
    """Bessel's correction: the biased variance of ``count`` values times ``count / (count - 1)``.

    Examples::

        >>> float(unbiased(1.0, 2))
        2.0
    """
    count = _checks.check_positive_int(count, "count")
    if count < 2:
        raise ValueError(f"count: expected at least 2 values for an unbiased variance, got {count}")
    return np.asarray(var) * (count / (count - 1))


def update_running(running: np.ndarray, batch_value, momentum: float) -> None:
    """In place: ``running = (1 - momentum) * running + momentum * batch_value``.

    ``momentum`` is the weight of the NEW value (PyTorch's convention). Keras calls the weight of
    the OLD value momentum: Keras' 0.99 is 0.01 here.

    Examples::

        >>> running = np.zeros(2)
        >>> update_running(running, np.array([1.0, 2.0]), 0.1)
        >>> running.tolist()
        [0.1, 0.2]
    """
    momentum = _checks.check_momentum(momentum, allow_none=False)
    _checks.check_buffer(running, -1, "running")
    batch_value = np.asarray(batch_value, dtype=np.float64)
    if batch_value.shape != running.shape:
        raise ValueError(f"batch_value: expected shape {running.shape} (the running buffer's), got {batch_value.shape}")
    running *= 1.0 - momentum
    running += momentum * batch_value


def cumulative_momentum(num_batches_tracked: int) -> float:
    """The factor PyTorch uses for ``momentum=None``: ``1 / num_batches_tracked``.

    With it the running value is the plain average of every batch statistic seen so far.

    Examples::

        >>> cumulative_momentum(4)
        0.25
    """
    return 1.0 / _checks.check_positive_int(num_batches_tracked, "num_batches_tracked")


def combine_moments(counts, means, m2s):
    """Merge per-part (count, mean, M2) triples into the whole's, as in Chan et al. (1979).

    ``M2`` is the sum of squared deviations from the part's own mean (``count * biased_var``).
    This is what a synchronized batch norm all-reduces across processes: summing counts,
    ``count * mean`` and ``M2 + count * (mean - global_mean)^2`` gives exactly the statistics of the
    concatenated batch, without moving the data. Arrays may carry a trailing feature axis.

    Returns:
        ``(count, mean, M2)`` of the union.

    Examples::

        >>> count, mean, m2 = combine_moments([2, 2], [0.0, 2.0], [2.0, 2.0])   # {-1, 1} and {1, 3}
        >>> float(count), float(mean), float(m2)
        (4.0, 1.0, 8.0)
    """
    counts = np.asarray(counts, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    m2s = np.asarray(m2s, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts: expected a non-empty 1-D array, got shape {counts.shape}")
    if not (counts > 0).all():
        raise ValueError(f"counts: expected positive counts, got {counts.tolist()}")
    if means.shape[:1] != counts.shape or m2s.shape != means.shape:
        raise ValueError(
            f"means and m2s: expected leading length {counts.size} and equal shapes, got {means.shape} and {m2s.shape}"
        )
    weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))
    total = counts.sum()
    mean = (weights * means).sum(axis=0) / total
    m2 = (m2s + weights * np.square(means - mean)).sum(axis=0)
    return total, mean, m2


def sync_moments(x, all_reduce, *, axis=1):
    """Batch mean and biased variance over the union of every process's batch, as a synchronized
    batch norm computes them, from this process's part ``x`` and an ``all_reduce``.

    ``all_reduce(array)`` must return the elementwise sum of ``array`` over all processes. Two rounds,
    each moving one small vector per channel, never the data: first the counts and sums give the
    global mean; then each process contributes ``M2 + n * (mean_local - mean_global)^2`` (see
    :func:`combine_moments`), whose sum is the global M2.

    Returns:
        ``(mean, var, count)``.

    Examples::

        >>> one_process = lambda array: array          # a "group" of one process
        >>> mean, var, count = sync_moments(np.array([[1.0], [3.0]]), one_process)
        >>> mean.tolist(), var.tolist(), count
        ([2.0], [1.0], 2)
    """
    x = _checks.as_float_array(x)
    axes = reduction_axes(x.ndim, axis)
    n = _checks.count_over(x.shape, axes)
    local_mean, local_var = moments(x, axes)
    first = np.asarray(all_reduce(np.concatenate([[float(n)], n * local_mean])), dtype=np.float64)
    count, mean = first[0], first[1:] / first[0]
    m2 = np.asarray(all_reduce(n * local_var + n * np.square(local_mean - mean)), dtype=np.float64)
    return mean, m2 / count, int(round(count))


# --------------------------------------------------------------------------------------------
# The core: normalize over some axes, and its backward
# --------------------------------------------------------------------------------------------


class NormCache(NamedTuple):
    """What a normalization's backward needs from its forward.

    ``xhat`` has the (possibly grouped) shape the statistics were taken over; ``mean``, ``var`` and
    ``inv_std`` are float64 with the reduced axes kept (size 1), so they broadcast against it.
    """

    xhat: np.ndarray  # the normalized input, in the input's dtype
    mean: np.ndarray  # float64, keepdims
    var: np.ndarray  # float64, keepdims, biased
    inv_std: np.ndarray  # float64, keepdims: 1 / sqrt(var + eps)
    axes: tuple  # the reduced axes of ``xhat``
    batch_stats: bool  # True: mean and var came from this input (they depend on x)
    centered: bool = True  # False: RMS norm (mean fixed at 0, var = mean of squares)


def normalize(x: np.ndarray, axes: tuple, eps: float, mean=None, var=None, *, center=True) -> NormCache:
    r""":math:`\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}` with statistics over ``axes``.

    ``mean`` and ``var`` (keepdims, broadcastable) are computed from ``x`` when not given; given,
    they are constants (inference). ``center=False`` is RMS norm: no centring, and ``var`` is the
    mean of the squares, :math:`\hat x = x / \sqrt{\overline{x^2} + \epsilon}`. The arithmetic runs
    in float64 and ``xhat`` is rounded once to the input's dtype. Inputs are assumed validated (this
    is the core the public functions share).
    """
    batch_stats = mean is None
    if batch_stats and center:
        centered, mean, var = _centered_moments(x, axes)
    elif batch_stats:
        centered = x.astype(np.float64, copy=False)
        var = np.square(centered).mean(axis=axes, keepdims=True)
        mean = np.zeros_like(var)
    else:
        centered = x - mean
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (centered * inv_std).astype(x.dtype, copy=False)
    return NormCache(xhat, mean, var, inv_std, axes, batch_stats, center)


def normalize_backward(dxhat: np.ndarray, cache: NormCache) -> np.ndarray:
    r"""The gradient with respect to ``x`` of :func:`normalize`, given the gradient ``dxhat``.

    With batch statistics every :math:`\hat x_i` depends on every :math:`x_j` through the mean and
    the variance; their derivatives add two terms:

    .. math:: \frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2+\epsilon}}
              \Bigl(g - \overline{g} - \hat x\,\overline{g\,\hat x}\Bigr),\qquad g = \frac{\partial L}{\partial \hat x}

    (bars are means over the reduced axes): the upstream gradient minus its mean and minus its
    component along :math:`\hat x`, a projection. With constant statistics it is ``g * inv_std``;
    for RMS norm (no centring, so no path through a mean) the :math:`\overline g` term is absent.
    """
    g = dxhat.astype(np.float64, copy=False)
    if not cache.batch_stats:
        return (g * cache.inv_std).astype(dxhat.dtype, copy=False)
    mean_g = g.mean(axis=cache.axes, keepdims=True) if cache.centered else 0.0
    mean_g_xhat = (g * cache.xhat).mean(axis=cache.axes, keepdims=True)
    dx = cache.inv_std * (g - mean_g - cache.xhat * mean_g_xhat)
    return dx.astype(dxhat.dtype, copy=False)


def _affine(xhat, gamma, beta, shape):
    """``y = gamma * xhat + beta`` with per-feature vectors reshaped to ``shape``; always a new array."""
    y = xhat.copy() if gamma is None else xhat * np.reshape(gamma, shape).astype(xhat.dtype, copy=False)
    if beta is not None:
        y += np.reshape(beta, shape).astype(xhat.dtype, copy=False)
    return y


# --------------------------------------------------------------------------------------------
# Batch norm
# --------------------------------------------------------------------------------------------


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs: the core's cache, gamma, and the feature axis."""

    norm: NormCache
    gamma: np.ndarray | None
    axis: int

    @property
    def xhat(self) -> np.ndarray:
        return self.norm.xhat

    @property
    def mean(self) -> np.ndarray:
        """Per-feature mean used to normalize (float64, shape (C,))."""
        return self.norm.mean.reshape(-1)

    @property
    def var(self) -> np.ndarray:
        """Per-feature biased variance used to normalize (float64, shape (C,))."""
        return self.norm.var.reshape(-1)

    @property
    def shape(self) -> tuple:
        return self.norm.xhat.shape


def _feature_shape(ndim: int, axis: int) -> tuple:
    shape = [1] * ndim
    shape[axis] = -1
    return tuple(shape)


def _check_batch_norm_args(x, gamma, beta, eps, axis):
    x = _checks.as_float_array(x)
    _checks.check_ndim(x, (2, 3, 4, 5))
    axis = _checks.normalize_axis(axis, x.ndim)
    channels = x.shape[axis]
    eps = _checks.check_eps(eps, dtype=x.dtype)
    gamma = None if gamma is None else _checks.check_vector(gamma, channels, "gamma")
    beta = None if beta is None else _checks.check_vector(beta, channels, "beta")
    return x, gamma, beta, eps, axis


def batch_norm_train(x, gamma=None, beta=None, eps=1e-5, *, axis=1):
    r"""Training-mode batch norm: normalize with this batch's mean and biased variance.

    .. math:: y = \gamma\,\frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta

    Args:
        x: (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), float32 or float64.
        gamma, beta: per-feature scale and shift, shape (C,), or None (1 and 0).
        eps: added to the variance before the square root (> 0).
        axis: the feature axis (1 for PyTorch's layouts, -1 for channels last).

    Returns:
        ``(y, cache)``: ``y`` in the input's shape and dtype; ``cache.mean``/``cache.var`` are the
        batch statistics (float64, shape (C,)) a layer feeds to its running estimates.

    A batch with one value per feature gives ``y = beta`` (what Keras does); :func:`batch_norm`
    refuses it unless asked, as PyTorch does.

    Examples::

        >>> y, cache = batch_norm_train(np.array([[1.0], [1.2]]), eps=1e-5)
        >>> y.ravel().round(15).tolist()                  # exact: +-0.99950037468777319...
        [-0.999500374687773, 0.999500374687773]
        >>> cache.mean.round(12).tolist(), cache.var.round(12).tolist()
        ([1.1], [0.01])
    """
    x, gamma, beta, eps, axis = _check_batch_norm_args(x, gamma, beta, eps, axis)
    with np.errstate(invalid="ignore", over="ignore"):  # a NaN batch gives NaN, as in PyTorch
        norm = normalize(x, reduction_axes(x.ndim, axis), eps)
    shape = _feature_shape(x.ndim, axis)
    return _affine(norm.xhat, gamma, beta, shape), BatchNormCache(norm, gamma, axis)


def batch_norm_eval(x, mean, var, gamma=None, beta=None, eps=1e-5, *, axis=1):
    """Inference-mode batch norm: ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with given
    per-feature ``mean`` and ``var`` (for example the running estimates), which are constants.

    Returns:
        ``(y, cache)`` for :func:`batch_norm_backward` (whose ``dx`` is then ``gamma * dy / sqrt(var + eps)``).

    Examples::

        >>> y, _ = batch_norm_eval(np.array([[3.0], [5.0]]), np.array([1.0]), np.array([4.0]), eps=1e-12)
        >>> y.ravel().round(6).tolist()
        [1.0, 2.0]
    """
    x, gamma, beta, eps, axis = _check_batch_norm_args(x, gamma, beta, eps, axis)
    shape = _feature_shape(x.ndim, axis)
    mean = _checks.check_vector(mean, x.shape[axis], "mean").astype(np.float64).reshape(shape)
    var = _checks.check_vector(var, x.shape[axis], "var").astype(np.float64).reshape(shape)
    if (var < 0).any():
        raise ValueError(f"var: expected variances >= 0, got a minimum of {var.min()}")
    norm = normalize(x, reduction_axes(x.ndim, axis), eps, mean=mean, var=var)
    return _affine(norm.xhat, gamma, beta, shape), BatchNormCache(norm, gamma, axis)


def batch_norm_backward(dy, cache: BatchNormCache, *, fast=False):
    r"""Backward of batch norm: returns ``(dx, dgamma, dbeta)``.

    .. math::

        \frac{\partial L}{\partial\beta} = \sum dy,\qquad
        \frac{\partial L}{\partial\gamma} = \sum dy\,\hat x,\qquad
        \frac{\partial L}{\partial x} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}
              \Bigl(dy - \overline{dy} - \hat x\,\overline{dy\,\hat x}\Bigr)

    (sums and bars over the reduced axes), the closed form PyTorch and TensorFlow compute; with
    constant statistics (inference) ``dx = gamma * dy / sqrt(var + eps)``. ``dgamma`` and ``dbeta``
    are float64, shape (C,). ``fast=True`` runs the tuned kernel (:mod:`bnlib._kernels`), equal to
    this one to rounding.

    Examples::

        >>> x = np.array([[1.0], [2.0], [4.0]])
        >>> _, cache = batch_norm_train(x)
        >>> dx, dgamma, dbeta = batch_norm_backward(np.ones_like(x), cache)
        >>> float(abs(dx).max()) < 1e-12, dbeta.tolist()      # a constant upstream gradient cancels
        (True, [3.0])
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"cache: expected the BatchNormCache of a batch-norm forward, got {type(cache).__name__}")
    dy = _checks.as_float_array(dy, "dy")
    _checks.check_same_shape(dy, cache.shape)
    if fast:
        norm = cache.norm
        return _kernels.batch_norm_backward(dy, norm.xhat, norm.inv_std, cache.gamma, cache.axis, norm.batch_stats)
    axes = cache.norm.axes
    dbeta = dy.sum(axis=axes, dtype=np.float64)
    dgamma = (dy.astype(np.float64) * cache.xhat).sum(axis=axes)
    gamma = 1.0 if cache.gamma is None else np.reshape(cache.gamma, _feature_shape(dy.ndim, cache.axis))
    dx = normalize_backward(dy * gamma, cache.norm)
    return dx.astype(dy.dtype, copy=False), dgamma, dbeta


def batch_norm_backward_staged(dy, x, gamma=None, eps=1e-5, *, axis=1):
    """Backward of training-mode batch norm, one step per node of the computational graph.

    The forward is recomputed as eight elementary nodes (mean, centre, square, variance, std,
    reciprocal, normalize, affine) and each node's local derivative is applied in reverse order:
    the derivation chapter 3 follows before it simplifies to :func:`batch_norm_backward`, which
    gives the same numbers to rounding. Returns ``(dx, dgamma, dbeta)``.

    Examples::

        >>> rng = np.random.default_rng(0)
        >>> x, dy = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
        >>> staged = batch_norm_backward_staged(dy, x)
        >>> closed = batch_norm_backward(dy, batch_norm_train(x)[1])
        >>> all(np.allclose(a, b) for a, b in zip(staged, closed))
        True
    """
    x, gamma, _, eps, axis = _check_batch_norm_args(x, gamma, None, eps, axis)
    dy = _checks.as_float_array(dy, "dy")
    _checks.check_same_shape(dy, x.shape)
    axes = reduction_axes(x.ndim, axis)
    n = _checks.count_over(x.shape, axes)
    g = 1.0 if gamma is None else np.reshape(gamma, _feature_shape(x.ndim, axis)).astype(x.dtype)
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
    unbiased_running_var=True,
    allow_single_value=False,
    return_cache=False,
    fast=False,
):
    r"""``torch.nn.functional.batch_norm`` in NumPy: the one path every bnlib batch norm runs through.

    In training mode the batch's mean and biased variance normalize the input and, when the buffers
    are given, ``running_mean`` and ``running_var`` are updated IN PLACE:
    ``running = (1 - momentum) * running + momentum * batch``. In eval mode the buffers normalize.

    Every argument is checked before anything is written, so a call that raises leaves the buffers
    as they were.

    Args:
        input: (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), float32 or float64.
        running_mean, running_var: writable float arrays of shape (C,), or None (training only).
        weight, bias: gamma and beta (PyTorch's names), shape (C,), or None.
        training: use the batch's statistics (True) or the running buffers (False).
        momentum: weight of the NEW batch in the running update, in [0, 1] (Keras' 0.99 is 0.01).
        eps: added to the variance, > 0 (and not below float32's smallest normal for float32 input).
        axis: the feature axis (keyword-only extension; PyTorch fixes it at 1).
        unbiased_running_var: feed the unbiased batch variance ``m/(m-1) * var`` to ``running_var``
            (True, PyTorch) or the biased one (False, Keras 3).
        allow_single_value: accept a training batch with one value per feature (output ``beta``, as
            Keras does) instead of raising PyTorch's error. The running variance then gets 0 with
            ``unbiased_running_var=False``; with True such a batch is refused (m - 1 = 0).
        return_cache: also return the cache for :func:`batch_norm_backward`.
        fast: run the tuned kernel of :mod:`bnlib._kernels` (same numbers to rounding).

    Returns:
        The normalized array (same shape and dtype as ``input``), or ``(y, cache)``.

    Shape:
        Input (N, C, *) (or C on ``axis``). Output: same as the input.

    Examples::

        >>> x = np.array([[1.0, 0.0], [3.0, 4.0]])
        >>> running_mean, running_var = np.zeros(2), np.ones(2)
        >>> batch_norm(x, running_mean, running_var, training=True).round(4).tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
        >>> running_mean.tolist(), running_var.round(6).tolist()     # 0.9 * old + 0.1 * batch (unbiased var)
        ([0.2, 0.2], [1.1, 1.7])
    """
    x, gamma, beta, eps, axis = _check_batch_norm_args(input, weight, bias, eps, axis)
    momentum = _checks.check_momentum(momentum, allow_none=False)
    channels = x.shape[axis]
    buffers = [(name, b) for name, b in (("running_mean", running_mean), ("running_var", running_var)) if b is not None]
    for name, b in buffers:
        _checks.check_buffer(b, channels, name)
        if np.shares_memory(b, x):
            raise ValueError(f"{name}: expected a buffer separate from the input, got one that shares its memory")
    if len(buffers) == 2 and np.shares_memory(running_mean, running_var):
        raise ValueError("running_mean and running_var: expected two separate arrays, got the same memory twice")
    if training:
        if len(buffers) == 1:
            raise ValueError("running_mean and running_var: expected both arrays or both None")
        count = _checks.count_over(x.shape, reduction_axes(x.ndim, axis))
        if count <= 1 and not allow_single_value:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input shape {x.shape} "
                f"(batch size times spatial size is {count})"
            )
        if count <= 1 and buffers and unbiased_running_var:
            raise ValueError(
                f"input: one value per channel (shape {x.shape}) has no unbiased variance; "
                "use unbiased_running_var=False (Keras 3's convention) or a larger batch"
            )
        if fast:
            y, xhat, mean, var, inv_std = _kernels.batch_norm_train(x, gamma, beta, eps, axis)
            shape = _feature_shape(x.ndim, axis)
            norm = NormCache(
                xhat,
                mean.reshape(shape),
                var.reshape(shape),
                inv_std.reshape(shape),
                reduction_axes(x.ndim, axis),
                True,
            )
            cache = BatchNormCache(norm, gamma, axis)
        else:
            y, cache = batch_norm_train(x, gamma, beta, eps, axis=axis)
        if buffers and not (np.isfinite(cache.mean).all() and np.isfinite(cache.var).all()):
            # a NaN/inf batch would poison the running estimates for good (the statistics show it
            # without a pass of its own over the input); refuse before they are touched
            _checks.check_finite(x)
            raise ValueError("input: the batch statistics overflowed; running statistics were not updated")
        if buffers:
            batch_var = unbiased(cache.var, count) if unbiased_running_var else cache.var
            update_running(running_mean, cache.mean, momentum)
            update_running(running_var, batch_var, momentum)
    else:
        if len(buffers) < 2:
            raise ValueError("running_mean and running_var: expected arrays in eval mode (training=False), got None")
        y, cache = batch_norm_eval(x, running_mean, running_var, gamma, beta, eps, axis=axis)
    return (y, cache) if return_cache else y


# --------------------------------------------------------------------------------------------
# Layer norm and group norm: per-sample statistics, the same core
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Batch renormalization
# --------------------------------------------------------------------------------------------


class BatchRenormCache(NamedTuple):
    """What :func:`batch_renorm_backward` needs: the plain batch-norm cache, the correction ``r``
    and ``d`` (float64, (C,), constants of the backward) and the renormalized values."""

    batch: BatchNormCache  # the normalization with the batch's statistics
    r: np.ndarray
    d: np.ndarray
    xhat: np.ndarray  # r * xhat_B + d, in the input's dtype


def renorm_limits(step, *, rmax=3.0, dmax=5.0, schedule=(5000, 40000, 25000)):
    """The relaxation schedule of Ioffe (2017): ``(rmax, dmax)`` at training step ``step``.

    ``schedule = (warmup, r_end, d_end)``: plain batch norm (``rmax = 1``, ``dmax = 0``) for the first
    ``warmup`` steps, then linear ramps reaching ``rmax`` at step ``r_end`` and ``dmax`` at ``d_end``
    (the paper: 5k, 40k and 25k steps, to 3 and 5).

    Examples::

        >>> renorm_limits(0), renorm_limits(22500), renorm_limits(10**6)
        ((1.0, 0.0), (2.0, 4.375), (3.0, 5.0))
    """
    step = _checks.check_int(step, "step")
    if step < 0:
        raise ValueError(f"step: expected an int >= 0, got {step}")
    rmax, dmax = _checks.check_at_least(rmax, "rmax", 1.0), _checks.check_at_least(dmax, "dmax", 0.0)
    if (
        not isinstance(schedule, (tuple, list))
        or len(schedule) != 3
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in schedule)
        or not 0 <= schedule[0] < min(schedule[1], schedule[2])
    ):
        raise ValueError(
            f"schedule: expected (warmup, r_end, d_end) ints with 0 <= warmup < r_end, d_end, got {schedule!r}"
        )
    warmup, r_end, d_end = schedule

    def ramp(end):
        return min(1.0, max(0.0, (step - warmup) / (end - warmup)))

    return 1.0 + (rmax - 1.0) * ramp(r_end), dmax * ramp(d_end)


def batch_renorm_train(x, running_mean, running_var, gamma=None, beta=None, eps=1e-5, rmax=3.0, dmax=5.0, *, axis=1):
    r"""Training-mode batch renormalization (Ioffe 2017):

    .. math:: \hat x = \frac{x - \mu_B}{\sigma_B}\, r + d, \quad
              r = \operatorname{clip}_{[1/r_{\max},\, r_{\max}]}\frac{\sigma_B}{\sigma}, \quad
              d = \operatorname{clip}_{[-d_{\max},\, d_{\max}]}\frac{\mu_B - \mu}{\sigma}, \quad
              y = \gamma \hat x + \beta

    with :math:`\sigma_B = \sqrt{\sigma_B^2 + \epsilon}` from the batch and :math:`\mu`,
    :math:`\sigma = \sqrt{\text{running\_var} + \epsilon}` from the running estimates. ``r`` and ``d``
    are constants of the backward (stop-gradient): the output is then what eval mode would give
    (when unclipped), while the gradient still flows through the batch statistics. With ``rmax = 1``
    and ``dmax = 0`` it is batch norm. The running buffers are read, not updated (the layer does it).

    Returns:
        ``(y, cache)`` for :func:`batch_renorm_backward`; ``cache.r``, ``cache.d`` are float64 (C,).

    Examples::

        >>> x = np.array([[0.0], [2.0]])                  # batch mean 1, batch std 1
        >>> y, cache = batch_renorm_train(x, np.array([0.0]), np.array([4.0]), eps=1e-12)
        >>> cache.r.round(6).tolist(), cache.d.round(6).tolist(), y.ravel().round(6).tolist()  # (x - 0) / 2
        ([0.5], [0.5], [0.0, 1.0])
    """
    x, gamma, beta, eps, axis = _check_batch_norm_args(x, gamma, beta, eps, axis)
    channels = x.shape[axis]
    running_mean = _checks.check_buffer(running_mean, channels, "running_mean")
    running_var = _checks.check_buffer(running_var, channels, "running_var")
    if (running_var < 0).any():
        raise ValueError("running_var: expected values >= 0, got a negative variance")
    rmax, dmax = _checks.check_at_least(rmax, "rmax", 1.0), _checks.check_at_least(dmax, "dmax", 0.0)
    axes = reduction_axes(x.ndim, axis)
    count = _checks.count_over(x.shape, axes)
    if count <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input shape {x.shape} "
            f"(batch size times spatial size is {count})"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        norm = normalize(x, axes, eps)
        sigma = np.sqrt(running_var + eps)
        r = np.clip(np.sqrt(norm.var.reshape(-1) + eps) / sigma, 1.0 / rmax, rmax)
        d = np.clip((norm.mean.reshape(-1) - running_mean) / sigma, -dmax, dmax)
    shape = _feature_shape(x.ndim, axis)
    xhat = (norm.xhat * r.reshape(shape) + d.reshape(shape)).astype(x.dtype, copy=False)
    y = _affine(xhat, gamma, beta, shape)
    return y, BatchRenormCache(BatchNormCache(norm, gamma, axis), r, d, xhat)


def batch_renorm_backward(dy, cache: BatchRenormCache):
    """Returns ``(dx, dgamma, dbeta)`` with ``r`` and ``d`` held constant: ``dx`` is batch norm's
    backward of ``r * gamma * dy`` (per channel), ``dgamma`` sums ``dy`` times the renormalized values.

    Examples::

        >>> x = np.array([[0.0], [2.0], [4.0]])
        >>> _, cache = batch_renorm_train(x, np.zeros(1), np.ones(1), rmax=1.0, dmax=0.0)
        >>> dx, _, dbeta = batch_renorm_backward(np.ones_like(x), cache)   # rmax 1, dmax 0: batch norm
        >>> float(abs(dx).max()) < 1e-12, dbeta.tolist()
        (True, [3.0])
    """
    if not isinstance(cache, BatchRenormCache):
        raise TypeError(f"cache: expected the BatchRenormCache of batch_renorm_train, got {type(cache).__name__}")
    dy = _checks.as_float_array(dy, "dy")
    batch = cache.batch
    _checks.check_same_shape(dy, batch.shape)
    axes, shape = batch.norm.axes, _feature_shape(dy.ndim, batch.axis)
    dgamma = (dy.astype(np.float64) * cache.xhat).sum(axis=axes)
    dbeta = dy.sum(axis=axes, dtype=np.float64)
    scale = cache.r if batch.gamma is None else cache.r * np.asarray(batch.gamma, dtype=np.float64)
    dx = normalize_backward(dy * scale.reshape(shape).astype(dy.dtype, copy=False), batch.norm)
    return dx.astype(dy.dtype, copy=False), dgamma, dbeta


def _layer_norm_axes(x, normalized_shape):
    normalized_shape = _checks.check_shape(normalized_shape, "normalized_shape")
    k = len(normalized_shape)
    if x.ndim < k + 1 or x.shape[-k:] != normalized_shape:
        raise ValueError(
            f"input: expected shape (*, {', '.join(map(str, normalized_shape))}) with at least one "
            f"leading dimension, got {x.shape}"
        )
    return tuple(range(x.ndim - k, x.ndim)), normalized_shape


def _check_elementwise(v, shape, name):
    if v is None:
        return None
    arr = _checks.as_float_array(v, name)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (normalized_shape), got {arr.shape}")
    return arr


def layer_norm_forward(x, normalized_shape, gamma=None, beta=None, eps=1e-5):
    """Layer norm (PyTorch semantics): statistics per sample over the trailing ``normalized_shape``.

    ``gamma`` and ``beta`` have shape ``normalized_shape`` exactly (elementwise affine).

    Returns:
        ``(y, cache)`` for :func:`layer_norm_backward`.

    Examples::

        >>> y, _ = layer_norm_forward(np.array([[1.0, 3.0], [10.0, 30.0]]), 2, eps=1e-12)
        >>> y.round(6).tolist()
        [[-1.0, 1.0], [-1.0, 1.0]]
    """
    x = _checks.as_float_array(x)
    axes, normalized_shape = _layer_norm_axes(x, normalized_shape)
    gamma = _check_elementwise(gamma, normalized_shape, "gamma")
    beta = _check_elementwise(beta, normalized_shape, "beta")
    eps = _checks.check_eps(eps, dtype=x.dtype)
    norm = normalize(x, axes, eps)
    return _affine(norm.xhat, gamma, beta, normalized_shape), norm


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm`` in NumPy (``weight``/``bias`` are gamma/beta).

    Examples::

        >>> layer_norm(np.array([[0.0, 2.0]]), (2,), eps=1e-12).round(6).tolist()
        [[-1.0, 1.0]]
    """
    return layer_norm_forward(input, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(dy, cache: NormCache, gamma=None):
    """Returns ``(dx, dgamma, dbeta)``; ``dgamma``/``dbeta`` sum over the leading (batch) axes.

    Examples::

        >>> x = np.array([[1.0, 2.0, 4.0]])
        >>> _, cache = layer_norm_forward(x, 3)
        >>> dx, dgamma, dbeta = layer_norm_backward(np.ones_like(x), cache)
        >>> float(abs(dx).max()) < 1e-12, dbeta.tolist()
        (True, [1.0, 1.0, 1.0])
    """
    if not isinstance(cache, NormCache) or not cache.centered:
        raise TypeError(f"cache: expected the NormCache of a layer-norm forward, got {type(cache).__name__}")
    return _per_sample_backward(dy, cache, gamma)


def _per_sample_backward(dy, cache: NormCache, gamma):
    """The backward shared by layer and RMS norm (statistics per sample over the trailing axes):
    ``(dx, dgamma, dbeta)`` with the parameter gradients summed over the leading axes."""
    dy = _checks.as_float_array(dy, "dy")
    _checks.check_same_shape(dy, cache.xhat.shape)
    gamma = _check_elementwise(gamma, cache.xhat.shape[len(cache.xhat.shape) - len(cache.axes) :], "gamma")
    lead = tuple(range(dy.ndim - len(cache.axes)))
    dgamma = (dy.astype(np.float64) * cache.xhat).sum(axis=lead)
    dbeta = dy.sum(axis=lead, dtype=np.float64)
    dxhat = dy if gamma is None else dy * gamma
    return normalize_backward(dxhat, cache).astype(dy.dtype, copy=False), dgamma, dbeta


def check_rms_eps(eps):
    """RMS norm's ``eps``: None (the input dtype's machine epsilon, PyTorch's default) or a finite
    number >= 0 (0 is allowed, as in PyTorch: an all-zero sample then gives NaN)."""
    if eps is None:
        return None
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise TypeError(f"eps: expected a number >= 0 or None, got {type(eps).__name__}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0 or None, got {eps}")
    return float(eps)


def rms_norm_forward(x, normalized_shape, gamma=None, eps=None):
    r"""RMS norm (``torch.nn.functional.rms_norm``; Zhang & Sennrich 2019): per sample, over the
    trailing ``normalized_shape``,

    .. math:: y = \frac{x}{\sqrt{\overline{x^2} + \epsilon}} \odot \gamma

    Layer norm without the centring and without ``beta``. ``eps=None`` is PyTorch's default, the
    machine epsilon of the input's dtype (``np.finfo(dtype).eps``).

    Returns:
        ``(y, cache)`` for :func:`rms_norm_backward`.

    Examples::

        >>> y, _ = rms_norm_forward(np.array([[3.0, 4.0]]), 2, eps=0.0)
        >>> y.round(6).tolist()        # root mean square of (3, 4): sqrt(12.5)
        [[0.848528, 1.131371]]
    """
    x = _checks.as_float_array(x)
    axes, normalized_shape = _layer_norm_axes(x, normalized_shape)
    gamma = _check_elementwise(gamma, normalized_shape, "gamma")
    eps = check_rms_eps(eps)
    norm = normalize(x, axes, float(np.finfo(x.dtype).eps) if eps is None else eps, center=False)
    return _affine(norm.xhat, gamma, None, normalized_shape), norm


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``torch.nn.functional.rms_norm`` in NumPy (``weight`` is gamma).

    Examples::

        >>> rms_norm(np.array([[1.0, -1.0]]), (2,), eps=0.0).tolist()
        [[1.0, -1.0]]
    """
    return rms_norm_forward(input, normalized_shape, weight, eps)[0]


def rms_norm_backward(dy, cache: NormCache, gamma=None):
    r"""Returns ``(dx, dgamma)``: ``dx = inv_rms * (g - xhat * mean(g * xhat))`` with ``g = gamma * dy``
    (the layer-norm projection without its mean term), ``dgamma`` summed over the leading axes.

    Examples::

        >>> x = np.array([[1.0, 2.0, 4.0]])
        >>> _, cache = rms_norm_forward(x, 3)
        >>> dx, dgamma = rms_norm_backward(x, cache)   # upstream along x: dx = 0, x^2 / rms(x)
        >>> float(abs(dx).max()) < 1e-6, dgamma.round(4).tolist()
        (True, [0.378, 1.5119, 6.0474])
    """
    if not isinstance(cache, NormCache) or cache.centered:
        raise TypeError(f"cache: expected the NormCache of an RMS-norm forward, got {type(cache).__name__}")
    dx, dgamma, _ = _per_sample_backward(dy, cache, gamma)  # RMS norm has no beta
    return dx, dgamma


class GroupNormCache(NamedTuple):
    norm: NormCache  # over the grouped (N, G, C/G * spatial) view
    shape: tuple  # the input's shape


def group_norm_forward(x, num_groups, gamma=None, beta=None, eps=1e-5):
    """Group norm (PyTorch semantics): per sample, statistics over each group of C/G channels and
    all spatial positions; per-channel ``gamma``/``beta``. Input (N, C, *).

    ``num_groups=1`` is layer norm over (C, H, W); ``num_groups=C`` is instance norm. A group with a
    single value is refused (its output would be ``beta`` whatever the input), as in PyTorch.

    Returns:
        ``(y, cache)`` for :func:`group_norm_backward`.

    Examples::

        >>> x = np.array([[1.0, 3.0, 10.0, 30.0]])             # (N, C) = (1, 4), two groups of two
        >>> group_norm_forward(x, 2, eps=1e-12)[0].round(6).tolist()
        [[-1.0, 1.0, -1.0, 1.0]]
    """
    x = _checks.as_float_array(x)
    _checks.check_ndim(x, (2, 3, 4, 5))
    groups = _checks.check_positive_int(num_groups, "num_groups")
    channels = x.shape[1]
    if channels % groups:
        raise ValueError(f"num_groups: expected a divisor of the channel count {channels}, got {groups}")
    per_group = x.size // (x.shape[0] * groups) if x.shape[0] else 0
    if per_group <= 1:
        raise ValueError(
            f"Expected more than 1 value per group, got input shape {x.shape} with {groups} groups "
            f"({per_group} value(s) per group)"
        )
    gamma = None if gamma is None else _checks.check_vector(gamma, channels, "gamma")
    beta = None if beta is None else _checks.check_vector(beta, channels, "beta")
    eps = _checks.check_eps(eps, dtype=x.dtype)
    norm = normalize(x.reshape(x.shape[0], groups, -1), (2,), eps)
    y = _affine(norm.xhat.reshape(x.shape), gamma, beta, _feature_shape(x.ndim, 1))
    return y, GroupNormCache(norm, x.shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm`` in NumPy (``weight``/``bias`` are gamma/beta)."""
    return group_norm_forward(input, num_groups, weight, bias, eps)[0]


def group_norm_backward(dy, cache: GroupNormCache, gamma=None):
    """Returns ``(dx, dgamma, dbeta)`` with per-channel ``dgamma``/``dbeta`` (float64).

    Examples::

        >>> x = np.arange(8.0).reshape(2, 4) ** 2
        >>> _, cache = group_norm_forward(x, 2)
        >>> dx, dgamma, dbeta = group_norm_backward(np.ones_like(x), cache)
        >>> float(abs(dx).max()) < 1e-10, dbeta.tolist()
        (True, [2.0, 2.0, 2.0, 2.0])
    """
    if not isinstance(cache, GroupNormCache):
        raise TypeError(f"cache: expected the GroupNormCache of a group-norm forward, got {type(cache).__name__}")
    dy = _checks.as_float_array(dy, "dy")
    _checks.check_same_shape(dy, cache.shape)
    shape = cache.shape
    gamma = None if gamma is None else _checks.check_vector(gamma, shape[1], "gamma")
    channel_axes = tuple(a for a in range(len(shape)) if a != 1)
    xhat = cache.norm.xhat.reshape(shape)
    dgamma = (dy.astype(np.float64) * xhat).sum(axis=channel_axes)
    dbeta = dy.sum(axis=channel_axes, dtype=np.float64)
    dxhat = dy if gamma is None else dy * np.reshape(gamma, _feature_shape(len(shape), 1))
    dx = normalize_backward(dxhat.reshape(cache.norm.xhat.shape), cache.norm)
    return dx.reshape(shape).astype(dy.dtype, copy=False), dgamma, dbeta


# --------------------------------------------------------------------------------------------
# Folding batch norm into the layer before it (inference only)
# --------------------------------------------------------------------------------------------


def fold_batch_norm(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    r"""Fold an eval-mode batch norm into the linear or convolution layer in front of it.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel,
    ``BN(W x + b) = (s W) x + (s (b - mean) + beta)``. ``weight`` has the output channels first:
    (out, in) for a linear layer, (out, in, kh, kw) for a convolution (PyTorch's layouts).
    Exact only in inference mode: in training the layer normalizes with the batch's statistics,
    which the folded weights cannot know.

    Returns:
        ``(folded_weight, folded_bias)``, computed in float64 and returned in ``weight``'s dtype.

    Examples::

        >>> w, b = fold_batch_norm(np.array([[2.0]]), None, np.array([1.0]), np.array([4.0]), eps=1e-12)
        >>> w.round(6).tolist(), b.round(6).tolist()                  # (2x - 1) / 2
        ([[1.0]], [-0.5])
    """
    weight = _checks.as_float_array(weight, "weight")
    if weight.ndim < 2:
        raise ValueError(f"weight: expected (out, in, ...) with at least 2 dimensions, got shape {weight.shape}")
    out = weight.shape[0]
    running_mean = _checks.check_vector(running_mean, out, "running_mean").astype(np.float64)
    running_var = _checks.check_vector(running_var, out, "running_var").astype(np.float64)
    gamma = np.ones(out) if gamma is None else _checks.check_vector(gamma, out, "gamma").astype(np.float64)
    beta = np.zeros(out) if beta is None else _checks.check_vector(beta, out, "beta").astype(np.float64)
    bias = np.zeros(out) if bias is None else _checks.check_vector(bias, out, "bias").astype(np.float64)
    eps = _checks.check_eps(eps)
    if (running_var < 0).any():
        raise ValueError(f"running_var: expected variances >= 0, got a minimum of {running_var.min()}")
    scale = gamma / np.sqrt(running_var + eps)
    folded_weight = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    folded_bias = (bias - running_mean) * scale + beta
    return folded_weight.astype(weight.dtype), folded_bias.astype(weight.dtype)
