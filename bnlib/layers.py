r"""Normalization layers: parameters, running statistics and the backward cache; no math.

Each layer validates its input and its own (possibly reassigned) attributes, then calls
:mod:`bnlib.functional`. Everything is checked before anything changes, so a rejected call leaves
the parameters, the running statistics, the counter and the previous backward cache as they were.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from . import functional as F
from .module import Module

__all__ = ["BatchNorm", "LayerNorm", "GroupNorm"]

NOT_RUN = "backward() was called before forward(): run forward on a batch first"


class BatchNorm(Module):
    r"""Batch normalization over every axis except the feature axis (Ioffe & Szegedy 2015).

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \, \gamma + \beta

    Training mode normalizes with the batch mean and the BIASED batch variance and updates the
    running estimates; eval mode normalizes with the running estimates. The defaults are
    ``torch.nn.BatchNorm1d/2d/3d``'s; :meth:`BatchNorm.keras` sets the options to Keras 3's.

    Args:
        num_features: C, the size of the feature axis.
        eps: added to the variance before the square root (> 0). Default 1e-5 (Keras: 1e-3).
        momentum: the weight of the NEW batch in the running update, in [0, 1], always:
            ``running = (1 - momentum) * running + momentum * batch``. Default 0.1. ``None`` gives
            the cumulative average over ``num_batches_tracked`` batches. (Keras calls the weight
            of the OLD value momentum: its 0.99 is 0.01 here; :meth:`keras` converts.)
        axis: the feature axis: 1 for PyTorch's (N, C, ...) layouts, -1 for channels last.
        affine: learn ``gamma`` (init 1) and ``beta`` (init 0). If False both are None.
        track_running_stats: keep ``running_mean`` (init 0), ``running_var`` (init 1) and
            ``num_batches_tracked``. If False they are None and eval mode uses batch statistics.
        virtual_batch_size: ghost batch norm (Hoffer et al. 2017): in training, normalize each
            chunk of this many samples (along axis 0) with its own statistics; the running
            estimates are updated once per chunk. None (default): the whole batch.
        unbiased_running_var: feed ``m/(m-1) * var`` to ``running_var`` (True, PyTorch) or the
            biased ``var`` (False, Keras 3).
        allow_single_value: a training batch with one value per feature normalizes to ``beta``
            (True, Keras) instead of raising (False, PyTorch). Needs ``unbiased_running_var=False``
            when running statistics are tracked (one value has no unbiased variance).
        fast: use the tuned kernels of :mod:`bnlib._kernels` for training (same numbers to
            rounding as :mod:`bnlib.functional`'s readable code). Default True.

    Shape:
        Input: (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), or C on ``axis``; float32 or
        float64. Output: same shape and dtype.

    Attributes:
        gamma, beta: float64 arrays of shape (C,), or None. ``dgamma``, ``dbeta`` after backward.
        running_mean, running_var: float64 arrays of shape (C,), or None; num_batches_tracked: int.
        training: the current mode (:meth:`train`, :meth:`eval`).

    Examples::

        >>> bn = BatchNorm(2)
        >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> bn(x).round(4).tolist()                           # training mode: batch statistics
        [[-1.0, -1.0], [1.0, 1.0]]
        >>> bn.running_mean.tolist(), bn.running_var.round(6).tolist()
        ([0.2, 2.0], [1.1, 20.9])
        >>> bn.backward(np.ones_like(x)).round(12).tolist()   # a constant gradient cancels
        [[0.0, 0.0], [0.0, 0.0]]
        >>> bn.eval()(x).round(3).tolist()                    # eval: the running estimates
        [[0.763, 1.75], [2.67, 6.125]]
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
        unbiased_running_var=True,
        allow_single_value=False,
        fast=True,
    ):
        super().__init__()
        self.num_features = _checks.check_positive_int(num_features, "num_features")
        self.eps = eps
        self.momentum = momentum
        self.axis = _checks.check_int(axis, "axis")
        self.virtual_batch_size = (
            None if virtual_batch_size is None else _checks.check_positive_int(virtual_batch_size, "virtual_batch_size")
        )
        affine = _checks.check_bool(affine, "affine")
        self.track_running_stats = _checks.check_bool(track_running_stats, "track_running_stats")
        self.unbiased_running_var = _checks.check_bool(unbiased_running_var, "unbiased_running_var")
        self.allow_single_value = _checks.check_bool(allow_single_value, "allow_single_value")
        if self.allow_single_value and self.unbiased_running_var and self.track_running_stats:
            raise ValueError(
                "allow_single_value=True needs unbiased_running_var=False when running statistics are tracked: "
                "a batch with one value per feature has no unbiased variance"
            )
        self.fast = _checks.check_bool(fast, "fast")
        self.gamma = np.ones(self.num_features) if affine else None
        self.beta = np.zeros(self.num_features) if affine else None
        self.reset_running_stats()
        self.dgamma = self.dbeta = None
        self._cache = None

    @classmethod
    def keras(cls, num_features, *, momentum=0.99, epsilon=1e-3, axis=-1, center=True, scale=True, **options):
        """A layer that behaves like Keras 3's ``BatchNormalization(axis, momentum, epsilon, center, scale)``.

        Keras' ``momentum`` is the weight of the OLD moving value; the layer stores
        ``momentum = 1 - keras_momentum`` (the weight of the new batch, as always in bnlib). The moving
        variance gets the BIASED batch variance (``unbiased_running_var=False``), a batch with one
        value per feature gives ``beta`` (``allow_single_value=True``), ``center``/``scale`` switch
        beta/gamma, channels are last. Other options (``virtual_batch_size``, ``fast``) pass through.
        Keras itself computes its moments as ``E[x^2] - E[x]^2``; bnlib keeps its stable variance.
        (The biased moving variance is Keras 3's rule; tf.keras 2 stored the unbiased one on its fused
        path, its default where possible: chapter 8 of the book.)

        Examples::

            >>> bn = BatchNorm.keras(3)
            >>> bn.momentum, bn.keras_momentum, bn.eps, bn.axis, bn.unbiased_running_var
            (0.01, 0.99, 0.001, -1, False)
        """
        keras_momentum = _checks.check_momentum(momentum, allow_none=False, name="momentum (Keras)")
        layer = cls(
            num_features,
            eps=epsilon,
            momentum=round(1.0 - keras_momentum, 15),
            axis=axis,
            unbiased_running_var=False,
            allow_single_value=True,
            **options,
        )
        if not _checks.check_bool(scale, "scale"):
            layer.gamma = None
        if not _checks.check_bool(center, "center"):
            layer.beta = None
        return layer

    def reset_running_stats(self):
        """Running mean 0, running variance 1, counter 0 (or all None without tracking)."""
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
        """Weight of the new batch in the running update (None: cumulative average)."""
        return self._momentum

    @momentum.setter
    def momentum(self, value):
        self._momentum = _checks.check_momentum(value)

    @property
    def keras_momentum(self):
        """The same momentum in Keras' convention (weight of the old value), or None."""
        return None if self.momentum is None else round(1.0 - self.momentum, 15)

    @property
    def moving_mean(self):
        """Keras' name for ``running_mean``."""
        return self.running_mean

    @property
    def moving_variance(self):
        """Keras' name for ``running_var``."""
        return self.running_var

    # ---- forward / backward ---------------------------------------------------------------
    def _check_state(self, x):
        """Validate the input and every attribute the forward reads; returns ``(x, axis)``."""
        x = _checks.as_float_array(x)
        _checks.check_ndim(x, (2, 3, 4, 5))
        axis = _checks.normalize_axis(self.axis, x.ndim)
        if x.shape[axis] != self.num_features:
            raise ValueError(
                f"input: expected {self.num_features} features on axis {self.axis}, got {x.shape[axis]} "
                f"(input shape {x.shape})"
            )
        for name in ("gamma", "beta"):
            _checks.check_param(getattr(self, name), name, (self.num_features,))
        if self.track_running_stats:
            for name in ("running_mean", "running_var"):
                _checks.check_buffer(getattr(self, name), self.num_features, name)
            if np.shares_memory(self.running_mean, self.running_var):
                raise ValueError("running_mean and running_var: expected two separate arrays, got shared memory")
            count = self.num_batches_tracked
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
                raise ValueError(f"num_batches_tracked: expected an int >= 0, got {count!r}")
        elif self.running_mean is not None or self.running_var is not None:
            raise ValueError("running_mean/running_var: expected None with track_running_stats=False")
        _checks.check_bool(self.training, "training")
        return x, axis

    def _chunks(self, x, axis):
        v = self.virtual_batch_size
        if not self.training or v is None or v >= x.shape[0]:
            return [slice(None)]
        if axis == 0:
            raise ValueError("virtual_batch_size: ghost batches split axis 0, which is the feature axis here")
        return [slice(start, start + v) for start in range(0, x.shape[0], v)]

    def forward(self, x):
        """Normalize ``x``; in training mode also update the running statistics."""
        x, axis = self._check_state(x)
        common = dict(eps=self.eps, axis=axis, return_cache=True)
        if not self.training and self.track_running_stats:
            y, cache = F.batch_norm(x, self.running_mean, self.running_var, self.gamma, self.beta, False, **common)
            self._cache = [(slice(None), cache)]
            return y
        update = self.training and self.track_running_stats
        chunks = self._chunks(x, axis)
        axes = F.reduction_axes(x.ndim, axis)
        for sl in chunks:  # check every chunk before the first one updates anything
            count = _checks.count_over(x[sl].shape, axes)
            if count <= 1 and not self.allow_single_value:
                raise ValueError(
                    "Expected more than 1 value per channel when training, got input shape "
                    f"{x[sl].shape} (batch size times spatial size is {count})"
                    + (f"; the last ghost batch of {x[sl].shape[0]} sample(s) is too small" if len(chunks) > 1 else "")
                )
            if count <= 1 and update and self.unbiased_running_var:
                raise ValueError(
                    f"input: one value per channel (shape {x[sl].shape}) has no unbiased variance; "
                    "set unbiased_running_var=False (Keras 3's convention) or use a larger batch"
                )
        if update and len(chunks) > 1:  # one chunk: functional.batch_norm refuses it before any update
            _checks.check_finite(x)
        options = dict(
            unbiased_running_var=self.unbiased_running_var,
            allow_single_value=self.allow_single_value,
            fast=self.fast,
            **common,
        )
        outputs, caches = [], []
        for sl in chunks:
            momentum, tracked = 0.0, self.num_batches_tracked
            if update:
                tracked += 1
                momentum = F.cumulative_momentum(tracked) if self.momentum is None else self.momentum
            y, cache = F.batch_norm(
                x[sl],
                self.running_mean if update else None,
                self.running_var if update else None,
                self.gamma,
                self.beta,
                True,
                momentum,
                **options,
            )
            self.num_batches_tracked = tracked  # only once the update went through
            outputs.append(y)
            caches.append((sl, cache))
        self._cache = caches
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)

    def backward(self, dy):
        """Gradient with respect to the input of the last forward; sets ``dgamma`` and ``dbeta``.

        In training mode the batch statistics depend on the input and the closed form of
        :func:`bnlib.functional.batch_norm_backward` applies; in eval mode
        ``dx = gamma * dy / sqrt(running_var + eps)``.
        """
        if self._cache is None:
            raise ValueError(NOT_RUN)
        dy = _checks.as_float_array(dy, "dy")
        shapes = [cache.shape for _, cache in self._cache]
        full = shapes[0] if len(shapes) == 1 else (sum(s[0] for s in shapes),) + shapes[0][1:]
        _checks.check_same_shape(dy, full)
        parts, dgamma, dbeta = [], 0.0, 0.0
        for sl, cache in self._cache:
            dx, dg, db = F.batch_norm_backward(dy[sl], cache, fast=self.fast)
            parts.append(dx)
            dgamma, dbeta = dgamma + dg, dbeta + db
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def __repr__(self):
        return (
            f"BatchNorm({self.num_features}, eps={self.eps:g}, momentum={self.momentum}, axis={self.axis}, "
            f"unbiased_running_var={self.unbiased_running_var}, training={self.training})"
        )


