"""Chapter 5's drivers: batch-statistic noise, the normalization sweep and the overfitting experiment."""

import numpy as np
import pytest

from bnbook import ch05_small_batches as ch05
from bnlib.data import load_digits
from bnlib.nn import SoftmaxCrossEntropy
from bnlib.train import evaluate


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def small_overfit(digits):
    return ch05.overfit_experiment(
        norms=(None, "batch", "layer"), seeds=(0, 1), per_class=4, epochs=3, widths=(16, 16), data=digits
    )


@pytest.mark.parametrize("distribution", sorted(ch05.DISTRIBUTIONS))
def test_batch_stat_noise_matches_theory(distribution):
    r = ch05.batch_stat_noise(16, distribution, trials=20000, seed=1)
    assert r.std_of_mean == pytest.approx(r.theory_std_of_mean, rel=0.05)
    assert r.std_of_var == pytest.approx(r.theory_std_of_var, rel=0.08)


def test_batch_stat_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        ch05.batch_stat_noise(1)
    with pytest.raises(ValueError, match="distribution"):
        ch05.batch_stat_noise(8, "cauchy")


def test_stratified_subset(digits):
    sub = ch05.stratified_subset(digits, 5, seed=3)
    assert np.bincount(sub.y_train, minlength=10).tolist() == [5] * 10
    # rows are distinct training rows with their own labels, the test split is untouched
    train_rows = {row.tobytes(): label for row, label in zip(digits.x_train, digits.y_train)}
    assert len({row.tobytes() for row in sub.x_train}) == 50
    assert all(train_rows[row.tobytes()] == label for row, label in zip(sub.x_train, sub.y_train))
    assert sub.x_test is digits.x_test and sub.y_test is digits.y_test
    assert not np.array_equal(sub.x_train, ch05.stratified_subset(digits, 5, seed=4).x_train)
    with pytest.raises(ValueError, match="per_class"):
        ch05.stratified_subset(digits, 0)
    with pytest.raises(ValueError, match="per_class"):
        ch05.stratified_subset(digits, 10_000)


def test_per_example_loss_averages_to_the_cross_entropy(small_overfit):
    model, sub = small_overfit.models[0], small_overfit.subsets[0]
    losses = ch05.per_example_loss(model, sub.x_test, sub.y_test)
    assert losses.shape == (len(sub.y_test),) and (losses >= 0).all()
    assert losses.mean() == pytest.approx(evaluate(model, sub.x_test, sub.y_test)[0], rel=1e-12)
    wrong = model(sub.x_test).argmax(axis=1) != sub.y_test
    assert wrong.any()
    assert losses[wrong].mean() == pytest.approx(SoftmaxCrossEntropy()(model(sub.x_test[wrong]), sub.y_test[wrong]))


def test_overfit_experiment_measures_in_eval_mode(small_overfit):
    r = small_overfit
    assert [s["norm"] for s in r.settings] == ["none", "batch", "layer"] * 2
    for i, model in enumerate(r.models):
        sub = r.subsets[i]
        assert not model.training
        assert (r.train_loss[i], r.train_accuracy[i]) == evaluate(model, sub.x_train, sub.y_train)
        assert (r.test_loss[i], r.test_accuracy[i]) == evaluate(model, sub.x_test, sub.y_test)
        # the twin run reproduces the training: its last per-epoch training loss is the final one
        assert r.train_curves[i][-1] == r.train_loss[i]
        assert len(r.train_curves[i]) == len(r.test_curves[i]) == len(r.train_mode_curves[i]) == 3
        assert r.train_mode_curves[i][-1] == r.train_loss_train_mode[i]
    np.testing.assert_array_equal(r.gap(), r.test_loss - r.train_loss)
    # batch norm's training-mode loss is not its eval-mode loss
    assert r.train_loss_train_mode[1] != pytest.approx(r.train_loss[1], rel=1e-3)


