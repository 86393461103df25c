"""Finite-difference gradient checks, for the tests and for readers checking their own layers.

``check_layer`` compares a layer's ``backward`` with central differences of the scalar
``sum(forward(x) * dy)`` for a random ``dy``; in float64 a correct gradient agrees to about 1e-8
relative error, a wrong one (for example batch norm's backward with the statistics treated as
constants) is off by order one. Every check here can fail: NaN is never hidden, and arrays of
different shapes are an error, not a zero.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from . import _checks

__all__ = ["numerical_gradient", "relative_error", "check_layer", "GradCheck"]


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f`` at ``x`` (float64).

    Examples::

        >>> numerical_gradient(lambda v: float((v**2).sum()), np.array([1.0, -2.0])).round(6).tolist()
        [2.0, -4.0]
    """
    x = np.array(_checks.as_float_array(x, "x"), dtype=np.float64)
    if not (isinstance(h, float) and h > 0):
        raise ValueError(f"h: expected a float > 0, got {h!r}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """``max |a - b| / max(|a|, |b|)``: scale-free, 0 for identical arrays, NaN if either holds NaN.

    Examples::

        >>> relative_error([1.0, 2.0], [1.0, 2.2])
        0.09090909090909098
        >>> relative_error([1.0, 2.0], [1.0, 2.0, 3.0])
        Traceback (most recent call last):
        ...
        ValueError: relative_error: expected arrays of the same shape, got (2,) and (3,)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: expected arrays of the same shape, got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return 0.0 if scale == 0 else float(np.abs(a - b).max() / scale)


class GradCheck(NamedTuple):
    errors: dict  # name -> relative error ("x" for the input, then each parameter)

    @property
    def worst(self) -> float:
        """The largest error; NaN if any error is NaN (a NaN must fail a check, not vanish in max)."""
        values = np.array(list(self.errors.values()), dtype=np.float64)
        return float("nan") if np.isnan(values).any() else float(values.max())


def check_layer(layer, x, *, rng=None, h=1e-6, backward=None) -> GradCheck:
    """Compare ``layer.backward`` (or ``backward(layer, dy)``) with finite differences.

    Every evaluation runs on a deep copy of the layer, so the original (its parameters, running
    statistics and counters) is left exactly as it was. Returns the relative error for the input
    and for each parameter.

    Examples::

        >>> from bnlib import BatchNorm
        >>> check_layer(BatchNorm(3), np.random.default_rng(0).normal(size=(6, 3)), rng=1).worst < 1e-7
        True
    """
    rng = np.random.default_rng(rng)
    x = np.array(_checks.as_float_array(x, "x"), dtype=np.float64)
    dy = rng.normal(size=np.shape(copy.deepcopy(layer)(x)))
    template = copy.deepcopy(layer)

    def loss_of_input(z):
        return float((copy.deepcopy(template)(z) * dy).sum())

    analytic = copy.deepcopy(template)
    analytic(x)
    dx = analytic.backward(dy) if backward is None else backward(analytic, dy)
    errors = {"x": relative_error(dx, numerical_gradient(loss_of_input, x, h))}
    for module, name in template.parameters():
        path = _path_to(template, module)

        def loss_of_param(p, path=path, name=name):
            clone = copy.deepcopy(template)
            setattr(_follow(clone, path), name, p)
            return float((clone(x) * dy).sum())

        numeric = numerical_gradient(loss_of_param, getattr(module, name), h)
        analytic_grad = getattr(_follow(analytic, path), "d" + name)
        key = f"{'.'.join(map(str, path)) + '.' if path else ''}{name}"
        errors[key] = float("nan") if analytic_grad is None else relative_error(analytic_grad, numeric)
    return GradCheck(errors)


def _path_to(root, target, path=()):
    if root is target:
        return path
    for i, child in enumerate(root.children()):
        found = _path_to(child, target, path + (i,))
        if found is not None:
            return found
    return None


def _follow(root, path):
    for i in path:
        root = root.children()[i]
    return root
