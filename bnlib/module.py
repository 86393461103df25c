"""The base class every bnlib layer shares: train/eval switches, parameters, call syntax.

A parameter is a NumPy float array stored as an attribute (``weight``, ``gamma``, ...); after
``backward`` its gradient is the attribute of the same name with a ``d`` in front (``dweight``,
``dgamma``). Optimizers look both up by name on every step, so a user may assign a new array to a
parameter at any time (the layer checks it at the next forward).
"""

from __future__ import annotations


class Module:
    """Base class: ``forward``/``backward`` neighbours, ``train()``/``eval()``, ``parameters()``.

    Examples::

        >>> from bnlib import BatchNorm
        >>> bn = BatchNorm(3).eval()
        >>> bn.training, [name for _, name in bn.parameters()]
        (False, ['gamma', 'beta'])
    """

    #: names of this module's own parameter attributes (None-valued ones are skipped)
    param_names: tuple[str, ...] = ()

    def __init__(self):
        self.training = True

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def children(self):
        return []

    def modules(self):
        """This module and every module below it, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def train(self, mode: bool = True):
        """Switch this module and its children to training mode (or eval mode for ``mode=False``)."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode: expected a bool, got {type(mode).__name__}")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Switch to inference mode: batch norm uses its running statistics."""
        return self.train(False)

    def parameters(self):
        """``(module, name)`` pairs of every parameter in this module and its children."""
        pairs = [(self, name) for name in self.param_names if getattr(self, name, None) is not None]
        for child in self.children():
            pairs.extend(child.parameters())
        return pairs

    def zero_grad(self):
        for module, name in self.parameters():
            setattr(module, "d" + name, None)

    def __repr__(self):
        return f"{type(self).__name__}()"
