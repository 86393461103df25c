"""bnlib.layers against torch.nn modules over several training steps, then eval; bad input."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import bn_layouts, momenta, seeds

import bnlib

settings.register_profile("bnlib", deadline=None, max_examples=40)
settings.load_profile("bnlib")

TOL = dict(rtol=1e-10, atol=1e-10)
TORCH_BN = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}


def _to_torch_layout(a, axis):
    return a if axis == 1 else np.moveaxis(a, -1, 1)


def _from_torch_layout(a, axis):
    return a if axis == 1 else np.moveaxis(a, 1, -1)


def _pair(shape, axis, momentum, rng, track=True, affine=True):
    c = shape[axis]
    layer = bnlib.BatchNorm(c, momentum=momentum, axis=axis, track_running_stats=track, affine=affine)
    ref = TORCH_BN[len(shape)](c, momentum=momentum, track_running_stats=track, affine=affine).double()
    if affine:
        layer.gamma = rng.normal(size=c)
        layer.beta = rng.normal(size=c)
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(layer.gamma))
            ref.bias.copy_(torch.from_numpy(layer.beta))
    return layer, ref


def _step(layer, ref, x, dy, axis):
    tx = torch.from_numpy(_to_torch_layout(x, axis).copy()).requires_grad_()
    ty = ref(tx)
    ty.backward(torch.from_numpy(_to_torch_layout(dy, axis).copy()))
    y = layer(x)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, _from_torch_layout(ty.detach().numpy(), axis), **TOL)
    np.testing.assert_allclose(dx, _from_torch_layout(tx.grad.numpy(), axis), **TOL)
    if layer.gamma is not None:
        np.testing.assert_allclose(layer.dgamma, ref.weight.grad.numpy(), **TOL)
        np.testing.assert_allclose(layer.dbeta, ref.bias.grad.numpy(), **TOL)
        ref.weight.grad = ref.bias.grad = None
    if layer.track_running_stats:
        np.testing.assert_allclose(layer.running_mean, ref.running_mean.numpy(), **TOL)
        np.testing.assert_allclose(layer.running_var, ref.running_var.numpy(), **TOL)
        assert layer.num_batches_tracked == ref.num_batches_tracked.item()


@given(layout=bn_layouts(), momentum=momenta, seed=seeds, steps=st.integers(1, 4))
def test_batchnorm_matches_torch_over_steps_then_eval(layout, momentum, seed, steps):
    shape, axis = layout
    rng = np.random.default_rng(seed)
    layer, ref = _pair(shape, axis, momentum, rng)
    for _ in range(steps):
        x = rng.normal(rng.normal(), rng.uniform(0.5, 3), size=shape)
        _step(layer, ref, x, rng.normal(size=shape), axis)
    layer.eval(), ref.eval()
    assert layer.training is False
    x = rng.normal(size=shape)
    _step(layer, ref, x, rng.normal(size=shape), axis)  # eval backward: running stats are constants
    one = rng.normal(size=(1,) + shape[1:])  # one sample is fine at inference
    _step(layer, ref, one, rng.normal(size=one.shape), axis)


@given(layout=bn_layouts(), seed=seeds, track=st.booleans(), affine=st.booleans())
def test_batchnorm_without_running_stats_or_affine(layout, seed, track, affine):
    shape, axis = layout
    rng = np.random.default_rng(seed)
    layer, ref = _pair(shape, axis, 0.1, rng, track=track, affine=affine)
    _step(layer, ref, rng.normal(size=shape), rng.normal(size=shape), axis)
    layer.eval(), ref.eval()
    _step(layer, ref, rng.normal(size=shape), rng.normal(size=shape), axis)
    if not track:
        assert layer.running_mean is None and layer.num_batches_tracked is None


def test_momentum_none_is_cumulative_average():
    rng = np.random.default_rng(0)
    layer = bnlib.BatchNorm(3, momentum=None)
    batches = [rng.normal(i, 1 + i, size=(16, 3)) for i in range(5)]
    for b in batches:
        layer(b)
    np.testing.assert_allclose(layer.running_mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, np.mean([b.var(0, ddof=1) for b in batches], axis=0), rtol=1e-12)
    assert layer.num_batches_tracked == 5


def test_float32_in_float32_out_and_float64_in_float64_out():
    for dtype in (np.float32, np.float64):
        layer = bnlib.BatchNorm(4)
        x = np.random.default_rng(0).normal(size=(8, 4, 3)).astype(dtype)
        assert layer(x).dtype == dtype
        assert layer.backward(np.ones_like(x)).dtype == dtype
        layer.eval()
        assert layer(x).dtype == dtype


def test_ghost_batch_norm_normalizes_each_virtual_batch():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 5)) * np.arange(1, 33)[:, None]
    ghost = bnlib.BatchNorm(5, virtual_batch_size=8)
    y = ghost(x)
    for start in range(0, 32, 8):
        chunk = y[start : start + 8]
        np.testing.assert_allclose(chunk.mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(chunk.var(0), 1, atol=1e-3)  # eps keeps it just below 1
    assert ghost.num_batches_tracked == 4
    # its gradient is the per-chunk gradient
    dy = rng.normal(size=x.shape)
    dx = ghost.backward(dy)
    for start in range(0, 32, 8):
        plain = bnlib.BatchNorm(5)
        plain(x[start : start + 8])
        np.testing.assert_allclose(dx[start : start + 8], plain.backward(dy[start : start + 8]), atol=1e-12)
    # in eval mode it is plain batch norm with running statistics
    ghost.eval()
    assert ghost(x[:1]).shape == (1, 5)


def test_gamma_and_beta_are_plain_assignable_arrays():
    layer = bnlib.BatchNorm(2)
    layer.gamma = np.array([2.0, 3.0])
    layer.beta = np.array([1.0, -1.0])
    y = layer(np.array([[0.0, 0.0], [2.0, 4.0]]))
    np.testing.assert_allclose(y.mean(0), [1.0, -1.0])


def test_identity_is_representable():
    # gamma = sqrt(var + eps), beta = mean recovers the input exactly
    rng = np.random.default_rng(5)
    x = rng.normal(4, 2, size=(50, 3))
    layer = bnlib.BatchNorm(3)
    layer.gamma = np.sqrt(x.var(0) + layer.eps)
    layer.beta = x.mean(0)
    np.testing.assert_allclose(layer(x), x, rtol=1e-12)


# ---------------------------------------------------------------------------- bad input


def _state(layer):
    return copy.deepcopy({k: v for k, v in vars(layer).items() if k != "_cache"})


def _assert_unchanged(before, layer):
    after = _state(layer)
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, key


BAD_FORWARD = [
    (np.zeros(5), ValueError, "expected 2 or 3 or 4 or 5 dimensions, got 1"),
    (np.zeros((2, 3, 1, 1, 1, 1)), ValueError, "got 6"),
    (np.zeros((4, 5)), ValueError, "expected 3 features on axis 1, got 5"),
    (np.zeros((1, 3)), ValueError, "Expected more than 1 value per channel when training"),
    (np.zeros((1, 3, 1, 1)), ValueError, "Expected more than 1 value per channel"),
    (np.array([[1.0, 2.0, np.nan], [0.0, 1.0, 2.0]]), ValueError, "NaN/inf"),
    (np.array([[1.0, 2.0, np.inf], [0.0, 1.0, 2.0]]), ValueError, "NaN/inf"),
    (np.zeros((4, 3), dtype=np.int64), TypeError, "expected dtype float32 or float64, got int64"),
    (np.zeros((4, 3), dtype=np.float16), TypeError, "got float16"),
    ("abc", TypeError, "float"),
]


@pytest.mark.parametrize("x, error, message", BAD_FORWARD)
def test_bad_forward_input_is_rejected_and_changes_nothing(x, error, message):
    layer = bnlib.BatchNorm(3)
    layer(np.random.default_rng(0).normal(size=(4, 3)))  # some state worth protecting
    before = _state(layer)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer(x)
    _assert_unchanged(before, layer)


def test_one_value_per_channel_is_fine_in_eval_and_in_keras_training():
    layer = bnlib.BatchNorm(3).eval()
    assert layer(np.ones((1, 3))).shape == (1, 3)
    keras_like = bnlib.BatchNorm.keras(3)
    keras_like.beta = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(keras_like(np.array([[5.0, 6.0, 7.0]])), [[1.0, 2.0, 3.0]])  # output == beta


def test_axis_out_of_range():
    layer = bnlib.BatchNorm(3, axis=4)
    with pytest.raises(ValueError, match=r"axis: expected a value in \[-2, 1\] for a 2-D input, got 4"):
        layer(np.zeros((4, 3)))
    with pytest.raises(TypeError, match="axis: expected an int"):
        bnlib.BatchNorm(3, axis=1.0)


@pytest.mark.parametrize("eps", [0, -1e-5, float("nan"), float("inf")])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps: expected a finite value > 0"):
        bnlib.BatchNorm(3, eps=eps)
    layer = bnlib.BatchNorm(3)
    with pytest.raises(ValueError, match="eps"):
        layer.eps = eps
    assert layer.eps == 1e-5


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_bad_momentum(momentum):
    with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\]"):
        bnlib.BatchNorm(3, momentum=momentum)
    with pytest.raises(ValueError, match="momentum"):
        bnlib.BatchNorm.keras(3, momentum=momentum)
    layer = bnlib.BatchNorm(3)
    with pytest.raises(ValueError, match="momentum"):
        layer.momentum = momentum
    assert layer.momentum == 0.1
    with pytest.raises(TypeError, match="momentum"):
        bnlib.BatchNorm(3, momentum="0.1")


@pytest.mark.parametrize(
    "make", [lambda: bnlib.BatchNorm(3), lambda: bnlib.LayerNorm(3), lambda: bnlib.GroupNorm(1, 3)]
)
def test_backward_before_forward(make):
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward\(\)"):
        make().backward(np.zeros((2, 3)))


def test_backward_with_wrong_shape():
    layer = bnlib.BatchNorm(3)
    layer(np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(4, 3\)"):
        layer.backward(np.zeros((5, 3)))


def test_wrongly_shaped_gamma_is_named():
    layer = bnlib.BatchNorm(3)
    layer.gamma = np.ones(4)
    before = _state(layer)
    with pytest.raises(ValueError, match=r"gamma: expected shape \(3,\), got \(4,\)"):
        layer(np.zeros((4, 3)))
    _assert_unchanged(before, layer)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_features: expected a positive int, got 0"):
        bnlib.BatchNorm(0)
    with pytest.raises(TypeError, match="num_features"):
        bnlib.BatchNorm(3.0)
    with pytest.raises(ValueError, match="num_groups: expected a divisor of num_channels=6, got 4"):
        bnlib.GroupNorm(4, 6)


def test_functional_rejects_missing_running_stats_in_eval():
    with pytest.raises(ValueError, match="expected arrays in eval mode"):
        bnlib.functional.batch_norm(np.zeros((4, 3)), None, None, training=False)


def test_functional_rejects_bad_input_without_touching_buffers():
    rm, rv = np.zeros(3), np.ones(3)
    for x in (np.array([[np.nan, 0, 0], [0, 0, 0]]), np.zeros((1, 3))):
        with pytest.raises(ValueError):
            bnlib.functional.batch_norm(x, rm, rv, training=True)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)
    with pytest.raises(ValueError, match=r"running_mean: expected shape \(3,\), got \(2,\)"):
        bnlib.functional.batch_norm(np.zeros((4, 3)), np.zeros(2), rv, training=True)


# ---------------------------------------------------------------------------- layer and group norm


def _assert_matches_torch(layer, ref, x, dy):
    """Output, input gradient and parameter gradients of a bnlib norm layer against torch's."""
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.gamma))
        ref.bias.copy_(torch.from_numpy(layer.beta))
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ref(tx).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer(x), ref(tx).detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.dgamma, ref.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.dbeta, ref.bias.grad.numpy(), **TOL)


