"""Training and evaluation: a plain SGD loop, accuracy in either mode, and recalibration.

The chapters' experiments are built from these (in :mod:`bnbook`); a reader uses them to train
their own small networks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _checks
from .data import batches
from .layers import BatchNorm, BatchRenorm
from .module import Module
from .nn import SoftmaxCrossEntropy
from .optim import SGD

__all__ = ["History", "fit", "predict", "accuracy", "evaluate", "train_mode_accuracy", "recalibrate"]


class History(NamedTuple):
    train_loss: list  # mean training loss per epoch (train mode, as the optimizer saw it)
    test_loss: list  # eval-mode test loss per epoch
    test_accuracy: list  # eval-mode test accuracy per epoch
    diverged: bool  # a loss or a parameter became non-finite (training stopped there)


def _check_model(model):
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a bnlib Module, got {type(model).__name__}")


def predict(model: Module, x, *, batch_size=None):
    """The model's outputs in its current mode, in batches of ``batch_size`` (None: one batch)."""
    _check_model(model)
    if batch_size is None:
        return model(x)
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    return np.concatenate([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: Module, x, y, *, batch_size=None) -> float:
    """Classification accuracy in the model's current mode (call ``model.eval()`` first for inference)."""
    logits = predict(model, x, batch_size=batch_size)
    return float((logits.argmax(axis=1) == np.asarray(y)).mean())


def evaluate(model: Module, x, y) -> tuple[float, float]:
    """``(loss, accuracy)`` in eval mode; the model's mode is restored afterwards."""
    _check_model(model)
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
        loss = SoftmaxCrossEntropy()(logits, y)
        acc = float((logits.argmax(axis=1) == y).mean())
    finally:
        model.train(was_training)
    return loss, acc


def _norms(model):
    return [m for m in model.modules() if isinstance(m, BatchNorm) and m.track_running_stats]


def train_mode_accuracy(model: Module, x, y, batch_size) -> float:
    """Accuracy with batch norm left in TRAINING mode, in batches of ``batch_size`` (the common
    mistake of forgetting ``model.eval()``). Only full batches are scored; every BatchNorm's running
    statistics and counter are restored afterwards, and the model is left in eval mode."""
    _check_model(model)
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    if batch_size > len(x):
        raise ValueError(f"batch_size: expected at most the {len(x)} examples given, got {batch_size}")
    norms = _norms(model)
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


def fit(
    model: Module, data, *, epochs=10, lr=0.1, momentum=0.9, batch_size=64, seed=0, weight_decay=0.0, optimizers=None
):
    """Train ``model`` with SGD on ``data`` (a :class:`bnlib.data.Dataset`); returns a :class:`History`.

    ``optimizers``: a list of :class:`bnlib.SGD` that together hold every parameter of ``model``
    exactly once, stepped in order instead of one SGD built from ``lr``, ``momentum`` and
    ``weight_decay`` (for example two parameter groups with their own learning rates).

    The batch order is drawn from ``seed``, so two arms of an experiment that share the seed see the
    same batches. Training stops early, with ``diverged=True``, if the loss or a parameter becomes
    NaN or inf. The model is left in eval mode.

    Examples::

        >>> from bnlib import data, mlp
        >>> digits = data.load_digits()
        >>> history = fit(mlp([64, 32, 10], norm="batch", rng=0), digits, epochs=2)
        >>> history.test_accuracy[-1] > 0.9
        True
    """
    _check_model(model)
    epochs = _checks.check_positive_int(epochs, "epochs")
    loss_fn = SoftmaxCrossEntropy()
    if optimizers is None:
        optimizers = [SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)]
    _check_optimizers(model, optimizers)
    rng = np.random.default_rng(seed)
    history = History([], [], [], False)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(epochs):
            model.train()
            losses = []
            for xb, yb in batches(data.x_train, data.y_train, batch_size, rng=rng):
                logits = model(xb)
                if not np.isfinite(logits).all():
                    model.eval()
                    return history._replace(diverged=True)
                loss = loss_fn(logits, yb)
                losses.append(loss)
                model.backward(loss_fn.backward())
                for opt in optimizers:
                    opt.step()
                if not all(np.isfinite(getattr(m, n)).all() for opt in optimizers for m, n in opt.params):
                    model.eval()
                    return history._replace(diverged=True)
            history.train_loss.append(float(np.mean(losses)))
            test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
            history.test_loss.append(test_loss)
            history.test_accuracy.append(test_acc)
    model.eval()
    return history


def _check_optimizers(model, optimizers):
    if not isinstance(optimizers, (list, tuple)) or not all(isinstance(o, SGD) for o in optimizers):
        raise TypeError(f"optimizers: expected a list of bnlib.SGD, got {optimizers!r}")
    held = [(id(m), n) for o in optimizers for m, n in o.params]
    wanted = {(id(m), n) for m, n in model.parameters()}
    if len(held) != len(set(held)) or set(held) != wanted:
        raise ValueError(
            f"optimizers: expected every parameter of the model exactly once, got {len(held)} entries "
            f"for the model's {len(wanted)} parameters"
        )


def recalibrate(model: Module, x, *, batch_size=None) -> Module:
    """Replace every BatchNorm's running statistics by exact statistics of ``x`` (the training set).

    Each BatchNorm is switched to the cumulative average (``momentum=None``) with its counter reset,
    and ghost batches are switched off, for one training-mode pass over ``x``; with
    ``batch_size=None`` that pass is one batch, so the running mean is the exact mean and the
    running variance the exact variance (unbiased or biased, as the layer's option says) at that
    layer's input. A :class:`BatchRenorm` acts as batch norm for that pass (``rmax=1, dmax=0``), since
    its correction towards the running statistics would use the values being replaced. Parameters are
    not touched. Every option is restored and the model left in eval mode.

    Examples::

        >>> from bnlib import BatchNorm, Sequential
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 2))
        >>> net = recalibrate(Sequential(BatchNorm(2)), x)
        >>> bool(np.allclose(net[0].running_mean, x.mean(axis=0))), net.training
        (True, False)
    """
    _check_model(model)
    norms = _norms(model)
    saved = [(m, m.momentum, m.virtual_batch_size, m.running_mean, m.running_var, m.num_batches_tracked) for m in norms]
    # BatchRenorm's training output is corrected towards the running statistics, which are being
    # re-estimated from scratch here: for this pass it must be batch norm (r = 1, d = 0), or every
    # layer after the first would see inputs normalized with the reset values 0 and 1.
    renorms = [(m, m.rmax, m.dmax, m.schedule) for m in norms if isinstance(m, BatchRenorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum, m.virtual_batch_size = None, None
    for m, *_ in renorms:
        m.rmax, m.dmax, m.schedule = 1.0, 0.0, None
    model.train()
    try:
        predict(model, x, batch_size=batch_size)
    except Exception:
        for m, _, _, rm, rv, count in saved:  # a failed pass leaves the old statistics
            m.running_mean, m.running_var, m.num_batches_tracked = rm, rv, count
        raise
    finally:
        for m, momentum, virtual, *_ in saved:
            m.momentum, m.virtual_batch_size = momentum, virtual
        for m, rmax, dmax, schedule in renorms:
            m.rmax, m.dmax, m.schedule = rmax, dmax, schedule
        model.eval()
    return model
