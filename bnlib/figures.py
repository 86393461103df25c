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


GRID_CH1 = dict(activation=["tanh", "sigmoid", "relu"], gain=[0.5, 1.0, 5 / 3, 3.0], depth=[5, 10], batch_norm=[False, True])
LABELS_CH1 = {"gain": "weight gain", "batch_norm": "batch norm"}


@interactive(
    title="Activations per layer at initialization",
    alt="Histograms of the activation values of each hidden layer of a deep MLP at initialization",
    labels=LABELS_CH1,
    **GRID_CH1,
)
def activation_histograms(activation="tanh", gain=5 / 3, depth=5, batch_norm=False):
    """Histogram of each hidden layer's activations (one line per layer, darker = deeper)."""
    report = diagnostics.init_report(activation, gain, depth, batch_norm)
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
        report = diagnostics.init_report(activation, gain, depth, bn)
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


# ------------------------------------------------------------------------------ chapter 2


def forward_steps(x, gamma, beta, eps=1e-5):
    """The forward pass stage by stage on a small batch (N, C): one panel per stage, one colour per feature."""
    from . import functional as F

    plt = _plt()
    mean, var = F.moments(x, (0,))
    centered = x - mean
    xhat = centered / np.sqrt(var + eps)
    y = xhat * gamma + beta
    stages = [("input x", x), ("x - mean", centered), ("x-hat = (x - mean) / sqrt(var + eps)", xhat),
              ("y = gamma x-hat + beta", y)]
    fig, axes = plt.subplots(1, 4, figsize=(10, 3), sharey=False)
    for ax, (title, values) in zip(axes, stages):
        for j in range(x.shape[1]):
            ax.plot(np.full(x.shape[0], j) + np.linspace(-0.15, 0.15, x.shape[0]), values[:, j], "o",
                    color=PALETTE[j], label=f"feature {j + 1}")
        ax.set_xticks(range(x.shape[1]), [f"f{j + 1}" for j in range(x.shape[1])])
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.8)
    axes[0].set_ylabel("value")
    return fig


@interactive(
    title="What gamma and beta let a sigmoid do",
    alt="Histogram of the sigmoid's input after batch norm with scale gamma and shift beta, drawn over the sigmoid curve",
    labels={"gamma": "gamma (scale)", "beta": "beta (shift)"},
    gamma=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
    beta=[-4.0, -2.0, 0.0, 2.0, 4.0],
)
def sigmoid_after_bn(gamma=1.0, beta=0.0):
    """The sigmoid's input z = gamma * xhat + beta for standard-normal xhat, and how linear the sigmoid is there."""
    from .experiments import linear_fit_r2

    xhat = np.random.default_rng(0).standard_normal(5000)
    z = gamma * xhat + beta
    s = 0.5 * (1 + np.tanh(0.5 * z))
    r2 = linear_fit_r2(z, s)
    fig, ax = _frame(figsize=(6.4, 3.2))
    grid = np.linspace(-12, 12, 200)
    # the histogram of z, scaled to a peak of 1, on the same axes (a twin axis costs a full extra draw)
    counts, edges = np.histogram(z, bins=80, range=(-12, 12))
    ax.stairs(counts / counts.max(), edges, fill=True, color=PALETTE[0], alpha=0.4, label="histogram of z")
    ax.plot(grid, 0.5 * (1 + np.tanh(0.5 * grid)), color=PALETTE[7], lw=1.5, label="sigmoid")
    ax.plot(grid, np.clip(0.5 + grid / 4, -0.1, 1.1), "--", color="0.5", lw=1, label="tangent at 0")
    sat = float(np.mean((s < 0.03) | (s > 0.97)))
    ax.set_title(f"gamma {gamma:g}, beta {beta:g}: linear fit R^2 = {r2:.3f}, saturated {100 * sat:.0f}%", fontsize=11)
    ax.set_xlabel("sigmoid input z = gamma x-hat + beta")
    ax.set_ylabel("sigmoid(z)")
    ax.set_ylim(-0.1, 1.1)
    ax.set_xlim(-12, 12)
    ax.legend(loc="upper left", fontsize=9)
    return fig


