"""Chapter 11's drivers: renorm, AdaBN, the dropout variance shift, accumulation, batch order, fine-tuning."""

import numpy as np
import pytest

import bnlib
from bnbook import ch11_in_the_wild as ch11
from bnlib.data import load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_batch_order_shuffled_and_by_class():
    labels = np.repeat(np.arange(5), 20)
    rng = np.random.default_rng(0)
    shuffled = ch11.batch_order(labels, 8, rng)
    assert len(shuffled) == 12 and len(np.unique(np.concatenate(shuffled))) == 96
    by_class = ch11.batch_order(labels, 8, np.random.default_rng(0), "by class")
    assert all(len(np.unique(labels[b])) <= 2 for b in by_class)
    assert max(len(np.unique(labels[b])) for b in shuffled) > 2
    with pytest.raises(ValueError, match="order"):
        ch11.batch_order(labels, 8, rng, "sorted")


def test_renorm_with_unit_limits_trains_exactly_like_batch_norm(digits):
    small = bnlib.data.Dataset(digits.x_train[:200], digits.y_train[:200], digits.x_test, digits.y_test)
    bn = ch11.train(ch11._net("batch", 0), small, epochs=1, lr=0.05, batch_size=8, seed=0)
    rn = ch11.train(ch11._net("renorm", 0, rmax=1.0, dmax=0.0), small, epochs=1, lr=0.05, batch_size=8, seed=0)
    np.testing.assert_allclose(ch11._state(rn), ch11._state(bn), rtol=0, atol=1e-10)
    assert isinstance(ch11._norm_layers(rn)[0], bnlib.BatchRenorm)


