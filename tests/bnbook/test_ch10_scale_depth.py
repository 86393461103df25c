"""Chapter 10's drivers (bnbook/ch10_scale_depth.py): scale invariance, weight norm and effective
learning rate, update ratios, depth profiles of plain and residual networks, padding pollution."""

import numpy as np
import pytest

import bnlib
from bnbook import ch10_scale_depth as ch10
from bnlib.data import load_digits
from bnlib.gradcheck import check_layer


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_scale_invariance_holds_to_rounding_with_a_negligible_eps():
    s = ch10.scale_invariance((0.1, 3.0), eps=1e-12)
    np.testing.assert_allclose(s.gradient_ratio, 1 / s.c, rtol=1e-8)
    assert np.all(np.abs(s.cosine) < 1e-10) and np.all(s.output_change < 1e-9)


def test_eps_breaks_scale_invariance_more_for_small_weights():
    # first order in eps / var: the change at c is about |1/c^2 - 1| eps / var, so 99 : 0.99
    s = ch10.scale_invariance((0.1, 10.0), eps=1e-5)
    assert 90 < s.output_change[0] / s.output_change[1] < 110
    assert abs(s.gradient_ratio[0] - 10) > 1e-4


def test_scale_invariance_rejects_non_positive_factors():
    with pytest.raises(ValueError, match="cs"):
        ch10.scale_invariance((1.0, -2.0))
    with pytest.raises(ValueError, match="cs"):
        ch10.scale_invariance(())


def test_without_weight_decay_the_norm_grows_by_lr2_g2_every_step(digits):
    t = ch10.weight_norm_study(lr=0.5, weight_decay=0.0, seeds=(0,), epochs=1, data=digits)
    assert t.growth_residual[0] < 1e-3
    assert np.all(np.diff(t.sq_norm[0], axis=0) > -1e-9)  # never shrinks
    assert t.sq_norm.shape == (1, t.steps_per_epoch + 1, 3) and t.angle.shape == (1, t.steps_per_epoch, 3)
    np.testing.assert_allclose(t.effective_lr, 0.5 / t.sq_norm)


def test_weight_decay_reaches_the_same_norm_from_different_initial_gains(digits):
    small, large = (
        ch10.weight_norm_study(lr=0.5, weight_decay=0.01, gain=g, seeds=(0,), epochs=15, data=digits)
        for g in (0.2, 5.0)
    )
    start = large.sq_norm[0, 0].mean() / small.sq_norm[0, 0].mean()
    end = large.sq_norm[0, -1].mean() / small.sq_norm[0, -1].mean()
    assert start > 500 and 0.7 < end < 1.4
    last_epoch = small.angle[0, -small.steps_per_epoch :].mean()
    assert 0.6 * ch10.equilibrium_angle(0.5, 0.01) < last_epoch < 1.2 * ch10.equilibrium_angle(0.5, 0.01)


def test_pre_norm_variance_is_about_one_minus_one_over_pi(digits):
    var = ch10.pre_norm_variance(11, seeds=(0, 1), data=digits)
    assert var.shape == (2, 11)
    assert abs(var[:, 1:].mean() - (1 - 1 / np.pi)) < 0.08  # every BN after the first sees BN -> ReLU -> He


