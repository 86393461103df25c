"""Chapter 7's scale-invariance, depth and smoothness helpers (bnbook/ch07_training.py)."""

import numpy as np
import pytest

from bnbook import ch07_training as ch07
from bnlib.data import load_digits
from bnlib.train import History, fit


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_scale_invariant_weights_are_the_hidden_linears_before_batch_norm():
    model = ch07.build_mlp(norm="batch", depth=3, seed=0)
    invariant = ch07.scale_invariant_weights(model)
    assert len(invariant) == 3
    output_layer = model.layers[-1]
    assert all(m is not output_layer for m, _ in invariant)
    assert ch07.scale_invariant_weights(ch07.build_mlp(norm=None, depth=3, seed=0)) == []
    assert ch07.scale_invariant_weights(ch07.build_mlp(norm="batch", norm_position="after", depth=3, seed=0)) == []


def test_scaling_the_invariant_weights_leaves_the_training_output_unchanged(digits):
    model = ch07.build_mlp(norm="batch", depth=3, seed=0)
    x = digits.x_train[:64]
    model.train()
    before = model(x)
    for m, name in ch07.scale_invariant_weights(model):
        getattr(m, name)[...] *= 5.0
    np.testing.assert_allclose(model(x), before, rtol=1e-4, atol=1e-4)
    model.layers[-1].weight[...] *= 5.0  # the output layer is not invariant
    assert np.abs(model(x) - before).max() > 0.1


def test_fit_two_rates_with_one_rate_is_fit(digits):
    a = fit(ch07.build_mlp(norm="batch", depth=2, seed=3), digits, epochs=2, lr=0.1, seed=3)
    b = ch07.fit_two_rates(ch07.build_mlp(norm="batch", depth=2, seed=3), digits, epochs=2, lr=0.1, seed=3)
    assert a.train_loss == b.train_loss and a.test_accuracy == b.test_accuracy


def test_gain_g_at_lr_is_gain_1_at_lr_over_g_squared(digits):
    (eq,) = ch07.gain_equivalence((4.0,), seeds=(0,), epochs=2, depth=2, data=digits)
    assert eq.equivalent_weight_lr == pytest.approx(0.05 / 16)
    assert eq.max_train_loss_difference < 1e-9
    assert np.array_equal(eq.accuracy, eq.equivalent_accuracy)
    # the wrong rule (lr / g) does not reproduce the run
    g = 4.0
    h = ch07.fit_two_rates(ch07.build_mlp(norm="batch", gain=g, depth=2, seed=0, eps=1e-5 * g**2), digits, epochs=2)
    wrong = ch07.fit_two_rates(
        ch07.build_mlp(norm="batch", gain=1.0, depth=2, seed=0), digits, epochs=2, weight_lr=0.05 / g
    )
    assert np.max(np.abs(np.subtract(h.train_loss, wrong.train_loss))) > 1e-3


def test_gradient_ratio_explodes_with_depth_only_with_batch_norm(digits):
    table = ch07.gradient_ratio_table(depths=(5, 20), seeds=(0, 1), data=digits)
    assert table[("batch", 20)].min() > 5 * table[("batch", 5)].max()
    assert table[(None, 20)].max() < 5
    assert 1.1 < ch07.per_layer_growth(table) < 1.4


def test_gradient_ratio_trace_starts_at_the_initialization_ratio(digits):
    trace = ch07.gradient_ratio_trace(depth=10, steps=(0, 3), seed=1, data=digits)
    assert trace.ratio[0] == pytest.approx(ch07.gradient_norm_ratio(depth=10, seed=1, data=digits))
    assert len(trace.ratio) == 2 and trace.first_weight_growth > 1.0


def test_effective_smoothness_divides_by_the_step_length(digits):
    p = ch07.smoothness_probe(norm="batch", lr=0.1, steps=21, probe_every=20, data=digits)
    assert len(p.steps) == 2
    # max over eta of change / (eta lr |g|) >= (largest change) / (largest eta * lr * |g|)
    assert np.all(p.effective_smoothness >= p.gradient_change / (4.0 * 0.1 * p.gradient_norm) - 1e-12)
    assert np.all(p.effective_smoothness > 0)


def test_loss_rose():
    assert ch07.loss_rose(History([1.0, 0.5, 1.0], [], [], False))
    assert not ch07.loss_rose(History([1.0, 0.5, 0.6], [], [], False))
    assert ch07.loss_rose(History([1.0], [], [], True))


def test_equivalent_lr_axis_maps_gain_to_lr_and_back():
    _, to_lr, to_gain = ch07.equivalent_lr_axis(lr=0.05)
    assert to_lr(4.0) == pytest.approx(0.05 / 16)
    assert to_gain(to_lr(0.25)) == pytest.approx(0.25)
    assert np.isfinite(to_lr(0.0))


def test_largest_stable_lr_needs_every_seed_above_eighty_percent():
    from types import SimpleNamespace

    from bnbook import ch07_training as ch07

    def run(lr, accs):
        histories = [SimpleNamespace(test_accuracy=[a], diverged=False) for a in accs]
        return {"setting": {"lr": lr}, "histories": histories}

    # one seed under 80% makes a rate unstable; a network that ends near 50% is not "stable"
    runs = [run(0.05, [0.95, 0.96]), run(0.2, [0.94, 0.79]), run(1.0, [0.51, 0.55])]
    assert ch07.largest_stable_lr(runs) == 0.05
    assert ch07.largest_stable_lr(runs, threshold=0.5) == 1.0
    assert ch07.largest_stable_lr([run(0.1, [0.2])]) is None
