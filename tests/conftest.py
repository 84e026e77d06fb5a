"""Shared fixtures and the tolerances every test uses."""
import numpy as np
import pytest
from numba import njit

# Same arithmetic in a different order (kernels vs NumPy/BLAS): float64 rounding only.
F64_ATOL = 1e-12
# float32 kernels against the float64 NumPy reference, relative to the values' scale.
F32_RTOL = 2e-4
# Backprop against central finite differences, float64 (max relative error).
FD_RTOL = 1e-7


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
