"""Kernels for the small layers above the first: eq. 25, BP2 and BP4 where a layer has at most 32 inputs and its
weights fit in L1 (``small_layer``), such as the book's ``[784, 30, 10]`` layer 2.

There the row-major tiles of ``kernels`` spend most of their time outside the arithmetic: a pass over 30 inputs
costs about what a pass over 64 does (runtime checks that the rows do not overlap, sums ended across vector lanes
per tile, remainder loops). These kernels walk rows in blocks of four vectors of SMALL_LANES values (``simd``;
masked, so nothing past a row is read or written), four independent chains of FMAs, and leave the rest to the
CPU's reordering:
* ``small_forward``: Z[x, j] = sum_k W[j, k] A[x, k] + b[j], running sums per lane, then ``vsum``;
* ``small_backprop``: D[x, k] = sum_j W[j, k] Dn[x, j], a chain of FMAs over j in order;
* ``small_bp34``: W[j] = beta_w W[j] + sum_x (scale delta[x, j]) A[x], a chain of FMAs over x in order.
At the book's m = 10 (one core, in cache) they took 0.5-0.6, 0.17-0.18 and 0.25-0.26 us against 0.79, 0.46 and
0.79 us on a Xeon; ``small_forward`` has since taken a fifth of its time (on a Zen 4, 0.10-0.14 us against
0.52-0.72 for 5 examples).
Each value depends only on its own row, example and unit, never on how a caller cuts the examples or the units,
so every path that uses them gets the same bits. W (n_out, n_in), A and D (m, n_in), Z and delta (m, n_out),
b (n_out,): C-contiguous, one float type.
"""
from numba import njit

from .simd import vadd, vfma, vload_first, vmul, vsplat, vstore_first, vsum, vzero

SMALL_LANES = 8  # values per vector: one 512-bit register of float64, half of one of float32
SMALL_LAYER_BYTES = 16 * 1024  # weights up to this size take these kernels (a third of a 48 KiB L1)
SMALL_BLOCK = 4 * SMALL_LANES  # values of a row per pass: four vectors, four independent chains of FMAs


@njit(cache=True)
def small_layer(W):
    """Whether the weights W (n_out, n_in) of a layer above the first take this module's kernels: at most
    SMALL_BLOCK inputs and SMALL_LAYER_BYTES of weights. (With 128 inputs and 64 examples, eq. 25 ran 2.5x and
    BP4 1.3x slower here than in the row-major tiles, which reuse each load across units and examples.)"""
    return W.shape[1] <= SMALL_BLOCK and W.size * W.itemsize <= SMALL_LAYER_BYTES


@njit(cache=True)
def _count(n_in, k):
    """How many of a row's n_in values a vector that starts at k holds (0 past the row)."""
    return max(0, min(SMALL_LANES, n_in - k))


@njit(cache=True)
def _weights_vector(W, j, k, n, beta_w):
    """beta_w W[j, k:k + n] as a Vec (lanes n and above zero); beta_w = 0 gives zeros, even for weights that are
    not finite."""
    w = vload_first(W, j, k, n, SMALL_LANES)
    return vzero(W, SMALL_LANES) if beta_w == 0 else (w if beta_w == 1 else vmul(vsplat(beta_w, w), w))


@njit(cache=True)
def _block_counts(n_in, k):
    """How many values each of the four vectors of the block at k of a row of n_in holds (``_count``)."""
    return (_count(n_in, k), _count(n_in, k + SMALL_LANES), _count(n_in, k + 2 * SMALL_LANES),
            _count(n_in, k + 3 * SMALL_LANES))


@njit(cache=True)
def _load_block(M, i, k, n):
    """M[i, k:k + SMALL_BLOCK] as four Vecs, masked to the counts n (``_block_counts``)."""
    return (vload_first(M, i, k, n[0], SMALL_LANES), vload_first(M, i, k + SMALL_LANES, n[1], SMALL_LANES),
            vload_first(M, i, k + 2 * SMALL_LANES, n[2], SMALL_LANES),
            vload_first(M, i, k + 3 * SMALL_LANES, n[3], SMALL_LANES))


@njit(cache=True)
def _products(W, j, k, n, a, s):
    """The four running sums s, each plus W[j]'s part of the block at k times a's (four Vecs): an FMA per lane."""
    w = _load_block(W, j, k, n)
    return vfma(w[0], a[0], s[0]), vfma(w[1], a[1], s[1]), vfma(w[2], a[2], s[2]), vfma(w[3], a[3], s[3])


