"""Chapter 5 (small batches): batch-statistic noise against theory, and the normalization sweep."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bnlib import mlp
from bnlib.data import Dataset, load_digits
from bnlib.train import evaluate, fit, predict, recalibrate, train_mode_accuracy

from .explore import interactive
from .progress import progress_bar
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
    final_train_loss: np.ndarray  # last epoch's average in TRAINING mode (batch noise included)
    final_test_loss: np.ndarray
    diverged: np.ndarray
    curves: list  # per run: History
    final_train_loss_eval: np.ndarray  # the whole training set in EVAL mode, after training


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
    batch size x norm x seed. ``progress(done, total)`` is called after each run; by default, a
    progress bar in Jupyter (:func:`bnbook.progress.progress_bar`), nothing elsewhere.
    """
    data = data or load_digits()
    settings, acc, train_mode_acc, train_loss, test_loss, diverged, curves = [], [], [], [], [], [], []
    train_loss_eval = []
    total = len(batch_sizes) * len(norms) * len(seeds)
    progress = progress or progress_bar(f"Training {total} networks", total)
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
                train_loss_eval.append(np.nan if history.diverged else evaluate(model, data.x_train, data.y_train)[0])
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
        np.array(train_loss_eval),
    )


def summarize(result: SweepResult, key: str, by=("batch_size", "norm")):
    """Mean and standard deviation over seeds of ``result.<key>``, grouped by the given settings."""
    values = getattr(result, key)
    values = values() if callable(values) else values  # OverfitResult.gap
    groups = {}
    for setting, value in zip(result.settings, values):
        groups.setdefault(tuple(setting[k] for k in by), []).append(value)
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in groups.items()}


