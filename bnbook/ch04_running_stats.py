"""Chapter 4 (running statistics and inference): the drivers behind its numbers, and its figures."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from bnlib import BatchNorm, Linear, mlp
from bnlib.data import Dataset, load_digits
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
    depth,
    batch_size,
    *,
    steps=2000,
    width=8,
    eps=1e-12,
    convention="pytorch",
    test_batches=2000,
    weights=False,
    seed=0,
):
    """``depth`` BatchNorm layers in a row, trained until the running statistics converge (the
    cumulative average of ``steps`` batches), then the ratio of eval-mode to train-mode output spread
    at each BatchNorm's output, on fresh batches of the training batch size.

    ``weights=False``: nothing between the layers. ``weights=True``: every BatchNorm is preceded by a
    random (untrained) He-initialized ``Linear(width, width, bias=False)`` and followed by a ReLU,
    i.e. ``depth`` blocks Linear -> BN -> ReLU; the weights are drawn from ``seed``.

    In training every layer's output has exactly unit variance within its batch. In eval, PyTorch's
    layer divides by the UNBIASED running variance, m/(m-1) times the average within-batch variance
    it saw, so each layer shrinks the spread by sqrt((m-1)/m) and after L layers the ratio is
    ((m-1)/m)^(L/2): (63/64)^10 = 0.854 for 20 layers and m = 64 (pytorch issue 100048). Keras 3's
    biased running variance gives 1. Returns the ratio after each layer.
    """
    rng = np.random.default_rng(seed)
    layers = [BatchNorm(width, momentum=None, eps=eps) for _ in range(depth)]
    before = [Linear(width, width, bias=False, gain=np.sqrt(2.0), rng=rng) if weights else None for _ in layers]

    def block(k, h):
        """Block k up to its BatchNorm's output; the caller applies the ReLU (with weights)."""
        return layers[k](before[k](h) if weights else h)

    def after(h):
        return np.maximum(h, 0.0) if weights else h

    for _ in range(steps):
        h = rng.standard_normal((batch_size, width))
        for k in range(depth):
            h = after(block(k, h))
    if convention == "keras":
        # the same average of batch variances without Bessel's correction: what Keras 3 converges to
        for layer in layers:
            layer.running_var *= (batch_size - 1) / batch_size
    elif convention != "pytorch":
        raise ValueError(f"convention: expected 'pytorch' or 'keras', got {convention!r}")
    h = rng.standard_normal((test_batches * batch_size, width))
    ratios = []
    for k, layer in enumerate(layers):
        layer.eval()
        h = block(k, h)
        within = h.reshape(test_batches, batch_size, width).var(axis=1)  # train mode would give exactly 1
        ratios.append(float(np.sqrt(within.mean())))
        h = after(h)
    return np.array(ratios)


def moving_std_bias(batch_sizes, *, std=2.0, steps=4000, seed=0):
    """What three running estimators converge to, divided by the true variance (or std), per batch size.

    Returns a dict of arrays: ``unbiased_var`` (PyTorch), ``biased_var`` (Keras 3), ``moving_std``
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
        ("biased_var", "running biased variance (Keras 3)", PALETTE[4], "s-"),
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


def chained_ratio_plot(results: dict, with_weights: dict | None = None):
    """Eval/train output spread after each of L chained BatchNorm layers, per batch size, with theory.

    ``with_weights``: optional ``{batch size: (seeds, layers) array}`` of the Linear -> BN -> ReLU
    chain, drawn as hollow markers (mean over seeds) with a min-max band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    colours = dict(zip(results, PALETTE))
    for m, ratios in results.items():
        layers = np.arange(1, len(ratios) + 1)
        ax.plot(layers, ratios, "o", color=colours[m], ms=5, label=f"bare BN, batch {m}")
        ax.plot(layers, ((m - 1) / m) ** (layers / 2), "-", color=colours[m], lw=1)
    for m, runs in (with_weights or {}).items():
        runs = np.asarray(runs)
        layers = np.arange(1, runs.shape[1] + 1)
        colour = colours.get(m, PALETTE[len(colours) % len(PALETTE)])
        ax.fill_between(layers, runs.min(axis=0), runs.max(axis=0), color=colour, alpha=0.15, lw=0)
        ax.plot(layers, runs.mean(axis=0), "D", mfc="white", color=colour, ms=5, label=f"Linear-BN-ReLU, batch {m}")
    ax.plot([], [], "-", color="0.4", lw=1, label=r"$((m-1)/m)^{L/2}$")
    ax.set_xlabel("number of chained BatchNorm layers L")
    ax.set_ylabel("eval / train output spread")
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    return fig