def variance_cancellation(ratios, sweep):
    """Relative error of the float32 variance against mean/std: one pass, plain two pass, bnlib."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for key, label, colour in (("one_pass", "one pass: E[x^2] - E[x]^2", PALETTE[1]),
                               ("two_pass", "two pass (numpy, float32 mean)", PALETTE[4]),
                               ("bnlib", "bnlib: corrected two pass", PALETTE[0])):
        ax.loglog(ratios, np.maximum(sweep[key], 1e-9), "o-", color=colour, label=label)
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.text(ratios[0], 1.3, "100% error", fontsize=9, color="0.4")
    ax.set_xlabel("mean / standard deviation of the data")
    ax.set_ylabel("relative error of the variance")
    ax.legend(fontsize=9)
    return fig


# ------------------------------------------------------------------------------ chapter 3


@interactive(
    title="The gradient with constant statistics against the true gradient",
    alt="Scatter plot of each input-gradient entry computed with mean and variance treated as constants against the true gradient entry",
    labels={"batch_size": "batch size"},
    batch_size=[2, 4, 8, 16, 32, 64, 256],
    eps=[1e-5, 1e-2, 1.0],
)
def gradient_error_scatter(batch_size=8, eps=1e-5):
    """Each entry of dx: the constant-statistics version (y) against the true one (x)."""
    from . import functional as F

    rng = np.random.default_rng(0)
    features = max(1, 512 // batch_size)
    x = rng.standard_normal((batch_size, features))
    dy = rng.standard_normal((batch_size, features))
    _, _, _, cache = F.batch_norm_train_forward(x, None, None, eps)
    true, _, _ = F.batch_norm_backward(dy, cache)
    wrong, _, _ = F.batch_norm_backward_constant_stats(dy, x, None, eps)
    error = np.linalg.norm(wrong - true) / np.linalg.norm(true)
    fig, ax = _frame(figsize=(5.2, 4.0), left=0.14, bottom=0.13)
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
    plt = _plt()
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = list(times)
    ax.boxplot([times[k] * 1e3 for k in names], vert=False, widths=0.5)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xlabel("time per call (ms)")
    ax.set_title(title)
    return fig


# ------------------------------------------------------------------------------ chapter 4

TRUE_MEAN, TRUE_STD = 3.0, 2.0


GRID_CH4 = dict(momentum=[0.01, 0.1, 0.5], batch_size=[2, 8, 32, 128], steps=[10, 100, 1000])
LABELS_CH4 = {"batch_size": "batch size", "steps": "training steps"}


@interactive(
    title="Running estimates converging to the true statistics",
    alt="Running mean and running variance of one feature after each training step, next to the true mean and variance",
    labels=LABELS_CH4,
    **GRID_CH4,
)
def running_estimates_plot(momentum=0.1, batch_size=8, steps=100):
    """Running mean and variance (PyTorch convention) of N(3, 2^2) data over training steps."""
    from .experiments import running_estimates

    trace = running_estimates(momentum, batch_size, steps, mean=TRUE_MEAN, std=TRUE_STD)
    fig, (ax1, ax2) = _frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    t = np.arange(steps + 1)
    for ax, run, batch, true, name in ((ax1, trace.running_mean, trace.batch_means, TRUE_MEAN, "mean"),
                                       (ax2, trace.running_var, trace.batch_vars, TRUE_STD**2, "variance")):
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
    from .layers import BatchNorm

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
    fig, ax = _frame(figsize=(5.6, 3.8), left=0.14, bottom=0.14)
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
    from .experiments import effective_window

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    k = np.arange(horizon)
    for m, colour in zip(momenta, PALETTE):
        window = effective_window(m)
        ax.loglog(k + 1, m * (1 - m) ** k, color=colour,
                  label=f"PyTorch {m:g} = Keras {1 - m:g}: 90% of the weight in {window:.0f} batches")
    ax.set_ylim(1e-6, 1)
    ax.set_xlabel("age of the batch (1 = the newest)")
    ax.set_ylabel("weight in the running estimate")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def running_variance_conventions(batch_sizes, bias):
    """What each running estimator converges to, relative to the true variance, against batch size."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    m = np.asarray(batch_sizes, dtype=float)
    series = (("unbiased_var", "running unbiased variance (PyTorch)", PALETTE[0], "o-"),
              ("biased_var", "running biased variance (Keras)", PALETTE[4], "s-"),
              ("moving_std", "running standard deviation, squared", PALETTE[1], "^-"))
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for (m, ratios), colour in zip(results.items(), PALETTE):
        layers = np.arange(1, len(ratios) + 1)
        ax.plot(layers, ratios, "o", color=colour, label=f"batch {m}: measured")
        ax.plot(layers, ((m - 1) / m) ** (layers / 2), "-", color=colour, lw=1, label=f"batch {m}: ((m-1)/m)^(L/2)")
    ax.set_xlabel("number of chained BatchNorm layers L")
    ax.set_ylabel("eval / train output spread")
    ax.legend(fontsize=8, ncol=2)
    return fig


