"""bnlib.torch_tools: device choice, folding, the gloo demonstration, the bandwidth sweep (CPU)."""

import numpy as np
import pytest
import torch

from bnbook import torch_tools
from bnlib import data


def test_select_device_honours_the_environment(monkeypatch):
    monkeypatch.setenv("BNBOOK_DEVICE", "cpu")
    assert torch_tools.select_device().type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("BNBOOK_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA was requested"):
            torch_tools.select_device()


def test_fold_sequential_matches_eval_mode():
    torch.manual_seed(0)
    model = torch_tools.small_cnn(batch_norm=True)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8))
    model.eval()
    folded = torch_tools.fold_sequential(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() < 1e-5


def test_sync_bn_demo_reproduces_the_full_batch():
    demo = torch_tools.sync_bn_demo(world_size=2)
    assert demo.max_output_difference_sync < 1e-12
    assert demo.max_output_difference_local > 0.1
    np.testing.assert_allclose(demo.sync_means[0], demo.full_mean, atol=1e-12)
    np.testing.assert_allclose(demo.sync_vars[1], demo.full_var, atol=1e-12)


def test_train_cnn_learns_and_bandwidth_sweep_reports():
    run = torch_tools.train_cnn(
        True, data.load_digits(images=True, dtype=np.float32), epochs=2, device=torch.device("cpu")
    )
    assert run.test_accuracy[-1] > 0.8
    rows = torch_tools.bandwidth_sweep([0.5], torch.device("cpu"), repeats=3)
    assert rows[0]["bn_gbps"] > 0 and rows[0]["copy_gbps"] > 0


def test_folding_copies_the_model_and_keeps_padding_mode_and_dtype():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=torch.float64),
        torch.nn.BatchNorm2d(3, dtype=torch.float64),
        torch.nn.Dropout(0.5),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.train()
    folded = torch_tools.fold_sequential(model)
    assert model.training and model[2].training, "folding switched the original to eval"
    assert folded[1] is not model[2], "folding shared a module with the original"
    assert folded[0].padding_mode == "reflect" and folded[0].weight.dtype == torch.float64
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    model.eval()
    assert (folded(x) - model(x)).abs().max().item() < 1e-12
