"""Chapter 4 (running statistics and inference): the drivers behind its numbers, and its figures."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bnlib import BatchNorm, mlp
from bnlib.data import load_digits
from bnlib.train import accuracy, fit, recalibrate, train_mode_accuracy

from .explore import interactive
from .style import PALETTE, frame, pyplot

TRUE_MEAN, TRUE_STD = 3.0, 2.0


GRID_CH4 = dict(momentum=[0.01, 0.1, 0.5], batch_size=[2, 8, 32, 128], steps=[10, 100, 1000])


LABELS_CH4 = {"batch_size": "batch size", "steps": "training steps"}


class RunningTrace(NamedTuple):
    running_mean: np.ndarray  # (steps + 1,) the estimate after each step (index 0: the initial value)
    running_var: np.ndarray
    batch_means: np.ndarray  # (steps,)
    batch_vars: np.ndarray  # (steps,) biased


def running_estimates(momentum, batch_size, steps, *, mean=3.0, std=2.0, convention="pytorch", seed=0) -> RunningTrace:
    """Feed ``steps`` batches of N(mean, std^2) through one BatchNorm feature and record its estimates."""
    if convention == "pytorch":
        layer = BatchNorm(1, momentum=momentum)
    elif convention == "keras":
        layer = BatchNorm.keras(1, momentum=1.0 - momentum, axis=1)  # same weight of the new batch
    else:
        raise ValueError(f"convention: expected 'pytorch' or 'keras', got {convention!r}")
    rng = np.random.default_rng(seed)
    rm, rv, bm, bv = [layer.running_mean[0]], [layer.running_var[0]], [], []
    for _ in range(steps):
        x = rng.normal(mean, std, size=(batch_size, 1))
        layer(x)
        rm.append(layer.running_mean[0])
        rv.append(layer.running_var[0])
        bm.append(x.mean())
        bv.append(x.var())
    return RunningTrace(np.array(rm), np.array(rv), np.array(bm), np.array(bv))


def effective_window(momentum, share=0.9) -> float:
    """Number of most recent batches that carry ``share`` of the running estimate's weight:
    the smallest k with ``1 - (1 - momentum)^k >= share`` (momentum = weight of the new batch)."""
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum: expected a value in (0, 1], got {momentum}")
    if momentum == 1:
        return 1.0
    return float(np.ceil(np.log(1 - share) / np.log(1 - momentum)))


def chained_eval_train_ratio(
    depth, batch_size, *, steps=2000, width=8, eps=1e-12, convention="pytorch", test_batches=2000, seed=0
):
    """``depth`` BatchNorm layers in a row (no weights between them), trained until the running
    statistics converge (the cumulative average of ``steps`` batches), then the ratio of eval-mode to
    train-mode output spread per layer, on fresh batches of the training batch size.

    In training every layer's output has exactly unit variance within its batch. In eval, PyTorch's
    layer divides by the UNBIASED running variance, m/(m-1) times the average within-batch variance
    it saw, so each layer shrinks the spread by sqrt((m-1)/m) and after L layers the ratio is
    ((m-1)/m)^(L/2): (63/64)^10 = 0.854 for 20 layers and m = 64 (pytorch issue 100048). Keras'
    biased running variance gives 1. Returns the ratio after each layer.
    """
    layers = [BatchNorm(width, momentum=None, eps=eps) for _ in range(depth)]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        h = rng.standard_normal((batch_size, width))
        for layer in layers:
            h = layer(h)
    if convention == "keras":
        # the same average of batch variances without Bessel's correction: what Keras converges to
        for layer in layers:
            layer.running_var *= (batch_size - 1) / batch_size
    elif convention != "pytorch":
        raise ValueError(f"convention: expected 'pytorch' or 'keras', got {convention!r}")
    h = rng.standard_normal((test_batches * batch_size, width))
    ratios = []
    for layer in layers:
        layer.eval()
        h = layer(h)
        within = h.reshape(test_batches, batch_size, width).var(axis=1)  # train mode would give exactly 1
        ratios.append(float(np.sqrt(within.mean())))
    return np.array(ratios)


def moving_std_bias(batch_sizes, *, std=2.0, steps=4000, seed=0):
    """What three running estimators converge to, divided by the true variance (or std), per batch size.

    Returns a dict of arrays: ``unbiased_var`` (PyTorch), ``biased_var`` (Keras), ``moving_std``
    (the running average of the batch standard deviation, squared, as some notes track it).
    """
    rng = np.random.default_rng(seed)
    out = {"unbiased_var": [], "biased_var": [], "moving_std": []}
    for m in batch_sizes:
        x = rng.normal(0.0, std, size=(steps, m))
        biased = x.var(axis=1)
        out["biased_var"].append(biased.mean() / std**2)
        out["unbiased_var"].append((biased * m / (m - 1)).mean() / std**2)
        out["moving_std"].append(np.sqrt(biased).mean() ** 2 / std**2)
    return {k: np.array(v) for k, v in out.items()}


class Recalibration(NamedTuple):
    eval_accuracy_before: float
    eval_accuracy_after: float
    train_mode_accuracy: float  # the test set through the network in training mode, full batch
    mean_error_before: float  # mean |running_mean - exact mean| over all BN features, before
    mean_error_after: float


def recalibration_study(*, momentum=0.01, epochs=3, lr=0.1, batch_size=64, seed=0, depth=3, width=64):
    """Train an MLP with BatchNorm, then compare eval accuracy before and after recalibration.

    A small momentum leaves the running statistics lagging behind the weights they describe; recomputing
    them over the training set (:func:`recalibrate`) removes the lag. Statistic errors are measured at
    each BatchNorm's input against the exact training-set statistics.
    """
    data = load_digits(seed=seed)
    model = mlp([64] + [width] * depth + [10], norm="batch", momentum=momentum, rng=seed)
    fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)

    def stat_error():
        """Mean |running mean - exact mean| at each BatchNorm's input, the network run in eval mode."""
        errors, h = [], data.x_train
        for layer in model.layers:
            if isinstance(layer, BatchNorm):
                errors.append(np.abs(layer.running_mean - h.mean(axis=0)).mean())
            h = _eval_layer(layer, h)
        return float(np.mean(errors))

    before_err = stat_error()
    model.eval()
    before = accuracy(model, data.x_test, data.y_test)
    train_acc = train_mode_accuracy(model, data.x_test, data.y_test, len(data.x_test))
    recalibrate(model, data.x_train)
    after = accuracy(model, data.x_test, data.y_test)
    after_err = stat_error()
    model.eval()
    return Recalibration(before, after, train_acc, before_err, after_err)


