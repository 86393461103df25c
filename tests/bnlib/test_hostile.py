"""A hostile pass over the public API: every call is right or refuses clearly, and a refused call
changes nothing. Each test names the defect class of issue 10 it guards; each failed on the old code."""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bnlib
from bnlib import functional as F
from bnlib import gradcheck


def _state(bn):
    return copy.deepcopy({k: v for k, v in vars(bn).items() if k != "_cache"}), bn._cache


def _assert_unchanged(bn, before):
    state, cache = before
    now = {k: v for k, v in vars(bn).items() if k != "_cache"}
    assert now.keys() == state.keys()
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(now[k], v, err_msg=k)
        else:
            assert now[k] == v, k
    assert bn._cache is cache, "a rejected call replaced the backward cache"


# ---- a rejected call has already changed state ----------------------------------------------


def test_ghost_batch_with_a_too_small_last_chunk_changes_nothing():
    bn = bnlib.BatchNorm(3, virtual_batch_size=4)
    bn(np.random.default_rng(0).normal(size=(8, 3)))
    before = _state(bn)
    with pytest.raises(ValueError, match="last ghost batch of 1 sample"):
        bn(np.random.default_rng(1).normal(size=(9, 3)))  # chunks 4, 4, 1
    _assert_unchanged(bn, before)


@pytest.mark.parametrize(
    "buffer, error",
    [
        (np.zeros(3, dtype=np.int64), TypeError),
        (np.zeros(4), ValueError),
        (np.zeros((3, 1)), ValueError),
        ([0.0, 0.0, 0.0], TypeError),
        ("readonly", ValueError),
    ],
)
def test_a_bad_running_buffer_is_refused_before_any_update(buffer, error):
    if isinstance(buffer, str):
        buffer = np.zeros(3)
        buffer.flags.writeable = False
    x = np.random.default_rng(0).normal(size=(8, 3))
    good = np.ones(3)
    with pytest.raises(error, match="running_var"):
        F.batch_norm(x, good, buffer, training=True)
    np.testing.assert_array_equal(good, np.ones(3))  # running_mean was not updated either
    bn = bnlib.BatchNorm(3)
    bn.running_var = buffer
    before = _state(bn)
    with pytest.raises(error, match="running_var"):
        bn(x)
    _assert_unchanged(bn, before)


def test_aliased_running_buffers_are_refused():
    shared = np.zeros(3)
    with pytest.raises(ValueError, match="separate"):
        F.batch_norm(np.ones((4, 3)) + np.arange(4)[:, None], shared, shared, training=True)
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(ValueError, match="separate from the input"):
        F.batch_norm(x, x[0], np.ones(3), training=True)


def test_a_rejected_batch_keeps_the_previous_backward_cache():
    bn = bnlib.BatchNorm(3)
    x = np.random.default_rng(0).normal(size=(8, 3))
    bn(x)
    for bad in (np.full((8, 3), np.nan), np.ones((1, 3)), np.ones((8, 4)), np.ones((8, 3), dtype=np.int32)):
        before = _state(bn)
        with pytest.raises((ValueError, TypeError)):
            bn(bad)
        _assert_unchanged(bn, before)
    assert bn.backward(np.ones((8, 3))).shape == (8, 3)


@pytest.mark.parametrize("layer", [bnlib.BatchNorm(3), bnlib.LayerNorm(3), bnlib.GroupNorm(1, 3)])
def test_a_rejected_backward_changes_no_gradient(layer):
    x = np.random.default_rng(0).normal(size=(8, 3))
    layer(x)
    layer.backward(np.ones((8, 3)))
    dgamma = layer.dgamma.copy()
    with pytest.raises(ValueError, match="dy: expected shape"):
        layer.backward(np.ones((8, 4)))
    np.testing.assert_array_equal(layer.dgamma, dgamma)


# ---- the caller's objects changed -------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        bnlib.ReLU,
        bnlib.Tanh,
        bnlib.Sigmoid,
        bnlib.Identity,
        lambda: bnlib.BatchNorm(3),
        lambda: bnlib.BatchNorm(3, affine=False),
        lambda: bnlib.LayerNorm(3, elementwise_affine=False),
        lambda: bnlib.Linear(3, 3, rng=0),
    ],
)
def test_changing_the_output_or_the_input_in_place_does_not_change_the_gradient(make):
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    a, b = make(), make()
    xa, xb = x.copy(), x.copy()
    a(xa)
    out = b(xb)
    out *= 100.0  # the caller scribbles on the returned array ...
    xb += 5.0  # ... and on the input
    np.testing.assert_allclose(b.backward(dy), a.backward(dy), rtol=1e-12)


def test_a_layer_used_twice_is_refused_at_any_depth():
    relu = bnlib.ReLU()
    with pytest.raises(ValueError, match="appears twice"):
        bnlib.Sequential(bnlib.Linear(2, 2), relu, bnlib.Linear(2, 2), relu)
    inner = bnlib.Sequential(bnlib.Linear(2, 2), relu)
    with pytest.raises(ValueError, match="appears twice"):
        bnlib.Sequential(inner, relu)


