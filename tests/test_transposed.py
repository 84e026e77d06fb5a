"""Layer 1's kernels over transposed weights (fastbp.transposed): values against NumPy, and bits that do not depend
on how the examples, units or inputs are cut into tiles."""
import numpy as np
import pytest

from fastbp import transposed as T
from fastbp.transposed import LANES

TOL = {"float64": 1e-12, "float32": 2e-5}


def _weights(rng, n_in, n_out, dtype):
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    return W, T.transposed_weights(W)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("m", [1, 4, 5, 7, 12])
def test_input_sums_are_the_matrix_product(rng, dtype, m):
    n_in, n_out = 67, 40  # two tiles of units, the second one mostly padding
    W, WT = _weights(rng, n_in, n_out, dtype)
    A = rng.random((m + 5, n_in)).astype(dtype)
    rows = rng.permutation(m + 5)[:m]
    for k0, k1 in ((0, n_in), (0, 32), (32, n_in), (10, 10)):
        H = np.full((m, WT.shape[1]), np.nan, dtype)
        for u0 in range(0, WT.shape[1], LANES):
            T.input_sums(WT, A, rows, H, k0, k1, u0)
        expected = A[rows, k0:k1].astype(np.float64) @ W[:, k0:k1].T.astype(np.float64)
        np.testing.assert_allclose(H[:, :n_out], expected, rtol=TOL[dtype], atol=TOL[dtype] * n_in)
        assert not H[:, n_out:].any()  # the padded units sum zeros


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_examples_sums_do_not_depend_on_its_tile(rng, dtype):
    """Examples go through tiles of five, the rest one by one: each example's sums must have the same bits
    wherever it falls."""
    m, n_in = 13, 50
    _, WT = _weights(rng, n_in, 30, dtype)
    A = rng.standard_normal((m, n_in)).astype(dtype)
    rows = np.arange(m)

    def sums(x0, x1):
        H = np.empty((x1 - x0, WT.shape[1]), dtype)
        T.input_sums(WT, A, rows[x0:x1], H, 0, n_in, 0)
        return H

    whole = sums(0, m)
    for cuts in ([0, 1, m], [0, 3, 9, m], list(range(m + 1))):
        np.testing.assert_array_equal(np.concatenate([sums(a, b) for a, b in zip(cuts[:-1], cuts[1:])]), whole)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta", [1.0, 0.99, 0.0])
@pytest.mark.parametrize("m", [1, 6, 10, 23])
@pytest.mark.parametrize("n_ahead", [0, 3])
def test_update_weights_is_bp4(rng, dtype, beta, m, n_ahead):
    """BP4 against NumPy; asking for the rows of the next batch (``ahead``) as it goes leaves the values alone."""
    n_in, n_out = 45, 33
    W, WT = _weights(rng, n_in, n_out, dtype)
    if beta == 0:
        WT[3, 5] = np.inf  # overwritten, not multiplied by zero
    A = rng.random((m + 2, n_in)).astype(dtype)
    rows = rng.permutation(m + 2)[:m]
    delta = rng.standard_normal((m, n_out)).astype(dtype)
    D = np.full((m, WT.shape[1]), np.nan, dtype)
    T.scaled_deltas(delta, -0.3, D)
    assert not D[:, n_out:].any()
    for u0 in range(0, WT.shape[1], LANES):
        T.update_weights(WT, A, rows, D, 0, n_in, u0, beta, A, rng.permutation(m + 2)[:n_ahead])
    expected = beta * W.astype(np.float64) - 0.3 * delta.T.astype(np.float64) @ A[rows].astype(np.float64)
    out = np.empty_like(W)
    T.untranspose(WT, out)
    np.testing.assert_allclose(out, expected, rtol=TOL[dtype], atol=TOL[dtype] * m)
    assert not WT[:, n_out:].any()  # the padded units stay zero


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_weights_update_does_not_depend_on_how_the_examples_are_tiled(rng, dtype):
    """The update adds the examples one after the other, whatever tiles (ten, then one by one) take them: the
    batch in one call and the same batch in several calls, in order, give the same bits: over blocks of
    K_BLOCK inputs (more than ten examples) as over all the inputs in one block (up to ten)."""
    m, n_in = 27, 2 * T.K_BLOCK + 22
    _, WT = _weights(rng, n_in, 20, dtype)
    A = rng.standard_normal((m, n_in)).astype(dtype)
    D = rng.standard_normal((m, WT.shape[1])).astype(dtype)
    rows = rng.permutation(m)
    whole = WT.copy()
    T.update_weights(whole, A, rows, D, 0, n_in, 0, 0.9, A, rows[:0])
    for cuts in ([0, 1, m], [0, 10, 12, m], [0, 9, 19, m]):
        parts = WT.copy()
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            T.update_weights(parts, A, rows[a:b], D[a:b], 0, n_in, 0, 0.9 if i == 0 else 1.0, A, rows[:0])
        np.testing.assert_array_equal(parts, whole)
    assert not np.array_equal(whole, WT)


def test_an_update_of_up_to_one_tile_of_examples_takes_its_inputs_in_one_block():
    assert T.update_block(10, 0, 392, 10) == 392
    assert T.update_block(7, 0, 392, 10) == 392  # tiles of five and two, each over all of the inputs
    assert T.update_block(10, 392, 784, 10) == 392
    assert T.update_block(1, 7, 8, 10) == 1
    assert T.update_block(3, 5, 5, 10) == 1  # no inputs: still a valid step
    assert T.update_block(11, 0, 392, 10) == T.K_BLOCK


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scaled_deltas_leave_out_subnormal_products(dtype):
    """A subnormal operand slows a vector FMA some 60-fold, so scaled_deltas writes 0 for products under the
    smallest normal number, and keeps those at or above it."""
    tiny = np.finfo(dtype).tiny
    delta = np.array([[tiny / 4, -tiny / 3, tiny, -1.5, 0.0]], dtype)
    D = np.full((1, 32), np.nan, dtype)
    T.scaled_deltas(delta, 1.0, D)
    np.testing.assert_array_equal(D[0, :5], np.array([0, 0, tiny, -1.5, 0], dtype))
    assert not D[0, 5:].any()
    T.scaled_deltas(delta, 0.5, D)
    np.testing.assert_array_equal(D[0, :5], np.array([0, 0, 0, -0.75, 0], dtype))


def test_staged_rows_are_exact_float_copies(rng):
    X = rng.integers(0, 256, (9, 70), dtype=np.uint8)
    rows = np.array([4, 0, 8])
    for dtype in (np.float64, np.float32):
        S = np.full((3, 80), -1.0, dtype)
        T.stage_rows(X, rows, 10, 70, S)
        np.testing.assert_array_equal(S[:, 10:70], X[rows, 10:].astype(dtype))
        assert (S[:, :10] == -1).all() and (S[:, 70:] == -1).all()


def test_units_pad_to_whole_tiles():
    assert [T.padded_units(n) for n in (1, 30, 32, 33, 256)] == [32, 32, 32, 64, 256]
