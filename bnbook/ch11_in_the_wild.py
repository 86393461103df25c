"""Chapter 11 (batch norm in the wild): the drivers behind its numbers, and its figures.

Every driver trains small digit MLPs (three hidden layers of 64 units by default) whose arms share
the initial weights (``mlp(..., rng=seed)``), the order of the batches (drawn from ``seed``) and the
learning rate, so that they differ only in the thing compared. Figures only draw.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from bnlib import BatchNorm, BatchRenorm, Dropout, Linear, Sequential, mlp
from bnlib.data import Dataset, load_digits
from bnlib.nn import SoftmaxCrossEntropy
from bnlib.optim import SGD
from bnlib.train import accuracy, recalibrate, train_mode_accuracy

from ._checks import check_count, check_seeds
from .ch04_running_stats import _standardizer
from .explore import interactive
from .style import ARM_COLOURS, PALETTE, frame, pyplot

WIDTHS = (64, 64, 64)
ORDERS = ("shuffled", "by class")


# ---- shared machinery ------------------------------------------------------------------------
def _check_batch_size(batch_size, name="batch_size"):
    """Batch norm needs two examples per batch."""
    return check_count(batch_size, name, minimum=2)


def batch_order(labels, batch_size, rng, order="shuffled"):
    """Index arrays of one epoch's batches (full batches only).

    ``"shuffled"``: a random permutation cut into batches (i.i.d. batches). ``"by class"``: the
    examples sorted by label (shuffled within each class), cut into consecutive batches, and the
    batches visited in a random order, so each batch holds one class, or two at a class boundary.
    """
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
    labels = np.asarray(labels)
    n = len(labels) - len(labels) % batch_size
    if order == "shuffled":
        index = rng.permutation(len(labels))
    else:
        index = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    chunks = index[:n].reshape(-1, batch_size)
    if order == "by class":
        chunks = chunks[rng.permutation(len(chunks))]
    return list(chunks)


def train(model, data, *, epochs, lr, batch_size, seed, order="shuffled", momentum=0.9, bn_mode="train", record=None):
    """SGD (momentum 0.9) on ``data.x_train``, batches from :func:`batch_order` drawn from ``seed``.

    ``bn_mode="train"`` trains in training mode; ``"frozen"`` keeps the model in eval mode during
    training (batch norm uses and keeps its running statistics: the "frozen BN" of fine-tuning).
    ``record(step, model)`` is called after every step. Returns the model, left in eval mode.
    """
    if bn_mode not in ("train", "frozen"):
        raise ValueError(f"bn_mode: expected 'train' or 'frozen', got {bn_mode!r}")
    batch_size = _check_batch_size(batch_size)
    epochs = check_count(epochs, "epochs")
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    step = 0
    for _ in range(epochs):
        model.train(bn_mode == "train")
        for idx in batch_order(data.y_train, batch_size, rng, order):
            loss_fn(model(data.x_train[idx]), data.y_train[idx])
            model.backward(loss_fn.backward())
            opt.step()
            step += 1
            if record is not None:
                record(step, model)
    return model.eval()


def _net(norm, seed, widths=WIDTHS, n_in=64, n_out=10, **options):
    """``mlp`` with norm "batch", "renorm" (BatchRenorm in place of every BatchNorm, same weights),
    "group" (8 groups) or "layer"."""
    sizes = [n_in, *widths, n_out]
    if norm == "renorm":
        model = mlp(sizes, norm="batch", rng=seed)
        model.layers = [BatchRenorm(m.num_features, **options) if isinstance(m, BatchNorm) else m for m in model.layers]
        return model
    if norm == "group":
        return mlp(sizes, norm="group", rng=seed, num_groups=8)
    if norm in ("batch", "layer"):
        return mlp(sizes, norm=norm, rng=seed, **options)
    raise ValueError(f"norm: expected 'batch', 'renorm', 'group' or 'layer', got {norm!r}")


def _norm_layers(model):
    return [m for m in model.modules() if isinstance(m, BatchNorm)]


def _summary(values):
    """``(mean, sd)`` with the population sd (``ddof=0``), the book's convention (chapter 5)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std())


# ---- 1. batch renormalization ----------------------------------------------------------------
class RenormStudy(NamedTuple):
    settings: list  # one dict per run: norm, batch_size, order, seed
    eval_accuracy: np.ndarray  # test set, eval mode
    train_mode_accuracy: np.ndarray  # test set in training mode, batches of the training size

    def table(self):
        """{(norm, batch_size, order): ((eval mean, sd), (train-mode mean, sd))} over seeds."""
        groups = {}
        for s, a, t in zip(self.settings, self.eval_accuracy, self.train_mode_accuracy):
            groups.setdefault((s["norm"], s["batch_size"], s["order"]), []).append((a, t))
        return {k: (_summary([a for a, _ in v]), _summary([t for _, t in v])) for k, v in groups.items()}


def renorm_study(
    batch_sizes=(2, 4, 8),
    *,
    orders=("shuffled",),
    norms=("batch", "renorm"),
    seeds=(0, 1, 2),
    epochs=3,
    lr_per_32=0.05,
    rmax=3.0,
    dmax=5.0,
    data=None,
):
    """Batch norm against batch renormalization (``BatchRenorm(rmax, dmax)``, fixed limits) on the digits.

    For every batch size, batch order (:func:`batch_order`) and seed the arms share the initial
    weights, the batches and the learning rate ``lr_per_32 * batch_size / 32``. Scores each network
    in eval mode and left in training mode (test batches of the training size). Returns a
    :class:`RenormStudy`.
    """
    seeds = check_seeds(seeds)
    epochs = check_count(epochs, "epochs")
    data = data or load_digits()
    settings, acc, train_acc = [], [], []
    with threadpool_limits(1):
        for b in batch_sizes:
            b = _check_batch_size(b, "batch_sizes")
            for order in orders:
                for norm in norms:
                    for seed in seeds:
                        model = _net(norm, seed, **({"rmax": rmax, "dmax": dmax} if norm == "renorm" else {}))
                        train(model, data, epochs=epochs, lr=lr_per_32 * b / 32, batch_size=b, seed=seed, order=order)
                        settings.append({"norm": norm, "batch_size": b, "order": order, "seed": seed})
                        acc.append(accuracy(model, data.x_test, data.y_test))
                        train_acc.append(train_mode_accuracy(model, data.x_test, data.y_test, b))
    return RenormStudy(settings, np.array(acc), np.array(train_acc))


