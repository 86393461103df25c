"""Chapter 8's roofline arithmetic: bytes, rates and the traffic that would explain the time."""

import json
from pathlib import Path

import pytest

from bnbook import ch08_pytorch

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_roofline_of_a_memory_bound_kernel_explains_its_time_with_its_passes():
    # 1 MiB tensor; a copy of it takes 2 units of time, a kernel moving 5 sizes at the same rate 5 units
    row = {"megabytes": 1.0, "bn_seconds": 5e-3, "copy_seconds": 2e-3}
    r = ch08_pytorch.roofline(row)
    assert r["bytes"] == 5 * 2**20
    assert r["rate"] == pytest.approx(r["copy_rate"])
    assert r["share_of_copy"] == pytest.approx(1.0)
    assert r["copy_seconds_for_bytes"] == pytest.approx(row["bn_seconds"])
    assert r["tensors_to_explain"] == pytest.approx(5.0)


def test_roofline_of_a_slow_kernel_needs_more_traffic_than_it_makes():
    row = {"megabytes": 2.0, "bn_seconds": 0.1, "copy_seconds": 1e-3}
    r = ch08_pytorch.roofline(row)
    assert r["share_of_copy"] == pytest.approx(5 * 1e-3 / (2 * 0.1))
    assert r["tensors_to_explain"] == pytest.approx(2 * 0.1 / 1e-3)
    assert r["copy_seconds_for_bytes"] < r["seconds"]


def test_roofline_agrees_with_the_committed_rates():
    for path in RESULTS.glob("bandwidth-*.json"):
        for row in json.loads(path.read_text())["results"]:
            r = ch08_pytorch.roofline(row)
            assert r["rate"] / 1e9 == pytest.approx(row["bn_gbps"])
            assert r["copy_rate"] / 1e9 == pytest.approx(row["copy_gbps"])
