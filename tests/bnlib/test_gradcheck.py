"""Every layer's backward against central finite differences (float64), and a planted bug."""

import numpy as np
import pytest

import bnlib
from bnlib.gradcheck import check_layer, numerical_gradient, relative_error

CORRECT = 1e-6  # a correct float64 gradient agrees to ~1e-9; a wrong one is off by order one

LAYERS = {
    "batchnorm-2d": (lambda: bnlib.BatchNorm(3), (6, 3)),
    "batchnorm-4d": (lambda: bnlib.BatchNorm(2), (3, 2, 2, 2)),
    "batchnorm-channels-last": (lambda: bnlib.BatchNorm(2, axis=-1), (3, 2, 2)),
    "batchnorm-eval": (lambda: _trained_bn().eval(), (5, 3)),
    "batchnorm-no-affine": (lambda: bnlib.BatchNorm(3, affine=False), (5, 3)),
    "batchnorm-ghost": (lambda: bnlib.BatchNorm(3, virtual_batch_size=3), (6, 3)),
    "batchnorm-keras": (lambda: bnlib.BatchNorm.keras(3, scale=False), (5, 3)),
    "layernorm": (lambda: bnlib.LayerNorm((2, 3)), (2, 2, 3)),
    "groupnorm": (lambda: bnlib.GroupNorm(2, 4), (2, 4, 3)),
    "linear": (lambda: bnlib.Linear(4, 3, rng=0), (5, 4)),
    "linear-no-bias": (lambda: bnlib.Linear(4, 3, bias=False, rng=0), (5, 4)),
    "relu": (lambda: bnlib.ReLU(), (4, 5)),
    "tanh": (lambda: bnlib.Tanh(), (4, 5)),
    "sigmoid": (lambda: bnlib.Sigmoid(), (4, 5)),
    "mlp-with-bn": (lambda: bnlib.mlp([4, 5, 5, 3], activation="tanh", norm="batch", rng=0), (6, 4)),
}


def _trained_bn():
    layer = bnlib.BatchNorm(3)
    layer.gamma = np.array([0.5, 1.5, -2.0])
    layer.beta = np.array([0.1, 0.2, 0.3])
    layer(np.random.default_rng(9).normal(2, 3, size=(16, 3)))
    return layer


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backward_matches_finite_differences(name):
    make, shape = LAYERS[name]
    layer = make()
    x = np.random.default_rng(11).normal(size=shape)
    if name == "relu":
        x += np.sign(x) * 0.1  # keep finite differences away from the kink at 0
    result = check_layer(layer, x, rng=0)
    assert result.worst < CORRECT, result.errors
    assert set(result.errors) >= {"x"}


def test_check_catches_the_constant_statistics_backward():
    # the classic bug: treating the batch mean and variance as constants in training mode
    layer = bnlib.BatchNorm(3)
    x = np.random.default_rng(2).normal(size=(8, 3))

    def wrong(bn, dy):  # dx = gamma * dy / sqrt(var + eps), as if mean and var did not depend on x
        var = x.var(axis=0)
        return dy * bn.gamma / np.sqrt(var + bn.eps)

    assert check_layer(layer, x, rng=0).errors["x"] < CORRECT
    assert check_layer(layer, x, rng=0, backward=wrong).errors["x"] > 0.1


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    loss = bnlib.SoftmaxCrossEntropy()
    loss(logits, labels)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda z: bnlib.SoftmaxCrossEntropy()(z, labels), logits)
    assert relative_error(analytic, numeric) < CORRECT


def test_check_layer_leaves_the_layer_untouched():
    layer = _trained_bn()
    mean, var = layer.running_mean.copy(), layer.running_var.copy()
    check_layer(layer, np.random.default_rng(0).normal(size=(4, 3)))
    assert layer.num_batches_tracked == 1
    np.testing.assert_array_equal(layer.running_mean, mean)
    np.testing.assert_array_equal(layer.running_var, var)
