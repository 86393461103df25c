"""bnlib: batch normalization from scratch in NumPy, matching PyTorch, with Keras' conventions on request.

Importing bnlib needs NumPy only (the digits loader in :mod:`bnlib.data` needs scikit-learn when
called). Modules: :mod:`~bnlib.functional` (the math), :mod:`~bnlib.layers` (state),
:mod:`~bnlib.nn` (the layers around them), :mod:`~bnlib.optim`, :mod:`~bnlib.train`,
:mod:`~bnlib.data`, :mod:`~bnlib.gradcheck`. The book's machinery lives in the separate ``bnbook``
package, which imports bnlib and never the reverse.
"""

from . import data, functional, gradcheck, nn, optim, train
from .layers import BatchNorm, BatchRenorm, GroupNorm, LayerNorm, RMSNorm
from .module import Module
from .nn import Dropout, Identity, Linear, ReLU, Residual, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, mlp
from .optim import SGD

__version__ = "0.2.0"

__all__ = [
    "BatchNorm",
    "BatchRenorm",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "Module",
    "Linear",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Identity",
    "Dropout",
    "Residual",
    "Sequential",
    "SoftmaxCrossEntropy",
    "SGD",
    "mlp",
    "functional",
    "nn",
    "optim",
    "train",
    "data",
    "gradcheck",
]
