"""Chapter 3 (the backward pass): the wrong constant-statistics backward, kept on purpose to be
measured, and the figures that compare the staged and closed-form backwards.
"""

from __future__ import annotations

import numpy as np

from bnlib import BatchNorm
from bnlib import functional as F

from .explore import interactive
from .style import PALETTE, frame, pyplot


def batch_norm_backward_constant_stats(dy, x, gamma=None, eps=1e-5, *, axis=1):
    """The WRONG training-mode backward that treats the batch mean and variance as constants.

    ``dx = gamma * dy / sqrt(var + eps)``: it ignores that every output depends on every input of
    the batch through the statistics. Kept so the book and the tests can measure its error (a
    gradient check catches it); never train with it. Returns ``(dx, dgamma, dbeta)`` (the last two
    are right).
    """
    _, cache = F.batch_norm_train(x, gamma, None, eps, axis=axis)
    dy = np.asarray(dy)
    axes = cache.norm.axes
    return _constant_stats_dx(dy, cache), (dy * cache.xhat).sum(axis=axes), dy.sum(axis=axes)


def _constant_stats_dx(dy, cache):
    """``gamma * inv_std * dy``: the gradient if mean and variance did not depend on x."""
    gamma = 1.0 if cache.gamma is None else np.reshape(cache.gamma, cache.norm.inv_std.shape)
    return (dy * (gamma * cache.norm.inv_std)).astype(dy.dtype)


class ConstantStatsBatchNorm(BatchNorm):
    """A BatchNorm whose training-mode backward treats the batch mean and variance as constants:
    ``dx = gamma * dy / sqrt(var + eps)``. The forward pass and dgamma, dbeta are correct."""

    def backward(self, dy):
        dx = super().backward(dy)  # sets dgamma, dbeta (correct) and validates dy
        if not self.training:
            return dx
        parts = [_constant_stats_dx(np.asarray(dy)[sl], cache) for sl, cache in self._cache]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def constant_stats_error(batch_sizes, *, trials=200, features=16, seed=0):
    """Median relative error of the backward that treats mean and variance as constants.

    For each batch size N: random x, gamma and dy; error ``||dx_wrong - dx_true|| / ||dx_true||``
    per trial (per whole batch), median over ``trials``. Returns an array, one value per N.
    """
    rng = np.random.default_rng(seed)
    medians = []
    for n in batch_sizes:
        errors = []
        for _ in range(trials):
            x = rng.standard_normal((n, features))
            dy = rng.standard_normal((n, features))
            gamma = rng.uniform(0.5, 1.5, features)
            _, cache = F.batch_norm_train(x, gamma, None)
            true, _, _ = F.batch_norm_backward(dy, cache)
            wrong, _, _ = batch_norm_backward_constant_stats(dy, x, gamma)
            errors.append(np.linalg.norm(wrong - true) / np.linalg.norm(true))
        medians.append(float(np.median(errors)))
    return np.array(medians)


@interactive(
    title="The gradient with constant statistics against the true gradient",
    alt="Scatter plot of each input-gradient entry computed with mean and variance treated as constants against the true gradient entry",
    labels={"batch_size": "batch size"},
    batch_size=[2, 4, 8, 16, 32, 64, 256],
    eps=[1e-5, 1e-2, 1.0],
)
def gradient_error_scatter(batch_size=8, eps=1e-5):
    """Each entry of dx: the constant-statistics version (y) against the true one (x)."""
    rng = np.random.default_rng(0)
    features = max(1, 512 // batch_size)
    x = rng.standard_normal((batch_size, features))
    dy = rng.standard_normal((batch_size, features))
    _, cache = F.batch_norm_train(x, None, None, eps)
    true, _, _ = F.batch_norm_backward(dy, cache)
    wrong, _, _ = batch_norm_backward_constant_stats(dy, x, None, eps)
    error = np.linalg.norm(wrong - true) / np.linalg.norm(true)
    fig, ax = frame(figsize=(5.2, 4.0), left=0.14, bottom=0.13)
    lim = float(np.abs(np.concatenate([true.ravel(), wrong.ravel()])).max()) * 1.05 + 1e-12
    ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=1, label="equal")
    ax.plot(true.ravel(), wrong.ravel(), ".", color=PALETTE[1], ms=4, alpha=0.6, label="entries of dx")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("true dx (full backward)")
    ax.set_ylabel("dx with mean, var constant")
    ax.set_title(f"N = {batch_size}, eps = {eps:g}: relative error {error:.2f}")
    ax.legend(fontsize=9, loc="upper left")
    return fig


def constant_stats_error_plot(batch_sizes, errors):
    """Median relative error of the constant-statistics gradient against batch size, with sqrt(2/(N-2))."""
    plt = pyplot()
    n = np.asarray(batch_sizes, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.loglog(n, errors, "o", color=PALETTE[1], ms=7, label="measured (median of trials)")
    fine = np.geomspace(max(3, n.min()), n.max(), 100)
    ax.loglog(fine, np.sqrt(2 / (fine - 2)), "-", color=PALETTE[0], label="sqrt(2 / (N - 2))")
    ax.loglog(fine, np.sqrt(2 / fine), ":", color="0.4", label="sqrt(2 / N)")
    ax.set_xlabel("batch size N")
    ax.set_ylabel("relative error of dx")
    ax.legend(fontsize=9)
    return fig


def timing_boxplot(times: dict, title: str):
    """Box plot of repeated timings in milliseconds, one box per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = list(times)
    ax.boxplot([times[k] * 1e3 for k in names], vert=False, widths=0.5)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xlabel("time per call (ms)")
    ax.set_title(title)
    return fig


def xhat_jacobian(x, eps=1e-5):
    """The Jacobian ``J[j, i] = d xhat_j / d x_i`` of one feature's normalization over a batch
    ``x`` of shape (m,), in closed form: ``inv_std * (I - 1 1^T / m - xhat xhat^T / m)``.

    The two subtracted terms are the paths through the batch mean and through the batch variance.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x: expected one feature over a batch, shape (m,) with m >= 2, got shape {x.shape}")
    m = x.size
    inv_std = 1.0 / np.sqrt(x.var() + eps)
    xhat = (x - x.mean()) * inv_std
    return inv_std * (np.eye(m) - np.ones((m, m)) / m - np.outer(xhat, xhat) / m)


def numerical_xhat_jacobian(x, eps=1e-5, h=1e-6):
    """The same Jacobian by central differences of :func:`bnlib.functional.batch_norm` (a check)."""
    x = np.asarray(x, dtype=np.float64)
    columns = []
    for i in range(x.size):
        step = np.zeros_like(x)
        step[i] = h
        up = F.batch_norm((x + step)[:, None], None, None, training=True, eps=eps)[:, 0]
        down = F.batch_norm((x - step)[:, None], None, None, training=True, eps=eps)[:, 0]
        columns.append((up - down) / (2 * h))
    return np.stack(columns, axis=1)


def units_first_dgamma(dy, xhat):
    """What ``(upstream gradient) @ (normalized values)`` gives when both are stored units-first,
    shape (units, examples), as in notes that write ``dgamma = dZtilde @ Znorm``: the matrix
    product of a (u, m) and a (u, m) array. Returns ``(result or None, error message or None)``.

    The correct ``dgamma`` sums ``dy * xhat`` over the examples: the diagonal of ``dy @ xhat.T``, not
    of ``dy @ xhat``.
    """
    try:
        return np.asarray(dy) @ np.asarray(xhat), None
    except ValueError as exc:
        return None, str(exc)
