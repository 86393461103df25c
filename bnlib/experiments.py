"""Experiment drivers the chapters share: training loops and per-layer diagnostics.

They live here, not in the notebooks, so the tests reach them and chapters stay short.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .data import batches
from .layers import BatchNorm
from .module import Module
from .nn import SoftmaxCrossEntropy
from .optim import SGD

__all__ = ["History", "fit", "accuracy", "train_mode_accuracy", "evaluate", "recalibrate", "at_rounding"]


def at_rounding(value, floor=1e-12) -> str:
    """Format a difference that should be rounding error: "< 1e-12" when it is (its exact digits
    change from run to run with multithreaded BLAS), else the value, so a real discrepancy shows."""
    value = float(value)
    return f"< {floor:.0e}" if abs(value) < floor else f"{value:.1e}"


class History(NamedTuple):
    train_loss: list  # mean training loss per epoch (train mode, as seen by the optimizer)
    test_loss: list  # eval-mode test loss per epoch
    test_accuracy: list  # eval-mode test accuracy per epoch
    diverged: bool  # a loss became non-finite (training stopped there)


def accuracy(model: Module, x, y, *, batch_size=None) -> float:
    """Classification accuracy in the model's current mode (call ``model.eval()`` first for inference)."""
    logits = predict(model, x, batch_size=batch_size)
    return float((logits.argmax(axis=1) == y).mean())