def test_renorm_trace_records_clipping(digits):
    trace = ch11.renorm_trace(batch_size=4, epochs=1, rmax=1.5, dmax=0.5, data=digits)
    assert trace.r.shape == (len(digits.y_train) // 4, 64)
    assert (trace.r <= 1.5 + 1e-12).all() and (trace.r >= 1 / 1.5 - 1e-12).all() and (np.abs(trace.d) <= 0.5).all()
    assert 0 < trace.r_clipped.mean() < 1  # tight limits clip some features, not all
    np.testing.assert_allclose(trace.r_low + trace.r_high, trace.r_clipped)
    np.testing.assert_array_equal(trace.r_low, (trace.r <= 1 / 1.5 + 1e-12).mean(axis=1))
    with pytest.raises(ValueError, match="layer"):
        ch11.renorm_trace(layer=5, data=digits)


def test_renorm_corrections_are_clipped_and_unit_limits_give_batch_norm():
    r, d, _ = ch11.renorm_feature(2, 1.0, 0.1, steps=20)
    assert (r == 1).all() and (d == 0).all()
    r, d, running_mean = ch11.renorm_feature(8, 3.0, 0.1, steps=200)
    assert (r <= 3).all() and (np.abs(d) <= 2).all()
    assert running_mean[-1] == pytest.approx(3.0, abs=0.5)  # the data's mean


def test_shift_images():
    raw = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(ch11.shift_images(raw, "brightness", 2.0, seed=0), raw + 2)
    np.testing.assert_array_equal(ch11.shift_images(raw, "contrast", 0.5, seed=0), raw / 2)
    noisy = ch11.shift_images(raw, "noise", 1.0, seed=3)
    np.testing.assert_array_equal(noisy, ch11.shift_images(raw, "noise", 1.0, seed=3))
    assert not np.array_equal(noisy, ch11.shift_images(raw, "noise", 1.0, seed=4))
    for kind, strength in (("blur", 1.0), ("contrast", 0.0), ("noise", -1.0)):
        with pytest.raises(ValueError):
            ch11.shift_images(raw, kind, strength, seed=0)


@pytest.fixture(scope="module")
def shift():
    return ch11.shift_study(shifts=(("brightness", 2.0), ("noise", 0.5)), seeds=(0,), epochs=3)


def test_adabn_recovers_a_brightness_shift_with_enough_target_images(shift):
    assert shift.source_stats[0, 0] < shift.clean[0] - 0.3  # the shift breaks the network
    assert shift.adapted[0, 0] == pytest.approx(shift.clean[0], abs=0.02)  # AdaBN restores it
    # exactly: the same images moved, against the network recalibrated on the clean images
    assert shift.adapted[0, 0] == shift.clean_adapted[0] and shift.logit_gap[0, 0] < 1e-8
    assert shift.logit_gap[0, 1] > 0.1  # a noise field is not undone
    sizes = ch11.adabn_sample_size(shift, [("brightness", 2.0)], sizes=(8, 256), draws=3)
    assert sizes.accuracy.shape == (1, 3, 1, 3) and sizes.sizes == [8, 256, "all"]
    assert sizes.accuracy[0, 1].mean() > sizes.accuracy[0, 0].mean()  # more images, better estimates
    assert sizes.accuracy[0, 2].mean() == pytest.approx(shift.adapted[0, 0])
    with pytest.raises(ValueError, match="shifts"):
        ch11.adabn_sample_size(shift, [("contrast", 3.0)])
    with pytest.raises(ValueError, match="draws"):
        ch11.adabn_sample_size(shift, [("brightness", 2.0)], draws=0)


def test_input_restandardization_undoes_brightness_and_most_of_the_noise(shift):
    # brightness: the per-pixel mean absorbs the offset exactly, so the clean network is back
    assert shift.restandardized[0, 0] == pytest.approx(shift.clean[0], abs=1e-12)
    # noise 0.5: AdaBN, acting only at the BN layers, cannot undo what the input standardization did
    assert shift.restandardized[0, 1] > shift.adapted[0, 1] + 0.2


def test_adabn_undoes_a_brightness_shift_exactly(shift):
    # the same training images shifted: the re-estimated statistics absorb the shift to rounding
    model, data = shift.models[0], shift.data
    offset = (shift.target_train[("brightness", 2.0)] - data.x_train)[0]  # one offset per pixel
    clean = ch11._adapted(model, data.x_train)(data.x_test)
    moved = ch11._adapted(model, data.x_train + offset)(data.x_test + offset)
    np.testing.assert_allclose(moved, clean, atol=1e-8)


def test_variance_shift_follows_one_over_one_minus_p(digits):
    v = ch11.variance_shift((0.0, 0.5), epochs=3, data=digits)
    assert v.running_ratio[0] == pytest.approx(1.0, abs=0.02)
    assert v.running_ratio[1] == pytest.approx(2.0, rel=0.05)
    assert v.train_var[1] / v.eval_var[1] == pytest.approx(2.0, rel=0.05)
    for bad in ((1.0,), (-0.1,), ()):
        with pytest.raises(ValueError, match="p_values"):
            ch11.variance_shift(bad, data=digits)


def test_dropout_net_placements():
    kinds = {
        p: [type(m).__name__ for m in ch11.dropout_net(p, 0.5, 0).layers] for p in ("none", "before BN", "before head")
    }
    assert kinds["none"].count("Dropout") == 0
    # the two placements: one dropout layer each, differing only in where it sits
    assert kinds["before head"].count("Dropout") == 1 and kinds["before BN"].count("Dropout") == 1
    assert kinds["before head"][-2:] == ["Dropout", "Linear"]
    i = kinds["before BN"].index("Dropout")
    assert kinds["before BN"][i + 1 : i + 3] == ["Linear", "BatchNorm"] and "BatchNorm" in kinds["before BN"][:i]
    assert kinds["before BN"][i + 3 :].count("BatchNorm") == 0  # the last hidden BN
    without = [k for k in kinds["before BN"] if k != "Dropout"]
    assert without == [k for k in kinds["before head"] if k != "Dropout"] == kinds["none"]
    base, drop = ch11.dropout_net("none", 0.5, 3), ch11.dropout_net("before BN", 0.5, 3)
    np.testing.assert_array_equal(base.layers[-1].weight, drop.layers[-1].weight)  # same weights
    with pytest.raises(ValueError, match="placement"):
        ch11.dropout_net("after", 0.5, 0)
    with pytest.raises(ValueError, match="p"):
        ch11.dropout_net("before BN", 1.0, 0)


def test_recalibrate_without_dropout_restores_p_and_matches_eval_variance(digits):
    model = ch11.dropout_net("before BN", 0.5, 0)
    fixed = ch11.recalibrate_without_dropout(model, digits.x_train)
    assert all(m.p == 0.5 for m in fixed.modules() if isinstance(m, bnlib.Dropout))
    n = len(digits.x_train)
    norms, variances = ch11._norm_layers(fixed), ch11._bn_input_variances(fixed, digits.x_train)
    np.testing.assert_allclose(norms[0].running_var, variances[0], rtol=1e-10)  # dropout off: eval-mode variance
    for m, var in zip(norms[1:], variances[1:]):
        # deeper layers: eval mode normalizes with the unbiased variance, the pass with the biased one
        np.testing.assert_allclose(m.running_var / var, n / (n - 1), rtol=1e-3)


def test_accumulation_equals_ghost_batch_norm_and_differs_from_the_full_batch(digits):
    check = ch11.accumulation_check(batch_size=16, micro_batch=4, steps=10, data=digits)
    assert check.vs_ghost.max() < 1e-12
    assert check.group_vs_full.max() < 1e-12  # group norm has no batch statistics to split
    assert check.vs_full[0] > 1e-4 and check.vs_full[-1] > 1e-3  # the parameters: the step itself differs
    assert check.vs_full_stats[0] > check.vs_full[0]  # 4 EMA updates against 1: the running stats differ more
    assert check.counts == (40, 40, 10)  # running statistics: once per micro-batch, as ghost BN
    for kwargs in ({"steps": 0}, {"micro_batch": 5}, {"batch_size": 1}):
        with pytest.raises(ValueError):
            ch11.accumulation_check(**kwargs, data=digits)


def test_accumulation_step_rejects_a_micro_batch_that_does_not_divide():
    model = ch11._net("batch", 0)
    opt = bnlib.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="micro_batch"):
        ch11.accumulation_step(model, opt, np.zeros((10, 64)), np.zeros(10, dtype=int), 4)


