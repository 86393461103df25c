"""bnlib.functional against torch.nn.functional, and the properties the book states."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import momenta, seeds, torch_layouts

from bnlib import functional as F

settings.register_profile("bnlib", deadline=None, max_examples=40)
settings.load_profile("bnlib")

TOL = dict(rtol=1e-10, atol=1e-10)


def _t(a):
    return torch.from_numpy(np.array(a, copy=True))


@given(shape=torch_layouts(), seed=seeds, momentum=st.floats(0, 1), training=st.booleans())
def test_batch_norm_matches_torch_functional(shape, seed, momentum, training):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(2.0, 3.0, size=shape)
    rm, rv = rng.normal(size=c), rng.uniform(0.5, 2.0, size=c)
    w, b = rng.normal(size=c), rng.normal(size=c)
    trm, trv = _t(rm), _t(rv)
    expected = torch.nn.functional.batch_norm(_t(x), trm, trv, _t(w), _t(b), training, momentum, 1e-5)
    y = F.batch_norm(x, rm, rv, w, b, training, momentum, 1e-5)
    np.testing.assert_allclose(y, expected.numpy(), **TOL)
    np.testing.assert_allclose(rm, trm.numpy(), **TOL)  # buffers updated in place, like torch
    np.testing.assert_allclose(rv, trv.numpy(), **TOL)


def test_batch_norm_exact_two_values():
    # x = [1.0, 1.2]: mean 1.1, biased var 0.01, so y = +-0.1 / sqrt(0.01 + 1e-5)
    y = F.batch_norm(np.array([[1.0], [1.2]]), None, None, training=True)
    assert y[0, 0] == pytest.approx(-0.9995003746877731, abs=1e-15)
    assert y[1, 0] == pytest.approx(0.9995003746877731, abs=1e-15)


@given(shape=torch_layouts(), seed=seeds)
def test_backward_forms_agree_with_each_other_and_torch(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, dy, gamma = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=c)
    _, cache = F.batch_norm_train(x, gamma, np.zeros(c), 1e-5)
    closed = F.batch_norm_backward(dy, cache)
    staged = F.batch_norm_backward_staged(dy, x, gamma, 1e-5)
    tx, tg, tb = (
        _t(x).requires_grad_(),
        _t(gamma).requires_grad_(),
        torch.zeros(c, dtype=torch.float64, requires_grad=True),
    )
    torch.nn.functional.batch_norm(tx, None, None, tg, tb, True, 0.1, 1e-5).backward(_t(dy))
    for got_closed, got_staged, want in zip(closed, staged, (tx.grad, tg.grad, tb.grad)):
        np.testing.assert_allclose(got_closed, want.numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_staged, want.numpy(), rtol=1e-9, atol=1e-9)


@given(shape=torch_layouts(), seed=seeds)
def test_properties_of_the_output_and_gradient(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    axes = F.reduction_axes(len(shape))
    x = rng.normal(1.0, 2.0, size=shape)
    gamma, beta = rng.uniform(0.5, 2, size=c), rng.normal(size=c)
    eps = 1e-5
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    var_x = x.var(axis=axes)
    # per-channel output mean is beta, variance gamma^2 var/(var+eps)
    np.testing.assert_allclose(y.mean(axis=axes), beta, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=axes), gamma**2 * var_x / (var_x + eps), rtol=1e-9, atol=1e-12)
    # invariance to a positive affine map of the input (eps scaled with a^2 keeps it exact)
    a, b = 3.7, -11.0
    y_affine = F.batch_norm(a * x + b, None, None, gamma, beta, training=True, eps=eps * a**2)
    np.testing.assert_allclose(y_affine, y, atol=1e-9)
    # the gradient sums to zero over the reduced axes
    _, cache = F.batch_norm_train(x, gamma, beta, eps)
    dx, _, _ = F.batch_norm_backward(rng.normal(size=shape), cache)
    np.testing.assert_allclose(dx.sum(axis=axes), 0, atol=1e-9)


def test_scale_invariance_is_broken_by_eps_exactly_as_predicted():
    # with eps fixed, BN(a x + b) = BN(x) * sqrt((v + eps) / v) * sqrt(a^2 v / (a^2 v + eps))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8))
    a, b, eps = 5.0, 3.0, 1e-5
    v = x.var(axis=0)
    y = F.batch_norm(x, None, None, training=True, eps=eps)
    y2 = F.batch_norm(a * x + b, None, None, training=True, eps=eps)
    factor = np.sqrt((v + eps) / v) * np.sqrt(a**2 * v / (a**2 * v + eps))
    np.testing.assert_allclose(y2, y * factor, rtol=1e-12, atol=1e-14)
    assert np.abs(y2 - y).max() > 1e-6  # the effect is real, not rounding


def test_gradient_orthogonal_to_xhat_as_eps_vanishes():
    rng = np.random.default_rng(1)
    x, dy = rng.normal(size=(32, 4)), rng.normal(size=(32, 4))
    _, cache = F.batch_norm_train(x, None, None, 1e-12)
    dx, _, _ = F.batch_norm_backward(dy, cache)
    assert np.abs((dx * cache.xhat).sum(axis=0)).max() < 1e-9


def test_stable_variance_float32_large_mean():
    # mean 10^4 times the standard deviation: float32 must match float64 on the same float32 inputs
    rng = np.random.default_rng(0)
    x32 = (1e4 + rng.normal(size=(4096, 16))).astype(np.float32)
    y32 = F.batch_norm(x32, None, None, training=True)
    y64 = F.batch_norm(x32.astype(np.float64), None, None, training=True)
    assert y32.dtype == np.float32
    # one float32 ulp of 1e4 is 1e-3 standard deviations: anything near that would be the input's
    # own rounding, anything larger a loss in the computation
    assert np.abs(y32 - y64).max() < 2e-5
    # the one-pass formula loses everything on the same data
    var_one = F.one_pass_variance(x32, (0,))
    var_true = x32.astype(np.float64).var(axis=0)
    assert np.abs(var_one - var_true).max() > 0.5


@given(seed=seeds, parts=st.integers(1, 5))
def test_combine_moments_equals_whole_batch(seed, parts):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 20, size=parts)
    chunks = [rng.normal(rng.normal() * 10, rng.uniform(0.1, 3), size=(n, 3)) for n in sizes]
    means = [c.mean(axis=0) for c in chunks]
    m2s = [((c - c.mean(axis=0)) ** 2).sum(axis=0) for c in chunks]
    count, mean, m2 = F.combine_moments(sizes, means, m2s)
    whole = np.concatenate(chunks)
    assert count == len(whole)
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m2 / count, whole.var(axis=0), rtol=1e-10, atol=1e-12)


@given(momentum=momenta)
def test_update_running_is_weight_of_new_value(momentum):
    m = 0.1 if momentum is None else momentum
    running = np.array([1.0, 2.0])
    F.update_running(running, np.array([3.0, 4.0]), m)
    np.testing.assert_allclose(running, (1 - m) * np.array([1.0, 2.0]) + m * np.array([3.0, 4.0]))


@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(2, 5)), seed=seeds)
def test_layer_norm_matches_torch(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    w, b = rng.normal(size=shape[1:]), rng.normal(size=shape[1:])
    y, cache = F.layer_norm_forward(x, shape[1:], w, b)
    dx, dw, db = F.layer_norm_backward(dy, cache, w)
    tx, tw, tb = (_t(a).requires_grad_() for a in (x, w, b))
    ty = torch.nn.functional.layer_norm(tx, shape[1:], tw, tb, 1e-5)
    ty.backward(_t(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    for got, want in ((dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), **TOL)


@given(shape=torch_layouts(), seed=seeds, data=st.data())
def test_group_norm_matches_torch(shape, seed, data):
    c = shape[1]
    groups = data.draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    w, b = rng.normal(size=c), rng.normal(size=c)
    per_group = (c // groups) * int(np.prod(shape[2:], dtype=int))
    if per_group <= 1:
        # one value per group normalizes to beta whatever the input: refused (torch refuses only
        # when N * C/G * spatial == 1, and returns beta otherwise)
        with pytest.raises(ValueError, match="more than 1 value per group"):
            F.group_norm_forward(x, groups, w, b)
        return
    y, cache = F.group_norm_forward(x, groups, w, b)
    dx, dw, db = F.group_norm_backward(dy, cache, w)
    tx, tw, tb = (_t(a).requires_grad_() for a in (x, w, b))
    ty = torch.nn.functional.group_norm(tx, groups, tw, tb, 1e-5)
    ty.backward(_t(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    tol = TOL
    for got, want in ((dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), **tol)


def test_group_norm_extremes_are_layer_norm_and_instance_norm():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 5, 5))
    np.testing.assert_allclose(F.group_norm(x, 1), F.layer_norm(x, (4, 5, 5)), atol=1e-12)
    inst = torch.nn.functional.instance_norm(_t(x), eps=1e-5).numpy()
    np.testing.assert_allclose(F.group_norm(x, 4), inst, atol=1e-12)


def test_fold_batch_norm_into_conv_matches_torch_eval_and_not_train():
    rng = np.random.default_rng(7)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1).double()
    bn = torch.nn.BatchNorm2d(5).double()
    with torch.no_grad():
        for _ in range(5):
            bn(conv(torch.randn(8, 3, 6, 6, dtype=torch.float64) * 2 + 1))  # some running statistics
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, 5)))
        bn.bias.copy_(torch.from_numpy(rng.normal(size=5)))
    w, b = F.fold_batch_norm(
        conv.weight.detach().numpy(),
        conv.bias.detach().numpy(),
        bn.running_mean.numpy(),
        bn.running_var.numpy(),
        bn.weight.detach().numpy(),
        bn.bias.detach().numpy(),
        bn.eps,
    )
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    bn.eval()
    with torch.no_grad():
        reference = bn(conv(x)).numpy()
        folded = torch.nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
        bn.train()
        train_mode = bn(conv(x)).numpy()
    np.testing.assert_allclose(folded, reference, atol=1e-12)
    assert np.abs(folded - train_mode).max() > 0.01  # folding is an inference-only identity


def test_fold_linear_batch_norm_layer():
    import bnlib

    rng = np.random.default_rng(8)
    linear, bn = bnlib.Linear(6, 4, rng=0), bnlib.BatchNorm(4)
    for _ in range(3):
        bn(linear(rng.normal(size=(16, 6))))
    bn.eval()
    folded = bnlib.nn.fold_linear_batch_norm(linear, bn)
    x = rng.normal(size=(5, 6))
    np.testing.assert_allclose(folded(x), bn(linear(x)), atol=1e-12)
    with pytest.raises(ValueError, match="expected 4 features with running statistics"):
        bnlib.nn.fold_linear_batch_norm(linear, bnlib.BatchNorm(4, track_running_stats=False))
    with pytest.raises(ValueError, match=r"running_var: expected shape \(4,\)"):
        F.fold_batch_norm(np.ones((4, 2)), None, np.zeros(4), np.ones(3))


class _SimulatedGroup:
    """Runs one function per simulated process in threads; all_reduce sums across them (a barrier)."""

    def __init__(self, size):
        import threading

        self.size, self.barrier, self.lock = size, threading.Barrier(size), threading.Lock()
        self.total = None

    def all_reduce(self, array):
        with self.lock:
            self.total = np.array(array, dtype=float) if self.total is None else self.total + array
        self.barrier.wait()
        result = self.total.copy()
        self.barrier.wait()
        with self.lock:
            self.total = None
        self.barrier.wait()
        return result


@given(seed=seeds, parts=st.integers(1, 4))
def test_sync_moments_equals_single_batch_statistics(seed, parts):
    import threading

    rng = np.random.default_rng(seed)
    shards = [
        rng.normal(rng.normal() * 5, rng.uniform(0.5, 3), size=(int(rng.integers(1, 6)), 3, 2, 2)) for _ in range(parts)
    ]
    group, results = _SimulatedGroup(parts), [None] * parts

    def worker(k):
        results[k] = F.sync_moments(shards[k], group.all_reduce)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    whole = np.concatenate(shards)
    mean, var = F.moments(whole, (0, 2, 3))
    for got_mean, got_var, count in results:
        assert count == whole.size // 3
        np.testing.assert_allclose(got_mean, mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_var, var, rtol=1e-10, atol=1e-12)
