"""RMSNorm (bnlib.RMSNorm, functional.rms_norm*): torch parity, finite differences, the properties
that define it, and bad input refused before anything changes."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bnlib
from bnlib import functional as F
from bnlib.gradcheck import check_layer

TOL = dict(rtol=1e-10, atol=1e-10)
seeds = st.integers(0, 2**32 - 1)


@given(
    seed=seeds,
    n=st.integers(1, 4),
    c=st.integers(1, 6),
    length=st.integers(1, 5),
    eps=st.sampled_from([None, 0.0, 1e-6, 0.5]),
    affine=st.booleans(),
)
def test_rmsnorm_matches_torch_in_float64(seed, n, c, length, eps, affine):
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=(n, c, length)), rng.normal(size=(n, c, length))
    layer = bnlib.RMSNorm((c, length), eps=eps, elementwise_affine=affine)
    ref = torch.nn.RMSNorm((c, length), eps=eps, elementwise_affine=affine).double()
    if affine:
        layer.gamma = rng.normal(size=(c, length))
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(layer.gamma))
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = ref(tx)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer(x), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **TOL)
    if affine:
        np.testing.assert_allclose(layer.dgamma, ref.weight.grad.numpy(), **TOL)
    else:
        assert layer.dgamma is None


def test_functional_rms_norm_matches_torch_and_defaults_eps_to_the_dtype_epsilon():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.normal(size=(3, 5)).astype(dtype) * 1e-4  # small: the eps default matters
        want = torch.nn.functional.rms_norm(torch.from_numpy(x), (5,)).numpy()
        got = F.rms_norm(x, (5,))
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("shape, normalized", [((6, 4), 4), ((2, 3, 4), (3, 4))])
def test_rmsnorm_backward_matches_finite_differences(shape, normalized):
    layer = bnlib.RMSNorm(normalized, eps=1e-3)
    layer.gamma = np.random.default_rng(1).normal(size=layer.gamma.shape)
    result = check_layer(layer, np.random.default_rng(2).normal(size=shape), rng=3)
    assert result.worst < 1e-6, result.errors


def test_rms_norm_is_scale_invariant_per_sample_and_keeps_the_mean():
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 1.0, size=(4, 8))  # a mean far from 0: RMS norm does NOT remove it
    y = F.rms_norm(x, 8, eps=0.0)
    scaled = F.rms_norm(x * np.array([[0.1], [3.0], [7.0], [1e3]]), 8, eps=0.0)
    np.testing.assert_allclose(scaled, y, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.mean(y**2, axis=1)), 1.0, rtol=1e-12)
    assert (y.mean(axis=1) > 0.5).all()  # layer norm would give 0
    # the gradient is orthogonal to x per sample (scaling x changes nothing)
    _, cache = F.rms_norm_forward(x, 8, eps=0.0)
    dx, _ = F.rms_norm_backward(rng.normal(size=x.shape), cache)
    np.testing.assert_allclose((dx * x).sum(axis=1), 0.0, atol=1e-12)


def test_rms_norm_refuses_bad_input_and_mismatched_caches():
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0"):
        bnlib.RMSNorm(4, eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        F.rms_norm(np.ones((2, 4)), 4, eps=float("nan"))
    with pytest.raises(TypeError, match="eps"):
        bnlib.RMSNorm(4, eps="small")
    with pytest.raises(TypeError, match="eps"):
        bnlib.RMSNorm(4, eps=True)
    with pytest.raises(ValueError, match=r"input: expected shape \(\*, 4\)"):
        bnlib.RMSNorm(4)(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        bnlib.RMSNorm(4)(np.zeros((2, 4), dtype=int))
    layer = bnlib.RMSNorm(4)
    layer.gamma = [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(TypeError, match="gamma"):
        layer(np.ones((2, 4)))
    layer = bnlib.RMSNorm(4)
    layer.gamma = np.ones(1)
    with pytest.raises(ValueError, match=r"gamma: expected shape \(4,\)"):
        layer(np.ones((2, 4)))
    with pytest.raises(ValueError, match="forward"):
        bnlib.RMSNorm(4).backward(np.ones((2, 4)))
    _, ln_cache = F.layer_norm_forward(np.ones((2, 4)), 4)
    _, rms_cache = F.rms_norm_forward(np.ones((2, 4)), 4)
    with pytest.raises(TypeError, match="RMS-norm forward"):
        F.rms_norm_backward(np.ones((2, 4)), ln_cache)
    with pytest.raises(TypeError, match="layer-norm forward"):
        F.layer_norm_backward(np.ones((2, 4)), rms_cache)


def test_rms_norm_leaves_its_input_alone_and_propagates_nan():
    x = np.random.default_rng(5).normal(size=(3, 4))
    x.flags.writeable = False
    before = x.copy()
    layer = bnlib.RMSNorm(4)
    y = layer(x)
    upstream = np.random.default_rng(6).normal(size=y.shape)
    dx_before = layer.backward(upstream)
    np.testing.assert_array_equal(x, before)
    y[:] = 0.0  # the returned output is not the backward cache
    np.testing.assert_array_equal(layer.backward(upstream), dx_before)
    bad = before.copy()
    bad[1, 2] = np.nan
    out = bnlib.RMSNorm(4)(bad)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
