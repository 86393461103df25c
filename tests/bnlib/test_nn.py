"""Linear, activations, Sequential, loss and SGD against torch; the mlp builder and training driver."""

import numpy as np
import pytest
import torch

import bnlib
from bnlib import train
from bnlib.data import load_digits


def _torch_twin(layer):
    """A float64 torch.nn.Linear with the same weights as a bnlib Linear."""
    ref = torch.nn.Linear(layer.in_features, layer.out_features).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight))
        ref.bias.copy_(torch.from_numpy(layer.bias))
    return ref


def test_linear_matches_torch():
    rng = np.random.default_rng(0)
    layer = bnlib.Linear(4, 3, rng=1)
    ref = _torch_twin(layer)
    x, dy = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = ref(tx)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer(x), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.dweight, ref.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.dbias, ref.bias.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "ours, theirs", [(bnlib.ReLU, torch.relu), (bnlib.Tanh, torch.tanh), (bnlib.Sigmoid, torch.sigmoid)]
)
def test_activations_match_torch(ours, theirs):
    rng = np.random.default_rng(1)
    x, dy = rng.normal(scale=5, size=(6, 7)), rng.normal(size=(6, 7))
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(dy))
    layer = ours()
    np.testing.assert_allclose(layer(x), ty.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise", invalid="raise"):
        y = bnlib.Sigmoid()(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


def test_cross_entropy_matches_torch():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(8, 5)) * 10, rng.integers(0, 5, size=8)
    tl = torch.from_numpy(logits.copy()).requires_grad_()
    ref = torch.nn.functional.cross_entropy(tl, torch.from_numpy(labels))
    ref.backward()
    loss = bnlib.SoftmaxCrossEntropy()
    assert loss(logits, labels) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), tl.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_bad_labels():
    loss = bnlib.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 2\], got \[0, 3\]"):
        loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        loss(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="backward"):
        bnlib.SoftmaxCrossEntropy().backward()


def test_sgd_matches_torch_with_momentum_and_weight_decay():
    rng = np.random.default_rng(3)
    layer = bnlib.Linear(3, 2, rng=0)
    ref = _torch_twin(layer)
    opt = bnlib.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    topt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    weight_ref = layer.weight  # updated in place: references the user holds stay valid
    for _ in range(4):
        x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        layer(x)
        layer.backward(dy)
        opt.step()
        topt.zero_grad()
        ref(torch.from_numpy(x)).backward(torch.from_numpy(dy))
        topt.step()
    np.testing.assert_allclose(layer.weight, ref.weight.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.bias, ref.bias.detach().numpy(), rtol=1e-12)
    assert weight_ref is layer.weight


def test_sgd_bad_arguments():
    with pytest.raises(ValueError, match="lr: expected a finite number >= 0, got -1"):
        bnlib.SGD([], lr=-1)
    with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\)"):
        bnlib.SGD([], lr=0.1, momentum=1.0)


def test_mlp_structure_and_bias_rule():
    plain = bnlib.mlp([4, 8, 8, 2], activation="tanh", rng=0)
    with_bn = bnlib.mlp([4, 8, 8, 2], activation="tanh", norm="batch", rng=0)
    assert [type(m).__name__ for m in with_bn.layers] == ["Linear", "BatchNorm", "Tanh"] * 2 + ["Linear"]
    assert with_bn[0].bias is None and plain[0].bias is not None  # BN makes the bias redundant
    np.testing.assert_array_equal(plain[0].weight, with_bn[0].weight)  # same seed, same weights
    after = bnlib.mlp([4, 8, 2], norm="batch", norm_position="after", rng=0)
    assert [type(m).__name__ for m in after.layers] == ["Linear", "ReLU", "BatchNorm", "Linear"]
    with pytest.raises(ValueError, match="activation: expected one of"):
        bnlib.mlp([4, 2], activation="gelu")
    with pytest.raises(ValueError, match="norm: expected None"):
        bnlib.mlp([4, 8, 2], norm="instance")
    with pytest.raises(TypeError, match="layer 1: expected a bnlib Module"):
        bnlib.Sequential(bnlib.ReLU(), "relu")


def test_train_eval_propagates():
    model = bnlib.mlp([4, 8, 8, 2], norm="batch", rng=0)
    model.eval()
    assert all(not m.training for m in model.layers)
    model.train()
    assert all(m.training for m in model.layers)


def test_a_deep_mlp_trains_on_digits_with_and_without_bn():
    data = load_digits()
    results = {}
    for norm in (None, "batch"):
        model = bnlib.mlp([64, 64, 64, 64, 64, 10], norm=norm, rng=0)
        history = train.fit(model, data, epochs=5, lr=0.05, seed=0)
        results[norm] = history
        assert not history.diverged
        assert history.test_accuracy[-1] > 0.9
        assert history.train_loss[-1] < history.train_loss[0]
    assert results[None].test_accuracy != results["batch"].test_accuracy


def test_fit_reports_divergence():
    data = load_digits()
    model = bnlib.mlp([64, 64, 64, 10], activation="relu", rng=0)
    history = train.fit(model, data, epochs=3, lr=100.0, seed=0)
    assert history.diverged and history.train_loss == []  # stopped inside the first epoch


def test_recalibrate_sets_exact_training_set_statistics():
    data = load_digits()
    model = bnlib.mlp([64, 32, 10], norm="batch", rng=0)
    train.fit(model, data, epochs=2, lr=0.05, seed=0)
    train.recalibrate(model, data.x_train)
    bn = model[1]
    pre = model[0](data.x_train)
    np.testing.assert_allclose(bn.running_mean, pre.mean(0), atol=1e-12)
    np.testing.assert_allclose(bn.running_var, pre.var(0, ddof=1), rtol=1e-10)
    assert bn.momentum == 0.1 and not model.training


def test_fit_with_optimizers_that_split_the_parameters_equals_one_sgd_and_refuses_gaps():
    from bnlib import SGD, data, mlp
    from bnlib.train import fit

    digits = data.load_digits()
    one = fit(mlp([64, 16, 10], norm="batch", rng=0), digits, epochs=2, lr=0.1, momentum=0.9, seed=1)
    model = mlp([64, 16, 10], norm="batch", rng=0)
    params = model.parameters()
    groups = [SGD(params[:2], lr=0.1, momentum=0.9), SGD(params[2:], lr=0.1, momentum=0.9)]
    two = fit(model, digits, epochs=2, seed=1, optimizers=groups)
    assert one.train_loss == two.train_loss and one.test_accuracy == two.test_accuracy
    with pytest.raises(ValueError, match="every parameter of the model exactly once"):
        fit(mlp([64, 16, 10], rng=0), digits, epochs=1, optimizers=[SGD(params[:2], lr=0.1)])
    twice = mlp([64, 16, 10], rng=0)
    p = twice.parameters()
    with pytest.raises(ValueError, match="exactly once"):
        fit(twice, digits, epochs=1, optimizers=[SGD(p, lr=0.1), SGD(p[:1], lr=0.1)])
    with pytest.raises(TypeError, match="optimizers"):
        fit(twice, digits, epochs=1, optimizers="sgd")