class BatchRenorm(BatchNorm):
    r"""Batch renormalization (Ioffe 2017): batch norm whose training output is corrected towards
    the running statistics, so that training and inference compute (nearly) the same function.

    .. math:: y = \gamma\left(\frac{x - \mu_B}{\sigma_B}\, r + d\right) + \beta

    with ``r`` and ``d`` clipped by ``rmax`` and ``dmax`` and held constant in the backward (see
    :func:`bnlib.functional.batch_renorm_train`). Eval mode is batch norm's. The running statistics
    are updated as in :class:`BatchNorm` (PyTorch's convention: ``momentum`` is the weight of the new
    batch, unbiased running variance). With ``rmax=1, dmax=0`` the layer is batch norm exactly.

    Args:
        num_features: C.
        rmax, dmax: the clipping limits (>= 1 and >= 0). Default 3 and 5, the paper's final values.
        schedule: None (fixed limits) or ``(warmup, r_end, d_end)`` steps of the paper's relaxation
            (:func:`bnlib.functional.renorm_limits`, with the step = ``num_batches_tracked``);
            ``BatchRenorm.PAPER_SCHEDULE`` is (5000, 40000, 25000).
        eps, momentum, axis, affine: as in :class:`BatchNorm` (momentum None: cumulative average).

    Shape:
        As :class:`BatchNorm`.

    Examples::

        >>> rn = BatchRenorm(1, momentum=0.0, eps=1e-12)   # momentum 0: the running statistics stay put
        >>> rn.running_mean[:], rn.running_var[:] = 0.0, 4.0
        >>> rn(np.array([[0.0], [2.0]])).ravel().round(6).tolist()  # r = 1/2, d = 1/2: the eval output
        [0.0, 1.0]
    """

    PAPER_SCHEDULE = (5000, 40000, 25000)

    def __init__(self, num_features, *, rmax=3.0, dmax=5.0, schedule=None, eps=1e-5, momentum=0.1, axis=1, affine=True):
        super().__init__(num_features, eps=eps, momentum=momentum, axis=axis, affine=affine, fast=False)
        self.rmax, self.dmax, self.schedule = rmax, dmax, schedule
        self.limits()  # validates the three
        self._renorm = None

    def limits(self):
        """``(rmax, dmax)`` at the current step: fixed, or from the relaxation schedule."""
        if self.schedule is None:
            return _checks.check_at_least(self.rmax, "rmax", 1.0), _checks.check_at_least(self.dmax, "dmax", 0.0)
        return F.renorm_limits(self.num_batches_tracked, rmax=self.rmax, dmax=self.dmax, schedule=self.schedule)

    def forward(self, x):
        if not self.training:
            self._renorm = None
            return super().forward(x)
        x, axis = self._check_state(x)
        if self.virtual_batch_size is not None:
            raise ValueError(f"virtual_batch_size: BatchRenorm has no ghost batches, got {self.virtual_batch_size}")
        rmax, dmax = self.limits()
        y, cache = F.batch_renorm_train(
            x, self.running_mean, self.running_var, self.gamma, self.beta, self.eps, rmax, dmax, axis=axis
        )
        _checks.check_finite(x)  # nothing is updated from a batch with NaN or inf
        tracked = self.num_batches_tracked + 1
        momentum = F.cumulative_momentum(tracked) if self.momentum is None else self.momentum
        count = _checks.count_over(x.shape, F.reduction_axes(x.ndim, axis))
        F.update_running(self.running_mean, cache.batch.mean, momentum)
        batch_var = F.unbiased(cache.batch.var, count) if self.unbiased_running_var else cache.batch.var
        F.update_running(self.running_var, batch_var, momentum)
        self.num_batches_tracked = tracked
        self._renorm, self._cache = cache, None
        return y

    @property
    def corrections(self):
        """``(r, d)`` per feature from the last training-mode forward (after clipping), or None
        before one and after an eval-mode forward: how far the batch's statistics were from the
        running ones, and whether the limits were hit (``|log r| = log rmax``, ``|d| = dmax``)."""
        return None if self._renorm is None else (self._renorm.r.copy(), self._renorm.d.copy())

    def backward(self, dy):
        if self._renorm is None:
            return super().backward(dy)
        dx, dgamma, dbeta = F.batch_renorm_backward(dy, self._renorm)
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return dx

    def __repr__(self):
        return (
            f"BatchRenorm({self.num_features}, rmax={self.rmax}, dmax={self.dmax}, schedule={self.schedule}, "
            f"eps={self.eps:g}, momentum={self.momentum}, axis={self.axis}, training={self.training})"
        )


