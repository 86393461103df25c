"""Stochastic gradient descent with momentum and weight decay (PyTorch's update rule)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["SGD"]


class SGD:
    """``v = mu * v + (g + wd * p)``; ``p -= lr * v`` (``torch.optim.SGD`` with momentum ``mu``).

    Args:
        params: the ``(module, name)`` pairs of ``Module.parameters()``.
        lr: learning rate (>= 0). momentum: in [0, 1). weight_decay: L2 coefficient (>= 0).

    Parameters are updated in place, so arrays the user holds stay in sync; gradients are read from
    ``module.d<name>``. A parameter whose gradient is None (not computed yet) is skipped; one that is
    not a float array, or whose gradient has another shape, is an error.

    Examples::

        >>> from bnlib import Linear
        >>> layer = Linear(2, 1, rng=0)
        >>> layer.weight[...] = 1.0
        >>> layer.dweight = np.array([[0.5, -0.5]])
        >>> SGD(layer.parameters(), lr=0.1).step()
        >>> layer.weight.tolist()
        [[0.95, 1.05]]
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = list(params)
        for i, pair in enumerate(self.params):
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
                raise TypeError(f"params[{i}]: expected a (module, name) pair from Module.parameters(), got {pair!r}")
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if momentum >= 1:
            raise ValueError(f"momentum: expected a value in [0, 1), got {momentum}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self._velocity = {}

    def step(self):
        """One update of every parameter. All are checked first, so an error changes none."""
        updates = []
        for module, name in self.params:
            param = getattr(module, name)
            grad = getattr(module, "d" + name, None)
            if param is None or grad is None:
                continue
            if not isinstance(param, np.ndarray) or param.dtype.kind != "f":
                raise TypeError(
                    f"{type(module).__name__}.{name}: expected a NumPy float array, got {type(param).__name__}"
                )
            if not param.flags.writeable:
                raise ValueError(f"{type(module).__name__}.{name}: expected a writable array, got a read-only one")
            grad = np.asarray(grad)
            if grad.shape != param.shape:
                raise ValueError(
                    f"{type(module).__name__}.d{name}: expected shape {param.shape} (the parameter's), got {grad.shape}"
                )
            updates.append((module, name, param, grad))
        for module, name, param, grad in updates:
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            if self.momentum:
                key = (id(module), name)
                v = self._velocity.get(key)
                v = grad.copy() if v is None or v.shape != grad.shape else self.momentum * v + grad
                self._velocity[key] = v
                grad = v
            param -= self.lr * grad