class RenormTrace(NamedTuple):
    r: np.ndarray  # (steps, features) r used in each step's forward (running stats before its update)
    d: np.ndarray  # (steps, features)
    r_clipped: np.ndarray  # (steps,) fraction of features with r at a limit
    r_low: np.ndarray  # (steps,) fraction of features with r at 1 / rmax
    r_high: np.ndarray  # (steps,) fraction of features with r at rmax
    d_clipped: np.ndarray  # (steps,)
    rmax: float
    dmax: float
    eval_accuracy: float


def renorm_trace(*, batch_size=4, layer=1, seed=0, epochs=1, lr_per_32=0.05, rmax=3.0, dmax=5.0, data=None):
    """Train one renorm network and record ``r`` and ``d`` of its ``layer``-th BatchRenorm (0 first)
    at every step (``BatchRenorm.corrections``), with the fraction of its features clipped at
    ``1/rmax``/``rmax`` or ``+-dmax``. Returns a :class:`RenormTrace`."""
    batch_size = _check_batch_size(batch_size)
    epochs = check_count(epochs, "epochs")
    data = data or load_digits()
    model = _net("renorm", seed, rmax=rmax, dmax=dmax)
    norms = _norm_layers(model)
    if not 0 <= layer < len(norms):
        raise ValueError(f"layer: expected 0 to {len(norms) - 1}, got {layer}")
    target = norms[layer]
    rs, ds = [], []

    def record(step, model):
        r, d = target.corrections  # the clipped r and d of the last training forward
        rs.append(r)
        ds.append(d)

    with threadpool_limits(1):
        train(
            model, data, epochs=epochs, lr=lr_per_32 * batch_size / 32, batch_size=batch_size, seed=seed, record=record
        )
    r, d = np.array(rs), np.array(ds)
    tol = 1e-12
    low, high = r <= 1 / rmax + tol, r >= rmax - tol
    d_clipped = (np.abs(d) >= dmax - tol).mean(axis=1)
    acc = accuracy(model, data.x_test, data.y_test)
    return RenormTrace(r, d, (low | high).mean(axis=1), low.mean(axis=1), high.mean(axis=1), d_clipped, rmax, dmax, acc)


# ---- 2. distribution shift and AdaBN -----------------------------------------------------------
SHIFT_KINDS = ("brightness", "contrast", "noise")


def shift_images(raw_images, kind, strength, *, seed):
    """A seeded shift of raw digit pixels (0 to 16), one "camera" for every image.

    ``brightness``: ``x + strength``; ``contrast``: ``strength * x``; ``noise``: ``x + N(0,
    strength^2)`` drawn independently for every pixel from ``seed``.
    """
    raw_images = np.asarray(raw_images, dtype=float)
    if kind == "brightness":
        return raw_images + strength
    if kind == "contrast":
        if not strength > 0:
            raise ValueError(f"strength: expected a contrast factor > 0, got {strength!r}")
        return strength * raw_images
    if kind == "noise":
        if not strength >= 0:
            raise ValueError(f"strength: expected a noise standard deviation >= 0, got {strength!r}")
        return raw_images + np.random.default_rng(seed).normal(0.0, strength, raw_images.shape)
    raise ValueError(f"kind: expected one of {SHIFT_KINDS}, got {kind!r}")


def _adapted(model, x):
    """A copy of ``model`` with every BatchNorm's statistics re-estimated on ``x`` (AdaBN)."""
    return recalibrate(copy.deepcopy(model), x)


class ShiftResult(NamedTuple):
    shifts: list  # (kind, strength) per column
    clean: np.ndarray  # (seeds,) eval accuracy on the clean test set
    clean_adapted: np.ndarray  # (seeds,) clean test set, statistics re-estimated on the clean training set
    source_stats: np.ndarray  # (seeds, shifts) shifted test set, training statistics
    adapted: np.ndarray  # (seeds, shifts) statistics re-estimated on shifted TRAINING images (AdaBN)
    restandardized: np.ndarray  # (seeds, shifts) input re-standardized per pixel on shifted training images
    logit_gap: np.ndarray  # (seeds, shifts) max |AdaBN logits on shifted test - clean-recalibrated logits on clean|
    models: list  # per seed: the trained network
    data: Dataset  # clean digits, standardized with the clean training statistics
    target_train: dict  # (kind, strength) -> shifted training images (standardized like the clean ones)
    target_test: dict  # (kind, strength) -> shifted test images