class LayerNorm(Module):
    r"""Layer normalization (``torch.nn.LayerNorm``, Ba et al. 2016).

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \odot \gamma + \beta

    Mean and biased variance per sample over the last ``len(normalized_shape)`` axes. No running
    statistics: train and eval modes compute the same thing, and a batch of one is fine.

    Args:
        normalized_shape: the trailing shape normalized over (an int or a tuple).
        eps: added to the variance (> 0). Default 1e-5.
        elementwise_affine: learn ``gamma`` (ones) and ``beta`` (zeros) of shape ``normalized_shape``.

    Shape:
        Input (*, normalized_shape), float32 or float64. Output: same.

    Examples::

        >>> ln = LayerNorm(2, eps=1e-12)
        >>> ln(np.array([[1.0, 3.0], [-5.0, 5.0]])).round(6).tolist()
        [[-1.0, 1.0], [-1.0, 1.0]]
    """

    param_names = ("gamma", "beta")

    def __init__(self, normalized_shape, *, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = _checks.check_shape(normalized_shape, "normalized_shape")
        self.eps = _checks.check_eps(eps)
        affine = _checks.check_bool(elementwise_affine, "elementwise_affine")
        self.gamma = np.ones(self.normalized_shape) if affine else None
        self.beta = np.zeros(self.normalized_shape) if affine else None
        self.dgamma = self.dbeta = None
        self._cache = None

    def forward(self, x):
        for name in ("gamma", "beta"):
            _checks.check_param(getattr(self, name), name, self.normalized_shape)
        y, cache = F.layer_norm_forward(x, self.normalized_shape, self.gamma, self.beta, _checks.check_eps(self.eps))
        self._cache = (cache, self.gamma)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise ValueError(NOT_RUN)
        cache, gamma = self._cache
        dx, dgamma, dbeta = F.layer_norm_backward(dy, cache, gamma)
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return dx

    def __repr__(self):
        return f"LayerNorm({self.normalized_shape}, eps={self.eps:g})"


class RMSNorm(Module):
    r"""Root-mean-square normalization (``torch.nn.RMSNorm``; Zhang & Sennrich 2019).

    .. math:: y = \frac{x}{\sqrt{\overline{x^2} + \epsilon}} \odot \gamma

    The mean of the squares per sample over the last ``len(normalized_shape)`` axes; no centring,
    no ``beta``, no running statistics (train and eval are the same). Transformers use it (or layer
    norm) because it needs no batch: each token is normalized on its own.

    Args:
        normalized_shape: the trailing shape normalized over (an int or a tuple).
        eps: added to the mean square (>= 0), or None (default) for PyTorch's choice, the machine
            epsilon of the input's dtype.
        elementwise_affine: learn ``gamma`` (ones) of shape ``normalized_shape``.

    Shape:
        Input (*, normalized_shape), float32 or float64. Output: same.

    Examples::

        >>> rms = RMSNorm(2, eps=0.0)
        >>> rms(np.array([[3.0, 4.0], [-1.0, 1.0]])).round(4).tolist()
        [[0.8485, 1.1314], [-1.0, 1.0]]
    """

    param_names = ("gamma",)

    def __init__(self, normalized_shape, *, eps=None, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = _checks.check_shape(normalized_shape, "normalized_shape")
        self.eps = F.check_rms_eps(eps)
        affine = _checks.check_bool(elementwise_affine, "elementwise_affine")
        self.gamma = np.ones(self.normalized_shape) if affine else None
        self.dgamma = None
        self._cache = None

    def forward(self, x):
        _checks.check_param(self.gamma, "gamma", self.normalized_shape)
        y, cache = F.rms_norm_forward(x, self.normalized_shape, self.gamma, self.eps)
        self._cache = (cache, self.gamma)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise ValueError(NOT_RUN)
        cache, gamma = self._cache
        dx, dgamma = F.rms_norm_backward(dy, cache, gamma)
        self.dgamma = dgamma if self.gamma is not None else None
        return dx

    def __repr__(self):
        return f"RMSNorm({self.normalized_shape}, eps={self.eps})"


class GroupNorm(Module):
    r"""Group normalization (``torch.nn.GroupNorm``, Wu & He 2018).

    The C channels are split into ``num_groups`` groups; each sample is normalized with the mean
    and biased variance of each group (over its channels and all spatial positions).
    ``num_groups=1`` is layer norm over (C, H, W); ``num_groups=C`` is instance norm.

    Args:
        num_groups: G, a divisor of ``num_channels``.
        num_channels: C.
        eps: added to the variance (> 0). Default 1e-5.
        affine: learn per-channel ``gamma`` (ones) and ``beta`` (zeros).

    Shape:
        Input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W). Output: same. Each group must
        hold more than one value.

    Examples::

        >>> gn = GroupNorm(1, 2, eps=1e-12)
        >>> gn(np.array([[1.0, 3.0]])).round(6).tolist()
        [[-1.0, 1.0]]
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
        affine = _checks.check_bool(affine, "affine")
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
            _checks.check_param(getattr(self, name), name, (self.num_channels,))
        y, cache = F.group_norm_forward(x, self.num_groups, self.gamma, self.beta, _checks.check_eps(self.eps))
        self._cache = (cache, self.gamma)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise ValueError(NOT_RUN)
        cache, gamma = self._cache
        dx, dgamma, dbeta = F.group_norm_backward(dy, cache, gamma)
        self.dgamma = dgamma if self.gamma is not None else None
        self.dbeta = dbeta if self.beta is not None else None
        return dx

    def __repr__(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps:g})"