@given(seed=seeds, n=st.integers(1, 4), c=st.integers(2, 6), length=st.integers(1, 5))
def test_layernorm_module_matches_torch(seed, n, c, length):
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=(n, c, length)), rng.normal(size=(n, c, length))
    layer = bnlib.LayerNorm((c, length))
    layer.gamma, layer.beta = rng.normal(size=(c, length)), rng.normal(size=(c, length))
    _assert_matches_torch(layer, torch.nn.LayerNorm((c, length)).double(), x, dy)


@given(seed=seeds, n=st.integers(1, 4), hw=st.integers(2, 4))
def test_groupnorm_module_matches_torch(seed, n, hw):
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=(n, 6, hw, hw)), rng.normal(size=(n, 6, hw, hw))
    layer = bnlib.GroupNorm(3, 6)
    layer.gamma, layer.beta = rng.normal(size=6), rng.normal(size=6)
    _assert_matches_torch(layer, torch.nn.GroupNorm(3, 6).double(), x, dy)


def test_layernorm_and_groupnorm_bad_input():
    with pytest.raises(ValueError, match=r"input: expected shape \(\*, 4\)"):
        bnlib.LayerNorm(4)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected 6 channels on axis 1, got 4"):
        bnlib.GroupNorm(3, 6)(np.zeros((2, 4, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        bnlib.LayerNorm(4)(np.zeros((2, 4), dtype=int))
