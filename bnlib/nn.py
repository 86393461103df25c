"""The few layers needed to train small networks: Linear, activations, Sequential, a loss.

Each layer's ``backward`` sits right under its ``forward`` so they can be checked against each
other. Every backward is tested against finite differences and torch autograd.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _checks
from .functional import fold_batch_norm
from .layers import NOT_RUN, BatchNorm, GroupNorm, LayerNorm
from .module import Module

__all__ = [
    "Linear",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Identity",
    "Dropout",
    "Residual",
    "Sequential",
    "SoftmaxCrossEntropy",
    "mlp",
    "ACTIVATIONS",
    "fold_linear_batch_norm",
]


class Linear(Module):
    """``y = x @ weight.T + bias`` (PyTorch layout: ``weight`` has shape (out_features, in_features)).

    Initialization: ``weight ~ N(0, (gain / sqrt(in_features))^2)``; ``gain=1`` is LeCun's,
    ``sqrt(2)`` He's (for ReLU), ``5/3`` the usual one for tanh. ``bias`` starts at 0; pass
    ``bias=False`` for a layer followed by batch norm, whose mean subtraction cancels any bias.

    Shape:
        Input (N, in_features), float32 or float64. Output (N, out_features), the input's dtype.

    Examples::

        >>> layer = Linear(3, 2, rng=0)
        >>> layer(np.ones((4, 3))).shape, layer.weight.shape
        ((4, 2), (2, 3))
    """

    param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, *, bias=True, gain=1.0, rng=None):
        super().__init__()
        self.in_features = _checks.check_positive_int(in_features, "in_features")
        self.out_features = _checks.check_positive_int(out_features, "out_features")
        if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not gain > 0:
            raise ValueError(f"gain: expected a positive number, got {gain!r}")
        rng = np.random.default_rng(rng)
        std = gain / np.sqrt(in_features)
        self.weight = rng.normal(0.0, std, size=(out_features, in_features))
        self.bias = np.zeros(out_features) if bias else None
        self.dweight = self.dbias = None
        self._x = None

    def forward(self, x):
        x = _checks.as_float_array(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"input: expected shape (N, {self.in_features}), got {x.shape}")
        weight = _checks.check_param(self.weight, "weight", (self.out_features, self.in_features))
        bias = _checks.check_param(self.bias, "bias", (self.out_features,))
        y = x @ weight.T.astype(x.dtype, copy=False)
        if bias is not None:
            y += bias.astype(x.dtype, copy=False)
        self._x = x.copy()  # the caller may change x in place later; the gradient must not follow
        self._weight = weight.copy()
        return y

    def backward(self, dy):
        if self._x is None:
            raise ValueError(NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        _checks.check_same_shape(dy, (self._x.shape[0], self.out_features))
        self.dweight = dy.T.astype(np.float64) @ self._x
        self.dbias = dy.sum(axis=0, dtype=np.float64) if self.bias is not None else None
        return dy @ self._weight.astype(dy.dtype, copy=False)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class _Elementwise(Module):
    """An activation: forward keeps its output and its local slope, backward multiplies by the slope.

    The returned output is never the array the backward reads, so changing it in place does not
    change the gradient.
    """

    def forward(self, x):
        x = _checks.as_float_array(x)
        y, self._slope = self._f(x)
        self.output = y.copy()  # what diagnostics read (histograms, saturation); not the returned array
        return y

    def backward(self, dy):
        if getattr(self, "_slope", None) is None:
            raise ValueError(NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        _checks.check_same_shape(dy, self.output.shape)
        return dy * self._slope


class ReLU(_Elementwise):
    """``max(x, 0)``; slope 1 where x > 0, else 0 (a unit that is 0 on the whole batch is "dead")."""

    def _f(self, x):
        return np.maximum(x, 0), (x > 0).astype(x.dtype)


class Tanh(_Elementwise):
    """``tanh(x)``; slope ``1 - tanh(x)^2``, near 0 when saturated (|tanh| > 0.97)."""

    def _f(self, x):
        y = np.tanh(x)
        return y, 1 - y**2


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``; slope ``s (1 - s)``, at most 0.25, near 0 outside [0.03, 0.97]."""

    def _f(self, x):
        y = 0.5 * (1 + np.tanh(0.5 * x))  # the same function, with no overflow for large |x|
        return y, y * (1 - y)


class Identity(_Elementwise):
    """Passes its input through (a placeholder for "no activation"); returns a copy."""

    def _f(self, x):
        return x.copy(), np.ones((), dtype=x.dtype)


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "linear": Identity}