# ------------------------------------------------------------------------------ chapter 5

NORM_COLOURS = {"none": PALETTE[7], "batch": PALETTE[0], "layer": PALETTE[1], "group": PALETTE[2]}


@interactive(
    title="The noise of batch statistics",
    alt="Histograms of the batch mean and of the batch variance over many batches, with the theoretical spread",
    labels={"batch_size": "batch size"},
    batch_size=[2, 4, 8, 16, 32, 64, 256],
    distribution=["normal", "uniform", "laplace", "exponential"],
)
def batch_noise(batch_size=16, distribution="normal"):
    """Batch means and unbiased batch variances of unit-variance data, over 2,000 batches."""
    from .experiments import batch_stat_noise

    r = batch_stat_noise(batch_size, distribution, trials=2000)
    fig, (ax1, ax2) = _frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    ax1.hist(r.means, bins=60, range=(-2, 2), color=PALETTE[0], alpha=0.7, histtype="stepfilled")  # one polygon, not 60 bars
    ax2.hist(r.variances, bins=60, range=(0, 4), color=PALETTE[1], alpha=0.7, histtype="stepfilled")
    for ax, centre, measured, theory, name in ((ax1, 0.0, r.std_of_mean, r.theory_std_of_mean, "mean"),
                                               (ax2, 1.0, r.std_of_var, r.theory_std_of_var, "variance")):
        for sign in (-1, 1):
            ax.axvline(centre + sign * theory, color="0.2", ls="--", lw=1)
        ax.axvline(centre, color="0.2", lw=1)
        ax.set_title(f"batch {name}: spread {measured:.2f} (theory {theory:.2f})", fontsize=10)
        ax.set_xlabel(f"batch {name}")
        ax.set_yticks([])
    ax1.set_ylabel(f"{distribution}, m = {batch_size}")
    return fig


def noise_vs_batch_size(batch_sizes, results: dict):
    """Measured and theoretical spread of batch mean and variance against batch size, per distribution."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    m = np.asarray(batch_sizes, dtype=float)
    for (name, rows), colour in zip(results.items(), PALETTE):
        ax1.loglog(m, [r.std_of_mean for r in rows], "o", color=colour, label=name)
        ax2.loglog(m, [r.std_of_var for r in rows], "o", color=colour, label=name)
        ax2.loglog(m, [r.theory_std_of_var for r in rows], "-", color=colour, lw=1)
    ax1.loglog(m, 1 / np.sqrt(m), "-", color="0.3", lw=1, label="1 / sqrt(m)")
    ax1.set_title("spread of the batch mean")
    ax2.set_title("spread of the batch variance (lines: theory)")
    for ax in (ax1, ax2):
        ax.set_xlabel("batch size m")
    ax1.set_ylabel("standard deviation (data std = 1)")
    ax1.legend(fontsize=8)
    return fig


def accuracy_vs_batch_size(result, wu_he: dict):
    """Left: our test accuracy by batch size and normalization (mean and spread over seeds).
    Right: Wu & He (2018)'s ImageNet validation error of ResNet-50 by images per GPU."""
    from .experiments import summarize

    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.5))
    summary = summarize(result, "final_test_accuracy")
    sizes = sorted({s["batch_size"] for s in result.settings})
    for norm in dict.fromkeys(s["norm"] for s in result.settings):
        mean = np.array([summary[(b, norm)][0] for b in sizes])
        std = np.array([summary[(b, norm)][1] for b in sizes])
        ax1.errorbar(sizes, 100 * mean, yerr=100 * std, fmt="o-", capsize=3, color=NORM_COLOURS.get(norm), label=norm)
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(sizes, [str(b) for b in sizes])
    ax1.set_ylim(0, 100)
    ax1.set_xlabel("batch size")
    ax1.set_ylabel("test accuracy (%), eval mode")
    ax1.set_title("digits MLP (this book)")
    ax1.legend(fontsize=8, loc="lower right")
    per_gpu = wu_he["images_per_gpu"]
    for norm in ("BN", "GN"):
        ax2.plot(per_gpu, wu_he[norm], "o-", color=NORM_COLOURS["batch" if norm == "BN" else "group"], label=norm)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(per_gpu, [str(b) for b in per_gpu])
    ax2.invert_xaxis()
    ax2.set_xlabel("images per GPU")
    ax2.set_ylabel("ImageNet val. error (%)")
    ax2.set_title("ResNet-50, Wu & He 2018")
    ax2.legend(fontsize=8)
    return fig


