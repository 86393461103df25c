"""Chapter 7 (training): the chapters' MLP, training sweeps over settings and seeds, injected
covariate shift, scale invariance (gain versus learning rate), gradient norms against depth at
initialization, and Santurkar et al.'s loss-landscape probes.
"""

from __future__ import annotations

import copy
import functools
from typing import NamedTuple

import numpy as np

from bnlib import SGD, BatchNorm, Linear, Module, Sequential, SoftmaxCrossEntropy, mlp
from bnlib.data import batches, load_digits
from bnlib.train import fit

from .explore import interactive
from .progress import progress_bar
from .style import ARM_COLOURS, PALETTE, frame, pyplot


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


def build_mlp(
    *,
    norm=None,
    depth=4,
    width=64,
    activation="relu",
    gain=None,
    norm_position="before",
    shift_strength=0.0,
    seed=0,
    inputs=64,
    classes=10,
    **norm_kwargs,
):
    """The chapters' MLP; ``shift_strength > 0`` inserts a :class:`CovariateShift` after every norm layer."""
    model = mlp(
        [inputs] + [width] * depth + [classes],
        activation=activation,
        norm=norm,
        gain=gain,
        norm_position=norm_position,
        rng=seed,
        **norm_kwargs,
    )
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

    Returns a list of dicts: the setting, and per seed the :class:`History`. ``progress(done, total)``
    is called after each run; by default, a progress bar in Jupyter, nothing elsewhere."""
    data = data or load_digits()
    out = []
    total = len(settings) * len(seeds)
    progress = progress or progress_bar(f"Training {total} networks", total)
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


def largest_stable_lr(runs, key="lr", threshold=0.8):
    """The largest learning rate at which every seed finished with test accuracy above ``threshold``.

    80%: far above chance (10%) and far below where these networks end when they train (93-97%), so
    a run that barely learns (ending near 50%) counts as unstable, and no seed sits at the boundary
    where a different rounding (another CPU's kernels) could flip the verdict.
    """
    stable = [r["setting"][key] for r in runs if final_accuracy(r).min() > threshold]
    return max(stable) if stable else None


class Smoothness(NamedTuple):
    steps: list  # training steps at which the landscape was probed
    loss_range: np.ndarray  # (probes,) max - min of the loss along the gradient direction
    gradient_change: np.ndarray  # (probes,) max ||grad(w - eta g) - grad(w)|| along the same steps
    loss: np.ndarray  # (probes,) loss at the probe point
    gradient_norm: np.ndarray  # (probes,) ||grad(w)|| at the probe point
    effective_smoothness: np.ndarray  # (probes,) max ||grad(w - s) - grad(w)|| / ||s|| over the steps s


def smoothness_probe(
    *,
    norm=None,
    lr=0.05,
    etas=(0.25, 0.5, 1.0, 2.0, 4.0),
    probe_every=20,
    steps=200,
    batch_size=64,
    seed=0,
    depth=4,
    activation="relu",
    data=None,
):
    """Santurkar et al.'s landscape measurements, at small scale.

    Train with SGD (no momentum) and, every ``probe_every`` steps, take the current batch's gradient g
    and move the weights to ``w - eta * lr * g`` for each eta: record the spread of the loss over those
    points ("loss landscape") and the largest change of the gradient ("gradient predictiveness": a
    small change means the gradient is a good guide for a step of that size). The raw gradient change
    grows with the gradient's own norm (a longer step for the same eta), so each probe also records
    Santurkar et al.'s "effective beta-smoothness": the gradient change divided by the length of the
    step, ``max ||g(w - s) - g(w)|| / ||s||`` with ``s = eta * lr * g``, which compares arms whose
    gradient norms differ. Each probe runs on a copy of the model, so training is not disturbed.
    """
    data = data or load_digits()
    model = build_mlp(norm=norm, depth=depth, activation=activation, seed=seed)
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    probes, ranges, changes, losses, norms, smooth = [], [], [], [], [], []

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
                moved_losses, moved_changes, ratios = [loss0], [0.0], []
                g0_norm = float(np.linalg.norm(g0))
                for eta in etas:
                    trial = copy.deepcopy(base)
                    for mod, name in trial.parameters():
                        getattr(mod, name)[...] -= eta * lr * getattr(mod, "d" + name)
                    loss_t, g_t = loss_and_grad(trial, xb, yb)
                    moved_losses.append(loss_t)
                    moved_changes.append(float(np.linalg.norm(g_t - g0)))
                    ratios.append(moved_changes[-1] / (eta * lr * g0_norm))
                probes.append(step)
                ranges.append(max(moved_losses) - min(moved_losses))
                changes.append(max(moved_changes))
                losses.append(loss0)
                norms.append(g0_norm)
                smooth.append(max(ratios))
            model.train()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()
            step += 1
            if step >= steps:
                break
    return Smoothness(probes, np.array(ranges), np.array(changes), np.array(losses), np.array(norms), np.array(smooth))


def describe_setting(setting: dict) -> str:
    """A short label for a run setting, e.g. "batch norm, shift 0.5, lr 0.1"."""
    parts = ["batch norm" if setting.get("norm") == "batch" else (setting.get("norm") or "no norm")]
    labels = {
        "shift_strength": "shift ",
        "gain": "gain ",
        "depth": "depth ",
        "norm_position": "",
        "activation": "",
        "lr": "lr ",
    }
    for key, label in labels.items():
        value = setting.get(key)
        if value is not None:
            parts.append(label + (f"{value:g}" if isinstance(value, (int, float)) else str(value)))
    return ", ".join(parts)


def _arm_name(arms, arm):
    if arms == "norm":
        return {None: "no norm", "batch": "batch norm"}.get(arm, f"{arm} norm")
    return f"{arms} {arm if arm is not None else 'none'}"


def accuracy_vs_setting(runs, key, *, arms="norm", xlabel=None, logx=False, top_axis=None):
    """Final test accuracy (mean, and min-max over seeds as a band) against ``key``, one line per arm;
    the x ticks are the values run. ``top_axis=(label, f, f_inverse)`` adds a second x axis on top
    that shows ``f`` of each tick value (both functions must be monotonic)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    groups, ticks = {}, set()
    for r in runs:
        groups.setdefault(r["setting"].get(arms), []).append(r)
        ticks.add(float(r["setting"][key]))
    for (arm, rows), colour in zip(groups.items(), ARM_COLOURS):
        rows = sorted(rows, key=lambda r: r["setting"][key])
        x = np.array([r["setting"][key] for r in rows], dtype=float)
        accs = np.array([final_accuracy(r) for r in rows]) * 100
        ax.plot(x, accs.mean(axis=1), "o-", color=colour, label=_arm_name(arms, arm))
        ax.fill_between(x, accs.min(axis=1), accs.max(axis=1), color=colour, alpha=0.2)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xticks(sorted(ticks))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    if top_axis is not None:
        label, f, f_inverse = top_axis
        top = ax.secondary_xaxis("top", functions=(f, f_inverse))
        top.set_xticks([f(t) for t in sorted(ticks)])
        top.xaxis.set_minor_locator(plt.NullLocator())
        top.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.2g}"))
        top.set_xlabel(label, fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel or key)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=9, title="band: min-max of 3 seeds", title_fontsize=8)
    return fig