def stratified_subset(data: Dataset, per_class: int, *, seed=0) -> Dataset:
    """``per_class`` training images of each class, drawn with ``seed``; the test split is kept whole."""
    if per_class < 1:
        raise ValueError(f"per_class: expected at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    picks = []
    for label in np.unique(data.y_train):
        members = np.flatnonzero(data.y_train == label)
        if len(members) < per_class:
            raise ValueError(f"per_class: class {label} has only {len(members)} training images, asked {per_class}")
        picks.append(rng.choice(members, per_class, replace=False))
    index = np.sort(np.concatenate(picks))
    return Dataset(data.x_train[index], data.y_train[index], data.x_test, data.y_test)


class OverfitResult(NamedTuple):
    settings: list  # one dict per run: norm, seed
    train_loss_train_mode: np.ndarray  # last epoch's average in training mode (what the optimizer saw)
    train_loss: np.ndarray  # the training subset in eval mode, after training
    test_loss: np.ndarray  # eval mode
    train_accuracy: np.ndarray  # eval mode
    test_accuracy: np.ndarray  # eval mode
    train_curves: list  # per run: eval-mode training loss after each epoch (None without the twin run)
    train_mode_curves: list  # per run: training-mode epoch average of the training loss
    test_curves: list  # per run: eval-mode test loss after each epoch
    test_accuracy_curves: list  # per run: eval-mode test accuracy after each epoch
    models: list  # per run: the trained network (eval mode)
    subsets: list  # per run: the Dataset it was trained on

    def gap(self):
        """Generalization gap per run: eval-mode test loss minus eval-mode training loss."""
        return self.test_loss - self.train_loss


def overfit_experiment(
    norms=(None, "batch", "layer"),
    *,
    seeds=(0, 1, 2),
    per_class=20,
    epochs=40,
    widths=(128, 128, 128),
    batch_size=8,
    lr=0.0125,
    data=None,
    twin=True,
    recalibrated=False,
):
    """Train on a small training subset until it is memorized, and measure the generalization gap.

    For each seed one stratified subset (``per_class`` images per digit) is drawn, and every
    normalization trains on that subset from the same initialization (``mlp(..., rng=seed)``) with the
    same batch order (``fit(..., seed=seed)``): the arms differ only in the normalization layer.

    Both losses are measured in eval mode, so batch norm's training loss is not inflated by the batch
    noise of training mode. For the per-epoch training-loss curve (``twin=True``) each run is repeated
    with the training subset as its "test" split: same seed, same batches, so the same parameters at
    every epoch (checked: both copies give identical test losses at the end).

    ``recalibrated=True`` replaces every batch norm's running statistics by the exact statistics of
    the training subset before the final scoring (:func:`bnlib.train.recalibrate`), so arms whose
    running estimates were updated differently (ghost batches update once per ghost batch) are scored
    with the same kind of statistics and differ only in how they trained.
    """
    data = data or load_digits()
    out = {k: [] for k in OverfitResult._fields}
    for seed in seeds:
        subset = stratified_subset(data, per_class, seed=seed)
        on_train = Dataset(subset.x_train, subset.y_train, subset.x_train, subset.y_train)
        for norm in norms:
            kind, kwargs = _norm_arm(norm)
            sizes = [data.x_train.shape[1], *widths, 10]
            runs = []
            for split in (subset, on_train) if twin else (subset,):
                model = mlp(sizes, norm=kind, rng=seed, **kwargs)
                runs.append((model, fit(model, split, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)))
            model, history = runs[0]
            if any(h.diverged for _, h in runs):
                raise RuntimeError(f"norm {norm}, seed {seed}: training diverged")
            if recalibrated:
                if twin:
                    raise ValueError("recalibrated=True: use twin=False (the per-epoch curves are not recalibrated)")
                recalibrate(model, subset.x_train)
            test_loss, test_acc = evaluate(model, subset.x_test, subset.y_test)
            if twin and evaluate(runs[1][0], subset.x_test, subset.y_test) != (test_loss, test_acc):
                raise RuntimeError(f"norm {norm}, seed {seed}: the twin run did not reproduce the training")
            train_loss, train_acc = evaluate(model, subset.x_train, subset.y_train)
            for key, value in (
                ("settings", {"norm": norm or "none", "seed": seed}),
                ("train_loss_train_mode", history.train_loss[-1]),
                ("train_loss", train_loss),
                ("test_loss", test_loss),
                ("train_accuracy", train_acc),
                ("test_accuracy", test_acc),
                ("train_curves", np.array(runs[1][1].test_loss) if twin else None),
                ("train_mode_curves", np.array(history.train_loss)),
                ("test_curves", np.array(history.test_loss)),
                ("test_accuracy_curves", np.array(history.test_accuracy)),
                ("models", model),
                ("subsets", subset),
            ):
                out[key].append(value)
    arrays = ("train_loss_train_mode", "train_loss", "test_loss", "train_accuracy", "test_accuracy")
    return OverfitResult(**{k: np.array(v) if k in arrays else v for k, v in out.items()})


def per_example_loss(model, x, y) -> np.ndarray:
    """Cross-entropy of each example in the model's current mode (eval mode after ``fit``)."""
    logits = predict(model, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y]


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
    for ax, ticks in ((ax1, [0.05, 0.1, 0.2, 0.5, 1]), (ax2, [0.05, 0.1, 0.2, 0.5, 1, 2])):
        ax.set_xlabel("batch size m")
        ax.set_xticks(m, [str(int(b)) for b in m])
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax1.set_ylabel("standard deviation (data std = 1)")
    ax1.legend(fontsize=9)
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
    ax1.legend(fontsize=9, loc="lower right")
    per_gpu = wu_he["images_per_gpu"]
    for norm in ("BN", "GN"):
        ax2.plot(per_gpu, wu_he[norm], "o-", color=NORM_COLOURS["batch" if norm == "BN" else "group"], label=norm)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(per_gpu, [str(b) for b in per_gpu])
    ax2.invert_xaxis()
    ax2.set_xlabel("images per GPU")
    ax2.set_ylabel("ImageNet val. error (%)")
    ax2.set_title("ResNet-50, Wu & He 2018")
    ax2.legend(fontsize=9)
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


def overfit_curves(result: OverfitResult):
    """Left: training loss per epoch, eval mode (solid) and batch norm's training-mode epoch average
    (dashed). Right: test loss per epoch. Mean over seeds, band from min to max."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    norms = list(dict.fromkeys(s["norm"] for s in result.settings))
    for norm in norms:
        rows = [i for i, s in enumerate(result.settings) if s["norm"] == norm]
        colour = NORM_COLOURS.get(norm, PALETTE[3])
        panels = [(ax1, result.train_curves, "-", norm), (ax2, result.test_curves, "-", norm)]
        if norm == "batch":
            panels.append((ax1, result.train_mode_curves, "--", "batch, training mode"))
        for ax, curves, style, label in panels:
            curves = np.array([curves[i] for i in rows])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(axis=0), style, color=colour, label=label, lw=1.8)
            ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.15, lw=0)
    ax1.set_yscale("log")
    ax1.set_title("training loss (eval mode unless dashed)")
    ax1.set_ylabel("cross-entropy (log scale)")
    ax2.set_title("test loss (eval mode)")
    ax2.set_ylabel("cross-entropy")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
    ax2.legend(*ax1.get_legend_handles_labels(), fontsize=9, loc="upper right")  # one legend, in the empty corner
    return fig
