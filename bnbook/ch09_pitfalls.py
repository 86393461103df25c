"""Chapter 9 (pitfalls): the common batch-norm mistakes, each as a small experiment that returns
the size of the error. Every function here implements a mistake ON PURPOSE; none of it is for
use in a model.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from bnlib import BatchNorm, Sequential
from bnlib import functional as F
from bnlib.data import load_digits
from bnlib.train import fit

from .ch03_backward import ConstantStatsBatchNorm
from .ch07_training import build_mlp
from .style import PALETTE, pyplot


def forgot_sqrt(x, eps=1e-5):
    """``(x - mean) / (var + eps)`` (no square root) against the correct normalization.

    Returns ``(correct_std, wrong_std)`` per feature: the wrong output's spread is
    ``sqrt(var) / (var + eps)``, about ``1 / std``, so it is 1 only for data that already had unit variance."""
    mean, var = F.moments(x, (0,))
    correct = (x - mean) / np.sqrt(var + eps)
    wrong = (x - mean) / (var + eps)
    return correct.std(axis=0), wrong.std(axis=0)


def mean_over_all_elements(x, eps=1e-5):
    """One mean and variance over the whole (N, C) batch instead of one per feature.

    Returns ``(per_feature_mean, per_feature_std)`` of the wrong output (the correct ones are 0 and 1)."""
    wrong = (x - x.mean()) / np.sqrt(x.var() + eps)
    return wrong.mean(axis=0), wrong.std(axis=0)


class MomentumMixup(NamedTuple):
    estimates_right: np.ndarray  # final running mean per seed, PyTorch momentum 0.01 (= Keras 0.99)
    estimates_wrong: np.ndarray  # final running mean per seed, PyTorch momentum 0.99 (Keras' number)
    true_mean: float


def mixed_momentum(*, seeds=range(20), steps=500, batch_size=8, mean=3.0, std=2.0):
    """The spread of the running mean when Keras' momentum 0.99 is passed to a PyTorch-convention layer."""
    right, wrong = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        a, b = BatchNorm(1, momentum=0.01), BatchNorm(1, momentum=0.99)
        for _ in range(steps):
            x = rng.normal(mean, std, size=(batch_size, 1))
            a(x), b(x)
        right.append(a.running_mean[0])
        wrong.append(b.running_mean[0])
    return MomentumMixup(np.array(right), np.array(wrong), mean)


def one_pass_nan(mean_over_std=1e4, n=4096, features=64, seed=0):
    """Share of features for which the one-pass float32 variance is negative, so that
    ``sqrt(var + eps)`` is NaN (with eps = 1e-5)."""
    x = (mean_over_std + np.random.default_rng(seed).standard_normal((n, features))).astype(np.float32)
    var = F.one_pass_variance(x, (0,))
    with np.errstate(invalid="ignore"):
        inv = 1 / np.sqrt(var + np.float32(1e-5))
    return float(np.mean(np.isnan(inv))), float(var.min())


def divide_by_variance(x, mean, variance, eps=1e-3):
    """What ``tf.nn.batch_normalization`` computes, ``(x - mean) / sqrt(variance + eps)``, against the
    misreading ``(x - mean) / variance``. Returns ``(correct, misread)``."""
    return (x - mean) / np.sqrt(variance + eps), (x - mean) / variance


def keras_batch_of_one(steps=200, seed=0):
    """A Keras-convention BatchNorm trained on batches of ONE example (Keras raises no error).

    Returns ``(train_outputs, moving_variance_trace, eval_output_std)``: every training output equals
    beta, the moving variance decays towards 0 (each batch's variance is 0), and eval outputs blow up."""
    rng = np.random.default_rng(seed)
    layer = BatchNorm.keras(1, axis=1)
    outputs, trace = [], []
    for _ in range(steps):
        outputs.append(layer(rng.normal(3.0, 2.0, size=(1, 1)))[0, 0])
        trace.append(layer.running_var[0])
    layer.eval()
    eval_out = layer(rng.normal(3.0, 2.0, size=(1000, 1)))
    return np.array(outputs), np.array(trace), float(eval_out.std())