@njit(cache=True)
def small_forward(W, b, A, Z, x0, x1):
    """Eq. 25's z for examples x0 <= x < x1: Z[x, j] = sum_k W[j, k] A[x, k] + b[j]: four vectors of running
    sums per lane over the row's blocks, added (0 + 1) + (2 + 3), then ``vsum``. An example's first block (its
    whole row in a ``small_layer``) is loaded once for all units, and its counts once per call: loaded and
    counted per unit, as before, eq. 25 took 4.4-5.1x as long on the book's layer 2 (10 units, 30 inputs, 5
    examples; one Zen 4 core, in cache). (Full vectors loaded unmasked before a masked last one ran 6x slower.)"""
    n_in = W.shape[1]
    n = _block_counts(n_in, 0)
    zero = vzero(W, SMALL_LANES)
    for x in range(x0, x1):
        a = _load_block(A, x, 0, n)
        for j in range(W.shape[0]):
            s = _products(W, j, 0, n, a, (zero, zero, zero, zero))
            for k in range(SMALL_BLOCK, n_in, SMALL_BLOCK):  # rows longer than a small layer's
                nk = _block_counts(n_in, k)
                s = _products(W, j, k, nk, _load_block(A, x, k, nk), s)
            Z[x, j] = vsum(vadd(vadd(s[0], s[1]), vadd(s[2], s[3]))) + b[j]


@njit(cache=True)
def _fma_block(d, M, i, k, n, s):
    """The block's four Vecs s, each plus d times its part of M[i, k:k + SMALL_BLOCK] (masked to the counts n)."""
    return (vfma(d, vload_first(M, i, k, n[0], SMALL_LANES), s[0]),
            vfma(d, vload_first(M, i, k + SMALL_LANES, n[1], SMALL_LANES), s[1]),
            vfma(d, vload_first(M, i, k + 2 * SMALL_LANES, n[2], SMALL_LANES), s[2]),
            vfma(d, vload_first(M, i, k + 3 * SMALL_LANES, n[3], SMALL_LANES), s[3]))


@njit(cache=True)
def _store_block(M, i, k, n, s):
    """M[i, k:k + SMALL_BLOCK] = the block's four Vecs s, masked to the counts n."""
    vstore_first(M, i, k, s[0], n[0])
    vstore_first(M, i, k + SMALL_LANES, s[1], n[1])
    vstore_first(M, i, k + 2 * SMALL_LANES, s[2], n[2])
    vstore_first(M, i, k + 3 * SMALL_LANES, s[3], n[3])


@njit(cache=True)
def small_backprop(W, Dn, D, x0, x1):
    """BP2 before the sigma' factor for examples x0 <= x < x1: D[x, k] = sum_j W[j, k] Dn[x, j], four vectors
    of a row at a time."""
    n_in = W.shape[1]
    for x in range(x0, x1):
        for k in range(0, n_in, SMALL_BLOCK):
            n = _block_counts(n_in, k)
            zero = vzero(W, SMALL_LANES)
            s = (zero, zero, zero, zero)
            for j in range(W.shape[0]):
                s = _fma_block(vsplat(Dn[x, j], zero), W, j, k, n, s)
            _store_block(D, x, k, n, s)


@njit(cache=True)
def small_bp34(delta, A, scale, beta_w, W, j0, j1):
    """BP4 summed over the batch for rows j0 <= j < j1: W[j] = beta_w W[j] + sum_x (scale delta[x, j]) A[x]
    (the SGD update itself with scale = -eta/m, beta_w = 1 - eta lmbda/n), four vectors of a row at a time.
    BP3 is ``kernels.bias_step``."""
    n_in = W.shape[1]
    sc = W.dtype.type(scale)
    for j in range(j0, j1):
        for k in range(0, n_in, SMALL_BLOCK):
            n = _block_counts(n_in, k)
            s = (_weights_vector(W, j, k, n[0], beta_w), _weights_vector(W, j, k + SMALL_LANES, n[1], beta_w),
                 _weights_vector(W, j, k + 2 * SMALL_LANES, n[2], beta_w),
                 _weights_vector(W, j, k + 3 * SMALL_LANES, n[3], beta_w))
            for x in range(delta.shape[0]):
                s = _fma_block(vsplat(sc * delta[x, j], s[0]), A, x, k, n, s)
            _store_block(W, j, k, n, s)
