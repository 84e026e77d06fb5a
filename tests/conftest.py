"""Shared fixtures and the tolerances every test uses."""
import os

import numpy as np
import pytest
from numba import njit

from fastbp.threads import available_cores

# Same arithmetic in a different order (kernels vs NumPy/BLAS): float64 rounding only.
F64_ATOL = 1e-12
# float32 kernels against the float64 NumPy reference, relative to the values' scale.
F32_RTOL = 2e-4
# Backprop against central finite differences, float64 (max relative error).
FD_RTOL = 1e-7


# With ``-n auto`` (pytest-xdist) each worker compiles the kernels its tests need and peaks at about 2.7 GB: on
# many cores, more than a few workers would cost memory without saving time (one test file runs in one worker
# with ``--dist loadfile``, and a few files hold most of the compiling).
MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core this process may use, at most MAX_WORKERS (PYTEST_XDIST_AUTO_NUM_WORKERS,
    where set, decides instead)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return max(1, min(MAX_WORKERS, available_cores()))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def copy_params(model):
    """Independent copies of a model's (weights, biases), for the NumPy reference."""
    return [w.copy() for w in model.weights], [b.copy() for b in model.biases]


@njit
def softplus(z):
    """A user-defined activation for the tests: log(1 + e^z) ..."""
    return np.log1p(np.exp(z))


@njit
def softplus_prime(z):
    """... and its derivative, the sigmoid."""
    return 1.0 / (1.0 + np.exp(-z))
