"""Data the book trains on: scikit-learn's bundled digits, and an IDX reader for (Fashion-)MNIST.

Nothing is downloaded. ``load_digits`` uses the 1,797 8x8 images that ship inside scikit-learn;
``read_idx``/``load_idx_dataset`` read files a user has downloaded themselves.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "load_digits", "read_idx", "load_idx_dataset", "batches"]


class Dataset(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _split_and_scale(x, y, test_fraction, seed, standardize, dtype):
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    x = x.astype(dtype)
    x_train, x_test = x[train], x[test]
    if standardize:
        # statistics of the training split only: the test split must not leak into them
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0  # constant pixels (always 0 in digits) stay 0
        x_train = (x_train - mean) / std
        x_test = (x_test - mean) / std
    return Dataset(x_train, y[train].astype(np.int64), x_test, y[test].astype(np.int64))


def load_digits(*, test_fraction=0.25, seed=0, standardize=True, images=False, dtype=np.float64) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), split deterministically.

    Args:
        test_fraction: share of the images held out for testing.
        seed: seed of the shuffle that splits train and test.
        standardize: per pixel, subtract the training mean and divide by the training std.
        images: return (N, 1, 8, 8) arrays for convolutional networks instead of (N, 64).
        dtype: float dtype of the images.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from exc
    bunch = _sk_load_digits()
    data = _split_and_scale(bunch.data, bunch.target, test_fraction, seed, standardize, dtype)
    if images:
        data = Dataset(data.x_train.reshape(-1, 1, 8, 8), data.y_train, data.x_test.reshape(-1, 1, 8, 8), data.y_test)
    return data


_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or not.

    Format: two zero bytes, a type byte (0x08 uint8 ... 0x0E float64), a byte with the number of
    dimensions, one big-endian uint32 per dimension, then the data in C order.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected the magic bytes 00 00, got {raw[:2].hex() or 'nothing'})")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x} (expected one of 08 09 0b 0c 0d 0e)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header (expected {header} bytes, got {len(raw)})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: expected {expected} data bytes for shape {shape}, got {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx_dataset(directory, *, prefix_train="train", prefix_test="t10k", standardize=True, dtype=np.float64):
    """Load an MNIST-style folder: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    For Fashion-MNIST, download the four files from its repository into ``directory``. Images are
    scaled to [0, 1] and flattened, then standardized with the training split's statistics.
    """

    def find(stem):
        for name in (stem, stem + ".gz"):
            candidate = os.path.join(directory, name)
            if os.path.exists(candidate):
                return candidate
        raise FileNotFoundError(f"{directory}: expected {stem} or {stem}.gz")

    parts = {}
    for split, prefix in (("train", prefix_train), ("test", prefix_test)):
        images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
        parts[split] = (images.reshape(len(images), -1).astype(dtype) / 255.0, labels.astype(np.int64))
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Dataset(x_train, y_train, x_test, y_test)


def batches(x, y, batch_size, *, rng=None, drop_last=True):
    """Yield shuffled ``(x_batch, y_batch)`` pairs; ``drop_last`` avoids a tiny final batch."""
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    order = np.random.default_rng(rng).permutation(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]