def shift_study(
    shifts=(
        ("brightness", 2.0),
        ("brightness", 4.0),
        ("brightness", 8.0),
        ("contrast", 0.5),
        ("contrast", 0.25),
        ("contrast", 2.0),
        ("noise", 2.0),
        ("noise", 4.0),
        ("noise", 8.0),
    ),
    *,
    seeds=(0, 1, 2),
    epochs=10,
    lr=0.1,
    batch_size=64,
    shift_seed=100,
):
    """Networks trained on clean digits, tested on shifted digits with their training statistics
    and after AdaBN (:func:`bnlib.train.recalibrate` on the SHIFTED TRAINING images, unlabeled).

    The input standardization stays the clean one (the network's preprocessing is fixed). The
    shifted training and test images are separate draws (seeds ``shift_seed`` and ``shift_seed + 1``),
    so the statistics never come from the images scored. The control arm ``restandardized`` keeps
    every BatchNorm's training statistics and re-standardizes only the input, per pixel, with the
    mean and std of the raw shifted training images (chapter 4's control). ``logit_gap`` compares the
    AdaBN network's logits on the shifted test images with those of the network recalibrated on the
    clean training images on the clean test images: for a deterministic shift (brightness,
    contrast) the images are the same ones moved, so it measures how exactly AdaBN undoes the shift.
    Returns a :class:`ShiftResult`.
    """
    seeds = check_seeds(seeds)
    epochs = check_count(epochs, "epochs")
    batch_size = _check_batch_size(batch_size)
    raw = load_digits(standardize=False)
    scale = _standardizer(raw.x_train)
    data = Dataset(scale(raw.x_train), raw.y_train, scale(raw.x_test), raw.y_test)
    shifts = [(k, float(s)) for k, s in shifts]
    raw_train = {sh: shift_images(raw.x_train, *sh, seed=shift_seed) for sh in shifts}
    raw_test = {sh: shift_images(raw.x_test, *sh, seed=shift_seed + 1) for sh in shifts}
    target_train = {sh: scale(v) for sh, v in raw_train.items()}
    target_test = {sh: scale(v) for sh, v in raw_test.items()}
    restandardized_test = {sh: _standardizer(raw_train[sh])(raw_test[sh]) for sh in shifts}
    out = {k: [] for k in ("clean", "clean_adapted", "source", "adapted", "restandardized", "gap")}
    models = []
    with threadpool_limits(1):
        for seed in seeds:
            model = train(_net("batch", seed), data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
            models.append(model)
            out["clean"].append(accuracy(model, data.x_test, data.y_test))
            clean_model = _adapted(model, data.x_train)
            out["clean_adapted"].append(accuracy(clean_model, data.x_test, data.y_test))
            clean_logits = clean_model(data.x_test)
            out["source"].append([accuracy(model, target_test[sh], data.y_test) for sh in shifts])
            out["restandardized"].append([accuracy(model, restandardized_test[sh], data.y_test) for sh in shifts])
            row_acc, row_gap = [], []
            for sh in shifts:
                adapted_model = _adapted(model, target_train[sh])
                logits = adapted_model(target_test[sh])
                row_acc.append(float((logits.argmax(axis=1) == data.y_test).mean()))
                row_gap.append(float(np.abs(logits - clean_logits).max()))
            out["adapted"].append(row_acc)
            out["gap"].append(row_gap)
    a = {k: np.array(v) for k, v in out.items()}
    return ShiftResult(
        shifts,
        a["clean"],
        a["clean_adapted"],
        a["source"],
        a["adapted"],
        a["restandardized"],
        a["gap"],
        models,
        data,
        target_train,
        target_test,
    )


class SampleSizeResult(NamedTuple):
    shifts: list  # (kind, strength)
    sizes: list  # numbers of target images used for the re-estimation ("all" = the whole set)
    accuracy: np.ndarray  # (shifts, sizes, seeds, draws) accuracy on the shifted test set
    source_stats: np.ndarray  # (shifts, seeds) without adaptation


def adabn_sample_size(study: ShiftResult, shifts, sizes=(8, 16, 32, 64, 128, 256), *, draws=5, seed=0):
    """Accuracy after AdaBN with only ``n`` unlabeled shifted training images, for each n in ``sizes``
    and the whole set (1,348 images), ``draws`` random subsets each (the whole set: one draw, repeated).

    The subset is drawn without replacement from the shifted TRAINING images; the score is on the
    shifted test images. The statistics of one pass over ``n`` images are exact for those images.
    """
    draws = check_count(draws, "draws")
    shifts = [(k, float(s)) for k, s in shifts]
    missing = [sh for sh in shifts if sh not in study.target_train]
    if missing:
        raise ValueError(f"shifts: {missing} are not in the study (it has {study.shifts})")
    n_all = len(study.data.y_train)
    if any(not 2 <= n <= n_all for n in sizes):
        raise ValueError(f"sizes: expected values from 2 to {n_all}, got {sizes}")
    rng = np.random.default_rng(seed)
    out = np.zeros((len(shifts), len(sizes) + 1, len(study.models), draws))
    with threadpool_limits(1):
        for i, sh in enumerate(shifts):
            x, x_test = study.target_train[sh], study.target_test[sh]
            for j, n in enumerate([*sizes, n_all]):
                for k in range(draws):
                    pick = rng.choice(n_all, n, replace=False)
                    for s, model in enumerate(study.models):
                        out[i, j, s, k] = accuracy(_adapted(model, x[pick]), x_test, study.data.y_test)
    source = np.array(
        [[study.source_stats[s, study.shifts.index(sh)] for s in range(len(study.models))] for sh in shifts]
    )
    return SampleSizeResult(shifts, [*sizes, "all"], out, source)


# ---- 3. dropout before batch norm -------------------------------------------------------------
class VarianceShift(NamedTuple):
    p: np.ndarray  # dropout probabilities
    train_var: np.ndarray  # (p,) mean over features of the BN input's variance in training mode
    eval_var: np.ndarray  # (p,) the same in eval mode (dropout off)
    running_ratio: np.ndarray  # (p,) mean over features of running_var / eval-mode variance
    theory: np.ndarray  # 1 / (1 - p): the ratio when the cross terms of the inputs cancel (zero-mean random W)


def variance_shift(p_values=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7), *, batch_size=64, epochs=10, seed=0, data=None):
    """``Dropout(p) -> Linear(64, 64) -> BatchNorm`` on the standardized digits, no training.

    The BN input's variance per feature is measured over the whole training set in training mode
    (one dropout mask per image) and in eval mode; the BatchNorm's running variance, accumulated
    over ``epochs`` passes in batches of ``batch_size`` in training mode (cumulative average), is
    compared with the eval-mode variance: the variance eval mode normalizes with is off by that ratio.
    ``p_values`` must lie in [0, 1).
    """
    p_values = tuple(p_values)
    if not p_values or not all(isinstance(p, (int, float)) and 0 <= p < 1 for p in p_values):
        raise ValueError(f"p_values: expected dropout probabilities in [0, 1), got {p_values!r}")
    batch_size = _check_batch_size(batch_size)
    epochs = check_count(epochs, "epochs")
    data = data or load_digits()
    x = data.x_train
    train_var, eval_var, ratio = [], [], []
    with threadpool_limits(1):
        for p in p_values:
            drop, lin, bn = Dropout(p, rng=seed), Linear(64, 64, bias=False, rng=seed), BatchNorm(64, momentum=None)
            h_train = lin(drop(x))
            h_eval = lin(drop.eval()(x))
            drop.train()
            rng = np.random.default_rng(seed)
            for _ in range(epochs):
                for idx in batch_order(data.y_train, batch_size, rng):
                    bn(lin(drop(x[idx])))
            train_var.append(h_train.var(axis=0).mean())
            eval_var.append(h_eval.var(axis=0).mean())
            ratio.append((bn.running_var / h_eval.var(axis=0, ddof=1)).mean())
    p = np.asarray(p_values, dtype=float)
    return VarianceShift(p, np.array(train_var), np.array(eval_var), np.array(ratio), 1 / (1 - p))


def dropout_net(placement, p, seed, widths=WIDTHS):
    """The digits MLP with one ``Dropout(p)`` layer, or none: ``"none"``; ``"before BN"`` after the
    second-to-last hidden ReLU, before the last hidden ``Linear -> BN`` (that BN sees dropped inputs);
    ``"before head"`` after the last hidden ReLU, before the final Linear (no BN after the dropout).
    The two placements have the same number of dropout layers and the same mask generator (seed
    ``1000 + seed``), so they differ only in where the dropout sits. The Linear weights are those of
    ``mlp(..., rng=seed)``."""
    if placement not in ("none", "before BN", "before head"):
        raise ValueError(f"placement: expected 'none', 'before BN' or 'before head', got {placement!r}")
    if not 0 <= p < 1:
        raise ValueError(f"p: expected a dropout probability in [0, 1), got {p!r}")
    base = mlp([64, *widths, 10], norm="batch", rng=seed)
    linears = [i for i, layer in enumerate(base.layers) if isinstance(layer, Linear)]
    at = {"none": None, "before BN": linears[-2], "before head": linears[-1]}[placement]
    layers = []
    for i, layer in enumerate(base.layers):
        if i == at:
            layers.append(Dropout(p, rng=1000 + seed))
        layers.append(layer)
    return Sequential(*layers)