def test_inputs_are_never_written():
    x = np.random.default_rng(0).normal(size=(8, 3))
    x.flags.writeable = False
    for fast in (False, True):
        F.batch_norm(x, np.zeros(3), np.ones(3), training=True, fast=fast)
    bnlib.mlp([3, 4, 2], norm="batch", rng=0)(x)
    F.layer_norm(x, 3)
    F.group_norm(x, 1)


# ---- wrong answers without an error -----------------------------------------------------------


def test_a_wrongly_shaped_running_mean_is_not_broadcast():
    bn = bnlib.BatchNorm(3)
    bn.running_mean = np.zeros(1)
    with pytest.raises(ValueError, match=r"running_mean: expected shape \(3,\), got \(1,\)"):
        bn(np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(np.ones((4, 3)), np.zeros(1), np.ones(3), training=False)


@pytest.mark.parametrize("name", ["gamma", "beta"])
def test_parameters_of_shape_1_are_refused_by_every_norm(name):
    for layer, x in (
        (bnlib.LayerNorm(4), np.ones((2, 4))),
        (bnlib.GroupNorm(2, 4), np.ones((2, 4))),
        (bnlib.BatchNorm(4), np.ones((2, 4))),
    ):
        setattr(layer, name, np.ones(1))
        with pytest.raises(ValueError, match=name):
            layer(x + np.arange(4))
    with pytest.raises(ValueError, match="gamma"):
        F.layer_norm_forward(np.ones((2, 4)), 4, gamma=np.ones(1))


def test_a_parameter_assigned_as_a_list_is_refused_not_skipped():
    layer = bnlib.Linear(2, 2, rng=0)
    layer.weight = [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(TypeError, match="weight"):
        layer(np.ones((3, 2)))
    opt = bnlib.SGD([(layer, "weight")], lr=0.1)
    layer.dweight = np.ones((2, 2))
    with pytest.raises(TypeError, match="weight: expected a NumPy float array"):
        opt.step()
    bn = bnlib.BatchNorm(2)
    bn.gamma = [1.0, 1.0]
    with pytest.raises(TypeError, match="gamma"):
        bn(np.ones((3, 2)) + np.arange(3)[:, None])


def test_sgd_checks_every_gradient_before_updating_any():
    a, b = bnlib.Linear(2, 2, rng=0), bnlib.Linear(2, 2, rng=1)
    a.dweight, b.dweight = np.ones((2, 2)), np.ones((3, 2))
    before = a.weight.copy()
    with pytest.raises(ValueError, match="dweight: expected shape"):
        bnlib.SGD([(a, "weight"), (b, "weight")], lr=0.1).step()
    np.testing.assert_array_equal(a.weight, before)


def test_group_norm_with_one_value_per_group_is_refused():
    with pytest.raises(ValueError, match="more than 1 value per group"):
        bnlib.GroupNorm(4, 4)(np.random.default_rng(0).normal(size=(8, 4)))


def test_an_eps_that_underflows_in_float32_is_refused_not_nan():
    x = np.ones((4, 3), dtype=np.float32)  # a constant feature: 0 / sqrt(0 + eps)
    with pytest.raises(ValueError, match="eps: 1e-50 is below the smallest normal float32"):
        F.batch_norm(x, None, None, training=True, eps=1e-50)
    y = F.batch_norm(x, None, None, training=True, eps=1e-30)  # representable: finite output
    assert np.isfinite(y).all()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.float16, np.complex128, object])
def test_every_functional_forward_refuses_non_float_arrays(dtype):
    x = np.ones((4, 2)).astype(dtype)
    calls = [
        lambda: F.batch_norm(x, None, None, training=True),
        lambda: F.batch_norm_train(x),
        lambda: F.batch_norm_eval(x, np.zeros(2), np.ones(2)),
        lambda: F.layer_norm(x, 2),
        lambda: F.group_norm(x, 1),
        lambda: F.moments(x, 0),
        lambda: F.one_pass_variance(x, 0),
        lambda: F.batch_norm_backward_staged(np.ones((4, 2)), x),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="float32 or float64"):
            call()


def test_a_nan_training_batch_never_reaches_the_running_statistics():
    bn = bnlib.BatchNorm(2)
    x = np.random.default_rng(0).normal(size=(4, 2))
    x[1, 0] = np.nan
    before = _state(bn)
    with pytest.raises(ValueError, match="NaN/inf"):
        bn(x)
    _assert_unchanged(bn, before)


