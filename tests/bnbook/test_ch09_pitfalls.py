"""The deliberate mistakes of bnlib.pitfalls produce the errors chapter 9 states, and no more."""

import numpy as np
import pytest

import bnlib
from bnbook import ch03_backward, ch09_pitfalls
from bnlib import gradcheck


def test_forgot_sqrt_output_spread_is_inverse_std():
    x = np.random.default_rng(0).normal(0.0, [0.1, 1.0, 10.0], size=(4096, 3))
    correct, wrong = ch09_pitfalls.forgot_sqrt(x)
    np.testing.assert_allclose(correct, 1, atol=1e-3)
    np.testing.assert_allclose(wrong, 1 / x.std(axis=0), rtol=1e-3)


def test_mean_over_all_elements_leaves_features_unnormalized():
    x = np.random.default_rng(1).normal([-5.0, 50.0], [0.1, 10.0], size=(512, 2))
    mean, std = ch09_pitfalls.mean_over_all_elements(x)
    assert np.abs(mean).max() > 0.5 and std.min() < 0.01


def test_constant_stats_batchnorm_is_wrong_in_training_and_right_in_eval():
    layer = ch03_backward.ConstantStatsBatchNorm(3)
    x = np.random.default_rng(2).normal(size=(8, 3))
    assert gradcheck.check_layer(layer, x, rng=3).errors["x"] > 0.1
    layer(x)
    layer.eval()
    assert gradcheck.check_layer(layer, x, rng=3).worst < 1e-6
    dy = np.ones_like(x)
    layer.train()
    layer(x)
    np.testing.assert_allclose(
        layer.backward(dy), ch03_backward.batch_norm_backward_constant_stats(dy, x, layer.gamma)[0]
    )


def test_with_constant_stats_backward_copies_parameters():
    model = bnlib.mlp([4, 5, 3], norm="batch", rng=0)
    model[1].gamma[:] = 2.0
    wrong = ch09_pitfalls.with_constant_stats_backward(model)
    assert isinstance(wrong[1], ch03_backward.ConstantStatsBatchNorm) and np.all(wrong[1].gamma == 2.0)
    x = np.random.default_rng(0).normal(size=(6, 4))
    np.testing.assert_allclose(wrong(x), model(x))  # same forward


def test_mixed_momentum_spread_is_one_batch():
    mix = ch09_pitfalls.mixed_momentum(seeds=range(40))
    assert mix.estimates_wrong.std() == pytest.approx(2 / np.sqrt(8), rel=0.25)
    assert mix.estimates_right.std() < 0.2 * mix.estimates_wrong.std()


def test_one_pass_nan_and_divide_by_variance():
    share, lowest = ch09_pitfalls.one_pass_nan(features=32)
    assert share > 0.2 and lowest < 0
    correct, misread = ch09_pitfalls.divide_by_variance(np.array([3.0, 5.0]), 4.0, 4.0, eps=0.0)
    np.testing.assert_allclose(correct, [-0.5, 0.5])
    np.testing.assert_allclose(misread, [-0.25, 0.25])


def test_keras_batch_of_one_outputs_beta_and_variance_decays():
    outputs, trace, eval_std = ch09_pitfalls.keras_batch_of_one(steps=100)
    assert np.all(outputs == 0.0)
    np.testing.assert_allclose(trace[-1], 0.99**100, rtol=1e-6)  # each step multiplies it by the momentum
    assert eval_std > 2


def test_seed_statistics_are_units_times_the_global_ones():
    z = np.random.default_rng(4).normal([[1.0], [-2.0], [3.0], [0.5], [4.0]], 1.0, size=(5, 40))
    mu, sigmasqr, out = ch09_pitfalls.seed_statistics(z)
    assert mu == pytest.approx(5 * z.mean(), rel=1e-12)
    assert sigmasqr == pytest.approx(5 * np.mean((z - mu) ** 2), rel=1e-12)
    assert mu != pytest.approx(z.mean())  # not the one mean over every element
    np.testing.assert_allclose(out, (z - mu) / np.sqrt(sigmasqr + 1e-5))
    assert np.abs(out.mean(axis=1)).max() > 0.1  # the units are not centred


def test_running_variance_conventions_pytorch_unbiased_keras3_biased():
    x = np.random.default_rng(5).normal(1.0, 2.0, size=(8, 3))
    stored = ch09_pitfalls.running_variance_conventions(x)
    np.testing.assert_allclose(stored["pytorch"], x.var(axis=0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(stored["keras"], x.var(axis=0, ddof=0), rtol=1e-4)


def test_real_keras_batch_of_one_matches_the_imitation():
    outputs, trace, eval_std = ch09_pitfalls.real_keras_batch_of_one(steps=100)
    assert np.all(outputs == 0.0)
    np.testing.assert_allclose(trace[-1], 0.99**100, rtol=1e-4)
    _, imitation_trace, imitation_std = ch09_pitfalls.keras_batch_of_one(steps=100)
    np.testing.assert_allclose(trace, imitation_trace, rtol=1e-4)
    assert eval_std == pytest.approx(imitation_std, rel=1e-3)