def _bn_input_variances(model, x):
    """Eval-mode variance (unbiased, per feature) of the input of every BatchNorm, on ``x``."""
    out = []
    model.eval()
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            out.append(x.var(axis=0, ddof=1))
        x = layer(x)
    return out


def recalibrate_without_dropout(model, x):
    """AdaBN-style fix of the variance shift: re-estimate the statistics with dropout switched off
    (``p = 0`` during the pass, restored afterwards). Returns a recalibrated copy."""
    model = copy.deepcopy(model)
    drops = [m for m in model.modules() if isinstance(m, Dropout)]
    saved = [m.p for m in drops]
    for m in drops:
        m.p = 0.0
    try:
        recalibrate(model, x)
    finally:
        for m, p in zip(drops, saved):
            m.p = p
    return model


class DropoutStudy(NamedTuple):
    settings: list  # one dict per run: placement, p, seed
    accuracy: np.ndarray  # test accuracy, eval mode, running statistics
    accuracy_recalibrated: np.ndarray  # statistics re-estimated on the training set with dropout off
    var_ratio: np.ndarray  # (runs, BN layers) mean running_var / eval-mode input variance

    def table(self, key="accuracy"):
        """{(placement, p): (mean, sd)} over seeds of ``key``."""
        groups = {}
        for s, v in zip(self.settings, getattr(self, key)):
            groups.setdefault((s["placement"], s["p"]), []).append(v)
        return {k: _summary(v) if np.ndim(v[0]) == 0 else np.mean(v, axis=0) for k, v in groups.items()}


def dropout_study(p_values=(0.2, 0.5), *, seeds=(0, 1, 2), epochs=10, lr=0.05, batch_size=32, data=None):
    """Train each dropout placement of :func:`dropout_net` (and "none") over seeds; same weights,
    batches and learning rate in every arm. Returns a :class:`DropoutStudy`."""
    seeds = check_seeds(seeds)
    epochs = check_count(epochs, "epochs")
    batch_size = _check_batch_size(batch_size)
    data = data or load_digits()
    settings, acc, acc_fix, ratios = [], [], [], []
    arms = [("none", 0.0)] + [(pl, p) for p in p_values for pl in ("before BN", "before head")]
    with threadpool_limits(1):
        for placement, p in arms:
            for seed in seeds:
                model = train(
                    dropout_net(placement, p, seed), data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
                )
                settings.append({"placement": placement, "p": p, "seed": seed})
                acc.append(accuracy(model, data.x_test, data.y_test))
                fixed = recalibrate_without_dropout(model, data.x_train)
                acc_fix.append(accuracy(fixed, data.x_test, data.y_test))
                norms = _norm_layers(model)
                ratios.append(
                    [(m.running_var / v).mean() for m, v in zip(norms, _bn_input_variances(model, data.x_train))]
                )
    return DropoutStudy(settings, np.array(acc), np.array(acc_fix), np.array(ratios))


# ---- 4. gradient accumulation ------------------------------------------------------------------
def accumulation_step(model, opt, x, y, micro_batch):
    """One SGD step on the batch ``(x, y)`` computed as ``len(x) / micro_batch`` micro-batches:
    each is forwarded and backpropagated on its own (loss averaged over the micro-batch, scaled by
    ``micro_batch / len(x)``), the gradients summed, then one ``opt.step()``. With ``micro_batch =
    len(x)`` it is the ordinary step."""
    if len(x) % micro_batch:
        raise ValueError(f"micro_batch: expected a divisor of the batch size {len(x)}, got {micro_batch}")
    loss_fn = SoftmaxCrossEntropy()
    total = {}
    for start in range(0, len(x), micro_batch):
        loss_fn(model(x[start : start + micro_batch]), y[start : start + micro_batch])
        model.backward(loss_fn.backward() * (micro_batch / len(x)))
        for module, name in model.parameters():
            g = getattr(module, "d" + name)
            key = (id(module), name)
            total[key] = g.copy() if key not in total else total[key] + g
    for module, name in model.parameters():  # every grad is overwritten by each backward: restore the sum
        setattr(module, "d" + name, total[(id(module), name)])
    opt.step()


def _params(model):
    """Every parameter, flattened into one vector."""
    return np.concatenate([getattr(m, n).ravel() for m, n in model.parameters()])


def _running_stats(model):
    """Every BatchNorm's running mean and variance, flattened into one vector (empty without BN)."""
    parts = [np.zeros(0)]
    for m in _norm_layers(model):
        parts += [m.running_mean, m.running_var]
    return np.concatenate(parts)


def _state(model):
    """Every parameter and running statistic, flattened into one vector."""
    return np.concatenate([_params(model), _running_stats(model)])


class AccumulationCheck(NamedTuple):
    steps: np.ndarray  # 1..N
    vs_ghost: np.ndarray  # (N,) max |difference| of all parameters and running stats: accumulation vs ghost BN
    vs_full: np.ndarray  # (N,) accumulation vs the full-batch step: parameters only
    vs_full_stats: np.ndarray  # (N,) accumulation vs the full-batch step: running statistics only
    group_vs_full: np.ndarray  # (N,) GroupNorm network: accumulation vs full batch (parameters)
    counts: tuple  # num_batches_tracked of the first BN: (accumulation, ghost, full)


