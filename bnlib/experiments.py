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

__all__ = ["History", "fit", "accuracy", "evaluate", "recalibrate"]


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