def test_fold_keeps_float64_and_refuses_bad_shapes():
    w = np.random.default_rng(0).normal(size=(2, 3))
    fw, fb = F.fold_batch_norm(w, None, np.zeros(2), np.ones(2), eps=1e-12)
    assert fw.dtype == fb.dtype == np.float64
    np.testing.assert_allclose(fw, w, rtol=1e-11)
    with pytest.raises(ValueError, match="running_var: expected variances >= 0"):
        F.fold_batch_norm(w, None, np.zeros(2), -np.ones(2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.fold_batch_norm(np.ones(2), None, np.zeros(2), np.ones(2))


# ---- checks that cannot fail --------------------------------------------------------------------


def test_relative_error_refuses_different_shapes_and_propagates_nan():
    with pytest.raises(ValueError, match="same shape"):
        gradcheck.relative_error(np.zeros(3), np.zeros(4))
    assert np.isnan(gradcheck.relative_error([1.0, np.nan], [1.0, 2.0]))


def test_the_gradcheck_summary_does_not_hide_nan():
    assert np.isnan(gradcheck.GradCheck({"x": 1e-9, "gamma": float("nan")}).worst)
    assert np.isnan(gradcheck.GradCheck({"x": float("nan"), "gamma": 1e-9}).worst)


def test_a_layer_that_sets_no_gradient_fails_the_check():
    class Forgetful(bnlib.BatchNorm):
        def backward(self, dy):
            dx = super().backward(dy)
            self.dgamma = None
            return dx

    result = gradcheck.check_layer(Forgetful(2), np.random.default_rng(0).normal(size=(5, 2)), rng=1)
    assert np.isnan(result.errors["gamma"]) and np.isnan(result.worst)


# ---- the Keras convention as explicit options ----------------------------------------------------


def test_keras_options_are_explicit_and_momentum_means_one_thing():
    bn = bnlib.BatchNorm.keras(2, momentum=0.9)
    assert bn.momentum == pytest.approx(0.1) and bn.keras_momentum == pytest.approx(0.9)
    assert not bn.unbiased_running_var and bn.allow_single_value
    same = bnlib.BatchNorm(2, momentum=0.1, eps=1e-3, axis=-1, unbiased_running_var=False, allow_single_value=True)
    x = np.random.default_rng(0).normal(3, 2, size=(16, 2))
    for _ in range(3):
        np.testing.assert_array_equal(bn(x), same(x))
    np.testing.assert_array_equal(bn.running_var, same.running_var)
    with pytest.raises(ValueError, match="allow_single_value=True needs unbiased_running_var=False"):
        bnlib.BatchNorm(2, allow_single_value=True)


@pytest.mark.parametrize("momentum", [None, 0.3])
@pytest.mark.parametrize("keras", [False, True])
@pytest.mark.parametrize("virtual", [None, 4])
def test_every_convention_works_with_cumulative_momentum_ghost_batches_and_recalibration(momentum, keras, virtual):
    make = (lambda **k: bnlib.BatchNorm.keras(3, axis=1, **k)) if keras else (lambda **k: bnlib.BatchNorm(3, **k))
    bn = make(virtual_batch_size=virtual)
    bn.momentum = momentum
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(64, 3))
    bn(x)
    assert bn.num_batches_tracked == (1 if virtual is None else 16)
    bnlib.train.recalibrate(bnlib.Sequential(bn), x)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, x.var(axis=0, ddof=0 if keras else 1), rtol=1e-12)
    assert bn.momentum == momentum and bn.virtual_batch_size == virtual and not bn.training


def test_a_keras_layer_trains_on_a_batch_of_one_and_a_pytorch_layer_refuses():
    keras_like = bnlib.BatchNorm.keras(2)
    np.testing.assert_array_equal(keras_like(np.array([[3.0, 4.0]])), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bnlib.BatchNorm(2)(np.array([[3.0, 4.0]]))


# ---- assigned attributes and bad hyper-parameters -------------------------------------------------


@pytest.mark.parametrize(
    "attribute, value, error",
    [
        ("momentum", 1.5, ValueError),
        ("momentum", float("nan"), ValueError),
        ("momentum", "0.1", TypeError),
        ("eps", 0.0, ValueError),
        ("eps", -1e-5, ValueError),
        ("eps", float("inf"), ValueError),
        ("axis", 7, ValueError),
        ("num_batches_tracked", -1, ValueError),
        ("training", "yes", TypeError),
    ],
)
def test_assigned_attributes_are_checked(attribute, value, error):
    bn = bnlib.BatchNorm(3)
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(error):
        setattr(bn, attribute, value)
        bn(x)


@given(
    x=hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4), elements=st.floats(-1e6, 1e6)
    )
)
def test_any_float_input_is_normalized_or_refused_clearly(x):
    bn = bnlib.BatchNorm(x.shape[1])
    try:
        y = bn(x)
    except ValueError as exc:
        assert "Expected more than 1 value per channel" in str(exc)
        assert bn.num_batches_tracked == 0
        return
    assert y.shape == x.shape and np.isfinite(y).all()
    axes = tuple(a for a in range(x.ndim) if a != 1)
    spread = x.std(axis=axes)
    np.testing.assert_allclose(y.mean(axis=axes)[spread > 1e-3], 0, atol=1e-6)
