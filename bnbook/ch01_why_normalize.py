"""Chapter 1 (why normalize): per-layer diagnostics at initialization and their figures.

:func:`layer_report` is a diagnostic a reader reuses on their own network (activations, the
saturated fraction, dead ReLUs, gradient norms per layer); :func:`gradient_descent_2d` shows why
the scale of the inputs matters for gradient descent.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from bnlib import Linear, ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh, mlp
from bnlib.data import load_digits

from .explore import interactive
from .style import PALETTE, frame, pyplot

GRID_CH1 = dict(
    activation=["tanh", "sigmoid", "relu"], gain=[0.5, 1.0, 5 / 3, 3.0], depth=[5, 10], batch_norm=[False, True]
)


LABELS_CH1 = {"gain": "weight gain", "batch_norm": "batch norm"}


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
            out = layer.output
            acts.append(out)
            sat.append(saturated_fraction(out, activation))
            dead.append(float(np.mean((out <= 0).all(axis=0))) if activation == "relu" else float("nan"))
        elif isinstance(layer, Linear):
            grads.append(float(np.linalg.norm(layer.dweight)))
            weights.append(float(np.linalg.norm(layer.weight)))
    return LayerReport(acts, sat, dead, grads, weights, loss)


@functools.cache
def digits_batch(n=256, seed=0):
    """The first ``n`` standardized training images of the digits (flattened) and their labels."""
    data = load_digits(seed=seed)
    return data.x_train[:n], data.y_train[:n]


@functools.lru_cache(maxsize=16)  # a report keeps every layer's activations (~2 MB at depth 10)
def init_report(activation, gain, depth, batch_norm, width=100) -> LayerReport:
    """:func:`layer_report` of ``mlp([64] + [width] * depth + [10])`` at initialization (seed 0) on
    :func:`digits_batch`. Cached: chapter 1 and its two interactive figures ask for the same networks."""
    x, y = digits_batch()
    model = mlp(
        [64] + [width] * depth + [10], activation=activation, norm="batch" if batch_norm else None, gain=gain, rng=0
    )
    return layer_report(model, x, y, activation=activation)


class GDPath(NamedTuple):
    points: np.ndarray  # (steps + 1, 2) iterates (fewer if the run diverged)
    losses: np.ndarray  # loss at each iterate
    steps_to_converge: int | None  # first step with loss below tol, or None


def gradient_descent_2d(curvatures, *, lr=None, start=(1.0, 1.0), steps=200, tol=1e-6) -> GDPath:
    """Gradient descent on ``f(w) = 1/2 * sum(c_i * w_i^2)`` from ``start``.

    The curvatures play the role of the input features' variances: a linear least-squares problem
    whose two inputs have standard deviations s1 and s2 has curvatures proportional to s1^2 and s2^2.
    ``lr`` defaults to ``1 / max(c)``, the largest step that is safe in the steep direction
    (anything above ``2 / max(c)`` diverges). Convergence is declared when the loss falls below
    ``tol`` times the starting loss. A run whose loss exceeds 10^12 times the starting loss has
    diverged and stops there (``points`` is then shorter than ``steps + 1``).
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
        if losses[-1] > 1e12 * losses[0]:  # diverged: stop before the numbers overflow
            break
    return GDPath(np.array(points), np.array(losses), converged)


def step_sizes(curvatures, tol=1e-6, steps=100_000) -> dict:
    """Steps to converge on the quadratic for the step sizes worth comparing (None: never).

    ``1 / c_max`` solves the steep direction in one step; ``2 / (c_max + c_min)`` is the best fixed
    step (both directions then shrink by ``(kappa - 1) / (kappa + 1)`` per step); ``2 / c_max`` is the
    stability limit: just under it the steep direction oscillates but still shrinks, just over it it
    grows.
    """
    c = np.asarray(curvatures, dtype=np.float64)
    hi, lo = float(c.max()), float(c.min())
    rates = {"1/c_max": 1 / hi, "2/(c_max+c_min)": 2 / (hi + lo), "1.99/c_max": 1.99 / hi, "2.01/c_max": 2.01 / hi}
    return {name: gradient_descent_2d(c, lr=lr, steps=steps, tol=tol).steps_to_converge for name, lr in rates.items()}


def depth_gradient_ratios(depths=(10, 20, 30, 50), seeds=(0, 1, 2), activation="relu", gain=2**0.5, width=100):
    """Ratio of the first to the last hidden layer's weight-gradient norm at initialization, per
    depth, without and with batch norm: ``{(depth, batch_norm): [ratio per seed]}``.

    With ReLU and He initialization (gain sqrt 2) and batch norm, this ratio grows exponentially
    with depth: the gradient explosion of Yang et al. (2019).
    """
    x, y = digits_batch()
    out = {}
    for depth in depths:
        for batch_norm in (False, True):
            ratios = []
            for seed in seeds:
                model = mlp(
                    [64] + [width] * depth + [10],
                    activation=activation,
                    norm="batch" if batch_norm else None,
                    gain=gain,
                    rng=seed,
                )
                g = layer_report(model, x, y, activation=activation).grad_norms
                ratios.append(g[0] / g[depth - 1])
            out[depth, batch_norm] = ratios
    return out