def test_drivers_refuse_bad_arguments():
    with pytest.raises(ValueError, match="seeds"):
        ch10.weight_norm_study(seeds=())
    with pytest.raises(ValueError, match="epochs"):
        ch10.update_ratios(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        ch10.equilibrium_angle(-0.1, 0.01)
    with pytest.raises(ValueError, match="weight_decay"):
        ch10.weight_norm_study(weight_decay=float("nan"))


def test_weight_decay_touches_only_the_scale_invariant_weights(digits):
    a = ch10.weight_norm_study(lr=0.1, weight_decay=0.0, seeds=(0,), epochs=1, data=digits)
    b = ch10.weight_norm_study(lr=0.1, weight_decay=0.05, seeds=(0,), epochs=1, data=digits)
    assert b.sq_norm[0, -1].mean() < a.sq_norm[0, -1].mean()
    # the same run with weight decay on the invariant weights only: the trajectory differs only through
    # their norm, so the angles turned are close at the first step (the function is the same)
    np.testing.assert_allclose(a.angle[0, 0], b.angle[0, 0], rtol=0.02)


def test_equilibrium_angle_balances_shrinkage_and_growth():
    lr, wd = 0.3, 0.02
    angle = ch10.equilibrium_angle(lr, wd)
    # ||W||^2 (1 - lr wd)^2 + (angle ||W||)^2 = ||W||^2 up to the second-order term (lr wd)^2
    assert abs((1 - lr * wd) ** 2 + angle**2 - 1) <= (lr * wd) ** 2 + 1e-15


def test_update_ratios_match_one_step_by_hand(digits):
    r = ch10.update_ratios(norm="batch", lr=0.05, momentum=0.0, seeds=(0,), epochs=1, depth=2, data=digits)
    model = bnlib.mlp([64, 64, 64, 10], norm="batch", rng=0)
    xb, yb = next(bnlib.data.batches(digits.x_train, digits.y_train, 32, rng=np.random.default_rng(0)))
    before = [m.weight.copy() for m in model.layers if isinstance(m, bnlib.Linear)]
    loss = bnlib.SoftmaxCrossEntropy()
    loss(model(xb), yb)
    model.backward(loss.backward())
    bnlib.SGD(model.parameters(), lr=0.05).step()
    after = [m.weight for m in model.layers if isinstance(m, bnlib.Linear)]
    expected = [np.log10(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(after, before)]
    np.testing.assert_allclose(r.log_ratio[0, 0], expected, rtol=1e-12)
    assert not r.diverged[0] and np.isfinite(r.test_accuracy[0])


def test_update_ratios_flag_a_divergence_and_reject_unknown_norms(digits):
    r = ch10.update_ratios(norm="none", lr=0.5, seeds=(0,), epochs=2, data=digits)
    assert r.diverged[0] and np.isnan(r.test_accuracy[0]) and np.isnan(r.log_ratio[0, -1]).all()
    with pytest.raises(ValueError, match="norm"):
        ch10.update_ratios(norm="layer")


def test_scale_layer_gradients_check():
    layer = ch10.Scale(0.7)
    assert check_layer(layer, np.random.default_rng(0).normal(size=(5, 3)), rng=1).worst < 1e-7
    with pytest.raises(ValueError, match="forward"):
        ch10.Scale().backward(np.ones(3))


def test_zero_init_residual_blocks_are_the_identity(digits):
    x = digits.x_train[:32]
    for arch in ("residual + BN, zero gamma", "SkipInit"):
        net = ch10.deep_net(arch, 7, seed=0).train()
        stem = bnlib.Sequential(*net.layers[: 2 if arch == "SkipInit" else 3])
        head = net.layers[-1]
        np.testing.assert_allclose(net(x), head(stem(x)), atol=1e-12)


def test_deep_net_shapes_and_refusals():
    plain = ch10.deep_net("plain + BN", 6, seed=0, taps=True)
    assert sum(isinstance(m, ch10.Tap) for m in plain.modules()) == 6
    assert len(ch10.deep_net("plain", 6, seed=0).layers) == 13
    residual = ch10.deep_net("residual + BN", 9, seed=0, taps=True)
    assert sum(isinstance(m, bnlib.Residual) for m in residual.modules()) == 4
    assert sum(isinstance(m, ch10.Tap) for m in residual.modules()) == 5
    with pytest.raises(ValueError, match="odd depth"):
        ch10.deep_net("residual + BN", 10)
    with pytest.raises(ValueError, match="architecture"):
        ch10.deep_net("densenet", 11)
    with pytest.raises(ValueError, match="depth"):
        ch10.deep_net("plain", 0)


def test_gradient_profiles_explode_only_in_plain_batch_norm_networks(digits):
    bn = ch10.gradient_profile("plain + BN", 21, seeds=(0,), data=digits)
    plain = ch10.gradient_profile("plain", 21, seeds=(0,), data=digits)
    residual = ch10.gradient_profile("residual + BN", 21, seeds=(0,), data=digits)
    flat = ch10.gradient_profile("residual + BN, zero gamma", 21, seeds=(0,), data=digits)
    assert bn.ratio[0] > 20 and 0.2 < plain.ratio[0] < 5
    per_layer = lambda p: p.ratio[0] ** (1 / 20)  # noqa: E731  (taps 20 layers apart)
    assert 1.02 < per_layer(residual) < 1.15 < 1.2 < per_layer(bn)  # slower growth, not none
    assert residual.variance[0, -1] > 5 * residual.variance[0, 0]  # the stream's variance grows
    assert bn.grad_norm.shape == (1, 21) and flat.grad_norm.shape == (1, 11)
    np.testing.assert_array_equal(flat.position, np.arange(1, 22, 2))
    # identity blocks: every tap but the one after the last ReLU sees the same gradient
    np.testing.assert_allclose(flat.grad_norm[0, :-1], flat.grad_norm[0, 0], rtol=1e-12)


def test_depth_training_records_every_architecture(digits):
    runs = ch10.depth_training(("plain + BN", "SkipInit"), depth=5, seeds=(0,), epochs=2, data=digits)
    assert runs.train_loss.shape == runs.test_accuracy.shape == (2, 1, 2)
    assert np.isfinite(runs.test_accuracy).all() and runs.test_accuracy[1, 0, -1] > 0.8


def test_padding_pollution_follows_the_formula_and_spares_per_token_norms():
    p = ch10.padding_pollution((16, 32, 64))
    np.testing.assert_allclose(p.measured_mean, p.predicted_mean, rtol=1e-12)
    np.testing.assert_allclose(p.measured_var, p.predicted_var, rtol=1e-12)
    assert np.all(np.diff(p.batch_norm_error) > 0) and p.batch_norm_error[0] > 0.1
    assert np.all(p.layer_norm_error == 0) and np.all(p.rms_norm_error == 0)


def test_masked_batch_norm_uses_the_real_tokens_only():
    x, mask = ch10.padded_batch([5, 3], channels=2, max_length=9, seed=1)
    assert x.shape == (2, 9, 2) and mask.sum() == 8 and np.all(x[~mask] == 0)
    real = x[mask]
    expected = (real - real.mean(axis=0)) / np.sqrt(real.var(axis=0) + 1e-5)
    np.testing.assert_allclose(ch10.batch_norm_tokens(x, mask)[mask], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="max_length"):
        ch10.padded_batch([5, 3], max_length=4)
    with pytest.raises(ValueError, match="lengths"):
        ch10.padded_batch([0, 3])


def test_rms_norm_matches_torch():
    parity = ch10.rms_norm_torch_parity()
    assert set(parity) == {"forward", "input gradient", "weight gradient"}
    assert max(parity.values()) < 1e-12