def parameter_vector(model) -> np.ndarray:
    """Every trained parameter of ``model``, flattened into one float64 vector (running statistics excluded)."""
    return np.concatenate([np.ravel(getattr(m, n)) for m, n in model.parameters()])


class MomentumStudy(NamedTuple):
    momenta: tuple
    batch_sizes: tuple
    seeds: tuple
    steps: int
    eval_accuracy: np.ndarray  # (momenta, batch sizes, seeds): test accuracy with the running statistics
    recalibrated_accuracy: np.ndarray  # (batch sizes, seeds): the same weights, exact training-set statistics
    histories: dict  # (momentum, batch size, seed) -> bnlib.train.History
    max_parameter_difference: float  # largest |w(momentum a) - w(momentum b)| over all runs, same batch and seed
    max_train_loss_difference: float  # largest difference of the per-epoch training losses, the same way


def momentum_study(
    momenta=(0.001, 0.01, 0.1), batch_sizes=(8, 32, 128), *, steps=840, seeds=(0, 1, 2), lr=0.1, width=64, depth=2
):
    """Train the same seeded MLP with each BatchNorm momentum, for a fixed number of SGD steps per batch size.

    For a given batch size and seed the arms differ only in the momentum: same weights, same batch
    order. The running statistics never enter the training-mode forward, so the momentum cannot change
    training; this returns the largest parameter and training-loss differences between momenta (0 when
    the claim holds bitwise) next to the eval accuracies, which do depend on it. ``steps`` must be a
    whole number of epochs for every batch size (840 is 5 epochs at batch 8, 20 at 32, 84 at 128).
    """
    with threadpool_limits(1):  # tiny matrices: one BLAS thread is faster and does not compete for the cores
        return _momentum_study(momenta, batch_sizes, steps, seeds, lr, width, depth)