def test_running_stat_error_is_zero_after_recalibration(digits):
    model = ch11.train(ch11._net("batch", 0), digits, epochs=1, lr=0.05, batch_size=32, seed=0)
    err, ratio = ch11.running_stat_error(model, digits.x_train)
    assert err.shape == (3,) and (err > 0).all()
    err, ratio = ch11.running_stat_error(bnlib.train.recalibrate(model, digits.x_train), digits.x_train)
    np.testing.assert_allclose(err[0], 0, atol=1e-12)  # the first layer: exactly recalibrate's statistics
    np.testing.assert_allclose(err, 0, atol=1e-3)  # later ones: up to the biased/unbiased 1/n
    np.testing.assert_allclose(ratio, 1, atol=2e-3)


def test_exact_statistics_agree_with_recalibrate_for_bn_and_renorm(digits):
    for norm in ("batch", "renorm"):
        model = ch11.train(ch11._net(norm, 0), digits, epochs=1, lr=0.05, batch_size=32, seed=0)
        stats = ch11.exact_statistics(model, digits.x_train)
        recal = [
            (m.running_mean, m.running_var) for m in ch11._norm_layers(bnlib.train.recalibrate(model, digits.x_train))
        ]
        np.testing.assert_allclose(stats[0][0], recal[0][0], atol=1e-12)  # the first layer's input has no BN before it
        gap = max(np.abs(s[1] / r[1] - 1).max() for s, r in zip(stats[1:], recal[1:]))
        # deeper layers differ only by the biased/unbiased variance of the layer before (1/n); before
        # recalibrate made BatchRenorm act as batch norm for its pass, renorm's gap here was above 0.5
        assert gap < 2e-3, (norm, gap)