def test_overfit_arms_share_the_subset_per_seed(small_overfit):
    r = small_overfit
    for i, s in enumerate(r.settings):
        first = next(j for j, t in enumerate(r.settings) if t["seed"] == s["seed"])
        assert r.subsets[i] is r.subsets[first]
    assert not np.array_equal(r.subsets[0].x_train, r.subsets[3].x_train)


def test_overfit_without_twin_matches_with_twin(digits, small_overfit):
    r = ch05.overfit_experiment(
        norms=("batch",), seeds=(0,), per_class=4, epochs=3, widths=(16, 16), data=digits, twin=False
    )
    assert r.train_curves == [None]
    assert r.test_loss[0] == small_overfit.test_loss[1]
    assert r.train_loss[0] == small_overfit.train_loss[1]


def test_overfit_memorizes_the_subset(digits):
    """The chapter's setting overfits: a few epochs on 10 images per class reach 100% training accuracy."""
    r = ch05.overfit_experiment(
        norms=("layer",), seeds=(0,), per_class=10, epochs=15, widths=(64, 64), data=digits, twin=False
    )
    assert r.train_accuracy[0] == 1.0
    assert r.test_accuracy[0] < 0.97
    assert r.gap()[0] > 0.1


def test_summarize_groups_over_seeds(small_overfit):
    gaps = ch05.summarize(small_overfit, "gap", by=("norm",))
    assert set(gaps) == {("none",), ("batch",), ("layer",)}
    g = small_overfit.gap()
    assert gaps[("batch",)][0] == pytest.approx(np.mean(g[[1, 4]]))
    assert gaps[("batch",)][1] == pytest.approx(np.std(g[[1, 4]]))


def test_sweep_records_eval_mode_training_loss(digits):
    r = ch05.normalization_sweep([16], norms=(None, "batch"), seeds=(0,), epochs=1, widths=(16,), data=digits)
    assert r.final_train_loss_eval.shape == (2,)
    assert np.isfinite(r.final_train_loss_eval).all()
    # batch noise inflates batch norm's training-mode loss above its eval-mode loss
    assert r.final_train_loss[1] != pytest.approx(r.final_train_loss_eval[1], rel=1e-3)


def test_overfit_curves_figure(small_overfit):
    fig = ch05.overfit_curves(small_overfit)
    ax1, ax2 = fig.axes
    assert ax1.get_yscale() == "log"
    labels = [t.get_text() for t in ax2.get_legend().get_texts()]
    assert labels == ["none", "batch", "batch, training mode", "layer"]
    assert len(ax1.get_lines()) == 4 and len(ax2.get_lines()) == 3
    np.testing.assert_allclose(
        ax1.get_lines()[1].get_ydata(), np.mean([small_overfit.train_curves[i] for i in (1, 4)], axis=0)
    )
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_unknown_norm_is_rejected():
    with pytest.raises(ValueError, match="norm"):
        ch05.overfit_experiment(norms=("instance",), seeds=(0,), per_class=2, epochs=1, widths=(8,))


def test_overfit_experiment_recalibrated_scores_with_exact_training_statistics():
    import numpy as np
    import pytest

    import bnlib
    from bnbook import ch05_small_batches as ch05

    out = ch05.overfit_experiment(
        ("ghost-8",),
        seeds=(0,),
        per_class=3,
        epochs=2,
        widths=(8,),
        batch_size=16,
        lr=0.05,
        twin=False,
        recalibrated=True,
    )
    model, subset = out.models[0], out.subsets[0]
    bn = next(m for m in model.modules() if isinstance(m, bnlib.BatchNorm))
    first = model.layers[0](subset.x_train)  # the linear layer before the first batch norm
    np.testing.assert_allclose(bn.running_mean, first.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(bn.running_var, first.var(axis=0, ddof=1), atol=1e-10)
    with pytest.raises(ValueError, match="twin=False"):
        ch05.overfit_experiment(
            ("batch",), seeds=(0,), per_class=3, epochs=1, widths=(8,), twin=True, recalibrated=True
        )
