"""PyTorch helpers for chapter 8: device choice, a small CNN, BN folding, the gloo demonstration,
and memory-bandwidth measurements. Needs torch; ``import bnlib`` does not import this module.

The device is CUDA when PyTorch sees a GPU, else the CPU; the environment variable ``BNBOOK_DEVICE``
(``cpu``, ``cuda``, ``cuda:1``, ...) overrides the choice.
"""

from __future__ import annotations

import copy
import os
import platform
import socket
import tempfile
import time
from typing import NamedTuple

import numpy as np
import torch

from bnlib import functional as F

from . import timing

__all__ = [
    "select_device",
    "device_report",
    "small_cnn",
    "train_cnn",
    "fold_conv_bn",
    "fold_sequential",
    "median_time",
    "sync_bn_demo",
    "bandwidth_sweep",
]


def select_device(default=None) -> torch.device:
    """``BNBOOK_DEVICE`` if set, else CUDA when available, else the CPU."""
    name = os.environ.get("BNBOOK_DEVICE") or default or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"BNBOOK_DEVICE={name}: CUDA was requested but torch.cuda.is_available() is False")
    return device


def device_report(device: torch.device) -> dict:
    """Name of the device and the versions a measurement depends on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    return {
        "device": str(device),
        "name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        return None
    return None


def small_cnn(batch_norm: bool, channels=(16, 32), classes=10) -> torch.nn.Sequential:
    """Two 3x3 convolutions (each optionally followed by BatchNorm2d), ReLU, 2x2 pooling, a linear layer.
    For 1x8x8 inputs; the convolutions have no bias when batch norm follows them."""
    c1, c2 = channels
    layers = [torch.nn.Conv2d(1, c1, 3, padding=1, bias=not batch_norm)]
    layers += [torch.nn.BatchNorm2d(c1)] if batch_norm else []
    layers += [torch.nn.ReLU(), torch.nn.Conv2d(c1, c2, 3, padding=1, bias=not batch_norm)]
    layers += [torch.nn.BatchNorm2d(c2)] if batch_norm else []
    layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(c2 * 16, classes)]
    return torch.nn.Sequential(*layers)


class CNNRun(NamedTuple):
    train_loss: list
    test_accuracy: list
    seconds_per_epoch: float
    model: torch.nn.Module


def train_cnn(batch_norm: bool, data, *, seed=0, epochs=5, lr=0.05, batch_size=64, device=None) -> CNNRun:
    """SGD with momentum 0.9 on (N, 1, 8, 8) digits; eval-mode test accuracy after each epoch."""
    device = device or select_device()
    torch.manual_seed(seed)
    model = small_cnn(batch_norm).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x_train = torch.tensor(data.x_train, dtype=torch.float32, device=device)
    y_train = torch.tensor(data.y_train, device=device)
    x_test = torch.tensor(data.x_test, dtype=torch.float32, device=device)
    y_test = torch.tensor(data.y_test, device=device)
    generator = torch.Generator().manual_seed(seed)
    losses, accs, seconds = [], [], []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        total = 0.0
        steps = len(x_train) // batch_size
        for k in range(steps):
            idx = order[k * batch_size : (k + 1) * batch_size]
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
        losses.append(total / steps)
        model.eval()
        with torch.no_grad():
            accs.append((model(x_test).argmax(1) == y_test).float().mean().item())
    return CNNRun(losses, accs, float(np.median(seconds)), model)


def fold_conv_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> torch.nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval mode (bnlib.functional.fold_batch_norm).

    The new layer keeps every setting of ``conv`` (stride, padding and its mode, dilation, groups),
    its device and its dtype; the arithmetic is float64. Neither input is modified.
    """
    if not isinstance(conv, torch.nn.Conv2d) or not isinstance(bn, torch.nn.BatchNorm2d):
        raise TypeError(f"expected (Conv2d, BatchNorm2d), got ({type(conv).__name__}, {type(bn).__name__})")
    if bn.running_mean is None:
        raise ValueError(
            "bn: expected running statistics (track_running_stats=True); without them eval uses batch statistics"
        )
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn: expected {conv.out_channels} features (conv.out_channels), got {bn.num_features}")

    def numpy64(t):
        return None if t is None else t.detach().to("cpu", torch.float64).numpy()

    weight, bias = F.fold_batch_norm(
        numpy64(conv.weight),
        numpy64(conv.bias),
        numpy64(bn.running_mean),
        numpy64(bn.running_var),
        numpy64(bn.weight),
        numpy64(bn.bias),
        bn.eps,
    )
    folded = torch.nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(torch.from_numpy(weight))
        folded.bias.copy_(torch.from_numpy(bias))
    return folded


