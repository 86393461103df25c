"""The book's figures: each function computes with bnlib and returns a matplotlib Figure.

Interactive figures carry their default grid of control values (``@interactive``) and are listed in
:data:`REGISTRY`; a chapter shows one with ``viz.explore(figures.NAME)``, and the latency benchmark
(``benchmarks/bench_figures.py``) times every registered figure, so no interactive figure escapes it.
Computation that could be wrong lives in the experiment modules, where the tests reach it; these
functions only arrange and draw.
"""

from __future__ import annotations

import functools

import numpy as np

from . import diagnostics
from .data import load_digits
from .nn import mlp
from .viz import PALETTE

__all__ = ["REGISTRY", "interactive", "quadratic_paths", "activation_histograms", "layer_diagnostics"]

#: name -> function, for every interactive figure of the book
REGISTRY: dict = {}


def interactive(*, title, alt, labels=None, **grid):
    """Register an interactive figure with its default grid of control values."""

    def decorate(fn):
        fn.grid, fn.title, fn.alt, fn.labels = grid, title, alt, labels or {}
        REGISTRY[fn.__name__] = fn
        return fn

    return decorate


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _frame(ncols=1, figsize=(6.4, 3.4), **adjust):
    """A figure for an interactive frame: fixed margins instead of constrained layout, which would
    draw every frame twice (the latency budget is 150 ms per update)."""
    plt = _plt()
    fig, axes = plt.subplots(1, ncols, figsize=figsize, layout="none")
    margins = dict(left=0.1, right=0.98, bottom=0.15, top=0.88, wspace=0.3)
    margins.update(adjust)
    fig.subplots_adjust(**margins)
    return fig, axes


@functools.lru_cache(maxsize=None)
def _digits_batch(n=256, seed=0):
    data = load_digits(seed=seed)
    return data.x_train[:n], data.y_train[:n]


# ------------------------------------------------------------------------------ chapter 1


def quadratic_paths(scales=(1.0, 10.0), steps=100):
    """Gradient descent on the same quadratic with raw feature scales vs standardized features."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    raw = np.square(np.asarray(scales, dtype=float))
    for ax, curv, title in ((axes[0], raw, "raw features"), (axes[1], np.ones(2), "standardized features")):
        path = diagnostics.gradient_descent_2d(curv, steps=steps)
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


def _report(activation, gain, depth, batch_norm):
    x, y = _digits_batch()
    model = mlp([64] + [100] * depth + [10], activation=activation, norm="batch" if batch_norm else None, gain=gain, rng=0)
    return diagnostics.layer_report(model, x, y, activation=activation)


GRID_CH1 = dict(activation=["tanh", "sigmoid", "relu"], gain=[0.5, 1.0, 5 / 3, 3.0], depth=[5, 10], batch_norm=[False, True])
LABELS_CH1 = {"gain": "weight gain", "batch_norm": "batch norm"}


@interactive(
    title="Activations per layer at initialization",
    alt="Histograms of the activation values of each hidden layer of a deep MLP at initialization",
    labels=LABELS_CH1,
    **{**GRID_CH1, "gain": [0.5, 1.0, 5 / 3, 3.0]},
)
def activation_histograms(activation="tanh", gain=5 / 3, depth=5, batch_norm=False):
    """Histogram of each hidden layer's activations (one line per layer, darker = deeper)."""
    report = _report(activation, gain, depth, batch_norm)
    fig, ax = _frame()
    cmap = _plt().get_cmap("viridis")
    ranges = {"tanh": (-1, 1), "sigmoid": (0, 1), "relu": (0, None)}
    low, high = ranges[activation]
    for i, acts in enumerate(report.activations):
        top = high if high is not None else max(float(np.percentile(a, 99)) for a in report.activations) + 1e-9
        counts, edges = np.histogram(acts, bins=50, range=(low, top), density=True)
        ax.plot(0.5 * (edges[1:] + edges[:-1]), counts, color=cmap(i / max(1, depth - 1)), lw=1.4,
                label=f"layer {i + 1}: {100 * report.saturated[i]:.0f}%")
    word = "zero" if activation == "relu" else "saturated"
    ax.set_title(f"{activation}, gain {gain:.3g}, depth {depth}, BN {'on' if batch_norm else 'off'}")
    ax.set_xlabel(f"{activation} output")
    ax.set_ylabel("density")
    ax.legend(title=f"{word} share", fontsize=8, title_fontsize=8, ncol=2 if depth > 5 else 1, loc="upper center")
    return fig


@interactive(
    title="Saturation and gradient norm per layer",
    alt="Two panels per layer: the saturated (or zero) share of activations, and the gradient norm of the weights",
    labels=LABELS_CH1,
    **GRID_CH1,
)
def layer_diagnostics(activation="tanh", gain=5 / 3, depth=5, batch_norm=False):
    """Left: saturated (tanh/sigmoid) or zero (ReLU) share per layer. Right: ||dL/dW|| per layer."""
    fig, (ax1, ax2) = _frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    for bn, colour in ((False, PALETTE[1]), (True, PALETTE[0])):
        report = _report(activation, gain, depth, bn)
        layers = np.arange(1, depth + 1)
        style = dict(color=colour, marker="o", lw=2.5 if bn == batch_norm else 1, alpha=1 if bn == batch_norm else 0.35,
                     label="with BN" if bn else "without BN")
        ax1.plot(layers, 100 * np.array(report.saturated), **style)
        ax2.semilogy(np.arange(1, depth + 2), report.grad_norms, **style)
    ax1.set_xlabel("hidden layer")
    ax1.set_ylabel("zero share (%)" if activation == "relu" else "saturated share (%)")
    ax1.set_ylim(-3, 103)
    ax2.set_xlabel("linear layer")
    ax2.set_ylabel("||dL/dW||")
    # plain-text tick labels: mathtext (10^-6) costs ~50 ms a frame
    # and no minor ticks: creating them was half of the drawing time
    ax2.yaxis.set_major_formatter(_plt().FuncFormatter(lambda v, _: f"{v:.0e}"))
    ax2.yaxis.set_minor_locator(_plt().NullLocator())
    ax1.legend(fontsize=9)
    ax1.set_title(f"{activation}, gain {gain:.3g}")
    ax2.set_title("gradient norm (log scale)")
    return fig


# ------------------------------------------------------------------------------ introduction


def batch_norm_in_one_figure(means=(-3.0, 5.0, 40.0), stds=(0.5, 2.0, 10.0), batch_size=256, seed=0):
    """Three features on very different scales, before and after a BatchNorm layer (gamma=1, beta=0)."""
    from .layers import BatchNorm

    plt = _plt()
    rng = np.random.default_rng(seed)
    x = rng.normal(means, stds, size=(batch_size, len(means)))
    y = BatchNorm(len(means))(x)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2))
    for j in range(len(means)):
        label = f"feature {j + 1}"
        ax1.hist(x[:, j], bins=40, histtype="stepfilled", alpha=0.55, color=PALETTE[j], label=label)
        ax2.hist(y[:, j], bins=40, histtype="step", lw=2, color=PALETTE[j], label=label)
    ax1.set_title("a batch of pre-activations")
    ax2.set_title("the same batch after batch norm")
    for ax in (ax1, ax2):
        ax.set_xlabel("value")
        ax.set_ylabel("count")
    ax1.legend(fontsize=9)
    return fig, x, y