def _momentum_study(momenta, batch_sizes, steps, seeds, lr, width, depth):
    data = load_digits()
    n = len(data.x_train)
    for b in batch_sizes:
        if steps % (n // b):
            raise ValueError(f"steps: expected a multiple of {n // b} (steps per epoch at batch {b}), got {steps}")
    acc = np.zeros((len(momenta), len(batch_sizes), len(seeds)))
    recal = np.zeros((len(batch_sizes), len(seeds)))
    histories, max_param, max_loss = {}, 0.0, 0.0
    for j, b in enumerate(batch_sizes):
        for k, seed in enumerate(seeds):
            reference = None
            for i, m in enumerate(momenta):
                model = mlp([64] + [width] * depth + [10], norm="batch", momentum=m, rng=seed)
                history = fit(model, data, epochs=steps // (n // b), lr=lr, batch_size=b, seed=seed)
                histories[m, b, seed] = history
                acc[i, j, k] = accuracy(model, data.x_test, data.y_test)
                params, losses = parameter_vector(model), np.array(history.train_loss)
                if reference is None:
                    reference = (params, losses)
                    recal[j, k] = accuracy(recalibrate(model, data.x_train), data.x_test, data.y_test)
                else:
                    max_param = max(max_param, float(np.abs(params - reference[0]).max()))
                    max_loss = max(max_loss, float(np.abs(losses - reference[1]).max()))
    return MomentumStudy(
        tuple(momenta), tuple(batch_sizes), tuple(seeds), steps, acc, recal, histories, max_param, max_loss
    )


def momentum_accuracy_plot(study: MomentumStudy):
    """Eval accuracy against batch size, one line per momentum (mean, bars: min-max over seeds), and recalibrated."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    b = np.array(study.batch_sizes, dtype=float)
    offsets = np.linspace(-0.06, 0.06, len(study.momenta) + 1)
    series = [(f"momentum {m:g}", study.eval_accuracy[i], "o-") for i, m in enumerate(study.momenta)]
    series.append(("recalibrated (any momentum)", study.recalibrated_accuracy, "k--"))
    for (label, values, style), colour, offset in zip(series, PALETTE + ["0.2"], offsets):
        mean = values.mean(axis=-1)
        err = np.vstack([mean - values.min(axis=-1), values.max(axis=-1) - mean])
        x = b * 10**offset
        if style == "k--":
            ax.errorbar(x, mean, yerr=err, fmt="s--", color="0.2", capsize=3, label=label)
        else:
            ax.errorbar(x, mean, yerr=err, fmt=style, color=colour, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(b, [f"{v:g}" for v in b])
    ax.minorticks_off()
    ax.set_xlabel(f"batch size ({study.steps} SGD steps each)")
    ax.set_ylabel("test accuracy, eval mode")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def brightness_contrast(raw_images, *, seed, contrast=(0.5, 0.5), brightness=(4.0, 4.0)):
    """A seeded covariate shift of raw digit pixels (0 to 16): ``c * x + b``, each image with its own
    contrast factor c and brightness offset b drawn uniformly from the given ranges (equal ends: one
    shift for every image, a new "camera")."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(*contrast, size=(len(raw_images), 1))
    b = rng.uniform(*brightness, size=(len(raw_images), 1))
    return c * raw_images + b


def _standardizer(x):
    """Per-pixel (x - mean) / std with the statistics of ``x`` (constant pixels: std 1), as bnlib.data does."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return lambda z: (z - mean) / std


class ShiftStudy(NamedTuple):
    clean: np.ndarray  # (seeds,) eval accuracy on the clean test set
    shifted: np.ndarray  # shifted test set, training statistics everywhere
    input_restandardized: np.ndarray  # shifted test set, input re-standardized with shifted statistics only
    adapted: np.ndarray  # shifted test set, every BatchNorm's statistics re-estimated on shifted data (AdaBN)
    adapted_clean: np.ndarray  # the adapted model back on the clean test set


def covariate_shift_study(
    *,
    contrast=(0.5, 0.5),
    brightness=(4.0, 4.0),
    seeds=(0, 1, 2),
    epochs=10,
    lr=0.1,
    batch_size=64,
    width=64,
    depth=2,
    shift_seed=100,
):
    """A network trained on clean digits, tested on digits with a brightness/contrast shift.

    Arms, on the same trained weights: the clean test set; the shifted test set with the training
    statistics (input standardization and every BatchNorm); the shifted test set with only the input
    re-standardized on shifted data; and AdaBN (Li et al. 2016): every BatchNorm's statistics
    re-estimated (:func:`recalibrate`) on shifted, unlabeled images. The shifted statistics come from
    the shifted TRAINING images (their own brightness/contrast draws), never from the images scored.
    """
    with threadpool_limits(1):
        return _covariate_shift_study(contrast, brightness, seeds, epochs, lr, batch_size, width, depth, shift_seed)


def _covariate_shift_study(contrast, brightness, seeds, epochs, lr, batch_size, width, depth, shift_seed):
    raw = load_digits(standardize=False)
    clean_scale = _standardizer(raw.x_train)
    data = Dataset(clean_scale(raw.x_train), raw.y_train, clean_scale(raw.x_test), raw.y_test)
    shift = dict(contrast=contrast, brightness=brightness)
    target_train = brightness_contrast(raw.x_train, seed=shift_seed, **shift)  # unlabeled images, new domain
    target_test = brightness_contrast(raw.x_test, seed=shift_seed + 1, **shift)
    shifted_scale = _standardizer(target_train)
    out = {k: [] for k in ShiftStudy._fields}
    for seed in seeds:
        model = mlp([64] + [width] * depth + [10], norm="batch", rng=seed)
        fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        out["clean"].append(accuracy(model, data.x_test, data.y_test))
        out["shifted"].append(accuracy(model, clean_scale(target_test), data.y_test))
        out["input_restandardized"].append(accuracy(model, shifted_scale(target_test), data.y_test))
        recalibrate(model, clean_scale(target_train))
        out["adapted"].append(accuracy(model, clean_scale(target_test), data.y_test))
        out["adapted_clean"].append(accuracy(model, data.x_test, data.y_test))
    return ShiftStudy(**{k: np.array(v) for k, v in out.items()})