def _short_label(setting):
    return describe_setting({k: v for k, v in setting.items() if k != "lr"})


def loss_curves(runs, *, title=None):
    """Training loss per epoch (mean over seeds, band: min to max), one line per run setting,
    labelled by :func:`describe_setting` without the learning rate."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r, colour in zip(runs, ARM_COLOURS):
        curves = [h.train_loss for h in r["histories"]]
        length = min(len(c) for c in curves)
        if length == 0:
            ax.plot([], [], color=colour, label=_short_label(r["setting"]) + " (diverged)")
            continue
        c = np.array([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.semilogy(epochs, c.mean(axis=0), "o-", color=colour, label=_short_label(r["setting"]))
        ax.fill_between(epochs, c.min(axis=0), c.max(axis=0), color=colour, alpha=0.2)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (log scale)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


@functools.lru_cache(maxsize=1)
def _curve_grid():
    """Every run behind :func:`training_curves`, trained once (about 10 s) and kept."""
    grid = TRAINING_CURVES_GRID
    settings = [
        dict(lr=lr, norm=None if norm == "none" else norm, depth=depth)
        for lr in grid["lr"]
        for norm in grid["norm"]
        for depth in grid["depth"]
    ]
    return {
        (r["setting"]["lr"], r["setting"]["norm"] or "none", r["setting"]["depth"]): r
        for r in train_runs(settings, seeds=(0, 1, 2), epochs=6)
    }


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
    fig, (ax1, ax2) = frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
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
    ax1.yaxis.set_minor_locator(pyplot().NullLocator())
    ax1.yaxis.set_major_formatter(pyplot().FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.set_ylim(0, 100)
    ax1.set_xlabel("epoch")
    ax2.set_xlabel("epoch")
    ax1.set_title(f"training loss, lr {lr:g}, depth {depth}", fontsize=10)
    ax2.set_title("test accuracy (%), x: diverged", fontsize=10)
    ax2.legend(fontsize=8, loc="lower right")
    return fig


def smoothness_summary(probes: dict) -> dict:
    """Per arm, the median over each seed's probes of loss_range, gradient_change, gradient_norm and
    effective_smoothness: ``{arm: {field: (seeds,) array}}``."""
    fields = ("loss_range", "gradient_change", "gradient_norm", "effective_smoothness")
    return {
        arm: {f: np.array([np.median(getattr(p, f)) for p in runs]) for f in fields} for arm, runs in probes.items()
    }


def smoothness_plot(results: dict):
    """Loss range along the gradient direction (left) and effective smoothness, the gradient change
    per unit step length (right), over training, per arm (mean of seeds, band: min to max)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for (arm, probes), colour in zip(results.items(), (PALETTE[7], PALETTE[0])):
        steps = probes[0].steps
        ranges = np.array([p.loss_range for p in probes])
        smooth = np.array([p.effective_smoothness for p in probes])
        for ax, values in ((ax1, ranges), (ax2, smooth)):
            ax.semilogy(steps, values.mean(axis=0), "o-", color=colour, label=arm)
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2)
    ax1.set_title("loss variation along the gradient", fontsize=10)
    ax2.set_title("gradient change per unit step", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("training step")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.yaxis.set_major_locator(plt.LogLocator(base=10, subs=(1, 2, 5)))
    ax2.yaxis.set_minor_locator(plt.NullLocator())
    ax1.set_ylabel("max - min loss")
    ax2.set_ylabel("max ||g(w - s) - g(w)|| / ||s||")
    ax1.legend(fontsize=9)
    return fig


def instability(run) -> dict:
    """How a run's seeds failed: ``nan`` (seeds whose loss or weights became non-finite), ``rose``
    (seeds whose training loss went back up, :func:`loss_rose`), ``accuracy`` (final, per seed)."""
    hs = run["histories"]
    return dict(
        nan=sum(h.diverged for h in hs),
        rose=sum(loss_rose(h) for h in hs),
        accuracy=final_accuracy(run),
    )


# --- Scale invariance: the initialization gain is a learning rate in disguise -------------------


def scale_invariant_weights(model) -> list:
    """The ``(module, "weight")`` pairs of the Linear layers whose output goes straight into a
    training-mode BatchNorm: the network's output does not change when such a weight is multiplied
    by c > 0 (up to the BatchNorm's eps), so its gradient scales as 1/c. A Linear with a bias, the
    output layer, and BatchNorm's own gamma and beta are not scale-invariant."""
    layers = list(model.layers)
    return [
        (layer, "weight")
        for layer, after in zip(layers[:-1], layers[1:])
        if isinstance(layer, Linear) and getattr(layer, "bias", None) is None and isinstance(after, BatchNorm)
    ]


def fit_two_rates(model, data, *, epochs=5, lr=0.05, weight_lr=None, momentum=0.9, batch_size=64, seed=0):
    """:func:`bnlib.train.fit` (same batches, same SGD with momentum, no weight decay) with one
    difference: the scale-invariant weights (:func:`scale_invariant_weights`) learn at ``weight_lr``
    and every other parameter (gamma, beta, the output layer) at ``lr``. ``weight_lr=None`` means
    ``lr``, and then the run is identical to ``fit``. Returns a :class:`bnlib.train.History`."""
    invariant = scale_invariant_weights(model)
    keys = {(id(m), n) for m, n in invariant}
    rest = [(m, n) for m, n in model.parameters() if (id(m), n) not in keys]
    optimizers = [
        SGD(invariant, lr=lr if weight_lr is None else weight_lr, momentum=momentum),
        SGD(rest, lr=lr, momentum=momentum),
    ]
    return fit(model, data, epochs=epochs, batch_size=batch_size, seed=seed, optimizers=optimizers)


class GainEquivalence(NamedTuple):
    gain: float
    lr: float  # the learning rate of every parameter in the run at this gain
    equivalent_weight_lr: float  # lr / gain**2: the scale-invariant weights' rate at gain 1
    accuracy: np.ndarray  # (seeds,) final test accuracy, gain g at lr
    equivalent_accuracy: np.ndarray  # (seeds,) gain 1, weights at lr / g**2, the rest at lr
    max_train_loss_difference: float  # largest |difference| of the per-epoch (train-mode) losses
    final_test_loss_difference: float  # largest |difference| of the final eval-mode test losses


def gain_equivalence(
    gains=(0.25, 4.0), *, lr=0.05, seeds=(0, 1, 2), epochs=5, depth=4, eps=1e-5, scale_eps=True, data=None
):
    """For each gain g: train the batch-norm MLP at gain g with every parameter at ``lr``, and at gain
    1 with the scale-invariant weights at ``lr / g**2`` and the rest at ``lr``. Scale invariance says
    the two runs compute the same function at every step: W_g = g W_1, so the gradient is g^-1 times
    W_1's and the step ``lr * grad`` is ``g * (lr / g**2) * grad_1``. Only BatchNorm's eps breaks the
    invariance (sqrt(g^2 var + eps) is not g sqrt(var + eps)); ``scale_eps=True`` gives the gain-g
    network eps * g**2, which restores it exactly, so the training-mode losses agree to rounding. In
    eval mode the running variance starts at 1 in both networks, not at g**2 and 1, so eval outputs
    differ until that start value has decayed (0.9**steps with momentum 0.1)."""
    data = data or load_digits()
    out = []
    for g in gains:
        accs, eq_accs, diff, test_diff = [], [], 0.0, 0.0
        eps_g = eps * g**2 if scale_eps else eps
        for seed in seeds:
            model_g = build_mlp(norm="batch", gain=g, depth=depth, seed=seed, eps=eps_g)
            h = fit_two_rates(model_g, data, epochs=epochs, lr=lr, seed=seed)
            model1 = build_mlp(norm="batch", gain=1.0, depth=depth, seed=seed, eps=eps)
            h1 = fit_two_rates(model1, data, epochs=epochs, lr=lr, weight_lr=lr / g**2, seed=seed)
            accs.append(h.test_accuracy[-1])
            eq_accs.append(h1.test_accuracy[-1])
            diff = max(diff, float(np.max(np.abs(np.subtract(h.train_loss, h1.train_loss)))))
            test_diff = max(test_diff, abs(h.test_loss[-1] - h1.test_loss[-1]))
        out.append(GainEquivalence(float(g), lr, lr / g**2, np.array(accs), np.array(eq_accs), diff, test_diff))
    return out


# --- Depth: gradient norms at initialization ----------------------------------------------------


def gradient_norm_ratio(*, depth, norm="batch", seed=0, batch_size=64, activation="relu", data=None) -> float:
    """||dL/dW|| of the first hidden Linear layer divided by that of the last hidden Linear layer,
    at initialization (He gain), on one training-mode batch drawn from ``seed``. Every hidden weight
    matrix has the same shape and initial norm here (64 inputs, width 64), so the ratio is also the
    ratio of the two layers' relative first SGD steps. Yang et al. (2019) predict exponential growth
    with depth for batch-normalized networks without skip connections."""
    data = data or load_digits()
    model = build_mlp(norm=norm, depth=depth, activation=activation, seed=seed)
    xb, yb = next(iter(batches(data.x_train, data.y_train, batch_size, rng=np.random.default_rng(seed))))
    loss_fn = SoftmaxCrossEntropy()
    model.train()
    loss_fn(model(xb), yb)
    model.backward(loss_fn.backward())
    hidden = [layer for layer in model.layers if isinstance(layer, Linear)][:-1]
    return float(np.linalg.norm(hidden[0].dweight) / np.linalg.norm(hidden[-1].dweight))


class RatioTrace(NamedTuple):
    steps: tuple  # training steps at which the ratio was measured (0: initialization)
    ratio: np.ndarray  # (steps,) first/last hidden-layer gradient-norm ratio on that step's batch
    first_weight_growth: float  # ||W_first|| at the last step / at initialization
    last_weight_growth: float  # the same for the last hidden layer


def gradient_ratio_trace(*, depth=20, steps=(0, 1, 5, 20, 100), lr=0.05, momentum=0.9, seed=0, data=None):
    """The ratio of :func:`gradient_norm_ratio` measured during training (SGD with momentum, batch 64,
    batches drawn from ``seed`` as in ``fit``), and how much the first and last hidden weight
    matrices' norms have grown by the last step. Under scale invariance a weight's effective
    learning rate falls as 1 / ||W||^2."""
    data = data or load_digits()
    model = build_mlp(norm="batch", depth=depth, seed=seed)
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    hidden = [layer for layer in model.layers if isinstance(layer, Linear)][:-1]
    start = [float(np.linalg.norm(hidden[i].weight)) for i in (0, -1)]
    rng, ratios, step = np.random.default_rng(seed), [], 0
    while step <= max(steps):
        for xb, yb in batches(data.x_train, data.y_train, 64, rng=rng):
            model.train()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            if step in steps:
                ratios.append(float(np.linalg.norm(hidden[0].dweight) / np.linalg.norm(hidden[-1].dweight)))
            if step == max(steps):
                break
            opt.step()
            step += 1
        else:
            continue
        break
    growth = [float(np.linalg.norm(hidden[i].weight)) / s for i, s in zip((0, -1), start)]
    return RatioTrace(tuple(steps), np.array(ratios), growth[0], growth[1])


def loss_rose(history, factor=1.5) -> bool:
    """True when the training loss of a later epoch exceeds ``factor`` times its lowest earlier
    value (the loss went back up: oscillation or blow-up), or the run diverged (NaN/inf)."""
    if history.diverged:
        return True
    losses = np.asarray(history.train_loss)
    return bool(len(losses) > 1 and np.any(losses[1:] > factor * np.minimum.accumulate(losses)[:-1]))


def gradient_ratio_table(depths=(10, 20, 30, 50), seeds=(0, 1, 2), data=None) -> dict:
    """``{(norm, depth): array of ratios per seed}`` for norm in (None, "batch")."""
    data = data or load_digits()
    return {
        (norm, d): np.array([gradient_norm_ratio(depth=d, norm=norm, seed=s, data=data) for s in seeds])
        for norm in (None, "batch")
        for d in depths
    }


def per_layer_growth(table: dict, norm="batch") -> float:
    """The geometric growth per layer implied by the deepest entry: ratio ** (1 / (depth - 1)),
    from the seeds' geometric mean."""
    depth = max(d for n, d in table if n == norm)
    return float(np.exp(np.log(table[(norm, depth)]).mean() / (depth - 1)))


def gradient_ratio_plot(table: dict):
    """First/last hidden-layer gradient-norm ratio at initialization against depth (log y), per arm."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for norm, colour, label in ((None, PALETTE[7], "no norm"), ("batch", PALETTE[0], "batch norm")):
        depths = sorted(d for n, d in table if n == norm)
        values = np.array([table[(norm, d)] for d in depths])
        gmean = np.exp(np.log(values).mean(axis=1))
        ax.semilogy(depths, gmean, "o-", color=colour, label=label)
        ax.fill_between(depths, values.min(axis=1), values.max(axis=1), color=colour, alpha=0.2)
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(depths)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("||grad W first|| / ||grad W last||")
    ax.legend(fontsize=9)
    return fig


def equivalent_lr_axis(lr=0.05):
    """``top_axis`` for :func:`accuracy_vs_setting` on a gain sweep at learning rate ``lr``: by scale
    invariance, gain g at ``lr`` is gain 1 with the hidden (batch-normalized) weights at lr / g**2."""

    def to_lr(g):
        return lr / np.maximum(np.asarray(g, dtype=float), 1e-12) ** 2

    def to_gain(rate):
        return np.sqrt(lr / np.maximum(np.asarray(rate, dtype=float), 1e-12))

    return ("batch norm: same as gain 1 with hidden-weight lr", to_lr, to_gain)