def accumulation_check(*, batch_size=32, micro_batch=8, steps=50, seed=0, lr=0.05, data=None):
    """The same ``steps`` batches, three ways: k micro-batches with summed gradients
    (:func:`accumulation_step`), ghost batch norm (``virtual_batch_size=micro_batch``, one forward of the
    whole batch) and the full batch; plus a GroupNorm network with and without accumulation. Returns
    the largest difference after every step: of parameters and running statistics together against
    ghost BN, and against the full batch separately for the parameters (the step) and the running
    statistics (updated once per micro-batch by accumulation, once per step by the full batch)."""
    batch_size = _check_batch_size(batch_size)
    micro_batch = check_count(micro_batch, "micro_batch")
    steps = check_count(steps, "steps")
    if batch_size % micro_batch:
        raise ValueError(f"micro_batch: expected a divisor of the batch size {batch_size}, got {micro_batch}")
    data = data or load_digits()
    nets = {
        "accum": _net("batch", seed),
        "ghost": _net("batch", seed, virtual_batch_size=micro_batch),
        "full": _net("batch", seed),
        "group accum": _net("group", seed),
        "group full": _net("group", seed),
    }
    opts = {k: SGD(m.parameters(), lr=lr, momentum=0.9) for k, m in nets.items()}
    micro = {"accum": micro_batch, "ghost": batch_size, "full": batch_size, "group accum": micro_batch}
    micro["group full"] = batch_size
    rng = np.random.default_rng(seed)
    rows = []
    with threadpool_limits(1):
        for m in nets.values():
            m.train()
        batches = [
            b
            for _ in range(steps // (len(data.y_train) // batch_size) + 1)
            for b in batch_order(data.y_train, batch_size, rng)
        ]
        for idx in batches[:steps]:
            for k, m in nets.items():
                accumulation_step(m, opts[k], data.x_train[idx], data.y_train[idx], micro[k])
            p = {k: _params(m) for k, m in nets.items()}
            r = {k: _running_stats(nets[k]) for k in ("accum", "ghost", "full")}
            rows.append(
                (
                    max(np.abs(p["accum"] - p["ghost"]).max(), np.abs(r["accum"] - r["ghost"]).max()),
                    np.abs(p["accum"] - p["full"]).max(),
                    np.abs(r["accum"] - r["full"]).max(),
                    np.abs(p["group accum"] - p["group full"]).max(),
                )
            )
    rows = np.array(rows)
    counts = tuple(_norm_layers(nets[k])[0].num_batches_tracked for k in ("accum", "ghost", "full"))
    return AccumulationCheck(np.arange(1, steps + 1), *rows.T, counts)


class AccumulationStudy(NamedTuple):
    settings: list  # one dict per run: arm, seed
    accuracy: np.ndarray  # test accuracy, eval mode

    def table(self):
        groups = {}
        for s, a in zip(self.settings, self.accuracy):
            groups.setdefault(s["arm"], []).append(a)
        return {k: _summary(v) for k, v in groups.items()}


def accumulation_study(*, batch_size=32, micro_batches=(8, 2), seeds=(0, 1, 2), epochs=3, lr=0.05, data=None):
    """Test accuracy of batch-``batch_size`` training done in one piece and by accumulation over
    micro-batches, for batch norm and group norm (8 groups). Same init, batches and lr per seed."""
    seeds = check_seeds(seeds)
    epochs = check_count(epochs, "epochs")
    batch_size = _check_batch_size(batch_size)
    for m in micro_batches:
        if check_count(m, "micro_batches") > batch_size or batch_size % m:
            raise ValueError(f"micro_batches: expected divisors of the batch size {batch_size}, got {micro_batches}")
    data = data or load_digits()
    arms = [("batch", batch_size)] + [("batch", m) for m in micro_batches] + [("group", min(micro_batches))]
    settings, acc = [], []
    with threadpool_limits(1):
        for norm, micro in arms:
            for seed in seeds:
                model = _net(norm, seed).train()
                opt = SGD(model.parameters(), lr=lr, momentum=0.9)
                rng = np.random.default_rng(seed)
                for _ in range(epochs):
                    for idx in batch_order(data.y_train, batch_size, rng):
                        accumulation_step(model, opt, data.x_train[idx], data.y_train[idx], micro)
                name = (
                    f"{norm}, full batch {batch_size}"
                    if micro == batch_size
                    else f"{norm}, {batch_size // micro} x {micro}"
                )
                settings.append({"arm": name, "seed": seed})
                acc.append(accuracy(model.eval(), data.x_test, data.y_test))
    return AccumulationStudy(settings, np.array(acc))


# ---- 5. non-i.i.d. batches ----------------------------------------------------------------------
def exact_statistics(model, x):
    """The statistics eval mode should use: layer by layer, each BatchNorm's exact mean and unbiased
    variance of its input on ``x``, with every earlier layer in eval mode using its exact statistics.

    Returns a list of ``(mean, var)`` per BatchNorm. Computed on a copy of the (flat ``Sequential``)
    model. It differs from :func:`bnlib.train.recalibrate`, whose pass runs in training mode, only
    in the variance each later layer's input was normalized with (unbiased here, biased there: 1/n).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a flat bnlib Sequential, got {type(model).__name__}")
    model = copy.deepcopy(model).eval()
    out = []
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.running_mean[:], layer.running_var[:] = x.mean(axis=0), x.var(axis=0, ddof=1)
            out.append((layer.running_mean.copy(), layer.running_var.copy()))
        x = layer(x)
    return out


def running_stat_error(model, x):
    """Per BatchNorm layer: mean over features of ``|running_mean - exact mean| / exact std`` and of
    ``running_var / exact var``, with the exact statistics of :func:`exact_statistics` on ``x``."""
    mean_err, var_ratio = [], []
    for m, (mean, var) in zip(_norm_layers(model), exact_statistics(model, x)):
        mean_err.append(float((np.abs(m.running_mean - mean) / np.sqrt(var)).mean()))
        var_ratio.append(float((m.running_var / var).mean()))
    return np.array(mean_err), np.array(var_ratio)


class OrderStudy(NamedTuple):
    settings: list  # one dict per run: arm, seed
    eval_accuracy: np.ndarray  # test set, eval mode (for "recalibrated": after recalibration)
    train_mode_accuracy: np.ndarray  # test set, training mode, shuffled test batches of the training size
    sorted_test_accuracy: np.ndarray  # test set, training mode, batches sorted by class (as in training)
    sorted_train_accuracy: np.ndarray  # training set, training mode, batches sorted by class
    mean_error: np.ndarray  # (runs, BN layers) |running - exact mean| / exact std (nan without BN)
    var_ratio: np.ndarray  # (runs, BN layers) running var / exact var

    def table(self, key):
        """{arm: (mean, population sd)} over seeds of ``key`` (per BN layer for the statistics)."""
        groups = {}
        for s, v in zip(self.settings, getattr(self, key)):
            groups.setdefault(s["arm"], []).append(v)
        return {k: (np.mean(v, axis=0), np.std(v, axis=0)) for k, v in groups.items()}


def order_study(*, batch_size=16, seeds=(0, 1, 2), epochs=3, lr_per_32=0.05, data=None):
    """Training with i.i.d. batches against batches sorted by class (:func:`batch_order`), and the
    fixes: shuffling (the i.i.d. arm), recalibration after training (of the BN and of the renorm
    network), BatchRenorm, GroupNorm.

    Arms per seed share the weights, the learning rate and (within an order) the batches.
    Train-mode accuracy feeds the test set in shuffled batches of ``batch_size``; the "sorted"
    accuracies feed the test set and the training set in training mode in batches sorted by class
    (:func:`batch_order`), the condition the by-class networks were trained in. Returns an
    :class:`OrderStudy`.
    """
    seeds = check_seeds(seeds)
    epochs = check_count(epochs, "epochs")
    batch_size = _check_batch_size(batch_size)
    data = data or load_digits()
    lr = lr_per_32 * batch_size / 32
    out = {k: [] for k in OrderStudy._fields}
    nan = np.full(len(WIDTHS), np.nan)
    with threadpool_limits(1):
        for arm, norm, order in (
            ("BN, shuffled", "batch", "shuffled"),
            ("BN, by class", "batch", "by class"),
            ("renorm, by class", "renorm", "by class"),
            ("GN, by class", "group", "by class"),
        ):
            for seed in seeds:
                model = train(
                    _net(norm, seed), data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, order=order
                )
                runs = [(arm, model)]
                if arm in ("BN, by class", "renorm, by class"):
                    runs.append((f"{arm}, recalibrated", recalibrate(copy.deepcopy(model), data.x_train)))
                sort_rng = np.random.default_rng(seed + 500)
                sorted_test = np.concatenate(batch_order(data.y_test, batch_size, sort_rng, "by class"))
                sorted_train = np.concatenate(batch_order(data.y_train, batch_size, sort_rng, "by class"))
                for name, m in runs:
                    out["settings"].append({"arm": name, "seed": seed})
                    out["eval_accuracy"].append(accuracy(m, data.x_test, data.y_test))
                    perm = np.random.default_rng(seed).permutation(len(data.y_test))
                    out["train_mode_accuracy"].append(
                        train_mode_accuracy(m, data.x_test[perm], data.y_test[perm], batch_size)
                    )
                    for key, idx, x, y in (
                        ("sorted_test_accuracy", sorted_test, data.x_test, data.y_test),
                        ("sorted_train_accuracy", sorted_train, data.x_train, data.y_train),
                    ):
                        out[key].append(train_mode_accuracy(m, x[idx], y[idx], batch_size))
                    err, ratio = running_stat_error(m, data.x_train) if _norm_layers(m) else (nan, nan)
                    out["mean_error"].append(err)
                    out["var_ratio"].append(ratio)
    return OrderStudy(**{k: v if k == "settings" else np.array(v) for k, v in out.items()})


# ---- 6. fine-tuning with small batches -----------------------------------------------------------
class FinetuneResult(NamedTuple):
    settings: list  # one dict per run: arm, seed
    pretrain_accuracy: np.ndarray  # digits 0-4, test set, eval mode, before fine-tuning
    accuracy: np.ndarray  # digits 5-9, test set, eval mode, after fine-tuning

    def table(self):
        """{arm: ((after mean, sd), (before mean, sd))} over seeds, arms in :data:`FINETUNE_ARMS` order."""
        groups = {}
        for s, a, p in zip(self.settings, self.accuracy, self.pretrain_accuracy):
            groups.setdefault(s["arm"], []).append((a, p))
        order = [k for k in FINETUNE_ARMS if k in groups]
        return {k: (_summary([a for a, _ in groups[k]]), _summary([p for _, p in groups[k]])) for k in order}


def _split_classes(data, classes, per_class=None, seed=0):
    train_in, test_in = np.isin(data.y_train, classes), np.isin(data.y_test, classes)
    idx = np.flatnonzero(train_in)
    if per_class is not None:
        rng = np.random.default_rng(seed)
        idx = np.sort(
            np.concatenate([rng.choice(np.flatnonzero(data.y_train == c), per_class, replace=False) for c in classes])
        )
    shift = min(classes)
    return Dataset(data.x_train[idx], data.y_train[idx] - shift, data.x_test[test_in], data.y_test[test_in] - shift)


FINETUNE_ARMS = (
    "BN, statistics updated",
    "BN, updated, recal. on the 50",
    "BN, updated, recal. on old + new",
    "BN, frozen",
    "GN",
)


def finetune_study(
    *,
    per_class=10,
    batch_size=4,
    seeds=(0, 1, 2),
    pre_batch_size=32,
    pre_epochs=10,
    epochs=15,
    pre_lr=0.1,
    lr=0.01,
    data=None,
):
    """Pretrain on digits 0-4 (``pre_batch_size``, ``pre_epochs``, ``pre_lr``), then put a new
    5-class head on the network and fine-tune all weights on ``per_class`` images of each digit 5-9
    at ``batch_size`` (``epochs``, ``lr``).

    Arms (:data:`FINETUNE_ARMS`): batch norm with its statistics updated during fine-tuning
    (training mode); the same network with its statistics then re-estimated exactly
    (:func:`bnlib.train.recalibrate`) on the fine-tuning images, or on the pretraining images plus
    the fine-tuning images (controls: is the gap in the eval statistics?); batch norm frozen (the
    network in eval mode while fine-tuning: running statistics fixed and used, batch statistics
    unused; gamma and beta still train, as with PyTorch's ``bn.eval()`` on the BN modules); and a
    GroupNorm network pretrained the same way. Per seed the BN arms share the pretrained weights;
    every arm shares the initial-weight seed, the fine-tuning images, the new head's initialization,
    the batches and the learning rates. Scored in eval mode on the test images of digits 5-9.
    """
    seeds = check_seeds(seeds)
    batch_size = _check_batch_size(batch_size)
    pre_batch_size = _check_batch_size(pre_batch_size, "pre_batch_size")
    epochs = check_count(epochs, "epochs")
    pre_epochs = check_count(pre_epochs, "pre_epochs")
    per_class = check_count(per_class, "per_class")
    data = data or load_digits()
    old = _split_classes(data, [0, 1, 2, 3, 4])
    settings, acc, pre_acc = [], [], []
    with threadpool_limits(1):
        for seed in seeds:
            new = _split_classes(data, [5, 6, 7, 8, 9], per_class, seed=seed)
            both = np.concatenate([old.x_train, new.x_train])
            for norm, mode in (("batch", "train"), ("batch", "frozen"), ("group", "train")):
                model = train(
                    _net(norm, seed, n_out=5), old, epochs=pre_epochs, lr=pre_lr, batch_size=pre_batch_size, seed=seed
                )
                pre = accuracy(model, old.x_test, old.y_test)
                model.layers[-1] = Linear(WIDTHS[-1], 5, rng=10_000 + seed)
                train(model, new, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, bn_mode=mode)
                if norm == "group":
                    runs = [("GN", model)]
                elif mode == "frozen":
                    runs = [("BN, frozen", model)]
                else:
                    runs = [
                        ("BN, statistics updated", model),
                        ("BN, updated, recal. on the 50", recalibrate(copy.deepcopy(model), new.x_train)),
                        ("BN, updated, recal. on old + new", recalibrate(copy.deepcopy(model), both)),
                    ]
                for arm, m in runs:
                    settings.append({"arm": arm, "seed": seed})
                    pre_acc.append(pre)
                    acc.append(accuracy(m, new.x_test, new.y_test))
    return FinetuneResult(settings, np.array(pre_acc), np.array(acc))


# ---- figures ---------------------------------------------------------------------------------
def renorm_accuracy_plot(study: RenormStudy):
    """Test accuracy of batch norm and batch renorm by batch size (i.i.d. batches), in eval mode
    (solid) and left in training mode (dashed); mean and sd over seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    table = study.table()
    sizes = sorted({k[1] for k in table if k[2] == "shuffled"})
    for norm, colour in (("batch", PALETTE[0]), ("renorm", PALETTE[1])):
        for which, style, label in ((0, "o-", "eval mode"), (1, "s--", "training mode")):
            mean = np.array([table[(norm, b, "shuffled")][which][0] for b in sizes])
            sd = np.array([table[(norm, b, "shuffled")][which][1] for b in sizes])
            ax.errorbar(sizes, 100 * mean, yerr=100 * sd, fmt=style, capsize=3, color=colour, label=f"{norm}, {label}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.set_xlabel("batch size (training; test batches in training mode)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=9, loc="lower right")
    return fig


def renorm_trace_plot(trace: RenormTrace):
    """Left: r of every feature of one layer over training steps, with the limits. Right: the
    fraction of features whose r or d is clipped, smoothed over 25 steps."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.5))
    steps = np.arange(1, len(trace.r) + 1)
    ax1.plot(steps, trace.r, color=PALETTE[0], lw=0.4, alpha=0.25)
    for limit in (trace.rmax, 1 / trace.rmax):
        ax1.axhline(limit, color=PALETTE[1], ls="--", lw=1.2)
    ax1.set_yscale("log")
    ax1.set_yticks(
        [1 / trace.rmax, 0.5, 1, 2, trace.rmax], [f"{1 / trace.rmax:.2f}", "0.5", "1", "2", f"{trace.rmax:g}"]
    )
    ax1.minorticks_off()
    ax1.set_xlabel("training step")
    ax1.set_ylabel("r = batch std / running std")
    ax1.set_title("r of each of the 64 features (dashed: limits)", fontsize=10)
    window = 25
    kernel = np.ones(window) / window
    for values, label, colour in (
        (trace.r_clipped, "r clipped", PALETTE[0]),
        (trace.d_clipped, "d clipped", PALETTE[2]),
    ):
        ax2.plot(steps[window - 1 :], 100 * np.convolve(values, kernel, mode="valid"), color=colour, label=label)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("features clipped (%)")
    ax2.set_title(f"mean over {window} steps", fontsize=10)
    ax2.legend(fontsize=9)
    return fig


def shift_plot(study: ShiftResult, sizes: SampleSizeResult):
    """Left: accuracy on each shifted test set with the training statistics, after AdaBN, and with
    only the input re-standardized (mean and population sd over seeds). Right: AdaBN's accuracy
    against the number of target images used."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=[1.3, 1])
    x = np.arange(len(study.shifts))
    for offset, values, label, colour in (
        (-0.27, study.source_stats, "training statistics", PALETTE[1]),
        (0.0, study.adapted, "AdaBN (re-estimated)", PALETTE[0]),
        (0.27, study.restandardized, "input re-standardized", PALETTE[4]),
    ):
        ax1.bar(x + offset, 100 * values.mean(axis=0), 0.27, yerr=100 * values.std(axis=0), color=colour, label=label)
    ax1.axhline(100 * study.clean.mean(), color="0.3", ls="--", lw=1, label="clean test set")
    ax1.set_xticks(x, [f"{k}\n{s:g}" for k, s in study.shifts], fontsize=6)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_ylim(0, 105)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    n_all = len(study.data.y_train)
    n = np.array([n_all if s == "all" else s for s in sizes.sizes], dtype=float)
    for i, (sh, colour) in enumerate(zip(sizes.shifts, PALETTE[2:])):
        acc = sizes.accuracy[i].reshape(len(n), -1)
        ax2.errorbar(
            n,
            100 * acc.mean(axis=1),
            yerr=100 * acc.std(axis=1),
            fmt="o-",
            capsize=3,
            color=colour,
            label=f"{sh[0]} {sh[1]:g}",
        )
        ax2.axhline(100 * sizes.source_stats[i].mean(), color=colour, ls=":", lw=1)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(n, [f"{int(v)}" for v in n], fontsize=8)
    ax2.minorticks_off()
    ax2.set_xlabel("unlabeled target images used by AdaBN")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title("dotted: without adaptation", fontsize=10)
    ax2.legend(fontsize=8, loc="lower right")
    return fig


def dropout_plot(shift: VarianceShift, study: DropoutStudy):
    """Left: running variance / eval-mode variance of the BN after Dropout(p), measured and 1/(1-p).
    Right: test accuracy of each dropout placement (mean and sd over seeds)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(shift.p, shift.theory, "-", color="0.4", label="1 / (1 - p)")
    ax1.plot(shift.p, shift.running_ratio, "o", color=PALETTE[0], label="running var / eval var")
    ax1.plot(shift.p, shift.train_var / shift.eval_var, "x", color=PALETTE[1], ms=8, label="train var / eval var")
    ax1.set_xlabel("dropout probability p")
    ax1.set_ylabel("variance ratio")
    ax1.set_title("Dropout(p) -> Linear -> BN", fontsize=10)
    ax1.legend(fontsize=9)
    table, fixed = study.table(), study.table("accuracy_recalibrated")
    arms = list(table)
    x = np.arange(len(arms))
    ax2.bar(
        x - 0.2,
        [100 * table[a][0] for a in arms],
        0.4,
        yerr=[100 * table[a][1] for a in arms],
        color=PALETTE[0],
        label="running statistics",
    )
    ax2.bar(
        x + 0.2,
        [100 * fixed[a][0] for a in arms],
        0.4,
        yerr=[100 * fixed[a][1] for a in arms],
        color=PALETTE[2],
        label="re-estimated, dropout off",
    )
    ax2.set_xticks(x, [f"{pl}\np = {p:g}" if pl != "none" else "no dropout" for pl, p in arms], fontsize=8)
    ax2.set_ylim(80, 100)
    ax2.set_ylabel("test accuracy (%)")
    ax2.legend(fontsize=8, loc="lower left")
    return fig


def accumulation_plot(check: AccumulationCheck):
    """Largest difference after each step (log scale): accumulation against the full batch, for
    the parameters and the running statistics separately; against ghost BN (both together); and
    group norm's parameters, accumulated against the full batch."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    floor = 1e-18  # exact zeros have no logarithm
    for values, label, colour, style in (
        (check.vs_full_stats, "BN: accumulation vs full batch, running stats", PALETTE[4], "s--"),
        (check.vs_full, "BN: accumulation vs full batch, parameters", PALETTE[1], "o-"),
        (check.vs_ghost, "BN: accumulation vs ghost BN, everything", PALETTE[0], "o-"),
        (check.group_vs_full, "GN: accumulation vs full batch, parameters", PALETTE[2], "o-"),
    ):
        ax.semilogy(check.steps, np.maximum(values, floor), style, ms=3, color=colour, label=label)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("max |difference|")
    ax.set_ylim(floor / 2, 10)
    ax.legend(fontsize=8, loc="center right")
    return fig


def order_plot(study: OrderStudy):
    """Left: test accuracy in eval mode, in training mode (shuffled test batches) and in training
    mode on class-sorted test batches, per arm. Right: the three BN layers' running-mean error (in
    units of the exact std), per arm."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.0), width_ratios=[1.4, 1])
    arms = list(study.table("eval_accuracy"))
    x = np.arange(len(arms))
    labels = [a.replace(", ", "\n") for a in arms]
    for offset, key, label, colour in (
        (-0.27, "eval_accuracy", "eval mode", PALETTE[0]),
        (0.0, "train_mode_accuracy", "training mode, shuffled batches", PALETTE[1]),
        (0.27, "sorted_test_accuracy", "training mode, sorted batches", PALETTE[4]),
    ):
        t = study.table(key)
        ax1.bar(
            x + offset,
            [100 * t[a][0] for a in arms],
            0.27,
            yerr=[100 * t[a][1] for a in arms],
            color=colour,
            label=label,
        )
    ax1.set_xticks(x, labels, fontsize=7)
    ax1.set_ylim(0, 105)
    ax1.set_ylabel("test accuracy (%)")
    ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.18, 0.99))
    err = study.table("mean_error")
    with_bn = [a for a in arms if not np.isnan(err[a][0]).all()]
    for j, colour in zip(range(len(WIDTHS)), ARM_COLOURS[1:]):
        ax2.bar(
            np.arange(len(with_bn)) + (j - 1) * 0.27,
            [err[a][0][j] for a in with_bn],
            0.27,
            color=colour,
            label=f"BN layer {j + 1}",
        )
    ax2.set_xticks(np.arange(len(with_bn)), [a.replace(", ", "\n") for a in with_bn], fontsize=7)
    ax2.set_ylabel("|running - exact mean| / std")
    ax2.set_title("running mean vs the training set's mean", fontsize=10)
    ax2.legend(fontsize=8)
    return fig


def finetune_plot(result: FinetuneResult):
    """Accuracy on digits 5-9 after fine-tuning, per arm and seed (dots), with the mean (a short line)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    table = result.table()
    arms = list(table)
    for i, (arm, colour) in enumerate(zip(arms, PALETTE)):
        values = [a for s, a in zip(result.settings, result.accuracy) if s["arm"] == arm]
        ax.plot(np.full(len(values), i), 100 * np.array(values), "o", color=colour, alpha=0.6)
        ax.plot([i - 0.25, i + 0.25], [100 * table[arm][0][0]] * 2, color=colour, lw=3)
    ax.set_xticks(range(len(arms)), [a.replace(", ", "\n") for a in arms], fontsize=8)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel("test accuracy, digits 5-9 (%)")
    return fig


# ---- interactive ------------------------------------------------------------------------------
def renorm_feature(batch_size, rmax, momentum, *, steps=150, mean=3.0, std=2.0, seed=0):
    """One BatchRenorm feature fed ``steps`` batches of N(mean, std^2), limits ``rmax`` and ``dmax =
    rmax - 1``: returns ``(r, d, running_mean)`` after every step (arrays of length ``steps``)."""
    batch_size = _check_batch_size(batch_size)
    layer = BatchRenorm(1, rmax=rmax, dmax=rmax - 1.0, momentum=momentum)
    rng = np.random.default_rng(seed)
    r, d, rm = [], [], []
    for _ in range(steps):
        layer(rng.normal(mean, std, size=(batch_size, 1)))
        r_step, d_step = layer.corrections
        r.append(r_step[0])
        d.append(d_step[0])
        rm.append(layer.running_mean[0])
    return np.array(r), np.array(d), np.array(rm)


@interactive(
    title="Batch renormalization's corrections r and d",
    alt="The corrections r and d of one batch-renorm feature over training steps, with their clipping limits",
    labels={"batch_size": "batch size", "rmax": "r max (d max = r max - 1)"},
    batch_size=[2, 4, 8, 32],
    rmax=[1.0, 1.5, 2.0, 3.0],
    momentum=[0.01, 0.1, 0.5],
)
def renorm_corrections(batch_size=4, rmax=3.0, momentum=0.1):
    """r and d of one BatchRenorm feature on N(3, 2^2) batches; at rmax = 1 (d max 0) it is batch norm."""
    r, d, _ = renorm_feature(batch_size, rmax, momentum)
    fig, (ax1, ax2) = frame(2, figsize=(8, 3.2), left=0.08, bottom=0.16)
    t = np.arange(1, len(r) + 1)
    for ax, values, limits, name in ((ax1, r, (1 / rmax, rmax), "r"), (ax2, d, (-(rmax - 1), rmax - 1), "d")):
        ax.plot(t, values, color=PALETTE[0], lw=1.2)
        for limit in limits:
            ax.axhline(limit, color=PALETTE[1], ls="--", lw=1)
        clipped = np.mean(np.isclose(values, limits[0]) | np.isclose(values, limits[1]))
        ax.set_title(f"{name}: clipped at {100 * clipped:.0f}% of steps", fontsize=10)
        ax.set_xlabel("training step")
    ax1.set_ylim(0, 3.2)
    ax2.set_ylim(-2.2, 2.2)
    return fig