def _eval_layer(layer, h):
    """Apply a layer as in inference, without touching running statistics."""
    was = layer.training
    layer.eval()
    try:
        return layer(h)
    finally:
        layer.train(was)


@interactive(
    title="Running estimates converging to the true statistics",
    alt="Running mean and running variance of one feature after each training step, next to the true mean and variance",
    labels=LABELS_CH4,
    **GRID_CH4,
)
def running_estimates_plot(momentum=0.1, batch_size=8, steps=100):
    """Running mean and variance (PyTorch convention) of N(3, 2^2) data over training steps."""
    trace = running_estimates(momentum, batch_size, steps, mean=TRUE_MEAN, std=TRUE_STD)
    fig, (ax1, ax2) = frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    t = np.arange(steps + 1)
    for ax, run, batch, true, name in (
        (ax1, trace.running_mean, trace.batch_means, TRUE_MEAN, "mean"),
        (ax2, trace.running_var, trace.batch_vars, TRUE_STD**2, "variance"),
    ):
        ax.plot(t[1:], batch, ".", color="0.6", ms=3, label=f"batch {name}")
        ax.plot(t, run, color=PALETTE[0], lw=2, label=f"running {name}")
        ax.axhline(true, color=PALETTE[1], ls="--", lw=1.5, label=f"true {name}")
        ax.set_xlabel("training step")
        ax.set_title(f"{name}: final estimate {run[-1]:.2f} (true {true:g})", fontsize=10)
    ax1.legend(fontsize=8, loc="lower right")
    ax2.set_ylim(0, 3 * TRUE_STD**2)
    return fig


