"""Chapter 7 (training): the chapters' MLP, training sweeps over settings and seeds, injected
covariate shift, and Santurkar et al.'s loss-landscape probes.
"""

from __future__ import annotations

import copy
import functools
from typing import NamedTuple

import numpy as np

from bnlib import SGD, BatchNorm, Module, Sequential, SoftmaxCrossEntropy, mlp
from bnlib.data import batches, load_digits
from bnlib.train import fit

from .explore import interactive
from .style import ARM_COLOURS, PALETTE, frame, pyplot, setting_label


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

    Returns a list of dicts: the setting, and per seed the :class:`History`."""
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
    small change means the gradient is a good guide for a step of that size). Each probe runs on a
    copy of the model, so training itself is not disturbed.
    """
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


def accuracy_vs_setting(runs, key, *, arms="norm", xlabel=None, logx=False):
    """Final test accuracy (mean, and min-max over seeds as a band) against ``key``, one line per arm."""
    plt = pyplot()
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r, colour in zip(runs, ARM_COLOURS):
        curves = [h.train_loss for h in r["histories"]]
        length = min(len(c) for c in curves)
        if length == 0:
            ax.plot([], [], color=colour, label=setting_label(r["setting"], label_keys) + " (diverged)")
            continue
        c = np.array([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.semilogy(epochs, c.mean(axis=0), "o-", color=colour, label=setting_label(r["setting"], label_keys))
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


def smoothness_plot(results: dict):
    """Loss range and gradient change along the gradient direction over training, per arm."""
    plt = pyplot()
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
