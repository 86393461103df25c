r"""Normalization layers: parameters, running statistics and the backward cache.

The math lives in :mod:`bnlib.functional`; these classes hold state and validate input before
touching it, so a rejected call changes nothing.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from . import functional as F
from .module import Module

__all__ = ["BatchNorm", "LayerNorm", "GroupNorm"]

_NOT_RUN = "backward() was called before forward(): run forward on a batch first"


class BatchNorm(Module):
    r"""Batch normalization over every axis except the feature axis.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \, \gamma + \beta

    Training mode normalizes with the batch mean and the BIASED batch variance and updates the
    running estimates; eval mode normalizes with the running estimates. Defaults follow
    ``torch.nn.BatchNorm1d/2d/3d``; :meth:`BatchNorm.keras` builds the Keras 3 variant.

    Args:
        num_features: C, the size of the feature axis.
        eps: added to the variance before the square root (> 0). Keras uses 1e-3.
        momentum: weight of the NEW batch in the running update, in [0, 1]
            (``running = (1 - momentum) * running + momentum * batch``). ``None`` gives the cumulative
            average over ``num_batches_tracked`` batches. Keras' ``momentum=0.99`` is the weight of the
            OLD value and corresponds to 0.01 here.
        axis: the feature axis. 1 for PyTorch's (N, C, ...) layouts, -1 for channels-last.
        affine: learn ``gamma`` (init 1) and ``beta`` (init 0). If False both are None.
        track_running_stats: keep ``running_mean`` (init 0), ``running_var`` (init 1) and
            ``num_batches_tracked``. If False they are None and eval mode uses batch statistics.
        virtual_batch_size: ghost batch norm (Hoffer et al. 2017). In training, split the batch into
            chunks of this many samples and normalize each with its own statistics; the running
            estimates are updated once per chunk. None (default) uses the whole batch.

    The running variance is updated with the UNBIASED batch variance ``m/(m-1) * var`` (PyTorch);
    Keras uses the biased one.

    Shape:
        Input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), or the same with C last and
        ``axis=-1``; float32 or float64. Output: same shape and dtype.

    Attributes:
        gamma, beta, running_mean, running_var: float64 arrays of shape (C,) (or None).
        num_batches_tracked: training forwards seen. training: the current mode.
        dgamma, dbeta: set by :meth:`backward`.
    """

    param_names = ("gamma", "beta")

    def __init__(
        self,
        num_features,
        *,
        eps=1e-5,
        momentum=0.1,
        axis=1,
        affine=True,
        track_running_stats=True,
        virtual_batch_size=None,
    ):
        super().__init__()
        self.num_features = _checks.check_positive_int(num_features, "num_features")
        self.eps = eps
        self.momentum = momentum
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
        self.axis = int(axis)
        self.virtual_batch_size = (
            None if virtual_batch_size is None else _checks.check_positive_int(virtual_batch_size, "virtual_batch_size")
        )
        self.convention = "pytorch"
        self.affine = bool(affine)
        self.gamma = np.ones(self.num_features) if affine else None
        self.beta = np.zeros(self.num_features) if affine else None
        self.track_running_stats = bool(track_running_stats)
        self.reset_running_stats()
        self.dgamma = None
        self.dbeta = None
        self._cache = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def keras(cls, num_features, *, momentum=0.99, epsilon=1e-3, axis=-1, center=True, scale=True):
        """The Keras 3 ``BatchNormalization`` layer's behaviour.

        ``momentum`` is the weight of the OLD moving value (``moving = moving * momentum +
        batch * (1 - momentum)``); the moving variance is updated with the BIASED batch variance;
        ``center``/``scale`` switch beta/gamma on or off; channels last by default. A training batch
        with one value per channel gives ``beta`` (Keras raises no error). Keras computes its
        moments as ``E[x^2] - E[x]^2``; bnlib keeps its stable two-pass variance.
        """
        momentum = _checks.check_momentum(momentum, allow_none=False)
        layer = cls(num_features, eps=epsilon, momentum=1.0 - momentum, axis=axis)
        layer.convention = "keras"
        layer.keras_momentum = momentum
        layer.gamma = np.ones(layer.num_features) if scale else None
        layer.beta = np.zeros(layer.num_features) if center else None
        layer.affine = bool(scale or center)
        return layer

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean = np.zeros(self.num_features)
            self.running_var = np.ones(self.num_features)
            self.num_batches_tracked = 0
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    # ---- validated hyper-parameters -------------------------------------------------------
    @property
    def eps(self):
        return self._eps

    @eps.setter
    def eps(self, value):
        self._eps = _checks.check_eps(value)

    @property
    def momentum(self):
        return self._momentum

    @momentum.setter
    def momentum(self, value):
        self._momentum = _checks.check_momentum(value)

    # Keras' names for the running buffers
    @property
    def moving_mean(self):
        return self.running_mean

    @property
    def moving_variance(self):
        return self.running_var

    # ---- forward / backward ---------------------------------------------------------------
    def _validate(self, x):
        x = _checks.as_float_array(x)
        _checks.check_ndim(x, (2, 3, 4, 5))
        axis = _checks.normalize_axis(self.axis, x.ndim)
        if x.shape[axis] != self.num_features:
            raise ValueError(
                f"input: expected {self.num_features} features on axis {self.axis}, got {x.shape[axis]} "
                f"(input shape {x.shape})"
            )
        for name in ("gamma", "beta"):
            value = getattr(self, name)
            if value is not None:
                _checks.check_vector(value, self.num_features, name)
        uses_batch_stats = self.training or not self.track_running_stats
        if uses_batch_stats:
            count = x.size // self.num_features
            if self.virtual_batch_size is not None and self.training:
                count = count // x.shape[0] * min(self.virtual_batch_size, x.shape[0])
            if count <= 1 and self.convention == "pytorch":
                raise ValueError(
                    "Expected more than 1 value per channel when training, got input shape "
                    f"{x.shape} (batch size times spatial size is {count})"
                )
        if self.training and self.virtual_batch_size is not None:
            # chunks update the running statistics one by one: check the whole batch first
            _checks.check_finite(x)
        return x, axis

    def forward(self, x):
        """Normalize ``x``; in training mode also update the running statistics."""
        x, axis = self._validate(x)
        self._cache = None
        if not (self.training or not self.track_running_stats):
            y, cache = F.batch_norm_forward(
                x, self.running_mean, self.running_var, self.gamma, self.beta, self.eps, axis=axis
            )
            self._cache = [(slice(None), cache)]
            return y
        chunks = self._chunks(x)
        if len(chunks) == 1:
            y, cache = self._forward_batch(x, axis)
            self._cache = [(slice(None), cache)]
            return y
        y = np.empty_like(x)
        self._cache = []
        for sl in chunks:
            y[sl], cache = self._forward_batch(x[sl], axis)
            self._cache.append((sl, cache))
        return y

    def _chunks(self, x):
        v = self.virtual_batch_size
        if not self.training or v is None or v >= x.shape[0]:
            return [slice(None)]
        return [slice(start, start + v) for start in range(0, x.shape[0], v)]

    def _forward_batch(self, x, axis):
        # raises on a NaN/inf batch before any running statistic is touched
        y, mean, var, cache = F.batch_norm_train_forward(x, self.gamma, self.beta, self.eps, axis=axis)
        if self.training and self.track_running_stats:
            self._update_running(mean, var, x.size // self.num_features)
        return y, cache

    def _update_running(self, mean, var, count):
        self.num_batches_tracked += 1
        if self.convention == "keras":
            weight = self.momentum  # stored as 1 - keras momentum: the weight of the new batch
            batch_var = var
        else:
            weight = F.cumulative_momentum(self.num_batches_tracked) if self.momentum is None else self.momentum
            batch_var = F.unbiased(var, count)
        F.update_running(self.running_mean, mean, weight)
        F.update_running(self.running_var, batch_var, weight)

    def backward(self, dy):
        """Gradient with respect to the input of the last forward; sets ``dgamma`` and ``dbeta``.

        In training mode the batch statistics depend on the input and the full closed form is used;
        in eval mode (running statistics) ``dx = gamma * dy / sqrt(running_var + eps)``.
        """
        if self._cache is None:
            raise ValueError(_NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        full_shape = _cache_shape(self._cache)
        _checks.check_same_shape(dy, full_shape)
        if len(self._cache) == 1:
            dx, dgamma, dbeta = F.batch_norm_backward(dy, self._cache[0][1])
        else:
            dx = np.empty_like(dy)
            dgamma = dbeta = 0.0
            for sl, cache in self._cache:
                dx[sl], dg, db = F.batch_norm_backward(dy[sl], cache)
                dgamma, dbeta = dgamma + dg, dbeta + db
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return dx

    def __repr__(self):
        momentum = self.keras_momentum if self.convention == "keras" else self.momentum
        return (
            f"BatchNorm({self.num_features}, eps={self.eps:g}, momentum={momentum}, axis={self.axis}, "
            f"convention={self.convention!r}, training={self.training})"
        )


def _cache_shape(cache_list):
    shapes = [c.shape for _, c in cache_list]
    if len(shapes) == 1:
        return shapes[0]
    return (sum(s[0] for s in shapes),) + shapes[0][1:]


class LayerNorm(Module):
    r"""Layer normalization (``torch.nn.LayerNorm``): per-sample statistics over the trailing dims.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \odot \gamma + \beta

    Mean and biased variance are taken over the last ``len(normalized_shape)`` axes of each sample;
    ``gamma`` (ones) and ``beta`` (zeros) have shape ``normalized_shape``. No running statistics:
    train and eval modes compute the same thing, and batch size 1 is fine.

    Shape:
        Input (*, normalized_shape), float32 or float64. Output: same.
    """

    param_names = ("gamma", "beta")

    def __init__(self, normalized_shape, *, eps=1e-5, elementwise_affine=True):
        super().__init__()
        shape = tuple(np.atleast_1d(normalized_shape).tolist())
        for s in shape:
            _checks.check_positive_int(s, "normalized_shape")
        self.normalized_shape = shape
        self.eps = _checks.check_eps(eps)
        self.gamma = np.ones(shape) if elementwise_affine else None
        self.beta = np.zeros(shape) if elementwise_affine else None
        self.dgamma = self.dbeta = None
        self._cache = None

    def forward(self, x):
        x = _checks.as_float_array(x)
        for name in ("gamma", "beta"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != self.normalized_shape:
                raise ValueError(f"{name}: expected shape {self.normalized_shape}, got {np.shape(value)}")
        y, self._cache = F.layer_norm_forward(x, self.normalized_shape, self.gamma, self.beta, self.eps)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise ValueError(_NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        _checks.check_same_shape(dy, self._cache.shape)
        dx, dgamma, dbeta = F.layer_norm_backward(dy, self._cache, self.gamma)
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return dx

    def __repr__(self):
        return f"LayerNorm({self.normalized_shape}, eps={self.eps:g})"


class GroupNorm(Module):
    r"""Group normalization (``torch.nn.GroupNorm``, Wu & He 2018).

    The C channels are split into ``num_groups`` groups; each sample is normalized with the mean and
    biased variance of each group (over its channels and all spatial positions). Per-channel
    ``gamma``/``beta``. ``num_groups=1`` is layer norm over (C, H, W); ``num_groups=C`` is instance norm.

    Shape:
        Input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W). Output: same.
    """

    param_names = ("gamma", "beta")

    def __init__(self, num_groups, num_channels, *, eps=1e-5, affine=True):
        super().__init__()
        self.num_groups = _checks.check_positive_int(num_groups, "num_groups")
        self.num_channels = _checks.check_positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"num_groups: expected a divisor of num_channels={self.num_channels}, got {self.num_groups}"
            )
        self.eps = _checks.check_eps(eps)
        self.gamma = np.ones(self.num_channels) if affine else None
        self.beta = np.zeros(self.num_channels) if affine else None
        self.dgamma = self.dbeta = None
        self._cache = None

    def forward(self, x):
        x = _checks.as_float_array(x)
        _checks.check_ndim(x, (2, 3, 4, 5))
        if x.shape[1] != self.num_channels:
            raise ValueError(
                f"input: expected {self.num_channels} channels on axis 1, got {x.shape[1]} (input shape {x.shape})"
            )
        for name in ("gamma", "beta"):
            value = getattr(self, name)
            if value is not None:
                _checks.check_vector(value, self.num_channels, name)
        y, self._cache = F.group_norm_forward(x, self.num_groups, self.gamma, self.beta, self.eps)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise ValueError(_NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        _checks.check_same_shape(dy, self._cache.shape)
        dx, dgamma, dbeta = F.group_norm_backward(dy, self._cache, self.gamma)
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return dx

    def __repr__(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps:g})"
