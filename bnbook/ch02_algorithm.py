"""Chapter 2 (the algorithm): the forward pass step by step, its invariances, and float32 variance."""

from __future__ import annotations

import numpy as np

from bnlib import functional as F

from .explore import interactive
from .style import PALETTE, frame, pyplot


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


def forward_steps(x, gamma, beta, eps=1e-5):
    """The forward pass stage by stage on a small batch (N, C): one panel per stage, one colour per feature."""
    plt = pyplot()
    mean, var = F.moments(x, (0,))
    centered = x - mean
    xhat = centered / np.sqrt(var + eps)
    y = xhat * gamma + beta
    stages = [
        ("input x", x),
        ("x - mean", centered),
        ("x-hat = (x - mean) / sqrt(var + eps)", xhat),
        ("y = gamma x-hat + beta", y),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(10, 3), sharey=False)
    for ax, (title, values) in zip(axes, stages):
        for j in range(x.shape[1]):
            ax.plot(
                np.full(x.shape[0], j) + np.linspace(-0.15, 0.15, x.shape[0]),
                values[:, j],
                "o",
                color=PALETTE[j],
                label=f"feature {j + 1}",
            )
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
    xhat = np.random.default_rng(0).standard_normal(5000)
    z = gamma * xhat + beta
    s = 0.5 * (1 + np.tanh(0.5 * z))
    r2 = linear_fit_r2(z, s)
    fig, ax = frame(figsize=(6.4, 3.2))
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for key, label, colour in (
        ("one_pass", "one pass: E[x^2] - E[x]^2", PALETTE[1]),
        ("two_pass", "two pass (numpy, float32 mean)", PALETTE[4]),
        ("bnlib", "bnlib: corrected two pass (0 drawn at 1e-9)", PALETTE[0]),
    ):
        ax.loglog(ratios, np.maximum(sweep[key], 1e-9), "o-", color=colour, label=label)
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.text(ratios[0], 1.3, "100% error", fontsize=9, color="0.4")
    ax.set_xlabel("mean / standard deviation of the data")
    ax.set_ylabel("relative error of the variance")
    ax.legend(fontsize=9)
    return fig


def scale_commute(scale=2.0):
    """relu(g z) against g relu(z), and tanh(g z) against g tanh(z)."""
    plt = pyplot()
    z = np.linspace(-3, 3, 200)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, (name, act) in zip(axes, [("relu", lambda v: np.maximum(v, 0)), ("tanh", np.tanh)]):
        ax.plot(z, act(scale * z), color=PALETTE[0], lw=3, label=f"{name}({scale:g}z)")
        ax.plot(z, scale * act(z), "--", color=PALETTE[1], label=f"{scale:g} {name}(z)")
        ax.set_xlabel("z")
        ax.set_title(name)
        ax.legend(fontsize=9)
    return fig