def eval_gap_vs_batch_size(result):
    """Batch norm: test accuracy in eval mode against the same network left in training mode."""
    from .experiments import summarize

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sizes = sorted({s["batch_size"] for s in result.settings})
    for key, label, colour in (("final_test_accuracy", "eval mode (running statistics)", PALETTE[0]),
                               ("train_mode_test_accuracy", "left in training mode (batch statistics)", PALETTE[1])):
        summary = summarize(result, key)
        mean = np.array([summary[(b, "batch")][0] for b in sizes])
        std = np.array([summary[(b, "batch")][1] for b in sizes])
        ax.errorbar(sizes, 100 * mean, yerr=100 * std, fmt="o-", capsize=3, color=colour, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size (training and test)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=9, loc="lower right")
    return fig


# ------------------------------------------------------------------------------ chapter 7

ARM_COLOURS = [PALETTE[7], PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4]]


def _label(setting, keys):
    return ", ".join(f"{k} {setting.get(k) if setting.get(k) is not None else 'none'}" for k in keys)


def accuracy_vs_setting(runs, key, *, arms="norm", xlabel=None, logx=False):
    """Final test accuracy (mean, and min-max over seeds as a band) against ``key``, one line per arm."""
    from .experiments import final_accuracy

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    groups = {}
    for r in runs:
        groups.setdefault(r["setting"].get(arms), []).append(r)
    for (arm, rows), colour in zip(groups.items(), ARM_COLOURS):
        rows = sorted(rows, key=lambda r: r["setting"][key])
        x = np.array([r["setting"][key] for r in rows], dtype=float)
        accs = np.array([final_accuracy(r) for r in rows]) * 100
        ax.plot(x, accs.mean(axis=1), "o-", color=colour, label=f"{arms} {arm if arm is not None else 'none'}")
        ax.fill_between(x, accs.min(axis=1), accs.max(axis=1), color=colour, alpha=0.2)
    if logx:
        ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel or key)
    ax.set_ylabel("test accuracy (%), band: seeds")
    ax.legend(fontsize=9)
    return fig


