"""Chapter 8's GPU figures, measured in one run: batch norm bandwidth against a copy, the small CNN's
epoch time on the CPU and the GPU, BN folding at inference, cuDNN's batch norm against PyTorch's own kernel.

    python benchmarks/gpu_figures.py OUT_DIR [--device cuda] [--quick] [--sizes-mb 1 4 ...] [--budget-s 240]

Writes OUT_DIR/gpu_figures.json (rewritten after each section, ``"complete": true`` at the end) with the
provenance of the measurement: device name, UTC date, torch / CUDA / cuDNN / Python versions, the platform
(no host name) and the exact command line. ``bnbook.gpu_results`` loads it and draws the figures.

What is measured
----------------
bandwidth
    ``torch.nn.BatchNorm2d(64)`` in training mode on (N, 64, 32, 32) tensors of 1, 4, 16, 64, 256, 1024 and
    4096 MB in float32 (N = 4 per MB). For each tensor: the forward alone (under ``torch.no_grad``), the
    forward + backward (``bn(x).backward(dy)``), and ``out.copy_(x)`` of the same tensor, the roofline.
    Half types use the SAME SHAPES (element counts) as float32, so their tensors have half the bytes.
    bfloat16 / float16 rows: what autocast hands batch norm after a convolution, i.e. x and dy in the half
    type, the BatchNorm2d module (weight, bias, running statistics) in float32, the forward run inside
    ``torch.autocast(device_type, dtype)``. (Autocast does not cast batch norm: given a float32 input it
    runs in float32; given a half input, as here, output and dx are half.) Memory formats: contiguous
    (NCHW) and channels_last (NHWC), x, dy and out all in that format.
    GB/s count the MINIMUM traffic: forward reads x and writes y (2 tensor sizes); backward reads x and dy
    and writes dx (3 sizes); forward + backward 5 sizes; copy reads and writes (2 sizes). An
    implementation that reads x once for the statistics and again to normalize moves one more size per
    pass (3 forward, 5 backward, 8 in all): at best 5/8 of the copy bandwidth by the minimum count.
cnn
    ``bnbook.torch_tools.train_cnn`` (small_cnn with and without batch norm, digits 8x8, batch 64, SGD)
    on the CPU and on the GPU, seeds 0, 1, 2, 5 epochs: median seconds per epoch and test accuracy.
    One untimed epoch per device first warms the libraries up.
folding
    ``fold_sequential(model)`` against the eval-mode model: median forward time (inference mode) on a
    batch of 4096 1x8x8 digits-like inputs (the CNN trained above, seed 0) and on a larger synthetic conv
    net (4 conv+BN blocks, 256x3x64x64 input), and the max |difference| of the outputs (TF32 off).
cudnn
    GPU only: BatchNorm2d forward + backward with cuDNN (``torch.backends.cudnn.flags(enabled=True)``)
    and with PyTorch's native CUDA kernels (``enabled=False``), on 16, 256 and 1024 MB, float32 and
    bfloat16, both formats; plus the kernel names the profiler saw in each case.

Timing: CUDA events around each call (``torch.cuda.Event(enable_timing=True)``), ``time.perf_counter``
on the CPU; warm-up calls, then as many repeats as fill about 0.2 s (at least 5, at most 1000); the
median and the interquartile range are recorded. Past ``--budget-s`` the remaining measurements use the
minimum repeats. A size that does not fit in memory is recorded with ``"skipped": reason``.

``--quick`` runs the same code paths with tiny sizes (0.25 and 1 MB, 3 repeats, 1 seed, 1 epoch, CNN on
the CPU only unless --device is CUDA): a smoke test that takes seconds on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere, without PYTHONPATH
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bnbook import torch_tools  # noqa: E402

SCHEMA = 1
FULL_SIZES_MB = [1, 4, 16, 64, 256, 1024, 4096]
QUICK_SIZES_MB = [0.25, 1]
CUDNN_SIZES_MB = [16, 256, 1024]
QUICK_CUDNN_SIZES_MB = [0.25, 1]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
CHANNELS, SIDE = 64, 32  # (N, 64, 32, 32): 256 KB of float32 per sample
BYTES = {
    "fwd_min": 2,
    "bwd_min": 3,
    "fwdbwd_min": 5,
    "copy": 2,
    "fwd_two_pass": 3,
    "bwd_two_pass": 5,
    "fwdbwd_two_pass": 8,
}

NOTES = {
    "sizes": "size_mb is the float32 size of the tensor; bfloat16/float16 rows use the same shapes (same "
    "element counts), so their bytes_tensor is half. shape (N, 64, 32, 32), N = 4 per MB.",
    "half_types": "bfloat16/float16 rows: x and dy in the half dtype, BatchNorm2d weight, bias and running "
    "statistics in float32, forward inside torch.autocast(device_type, dtype) - what a batch norm "
    "after an autocast convolution receives. Autocast leaves batch norm's dtype alone (a float32 "
    "input would run in float32); output_dtype / grad_dtype record what came out.",
    "bytes": "gbps = bytes / seconds / 1e9 with the MINIMUM traffic in tensor sizes: forward 2 (read x, write "
    "y), backward 3 (read x, dy; write dx), forward+backward 5, copy 2 (read x, write out). A two-pass "
    "implementation (statistics, then normalize) reads x once more per pass: 3 + 5 = 8 sizes, so by the "
    "minimum count it reaches at most 5/8 of the copy bandwidth. Parameters and statistics (C values) "
    "are ignored.",
    "forward": "bn_fwd_s: training-mode forward (batch statistics, running-statistics update) under "
    "torch.no_grad. bn_fwdbwd_s: x.grad = None; bn(x).backward(dy). bn_bwd_s_derived = difference.",
    "timing": "CUDA events around each call on a GPU (time.perf_counter on the CPU); warm-up, then repeats "
    "filling target_s (at least min_repeats); *_s are medians, *_iqr_s the 25th and 75th percentiles.",
    "cnn": "bnbook.torch_tools.train_cnn: seconds_per_epoch is its median over epochs; each step calls "
    "loss.item(), a device synchronization, so small-model GPU epochs are bound by launches.",
    "folding": "fold_sequential(model) vs model.eval(), forward under torch.inference_mode; max_abs_diff with "
    "TF32 off for convolutions, max_abs_diff_default with the default TF32 settings.",
    "cudnn": "enabled=False in torch.backends.cudnn.flags makes BatchNorm2d use PyTorch's native CUDA kernels; "
    "kernels lists the GPU kernel names the profiler recorded for one forward+backward.",
}


class BadArguments(Exception):
    pass


# ------------------------------------------------------------------------------ timing


class Clock:
    """Times a callable: warm-up, an estimate, then repeats that fill ``target_s`` (CUDA events on a GPU)."""

    def __init__(self, device, *, target_s=0.2, min_repeats=5, max_repeats=1000, warmup=3, budget_s=240.0):
        self.device, self.target_s, self.min_repeats = device, target_s, min_repeats
        self.max_repeats, self.warmup, self.budget_s = max_repeats, warmup, budget_s
        self.start = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.start

    def over_budget(self):
        return self.elapsed() > self.budget_s

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _times(self, fn, repeats):
        if self.device.type == "cuda":
            events = [
                (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)
            ]
            for start, end in events:
                start.record()
                fn()
                end.record()
            torch.cuda.synchronize(self.device)
            return [start.elapsed_time(end) / 1e3 for start, end in events]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times

    def measure(self, fn) -> dict:
        reduced = self.over_budget()
        for _ in range(1 if reduced else self.warmup):
            fn()
        self.sync()
        estimate = min(self._times(fn, 2))
        wanted = self.min_repeats if reduced else math.ceil(self.target_s / max(estimate, 1e-7))
        repeats = int(min(self.max_repeats, max(self.min_repeats, wanted)))
        times = np.array(self._times(fn, repeats))
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        return {"median": float(median), "iqr": [float(q1), float(q3)], "repeats": repeats, "reduced_repeats": reduced}


def kernel_names(fn, device, limit=16):
    """Names of the GPU kernels (on a CPU: the aten batch-norm ops) one call of ``fn`` runs, via torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    names = []
    for event in prof.events():
        on_gpu = str(getattr(event, "device_type", "")).endswith("CUDA")
        keep = on_gpu if device.type == "cuda" else ("batch_norm" in event.name or "copy_" in event.name)
        if keep and event.name not in names:
            names.append(event.name)
    if not names and device.type == "cuda":  # older profilers: kernels only in the averages, with device time
        for avg in prof.key_averages():
            device_time = getattr(avg, "self_device_time_total", getattr(avg, "self_cuda_time_total", 0))
            if device_time and not avg.key.startswith("aten::") and avg.key not in names:
                names.append(avg.key)
    return names[:limit]


