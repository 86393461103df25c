"""Chapter 5 (small batches): batch-statistic noise against theory, and the normalization sweep."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bnlib import mlp
from bnlib.data import load_digits
from bnlib.train import fit, train_mode_accuracy

from .explore import interactive
from .style import NORM_COLOURS, PALETTE, frame, pyplot

DISTRIBUTIONS = {
    # name: (sampler of standardized values, kurtosis mu4 / sigma^4)
    "normal": (lambda rng, size: rng.standard_normal(size), 3.0),
    "uniform": (lambda rng, size: rng.uniform(-np.sqrt(3), np.sqrt(3), size), 1.8),
    "laplace": (lambda rng, size: rng.laplace(0, 1 / np.sqrt(2), size), 6.0),
    "exponential": (lambda rng, size: rng.exponential(1.0, size) - 1.0, 9.0),
}


class BatchNoise(NamedTuple):
    means: np.ndarray  # (trials,) batch means
    variances: np.ndarray  # (trials,) unbiased batch variances
    std_of_mean: float  # measured
    std_of_var: float  # measured
    theory_std_of_mean: float  # 1 / sqrt(m)
    theory_std_of_var: float  # sqrt((kurtosis - (m - 3) / (m - 1)) / m)


def batch_stat_noise(batch_size, distribution="normal", *, trials=4000, seed=0) -> BatchNoise:
    """Spread of the batch mean and batch variance of unit-variance data over many batches.

    Theory: the mean of m values has standard deviation 1/sqrt(m); the unbiased variance has variance
    (kurtosis - (m-3)/(m-1)) / m, so heavy tails (large kurtosis) make it far noisier than the mean.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution: expected one of {sorted(DISTRIBUTIONS)}, got {distribution!r}")
    if batch_size < 2:
        raise ValueError(f"batch_size: expected at least 2, got {batch_size}")
    sampler, kurtosis = DISTRIBUTIONS[distribution]
    x = sampler(np.random.default_rng(seed), (trials, batch_size))
    means, variances = x.mean(axis=1), x.var(axis=1, ddof=1)
    m = batch_size
    return BatchNoise(
        means,
        variances,
        float(means.std()),
        float(variances.std()),
        1 / np.sqrt(m),
        float(np.sqrt((kurtosis - (m - 3) / (m - 1)) / m)),
    )


def _norm_arm(norm):
    """``None``, "batch", "layer", "group" (8 groups) or "ghost-K" (batch norm over virtual batches of K)."""
    if norm is None or norm in ("batch", "layer"):
        return norm, {}
    if norm == "group":
        return "group", {"num_groups": 8}
    if isinstance(norm, str) and norm.startswith("ghost-"):
        return "batch", {"virtual_batch_size": int(norm.split("-", 1)[1])}
    raise ValueError(f"norm: expected None, 'batch', 'layer', 'group' or 'ghost-K', got {norm!r}")


class SweepResult(NamedTuple):
    settings: list  # one dict per run
    final_test_accuracy: np.ndarray  # eval mode
    train_mode_test_accuracy: np.ndarray  # the test set in training mode, in batches of the training size
    final_train_loss: np.ndarray
    final_test_loss: np.ndarray
    diverged: np.ndarray
    curves: list  # per run: History


def normalization_sweep(
    batch_sizes,
    norms=(None, "batch", "layer", "group"),
    *,
    seeds=(0, 1, 2),
    epochs=3,
    lr_per_32=0.05,
    widths=(64, 64, 64),
    data=None,
    progress=None,
):
    """Train the same MLP with each normalization and batch size, several seeds.

    The learning rate follows the linear scaling rule, ``lr_per_32 * batch_size / 32``, so that every
    batch size takes comparable steps per example seen; all arms see the same number of epochs.
    Architecture, initialization (per seed) and learning rate are identical between normalizations;
    only the normalization layer changes. Returns a :class:`SweepResult` in the order
    batch size x norm x seed.
    """
    data = data or load_digits()
    settings, acc, train_mode_acc, train_loss, test_loss, diverged, curves = [], [], [], [], [], [], []
    total = len(batch_sizes) * len(norms) * len(seeds)
    for b in batch_sizes:
        for norm in norms:
            for seed in seeds:
                kind, kwargs = _norm_arm(norm)
                model = mlp([data.x_train.shape[1], *widths, 10], norm=kind, rng=seed, **kwargs)
                history = fit(model, data, epochs=epochs, lr=lr_per_32 * b / 32, batch_size=b, seed=seed)
                settings.append({"batch_size": b, "norm": norm or "none", "seed": seed})
                curves.append(history)
                diverged.append(history.diverged)
                acc.append(history.test_accuracy[-1] if history.test_accuracy else np.nan)
                train_loss.append(history.train_loss[-1] if history.train_loss else np.nan)
                test_loss.append(history.test_loss[-1] if history.test_loss else np.nan)
                tm = train_mode_accuracy(model, data.x_test, data.y_test, max(b, 2)) if not history.diverged else np.nan
                train_mode_acc.append(tm)
                if progress:
                    progress(len(settings), total)
    return SweepResult(
        settings,
        np.array(acc),
        np.array(train_mode_acc),
        np.array(train_loss),
        np.array(test_loss),
        np.array(diverged),
        curves,
    )


def summarize(result: SweepResult, key: str, by=("batch_size", "norm")):
    """Mean and standard deviation over seeds of ``result.<key>``, grouped by the given settings."""
    values = getattr(result, key)
    groups = {}
    for setting, value in zip(result.settings, values):
        groups.setdefault(tuple(setting[k] for k in by), []).append(value)
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in groups.items()}


@interactive(
    title="The noise of batch statistics",
    alt="Histograms of the batch mean and of the batch variance over many batches, with the theoretical spread",
    labels={"batch_size": "batch size"},
    batch_size=[2, 4, 8, 16, 32, 64, 256],
    distribution=["normal", "uniform", "laplace", "exponential"],
)
def batch_noise(batch_size=16, distribution="normal"):
    """Batch means and unbiased batch variances of unit-variance data, over 2,000 batches."""
    r = batch_stat_noise(batch_size, distribution, trials=2000)
    fig, (ax1, ax2) = frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    ax1.hist(
        r.means, bins=60, range=(-2, 2), color=PALETTE[0], alpha=0.7, histtype="stepfilled"
    )  # one polygon, not 60 bars
    ax2.hist(r.variances, bins=60, range=(0, 4), color=PALETTE[1], alpha=0.7, histtype="stepfilled")
    for ax, centre, measured, theory, name in (
        (ax1, 0.0, r.std_of_mean, r.theory_std_of_mean, "mean"),
        (ax2, 1.0, r.std_of_var, r.theory_std_of_var, "variance"),
    ):
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sizes = sorted({s["batch_size"] for s in result.settings})
    for key, label, colour in (
        ("final_test_accuracy", "eval mode (running statistics)", PALETTE[0]),
        ("train_mode_test_accuracy", "left in training mode (batch statistics)", PALETTE[1]),
    ):
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