def loss_curves(runs, *, label_keys=("norm",), title=None):
    """Training loss per epoch (mean over seeds, band: min to max), one line per run setting."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r, colour in zip(runs, ARM_COLOURS):
        curves = [h.train_loss for h in r["histories"]]
        length = min(len(c) for c in curves)
        if length == 0:
            ax.plot([], [], color=colour, label=_label(r["setting"], label_keys) + " (diverged)")
            continue
        c = np.array([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.semilogy(epochs, c.mean(axis=0), "o-", color=colour, label=_label(r["setting"], label_keys))
        ax.fill_between(epochs, c.min(axis=0), c.max(axis=0), color=colour, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (log scale)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


@functools.lru_cache(maxsize=1)
def _curve_grid():
    """Every run behind :func:`training_curves`, trained once (about 10 s) and kept."""
    from .experiments import train_runs

    grid = TRAINING_CURVES_GRID
    settings = [dict(lr=lr, norm=None if norm == "none" else norm, depth=depth)
                for lr in grid["lr"] for norm in grid["norm"] for depth in grid["depth"]]
    return {(r["setting"]["lr"], r["setting"]["norm"] or "none", r["setting"]["depth"]): r
            for r in train_runs(settings, seeds=(0, 1, 2), epochs=6)}


TRAINING_CURVES_GRID = dict(lr=[0.01, 0.05, 0.2, 1.0], norm=["none", "batch"], depth=[2, 6, 12])


@interactive(
    title="Training with and without batch norm (precomputed runs, 3 seeds)",
    alt="Training loss and test accuracy per epoch for an MLP with or without batch norm, for one learning rate and depth",
    labels={"lr": "learning rate", "norm": "normalization"},
    **TRAINING_CURVES_GRID,
)
def training_curves(lr=0.05, norm="batch", depth=6):
    """Training loss and test accuracy per epoch; the faint lines are the other normalization."""
    grid = _curve_grid()
    fig, (ax1, ax2) = _frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    for arm, colour in (("none", PALETTE[1]), ("batch", PALETTE[0])):
        run = grid[(lr, arm, depth)]
        strong = arm == norm
        for h in run["histories"]:
            n = len(h.train_loss)
            style = dict(color=colour, lw=2 if strong else 1, alpha=0.9 if strong else 0.3)
            ax1.plot(np.arange(1, n + 1), h.train_loss, **style)
            ax2.plot(np.arange(1, n + 1), 100 * np.array(h.test_accuracy), **style)
            if h.diverged:
                ax1.plot([max(n, 1)], [ax1.get_ylim()[1] if n else 3.0], "x", color=colour, ms=10)
        ax2.plot([], [], color=colour, lw=2, label=f"{arm}{'' if strong else ' (faint)'}")
    ax1.set_yscale("log")
    ax1.set_ylim(1e-3, 10)
    ax1.yaxis.set_minor_locator(_plt().NullLocator())
    ax1.yaxis.set_major_formatter(_plt().FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.set_ylim(0, 100)
    ax1.set_xlabel("epoch")
    ax2.set_xlabel("epoch")
    ax1.set_title(f"training loss, lr {lr:g}, depth {depth}", fontsize=10)
    ax2.set_title("test accuracy (%), x: diverged", fontsize=10)
    ax2.legend(fontsize=8, loc="lower right")
    return fig


def smoothness_plot(results: dict):
    """Loss range and gradient change along the gradient direction over training, per arm."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for (arm, probes), colour in zip(results.items(), (PALETTE[1], PALETTE[0])):
        steps = probes[0].steps
        ranges = np.array([p.loss_range for p in probes])
        changes = np.array([p.gradient_change for p in probes])
        for ax, values in ((ax1, ranges), (ax2, changes)):
            ax.semilogy(steps, values.mean(axis=0), "o-", color=colour, label=arm)
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2)
    ax1.set_title("loss variation along the gradient")
    ax2.set_title("gradient change along the gradient")
    for ax in (ax1, ax2):
        ax.set_xlabel("training step")
    ax1.set_ylabel("max - min loss")
    ax2.set_ylabel("max ||g(w - eta g) - g(w)||")
    ax1.legend(fontsize=9)
    return fig


# ------------------------------------------------------------------------------ chapter 6


def normalization_groups(n=4, c=6, positions=4, groups=2):
    """Which elements of an (N, C, H*W) activation share one mean and variance, for four normalizations.

    Rows are samples; each channel is a block of ``positions`` columns (its H*W spatial positions).
    One colour = one set of statistics."""
    plt = _plt()
    from matplotlib.colors import ListedColormap

    ni, ci, pi = np.meshgrid(np.arange(n), np.arange(c), np.arange(positions), indexing="ij")
    layouts = {
        "batch norm: one set per channel": ci,
        "layer norm: one set per sample": ni,
        "instance norm: per sample and channel": ni * c + ci,
        f"group norm ({groups} groups): per sample and group": ni * groups + ci // (c // groups),
    }
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
    for ax, (title, ids) in zip(axes, layouts.items()):
        image = ids.reshape(n, c * positions)
        ax.imshow(image % 7, cmap=ListedColormap(PALETTE[:7]), aspect="auto", interpolation="nearest")
        for k in range(1, c):
            ax.axvline(k * positions - 0.5, color="white", lw=2)
        for k in range(1, n):
            ax.axhline(k - 0.5, color="white", lw=2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([positions * k + (positions - 1) / 2 for k in range(c)], [f"C{k + 1}" for k in range(c)], fontsize=8)
        ax.set_yticks(range(n), [f"N{k + 1}" for k in range(n)], fontsize=8)
        ax.grid(False)
    return fig


def folding_errors(rows: dict):
    """Largest |folded - original| output difference per case, on a log scale (eval vs train mode)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    names = list(rows)
    values = [max(rows[k], 1e-17) for k in names]
    colours = [PALETTE[0] if "eval" in k else PALETTE[1] for k in names]
    ax.barh(names, values, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("largest |folded - unfolded| output")
    ax.axvline(1e-12, color="0.4", ls=":", lw=1)
    ax.invert_yaxis()
    return fig


# ------------------------------------------------------------------------------ chapter 9


def mistake_sizes(errors: dict):
    """One bar per mistake: the size of its error (relative, log scale), the 1% line dotted."""
    plt = _plt()
    names = list(errors)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.0))
    ax.barh(names, [errors[k] for k in names], color=PALETTE[1])
    ax.set_xscale("log")
    ax.axvline(0.01, color="0.4", ls=":", lw=1)
    ax.set_xlabel("size of the error (relative to the correct value)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=9)
    return fig


def history_curves(groups: dict, key="train_loss", ylabel="training loss", logy=True):
    """One band (min to max over seeds) and mean line per group of Histories."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for (name, histories), colour in zip(groups.items(), (PALETTE[0], PALETTE[1], PALETTE[2])):
        curves = np.array([getattr(h, key) for h in histories])
        epochs = np.arange(1, curves.shape[1] + 1)
        ax.plot(epochs, curves.mean(axis=0), "o-", color=colour, label=name)
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    return fig


def per_channel_spread(spreads: dict):
    """Per-channel output standard deviation for several ways of normalizing (1 is right), log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = list(spreads)
    channels = len(next(iter(spreads.values())))
    width = 0.8 / len(names)
    for k, (name, colour) in enumerate(zip(names, (PALETTE[0], PALETTE[1], PALETTE[4]))):
        ax.bar(np.arange(channels) + (k - (len(names) - 1) / 2) * width, spreads[name], width, color=colour, label=name)
    ax.axhline(1.0, color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(channels), [f"channel {c + 1}" for c in range(channels)])
    ax.set_ylabel("output std per channel")
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------ chapter 8


def bandwidth_plot(results: dict):
    """Achieved bandwidth of BatchNorm2d forward+backward and of a plain copy, against tensor size,
    one pair of lines per device (``results``: label -> rows from torch_tools.bandwidth_sweep)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    for (label, rows), colour in zip(results.items(), (PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3])):
        mb = [r["megabytes"] for r in rows]
        ax.loglog(mb, [r["copy_gbps"] for r in rows], "s--", color=colour, label=f"{label}: copy")
        ax.loglog(mb, [r["bn_gbps"] for r in rows], "o-", color=colour, label=f"{label}: BatchNorm2d fwd+bwd")
    ax.set_xlabel("tensor size (MB)")
    ax.set_ylabel("achieved bandwidth (GB/s)")
    ax.legend(fontsize=8)
    return fig


