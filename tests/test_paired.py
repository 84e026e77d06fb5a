"""Layer 1's kernels for tiles of 30 float64 units in pairs of rows (fastbp.paired): the layout against its
definition, the sums against NumPy, the update against transposed.update_weights bit for bit, and bits that do not
depend on how the examples are cut into tiles."""
import numpy as np
import pytest

from fastbp import paired as P
from fastbp import transposed as T

N_OUT = 30


def _paired_weights(rng, n_in, h, n_out=N_OUT):
    """W (n_out, n_in) and its transposed copy laid out in pairs of rows from 0 and from h."""
    W = rng.standard_normal((n_out, n_in))
    WT = T.transposed_weights(W)
    P.pair_rows(WT, n_out, h)
    return W, WT


def test_pairs_of_rows_hold_units_24_to_29_interleaved(rng):
    n_in, h = 9, 4  # halves of 4 and 5 rows: pairs (0, 1), (2, 3), (4, 5), (6, 7) and row 8 alone
    W, WT = _paired_weights(rng, n_in, h)
    for k in (0, 2, 4, 6):
        np.testing.assert_array_equal(WT[k, :24], W[:24, k])
        np.testing.assert_array_equal(WT[k + 1, :24], W[:24, k + 1])
        np.testing.assert_array_equal(WT[k, 24:32], np.ravel([[W[j, k], W[j, k + 1]] for j in range(24, 28)]))
        np.testing.assert_array_equal(WT[k + 1, 24:28], np.ravel([[W[j, k], W[j, k + 1]] for j in (28, 29)]))
        assert not WT[k + 1, 28:].any()
    np.testing.assert_array_equal(WT[8, :30], W[:, 8])
    assert not WT[8, 30:].any()
    P.unpair_rows(WT, N_OUT, h)
    np.testing.assert_array_equal(WT, T.transposed_weights(W))


def test_only_tiles_of_30_float64_units_pair_their_rows():
    def tiles(n_out, dtype):
        WT = np.zeros((4, T.padded_units(n_out)), dtype)
        return [bool(P.pairs_rows(WT, n_out, u0)) for u0 in range(0, WT.shape[1], T.LANES)]
    assert tiles(30, np.float64) == [True]
    assert tiles(62, np.float64) == [False, True]
    assert tiles(94, np.float64) == [False, False, True]
    assert tiles(31, np.float64) == tiles(29, np.float64) == [False]
    assert tiles(30, np.float32) == [False]


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 7, 10, 13])
@pytest.mark.parametrize("n_in, h", [(784, 392), (67, 32), (3, 1), (1, 0)])
def test_paired_sums_are_the_matrix_product(rng, m, n_in, h):
    """Both halves (odd ones end with a lone row), several blocks of inputs (K_BLOCK), tiles of 3, 2 and 1."""
    W, WT = _paired_weights(rng, n_in, h)
    A = rng.random((m + 5, n_in))
    rows = rng.permutation(m + 5)[:m]
    for k0, k1 in ((0, h), (h, n_in)):
        H = np.full((m, 32), np.nan)
        P.cell_sums(WT, A, rows, H, k0, k1, 0, N_OUT)
        expected = A[rows, k0:k1] @ W[:, k0:k1].T
        np.testing.assert_allclose(H[:, :N_OUT], expected, rtol=1e-12, atol=1e-12 * n_in)


def test_an_examples_paired_sums_do_not_depend_on_its_tile(rng):
    m, n_in, h = 13, 151, 64
    _, WT = _paired_weights(rng, n_in, h)
    A = rng.standard_normal((m, n_in))
    rows = np.arange(m)

    def sums(x0, x1):
        H = np.empty((x1 - x0, 32))
        P.paired_sums(WT, A, rows[x0:x1], H, h, n_in, 0)
        return H[:, :N_OUT]

    whole = sums(0, m)
    for cuts in ([0, 1, m], [0, 3, 9, m], [0, 4, 6, m], list(range(m + 1))):
        np.testing.assert_array_equal(np.concatenate([sums(a, b) for a, b in zip(cuts[:-1], cuts[1:])]), whole)


@pytest.mark.parametrize("beta", [1.0, 0.99, 0.0])
@pytest.mark.parametrize("m", [1, 6, 10, 23])
@pytest.mark.parametrize("n_in, h", [(784, 392), (67, 32)])
def test_paired_update_has_the_bits_of_the_transposed_update(rng, beta, m, n_in, h):
    """BP4 with each weight's FMAs over the examples in order, as transposed.update_weights adds them; asking for
    the next rows (ahead) as it goes leaves the values alone."""
    W, WT = _paired_weights(rng, n_in, h)
    plain = T.transposed_weights(W)
    if beta == 0:
        WT[3, 5] = plain[3, 5] = np.inf  # overwritten, not multiplied by zero
    A = rng.random((m + 2, n_in))
    rows = rng.permutation(m + 2)[:m]
    D = np.full((m, 32), np.nan)
    T.scaled_deltas(rng.standard_normal((m, N_OUT)), -0.3, D)
    ahead = rng.permutation(m + 2)[:3]
    for k0, k1 in ((0, h), (h, n_in)):
        P.cell_update(WT, A, rows, D, k0, k1, 0, beta, A, ahead, N_OUT)
        T.update_weights(plain, A, rows, D, k0, k1, 0, beta, A, ahead)
    P.unpair_rows(WT, N_OUT, h)
    np.testing.assert_array_equal(WT, plain)
    expected = beta * W + D[:, :N_OUT].T @ A[rows]
    out = np.empty_like(W)
    T.untranspose(WT, out)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * m)
