"""Chapter 10 (scale and depth): the scale invariance batch norm gives the weights in front of it, the
weight norm and effective learning rate it implies with and without weight decay, the update-to-data
ratio as a diagnostic, gradient norms against depth in plain and residual networks (zero-initialized
gamma, SkipInit), and why sequence models normalize per token (padding pollutes batch statistics).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from bnlib import SGD, BatchNorm, LayerNorm, Linear, Module, ReLU, Residual, RMSNorm, Sequential, mlp
from bnlib import functional as F
from bnlib.data import batches, load_digits
from bnlib.nn import SoftmaxCrossEntropy
from bnlib.train import evaluate

from ._checks import check_count, check_rate, check_seeds
from .ch07_training import scale_invariant_weights
from .explore import interactive
from .style import PALETTE, frame, plain_log_ticks, pyplot


def _one_blas_thread(fn):
    """Run ``fn`` with one BLAS thread: on these 64-wide matrices threads cost more than they save
    (about 30% of a training run here), and a single thread leaves the other core to the build."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return wrapper


# --- Scale invariance ------------------------------------------------------------------------------


def _loss_and_grads(model, x, y):
    """Training-mode loss of one batch and the model's gradients (stored on the layers)."""
    model.train()
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    return float(loss)


class ScaleCheck(NamedTuple):
    c: np.ndarray  # the factors the first hidden weight matrix was multiplied by
    output_change: np.ndarray  # largest |logits(cW) - logits(W)|, relative to the largest |logit|
    gradient_ratio: np.ndarray  # ||dL/dW at cW|| / ||dL/dW at W||; scale invariance predicts 1/c
    cosine: np.ndarray  # <W, dL/dW> / (||W|| ||dL/dW||) at cW; scale invariance predicts 0


@_one_blas_thread
def scale_invariance(cs=(0.1, 0.5, 2.0, 10.0), *, eps=1e-5, seed=0, batch_size=64) -> ScaleCheck:
    """Multiply the first hidden Linear weight W of a batch-norm MLP (3 hidden layers of 64) by each
    c > 0 and measure, on one training-mode batch of digits: the change of the logits, the gradient
    norm relative to c = 1, and the cosine between W and its gradient. Without eps batch norm would make
    the loss exactly invariant to c, so the gradient would be ``1/c`` times and orthogonal to W (its
    derivative along W, ``d/dc L(cW)``, is 0); eps breaks the invariance by about ``eps / var`` of the
    layer's pre-activations (bnlib needs eps > 0: pass a tiny one to see the exact limit)."""
    cs = np.asarray(cs, dtype=float)
    if cs.ndim != 1 or cs.size == 0 or not np.all(cs > 0):
        raise ValueError(f"cs: expected a list of positive factors, got {cs}")
    data = load_digits()
    x, y = data.x_train[:batch_size], data.y_train[:batch_size]
    base = mlp([64, 64, 64, 64, 10], norm="batch", rng=seed, eps=eps)
    layer = scale_invariant_weights(base)[0][0]
    w0 = layer.weight.copy()
    ref_logits = base.train()(x)
    _loss_and_grads(base, x, y)
    ref_grad = np.linalg.norm(layer.dweight)
    change, ratio, cosine = [], [], []
    for c in cs:
        layer.weight = c * w0
        logits = base.train()(x)
        change.append(np.abs(logits - ref_logits).max() / np.abs(ref_logits).max())
        _loss_and_grads(base, x, y)
        g = layer.dweight
        ratio.append(np.linalg.norm(g) / ref_grad)
        cosine.append(np.sum(layer.weight * g) / (np.linalg.norm(layer.weight) * np.linalg.norm(g)))
    layer.weight = w0
    return ScaleCheck(cs, np.array(change), np.array(ratio), np.array(cosine))


# --- Weight norm and effective learning rate --------------------------------------------------------


class NormTrace(NamedTuple):
    lr: float
    weight_decay: float
    gain: float  # the hidden layers' initialization gain (He: sqrt 2)
    sq_norm: np.ndarray  # (seeds, steps + 1, layers): ||W||^2 of each scale-invariant weight
    angle: np.ndarray  # (seeds, steps, layers): angle (radians) between W before and after each step
    growth_residual: np.ndarray  # (seeds,): max over steps, layers of |d||W||^2 - lr^2 ||g||^2| / ||W||^2
    test_accuracy: np.ndarray  # (seeds,) after the last step, eval mode
    steps_per_epoch: int

    @property
    def effective_lr(self):
        """``lr / ||W||^2`` per seed, step and layer: the rate at which W's direction learns."""
        return self.lr / self.sq_norm


