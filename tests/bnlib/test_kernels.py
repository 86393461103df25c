"""The tuned kernels (bnlib._kernels, ``fast=True``) equal the readable functional code, and the
statistics stay accurate in float32 at any batch size and any mean-to-spread ratio."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import bn_layouts

import bnlib
from bnlib import functional as F


def _arrays(shape, dtype):
    finite = st.floats(-1e3, 1e3, allow_nan=False, width=32 if dtype == np.float32 else 64)
    return hnp.arrays(dtype, shape, elements=finite)


@given(data=st.data(), layout=bn_layouts(), dtype=st.sampled_from([np.float32, np.float64]))
def test_fast_path_equals_the_readable_one(data, layout, dtype):
    shape, axis = layout
    x = data.draw(_arrays(shape, dtype), label="x")
    dy = data.draw(_arrays(shape, dtype), label="dy")
    c = shape[axis]
    gamma = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(-2, 2)), label="gamma")
    beta = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(-2, 2)), label="beta")
    y1, c1 = F.batch_norm(x, None, None, gamma, beta, True, axis=axis, return_cache=True)
    y2, c2 = F.batch_norm(x, None, None, gamma, beta, True, axis=axis, return_cache=True, fast=True)
    tol = 2e-5 if dtype == np.float32 else 1e-10
    scale = 1 + np.abs(y1).max()
    np.testing.assert_allclose(y2, y1, atol=tol * scale, rtol=0)
    assert y2.dtype == y1.dtype == dtype
    # the fast path forms the deviations x - mean in the input's dtype: each is rounded relative to
    # |x|, so the mean's error is bounded by the data's magnitude, not by the mean's own (a mean of
    # 0.775 from values of +-700 is off by ~1e-6 in float32, 2e-9 of the data's scale; hypothesis
    # found it)
    data_scale = float(np.abs(x).max()) if x.size else 0.0
    mean_atol = 2 * float(np.finfo(dtype).eps) * data_scale + 1e-12
    np.testing.assert_allclose(c2.mean, c1.mean, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=mean_atol)
    readable = F.batch_norm_backward(dy, c1)
    fast = F.batch_norm_backward(dy, c2, fast=True)
    # the fast path works in the input's dtype, so its rounding is relative to the size of the terms
    # it adds (|dy| * |gamma| * inv_std for dx, |dy| * |xhat| * n for the sums), not to the result
    n = x.size // c
    # (in Python floats: in float32 the bound itself would underflow for subnormal inputs)
    a = float(np.abs(dy).max()) * float((np.abs(gamma) * c1.norm.inv_std.reshape(-1)).max())
    b = float(np.abs(dy).max()) * (1 + float(np.abs(c1.xhat).max())) * n
    eps = float(np.finfo(dtype).eps)
    for got, want, size in zip(fast, readable, (a, b, b)):
        np.testing.assert_allclose(got, want, atol=64 * eps * (size + 1e-300), rtol=0)


def _reference(x):
    x64 = x.astype(np.float64)
    return (x64 - x64.mean(axis=0)) / np.sqrt(x64.var(axis=0) + 1e-5)


def test_float32_with_a_mean_1e5_times_the_spread_at_2_to_the_20_rows():
    # the old float32 accumulation was off by several standard deviations here
    rng = np.random.default_rng(0)
    x = (1e5 + rng.standard_normal((2**20, 2))).astype(np.float32)
    want = _reference(x)
    for fast in (False, True):
        y = F.batch_norm(x, None, None, training=True, fast=fast)
        assert y.dtype == np.float32
        assert np.abs(y - want).max() < 1e-3, fast  # float32 output of values near 1: error ~1e-6


def test_float32_zero_mean_at_2_to_the_22_rows_in_every_layout():
    # the old per-channel sums accumulated in float32 and were off by about 1e-2 here
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2**22, 2)).astype(np.float32) * 3 + 0.5
    want = _reference(x)
    y = F.batch_norm(x, None, None, training=True, fast=True)
    assert np.abs(y - want).max() < 2e-5
    nchw = np.ascontiguousarray(x.reshape(2**12, 2**10, 2).transpose(0, 2, 1))  # (N, C, L)
    y3 = F.batch_norm(nchw, None, None, training=True, fast=True)
    assert np.abs(y3.transpose(0, 2, 1).reshape(-1, 2) - want).max() < 2e-5
    long_rows = np.ascontiguousarray(x.T[None])  # (1, C, 2^22): one long contiguous run per channel
    y4 = F.batch_norm(long_rows, None, None, training=True, fast=True)
    assert np.abs(y4[0].T - want).max() < 2e-5


def test_layer_uses_the_fast_path_and_agrees_with_the_readable_layer():
    rng = np.random.default_rng(2)
    x = rng.normal(3, 2, size=(64, 8, 4, 4)).astype(np.float32)
    a, b = bnlib.BatchNorm(8), bnlib.BatchNorm(8, fast=False)
    ya, yb = a(x), b(x)
    np.testing.assert_allclose(ya, yb, atol=1e-5)
    np.testing.assert_allclose(a.running_var, b.running_var, rtol=1e-6)
    dy = rng.normal(size=x.shape).astype(np.float32)
    np.testing.assert_allclose(a.backward(dy), b.backward(dy), atol=1e-5)
    np.testing.assert_allclose(a.dgamma, b.dgamma, rtol=1e-5)
