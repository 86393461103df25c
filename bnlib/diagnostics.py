"""Diagnostics a practitioner reuses on their own network, and the small optimization demos.

* :func:`layer_report`: per hidden layer, the activations, the saturated fraction (|tanh| > 0.97,
  sigmoid outside [0.03, 0.97]), the dead-ReLU fraction and the gradient norm, from one forward and
  backward pass.
* :func:`gradient_descent_2d`: gradient descent on a 2-D quadratic, to show why input scale matters.
"""

from __future__ import annotations

from typing import NamedTuple

import functools

import numpy as np

from .layers import BatchNorm, GroupNorm, LayerNorm
from .nn import Linear, ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh

__all__ = ["LayerReport", "layer_report", "saturated_fraction", "digits_batch", "init_report", "GDPath",
           "gradient_descent_2d"]

#: what counts as saturated: the slope of the activation is below about 6% of its maximum
SATURATION = {"tanh": 0.97, "sigmoid": (0.03, 0.97)}


def saturated_fraction(values, activation: str) -> float:
    """Share of activation outputs in the flat part of the curve (dead units for ReLU: output 0)."""
    values = np.asarray(values)
    if activation == "tanh":
        return float(np.mean(np.abs(values) > SATURATION["tanh"]))
    if activation == "sigmoid":
        low, high = SATURATION["sigmoid"]
        return float(np.mean((values < low) | (values > high)))
    if activation == "relu":
        return float(np.mean(values <= 0))
    raise ValueError(f"activation: expected 'tanh', 'sigmoid' or 'relu', got {activation!r}")


class LayerReport(NamedTuple):
    activations: list  # per hidden layer: the activation output, (N, width)
    saturated: list  # per hidden layer: saturated fraction (tanh/sigmoid) or zero fraction (relu)
    dead_units: list  # per hidden layer: share of units that are 0 for every sample (ReLU) else nan
    grad_norms: list  # per Linear layer: ||dL/dW|| (Frobenius)
    weight_norms: list  # per Linear layer: ||W||
    loss: float


def layer_report(model, x, y, *, activation: str) -> LayerReport:
    """One training-mode forward/backward through ``model`` (a Sequential), measured per layer."""
    kinds = {ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid"}
    model.train()
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    acts, sat, dead, grads, weights = [], [], [], [], []
    for layer in model.layers:
        if type(layer) in kinds:
            out = layer._y
            acts.append(out)
            sat.append(saturated_fraction(out, activation))
            dead.append(float(np.mean((out <= 0).all(axis=0))) if activation == "relu" else float("nan"))
        elif isinstance(layer, Linear):
            grads.append(float(np.linalg.norm(layer.dweight)))
            weights.append(float(np.linalg.norm(layer.weight)))
    return LayerReport(acts, sat, dead, grads, weights, loss)


@functools.lru_cache(maxsize=None)
def digits_batch(n=256, seed=0):
    """The first ``n`` standardized training images of the digits (flattened) and their labels."""
    from .data import load_digits

    data = load_digits(seed=seed)
    return data.x_train[:n], data.y_train[:n]


@functools.lru_cache(maxsize=16)  # a report keeps every layer's activations (~2 MB at depth 10)
def init_report(activation, gain, depth, batch_norm, width=100) -> LayerReport:
    """:func:`layer_report` of ``mlp([64] + [width] * depth + [10])`` at initialization (seed 0) on
    :func:`digits_batch`. Cached: chapter 1 and its two interactive figures ask for the same networks."""
    from .nn import mlp

    x, y = digits_batch()
    model = mlp([64] + [width] * depth + [10], activation=activation, norm="batch" if batch_norm else None,
                gain=gain, rng=0)
    return layer_report(model, x, y, activation=activation)


def has_norm(model) -> bool:
    return any(isinstance(m, (BatchNorm, LayerNorm, GroupNorm)) for m in model.layers)


class GDPath(NamedTuple):
    points: np.ndarray  # (steps + 1, 2) iterates
    losses: np.ndarray  # loss at each iterate
    steps_to_converge: int | None  # first step with loss below tol, or None


def gradient_descent_2d(curvatures, *, lr=None, start=(1.0, 1.0), steps=200, tol=1e-6) -> GDPath:
    """Gradient descent on ``f(w) = 1/2 * sum(c_i * w_i^2)`` from ``start``.

    The curvatures play the role of the input features' variances: a linear least-squares problem
    whose two inputs have standard deviations s1 and s2 has curvatures proportional to s1^2 and s2^2.
    ``lr`` defaults to ``1 / max(c)``, the largest step that is safe in the steep direction
    (anything above ``2 / max(c)`` diverges). Convergence is declared when the loss falls below
    ``tol`` times the starting loss.
    """
    c = np.asarray(curvatures, dtype=np.float64)
    if c.shape != (2,) or (c <= 0).any():
        raise ValueError(f"curvatures: expected two positive numbers, got {curvatures!r}")
    lr = 1.0 / c.max() if lr is None else float(lr)
    w = np.asarray(start, dtype=np.float64).copy()
    points, losses = [w.copy()], [0.5 * float(c @ w**2)]
    converged = None
    for step in range(1, steps + 1):
        w = w - lr * c * w
        points.append(w.copy())
        losses.append(0.5 * float(c @ w**2))
        if converged is None and losses[-1] < tol * losses[0]:
            converged = step
    return GDPath(np.array(points), np.array(losses), converged)
