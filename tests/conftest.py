"""Shared fixtures and the tolerances every test uses."""
import numpy as np
import pytest

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
