"""Kernels for the small layers above the first: eq. 25, BP2 and BP3/BP4 where a layer's weights fit in L1
(``small_layer``), such as the book's ``[784, 30, 10]`` layer 2.

There the row-major tiles of ``kernels`` spend most of their time outside the arithmetic: a pass over 30 inputs
costs about what a pass over 64 does (runtime checks that the rows do not overlap, sums ended across vector lanes
per tile, remainder loops). These kernels walk whole rows in vectors of SMALL_LANES values (``simd``; the last one
masked, so nothing past a row is read or written) and leave the rest to the CPU's reordering:
* ``small_forward``: Z[x, j] = sum_k W[j, k] A[x, k] + b[j], a chain of FMAs per lane over the row's vectors,
  then ``vsum``;
* ``small_backprop``: D[x, k] = sum_j W[j, k] Dn[x, j], a chain of FMAs over j in order;
* ``small_bp34``: W[j] = beta_w W[j] + sum_x (scale delta[x, j]) A[x], a chain of FMAs over x in order.
Each value depends only on its own row, example and unit, never on how a caller cuts the examples or the units,
so every path that uses them gets the same bits. W (n_out, n_in), A and D (m, n_in), Z and delta (m, n_out),
b (n_out,): C-contiguous, one float type.
"""
from numba import njit

from .simd import vfma, vload_first, vmul, vsplat, vstore_first, vsum, vzero

SMALL_LANES = 8  # values per vector: one 512-bit register of float64, half of one of float32
SMALL_LAYER_BYTES = 16 * 1024  # weights up to this size take these kernels (a third of a 48 KiB L1)


@njit(cache=True)
def small_layer(W):
    """Whether the weights W (n_out, n_in) of a layer above the first take this module's kernels."""
    return W.size * W.itemsize <= SMALL_LAYER_BYTES


@njit(cache=True)
def _row_dot(W, j, A, x):
    """sum_k W[j, k] A[x, k] as SMALL_LANES running sums over the row's vectors (the last one masked), then
    ``vsum``. (Full vectors loaded unmasked with a masked last one after them ran 6x slower.)"""
    n_in = W.shape[1]
    s = vzero(W, SMALL_LANES)
    for k in range(0, n_in, SMALL_LANES):
        n = min(SMALL_LANES, n_in - k)
        s = vfma(vload_first(W, j, k, n, SMALL_LANES), vload_first(A, x, k, n, SMALL_LANES), s)
    return vsum(s)


@njit(cache=True)
def small_forward(W, b, A, Z, x0, x1):
    """Eq. 25's z for examples x0 <= x < x1: Z[x, j] = sum_k W[j, k] A[x, k] + b[j]."""
    for x in range(x0, x1):
        for j in range(W.shape[0]):
            Z[x, j] = _row_dot(W, j, A, x) + b[j]


@njit(cache=True)
def _backprop_vector(W, Dn, x, k, n):
    """sum_j W[j, k:k + n] Dn[x, j] as a Vec (lanes n and above zero)."""
    s = vzero(W, SMALL_LANES)
    for j in range(W.shape[0]):
        s = vfma(vsplat(Dn[x, j], s), vload_first(W, j, k, n, SMALL_LANES), s)
    return s


@njit(cache=True)
def small_backprop(W, Dn, D, x0, x1):
    """BP2 before the sigma' factor for examples x0 <= x < x1: D[x, k] = sum_j W[j, k] Dn[x, j]."""
    n_in = W.shape[1]
    for x in range(x0, x1):
        for k in range(0, n_in, SMALL_LANES):
            n = min(SMALL_LANES, n_in - k)
            vstore_first(D, x, k, _backprop_vector(W, Dn, x, k, n), n)


@njit(cache=True)
def _updated_vector(W, j, k, n, delta, A, s, beta_w):
    """beta_w W[j, k:k + n] + sum_x (s delta[x, j]) A[x, k:k + n] as a Vec (lanes n and above zero); beta_w = 0
    drops W, even where it is not finite."""
    w = vload_first(W, j, k, n, SMALL_LANES)
    acc = vzero(W, SMALL_LANES) if beta_w == 0 else (w if beta_w == 1 else vmul(vsplat(beta_w, w), w))
    for x in range(delta.shape[0]):
        acc = vfma(vsplat(s * delta[x, j], acc), vload_first(A, x, k, n, SMALL_LANES), acc)
    return acc


@njit(cache=True)
def small_bp34(delta, A, scale, beta_w, W, j0, j1):
    """BP4 summed over the batch for rows j0 <= j < j1: W[j] = beta_w W[j] + sum_x (scale delta[x, j]) A[x]
    (the SGD update itself with scale = -eta/m, beta_w = 1 - eta lmbda/n). BP3 is ``kernels.bias_step``."""
    n_in = W.shape[1]
    s = W.dtype.type(scale)
    for j in range(j0, j1):
        for k in range(0, n_in, SMALL_LANES):
            n = min(SMALL_LANES, n_in - k)
            vstore_first(W, j, k, _updated_vector(W, j, k, n, delta, A, s, beta_w), n)
