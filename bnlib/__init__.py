"""bnlib: batch normalization from scratch in NumPy, matching PyTorch, with Keras' conventions on request.

Importing bnlib needs NumPy only. Plotting helpers (``bnlib.viz``) need matplotlib and, for live
controls, ipywidgets; the digits loader needs scikit-learn.
"""

from . import data, experiments, functional, gradcheck, nn, optim
from .layers import BatchNorm, GroupNorm, LayerNorm
from .module import Module
from .nn import Identity, Linear, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, mlp
from .optim import SGD

__version__ = "0.1.0"

__all__ = [
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    "Module",
    "Linear",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Identity",
    "Sequential",
    "SoftmaxCrossEntropy",
    "SGD",
    "mlp",
    "functional",
    "nn",
    "optim",
    "data",
    "experiments",
    "gradcheck",
]