def bars(values: dict, *, xlabel, reference=None, reference_label=None):
    """Horizontal bars, one per entry, with an optional dashed reference line."""
    plt = _plt()
    names = list(values)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
    ax.barh(names, [values[k] for k in names], color=PALETTE[1])
    if reference is not None:
        ax.axvline(reference, color=PALETTE[0], ls="--", lw=2, label=reference_label)
        ax.legend(fontsize=9, loc="lower left")
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
    return fig


def gradient_summary(cases=(("sigmoid", 1.0), ("tanh", 0.5), ("relu", 3.0)), depth=10):
    """Weight-gradient norm per linear layer at initialization, without and with batch norm, per case."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(cases), figsize=(10, 3.2), sharey=True)
    for ax, (activation, gain) in zip(axes, cases):
        for bn, colour in ((False, PALETTE[1]), (True, PALETTE[0])):
            g = diagnostics.init_report(activation, gain, depth, bn).grad_norms
            ax.semilogy(np.arange(1, len(g) + 1), g, "o-", color=colour, label="with BN" if bn else "without BN")
        ax.set_title(f"{activation}, gain {gain:g}")
        ax.set_xlabel("linear layer")
    axes[0].set_ylabel("||dL/dW||")
    axes[0].legend()
    return fig


def scale_commute(scale=2.0):
    """relu(g z) against g relu(z), and tanh(g z) against g tanh(z)."""
    plt = _plt()
    z = np.linspace(-3, 3, 200)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, (name, act) in zip(axes, [("relu", lambda v: np.maximum(v, 0)), ("tanh", np.tanh)]):
        ax.plot(z, act(scale * z), color=PALETTE[0], lw=3, label=f"{name}({scale:g}z)")
        ax.plot(z, scale * act(z), "--", color=PALETTE[1], label=f"{scale:g} {name}(z)")
        ax.set_xlabel("z")
        ax.set_title(name)
        ax.legend(fontsize=9)
    return fig


def trace_plot(trace, *, reference, reference_label, label, ylabel, xlabel="training step"):
    """One quantity per training step on a log scale, with a dashed reference level."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.semilogy(np.arange(1, len(trace) + 1), trace, color=PALETTE[1], label=label)
    ax.axhline(reference, color=PALETTE[0], ls="--", label=reference_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    return fig
