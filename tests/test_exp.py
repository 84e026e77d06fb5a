"""The branch-free exp and expm1, and the sigmoid and tanh built on them, against NumPy."""
import numpy as np
import pytest
from numba import njit

from fastbp import kernels
from fastbp.activations import SIGMOID, TANH
from fastbp.kernels import exp_branch_free, expm1_branch_free


@njit
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_branch_free(x[i])


@njit
def _expm1_all(x, out):
    for i in range(x.shape[0]):
        out[i] = expm1_branch_free(x[i])


def _ulps(got, want):
    return np.abs(got - want) / np.spacing(np.abs(want))


def test_exp_within_two_ulps_of_numpy_where_normal():
    x = np.concatenate([np.linspace(-708, 709.78, 200_001), np.random.default_rng(0).normal(0, 5, 100_000),
                        [0.0, -0.0, 1e-300, -1e-300, np.log(2.0), 709.782712893384, np.nextafter(-708.0, 0)]])
    got = np.empty_like(x)
    _exp_all(x, got)
    assert _ulps(got, np.exp(x)).max() <= 2


def test_exp_special_values():
    x = np.array([np.nan, np.inf, 709.783, 1e308, -np.inf, -1e308, -745.2, -708.5, -708.0])
    got = np.empty_like(x)
    _exp_all(x, got)
    assert np.isnan(got[0])
    assert np.all(got[1:4] == np.inf)
    # Below -708 the result stays at exp(-708), a normal number, where exp itself is subnormal or 0.
    assert np.all(got[4:] == got[-1])
    assert _ulps(got[-1:], np.exp(x[-1:]))[0] <= 2


@pytest.mark.parametrize("dtype, max_ulps", [(np.float64, 4), (np.float32, 2)])
def test_sigmoid_matches_numpy(dtype, max_ulps):
    z = np.concatenate([np.linspace(-800, 800, 20_001), np.linspace(-40, 40, 20_001),
                        [np.nan, np.inf, -np.inf, 0.0, -0.0, 710.0, -710.0, 746.0, -746.0]]).astype(dtype)
    z = z[:z.size // 10 * 10].reshape(-1, 10)
    a = np.empty_like(z)
    kernels.activate(SIGMOID, z, a)
    with np.errstate(over="ignore"):  # the reference in float64 for both (float32's own exp is 1 ulp off)
        want = (1 / (1 + np.exp(-z.astype(np.float64)))).astype(dtype)
    assert np.array_equal(np.isnan(a), np.isnan(want))
    assert a.dtype == dtype
    normal = want >= np.finfo(dtype).tiny
    assert np.all(_ulps(a[normal], want[normal]) <= max_ulps)
    # Where the sigmoid is below the smallest normal number (z < -708 or so), 0 or a subnormal number.
    below = ~normal & ~np.isnan(want)
    assert below.any() and np.all(a[below] < np.finfo(dtype).tiny)


def test_sigmoid_of_a_column_range_leaves_the_other_units():
    z = np.random.default_rng(1).normal(size=(3, 9))
    a = np.full_like(z, -1.0)
    kernels.activate_units(SIGMOID, z, a, 2, 7)
    assert np.all(a[:, :2] == -1.0) and np.all(a[:, 7:] == -1.0)
    np.testing.assert_allclose(a[:, 2:7], 1 / (1 + np.exp(-z[:, 2:7])), rtol=1e-15)


def test_expm1_within_two_ulps_of_numpy_also_near_zero():
    tiny = np.geomspace(1e-300, 1.0, 20_001)
    x = np.concatenate([np.linspace(-708, 709.78, 200_001), tiny, -tiny, [709.782712893384, 0.5 * np.log(2.0)]])
    got = np.empty_like(x)
    _expm1_all(x, got)
    assert _ulps(got, np.expm1(x)).max() <= 2


def test_expm1_special_values():
    x = np.array([0.0, -0.0, np.nan, np.inf, 709.79, -np.inf, -800.0])
    got = np.empty_like(x)
    _expm1_all(x, got)
    assert got[0] == 0 and not np.signbit(got[0]) and got[1] == 0 and np.signbit(got[1])
    assert np.isnan(got[2]) and np.all(got[3:5] == np.inf) and np.all(got[5:] == -1.0)


@pytest.mark.parametrize("dtype, max_ulps", [(np.float64, 4), (np.float32, 1)])
def test_tanh_matches_numpy(dtype, max_ulps):
    tiny = np.geomspace(np.finfo(dtype).tiny, 1.0, 5_001)
    z = np.concatenate([np.linspace(-40, 40, 40_001), tiny, -tiny,
                        [np.nan, np.inf, -np.inf, 0.0, -0.0, 800.0, -800.0]]).astype(dtype)
    z = z[:z.size // 10 * 10].reshape(-1, 10)
    a = np.empty_like(z)
    kernels.activate(TANH, z, a)
    want = np.tanh(z.astype(np.float64)).astype(dtype)
    assert a.dtype == dtype
    assert np.array_equal(np.isnan(a), np.isnan(want))
    finite = ~np.isnan(want)
    assert np.all(_ulps(a[finite], want[finite]) <= max_ulps)
    assert np.array_equal(np.signbit(a[finite]), np.signbit(want[finite]))  # -0.0 stays -0.0
