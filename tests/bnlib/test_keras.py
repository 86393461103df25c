"""bnlib.BatchNorm.keras against Keras 3's BatchNormalization (torch backend), float32, NHWC."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402  (the backend must be chosen before the import)
import numpy as np
import pytest

import bnlib


@pytest.mark.parametrize("center, scale", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("momentum", [0.99, 0.9, 0.5])
def test_keras_preset_matches_keras_layer(center, scale, momentum):
    rng = np.random.default_rng(0)
    shape = (4, 5, 5, 3)  # NHWC
    ref = keras.layers.BatchNormalization(momentum=momentum, center=center, scale=scale, dtype="float32")
    ref.build(shape)
    layer = bnlib.BatchNorm.keras(3, momentum=momentum, center=center, scale=scale)
    if scale:
        layer.gamma = rng.uniform(0.5, 2, size=3)
        ref.gamma.assign(layer.gamma.astype(np.float32))
    if center:
        layer.beta = rng.normal(size=3)
        ref.beta.assign(layer.beta.astype(np.float32))
    assert (layer.gamma is None) == (not scale) and (layer.beta is None) == (not center)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
        y_ref = keras.ops.convert_to_numpy(ref(x, training=True))
        y = layer(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_mean, keras.ops.convert_to_numpy(ref.moving_mean), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            layer.moving_variance, keras.ops.convert_to_numpy(ref.moving_variance), rtol=1e-5, atol=1e-6
        )
    layer.eval()
    x = rng.normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(layer(x), keras.ops.convert_to_numpy(ref(x, training=False)), rtol=1e-4, atol=1e-4)


def test_keras_tracks_the_biased_variance_and_pytorch_the_unbiased():
    x = np.array([[0.0], [2.0]], dtype=np.float32)  # biased var 1, unbiased var 2
    torch_like = bnlib.BatchNorm(1, momentum=1.0)
    keras_like = bnlib.BatchNorm.keras(1, momentum=0.0)
    torch_like(x), keras_like(x)
    assert torch_like.running_var[0] == pytest.approx(2.0)
    assert keras_like.running_var[0] == pytest.approx(1.0)
    ref = keras.layers.BatchNormalization(momentum=0.0)
    ref(x, training=True)
    assert float(keras.ops.convert_to_numpy(ref.moving_variance)[0]) == pytest.approx(1.0)


def test_keras_frozen_layer_runs_in_inference_mode():
    # trainable=False freezes the layer into inference mode even with training=True
    ref = keras.layers.BatchNormalization()
    x = np.random.default_rng(1).normal(5, 2, size=(8, 3)).astype(np.float32)
    ref(x, training=True)
    before = keras.ops.convert_to_numpy(ref.moving_mean).copy()
    ref.trainable = False
    y = keras.ops.convert_to_numpy(ref(x, training=True))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ref.moving_mean), before)
    layer = bnlib.BatchNorm.keras(3)
    layer(x)
    layer.eval()
    np.testing.assert_allclose(layer(x), y, rtol=1e-4, atol=1e-4)
