"""Chapter 1's step-size comparison and the depth sweep of gradient ratios."""

import numpy as np

from bnbook import ch01_why_normalize as ch01


def test_step_sizes_order_and_the_stability_limit():
    steps = ch01.step_sizes([1.0, 100.0])
    # the best fixed step beats 1/c_max, which beats a step at the edge of stability; past it: divergence
    assert steps["2/(c_max+c_min)"] < steps["1/c_max"] < steps["1.99/c_max"]
    assert steps["2.01/c_max"] is None
    # the best fixed step contracts both directions by (kappa - 1) / (kappa + 1): loss by its square per step
    k = steps["2/(c_max+c_min)"]
    rate = (99 / 101) ** 2
    assert rate**k < 1e-6 <= rate ** (k - 1) * 1.0001


def test_a_diverging_run_stops_before_overflowing():
    path = ch01.gradient_descent_2d([1.0, 100.0], lr=0.03, steps=10_000)
    assert path.steps_to_converge is None
    assert len(path.points) < 10_001 and np.isfinite(path.losses).all()


def test_batch_norm_gradient_ratio_grows_geometrically_with_depth():
    ratios = ch01.depth_gradient_ratios(depths=(10, 20, 30), seeds=(0, 1))
    with_bn = [np.median(ratios[d, True]) for d in (10, 20, 30)]
    without = [np.median(ratios[d, False]) for d in (10, 20, 30)]
    assert with_bn[0] > 2 and with_bn[1] > 4 * with_bn[0] and with_bn[2] > 4 * with_bn[1]
    assert all(0.05 < r < 2 for r in without)