def test_frozen_bn_fine_tuning_keeps_the_running_statistics(digits):
    model = ch11.train(ch11._net("batch", 0), digits, epochs=1, lr=0.05, batch_size=32, seed=0)
    before = [m.running_mean.copy() for m in ch11._norm_layers(model)]
    ch11.train(model, digits, epochs=1, lr=0.01, batch_size=4, seed=1, bn_mode="frozen")
    for m, rm in zip(ch11._norm_layers(model), before):
        np.testing.assert_array_equal(m.running_mean, rm)
    with pytest.raises(ValueError, match="bn_mode"):
        ch11.train(model, digits, epochs=1, lr=0.01, batch_size=4, seed=1, bn_mode="off")


def test_order_study_scores_the_sorted_batches_and_recalibrates_renorm(digits):
    small = bnlib.data.Dataset(digits.x_train[:400], digits.y_train[:400], digits.x_test, digits.y_test)
    study = ch11.order_study(batch_size=16, seeds=(0,), epochs=1, data=small)
    arms = [s["arm"] for s in study.settings]
    assert "renorm, by class, recalibrated" in arms and "BN, by class, recalibrated" in arms
    assert study.sorted_test_accuracy.shape == study.sorted_train_accuracy.shape == (len(arms),)
    i = arms.index("renorm, by class, recalibrated")
    np.testing.assert_allclose(study.mean_error[i][0], 0, atol=1e-12)  # exact statistics, first layer
    j = arms.index("GN, by class")  # no batch statistics: the batch order does not matter to GN
    assert study.sorted_test_accuracy[j] == pytest.approx(study.train_mode_accuracy[j], abs=0.02)


def test_finetune_arms_share_the_pretraining_and_recalibrate(digits):
    result = ch11.finetune_study(per_class=4, seeds=(0,), pre_epochs=1, epochs=1, data=digits)
    arms = [s["arm"] for s in result.settings]
    assert list(result.table()) == list(ch11.FINETUNE_ARMS) and sorted(arms) == sorted(ch11.FINETUNE_ARMS)
    bn = [p for a, p in zip(arms, result.pretrain_accuracy) if a.startswith("BN")]
    assert len(set(bn)) == 1  # every BN arm starts from the same pretrained network
    with pytest.raises(ValueError, match="pre_batch_size"):
        ch11.finetune_study(pre_batch_size=1, data=digits)


def test_drivers_reject_bad_arguments(digits):
    with pytest.raises(ValueError, match="batch_size"):
        ch11.renorm_study((1,), data=digits)
    with pytest.raises(ValueError, match="seeds"):
        ch11.order_study(seeds=(), data=digits)
    with pytest.raises(ValueError, match="epochs"):
        ch11.train(ch11._net("batch", 0), digits, epochs=0, lr=0.1, batch_size=8, seed=0)
    for driver in (ch11.renorm_study, ch11.dropout_study, ch11.accumulation_study, ch11.order_study):
        with pytest.raises(ValueError, match="epochs"):
            driver(epochs=0, data=digits)
    with pytest.raises(ValueError, match="epochs"):
        ch11.renorm_trace(epochs=0, data=digits)
    with pytest.raises(ValueError, match="epochs"):
        ch11.shift_study(epochs=0)
    with pytest.raises(ValueError, match="micro_batches"):
        ch11.accumulation_study(micro_batches=(5,), data=digits)
    with pytest.raises(ValueError, match="norm"):
        ch11._net("instance", 0)


def test_interactive_frame_is_registered_and_small():
    fig = ch11.renorm_corrections(batch_size=2, rmax=1.5, momentum=0.5)
    assert len(fig.axes) == 2
    grid = ch11.renorm_corrections.grid
    assert np.prod([len(v) for v in grid.values()]) <= 64
