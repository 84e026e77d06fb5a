"""Drop-in replacement for the book's ``mnist_loader`` module.

Mirrors ``load_data``, ``load_data_wrapper`` and ``vectorized_result`` from
"Neural Networks and Deep Learning" and returns the same structures.  Data
comes from ``mnist.pkl.gz`` (the ``path`` argument or ``$FASTBP_MNIST``), or
else from the installed Fashion-MNIST IDX files, split 50000/10000/10000.
"""

from __future__ import annotations

import operator
import os

import numpy as np

from . import datasets

__all__ = ["load_data", "load_data_wrapper", "vectorized_result"]

MNIST_ENV = "FASTBP_MNIST"

# Size of the book's validation split, carved from the end of the training set.
_N_VALIDATION = 10_000


def _as_book_pair(images, labels):
    return (np.ascontiguousarray(images, dtype=np.float32),
            np.asarray(labels).astype(np.int64, copy=False))


def _from_idx(directory):
    # float32 throughout, like the book's pickle.
    ds = datasets.load_idx_dir(directory, dtype="float32")
    n = len(ds.X_train)
    n_val = min(_N_VALIDATION, n // 6)  # 10000 of 60000; proportional for smaller sets
    cut = n - n_val
    return ((ds.X_train[:cut], ds.y_train[:cut]),
            (ds.X_train[cut:], ds.y_train[cut:]),
            (ds.X_test, ds.y_test))


def load_data(path=None):
    """Return ``(training_data, validation_data, test_data)``.

    Each is ``(images (n, 784) float32, labels (n,) int64)``; 50000, 10000
    and 10000 examples for MNIST or Fashion-MNIST.
    """
    source = "path"
    if path is None and os.environ.get(MNIST_ENV):
        path, source = os.environ[MNIST_ENV], f"${MNIST_ENV}"
    if path is not None:
        path = os.fspath(path)
        if os.path.isdir(path):
            return _from_idx(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"MNIST pickle {path} (from {source}) not found. Pass the path of "
                f"mnist.pkl.gz or a directory of IDX files."
            )
        return tuple(_as_book_pair(*pair) for pair in datasets.read_mnist_pkl(path))
    if datasets.fashion_mnist_available():
        return _from_idx(datasets.fashion_mnist_dir())
    raise FileNotFoundError(
        f"No MNIST data found: pass load_data(path) the path of mnist.pkl.gz, set "
        f"{MNIST_ENV} to it, or install the Debian package dataset-fashion-mnist "
        f"(or set {datasets.FASHION_MNIST_ENV} to a directory of Fashion-MNIST "
        f"IDX files)."
    )


def load_data_wrapper(path=None):
    """Return ``(training_data, validation_data, test_data)`` as lists.

    ``training_data`` holds ``(x, y)`` with ``x`` a ``(784, 1)`` input column
    and ``y`` the ``(10, 1)`` one-hot :func:`vectorized_result`;
    ``validation_data`` and ``test_data`` hold ``(x, int label)``.
    """
    tr_d, va_d, te_d = load_data(path)
    training_data = [(x.reshape(-1, 1), vectorized_result(y))
                     for x, y in zip(tr_d[0], tr_d[1])]
    validation_data = [(x.reshape(-1, 1), int(y)) for x, y in zip(va_d[0], va_d[1])]
    test_data = [(x.reshape(-1, 1), int(y)) for x, y in zip(te_d[0], te_d[1])]
    return training_data, validation_data, test_data


def vectorized_result(j):
    """``(10, 1)`` column with 1.0 in position ``j`` and zeros elsewhere."""
    try:
        j = operator.index(j)
    except TypeError:
        raise TypeError(f"j must be an integer label; got {type(j).__name__}.") from None
    if not 0 <= j < 10:
        raise ValueError(f"j must be a digit label in [0, 9]; got {j}.")
    e = np.zeros((10, 1))
    e[j] = 1.0
    return e
