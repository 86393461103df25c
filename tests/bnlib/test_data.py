"""The digits loader and the IDX reader (on small files the test writes)."""

import gzip
import struct

import numpy as np
import pytest

from bnlib.data import batches, load_digits, load_idx_dataset, read_idx


def test_digits_split_is_deterministic_and_standardized():
    a, b = load_digits(seed=0), load_digits(seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (1348, 64) and a.x_test.shape == (449, 64)
    assert a.y_train.dtype == np.int64 and set(np.unique(a.y_train)) == set(range(10))
    used = a.x_train.std(0) > 0
    np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(a.x_train.std(0)[used], 1, rtol=1e-12)
    c = load_digits(seed=1)
    assert not np.array_equal(a.y_train, c.y_train)
    raw = load_digits(standardize=False, images=True, dtype=np.float32)
    assert raw.x_train.shape == (1348, 1, 8, 8) and raw.x_train.dtype == np.float32 and raw.x_train.max() == 16
    with pytest.raises(ValueError, match=r"test_fraction: expected a value in \(0, 1\)"):
        load_digits(test_fraction=1.5)


def _write_idx(path, array, type_code, compress=False):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    dtype = {0x08: ">u1", 0x0D: ">f4", 0x0C: ">i4"}[type_code]
    raw = header + array.astype(dtype).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:  # closed: an unclosed gzip file may stay empty
        f.write(raw)


def test_read_idx_roundtrip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-idx3-ubyte", images, 0x08)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), images)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    _write_idx(tmp_path / "f.gz", floats, 0x0D, compress=True)
    out = read_idx(tmp_path / "f.gz")
    np.testing.assert_array_equal(out, floats)
    assert out.dtype.isnative
    ints = np.array([-5, 7, 70000], dtype=np.int32)
    _write_idx(tmp_path / "i", ints, 0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "i"), ints)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        read_idx(tmp_path / "type")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x00\x01")
    with pytest.raises(ValueError, match="expected 5 data bytes for shape \\(5,\\), got 2"):
        read_idx(tmp_path / "short")


def test_load_idx_dataset_reads_a_fashion_mnist_style_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(n, 28, 28)), 0x08, True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=n), 0x08)
    data = load_idx_dataset(tmp_path)
    assert data.x_train.shape == (12, 784) and data.x_test.shape == (4, 784)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-12)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_idx_dataset(tmp_path, prefix_test="t10k-images")


def test_batches_cover_the_data_once():
    x, y = np.arange(10.0)[:, None], np.arange(10)
    seen = np.concatenate([yb for _, yb in batches(x, y, 3, rng=0, drop_last=False)])
    assert sorted(seen.tolist()) == list(range(10))
    assert sum(1 for _ in batches(x, y, 3, rng=0)) == 3