class Dropout(Module):
    r"""Inverted dropout (``torch.nn.Dropout``, Srivastava et al. 2014).

    In training mode each value is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, so
    its expectation is unchanged; dropped values are 0. In eval mode the layer is the identity. The
    mask of the last training forward is what ``backward`` multiplies by. ``p = 1`` drops everything
    (as in PyTorch: zeros out, zero gradient).

    Dropout changes the *variance* of what it keeps, not only which values: a batch-norm layer after
    it sees a larger variance in training than in eval, the "variance shift" of Li et al. (2019).

    Args:
        p: the probability of dropping a value, in [0, 1]. Default 0.5.
        rng: a seed or ``np.random.Generator`` for the masks (bnlib's masks are not torch's).

    Shape:
        Input any shape, float32 or float64. Output: same.

    Examples::

        >>> drop = Dropout(0.5, rng=0)
        >>> y = drop(np.ones((2, 4)))
        >>> sorted(set(y.ravel().tolist()))          # kept values doubled, the rest 0
        [0.0, 2.0]
        >>> drop.eval()(np.ones((1, 2))).tolist()    # eval: the identity
        [[1.0, 1.0]]
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(rng)
        self._mask = None

    def forward(self, x):
        x = _checks.as_float_array(x)
        self._shape = x.shape
        if not self.training or self.p == 0.0:
            self._mask = np.ones((), dtype=x.dtype)  # backward: the identity
            return x.copy()
        keep = self.rng.random(x.shape) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self._mask = (keep * scale).astype(x.dtype)
        return x * self._mask

    def backward(self, dy):
        if self._mask is None:
            raise ValueError(NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        _checks.check_same_shape(dy, self._shape)
        return dy * self._mask

    def __repr__(self):
        return f"Dropout(p={self.p:g})"


class Residual(Module):
    r"""A residual block: ``y = x + body(x)`` (He et al. 2016), with ``body`` any bnlib Module whose
    output has the input's shape (for example ``Sequential(Linear, BatchNorm, ReLU, Linear, BatchNorm)``).

    The backward adds the two paths: ``dx = dy + body.backward(dy)``, so the gradient reaches
    ``x`` unattenuated however deep the stack of blocks: what lets batch-normalized networks train
    at depth. Initializing the last batch norm's ``gamma`` to zero makes the block start as the
    identity (Goyal et al. 2017).

    Examples::

        >>> from bnlib import BatchNorm
        >>> block = Residual(Sequential(Linear(3, 3, rng=0), BatchNorm(3)))
        >>> block.body[1].gamma[:] = 0.0                 # zero-init: the block is the identity
        >>> x = np.random.default_rng(1).normal(size=(4, 3))
        >>> bool(np.allclose(block(x), x)), bool(np.allclose(block.backward(np.ones((4, 3))), 1.0))
        (True, True)
    """

    def __init__(self, body):
        super().__init__()
        if not isinstance(body, Module):
            raise TypeError(f"body: expected a bnlib Module, got {type(body).__name__}")
        self.body = body
        self._shape = None

    def children(self):
        return [self.body]

    def forward(self, x):
        x = _checks.as_float_array(x)
        out = self.body(x)
        if np.shape(out) != x.shape:
            raise ValueError(f"body: its output has shape {np.shape(out)}, expected the input's shape {x.shape}")
        self._shape = x.shape
        return x + out

    def backward(self, dy):
        if self._shape is None:
            raise ValueError(NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        _checks.check_same_shape(dy, self._shape)
        return dy + self.body.backward(dy)

    def __repr__(self):
        return f"Residual({self.body!r})"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    A layer object may appear only once (at any depth): a layer keeps one backward cache, so
    using it twice would silently give the gradient of its last use only.

    Examples::

        >>> from bnlib import BatchNorm
        >>> net = Sequential(Linear(4, 3, rng=0), BatchNorm(3), ReLU())
        >>> net(np.random.default_rng(0).normal(size=(8, 4))).shape
        (8, 3)
        >>> relu = ReLU()
        >>> Sequential(relu, relu)
        Traceback (most recent call last):
        ...
        ValueError: layer 1: the same ReLU object appears twice; a layer keeps one backward cache, so create a new one for each use
    """

    def __init__(self, *layers):
        super().__init__()
        seen = {}
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i}: expected a bnlib Module, got {type(layer).__name__}")
            for module in layer.modules():
                if id(module) in seen:
                    raise ValueError(
                        f"layer {i}: the same {type(module).__name__} object appears twice; a layer keeps one "
                        "backward cache, so create a new one for each use"
                    )
                seen[id(module)] = module
        self.layers = list(layers)

    def children(self):
        return self.layers

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels; ``backward()`` gives dlogits."""

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels):
        logits = _checks.as_float_array(logits, "logits")
        if logits.ndim != 2:
            raise ValueError(f"logits: expected shape (N, classes), got {logits.shape}")
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels: expected integer class indices, got dtype {labels.dtype}")
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels: expected shape ({logits.shape[0]},), got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(
                f"labels: expected values in [0, {logits.shape[1] - 1}], got [{labels.min()}, {labels.max()}]"
            )
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self._probs = np.exp(log_probs)
        self._labels = labels
        return float(-log_probs[np.arange(labels.size), labels].mean())

    def backward(self):
        if getattr(self, "_probs", None) is None:
            raise ValueError(NOT_RUN)
        grad = self._probs.copy()
        grad[np.arange(self._labels.size), self._labels] -= 1
        return grad / self._labels.size


def mlp(sizes, *, activation="relu", norm=None, gain=None, bias=None, rng=None, norm_position="before", **norm_kwargs):
    """A multilayer perceptron ``Linear -> [norm] -> activation`` repeated, then a final Linear.

    Args:
        sizes: layer widths, input first, output last, e.g. ``[64, 100, 100, 10]``.
        activation: "relu", "tanh", "sigmoid" or "linear".
        norm: None, "batch" (:class:`BatchNorm`), "layer" (:class:`LayerNorm`) or "group"
            (:class:`GroupNorm`, pass ``num_groups``).
        gain: weight-initialization gain; default sqrt(2) for ReLU, 5/3 for tanh, 1 otherwise.
        bias: hidden Linear layers get a bias; default True without norm and False before a norm
            (the mean subtraction cancels it). The output layer always has a bias.
        rng: seed or Generator; the same seed gives the same weights with and without norm.
        norm_position: "before" (Linear -> norm -> activation, as in Ioffe & Szegedy) or "after"
            (Linear -> activation -> norm).
        norm_kwargs: passed to the norm layers (eps, momentum, num_groups, ...).
    """
    sizes = [_checks.check_positive_int(s, "sizes") for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least an input and an output width, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if norm not in (None, "batch", "layer", "group"):
        raise ValueError(f"norm: expected None, 'batch', 'layer' or 'group', got {norm!r}")
    if norm_position not in ("before", "after"):
        raise ValueError(f"norm_position: expected 'before' or 'after', got {norm_position!r}")
    if gain is None:
        gain = {"relu": np.sqrt(2.0), "tanh": 5.0 / 3.0}.get(activation, 1.0)
    if bias is None:
        bias = norm is None or norm_position == "after"
    rng = np.random.default_rng(rng)
    layers = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers.append(Linear(fan_in, fan_out, bias=bias, gain=gain, rng=rng))
        block = [ACTIVATIONS[activation]()]
        if norm is not None:
            normalizer = _make_norm(norm, fan_out, norm_kwargs)
            block = [normalizer] + block if norm_position == "before" else block + [normalizer]
        layers.extend(block)
    layers.append(Linear(sizes[-2], sizes[-1], bias=True, gain=1.0, rng=rng))
    return Sequential(*layers)


def _make_norm(kind, width, kwargs):
    if kind == "batch":
        return BatchNorm(width, **kwargs)
    if kind == "layer":
        return LayerNorm(width, **kwargs)
    kwargs = dict(kwargs)
    groups = kwargs.pop("num_groups", 4)
    return GroupNorm(groups, width, **kwargs)


def fold_linear_batch_norm(linear: Linear, bn: BatchNorm) -> Linear:
    """A new Linear layer equal to ``bn(linear(x))`` with ``bn`` in eval mode (see
    :func:`bnlib.functional.fold_batch_norm`). The inputs are not modified.

    Examples::

        >>> from bnlib import BatchNorm
        >>> linear, bn = Linear(3, 2, rng=0), BatchNorm(2).eval()
        >>> x = np.ones((4, 3))
        >>> bool(np.allclose(fold_linear_batch_norm(linear, bn)(x), bn(linear(x))))
        True
    """
    if not isinstance(linear, Linear) or not isinstance(bn, BatchNorm):
        raise TypeError(f"expected (Linear, BatchNorm), got ({type(linear).__name__}, {type(bn).__name__})")
    if bn.num_features != linear.out_features or bn.running_mean is None:
        raise ValueError(
            f"bn: expected {linear.out_features} features with running statistics, got {bn.num_features} "
            f"(track_running_stats={bn.track_running_stats})"
        )
    weight, bias = fold_batch_norm(
        linear.weight, linear.bias, bn.running_mean, bn.running_var, bn.gamma, bn.beta, bn.eps
    )
    folded = Linear(linear.in_features, linear.out_features, bias=True)
    folded.weight, folded.bias = weight.astype(np.float64), bias.astype(np.float64)
    return folded
