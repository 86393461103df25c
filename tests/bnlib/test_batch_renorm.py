"""Batch renormalization (bnlib.BatchRenorm, functional.batch_renorm_*): batch norm when the limits
are 1 and 0, the correction r and d as defined and clipped, a stop-gradient backward, the paper's
relaxation schedule, and bad input refused before anything changes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bnlib
from bnlib import functional as F
from bnlib.gradcheck import check_layer

seeds = st.integers(0, 2**32 - 1)


@given(seed=seeds, n=st.integers(2, 8), c=st.integers(1, 4), spatial=st.sampled_from([(), (3,), (2, 2)]))
def test_with_rmax_1_and_dmax_0_it_is_batch_norm(seed, n, c, spatial):
    rng = np.random.default_rng(seed)
    shape = (n, c) + spatial
    renorm, plain = bnlib.BatchRenorm(c, rmax=1.0, dmax=0.0), bnlib.BatchNorm(c, fast=False)
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    for layer in (renorm, plain):
        layer.gamma, layer.beta = gamma.copy(), beta.copy()
    for _ in range(3):
        x, dy = rng.normal(1.0, 2.0, size=shape), rng.normal(size=shape)
        np.testing.assert_allclose(renorm(x), plain(x), atol=1e-12)
        np.testing.assert_allclose(renorm.backward(dy), plain.backward(dy), atol=1e-12)
        np.testing.assert_allclose(renorm.dgamma, plain.dgamma, atol=1e-12)
        np.testing.assert_allclose(renorm.dbeta, plain.dbeta, atol=1e-12)
    np.testing.assert_allclose(renorm.running_mean, plain.running_mean, atol=1e-12)
    np.testing.assert_allclose(renorm.running_var, plain.running_var, atol=1e-12)
    assert renorm.num_batches_tracked == plain.num_batches_tracked == 3
    renorm.eval(), plain.eval()
    x = rng.normal(size=shape)
    np.testing.assert_allclose(renorm(x), plain(x), atol=1e-12)


def test_r_and_d_follow_their_definition_and_are_clipped():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0, 0.5], [2.0, 0.5, 1.0], size=(64, 3))
    mean, var = np.array([0.0, 0.0, 0.4]), np.array([1.0, 0.5, 1.1])
    _, cache = F.batch_renorm_train(x, mean, var, eps=1e-5, rmax=3.0, dmax=5.0)
    sigma_b, sigma = np.sqrt(x.var(axis=0) + 1e-5), np.sqrt(var + 1e-5)
    np.testing.assert_allclose(cache.r, sigma_b / sigma, rtol=1e-12)  # all inside [1/3, 3]
    np.testing.assert_allclose(cache.d, (x.mean(axis=0) - mean) / sigma, rtol=1e-12)
    # unclipped, the training output is the eval output with the running statistics
    y, _ = F.batch_renorm_train(x, mean, var, eps=1e-5, rmax=3.0, dmax=5.0)
    np.testing.assert_allclose(y, (x - mean) / sigma, atol=1e-12)
    _, tight = F.batch_renorm_train(x, mean, var, eps=1e-5, rmax=1.1, dmax=0.1)
    np.testing.assert_allclose(tight.r, np.clip(sigma_b / sigma, 1 / 1.1, 1.1))
    np.testing.assert_allclose(tight.d, np.clip((x.mean(axis=0) - mean) / sigma, -0.1, 0.1))
    assert (np.abs(tight.d) == 0.1).any() and (tight.r != cache.r).any()


def test_backward_holds_r_and_d_constant():
    rng = np.random.default_rng(1)
    x, dy = rng.normal(size=(16, 3)), rng.normal(size=(16, 3))
    gamma = rng.uniform(0.5, 2.0, 3)
    y, cache = F.batch_renorm_train(x, np.full(3, 0.3), np.full(3, 2.0), gamma=gamma)
    dx, dgamma, dbeta = F.batch_renorm_backward(dy, cache)
    _, bn_cache = F.batch_norm_train(x, gamma)
    want, _, _ = F.batch_norm_backward(dy * cache.r, bn_cache)  # batch norm's backward, upstream scaled by r
    np.testing.assert_allclose(dx, want, atol=1e-12)
    np.testing.assert_allclose(dgamma, (dy * (y - 0.0) / gamma).sum(axis=0), atol=1e-10)
    np.testing.assert_allclose(dbeta, dy.sum(axis=0), atol=1e-12)


def test_finite_differences_agree_where_r_and_d_are_clipped():
    # at the clipping limits r and d do not move with x: the stop-gradient backward is then the
    # true gradient, which finite differences measure (momentum 0 keeps the running statistics fixed)
    layer = bnlib.BatchRenorm(3, rmax=1.5, dmax=0.5, momentum=0.0)
    layer.running_mean[:] = [10.0, -10.0, 10.0]
    layer.running_var[:] = [100.0, 0.01, 100.0]
    layer.gamma = np.array([0.5, 1.5, -1.0])
    x = np.random.default_rng(2).normal(size=(8, 3))
    _, cache = F.batch_renorm_train(x, layer.running_mean, layer.running_var, rmax=1.5, dmax=0.5)
    assert np.allclose(np.abs(cache.d), 0.5) and np.allclose(np.maximum(cache.r, 1 / cache.r), 1.5)
    result = check_layer(layer, x, rng=3)
    assert result.worst < 1e-6, result.errors


def test_the_relaxation_schedule_drives_the_layer():
    assert F.renorm_limits(4999) == (1.0, 0.0)
    rmax, dmax = F.renorm_limits(15000)
    np.testing.assert_allclose([rmax, dmax], [1 + 2 * 10000 / 35000, 5 * 10000 / 20000])
    layer = bnlib.BatchRenorm(2, schedule=(2, 4, 3))
    seen = []
    for _ in range(5):
        seen.append(layer.limits())
        layer(np.random.default_rng(len(seen)).normal(size=(4, 2)))
    assert seen == [(1.0, 0.0), (1.0, 0.0), (1.0, 0.0), (2.0, 5.0), (3.0, 5.0)]


def test_bad_input_is_refused_and_nothing_changes():
    for kwargs, match in [
        (dict(rmax=0.5), "rmax: expected a finite number >= 1"),
        (dict(dmax=-1.0), "dmax: expected a finite number >= 0"),
        (dict(rmax=float("nan")), "rmax"),
        (dict(schedule=(10, 5, 20)), "schedule"),
        (dict(schedule=(0, 1)), "schedule"),
    ]:
        with pytest.raises(ValueError, match=match):
            bnlib.BatchRenorm(2, **kwargs)
    with pytest.raises(TypeError, match="rmax"):
        bnlib.BatchRenorm(2, rmax="3")
    layer = bnlib.BatchRenorm(2)
    before = (layer.running_mean.copy(), layer.running_var.copy(), layer.num_batches_tracked)
    bad = np.ones((4, 2))
    bad[0, 0] = np.nan
    for x, err in [(np.ones((1, 2)), ValueError), (bad, ValueError), (np.ones((4, 3)), ValueError)]:
        with pytest.raises(err):
            layer(x)
        np.testing.assert_array_equal(layer.running_mean, before[0])
        np.testing.assert_array_equal(layer.running_var, before[1])
        assert layer.num_batches_tracked == before[2]
    layer.rmax = 0.2  # assigned later: refused at the next forward
    with pytest.raises(ValueError, match="rmax"):
        layer(np.ones((4, 2)))
    with pytest.raises(TypeError, match="BatchRenormCache"):
        F.batch_renorm_backward(np.ones((4, 2)), F.batch_norm_train(np.ones((4, 2)))[1])
    with pytest.raises(ValueError, match="running_var"):
        F.batch_renorm_train(np.ones((4, 2)), np.zeros(2), -np.ones(2))


def test_assigned_options_are_honoured_or_refused():
    layer = bnlib.BatchRenorm(2, rmax=1.0, dmax=0.0, momentum=1.0)
    layer.unbiased_running_var = False  # Keras 3's convention: the biased batch variance
    x = np.array([[0.0, 1.0], [2.0, 3.0]])
    layer(x)
    np.testing.assert_allclose(layer.running_var, x.var(axis=0))
    layer.virtual_batch_size = 1
    with pytest.raises(ValueError, match="virtual_batch_size"):
        layer(x)


def test_recalibrate_gives_a_renorm_network_the_statistics_of_the_same_batch_norm_network():
    # BatchRenorm's training pass corrects towards the running statistics; recalibrate resets them, so
    # it must run the renorm layers as batch norm, and then restore their limits and schedule
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(200, 4))
    w = rng.normal(size=(4, 4))

    def net(norm):
        first, second = norm(4), norm(4)
        lin = bnlib.Linear(4, 4, bias=False, rng=1)
        lin.weight = w.copy()
        return bnlib.Sequential(first, lin, second)

    renorm = net(lambda c: bnlib.BatchRenorm(c, rmax=2.0, dmax=1.0))  # fixed limits: no warm-up to hide behind
    for layer in renorm.layers[::2]:
        layer.running_mean[:], layer.running_var[:] = 5.0, 9.0  # stale
    bnlib.train.recalibrate(renorm, x)
    reference = bnlib.train.recalibrate(net(bnlib.BatchNorm), x)
    for got, want in zip(renorm.layers[::2], reference.layers[::2]):
        np.testing.assert_allclose(got.running_mean, want.running_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.running_var, want.running_var, rtol=1e-12)
        assert (got.rmax, got.dmax, got.schedule) == (2.0, 1.0, None)
    scheduled = bnlib.Sequential(bnlib.BatchRenorm(4, schedule=(10, 20, 30)))
    assert bnlib.train.recalibrate(scheduled, x)[0].schedule == (10, 20, 30)


def test_corrections_report_the_clipped_r_and_d_of_the_last_training_forward():
    layer = bnlib.BatchRenorm(2, rmax=1.5, dmax=0.5, momentum=0.0)
    assert layer.corrections is None
    x = np.array([[0.0, 10.0], [4.0, 10.2], [8.0, 9.8]])  # batch sd 3.27 and 0.16, running sd 1
    layer(x)
    r, d = layer.corrections
    np.testing.assert_allclose(r, [1.5, 1 / 1.5])  # both clipped, one from above and one from below
    np.testing.assert_allclose(d, [0.5, 0.5])
    r[:] = 0.0  # a copy: the layer's backward is not changed
    assert layer.corrections[0][0] == 1.5
    x2 = np.array([[0.2, -0.8], [1.8, 0.8]])  # sd 0.8 in both: r inside the limits; d = 1 and 0
    layer(x2)
    np.testing.assert_allclose(layer.corrections[0], np.sqrt(0.64 + layer.eps) / np.sqrt(1 + layer.eps))
    np.testing.assert_allclose(layer.corrections[1], [0.5, 0.0], atol=1e-12)
    layer.eval()(x)
    assert layer.corrections is None
