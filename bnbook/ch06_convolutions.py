"""Chapter 6 (convolutions): which values share statistics, a bias before batch norm, folding errors, per-channel spread."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bnlib import BatchNorm, Linear, mlp

from .style import PALETTE, pyplot


def normalization_groups(n=3, c=6, height=3, width=3, groups=2):
    """Which elements of an (N, C, H, W) activation share one mean and variance, for four normalizations.

    One block per sample (rows) and channel (columns); inside a block, its ``height`` x ``width``
    spatial positions. One colour = one set of statistics: batch norm pools a channel over samples
    and positions, instance norm only over one sample's positions."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    layouts = {
        "batch norm:\none set per channel": ci,
        "layer norm:\none set per sample": ni,
        "instance norm: one set per\nsample and channel": ni * c + ci,
        f"group norm ({groups} groups): one set\nper sample and channel group": ni * groups + ci // (c // groups),
    }
    gap = 1  # one blank row/column of pixels between blocks
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 5.2))
    colours = ListedColormap(list(PALETTE[:7]) + ["white"])
    for ax, (title, ids) in zip(axes.flat, layouts.items()):
        image = np.full((n * (height + gap) - gap, c * (width + gap) - gap), 7)
        for i in range(n):
            for j in range(c):
                rows = slice(i * (height + gap), i * (height + gap) + height)
                cols = slice(j * (width + gap), j * (width + gap) + width)
                image[rows, cols] = ids[i, j] % 7
        ax.imshow(image, cmap=colours, vmin=0, vmax=7, interpolation="nearest")
        for i in range(n):  # the number of the set of statistics, in the middle of each block
            for j in range(c):
                ax.text(
                    j * (width + gap) + (width - 1) / 2,
                    i * (height + gap) + (height - 1) / 2,
                    str(ids[i, j] + 1),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85),
                )
        # thin lines between the spatial positions of every block
        for i in range(n):
            for j in range(c):
                y0, x0 = i * (height + gap) - 0.5, j * (width + gap) - 0.5
                for k in range(1, height):
                    ax.plot([x0, x0 + width], [y0 + k, y0 + k], color="white", lw=0.6)
                for k in range(1, width):
                    ax.plot([x0 + k, x0 + k], [y0, y0 + height], color="white", lw=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([j * (width + gap) + (width - 1) / 2 for j in range(c)], [f"C{j + 1}" for j in range(c)])
        ax.set_yticks([i * (height + gap) + (height - 1) / 2 for i in range(n)], [f"N{i + 1}" for i in range(n)])
        ax.tick_params(length=0, labelsize=9)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.supxlabel(f"channel (each block: its {height} x {width} spatial positions H x W)", fontsize=10)
    fig.supylabel("sample in the batch", fontsize=10)
    return fig


def folding_errors(rows: dict):
    """Largest |folded - original| output difference per case, on a log scale (eval vs train mode)."""
    plt = pyplot()
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


def per_channel_spread(spreads: dict):
    """Per-channel output standard deviation for several ways of normalizing (1 is right), log scale."""
    plt = pyplot()
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


class BiasBeforeBatchNorm(NamedTuple):
    max_output_difference: float  # train mode, Linear with a bias vs the same Linear without it
    max_bias_gradient: float  # |dL/db| of that bias, through batch norm
    typical_weight_gradient: float  # median |dL/dW| of the same layer, for scale
    wasted_parameters: int  # the bias's entries


def bias_before_batch_norm(*, batch_size=32, in_features=16, out_features=8, seed=0) -> BiasBeforeBatchNorm:
    """A Linear layer with a random nonzero bias, followed by batch norm in training mode, against the same
    layer without the bias: the batch mean subtraction removes the bias exactly, so the outputs agree
    to rounding and the bias's gradient (the sum over the batch of BN's input gradient) is 0 to rounding."""
    rng = np.random.default_rng(seed)
    with_bias = Linear(in_features, out_features, rng=seed)
    with_bias.bias = rng.normal(0.0, 1.0, out_features)
    without = Linear(in_features, out_features, bias=False, rng=seed)
    bn_a, bn_b = BatchNorm(out_features), BatchNorm(out_features)
    bn_a.gamma = bn_b.gamma = rng.uniform(0.5, 2.0, out_features)
    bn_a.beta = bn_b.beta = rng.normal(0.0, 1.0, out_features)
    x = rng.normal(1.0, 2.0, size=(batch_size, in_features))
    y_a, y_b = bn_a(with_bias(x)), bn_b(without(x))
    dy = rng.normal(size=y_a.shape)  # the gradient of some loss with respect to the output
    with_bias.backward(bn_a.backward(dy))
    return BiasBeforeBatchNorm(
        float(np.abs(y_a - y_b).max()),
        float(np.abs(with_bias.dbias).max()),
        float(np.median(np.abs(with_bias.dweight))),
        int(with_bias.bias.size),
    )


def bias_training_comparison(*, seeds=(0, 1, 2), epochs=3, lr=0.1, batch_size=32, width=64, depth=2):
    """Train the same seeded MLP (Linear -> BN -> ReLU blocks) with and without the hidden biases.

    The biases start at random nonzero values (as torch.nn.Linear's do). Returns, per seed, the test
    accuracies of both arms, the difference of their final (eval-mode) test losses, and how far the
    biases moved during training (largest |b_final - b_initial|)."""
    from bnlib.data import load_digits
    from bnlib.train import fit

    data = load_digits()
    out = {"accuracy_with": [], "accuracy_without": [], "final_test_loss_difference": [], "max_bias_change": []}
    for seed in seeds:
        with_bias = mlp([64] + [width] * depth + [10], norm="batch", bias=True, rng=seed)
        without = mlp([64] + [width] * depth + [10], norm="batch", bias=False, rng=seed)
        init_rng = np.random.default_rng(seed + 1000)
        hidden = [m for m in with_bias.layers[:-1] if isinstance(m, Linear)]
        for layer in hidden:
            bound = 1 / np.sqrt(layer.in_features)
            layer.bias = init_rng.uniform(-bound, bound, layer.out_features)
        initial = [layer.bias.copy() for layer in hidden]
        h_with = fit(with_bias, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        h_without = fit(without, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        out["accuracy_with"].append(h_with.test_accuracy[-1])
        out["accuracy_without"].append(h_without.test_accuracy[-1])
        out["final_test_loss_difference"].append(abs(h_with.test_loss[-1] - h_without.test_loss[-1]))
        out["max_bias_change"].append(max(float(np.abs(layer.bias - b0).max()) for layer, b0 in zip(hidden, initial)))
    return {k: np.array(v) for k, v in out.items()}


def torch_bias_gradient(*, batch_size=32, in_features=16, out_features=8, seed=0) -> tuple[float, float]:
    """The same check in PyTorch (float64): ``nn.Linear`` (its default, nonzero bias) -> ``nn.BatchNorm1d``
    in training mode, a random loss. Returns ``(max |bias.grad|, median |weight.grad|)``."""
    import torch

    torch.manual_seed(seed)
    linear = torch.nn.Linear(in_features, out_features).double()
    bn = torch.nn.BatchNorm1d(out_features).double()
    x = torch.randn(batch_size, in_features, dtype=torch.float64) * 2 + 1
    target = torch.randn(batch_size, out_features, dtype=torch.float64)
    ((bn(linear(x)) - target) ** 2).sum().backward()
    return float(linear.bias.grad.abs().max()), float(linear.weight.grad.abs().median())