def fold_sequential(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """A new eval-mode ``Sequential`` with every Conv2d followed by BatchNorm2d folded into one Conv2d.

    Every other module is deep-copied, so the result shares nothing with ``model`` and switching it
    to eval mode leaves ``model`` (its dropout, its batch norms) exactly as it was.
    """
    if not isinstance(model, torch.nn.Sequential):
        raise TypeError(f"model: expected a torch.nn.Sequential, got {type(model).__name__}")
    layers, modules, k = [], list(model), 0
    while k < len(modules):
        if (
            isinstance(modules[k], torch.nn.Conv2d)
            and k + 1 < len(modules)
            and isinstance(modules[k + 1], torch.nn.BatchNorm2d)
        ):
            layers.append(fold_conv_bn(modules[k], modules[k + 1]))
            k += 2
        else:
            layers.append(copy.deepcopy(modules[k]))
            k += 1
    return torch.nn.Sequential(*layers).eval()


def median_time(fn, *, repeats=30, warmup=3, device=None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls; CUDA work is synchronized before the clock stops."""
    sync = (lambda: torch.cuda.synchronize(device)) if device is not None and device.type == "cuda" else None
    return timing.median_time(fn, repeats=repeats, warmup=warmup, sync=sync)


# ------------------------------------------------------------------------------ across processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_worker(rank, world_size, port, path, seed):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        x = np.random.default_rng(seed).normal(2.0, 3.0, size=(8 * world_size, 4, 3, 3))
        x[: 8 * world_size // 2] += 5.0  # the halves differ, as batches on two devices can
        local = x[rank * 8 : (rank + 1) * 8]

        def all_reduce(array):
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
            dist.all_reduce(tensor)
            return tensor.numpy()

        mean, var, count = F.sync_moments(local, all_reduce)
        local_mean, local_var = F.moments(local, (0, 2, 3))
        y_sync = F.batch_norm_eval(local, mean, var)[0]  # normalize this part with the global statistics
        y_local = F.batch_norm(local, None, None, training=True)
        np.savez(
            f"{path}/rank{rank}.npz",
            mean=mean,
            var=var,
            count=count,
            local_mean=local_mean,
            local_var=local_var,
            y_sync=y_sync,
            y_local=y_local,
            x=x,
        )
    finally:
        dist.destroy_process_group()


class SyncDemo(NamedTuple):
    world_size: int
    local_means: np.ndarray  # (world, C) each process's own batch mean
    sync_means: np.ndarray  # (world, C) the all-reduced mean each process computed
    full_mean: np.ndarray  # (C,) single process, whole batch
    full_var: np.ndarray
    sync_vars: np.ndarray
    max_output_difference_sync: float  # |concatenated synced outputs - single-process full-batch output|
    max_output_difference_local: float  # the same with per-process statistics


def sync_bn_demo(world_size=2, seed=0) -> SyncDemo:
    """Run ``world_size`` CPU processes with torch.distributed (gloo) on parts of one batch; compare the
    per-process statistics, the all-reduced ones (bnlib.functional.sync_moments) and the single-process
    full-batch result."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_sync_worker, args=(world_size, _free_port(), path, seed), nprocs=world_size, join=True)
        parts = [dict(np.load(f"{path}/rank{r}.npz")) for r in range(world_size)]
    x = parts[0]["x"]
    full = F.batch_norm(x, None, None, training=True)
    full_mean, full_var = F.moments(x, (0, 2, 3))
    y_sync = np.concatenate([p["y_sync"] for p in parts])
    y_local = np.concatenate([p["y_local"] for p in parts])
    return SyncDemo(
        world_size,
        np.array([p["local_mean"] for p in parts]),
        np.array([p["mean"] for p in parts]),
        full_mean,
        full_var,
        np.array([p["var"] for p in parts]),
        float(np.abs(y_sync - full).max()),
        float(np.abs(y_local - full).max()),
    )


# ------------------------------------------------------------------------------ memory bandwidth


def bandwidth_sweep(sizes_mb, device=None, *, repeats=20, dtype=torch.float32, channels=64, progress=None):
    """Forward+backward of BatchNorm2d against a device-to-device copy, per tensor size.

    Bytes counted (the minimum any implementation must move): forward reads x and writes y, backward
    reads x and dy and writes dx: 5 tensor sizes. A copy reads and writes: 2 sizes. Returns a list of
    dicts with times (median of ``repeats``) and the achieved GB/s of each.
    """
    device = device or select_device()
    rows = []
    for k, mb in enumerate(sizes_mb, 1):
        numel = int(mb * 2**20 / torch.finfo(dtype).bits * 8)
        spatial = max(1, int(np.sqrt(numel / (channels * 32))))
        shape = (32, channels, spatial, max(1, numel // (32 * channels * spatial)))
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        dy = torch.randn(shape, device=device, dtype=dtype)
        bn = torch.nn.BatchNorm2d(channels).to(device, dtype)
        out = torch.empty_like(dy)

        def bn_step(x=x, bn=bn, dy=dy):
            x.grad = None
            bn(x).backward(dy)

        def copy_step(out=out, dy=dy):
            out.copy_(dy)

        nbytes = dy.numel() * dy.element_size()
        t_bn = median_time(bn_step, repeats=repeats, device=device)
        t_copy = median_time(copy_step, repeats=repeats, device=device)
        rows.append(
            {
                "megabytes": nbytes / 2**20,
                "shape": list(shape),
                "bn_seconds": t_bn,
                "copy_seconds": t_copy,
                "bn_gbps": 5 * nbytes / t_bn / 1e9,
                "copy_gbps": 2 * nbytes / t_copy / 1e9,
            }
        )
        if progress:
            progress(k, len(sizes_mb), rows[-1])
    return rows
