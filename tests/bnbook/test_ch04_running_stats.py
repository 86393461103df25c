"""Chapter 4's new drivers: weights between chained BN layers, momentum vs training, covariate shift."""

import numpy as np
import pytest

from bnbook import ch04_running_stats as ch04
from bnlib.data import load_digits


def test_bare_chain_unchanged_by_the_weights_option_default():
    a = ch04.chained_eval_train_ratio(5, 8, steps=100, test_batches=100, seed=3)
    b = ch04.chained_eval_train_ratio(5, 8, steps=100, test_batches=100, seed=3, weights=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[-1], (7 / 8) ** 2.5, rtol=0.05)


def test_weights_between_layers_reduce_but_do_not_remove_the_shrinkage():
    bare = ch04.chained_eval_train_ratio(20, 8, steps=150, test_batches=150, width=16)
    linear = ch04.chained_eval_train_ratio(20, 8, steps=150, test_batches=150, width=16, weights=True)
    assert linear[-1] > bare[-1] + 0.15  # weights make it smaller...
    assert linear[-1] < 0.8  # ...but at batch 8 still far from 1
    wide = ch04.chained_eval_train_ratio(20, 64, steps=150, test_batches=150, width=16, weights=True)
    assert abs(wide[-1] - 1) < 0.15


def test_parameter_vector_sees_every_parameter():
    from bnlib import mlp

    model = mlp([4, 3, 2], norm="batch", rng=0)
    vec = ch04.parameter_vector(model)
    assert vec.size == sum(np.size(getattr(m, n)) for m, n in model.parameters())
    model[0].weight[0, 0] += 1.0
    assert not np.array_equal(vec, ch04.parameter_vector(model))


def test_momentum_never_changes_training_but_changes_eval():
    study = ch04.momentum_study(momenta=(0.001, 0.5), batch_sizes=(64,), steps=42, seeds=(0,))
    assert study.max_parameter_difference == 0.0
    assert study.max_train_loss_difference == 0.0
    slow, fast = study.eval_accuracy[:, 0, 0]
    assert slow < fast  # 42 steps at 0.001: the estimates still carry 96% of their initial values
    assert slow < study.recalibrated_accuracy[0, 0] - 0.01


def test_momentum_study_rejects_steps_that_are_not_whole_epochs():
    with pytest.raises(ValueError, match="multiple of 42"):
        ch04.momentum_study(batch_sizes=(32,), steps=50, seeds=(0,))


def test_brightness_contrast_is_seeded_and_affine():
    x = load_digits(standardize=False).x_test[:20]
    a = ch04.brightness_contrast(x, seed=1, contrast=(0.3, 0.7), brightness=(2.0, 6.0))
    np.testing.assert_array_equal(a, ch04.brightness_contrast(x, seed=1, contrast=(0.3, 0.7), brightness=(2.0, 6.0)))
    fixed = ch04.brightness_contrast(x, seed=1)
    np.testing.assert_allclose(fixed, 0.5 * x + 4.0)


def test_adabn_undoes_a_global_shift_and_training_statistics_do_not():
    s = ch04.covariate_shift_study(seeds=(0,), epochs=3)
    assert s.shifted[0] < 0.3 < 0.9 < s.clean[0]
    np.testing.assert_allclose(s.adapted, s.clean, atol=0.01)
    assert s.adapted_clean[0] < 0.5  # the statistics now belong to the shifted domain