def quadratic_paths(scales=(1.0, 10.0), steps=100):
    """Gradient descent on the same quadratic with raw feature scales vs standardized features."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    raw = np.square(np.asarray(scales, dtype=float))
    for ax, curv, title in ((axes[0], raw, "raw features"), (axes[1], np.ones(2), "standardized features")):
        path = gradient_descent_2d(curv, steps=steps)
        g = np.linspace(-1.2, 1.2, 200)
        w1, w2 = np.meshgrid(g, g)
        ax.contour(w1, w2, 0.5 * (curv[0] * w1**2 + curv[1] * w2**2), levels=12, colors="0.7", linewidths=0.8)
        ax.plot(path.points[:, 0], path.points[:, 1], "o-", color=PALETTE[1], ms=3, lw=1.2)
        ax.plot(0, 0, "*", color=PALETTE[0], ms=12)
        done = path.steps_to_converge
        ax.set_title(f"{title}: {'>' + str(steps) if done is None else done} steps")
        ax.set_xlabel("$w_1$")
        ax.set_ylabel("$w_2$")
        ax.set_aspect("equal")
    return fig


@interactive(
    title="Activations per layer at initialization",
    alt="Histograms of the activation values of each hidden layer of a deep MLP at initialization",
    labels=LABELS_CH1,
    **GRID_CH1,
)
def activation_histograms(activation="tanh", gain=5 / 3, depth=5, batch_norm=False):
    """Histogram of each hidden layer's activations (one line per layer, darker = deeper)."""
    report = init_report(activation, gain, depth, batch_norm)
    fig, ax = frame(figsize=(7.2, 3.4), right=0.76)
    cmap = pyplot().get_cmap("viridis")
    ranges = {"tanh": (-1, 1), "sigmoid": (0, 1), "relu": (0, None)}
    low, high = ranges[activation]
    relu = activation == "relu"
    if relu:  # the zero spike (the legend's share) apart; the positive tail on log axes
        top = max(float(np.percentile(a[a > 0], 99.9)) if (a > 0).any() else 1.0 for a in report.activations)
    for i, acts in enumerate(report.activations):
        if relu:
            positive = acts[acts > 0]
            counts, edges = np.histogram(positive, bins=50, range=(0, top))
            counts = counts / acts.size / np.diff(edges)  # density of all values, zeros excluded
        else:
            counts, edges = np.histogram(acts, bins=50, range=(low, high), density=True)
        ax.plot(
            0.5 * (edges[1:] + edges[:-1]),
            counts,
            color=cmap(i / max(1, depth - 1)),
            lw=1.4,
            label=f"layer {i + 1}: {100 * report.saturated[i]:.0f}%",
        )
    word = "zero" if relu else "saturated"
    ax.set_title(f"{activation}, gain {gain:.3g}, depth {depth}, BN {'on' if batch_norm else 'off'}")
    ax.set_xlabel("ReLU output > 0 (zeros: legend)" if relu else f"{activation} output")
    ax.set_ylabel("density (log scale)" if relu else "density")
    if relu:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(pyplot().FuncFormatter(lambda v, _: f"{v:.0e}"))
        ax.yaxis.set_minor_locator(pyplot().NullLocator())
    # beside the axes, not over the curves
    ax.legend(title=f"{word} share", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.02))
    return fig


@interactive(
    title="Saturation and gradient norm per layer",
    alt="Two panels per layer: the saturated (or zero) share of activations, and the gradient norm of the weights",
    labels=LABELS_CH1,
    **GRID_CH1,
)
def layer_diagnostics(activation="tanh", gain=5 / 3, depth=5, batch_norm=False):
    """Left: saturated (tanh/sigmoid) or zero (ReLU) share per layer. Right: ||dL/dW|| per layer."""
    fig, (ax1, ax2) = frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    for bn, colour in ((False, PALETTE[1]), (True, PALETTE[0])):
        report = init_report(activation, gain, depth, bn)
        layers = np.arange(1, depth + 1)
        style = dict(
            color=colour,
            marker="o",
            lw=2.5 if bn == batch_norm else 1,
            alpha=1 if bn == batch_norm else 0.35,
            label="with BN" if bn else "without BN",
        )
        ax1.plot(layers, 100 * np.array(report.saturated), **style)
        ax2.semilogy(np.arange(1, depth + 2), report.grad_norms, **style)
    ax1.set_xlabel("hidden layer")
    ax1.set_ylabel("zero share (%)" if activation == "relu" else "saturated share (%)")
    ax1.set_ylim(-3, 103)
    ax2.set_xlabel("linear layer")
    ax2.set_ylabel("||dL/dW||")
    # plain-text tick labels: mathtext (10^-6) costs ~50 ms a frame
    # and no minor ticks: creating them was half of the drawing time
    ax2.yaxis.set_major_formatter(pyplot().FuncFormatter(lambda v, _: f"{v:.0e}"))
    ax2.yaxis.set_minor_locator(pyplot().NullLocator())
    ax1.legend(fontsize=9)
    ax1.set_title(f"{activation}, gain {gain:.3g}")
    ax2.set_title("gradient norm (log scale)")
    return fig


def gradient_summary(cases=(("sigmoid", 1.0), ("tanh", 0.5), ("relu", 3.0)), depth=10):
    """Weight-gradient norm per linear layer at initialization, without and with batch norm, per case."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cases), figsize=(10, 3.2), sharey=True)
    for ax, (activation, gain) in zip(axes, cases):
        for bn, colour in ((False, PALETTE[1]), (True, PALETTE[0])):
            g = init_report(activation, gain, depth, bn).grad_norms
            ax.semilogy(np.arange(1, len(g) + 1), g, "o-", color=colour, label="with BN" if bn else "without BN")
        ax.set_title(f"{activation}, gain {gain:g}")
        ax.set_xlabel("linear layer")
    axes[0].set_ylabel("||dL/dW||")
    axes[0].legend()
    return fig
