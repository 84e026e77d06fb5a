"""The kernels of small layers above the first (fastbp.small_layers): values against NumPy, rows and units outside
the asked range left alone, masked vectors that neither read nor write past a row, and bits that do not depend on
how the examples or the units are cut."""
import numpy as np
import pytest

from fastbp import small_layers as S
from fastbp.small_layers import SMALL_LANES

TOL = {"float64": 1e-12, "float32": 2e-5}
SHAPES = [(10, 30), (3, 5), (13, SMALL_LANES), (4, 2 * SMALL_LANES + 1), (1, 1), (7, 64)]  # (n_out, n_in)


def _problem(rng, dtype, n_out, n_in, m):
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    return W, rng.standard_normal(n_out).astype(dtype), rng.random((m, n_in)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_out, n_in", SHAPES)
def test_small_forward_is_eq_25_on_the_asked_examples(rng, dtype, n_out, n_in):
    m = 9
    W, b, A = _problem(rng, dtype, n_out, n_in, m)
    Z = np.full((m, n_out), np.nan, dtype)
    S.small_forward(W, b, A, Z, 2, 7)
    expected = A[2:7].astype(np.float64) @ W.T.astype(np.float64) + b
    np.testing.assert_allclose(Z[2:7], expected, rtol=TOL[dtype], atol=TOL[dtype] * n_in)
    assert np.isnan(Z[:2]).all() and np.isnan(Z[7:]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_out, n_in", SHAPES)
def test_small_backprop_is_bp2_on_the_asked_examples(rng, dtype, n_out, n_in):
    m = 6
    W, _, _ = _problem(rng, dtype, n_out, n_in, m)
    Dn = rng.standard_normal((m, n_out)).astype(dtype)
    D = np.full((m, n_in), np.nan, dtype)
    S.small_backprop(W, Dn, D, 1, 5)
    np.testing.assert_allclose(D[1:5], Dn[1:5].astype(np.float64) @ W.astype(np.float64), rtol=TOL[dtype],
                               atol=TOL[dtype] * n_out)
    assert np.isnan(D[0]).all() and np.isnan(D[5]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_out, n_in", SHAPES)
@pytest.mark.parametrize("beta", [1.0, 0.97, 0.0])
def test_small_bp34_is_bp4_on_the_asked_units(rng, dtype, n_out, n_in, beta):
    m = 7
    W, _, A = _problem(rng, dtype, n_out, n_in, m)
    delta = rng.standard_normal((m, n_out)).astype(dtype)
    if beta == 0:
        W[0, 0] = np.inf  # overwritten, not multiplied by zero
    j0, j1 = (n_out > 2), n_out - (n_out > 3)
    out = W.copy()
    S.small_bp34(delta, A, -0.3, beta, out, j0, j1)
    kept = np.where(np.isfinite(W), W, 0).astype(np.float64) if beta == 0 else W.astype(np.float64)
    expected = beta * kept - 0.3 * delta.T.astype(np.float64) @ A.astype(np.float64)
    np.testing.assert_allclose(out[j0:j1], expected[j0:j1], rtol=TOL[dtype], atol=TOL[dtype] * m)
    np.testing.assert_array_equal(out[:j0], W[:j0])
    np.testing.assert_array_equal(out[j1:], W[j1:])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_masked_vectors_stay_inside_their_rows(rng, dtype):
    """The last vector of a row is masked: the row's neighbours in the same buffer are neither used nor changed,
    even when they are not finite."""
    n_out, n_in, m = 3, SMALL_LANES + 3, 4
    W, b, A = _problem(rng, dtype, n_out, n_in, m)
    # the matrices at the start of buffers that go on with 7s (weights, deltas) or NaNs (inputs)
    Wflat = np.concatenate([W.ravel(), np.full(SMALL_LANES, 7.0, dtype)])
    Aflat = np.concatenate([A.ravel(), np.full(SMALL_LANES, np.nan, dtype)])
    Wv, Av = Wflat[:W.size].reshape(W.shape), Aflat[:A.size].reshape(A.shape)
    Z = np.empty((m, n_out), dtype)
    S.small_forward(Wv, b, Av, Z, 0, m)
    assert np.isfinite(Z).all()
    Dflat = np.full(m * n_in + SMALL_LANES, 7.0, dtype)
    S.small_backprop(Wv, rng.standard_normal((m, n_out)).astype(dtype), Dflat[:m * n_in].reshape(m, n_in), 0, m)
    assert np.isfinite(Dflat).all() and (Dflat[m * n_in:] == 7.0).all()
    S.small_bp34(rng.standard_normal((m, n_out)).astype(dtype), Av, -0.1, 1.0, Wv, 0, n_out)
    assert np.isfinite(Wv).all() and (Wflat[W.size:] == 7.0).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bits_do_not_depend_on_the_cuts(rng, dtype):
    """Shares of examples (forward, BP2) and of units (BP4) give the bits of the whole."""
    n_out, n_in, m = 10, 30, 10
    W, b, A = _problem(rng, dtype, n_out, n_in, m)
    Dn = rng.standard_normal((m, n_out)).astype(dtype)
    Z, Zc = np.empty((m, n_out), dtype), np.empty((m, n_out), dtype)
    D, Dc = np.empty((m, n_in), dtype), np.empty((m, n_in), dtype)
    S.small_forward(W, b, A, Z, 0, m)
    S.small_backprop(W, Dn, D, 0, m)
    for x0, x1 in ((0, 3), (3, 4), (4, m)):
        S.small_forward(W, b, A, Zc, x0, x1)
        S.small_backprop(W, Dn, Dc, x0, x1)
    np.testing.assert_array_equal(Zc, Z)
    np.testing.assert_array_equal(Dc, D)
    Wa, Wb = W.copy(), W.copy()
    S.small_bp34(Dn, A, -0.2, 1.0, Wa, 0, n_out)
    for j0, j1 in ((0, 4), (4, 5), (5, n_out)):
        S.small_bp34(Dn, A, -0.2, 1.0, Wb, j0, j1)
    np.testing.assert_array_equal(Wb, Wa)
