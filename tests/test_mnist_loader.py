"""Tests for fastbp.mnist_loader, the drop-in for the book's mnist_loader."""

import gzip
import os
import pickle
import random

import numpy as np
import pytest

from fastbp import mnist_loader
from fastbp.datasets import (fashion_mnist_available, fashion_mnist_dir, read_idx,
                             write_idx)


@pytest.fixture
def tiny_splits():
    rng = np.random.default_rng(3)
    return tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))
        for n in (8, 3, 5)
    )


@pytest.fixture
def pkl_path(tmp_path, tiny_splits):
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump(tiny_splits, fh, protocol=2)
    return path


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("FASTBP_MNIST", raising=False)


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch):
    """Fashion-MNIST stand-in with 12 train and 5 test images, via the env var."""
    rng = np.random.default_rng(4)
    d = tmp_path / "fashion"
    d.mkdir()
    train = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    train_labels = np.arange(12, dtype=np.uint8) % 10
    test = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    test_labels = np.array([1, 2, 3, 4, 5], dtype=np.uint8)
    write_idx(d / "train-images-idx3-ubyte.gz", train)
    write_idx(d / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(d / "t10k-images-idx3-ubyte.gz", test)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", test_labels)
    monkeypatch.setenv("FASTBP_FASHION_MNIST", str(d))
    return train, train_labels, test, test_labels


def check_book_pair(pair, expected):
    images, labels = pair
    assert isinstance(pair, tuple)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def test_load_data_from_pkl(pkl_path, tiny_splits):
    data = mnist_loader.load_data(pkl_path)
    assert isinstance(data, tuple) and len(data) == 3
    for pair, expected in zip(data, tiny_splits):
        check_book_pair(pair, expected)
    # A str path works as well.
    check_book_pair(mnist_loader.load_data(str(pkl_path))[2], tiny_splits[2])


def test_load_data_converts_dtypes(tmp_path, tiny_splits):
    converted = tuple((x.astype(np.float64), y.astype(np.int32)) for x, y in tiny_splits)
    path = tmp_path / "m.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump(converted, fh, protocol=2)
    for pair, expected in zip(mnist_loader.load_data(path), tiny_splits):
        check_book_pair(pair, expected)


def test_env_var_honoured(pkl_path, tiny_splits, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_MNIST", str(pkl_path))
    for pair, expected in zip(mnist_loader.load_data(), tiny_splits):
        check_book_pair(pair, expected)
    # An explicit path wins over the environment.
    other = tuple((x[:2], y[:2]) for x, y in tiny_splits)
    other_path = tmp_path / "other.pkl.gz"
    with gzip.open(other_path, "wb") as fh:
        pickle.dump(other, fh, protocol=2)
    assert len(mnist_loader.load_data(other_path)[0][0]) == 2


def test_env_var_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_MNIST", str(tmp_path / "absent.pkl.gz"))
    with pytest.raises(FileNotFoundError, match="FASTBP_MNIST"):
        mnist_loader.load_data()


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pkl.gz"):
        mnist_loader.load_data(tmp_path / "absent.pkl.gz")


def test_no_source_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_FASHION_MNIST", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as info:
        mnist_loader.load_data()
    assert "FASTBP_MNIST" in str(info.value)


def test_malicious_pkl_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump((Evil(), Evil(), Evil()), fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        mnist_loader.load_data(path)
    with pytest.raises(pickle.UnpicklingError):
        mnist_loader.load_data_wrapper(path)
    assert not marker.exists()


def test_fashion_fallback_split(tiny_fashion):
    train, train_labels, test, test_labels = tiny_fashion
    tr, va, te = mnist_loader.load_data()
    # Validation is carved from the end of the training images (12 // 6 = 2 here).
    flat = train.reshape(12, 784).astype(np.float64) / 255.0
    assert tr[0].shape == (10, 784) and va[0].shape == (2, 784)
    assert tr[0].dtype == np.float32 and tr[1].dtype == np.int64
    np.testing.assert_allclose(tr[0], flat[:10], rtol=1e-6)
    np.testing.assert_allclose(va[0], flat[10:], rtol=1e-6)
    assert tr[1].tolist() == train_labels[:10].tolist()
    assert va[1].tolist() == train_labels[10:].tolist()
    np.testing.assert_allclose(te[0], test.reshape(5, 784) / 255.0, rtol=1e-6)
    assert te[1].tolist() == test_labels.tolist()


def test_load_data_wrapper(pkl_path, tiny_splits):
    training, validation, test = mnist_loader.load_data_wrapper(pkl_path)
    assert isinstance(training, list) and isinstance(validation, list)
    assert isinstance(test, list)
    assert (len(training), len(validation), len(test)) == (8, 3, 5)
    for i, (x, y) in enumerate(training):
        assert x.shape == (784, 1) and y.shape == (10, 1)
        np.testing.assert_array_equal(x[:, 0], tiny_splits[0][0][i])
        label = int(tiny_splits[0][1][i])
        assert y[label, 0] == 1.0 and y.sum() == 1.0
    for data, (images, labels) in ((validation, tiny_splits[1]), (test, tiny_splits[2])):
        for i, (x, y) in enumerate(data):
            assert x.shape == (784, 1)
            np.testing.assert_array_equal(x[:, 0], images[i])
            assert isinstance(y, int) and y == labels[i]


def test_wrapper_works_like_the_book(pkl_path):
    # The book's SGD shuffles and slices training_data and compares
    # np.argmax(output) with the test label.
    training, _, test = mnist_loader.load_data_wrapper(pkl_path)
    random.Random(0).shuffle(training)
    batches = [training[k:k + 3] for k in range(0, len(training), 3)]
    assert sum(len(b) for b in batches) == 8
    x, y = test[0]
    assert int(np.argmax(mnist_loader.vectorized_result(y)) == y) == 1


def test_vectorized_result():
    for j in range(10):
        e = mnist_loader.vectorized_result(j)
        assert e.shape == (10, 1) and e.dtype == np.float64
        assert e[:, 0].tolist() == [1.0 if k == j else 0.0 for k in range(10)]
    assert mnist_loader.vectorized_result(np.int64(4))[4, 0] == 1.0


@pytest.mark.parametrize("j, exc", [(10, ValueError), (-1, ValueError),
                                    (2.5, TypeError), ("3", TypeError)])
def test_vectorized_result_rejects(j, exc):
    with pytest.raises(exc, match="j must be"):
        mnist_loader.vectorized_result(j)


@pytest.mark.skipif(not fashion_mnist_available(),
                    reason="Fashion-MNIST IDX files not installed "
                           "(Debian package dataset-fashion-mnist)")
def test_load_data_real_fashion_mnist():
    tr, va, te = mnist_loader.load_data()
    assert tr[0].shape == (50000, 784) and tr[1].shape == (50000,)
    assert va[0].shape == (10000, 784) and va[1].shape == (10000,)
    assert te[0].shape == (10000, 784) and te[1].shape == (10000,)
    assert tr[0].dtype == np.float32 and te[1].dtype == np.int64
    base = os.path.join(fashion_mnist_dir(), "train-labels-idx1-ubyte")
    labels = read_idx(base if os.path.exists(base) else base + ".gz")
    assert tr[1].tolist() == labels[:50000].tolist()
    assert va[1].tolist() == labels[50000:].tolist()
    assert 0.0 <= tr[0].min() and tr[0].max() <= 1.0