def predict(model: Module, x, *, batch_size=None):
    if batch_size is None:
        return model(x)
    return np.concatenate([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def train_mode_accuracy(model: Module, x, y, batch_size) -> float:
    """Accuracy with batch norm left in TRAINING mode, in batches of ``batch_size`` (the common
    mistake of forgetting ``model.eval()``). Only full batches are scored; every BatchNorm's running
    statistics and counter are restored afterwards, and the model is left in eval mode."""
    norms = [m for m in _walk(model) if isinstance(m, BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.copy(), m.running_var.copy(), m.num_batches_tracked) for m in norms]
    n = len(x) - len(x) % batch_size
    model.train()
    try:
        logits = np.concatenate([model(x[i : i + batch_size]) for i in range(0, n, batch_size)])
    finally:
        for m, (rm, rv, count) in zip(norms, saved):
            m.running_mean[:], m.running_var[:], m.num_batches_tracked = rm, rv, count
        model.eval()
    return float((logits.argmax(axis=1) == y[:n]).mean())


def evaluate(model: Module, x, y) -> tuple[float, float]:
    """(loss, accuracy) in eval mode; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
        loss = SoftmaxCrossEntropy()(logits, y)
        acc = float((logits.argmax(axis=1) == y).mean())
    finally:
        model.train(was_training)
    return loss, acc


def fit(model: Module, data, *, epochs=10, lr=0.1, momentum=0.9, batch_size=64, seed=0, weight_decay=0.0):
    """Train ``model`` with SGD on ``data`` (a :class:`bnlib.data.Dataset`); returns a :class:`History`.

    The batch order is drawn from ``seed``, so two arms of an experiment that share the seed see the
    same batches. Training stops early, with ``diverged=True``, if the loss becomes NaN or inf.
    """
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    history = History([], [], [], False)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(epochs):
            model.train()
            losses = []
            for xb, yb in batches(data.x_train, data.y_train, batch_size, rng=rng):
                logits = model(xb)
                loss = loss_fn(logits, yb)
                if not np.isfinite(loss):
                    return history._replace(diverged=True)
                losses.append(loss)
                model.backward(loss_fn.backward())
                opt.step()
                if not all(np.isfinite(getattr(m, n)).all() for m, n in opt.params):
                    return history._replace(diverged=True)
            history.train_loss.append(float(np.mean(losses)))
            test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
            history.test_loss.append(test_loss)
            history.test_accuracy.append(test_acc)
    model.eval()
    return history


def recalibrate(model: Module, x, *, batch_size=None) -> Module:
    """Replace every BatchNorm's running statistics by exact statistics of ``x`` (the training set).

    With ``momentum=None`` and the counters reset, each BatchNorm averages its batch statistics
    over one pass; with ``batch_size=None`` the single pass is the whole set, so the running mean is
    the exact mean and the running variance the exact (unbiased) variance at that layer's input.
    Parameters are not touched. The model is left in eval mode.
    """
    norms = [m for m in _walk(model) if isinstance(m, BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        predict(model, x, batch_size=batch_size)
    finally:
        for momentum, m in saved:
            m.momentum = momentum
        model.eval()
    return model


def _walk(module):
    yield module
    for child in module.children():
        yield from _walk(child)


# ------------------------------------------------------------------------------ chapter 2: the algorithm


def linear_fit_r2(x, fx) -> float:
    """R^2 of the least-squares straight line through ``(x, fx)``: 1 means ``fx`` is linear in ``x``."""
    x, fx = np.ravel(x), np.ravel(fx)
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(A, fx, rcond=None)
    residual = fx - A @ coef
    total = fx - fx.mean()
    return float(1 - (residual @ residual) / (total @ total))


def variance_error_sweep(mean_over_std, *, n=4096, features=8, seed=0):
    """Relative error of three float32 variance computations as the mean grows against the spread.

    For each ratio ``r``: data ``r + N(0, 1)`` rounded to float32; the reference is the float64
    variance of those same float32 numbers. Returns a dict of arrays (one value per ratio, the worst
    feature): ``one_pass`` (E[x^2] - E[x]^2 in float32), ``two_pass`` (numpy's ``var`` in float32),
    ``bnlib`` (bnlib's corrected two-pass), and ``output_error``: the largest difference between
    bnlib's float32 batch norm and the float64 one on the same input, in units of the output's spread.
    """
    from . import functional as F

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, features))
    out = {key: [] for key in ("one_pass", "two_pass", "bnlib", "output_error", "one_pass_negative")}
    for r in mean_over_std:
        x32 = (r + noise).astype(np.float32)
        exact = x32.astype(np.float64).var(axis=0)
        one = F.one_pass_variance(x32, (0,))
        out["one_pass"].append(np.max(np.abs(one - exact) / exact))
        out["one_pass_negative"].append(bool((one < 0).any()))
        out["two_pass"].append(np.max(np.abs(x32.var(axis=0) - exact) / exact))
        _, var = F.moments(x32, (0,))
        out["bnlib"].append(np.max(np.abs(var - exact) / exact))
        y32 = F.batch_norm(x32, None, None, training=True)
        y64 = F.batch_norm(x32.astype(np.float64), None, None, training=True)
        out["output_error"].append(float(np.abs(y32 - y64).max()))
    return {k: np.array(v) for k, v in out.items()}


# ------------------------------------------------------------------------------ chapter 3: the backward pass


def constant_stats_error(batch_sizes, *, trials=200, features=16, seed=0):
    """Median relative error of the backward that treats mean and variance as constants.

    For each batch size N: random x, gamma and dy; error ``||dx_wrong - dx_true|| / ||dx_true||``
    per trial (per whole batch), median over ``trials``. Returns an array, one value per N.
    """
    from . import functional as F

    rng = np.random.default_rng(seed)
    medians = []
    for n in batch_sizes:
        errors = []
        for _ in range(trials):
            x = rng.standard_normal((n, features))
            dy = rng.standard_normal((n, features))
            gamma = rng.uniform(0.5, 1.5, features)
            _, _, _, cache = F.batch_norm_train_forward(x, gamma, None)
            true, _, _ = F.batch_norm_backward(dy, cache)
            wrong, _, _ = F.batch_norm_backward_constant_stats(dy, x, gamma)
            errors.append(np.linalg.norm(wrong - true) / np.linalg.norm(true))
        medians.append(float(np.median(errors)))
    return np.array(medians)


def paired_timings(functions: dict, *, repeats=30, warmup=3):
    """Time several functions in interleaved rounds (each round runs every function once, in a
    rotating order) so they share the machine's state; returns name -> array of seconds."""
    import time

    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


# ------------------------------------------------------------------------------ chapter 4: running statistics


class RunningTrace(NamedTuple):
    running_mean: np.ndarray  # (steps + 1,) the estimate after each step (index 0: the initial value)
    running_var: np.ndarray
    batch_means: np.ndarray  # (steps,)
    batch_vars: np.ndarray  # (steps,) biased


def running_estimates(momentum, batch_size, steps, *, mean=3.0, std=2.0, convention="pytorch", seed=0) -> RunningTrace:
    """Feed ``steps`` batches of N(mean, std^2) through one BatchNorm feature and record its estimates."""
    from .layers import BatchNorm

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


def chained_eval_train_ratio(depth, batch_size, *, steps=2000, width=8, eps=1e-12, convention="pytorch",
                             test_batches=2000, seed=0):
    """``depth`` BatchNorm layers in a row (no weights between them), trained until the running
    statistics converge (the cumulative average of ``steps`` batches), then the ratio of eval-mode to
    train-mode output spread per layer, on fresh batches of the training batch size.

    In training every layer's output has exactly unit variance within its batch. In eval, PyTorch's
    layer divides by the UNBIASED running variance, m/(m-1) times the average within-batch variance
    it saw, so each layer shrinks the spread by sqrt((m-1)/m) and after L layers the ratio is
    ((m-1)/m)^(L/2): (63/64)^10 = 0.854 for 20 layers and m = 64 (pytorch issue 100048). Keras'
    biased running variance gives 1. Returns the ratio after each layer.
    """
    from .layers import BatchNorm

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
    from .data import load_digits
    from .nn import mlp

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


# ------------------------------------------------------------------------------ chapter 5: small batches

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
    return BatchNoise(means, variances, float(means.std()), float(variances.std()), 1 / np.sqrt(m),
                      float(np.sqrt((kurtosis - (m - 3) / (m - 1)) / m)))


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


def normalization_sweep(batch_sizes, norms=(None, "batch", "layer", "group"), *, seeds=(0, 1, 2), epochs=3,
                        lr_per_32=0.05, widths=(64, 64, 64), data=None, progress=None):
    """Train the same MLP with each normalization and batch size, several seeds.

    The learning rate follows the linear scaling rule, ``lr_per_32 * batch_size / 32``, so that every
    batch size takes comparable steps per example seen; all arms see the same number of epochs.
    Architecture, initialization (per seed) and learning rate are identical between normalizations;
    only the normalization layer changes. Returns a :class:`SweepResult` in the order
    batch size x norm x seed.
    """
    from .data import load_digits
    from .nn import mlp

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
    return SweepResult(settings, np.array(acc), np.array(train_mode_acc), np.array(train_loss),
                       np.array(test_loss), np.array(diverged), curves)


def summarize(result: SweepResult, key: str, by=("batch_size", "norm")):
    """Mean and standard deviation over seeds of ``result.<key>``, grouped by the given settings."""
    values = getattr(result, key)
    groups = {}
    for setting, value in zip(result.settings, values):
        groups.setdefault(tuple(setting[k] for k in by), []).append(value)
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in groups.items()}


# ------------------------------------------------------------------------------ chapter 7: training experiments


class CovariateShift(Module):
    """Injects "internal covariate shift" on purpose (after Santurkar et al. 2018): in training, each
    unit's activation is scaled and shifted by random amounts drawn anew at every step,
    ``y = x * scale + shift`` with ``scale ~ U(1 - strength/2, 1 + strength/2)`` and
    ``shift ~ U(-strength, strength)``; in eval it is the identity, the noise's mean. Put after a
    BatchNorm, it makes the distribution each later layer sees change from step to step, which batch
    norm was supposed to prevent."""

    def __init__(self, width, strength=1.0, rng=None):
        super().__init__()
        self.width, self.strength = int(width), float(strength)
        self.rng = np.random.default_rng(rng)
        self._scale = None

    def forward(self, x):
        if not self.training:
            self._scale = np.ones(self.width)
            return x
        self._scale = self.rng.uniform(1.0 - self.strength / 2, 1.0 + self.strength / 2, self.width)
        return x * self._scale + self.rng.uniform(-self.strength, self.strength, self.width)

    def backward(self, dy):
        if self._scale is None:
            raise ValueError("backward() was called before forward(): run forward on a batch first")
        return dy * self._scale


def build_mlp(*, norm=None, depth=4, width=64, activation="relu", gain=None, norm_position="before",
              shift_strength=0.0, seed=0, inputs=64, classes=10, **norm_kwargs):
    """The chapters' MLP; ``shift_strength > 0`` inserts a :class:`CovariateShift` after every norm layer."""
    from .nn import Sequential, mlp

    model = mlp([inputs] + [width] * depth + [classes], activation=activation, norm=norm, gain=gain,
                norm_position=norm_position, rng=seed, **norm_kwargs)
    if shift_strength and norm is not None:
        layers, rng = [], np.random.default_rng(seed + 1000)
        for layer in model.layers:
            layers.append(layer)
            if isinstance(layer, (BatchNorm,)) or type(layer).__name__ in ("LayerNorm", "GroupNorm"):
                layers.append(CovariateShift(width, shift_strength, rng))
        model = Sequential(*layers)
    return model


def train_runs(settings, *, seeds=(0, 1, 2), epochs=5, batch_size=64, data=None, progress=None):
    """Train :func:`build_mlp` for every setting (a dict with ``lr`` and build_mlp's arguments) and seed.

    Returns a list of dicts: the setting, and per seed the :class:`History`."""
    from .data import load_digits

    data = data or load_digits()
    out = []
    total = len(settings) * len(seeds)
    for setting in settings:
        setting = dict(setting)
        lr = setting.pop("lr")
        histories = []
        for seed in seeds:
            model = build_mlp(seed=seed, **setting)
            histories.append(fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
            if progress:
                progress(len(out) * len(seeds) + len(histories), total)
        out.append({"setting": {**setting, "lr": lr}, "histories": histories})
    return out


def final_accuracy(run) -> np.ndarray:
    """Final eval-mode test accuracy per seed (0 for a run that diverged)."""
    return np.array([h.test_accuracy[-1] if (h.test_accuracy and not h.diverged) else 0.0 for h in run["histories"]])


def largest_stable_lr(runs, key="lr", threshold=0.5):
    """The largest learning rate at which every seed finished with test accuracy above ``threshold``."""
    stable = [r["setting"][key] for r in runs if final_accuracy(r).min() > threshold]
    return max(stable) if stable else None


class Smoothness(NamedTuple):
    steps: list  # training steps at which the landscape was probed
    loss_range: np.ndarray  # (probes,) max - min of the loss along the gradient direction
    gradient_change: np.ndarray  # (probes,) max ||grad(w - eta g) - grad(w)|| along the same steps
    loss: np.ndarray  # (probes,) loss at the probe point


def smoothness_probe(*, norm=None, lr=0.05, etas=(0.25, 0.5, 1.0, 2.0, 4.0), probe_every=20, steps=200,
                     batch_size=64, seed=0, depth=4, activation="relu", data=None):
    """Santurkar et al.'s landscape measurements, at small scale.

    Train with SGD (no momentum) and, every ``probe_every`` steps, take the current batch's gradient g
    and move the weights to ``w - eta * lr * g`` for each eta: record the spread of the loss over those
    points ("loss landscape") and the largest change of the gradient ("gradient predictiveness": a
    small change means the gradient is a good guide for a step of that size). Each probe runs on a
    copy of the model, so training itself is not disturbed.
    """
    import copy

    from .data import load_digits

    data = data or load_digits()
    model = build_mlp(norm=norm, depth=depth, activation=activation, seed=seed)
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    probes, ranges, changes, losses = [], [], [], []

    def loss_and_grad(m, xb, yb):
        m.train()
        loss = loss_fn(m(xb), yb)
        m.backward(loss_fn.backward())
        return loss, np.concatenate([getattr(mod, "d" + name).ravel() for mod, name in m.parameters()])

    step = 0
    while step < steps:
        for xb, yb in batches(data.x_train, data.y_train, batch_size, rng=rng):
            if step % probe_every == 0:
                base = copy.deepcopy(model)
                loss0, g0 = loss_and_grad(base, xb, yb)
                moved_losses, moved_changes = [loss0], [0.0]
                for eta in etas:
                    trial = copy.deepcopy(base)
                    for mod, name in trial.parameters():
                        getattr(mod, name)[...] -= eta * lr * getattr(mod, "d" + name)
                    loss_t, g_t = loss_and_grad(trial, xb, yb)
                    moved_losses.append(loss_t)
                    moved_changes.append(float(np.linalg.norm(g_t - g0)))
                probes.append(step)
                ranges.append(max(moved_losses) - min(moved_losses))
                changes.append(max(moved_changes))
                losses.append(loss0)
            model.train()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()
            step += 1
            if step >= steps:
                break
    return Smoothness(probes, np.array(ranges), np.array(changes), np.array(losses))


def describe_setting(setting: dict) -> str:
    """A short label for a run setting, e.g. "batch norm, shift 0.5, lr 0.1"."""
    parts = ["batch norm" if setting.get("norm") == "batch" else (setting.get("norm") or "no norm")]
    labels = {"shift_strength": "shift ", "gain": "gain ", "depth": "depth ", "norm_position": "", "activation": "", "lr": "lr "}
    for key, label in labels.items():
        value = setting.get(key)
        if value is not None:
            parts.append(label + (f"{value:g}" if isinstance(value, (int, float)) else str(value)))
    return ", ".join(parts)
