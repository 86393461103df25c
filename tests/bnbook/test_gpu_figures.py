"""benchmarks/gpu_figures.py in --quick mode on the CPU (the GPU run's code paths, tiny sizes), its argument
checks, and bnbook.gpu_results (loading, the provenance line, the figures) on the quick run's results."""

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from bnbook import gpu_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_figures.py")
PROVENANCE = [
    "device",
    "device_name",
    "date_utc",
    "torch",
    "cuda",
    "cudnn",
    "python",
    "platform",
    "command_line",
    "argv",
]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_figures():
    return load_script()


@pytest.fixture(scope="module")
def quick_run(gpu_figures, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    start = time.perf_counter()
    assert gpu_figures.main([str(out), "--quick", "--device", "cpu"]) == 0
    seconds = time.perf_counter() - start
    with open(out / "gpu_figures.json") as f:
        return out, json.load(f), seconds


def positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_quick_run_is_complete_and_quick(quick_run, capsys):
    _, results, seconds = quick_run
    assert results["complete"] is True
    assert seconds < 120, f"--quick took {seconds:.1f} s"
    assert set(results) >= {"meta", "notes", "settings", "bandwidth", "cnn", "folding", "cudnn", "wall_s"}


def test_provenance(quick_run):
    _, results, _ = quick_run
    meta = results["meta"]
    assert set(meta) >= set(PROVENANCE)
    assert meta["device"] == "cpu" and meta["quick"] is True
    assert meta["torch"] == torch.__version__
    assert meta["date_utc"].endswith("+00:00") and meta["date_utc"][:4].isdigit()
    assert meta["argv"] == sys.argv  # the exact command line of the process
    assert meta["main_argv"][1:] == ["--quick", "--device", "cpu"]
    assert os.uname().nodename not in meta["platform"]


def test_bandwidth_rows(gpu_figures, quick_run):
    _, results, _ = quick_run
    rows = results["bandwidth"]["rows"]
    sizes = results["settings"]["sizes_mb"]
    assert sizes == gpu_figures.QUICK_SIZES_MB
    assert {(r["size_mb"], r["dtype"], r["memory_format"]) for r in rows} == {
        (s, d, f) for s in sizes for d in ("float32", "bfloat16", "float16") for f in ("contiguous", "channels_last")
    }
    itemsize = {"float32": 4, "bfloat16": 2, "float16": 2}
    for r in rows:
        assert "skipped" not in r
        assert r["bytes_tensor"] == math.prod(r["shape"]) * itemsize[r["dtype"]]
        assert math.prod(r["shape"]) * 4 == r["size_mb"] * 2**20  # half types: the same element counts
        assert r["bytes_fwd"] == 2 * r["bytes_tensor"] and r["bytes_fwdbwd"] == 5 * r["bytes_tensor"]
        assert r["bytes_copy"] == 2 * r["bytes_tensor"] and r["bytes_bwd"] == 3 * r["bytes_tensor"]
        for key in ("bn_fwd", "bn_fwdbwd", "copy"):
            assert positive(r[f"{key}_s"]) and positive(r[f"{key}_gbps"])
            q1, q3 = r[f"{key}_iqr_s"]
            assert q1 <= r[f"{key}_s"] <= q3
            assert r["repeats"][key] == 3
        assert r["bn_fwd_gbps"] == pytest.approx(r["bytes_fwd"] / r["bn_fwd_s"] / 1e9)
        assert r["bn_fwdbwd_gbps"] == pytest.approx(r["bytes_fwdbwd"] / r["bn_fwdbwd_s"] / 1e9)
        assert r["copy_gbps"] == pytest.approx(r["bytes_copy"] / r["copy_s"] / 1e9)
        assert r["bn_bwd_gbps_derived"] is None or positive(r["bn_bwd_gbps_derived"])
        # what was measured: half inputs stay half (autocast leaves batch norm alone), the format is kept
        assert r["output_dtype"] == r["grad_dtype"] == r["dtype"] and r["bn_parameter_dtype"] == "float32"
        assert r["output_memory_format"] == r["grad_memory_format"] == r["memory_format"]
        assert r["autocast"] == (r["dtype"] != "float32")


def test_cnn(quick_run):
    _, results, _ = quick_run
    cnn = results["cnn"]
    assert cnn["seeds"] == [0] and cnn["epochs"] == 1
    assert {(r["device"], r["batch_norm"]) for r in cnn["runs"]} == {("cpu", True), ("cpu", False)}
    for r in cnn["runs"] + cnn["summary"]:
        accuracies = r.get("test_accuracy", []) + [r.get("final_accuracy", r.get("mean_final_accuracy"))]
        assert all(0 <= a <= 1 for a in accuracies)
    for r in cnn["runs"]:
        assert positive(r["seconds_per_epoch"]) and len(r["test_accuracy"]) == 1
    assert max(r["final_accuracy"] for r in cnn["runs"]) > 0.5  # it learned something in one epoch


def test_folding(quick_run):
    _, results, _ = quick_run
    small, big = results["folding"]["entries"]
    assert small["input_shape"] == [1024, 1, 8, 8] and small["bn_layers"] == 2 and big["bn_layers"] == 4
    for e in (small, big):
        assert e["max_abs_diff"] < 1e-4 * max(1.0, e["max_abs_output"])
        assert positive(e["unfolded_s"]) and positive(e["folded_s"]) and positive(e["speedup"])
    assert small["max_abs_diff"] < 1e-4


def test_cudnn_section_on_the_cpu(quick_run):
    _, results, _ = quick_run
    assert results["cudnn"]["applicable"] is False
    assert results["cudnn"]["reason"].startswith("not applicable")


def test_out_of_memory_is_skipped(gpu_figures, monkeypatch):
    def no_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(gpu_figures, "make_tensors", no_memory)
    clock = gpu_figures.Clock(torch.device("cpu"), target_s=0, min_repeats=3, max_repeats=3, warmup=1)
    row = gpu_figures.bandwidth_row(clock, torch.device("cpu"), 4096, "float32", "contiguous")
    assert row["skipped"].startswith("out of memory") and row["shape"] == [16384, 64, 32, 32]

    def broken(*args):
        raise ValueError("a bug, not memory")

    monkeypatch.setattr(gpu_figures, "make_tensors", broken)
    with pytest.raises(ValueError, match="a bug"):
        gpu_figures.bandwidth_row(clock, torch.device("cpu"), 1, "float32", "contiguous")


def test_shapes_and_kernel_names(gpu_figures):
    assert gpu_figures.shape_for(1) == (4, 64, 32, 32)
    assert gpu_figures.shape_for(4096) == (16384, 64, 32, 32)
    assert gpu_figures.shape_for(0.25) == (1, 64, 32, 32)
    case = gpu_figures.BNCase((2, 64, 4, 4), "float32", "contiguous", torch.device("cpu"))
    names = gpu_figures.kernel_names(case.forward_backward, torch.device("cpu"))
    assert "aten::native_batch_norm" in names and "aten::native_batch_norm_backward" in names


def test_bad_out_dir_fails_clearly(gpu_figures, tmp_path, capsys):
    a_file = tmp_path / "results.json"
    a_file.write_text("{}")
    with pytest.raises(SystemExit) as exc:
        gpu_figures.main([str(a_file), "--quick"])
    assert exc.value.code == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert a_file.read_text() == "{}"


def test_cuda_without_cuda_fails_clearly(gpu_figures, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        gpu_figures.main([str(tmp_path), "--quick", "--device", "cuda"])
    assert exc.value.code == 2
    assert "CUDA was requested but torch.cuda.is_available() is False" in capsys.readouterr().err
    for bad, message in (
        (["--device", "tpu"], "--device"),
        (["--sizes-mb", "0"], "positive"),
        (["--budget-s", "-1"], "positive"),
    ):
        with pytest.raises(SystemExit):
            gpu_figures.main([str(tmp_path), "--quick", *bad])
        assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "gpu_figures.json")


def test_script_runs_from_the_command_line_on_bad_arguments(tmp_path):
    """As a script (no PYTHONPATH needed): a clear message and a nonzero exit."""
    a_file = tmp_path / "x"
    a_file.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, SCRIPT, str(a_file)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "exists and is not a directory" in done.stderr


# ------------------------------------------------------------------------------ bnbook.gpu_results


def gpu_like(results):
    """The quick results made to look like a GPU run: a CUDA device in the CNN runs, one skipped size."""
    fake = copy.deepcopy(results)
    fake["meta"].update(
        device="cuda:0",
        device_name="NVIDIA H200",
        date_utc="2026-12-02T10:00:00+00:00",
        torch="2.11.0",
        cuda="12.8",
        quick=False,
    )
    fake["cnn"]["runs"] += [
        dict(r, device="cuda", device_name="NVIDIA H200", seconds_per_epoch=r["seconds_per_epoch"] / 3)
        for r in results["cnn"]["runs"]
    ]
    fake["bandwidth"]["rows"].append(
        {
            "size_mb": 4096,
            "shape": [16384, 64, 32, 32],
            "dtype": "float32",
            "memory_format": "contiguous",
            "bytes_tensor": 2**32,
            "skipped": "out of memory",
        }
    )
    return fake


def test_load(quick_run, tmp_path):
    out, results, _ = quick_run
    assert gpu_results.load(str(out)) == results
    assert gpu_results.load(str(out / "gpu_figures.json")) == results
    assert gpu_results.load(str(tmp_path / "nothing here")) is None


def test_provenance_line(quick_run):
    _, results, _ = quick_run
    fake = gpu_like(results)
    assert gpu_results.provenance_line(fake["meta"]) == "NVIDIA H200, 2026-12-02, torch 2.11.0, CUDA 12.8"
    assert gpu_results.provenance_line(fake) == "NVIDIA H200, 2026-12-02, torch 2.11.0, CUDA 12.8"
    line = gpu_results.provenance_line(results["meta"])
    assert line.startswith(results["meta"]["device_name"]) and "CPU, no GPU" in line and "quick mode" in line
    assert "CUDA" not in line  # a CPU run with a CUDA build of torch must not read as a GPU run
    assert "\n" not in line


@pytest.mark.parametrize("name", ["bandwidth_vs_copy", "roofline", "epoch_times"])
@pytest.mark.parametrize("variant", ["quick", "gpu_like"])
def test_figures(quick_run, name, variant):
    _, results, _ = quick_run
    data = results if variant == "quick" else gpu_like(results)
    fig = getattr(gpu_results, name)(data)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        (ax,) = fig.axes
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        if name == "epoch_times":
            assert any(s in ax.get_ylabel() for s in ("seconds", "(s)"))
            assert len(labels) == (1 if variant == "quick" else 2)
            assert len(ax.patches) == 2 * len(labels)
        else:
            assert "MB" in ax.get_xlabel() and len(labels) == 6 + 1 + (name == "roofline")
            assert sum(len(line.get_xdata()) for line in ax.get_lines()[:6]) == 12  # skipped rows are left out
        fig.canvas.draw()
    finally:
        plt.close(fig)


def test_gpu_results_does_not_import_torch():
    code = "import sys, bnbook.gpu_results; assert 'torch' not in sys.modules, 'torch imported'"
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
