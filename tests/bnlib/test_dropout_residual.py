"""Dropout and the residual block: the rules that define them, their backwards, torch's conventions,
and bad input refused."""

import numpy as np
import pytest
import torch

import bnlib
from bnlib.gradcheck import check_layer


def test_dropout_keeps_the_expectation_and_drops_a_share_p():
    x = np.full((400, 500), 3.0)
    y = bnlib.Dropout(0.3, rng=0)(x)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.005  # 200,000 draws: sd 0.001
    np.testing.assert_allclose(y[kept], 3.0 / 0.7)
    assert abs(y.mean() - 3.0) < 0.02


def test_dropout_follows_torchs_rule_value_by_value():
    # torch's masks come from its own generator; the rule (0 or x / (1 - p)) is the same
    x = np.random.default_rng(1).normal(size=(50, 40))
    ours = bnlib.Dropout(0.25, rng=2)(x)
    theirs = torch.nn.functional.dropout(torch.from_numpy(x), 0.25, training=True).numpy()
    for out in (ours, theirs):
        kept = out != 0
        np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-12)


def test_dropout_backward_uses_the_forward_mask_and_eval_is_the_identity():
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    drop = bnlib.Dropout(0.5, rng=4)
    y = drop(x)
    mask = y / x
    np.testing.assert_allclose(drop.backward(dy), dy * mask)
    y[:] = 0.0  # the returned output is not the mask
    np.testing.assert_allclose(drop.backward(dy), dy * mask)
    drop.eval()
    np.testing.assert_array_equal(drop(x), x)
    np.testing.assert_array_equal(drop.backward(dy), dy)
    assert bnlib.Dropout(0.0)(x) is not x  # a copy, never the caller's array


def test_dropout_p_one_drops_everything_like_torch():
    x = np.ones((3, 4))
    drop = bnlib.Dropout(1.0, rng=0)
    np.testing.assert_array_equal(drop(x), torch.nn.functional.dropout(torch.ones(3, 4), 1.0).numpy())
    np.testing.assert_array_equal(drop.backward(np.ones((3, 4))), 0.0)


def test_dropout_before_batch_norm_shifts_the_variance_between_train_and_eval():
    # Li et al. 2019: what BN sees in training has variance var(x) / (1 - p) (for zero-mean x)
    x = np.random.default_rng(5).normal(size=(20000, 4))
    drop = bnlib.Dropout(0.5, rng=6)
    train_var = drop(x).var(axis=0)
    eval_var = drop.eval()(x).var(axis=0)
    np.testing.assert_allclose(train_var / eval_var, 2.0, rtol=0.05)


def test_dropout_refuses_bad_input():
    for p in (-0.1, 1.5, float("nan"), True, "half"):
        with pytest.raises(ValueError, match="p: expected a probability"):
            bnlib.Dropout(p)
    with pytest.raises(ValueError, match="forward"):
        bnlib.Dropout().backward(np.ones(3))
    drop = bnlib.Dropout(0.5, rng=0)
    drop(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dy"):
        drop.backward(np.ones((3, 2)))
    drop.eval()(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dy"):  # in eval mode too
        drop.backward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        drop(np.ones((2, 3), dtype=int))


def _block(rng=0):
    # the first Linear has no bias: before batch norm its gradient is exactly 0 (chapter 2), and a
    # relative error of two rounding-level numbers means nothing
    return bnlib.Residual(
        bnlib.Sequential(
            bnlib.Linear(4, 4, bias=False, rng=rng), bnlib.BatchNorm(4), bnlib.ReLU(), bnlib.Linear(4, 4, rng=rng + 1)
        )
    )


def test_residual_backward_matches_finite_differences_and_torch():
    block = _block()
    x = np.random.default_rng(7).normal(size=(6, 4))
    result = check_layer(block, x, rng=8)
    assert result.worst < 1e-6, result.errors
    # torch: the same block, the same weights
    lin1, lin2 = block.body[0], block.body[3]
    t1, t2 = torch.nn.Linear(4, 4, bias=False).double(), torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        t1.weight.copy_(torch.from_numpy(lin1.weight))
        t2.weight.copy_(torch.from_numpy(lin2.weight))
        t2.bias.copy_(torch.from_numpy(lin2.bias))
    tbn = torch.nn.BatchNorm1d(4).double()
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = tx + t2(torch.relu(tbn(t1(tx))))
    dy = np.random.default_rng(9).normal(size=(6, 4))
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(block(x), ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(block.backward(dy), tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lin1.dweight, t1.weight.grad.numpy(), atol=1e-12)


def test_residual_with_zero_gamma_starts_as_the_identity_and_collects_parameters():
    block = bnlib.Residual(bnlib.Sequential(bnlib.Linear(3, 3, rng=0), bnlib.BatchNorm(3)))
    block.body[1].gamma[:] = 0.0
    block.body[1].beta[:] = 0.0
    x = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(block(x), x)
    np.testing.assert_allclose(block.backward(np.ones((5, 3))), 1.0)
    names = [name for _, name in block.parameters()]
    assert names == ["weight", "bias", "gamma", "beta"]
    block.eval()
    assert not block.body[1].training


def test_residual_refuses_a_body_that_changes_the_shape_or_is_not_a_module():
    with pytest.raises(TypeError, match="body: expected a bnlib Module"):
        bnlib.Residual(lambda x: x)
    with pytest.raises(ValueError, match=r"body: its output has shape \(5, 2\), expected the input's shape \(5, 3\)"):
        bnlib.Residual(bnlib.Linear(3, 2, rng=0))(np.ones((5, 3)))
    with pytest.raises(ValueError, match="forward"):
        _block().backward(np.ones((2, 4)))
    relu = bnlib.ReLU()
    with pytest.raises(ValueError, match="appears twice"):
        bnlib.Sequential(bnlib.Residual(relu), relu)