# ------------------------------------------------------------------------------ tensors


def shape_for(size_mb, channels=CHANNELS, side=SIDE):
    """(N, C, H, W) whose float32 size is ``size_mb``: N = 4 per MB at 64x32x32; smaller sizes shrink H = W."""
    numel = max(channels, int(round(size_mb * 2**20 / 4)))
    per_sample = channels * side * side
    if numel >= per_sample:
        return (max(1, round(numel / per_sample)), channels, side, side)
    side = max(1, int(math.sqrt(numel / channels)))
    return (1, channels, side, side)


def is_out_of_memory(exc) -> bool:
    """torch.cuda.OutOfMemoryError, or the CPU allocator's failure (a RuntimeError / MemoryError)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate" in text)


def check_memory(shape, dtype, device, copies=7):
    """Raise torch.cuda.OutOfMemoryError early when ``copies`` tensors of ``shape`` cannot fit on the GPU."""
    if device.type != "cuda":
        return
    need = copies * math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if need > free:
        raise torch.cuda.OutOfMemoryError(
            f"needs about {need / 2**30:.1f} GiB ({copies} tensors), {free / 2**30:.1f} GiB free"
        )


def make_tensors(shape, dtype, memory_format, device):
    """x (requires grad), dy and a copy target, all of ``dtype`` in ``memory_format``."""
    check_memory(shape, dtype, device)
    x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=memory_format).requires_grad_()
    dy = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=memory_format)
    out = torch.empty_like(x, requires_grad=False)
    return x, dy, out


def release(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _format_name(t):
    if t.is_contiguous():
        return "contiguous"
    return "channels_last" if t.is_contiguous(memory_format=torch.channels_last) else "other"


def _autocast(device, dtype_name):
    if dtype_name == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype_name])


class BNCase:
    """BatchNorm2d(C) in float32 on x, dy of the given dtype and format; callables for the measurements."""

    def __init__(self, shape, dtype_name, format_name, device):
        self.device, self.dtype_name = device, dtype_name
        self.x, self.dy, self.out = make_tensors(shape, DTYPES[dtype_name], FORMATS[format_name], device)
        self.x_data = self.x.detach()  # the same storage, no autograd bookkeeping in the copy
        self.bn = torch.nn.BatchNorm2d(shape[1]).to(device)

    def forward(self):
        with torch.no_grad(), _autocast(self.device, self.dtype_name):
            return self.bn(self.x)

    def forward_backward(self):
        self.x.grad = None
        with _autocast(self.device, self.dtype_name):
            y = self.bn(self.x)
        y.backward(self.dy)
        return y

    def copy(self):
        self.out.copy_(self.x_data)

    def describe(self):
        y = self.forward_backward()
        return {
            "output_dtype": str(y.dtype).replace("torch.", ""),
            "output_memory_format": _format_name(y),
            "grad_dtype": str(self.x.grad.dtype).replace("torch.", ""),
            "grad_memory_format": _format_name(self.x.grad),
            "bn_parameter_dtype": "float32",
        }


# ------------------------------------------------------------------------------ sections


class Progress:
    def __init__(self, total, clock):
        self.k, self.total, self.clock = 0, total, clock

    def __call__(self, text):
        self.k += 1
        print(f"[{self.k}/{self.total}] {text}  ({self.clock.elapsed():.1f} s)", flush=True)


def bandwidth_rows(clock, device, sizes_mb, progress):
    rows = []
    for size_mb in sizes_mb:
        for dtype_name in DTYPES:
            for format_name in FORMATS:
                rows.append(bandwidth_row(clock, device, size_mb, dtype_name, format_name))
                row = rows[-1]
                label = f"bandwidth {size_mb:g} MB {dtype_name} {format_name}"
                if "skipped" in row:
                    progress(f"{label}: skipped ({row['skipped']})")
                else:
                    progress(
                        f"{label}: fwd {row['bn_fwd_gbps']:.1f} GB/s, fwd+bwd {row['bn_fwdbwd_gbps']:.1f} GB/s, "
                        f"copy {row['copy_gbps']:.1f} GB/s, {row['fraction_of_copy']:.2f} of copy"
                    )
    return rows


def bandwidth_row(clock, device, size_mb, dtype_name, format_name):
    shape = shape_for(size_mb)
    itemsize = torch.empty((), dtype=DTYPES[dtype_name]).element_size()
    row = {
        "size_mb": size_mb,
        "shape": list(shape),
        "dtype": dtype_name,
        "memory_format": format_name,
        "autocast": dtype_name != "float32",
        "itemsize": itemsize,
        "bytes_tensor": math.prod(shape) * itemsize,
    }
    case = None
    try:
        case = BNCase(shape, dtype_name, format_name, device)
        row.update(case.describe())
        fwd, fwdbwd, copy = (clock.measure(f) for f in (case.forward, case.forward_backward, case.copy))
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is skipped, the rest re-raised
        if not is_out_of_memory(exc):
            raise
        row["skipped"] = f"out of memory: {str(exc).splitlines()[0][:200]}"
        return row
    finally:
        del case
        release(device)
    bt = row["bytes_tensor"]
    row.update(
        {
            "bn_fwd_s": fwd["median"],
            "bn_fwd_iqr_s": fwd["iqr"],
            "bn_fwdbwd_s": fwdbwd["median"],
            "bn_fwdbwd_iqr_s": fwdbwd["iqr"],
            "copy_s": copy["median"],
            "copy_iqr_s": copy["iqr"],
            "repeats": {"bn_fwd": fwd["repeats"], "bn_fwdbwd": fwdbwd["repeats"], "copy": copy["repeats"]},
            "reduced_repeats": fwd["reduced_repeats"] or fwdbwd["reduced_repeats"] or copy["reduced_repeats"],
            "bytes_fwd": BYTES["fwd_min"] * bt,
            "bytes_fwdbwd": BYTES["fwdbwd_min"] * bt,
            "bytes_copy": BYTES["copy"] * bt,
            "bytes_bwd": BYTES["bwd_min"] * bt,
            "bytes_fwdbwd_two_pass": BYTES["fwdbwd_two_pass"] * bt,
        }
    )
    row["bn_fwd_gbps"] = row["bytes_fwd"] / row["bn_fwd_s"] / 1e9
    row["bn_fwdbwd_gbps"] = row["bytes_fwdbwd"] / row["bn_fwdbwd_s"] / 1e9
    row["copy_gbps"] = row["bytes_copy"] / row["copy_s"] / 1e9
    backward = row["bn_fwdbwd_s"] - row["bn_fwd_s"]
    row["bn_bwd_s_derived"] = backward if backward > 0 else None
    row["bn_bwd_gbps_derived"] = row["bytes_bwd"] / backward / 1e9 if backward > 0 else None
    row["fraction_of_copy"] = row["bn_fwdbwd_gbps"] / row["copy_gbps"]
    return row


def cnn_section(devices, seeds, epochs, progress, data):
    runs, models = [], {}
    for device in devices:
        torch_tools.train_cnn(True, data, seed=99, epochs=1, device=device)  # untimed warm-up of the libraries
        for batch_norm in (True, False):
            for seed in seeds:
                run = torch_tools.train_cnn(batch_norm, data, seed=seed, epochs=epochs, device=device)
                runs.append(
                    {
                        "batch_norm": batch_norm,
                        "device": device.type,
                        "device_name": device_name(device),
                        "seed": seed,
                        "epochs": epochs,
                        "seconds_per_epoch": run.seconds_per_epoch,
                        "test_accuracy": run.test_accuracy,
                        "final_accuracy": run.test_accuracy[-1],
                        "train_loss": run.train_loss,
                    }
                )
                if batch_norm and seed == seeds[0] and device.type == "cpu":
                    models["bn_cpu"] = run.model
                progress(
                    f"cnn {'BN' if batch_norm else 'no BN'} {device.type} seed {seed}: "
                    f"{run.seconds_per_epoch * 1e3:.1f} ms/epoch, accuracy {run.test_accuracy[-1]:.3f}"
                )
    summary = []
    for device in devices:
        for batch_norm in (True, False):
            mine = [r for r in runs if r["device"] == device.type and r["batch_norm"] == batch_norm]
            secs = [r["seconds_per_epoch"] for r in mine]
            accs = [r["final_accuracy"] for r in mine]
            summary.append(
                {
                    "batch_norm": batch_norm,
                    "device": device.type,
                    "device_name": device_name(device),
                    "median_seconds_per_epoch": float(np.median(secs)),
                    "min_seconds_per_epoch": min(secs),
                    "max_seconds_per_epoch": max(secs),
                    "mean_final_accuracy": float(np.mean(accs)),
                    "min_final_accuracy": min(accs),
                    "max_final_accuracy": max(accs),
                }
            )
    info = {
        "seeds": list(seeds),
        "epochs": epochs,
        "batch_size": 64,
        "lr": 0.05,
        "train_images": len(data.x_train),
        "test_images": len(data.x_test),
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "summary": summary,
    }
    return info, models


def synthetic_convnet(seed=0):
    """Four 3x3 conv + BN + ReLU blocks (64, 64, 128, 128 channels), pooling, a linear layer; BN statistics and
    affine parameters randomized so that folding has something to fold."""
    torch.manual_seed(seed)
    nn = torch.nn
    layers, cin = [], 3
    for k, cout in enumerate((64, 64, 128, 128)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if k == 1:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model.eval()


@contextlib.contextmanager
def tf32_off():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def folding_entry(clock, device, name, model, x):
    model = model.to(device).eval()
    folded = torch_tools.fold_sequential(model).to(device)
    with torch.inference_mode():
        with tf32_off():
            y, yf = model(x), folded(x)
            diff = (y - yf).abs().max().item()
            scale = y.abs().max().item()
        diff_default = (model(x) - folded(x)).abs().max().item()
        plain = clock.measure(lambda: model(x))
        fold = clock.measure(lambda: folded(x))
    return {
        "name": name,
        "input_shape": list(x.shape),
        "bn_layers": sum(isinstance(m, torch.nn.BatchNorm2d) for m in model),
        "unfolded_s": plain["median"],
        "unfolded_iqr_s": plain["iqr"],
        "folded_s": fold["median"],
        "folded_iqr_s": fold["iqr"],
        "speedup": plain["median"] / fold["median"],
        "repeats": {"unfolded": plain["repeats"], "folded": fold["repeats"]},
        "max_abs_diff": diff,
        "max_abs_output": scale,
        "max_abs_diff_default": diff_default,
    }


def folding_section(clock, device, trained, quick, progress):
    entries = []
    torch.manual_seed(0)
    small_batch = 1024 if quick else 4096
    x_small = torch.randn(small_batch, 1, 8, 8, device=device)
    entries.append(folding_entry(clock, device, "small_cnn (trained, seed 0)", trained, x_small))
    big_shape = (8, 3, 16, 16) if quick else (256, 3, 64, 64)
    x_big = torch.randn(big_shape, device=device)
    entries.append(folding_entry(clock, device, "synthetic convnet (4 conv+BN blocks)", synthetic_convnet(), x_big))
    for e in entries:
        progress(
            f"folding {e['name']} {tuple(e['input_shape'])}: {e['unfolded_s'] * 1e3:.3f} ms -> "
            f"{e['folded_s'] * 1e3:.3f} ms ({e['speedup']:.2f}x), max diff {e['max_abs_diff']:.2e}"
        )
    release(device)
    return {"device": str(device), "device_name": device_name(device), "entries": entries}


def cudnn_section(clock, device, sizes_mb, progress):
    if device.type != "cuda":
        return {"applicable": False, "reason": f"not applicable: cuDNN is CUDA-only and the device is {device.type}"}
    rows, profile_ok = [], True
    for size_mb in sizes_mb:
        for dtype_name in ("float32", "bfloat16"):
            for format_name in FORMATS:
                shape = shape_for(size_mb)
                row = {"size_mb": size_mb, "shape": list(shape), "dtype": dtype_name, "memory_format": format_name}
                case = None
                try:
                    case = BNCase(shape, dtype_name, format_name, device)
                    row["bytes_tensor"] = case.x.numel() * case.x.element_size()
                    for label, enabled in (("cudnn", True), ("native", False)):
                        with torch.backends.cudnn.flags(enabled=enabled):
                            m = clock.measure(case.forward_backward)
                            row[f"{label}_fwdbwd_s"], row[f"{label}_fwdbwd_iqr_s"] = m["median"], m["iqr"]
                            row[f"{label}_repeats"] = m["repeats"]
                            row[f"{label}_gbps"] = BYTES["fwdbwd_min"] * row["bytes_tensor"] / m["median"] / 1e9
                            if profile_ok:
                                try:
                                    row[f"{label}_kernels"] = kernel_names(case.forward_backward, device)
                                except Exception as exc:  # noqa: BLE001 - the profiler is optional
                                    profile_ok = False
                                    row[f"{label}_kernels"] = f"profiler unavailable: {exc}"[:300]
                    row["native_over_cudnn"] = row["native_fwdbwd_s"] / row["cudnn_fwdbwd_s"]
                    progress(
                        f"cudnn {size_mb:g} MB {dtype_name} {format_name}: cuDNN {row['cudnn_gbps']:.1f} GB/s, "
                        f"native {row['native_gbps']:.1f} GB/s"
                    )
                except Exception as exc:  # noqa: BLE001
                    if not is_out_of_memory(exc):
                        raise
                    row["skipped"] = f"out of memory: {str(exc).splitlines()[0][:200]}"
                    progress(f"cudnn {size_mb:g} MB {dtype_name} {format_name}: skipped")
                finally:
                    del case
                    release(device)
                rows.append(row)
    return {"applicable": True, "rows": rows}


# ------------------------------------------------------------------------------ provenance


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return torch_tools._cpu_model() or platform.processor() or platform.machine()


def _driver_version():
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device, argv, quick):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf32 = {
            "cudnn_conv": bool(torch.backends.cudnn.allow_tf32),
            "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        }
    meta = {
        "device": str(device),
        "device_name": device_name(device),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": torch_tools._cpu_model() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "command_line": shlex.join(sys.argv),
        "argv": list(sys.argv),
        "main_argv": list(argv),
        "quick": quick,
        "tf32": tf32,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(
            {
                "gpu_memory_gib": props.total_memory / 2**30,
                "compute_capability": f"{props.major}.{props.minor}",
                "driver": _driver_version(),
            }
        )
    return meta


# ------------------------------------------------------------------------------ command line


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the module docstring for what is measured."
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for gpu_figures.json (created if missing)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 repeats, 1 seed, 1 epoch: a smoke test")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available, else cpu)")
    parser.add_argument(
        "--sizes-mb",
        type=float,
        nargs="+",
        default=None,
        help="float32 tensor sizes for the bandwidth sweep (default 1 4 ... 4096; quick 0.25 1)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="past this many seconds, measurements use the minimum repeats (default 240)",
    )
    args = parser.parse_args(argv)
    try:
        args.device = check_device(args.device)
        check_out_dir(args.out_dir)
        if args.sizes_mb is not None and any(not (s > 0 and math.isfinite(s)) for s in args.sizes_mb):
            raise BadArguments(f"--sizes-mb: sizes must be positive, got {args.sizes_mb}")
        if not args.budget_s > 0:
            raise BadArguments(f"--budget-s: must be positive, got {args.budget_s}")
    except BadArguments as exc:
        parser.error(str(exc))  # exit status 2 with the usage line and the message
    return args


def check_device(name):
    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BadArguments(f"--device {name!r}: not a device ({exc})") from None
    if device.type not in ("cpu", "cuda"):
        raise BadArguments(f"--device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BadArguments(
                f"--device {name}: CUDA was requested but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BadArguments(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def check_out_dir(path):
    if os.path.exists(path) and not os.path.isdir(path):
        raise BadArguments(f"OUT_DIR {path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise BadArguments(f"OUT_DIR {path!r} cannot be created: {exc}") from None
    if not os.access(path, os.W_OK):
        raise BadArguments(f"OUT_DIR {path!r} is not writable")


def write_json(path, results):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device, quick = args.device, args.quick
    if device.type == "cuda":
        torch.cuda.set_device(device)  # events and streams on the measured GPU
    sizes = args.sizes_mb or (QUICK_SIZES_MB if quick else FULL_SIZES_MB)
    cudnn_sizes = QUICK_CUDNN_SIZES_MB if quick else CUDNN_SIZES_MB
    seeds, epochs = ((0,), 1) if quick else ((0, 1, 2), 5)
    cnn_devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    if quick:
        clock = Clock(device, target_s=0.0, min_repeats=3, max_repeats=3, warmup=1, budget_s=args.budget_s)
    else:
        clock = Clock(device, target_s=0.2, min_repeats=5, max_repeats=1000, warmup=3, budget_s=args.budget_s)
    out = os.path.join(args.out_dir, "gpu_figures.json")
    n_cudnn = len(cudnn_sizes) * 2 * len(FORMATS) if device.type == "cuda" else 0
    progress = Progress(
        len(sizes) * len(DTYPES) * len(FORMATS) + len(cnn_devices) * 2 * len(seeds) + 2 + n_cudnn, clock
    )

    meta = provenance(device, argv, quick)
    print(
        f"device {meta['device']} ({meta['device_name']}), torch {meta['torch']}, CUDA {meta['cuda']}, "
        f"cuDNN {meta['cudnn']}{', quick mode' if quick else ''}",
        flush=True,
    )
    results = {
        "schema": SCHEMA,
        "complete": False,
        "meta": meta,
        "notes": NOTES,
        "settings": {
            "sizes_mb": sizes,
            "channels": CHANNELS,
            "side": SIDE,
            "half_size_convention": "same_elements",
            "bytes_per_pass_in_tensor_sizes": BYTES,
            "target_s": clock.target_s,
            "min_repeats": clock.min_repeats,
            "max_repeats": clock.max_repeats,
            "warmup": clock.warmup,
            "budget_s": clock.budget_s,
            "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
        },
    }

    results["bandwidth"] = {"device": str(device), "rows": bandwidth_rows(clock, device, sizes, progress)}
    write_json(out, results)

    from bnlib.data import load_digits

    data = load_digits(images=True, dtype=np.float32)
    results["cnn"], models = cnn_section(cnn_devices, seeds, epochs, progress, data)
    write_json(out, results)

    results["folding"] = folding_section(clock, device, models["bn_cpu"], quick, progress)
    write_json(out, results)

    results["cudnn"] = cudnn_section(clock, device, cudnn_sizes, progress)
    results["wall_s"] = clock.elapsed()
    results["complete"] = True
    write_json(out, results)
    print(f"done in {clock.elapsed():.1f} s; results written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