def _steps(data, *, epochs, batch_size, seed):
    """The batch order :func:`bnlib.train.fit` uses for ``seed``: the same batches, in the same order."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        yield from batches(data.x_train, data.y_train, batch_size, rng=rng)


@_one_blas_thread
def weight_norm_study(
    *, lr=0.1, weight_decay=0.0, gain=None, seeds=(0, 1, 2), epochs=20, batch_size=32, depth=3, data=None
):
    """Train the batch-norm MLP (``depth`` hidden layers of 64, ReLU) with plain SGD (no momentum, so
    the growth rule is exact) and weight decay on the scale-invariant weights only (gamma, beta and
    the output layer get none, so that weight decay can act only through the effective learning
    rate: the function ignores those norms), recording each scale-invariant weight's squared norm
    and the angle it turns by at every step.

    Without weight decay the gradient is orthogonal to W, so each step adds ``lr^2 ||g||^2`` to
    ``||W||^2``: the norm only grows and the effective learning rate ``lr / ||W||^2`` only falls
    (``growth_residual`` measures how exactly). With weight decay the norm settles where shrinkage and
    growth balance; for plain SGD that equilibrium turns W by about ``sqrt(2 lr weight_decay)`` radians
    per step (van Laarhoven 2017; Wan et al. 2021), whatever the initial norm."""
    seeds, epochs = check_seeds(seeds), check_count(epochs, "epochs")
    lr, weight_decay = check_rate(lr, "lr"), check_rate(weight_decay, "weight_decay")
    batch_size, depth = check_count(batch_size, "batch_size"), check_count(depth, "depth")
    data = data or load_digits()
    loss_fn = SoftmaxCrossEntropy()
    sq, angles, residual, acc = [], [], [], []
    steps_per_epoch = len(data.x_train) // batch_size
    for seed in seeds:
        model = mlp([64] + [64] * depth + [10], norm="batch", rng=seed, gain=gain)
        invariant = scale_invariant_weights(model)
        layers = [m for m, _ in invariant]
        keys = {(id(m), n) for m, n in invariant}
        rest = [(m, n) for m, n in model.parameters() if (id(m), n) not in keys]
        optimizers = [SGD(invariant, lr=lr, weight_decay=weight_decay), SGD(rest, lr=lr)]
        sq_run, ang_run, worst = [[np.sum(m.weight**2) for m in layers]], [], 0.0
        model.train()
        for xb, yb in _steps(data, epochs=epochs, batch_size=batch_size, seed=seed):
            before = [m.weight.copy() for m in layers]
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            grads = [np.sum(m.dweight**2) for m in layers]
            for opt in optimizers:
                opt.step()
            now = [np.sum(m.weight**2) for m in layers]
            if weight_decay == 0:
                worst = max(worst, max(abs(n - b - lr**2 * g) / n for n, b, g in zip(now, sq_run[-1], grads)))
            cos = [np.sum(b * m.weight) / np.sqrt(np.sum(b**2) * n) for b, m, n in zip(before, layers, now)]
            ang_run.append(np.arccos(np.clip(cos, -1.0, 1.0)))
            sq_run.append(now)
        sq.append(sq_run)
        angles.append(ang_run)
        residual.append(worst if weight_decay == 0 else np.nan)
        acc.append(evaluate(model.eval(), data.x_test, data.y_test)[1])
    return NormTrace(
        float(lr),
        float(weight_decay),
        float(np.sqrt(2.0) if gain is None else gain),
        np.array(sq),
        np.array(angles),
        np.array(residual),
        np.array(acc),
        steps_per_epoch,
    )


def equilibrium_angle(lr, weight_decay) -> float:
    """The angular update per step at the weight-norm equilibrium of plain SGD with weight decay:
    ``||W||^2 (1 - lr wd)^2 + lr^2 ||g||^2 = ||W||^2`` gives ``lr ||g|| / ||W|| ~ sqrt(2 lr wd)``."""
    return float(np.sqrt(2 * check_rate(lr, "lr") * check_rate(weight_decay, "weight_decay")))


def _smooth(values, window):
    """Moving average over the last axis (``valid`` part: ``window - 1`` fewer points)."""
    if window <= 1:
        return values
    kernel = np.ones(window) / window
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), -1, values)


def weight_norm_plot(traces: list):
    """Three panels over training steps for runs of :func:`weight_norm_study` (colour: initial gain;
    solid: no weight decay, dashed: with it; mean over seeds and layers, band: min to max over
    seeds): the squared weight norm, the effective learning rate, and the angle turned per step
    (one-epoch moving average) with its equilibrium value ``sqrt(2 lr wd)`` dotted."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3), layout="constrained")
    gains = sorted({t.gain for t in traces})
    colours = dict(zip(gains, [PALETTE[1], PALETTE[0], PALETTE[2], PALETTE[3]]))
    for trace in traces:
        colour, ls = colours[trace.gain], "--" if trace.weight_decay else "-"
        label = f"gain {trace.gain:.3g}, wd {trace.weight_decay:g}"
        steps = np.arange(trace.sq_norm.shape[1])
        for ax, values in ((axes[0], trace.sq_norm.mean(axis=2)), (axes[1], trace.effective_lr.mean(axis=2))):
            ax.plot(steps, values.mean(axis=0), color=colour, ls=ls, label=label)
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.15, lw=0)
        window = trace.steps_per_epoch
        angle = _smooth(trace.angle.mean(axis=2), window)
        axes[2].plot(np.arange(angle.shape[1]) + window, angle.mean(axis=0), color=colour, ls=ls)
    for wd in sorted({t.weight_decay for t in traces if t.weight_decay}):
        lr = next(t.lr for t in traces if t.weight_decay == wd)
        axes[2].axhline(equilibrium_angle(lr, wd), color="0.3", ls=":", lw=1.2)
    axes[0].set_ylabel(r"$\|W\|^2$ (mean over layers)")
    axes[1].set_ylabel(r"effective lr  $\eta/\|W\|^2$")
    axes[2].set_ylabel("angle turned per step (rad)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("training step")
    axes[0].legend(fontsize=7)
    axes[2].set_title(r"dotted: $\sqrt{2\eta\lambda}$", fontsize=9)
    return fig


EFFECTIVE_LR_GRID = dict(lr=[0.1, 0.5], weight_decay=[0.0, 0.003, 0.01, 0.03])


@functools.lru_cache(maxsize=1)
def _effective_lr_runs():
    """Every run behind :func:`effective_lr_explorer` (seed 0, He gain, 20 epochs), trained once (about
    10 s) and kept."""
    return {
        (lr, wd): weight_norm_study(lr=lr, weight_decay=wd, seeds=(0,), epochs=20)
        for lr in EFFECTIVE_LR_GRID["lr"]
        for wd in EFFECTIVE_LR_GRID["weight_decay"]
    }


@interactive(
    title="Effective learning rate under weight decay (precomputed runs)",
    alt="The squared weight norm and the effective learning rate over training for one learning rate and weight decay",
    labels={"lr": "learning rate", "weight_decay": "weight decay"},
    **EFFECTIVE_LR_GRID,
)
def effective_lr_explorer(lr=0.5, weight_decay=0.01):
    """Left: ``||W||^2`` over training; right: ``lr / ||W||^2``; the chosen run bold, the same learning
    rate's other weight decays faint. Test accuracy in the title."""
    runs = _effective_lr_runs()
    fig, (ax1, ax2) = frame(2, figsize=(8, 3.2), left=0.09, bottom=0.16, right=0.97)
    for wd in EFFECTIVE_LR_GRID["weight_decay"]:
        trace = runs[(lr, wd)]
        strong = wd == weight_decay
        style = dict(color=PALETTE[0] if strong else "0.55", lw=2 if strong else 0.8, alpha=1 if strong else 0.6)
        steps = np.arange(trace.sq_norm.shape[1])
        ax1.plot(steps, trace.sq_norm[0].mean(axis=1), **style)
        ax2.plot(steps, trace.effective_lr[0].mean(axis=1), **style)
    chosen = runs[(lr, weight_decay)]
    ax1.set_yscale("log")
    ax2.set_yscale("log")
    plain_log_ticks(ax1.yaxis)
    plain_log_ticks(ax2.yaxis)
    ax1.set_ylim(0.5, 500)
    ax2.set_ylim(1e-4, 1)
    ax1.set_xlabel("training step")
    ax2.set_xlabel("training step")
    ax1.set_title(r"$\|W\|^2$ (bold: this weight decay; grey: the others)", fontsize=9)
    ax2.set_title(
        f"effective lr; test accuracy {100 * chosen.test_accuracy[0]:.1f}%",
        fontsize=10,
    )
    return fig


# --- Update-to-data ratio ----------------------------------------------------------------------------


class UpdateRatios(NamedTuple):
    norm: str
    lr: float
    log_ratio: np.ndarray  # (seeds, steps, layers): log10(||step of W|| / ||W||) for every Linear weight
    test_accuracy: np.ndarray  # (seeds,); NaN for a run that diverged
    diverged: np.ndarray  # (seeds,) bool: the loss became NaN or inf (the run stops, its ratios NaN)
    sq_norm: np.ndarray  # (seeds, 2, depth): ||W||^2 of each hidden weight at the start and at the end
    steps_per_epoch: int


@_one_blas_thread
def update_ratios(
    *, norm="batch", lr=0.05, momentum=0.9, seeds=(0, 1, 2), epochs=10, batch_size=32, depth=4, data=None
):
    """Karpathy's update-to-data ratio: ``log10(||W_after - W_before|| / ||W_before||)`` for every
    Linear weight at every step of SGD with momentum, for the MLP with ``norm`` ("batch" or "none").
    A rule of thumb: around -3 (each step changes a weight matrix by a thousandth of its size); much
    higher means the layer's weights are thrashing, much lower that it has stopped learning."""
    if norm not in ("batch", "none"):
        raise ValueError(f"norm: expected 'batch' or 'none', got {norm!r}")
    seeds, epochs = check_seeds(seeds), check_count(epochs, "epochs")
    lr, batch_size, depth = check_rate(lr, "lr"), check_count(batch_size, "batch_size"), check_count(depth, "depth")
    data = data or load_digits()
    loss_fn = SoftmaxCrossEntropy()
    n_steps = epochs * (len(data.x_train) // batch_size)
    logs = np.full((len(seeds), n_steps, depth + 1), np.nan)
    acc, diverged = np.full(len(seeds), np.nan), np.zeros(len(seeds), dtype=bool)
    sq_norm = np.full((len(seeds), 2, depth), np.nan)
    for i, seed in enumerate(seeds):
        model = mlp([64] + [64] * depth + [10], norm=None if norm == "none" else norm, rng=seed)
        layers = [m for m in model.layers if isinstance(m, Linear)]
        sq_norm[i, 0] = [np.sum(m.weight**2) for m in layers[:-1]]
        opt = SGD(model.parameters(), lr=lr, momentum=momentum)
        model.train()
        with np.errstate(over="ignore", invalid="ignore"):
            for step, (xb, yb) in enumerate(_steps(data, epochs=epochs, batch_size=batch_size, seed=seed)):
                before = [m.weight.copy() for m in layers]
                loss = loss_fn(model(xb), yb)
                if not np.isfinite(loss):
                    diverged[i] = True
                    break
                model.backward(loss_fn.backward())
                opt.step()
                logs[i, step] = [
                    np.log10(np.linalg.norm(m.weight - b) / np.linalg.norm(b)) for m, b in zip(layers, before)
                ]
        if not diverged[i]:
            acc[i] = evaluate(model.eval(), data.x_test, data.y_test)[1]
            sq_norm[i, 1] = [np.sum(m.weight**2) for m in layers[:-1]]
    return UpdateRatios(norm, float(lr), logs, acc, diverged, sq_norm, len(data.x_train) // batch_size)


def update_ratio_plot(results: list, window=None):
    """One panel per run of :func:`update_ratios`: each layer's log10 update ratio over training
    (seed 0, moving average over ``window`` steps, default one epoch), the first layer darkest; -3 dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.2), sharey=True, layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, res in zip(axes, results):
        window = window or res.steps_per_epoch
        curves = _smooth(res.log_ratio[0].T, window)
        n = len(curves)
        cmap = pyplot().get_cmap("viridis")
        for i, curve in enumerate(curves):
            label = "output" if i == n - 1 else f"hidden {i + 1}"
            ax.plot(np.arange(len(curve)) + window, curve, color=cmap(i / max(n - 1, 1)), label=label)
        ax.axhline(-3, color="0.4", ls="--", lw=1)
        ax.set_title(f"{'batch norm' if res.norm == 'batch' else 'no normalization'}, lr {res.lr:g}", fontsize=10)
        ax.set_xlabel("training step")
    axes[0].set_ylabel(r"$\log_{10}$ (update / weight)")
    axes[-1].legend(fontsize=7, ncol=2)
    return fig


# --- Depth: plain and residual networks -------------------------------------------------------------


class Scale(Module):
    r"""``y = alpha * x`` with one learnable scalar ``alpha`` (SkipInit's residual-branch multiplier,
    De & Smith 2020: ``x + alpha F(x)`` with ``alpha`` initialized to 0 makes every block the identity
    at initialization, without any normalization). ``dalpha = sum(dy * x)``, ``dx = alpha * dy``."""

    param_names = ("alpha",)

    def __init__(self, alpha=0.0):
        super().__init__()
        self.alpha = np.array([float(alpha)])
        self.dalpha = None
        self._x = None

    def forward(self, x):
        self._x = np.array(x, dtype=float)
        return self.alpha[0] * self._x

    def backward(self, dy):
        if self._x is None:
            raise ValueError("backward() was called before forward(): run forward on a batch first")
        self.dalpha = np.array([np.sum(dy * self._x)])
        return self.alpha[0] * np.asarray(dy, dtype=float)

    def __repr__(self):
        return f"Scale(alpha={self.alpha[0]:g})"


class Tap(Module):
    """The identity, recording the variance of what flows forward through it (``variance``, averaged
    over the units) and the norm of the gradient that flows back (``grad_norm``): placed on the
    residual stream it shows how both change with depth."""

    def __init__(self):
        super().__init__()
        self.grad_norm = self.variance = None

    def forward(self, x):
        self.variance = float(np.var(x, axis=0).mean())
        return x

    def backward(self, dy):
        self.grad_norm = float(np.linalg.norm(dy))
        return dy

    def __repr__(self):
        return "Tap()"


ARCHITECTURES = ("plain", "plain + BN", "residual + BN", "residual + BN, zero gamma", "SkipInit")


def deep_net(architecture, depth, *, width=64, seed=0, taps=False):
    """A digits classifier with ``depth`` hidden Linear layers of ``width`` units (ReLU, He gain):

    - "plain": ``Linear -> ReLU`` repeated (biases, no normalization);
    - "plain + BN": ``Linear -> BN -> ReLU`` repeated;
    - "residual + BN": a stem ``Linear -> BN -> ReLU``, then ``(depth - 1) // 2`` blocks
      ``ReLU(x + BN(Linear(ReLU(BN(Linear(x))))))`` (post-activation, He et al. 2016);
    - "residual + BN, zero gamma": the same with each block's last BN gamma set to 0 (Goyal et al. 2017);
    - "SkipInit": the same blocks without BN, the branch scaled by a learnable alpha = 0 (De & Smith 2020).

    The residual ones need an odd ``depth`` (a stem and two layers per block). ``taps=True`` puts a
    :class:`Tap` on the stream after the first hidden layer (the stem) and after every later plain
    layer or residual block, so the last one is in front of the output layer."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {architecture!r}")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth: expected a positive int, got {depth!r}")
    tap = (lambda: [Tap()]) if taps else (lambda: [])
    if architecture.startswith("plain"):
        net = mlp([64] + [width] * depth + [10], norm="batch" if architecture == "plain + BN" else None, rng=seed)
        layers = []
        for layer in net.layers:
            layers += (tap() if isinstance(layer, Linear) and layers else []) + [layer]
        return Sequential(*layers)
    if depth % 2 == 0 or depth < 3:
        raise ValueError(
            f"depth: a residual net has a stem and two layers per block, so an odd depth >= 3, got {depth}"
        )
    rng = np.random.default_rng(seed)
    gain = np.sqrt(2.0)
    bn = architecture != "SkipInit"
    layers = [Linear(64, width, bias=not bn, gain=gain, rng=rng)] + ([BatchNorm(width)] if bn else []) + [ReLU()]
    for _ in range((depth - 1) // 2):
        if bn:
            last = BatchNorm(width)
            if architecture.endswith("zero gamma"):
                last.gamma[:] = 0.0
            body = [Linear(width, width, bias=False, gain=gain, rng=rng), BatchNorm(width), ReLU()]
            body += [Linear(width, width, bias=False, gain=gain, rng=rng), last]
        else:
            body = [
                Linear(width, width, gain=gain, rng=rng),
                ReLU(),
                Linear(width, width, gain=gain, rng=rng),
                Scale(0.0),
            ]
        layers += tap() + [Residual(Sequential(*body)), ReLU()]
    layers += tap() + [Linear(width, 10, gain=1.0, rng=rng)]
    return Sequential(*layers)


class Profile(NamedTuple):
    architecture: str
    depth: int
    position: np.ndarray  # hidden Linear layers below each tap (the stream's depth there)
    grad_norm: np.ndarray  # (seeds, taps): ||dL/dh|| on the stream at each tap, at initialization
    variance: np.ndarray  # (seeds, taps): the stream's variance over the batch there, mean over units

    @property
    def ratio(self) -> np.ndarray:
        """Per seed: the gradient norm at the first tap (after hidden layer 1) over that at the last
        (in front of the output layer)."""
        return self.grad_norm[:, 0] / self.grad_norm[:, -1]


@_one_blas_thread
def gradient_profile(architecture, depth, *, seeds=(0, 1, 2), batch_size=64, data=None) -> Profile:
    """The gradient of the loss with respect to the stream (after the first hidden layer and after
    every later plain layer or residual block: the input of the next one, the last tap the output
    layer's), at initialization, on one training-mode batch of digits per seed (the same batch for
    every architecture)."""
    seeds = check_seeds(seeds)
    data = data or load_digits()
    x, y = data.x_train[:batch_size], data.y_train[:batch_size]
    grads, variances = [], []
    for seed in seeds:
        model = deep_net(architecture, depth, seed=seed, taps=True)
        _loss_and_grads(model, x, y)
        taps = [m for m in model.modules() if isinstance(m, Tap)]
        grads.append([m.grad_norm for m in taps])
        variances.append([m.variance for m in taps])
    step = 1 if architecture.startswith("plain") else 2
    position = np.arange(1, depth + 1, step)
    return Profile(architecture, depth, position, np.array(grads), np.array(variances))


@_one_blas_thread
def pre_norm_variance(depth=31, *, seeds=(0, 1, 2), batch_size=64, data=None) -> np.ndarray:
    """The batch variance of each BatchNorm's input (averaged over its units) in the plain batch-norm
    network at initialization, shape (seeds, depth). Each BN's backward divides the gradient by
    ``sqrt(var + eps)``, so a variance below 1 at every layer makes the gradient grow towards the
    input by about ``1 / sqrt(var)`` per layer. For ``Linear -> BN -> ReLU`` with He weights the
    variance is ``2 Var(ReLU(z)) = 1 - 1/pi`` for standard normal z (the batch mean removed),
    hence a growth of ``1 / sqrt(1 - 1/pi) = 1.21`` per layer."""
    seeds = check_seeds(seeds)
    data = data or load_digits()
    x = data.x_train[:batch_size]
    out = []
    for seed in seeds:
        h, variances = x, []
        for layer in deep_net("plain + BN", depth, seed=seed).train().layers:
            if isinstance(layer, BatchNorm):
                variances.append(h.var(axis=0).mean())
            h = layer(h)
        out.append(variances)
    return np.array(out)


PROFILE_GRID = dict(depth=[11, 21, 31, 51], normalization=["none", "batch"], residual=[False, True])


@functools.lru_cache(maxsize=64)
def _profile(depth, normalization, residual):
    arch = {
        ("none", False): "plain",
        ("batch", False): "plain + BN",
        ("batch", True): "residual + BN",
        ("none", True): "SkipInit",
    }[(normalization, residual)]
    return gradient_profile(arch, depth)


@interactive(
    title="Gradient norm along the depth at initialization",
    alt="Gradient norm on the stream at each depth of a network at initialization, log scale",
    labels={"normalization": "normalization", "residual": "residual blocks"},
    **PROFILE_GRID,
)
def gradient_profile_explorer(depth=31, normalization="batch", residual=False):
    """``||dL/dh||`` on the stream at each depth (3 seeds, log scale) for one depth and architecture.
    Without normalization, "residual" means SkipInit (x + alpha F(x), alpha = 0)."""
    profile = _profile(depth, normalization, residual)
    fig, ax = frame(1, figsize=(6.4, 3.4), left=0.12, bottom=0.16)
    for row in profile.grad_norm:
        ax.plot(profile.position, row, "o-", ms=3, lw=1, color=PALETTE[0], alpha=0.8)
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_ylim(1e-2, 1e5)
    ax.set_xlim(0, 52)
    ax.set_xlabel("hidden layers below (0 = the input side)")
    ax.set_ylabel(r"$\|\partial L/\partial h\|$")
    ax.set_title(f"{profile.architecture}, depth {depth}; first/last {np.median(profile.ratio):.3g}", fontsize=10)
    return fig


def gradient_profile_plot(profiles: list):
    """Static version for the chapter: one line per :class:`Profile` (median over seeds, log scale),
    colour by architecture, line style by depth."""
    fig, ax = pyplot().subplots(figsize=(7.5, 3.6), layout="constrained")
    styles = {11: ":", 31: "--", 51: "-"}
    colours = dict(zip(ARCHITECTURES, [PALETTE[7], PALETTE[1], PALETTE[0], PALETTE[2], PALETTE[3]]))
    for p in profiles:
        ax.plot(
            p.position,
            np.median(p.grad_norm, axis=0),
            ls=styles.get(p.depth, "-"),
            color=colours[p.architecture],
            label=f"{p.architecture}, depth {p.depth}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("hidden layers below (0 = the input side)")
    ax.set_ylabel(rf"$\|\partial L/\partial h\|$, median of {len(profiles[0].grad_norm)} seeds")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return fig


class DepthRuns(NamedTuple):
    architectures: tuple
    depth: int
    lr: float
    train_loss: np.ndarray  # (architectures, seeds, epochs); NaN after a divergence
    test_accuracy: np.ndarray  # (architectures, seeds, epochs)


@_one_blas_thread
def depth_training(
    architectures=ARCHITECTURES, *, depth=31, lr=0.02, seeds=(0, 1, 2), epochs=8, batch_size=64, data=None
):
    """Train every architecture of :func:`deep_net` at one depth with the same SGD (momentum 0.9,
    ``lr``), seeds and batch order (:func:`bnlib.train.fit`)."""
    from bnlib.train import fit

    seeds, epochs = check_seeds(seeds), check_count(epochs, "epochs")
    data = data or load_digits()
    loss = np.full((len(architectures), len(seeds), epochs), np.nan)
    acc = np.full_like(loss, np.nan)
    for i, arch in enumerate(architectures):
        for j, seed in enumerate(seeds):
            h = fit(deep_net(arch, depth, seed=seed), data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
            loss[i, j, : len(h.train_loss)] = h.train_loss
            acc[i, j, : len(h.test_accuracy)] = h.test_accuracy
    return DepthRuns(tuple(architectures), depth, float(lr), loss, acc)


def depth_training_plot(runs: DepthRuns):
    """Training loss and test accuracy per epoch, one colour per architecture, every seed drawn."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.3), layout="constrained")
    colours = dict(zip(ARCHITECTURES, [PALETTE[7], PALETTE[1], PALETTE[0], PALETTE[2], PALETTE[3]]))
    epochs = np.arange(1, runs.train_loss.shape[2] + 1)
    for arch, loss, acc in zip(runs.architectures, runs.train_loss, runs.test_accuracy):
        for k, (l_seed, a_seed) in enumerate(zip(loss, acc)):
            ax1.plot(epochs, l_seed, color=colours[arch], lw=1.2, label=arch if k == 0 else None)
            ax2.plot(epochs, 100 * a_seed, color=colours[arch], lw=1.2)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax2.set_xlabel("epoch")
    ax1.set_ylabel("training loss (train mode)")
    ax2.set_ylabel("test accuracy (%)")
    ax1.set_title(f"depth {runs.depth}, lr {runs.lr:g}, {runs.train_loss.shape[1]} seeds each", fontsize=10)
    ax1.legend(fontsize=7)
    return fig


# --- Sequences: padding and per-token statistics ----------------------------------------------------


def padded_batch(lengths, *, channels=8, max_length=None, mean=1.0, std=2.0, seed=0):
    """A batch of sequences of the given ``lengths``, tokens ``~ N(mean, std^2)`` per channel, padded
    with zeros to ``max_length`` (default: the longest). Returns ``(x, mask)``: ``x`` of shape
    (N, T, channels) and ``mask`` (N, T), True on real tokens. The same ``seed`` gives the same real
    tokens whatever ``max_length``."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths < 1):
        raise ValueError(f"lengths: expected a list of positive lengths, got {lengths}")
    t = int(max_length or lengths.max())
    if t < lengths.max():
        raise ValueError(f"max_length: {t} is shorter than the longest sequence ({lengths.max()})")
    rng = np.random.default_rng(seed)
    mask = np.arange(t)[None, :] < lengths[:, None]
    # the real tokens are drawn for the longest sequence only, so a longer max_length pads the same tokens
    tokens = rng.normal(mean, std, size=(len(lengths), lengths.max(), channels))
    x = np.zeros((len(lengths), t, channels))
    x[:, : lengths.max()] = tokens
    return x * mask[..., None], mask


def batch_norm_tokens(x, mask=None, eps=1e-5):
    """Batch norm over every (sequence, position) of (N, T, C) tokens, per channel, as
    ``nn.BatchNorm1d`` applied to (N, C, T) computes it; with ``mask`` the statistics come from the
    real tokens only (the "masked batch norm" a padded batch would need)."""
    if mask is None:
        mean, var = F.moments(x, (0, 1))
    else:
        real = x[mask]
        mean, var = real.mean(axis=0), real.var(axis=0)
    return (x - mean) / np.sqrt(var + eps)


class Pollution(NamedTuple):
    pad_fraction: np.ndarray  # share of the batch's positions that are padding
    batch_norm_error: np.ndarray  # max |BN(padded) - BN(real tokens only)| on real tokens
    predicted_mean: np.ndarray  # the padded batch's mean predicted from the real tokens': (1 - f) m
    measured_mean: np.ndarray  # its measured mean (both averaged over channels)
    predicted_var: np.ndarray  # its variance predicted: (1 - f) (s^2 + f m^2), s^2 the real tokens'
    measured_var: np.ndarray
    layer_norm_error: np.ndarray  # the same for LayerNorm per token (0: padding never enters)
    rms_norm_error: np.ndarray  # and RMSNorm per token


def padding_pollution(
    max_lengths=(16, 24, 32, 48, 64, 128), *, lengths=(16, 12, 10, 8), mean=1.0, std=2.0, channels=8, seed=0
):
    """The same four sequences padded to longer and longer ``max_lengths``: how far batch norm's output
    on the real tokens moves from its masked value; the padded batch's mean and variance against their
    prediction from the real tokens' mean m and variance s^2 with a share f of zeros, ``(1 - f) m``
    and ``(1 - f)(s^2 + f m^2)``; and the same errors for per-token LayerNorm and RMSNorm (which see
    each token alone, so the padding cannot reach them)."""
    ln, rms = LayerNorm(channels, elementwise_affine=False), RMSNorm(channels, elementwise_affine=False)
    out = {k: [] for k in Pollution._fields}
    for t in max_lengths:
        x, mask = padded_batch(lengths, channels=channels, max_length=t, mean=mean, std=std, seed=seed)
        f = 1 - mask.mean()
        out["pad_fraction"].append(f)
        reference = batch_norm_tokens(x, mask)
        out["batch_norm_error"].append(np.abs(batch_norm_tokens(x) - reference)[mask].max())
        m, v = x[mask].mean(axis=0), x[mask].var(axis=0)
        out["predicted_mean"].append(((1 - f) * m).mean())
        out["measured_mean"].append(x.mean(axis=(0, 1)).mean())
        out["predicted_var"].append(((1 - f) * (v + f * m**2)).mean())
        out["measured_var"].append(x.var(axis=(0, 1)).mean())
        short = x[:, : max(lengths)]  # the same real tokens with the least padding
        flat = lambda layer, z: layer(z.reshape(-1, channels)).reshape(z.shape)  # noqa: E731
        for key, layer in (("layer_norm_error", ln), ("rms_norm_error", rms)):
            long_out = flat(layer, x)[:, : max(lengths)]
            out[key].append(np.abs(long_out - flat(layer, short))[mask[:, : max(lengths)]].max())
    return Pollution(**{k: np.array(v) for k, v in out.items()})


def pollution_plot(p: Pollution):
    """Left: the padded batch's mean against (1 - f) m. Right: the error on real tokens against the
    padding fraction, for batch norm and for per-token LayerNorm and RMSNorm (exactly 0)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    ax1.plot(p.pad_fraction, p.predicted_mean, "-", color="0.5", label=r"$(1-f)\,m$")
    ax1.plot(p.pad_fraction, p.measured_mean, "o", color=PALETTE[0], label="measured")
    ax1.set_xlabel("padding fraction f")
    ax1.set_ylabel("batch mean (channel average)")
    ax1.legend(fontsize=8)
    ax2.plot(p.pad_fraction, p.batch_norm_error, "o-", color=PALETTE[0], label="batch norm over (N, T)")
    for key, colour, marker, label in (
        ("layer_norm_error", PALETTE[1], "s", "layer norm, per token"),
        ("rms_norm_error", PALETTE[2], "x", "RMSNorm, per token"),
    ):
        ax2.plot(p.pad_fraction, getattr(p, key), marker + "--", ms=6, color=colour, label=label)
    ax2.set_xlabel("padding fraction f")
    ax2.set_ylabel("largest change on real tokens")
    ax2.legend(fontsize=8)
    return fig


def rms_norm_torch_parity(shape=(8, 16), seed=0):
    """Largest difference, in float64, between ``bnlib.RMSNorm`` and ``torch.nn.RMSNorm`` on random
    input with a random weight: forward, input gradient and weight gradient (upstream gradient random)."""
    import torch

    rng = np.random.default_rng(seed)
    x, dy, w = rng.normal(size=shape), rng.normal(size=shape), rng.normal(1.0, 0.3, size=shape[-1])
    ours = RMSNorm(shape[-1], eps=1e-6)
    ours.gamma = w.copy()
    y = ours(x)
    dx = ours.backward(dy)
    theirs = torch.nn.RMSNorm(shape[-1], eps=1e-6, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(w))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))
    return {
        "forward": float(np.abs(y - yt.detach().numpy()).max()),
        "input gradient": float(np.abs(dx - xt.grad.numpy()).max()),
        "weight gradient": float(np.abs(ours.dgamma - theirs.weight.grad.numpy()).max()),
    }
