"""The experiment drivers and diagnostics the chapters call: the numbers the book states come from here."""

import numpy as np
import pytest

import bnlib
from bnbook import ch01_why_normalize, ch02_algorithm, ch03_backward, ch04_running_stats, timing


def test_gradient_descent_2d_matches_the_closed_form():
    path = ch01_why_normalize.gradient_descent_2d([1.0, 100.0], steps=1000)
    # steep direction solved in one step, then (1 - 1/100)^k in the flat one
    assert path.points[1, 1] == 0.0
    np.testing.assert_allclose(path.points[5, 0], 0.99**5)
    k = path.steps_to_converge
    assert 0.5 * 0.99 ** (2 * k) < 1e-6 * 0.5 * 101 <= 0.5 * 0.99 ** (2 * (k - 1))
    assert ch01_why_normalize.gradient_descent_2d([1.0, 1.0]).steps_to_converge == 1
    with pytest.raises(ValueError, match="curvatures: expected two positive numbers"):
        ch01_why_normalize.gradient_descent_2d([1.0, -1.0])


def test_saturated_fraction_thresholds():
    assert ch01_why_normalize.saturated_fraction(np.array([0.98, -0.99, 0.5, 0.0]), "tanh") == 0.5
    assert ch01_why_normalize.saturated_fraction(np.array([0.02, 0.98, 0.5, 0.5]), "sigmoid") == 0.5
    assert ch01_why_normalize.saturated_fraction(np.array([0.0, 0.0, 1.0, 2.0]), "relu") == 0.5
    with pytest.raises(ValueError, match="activation"):
        ch01_why_normalize.saturated_fraction(np.zeros(3), "gelu")


def test_layer_report_with_bn_saturates_like_a_standard_normal():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((512, 20)), rng.integers(0, 3, 512)
    model = bnlib.mlp([20] + [64] * 4 + [3], activation="tanh", norm="batch", gain=3.0, rng=0)
    report = ch01_why_normalize.layer_report(model, x, y, activation="tanh")
    assert len(report.activations) == 4 and len(report.grad_norms) == 5
    np.testing.assert_allclose(report.saturated, 0.0364, atol=0.01)  # P(|z| > artanh 0.97)


def test_linear_fit_r2():
    x = np.linspace(-1, 1, 50)
    assert ch02_algorithm.linear_fit_r2(x, 3 * x + 1) == pytest.approx(1.0)
    assert ch02_algorithm.linear_fit_r2(x, x**2) < 0.01


def test_variance_error_sweep_shows_cancellation_and_bnlib_stays_accurate():
    sweep = ch02_algorithm.variance_error_sweep([1.0, 1e4], n=1024, features=4)
    assert sweep["one_pass"][1] > 1 and sweep["one_pass_negative"][1]
    assert sweep["bnlib"].max() < 1e-4 and sweep["output_error"].max() < 1e-4


def test_constant_stats_error_follows_sqrt_2_over_n_minus_2():
    errors = ch03_backward.constant_stats_error([8, 64], trials=100)
    np.testing.assert_allclose(errors, np.sqrt(2 / (np.array([8, 64]) - 2)), rtol=0.1)


def test_paired_timings_runs_every_function_each_round():
    calls = []
    times = timing.paired_timings({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert len(times["a"]) == len(times["b"]) == 4 and calls.count("a") == 5


def test_running_estimates_follow_the_ema_and_conventions_agree():
    torch_trace = ch04_running_stats.running_estimates(0.1, 8, 20, seed=3)
    keras_trace = ch04_running_stats.running_estimates(0.1, 8, 20, seed=3, convention="keras")
    np.testing.assert_allclose(torch_trace.running_mean, keras_trace.running_mean)  # same weight on new batches
    assert np.all(keras_trace.running_var[1:] < torch_trace.running_var[1:])  # biased < unbiased
    manual = 0.0
    for m in torch_trace.batch_means:
        manual = 0.9 * manual + 0.1 * m
    assert torch_trace.running_mean[-1] == pytest.approx(manual)


def test_effective_window():
    assert ch04_running_stats.effective_window(0.1) == 22  # 1 - 0.9^22 = 0.90 >= 0.9 > 1 - 0.9^21
    assert ch04_running_stats.effective_window(1.0) == 1
    with pytest.raises(ValueError, match="momentum"):
        ch04_running_stats.effective_window(0.0)


def test_chained_ratio_matches_theory():
    ratios = ch04_running_stats.chained_eval_train_ratio(10, 8, steps=400, test_batches=400)
    np.testing.assert_allclose(ratios[-1], (7 / 8) ** 5, rtol=0.03)
    keras = ch04_running_stats.chained_eval_train_ratio(10, 8, steps=400, test_batches=400, convention="keras")
    assert keras[-1] == pytest.approx(1.0, abs=0.03)


def test_moving_std_is_biased_low():
    bias = ch04_running_stats.moving_std_bias([2, 32], steps=4000)
    np.testing.assert_allclose(bias["unbiased_var"], 1, atol=0.06)
    np.testing.assert_allclose(bias["biased_var"], [0.5, 31 / 32], atol=0.03)
    assert np.all(bias["moving_std"] < bias["biased_var"])


def test_recalibration_fixes_lagging_statistics():
    r = ch04_running_stats.recalibration_study(momentum=0.01, epochs=2)
    assert r.mean_error_after < 0.01 < r.mean_error_before
    assert r.eval_accuracy_after > r.eval_accuracy_before
    assert r.eval_accuracy_after == pytest.approx(r.train_mode_accuracy, abs=0.01)


def test_init_report_is_cached_and_matches_a_fresh_report():
    a = ch01_why_normalize.init_report("tanh", 1.0, 3, True)
    assert ch01_why_normalize.init_report("tanh", 1.0, 3, True) is a
    x, y = ch01_why_normalize.digits_batch()
    fresh = ch01_why_normalize.layer_report(
        bnlib.mlp([64, 100, 100, 100, 10], activation="tanh", norm="batch", gain=1.0, rng=0), x, y, activation="tanh"
    )
    np.testing.assert_allclose(a.grad_norms, fresh.grad_norms)
