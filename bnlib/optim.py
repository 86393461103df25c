"""Stochastic gradient descent with momentum (PyTorch's update rule)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["SGD"]


class SGD:
    """``v = mu * v + (g + wd * p)``; ``p -= lr * v`` (``torch.optim.SGD`` with momentum ``mu``).

    ``params`` are the ``(module, name)`` pairs from ``Module.parameters()``. Parameters are updated
    in place, so arrays the user holds stay in sync; gradients are read from ``module.d<name>``.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = list(params)
        for name, value, low in (("lr", lr, 0.0), ("momentum", momentum, 0.0), ("weight_decay", weight_decay, 0.0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < low:
                raise ValueError(f"{name}: expected a finite number >= {low}, got {value!r}")
        if momentum >= 1:
            raise ValueError(f"momentum: expected a value in [0, 1), got {momentum}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self._velocity = {}

    def step(self):
        for module, name in self.params:
            param = getattr(module, name)
            grad = getattr(module, "d" + name, None)
            if param is None or grad is None:
                continue
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            key = (id(module), name)
            if self.momentum:
                v = self._velocity.get(key)
                v = grad.copy() if v is None else self.momentum * v + grad
                self._velocity[key] = v
                grad = v
            param -= self.lr * grad
