"""Chapter 6's new drivers: the bias in front of batch norm, and the normalization-groups figure."""

import numpy as np

from bnbook import ch06_convolutions as ch06


def test_bias_before_batch_norm_is_removed_exactly_and_gets_no_gradient():
    cost = ch06.bias_before_batch_norm(seed=3)
    assert cost.max_output_difference < 1e-12
    assert cost.max_bias_gradient < 1e-12 < 1e-3 < cost.typical_weight_gradient
    assert cost.wasted_parameters == 8


def test_bias_after_an_activation_is_not_removed():
    # the control: the same algebra fails once a ReLU sits between the bias and batch norm
    from bnlib import BatchNorm, Linear, ReLU

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6))
    a, b = Linear(6, 4, rng=1), Linear(6, 4, bias=False, rng=1)
    a.bias = rng.normal(size=4)
    out_a = BatchNorm(4)(ReLU()(a(x)))
    out_b = BatchNorm(4)(ReLU()(b(x)))
    assert np.abs(out_a - out_b).max() > 0.1


def test_torch_agrees_that_the_bias_gradient_vanishes():
    bias_grad, weight_grad = ch06.torch_bias_gradient(seed=1)
    assert bias_grad < 1e-12 < 1e-3 < weight_grad


def test_training_with_and_without_the_bias_gives_the_same_accuracy():
    r = ch06.bias_training_comparison(seeds=(0,), epochs=1)
    np.testing.assert_array_equal(r["accuracy_with"], r["accuracy_without"])
    assert r["max_bias_change"].max() < 1e-12
    assert r["final_test_loss_difference"].max() < 1e-3


def test_sum_over_m_is_units_times_the_global_mean():
    # the formula the chapter corrects: np.sum(Z) / m for Z of shape (units, m)
    z = np.random.default_rng(5).normal(3.0, 1.0, size=(5, 32))
    np.testing.assert_allclose(np.sum(z) / 32, 5 * z.mean())
    assert not np.allclose(np.sum(z) / 32, z.mean(axis=1))


def test_normalization_groups_figure_numbers_every_block():
    fig = ch06.normalization_groups(n=2, c=4, height=2, width=2, groups=2)
    axes = fig.axes
    assert len(axes) == 4
    labels = [sorted({int(t.get_text()) for t in ax.texts}) for ax in axes]
    assert labels == [[1, 2, 3, 4], [1, 2], list(range(1, 9)), [1, 2, 3, 4]]
    import matplotlib.pyplot as plt

    plt.close(fig)