@interactive(
    title="Train-mode and eval-mode outputs of the same batch",
    alt="Scatter plot of eval-mode outputs against train-mode outputs for one batch, after a number of training steps",
    labels=LABELS_CH4,
    **GRID_CH4,
)
def train_eval_gap(momentum=0.1, batch_size=8, steps=100):
    """After ``steps`` training batches, one more batch through the layer in train and in eval mode."""
    rng = np.random.default_rng(1)
    layer = BatchNorm(1, momentum=momentum)
    for _ in range(steps):
        layer(rng.normal(TRUE_MEAN, TRUE_STD, size=(batch_size, 1)))
    x = rng.normal(TRUE_MEAN, TRUE_STD, size=(max(batch_size, 2), 1))
    y_train = layer(x)  # (this also updates the estimates once more; irrelevant for the picture)
    layer.eval()
    y_eval = layer(x)
    ideal = (x - TRUE_MEAN) / TRUE_STD
    gap = float(np.sqrt(np.mean((y_eval - y_train) ** 2)))
    fig, ax = frame(figsize=(5.6, 3.8), left=0.14, bottom=0.14)
    ax.plot([-3, 3], [-3, 3], color="0.6", lw=1, label="equal")
    ax.plot(y_train[:, 0], y_eval[:, 0], "o", color=PALETTE[0], ms=6, label="eval vs train output")
    ax.plot(y_train[:, 0], ideal[:, 0], "x", color=PALETTE[1], ms=6, label="(x - true mean) / true std")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_xlabel("train-mode output (batch statistics)")
    ax.set_ylabel("eval-mode output")
    ax.set_title(f"m = {momentum:g}, N = {batch_size}, {steps} steps: RMS gap {gap:.2f}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def ema_weights(momenta=(0.5, 0.1, 0.01, 0.001), horizon=3000):
    """Weight of the k-th most recent batch in the running estimate, per momentum (weight of the new batch)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    k = np.arange(horizon)
    for m, colour in zip(momenta, PALETTE):
        window = effective_window(m)
        ax.loglog(
            k + 1,
            m * (1 - m) ** k,
            color=colour,
            label=f"PyTorch {m:g} = Keras {1 - m:g}: 90% of the weight in {window:.0f} batches",
        )
    ax.set_ylim(1e-6, 1)
    ax.set_xlabel("age of the batch (1 = the newest)")
    ax.set_ylabel("weight in the running estimate")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def running_variance_conventions(batch_sizes, bias):
    """What each running estimator converges to, relative to the true variance, against batch size."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    m = np.asarray(batch_sizes, dtype=float)
    series = (
        ("unbiased_var", "running unbiased variance (PyTorch)", PALETTE[0], "o-"),
        ("biased_var", "running biased variance (Keras)", PALETTE[4], "s-"),
        ("moving_std", "running standard deviation, squared", PALETTE[1], "^-"),
    )
    for key, label, colour, style in series:
        ax.semilogx(m, bias[key], style, color=colour, label=label)
    ax.semilogx(m, (m - 1) / m, ":", color="0.4", label="(m - 1) / m")
    ax.axhline(1, color="0.6", lw=1)
    ax.set_xlabel("batch size m")
    ax.set_ylabel("converged estimate / true variance")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def chained_ratio_plot(results: dict):
    """Eval/train output spread after each of L chained BatchNorm layers, per batch size, with theory."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for (m, ratios), colour in zip(results.items(), PALETTE):
        layers = np.arange(1, len(ratios) + 1)
        ax.plot(layers, ratios, "o", color=colour, label=f"batch {m}: measured")
        ax.plot(layers, ((m - 1) / m) ** (layers / 2), "-", color=colour, lw=1, label=f"batch {m}: ((m-1)/m)^(L/2)")
    ax.set_xlabel("number of chained BatchNorm layers L")
    ax.set_ylabel("eval / train output spread")
    ax.legend(fontsize=8, ncol=2)
    return fig