def with_constant_stats_backward(model):
    """A copy of ``model`` whose BatchNorm layers use the constant-statistics backward."""
    layers = []
    for layer in model.layers:
        if type(layer) is BatchNorm:
            wrong = ConstantStatsBatchNorm(layer.num_features, eps=layer.eps, momentum=layer.momentum)
            wrong.gamma, wrong.beta = layer.gamma.copy(), layer.beta.copy()
            layers.append(wrong)
        else:
            layers.append(copy.deepcopy(layer))
    return Sequential(*layers)


def train_wrong_backward(*, seeds=(0, 1, 2), epochs=8, lr=0.05, batch_size=16, depth=4):
    """Final test accuracy and training loss per epoch, correct against constant-statistics backward."""
    data = load_digits()
    out = {"correct": [], "constant statistics": []}
    for seed in seeds:
        model = build_mlp(norm="batch", depth=depth, seed=seed)
        wrong = with_constant_stats_backward(model)
        out["correct"].append(fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
        out["constant statistics"].append(fit(wrong, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
    return out


def mistake_sizes(errors: dict):
    """One bar per mistake: the size of its error (relative, log scale), the 1% line dotted."""
    plt = pyplot()
    names = list(errors)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.0))
    ax.barh(names, [errors[k] for k in names], color=PALETTE[1])
    ax.set_xscale("log")
    ax.axvline(0.01, color="0.4", ls=":", lw=1)
    ax.set_xlabel("size of the error (relative to the correct value)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=9)
    return fig


def seed_statistics(z, eps=1e-5):
    """The seed notes' ``mu = np.sum(Z) / m`` and ``sigmasqr = np.sum((Z - mu)**2) / m``, as written.

    ``z`` has the notes' layout (units, m): one column per example. Without an axis, ``np.sum`` adds
    all ``units * m`` values, and dividing by ``m`` gives ``units`` times the mean of every element (not
    that mean); ``sigmasqr`` is likewise ``units`` times the mean squared deviation from that ``mu``.
    Returns ``(mu, sigmasqr, output)`` with ``output = (z - mu) / sqrt(sigmasqr + eps)`` (the square root
    put back, so that only the missing axis is wrong)."""
    units, m = z.shape
    mu = np.sum(z) / m
    sigmasqr = np.sum((z - mu) ** 2) / m
    return mu, sigmasqr, (z - mu) / np.sqrt(sigmasqr + eps)


def running_variance_conventions(x):
    """One training step of real PyTorch and real Keras 3 layers set so that the running variance
    equals the batch's (PyTorch ``momentum=1``, Keras ``momentum=0``), on ``x`` of shape (N, C).

    Returns ``{"pytorch": ..., "keras": ...}``: the stored variance per feature of each framework."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import torch

    x = np.asarray(x, dtype=np.float32)
    torch_bn = torch.nn.BatchNorm1d(x.shape[1], momentum=1.0)
    with torch.no_grad():
        torch_bn(torch.from_numpy(x))
    keras_bn = keras.layers.BatchNormalization(momentum=0.0)
    keras_bn(x, training=True)
    return {
        "pytorch": torch_bn.running_var.numpy().astype(np.float64),
        "keras": np.asarray(keras.ops.convert_to_numpy(keras_bn.moving_variance), dtype=np.float64),
    }


def real_keras_batch_of_one(steps=200, seed=0):
    """:func:`keras_batch_of_one` with the real Keras 3 layer (``keras.layers.BatchNormalization``).

    Returns ``(train_outputs, moving_variance_trace, eval_output_std)`` for one feature."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    rng = np.random.default_rng(seed)
    layer = keras.layers.BatchNormalization()
    outputs, trace = [], []
    for _ in range(steps):
        x = rng.normal(3.0, 2.0, size=(1, 1)).astype(np.float32)
        outputs.append(float(keras.ops.convert_to_numpy(layer(x, training=True))[0, 0]))
        trace.append(float(keras.ops.convert_to_numpy(layer.moving_variance)[0]))
    eval_in = rng.normal(3.0, 2.0, size=(1000, 1)).astype(np.float32)
    eval_out = keras.ops.convert_to_numpy(layer(eval_in, training=False))
    return np.array(outputs), np.array(trace), float(eval_out.std())
