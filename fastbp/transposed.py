"""Layer 1's training kernels over its weights transposed: ``WT (n_0, n_pad)``, ``WT[k, j] = w^1_{jk}``, one row
per input and the units padded with zeros to ``n_pad``, a multiple of LANES.

Eq. 25's sums and the BP4 update are then outer products over a register tile (``simd``): LANES units (four
512-bit registers of float64) times a few examples. Each input value, broadcast, serves a whole row of units,
and no sum is ever split across vector lanes. Each value is a chain of fused multiply-adds in a fixed order:
a sum over its inputs in order of k, an update over its examples in order of x. That order is the same however
the units, the inputs or the examples are cut into tiles, cells or threads, so every path gets the same bits.

On a 2-core Emerald Rapids Xeon (one core, everything in cache, 30 units of 392 inputs, 10 examples) the sums
ran at 63-79 GFLOP/s in float64 and 114-150 in float32 against 41-44 and 63-72 for the row-major 4-unit x
2-example tiles (``kernels.partial_input_units``), whose sums end across vector lanes; the update at 50-60 and
99-106 against 45 and 61. Integer inputs go through a float copy of the mini-batch's rows (``stage_rows``):
converted on the fly, each broadcast costs a conversion, and the sums ran at 43 and 59.
"""
import numpy as np
from numba import njit

from .simd import prefetch, vfma, vload, vmul, vsplat, vstore, vzero

LANES = 32  # units per register tile: 4 registers of 8 float64 or 2 of 16 float32 on AVX-512
SUMS_TILE = 5  # examples per tile of ``input_sums``: 5 x 4 running sums of 4 registers in float64
UPDATE_TILE = 10  # examples per tile of ``update_weights``; measured faster than 5 (3.7-4.2 against 4.7 us)
SMALLEST_NORMAL_FLOAT32 = float(np.finfo(np.float32).tiny)
SMALLEST_NORMAL_FLOAT64 = float(np.finfo(np.float64).tiny)
K_BLOCK = 64  # inputs per block: the tiles of all the examples pass over a block of WT's rows while it is in L1


@njit(cache=True)
def start(H, x, u0, first):
    """Where a running sum of ``input_sums`` starts: 0 in the first block of inputs, else H[x, u0:u0 + LANES]."""
    return vzero(H, 32) if first else vload(H, x, u0, 32)


@njit(cache=True)
def padded_units(n_out):
    """n_out rounded up to a whole number of LANES."""
    return (n_out + LANES - 1) // LANES * LANES


@njit(cache=True)
def aligned_matrix(n_rows, n_cols, like):
    """An uninitialised C-contiguous (n_rows, n_cols) array of ``like``'s dtype that starts a cache line."""
    per_line = max(1, 64 // like.itemsize)
    buf = np.empty(n_rows * n_cols + per_line, like.dtype)
    skip = (-buf.ctypes.data) % 64 // like.itemsize
    return buf[skip:skip + n_rows * n_cols].reshape(n_rows, n_cols)


@njit(cache=True)
def transposed_weights(W):
    """W (n_out, n_in) as a new, cache-line aligned WT (n_in, padded_units(n_out)), zeros in the padding."""
    n_out, n_in = W.shape
    WT = aligned_matrix(n_in, padded_units(n_out), W)
    for k in range(n_in):
        for j in range(n_out):
            WT[k, j] = W[j, k]
        for j in range(n_out, WT.shape[1]):
            WT[k, j] = 0
    return WT


@njit(cache=True)
def untranspose(WT, W):
    """W (n_out, n_in) = the weights in WT (n_in, n_pad); a row of WT at a time (by columns of WT, 2x as long on
    the book's layer 1)."""
    for k in range(W.shape[1]):
        wt = WT[k]
        for j in range(W.shape[0]):
            W[j, k] = wt[j]


@njit(cache=True)
def scaled_deltas(delta, s, D):
    """D[x, j] = s delta[x, j] for j < n_out, 0 in the padding and where that product is subnormal; delta (m, n_out),
    D (m, n_pad).

    A subnormal operand makes a vector FMA take a microcode assist: with one such delta among a tile's 32 units,
    ``update_weights`` ran 60x slower (1.4 against 86 us, float32, one core), and saturated sigmoid units give
    float32 such deltas (float32 trained at a third of its speed at m = 2 and 4). What is dropped, under the
    smallest normal number times an input, is below half an ulp of any weight larger than about 1e-31 (float32)."""
    c = D.dtype.type(s)
    smallest = D.dtype.type(SMALLEST_NORMAL_FLOAT32 if D.itemsize == 4 else SMALLEST_NORMAL_FLOAT64)
    for x in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            v = c * delta[x, j]
            D[x, j] = v if abs(v) >= smallest else 0
        for j in range(delta.shape[1], D.shape[1]):
            D[x, j] = 0


@njit(cache=True)
def stage_rows(X, rows, k0, k1, S):
    """S[x, k] = X[rows[x], k] as S's float type, for k0 <= k < k1; X (n, n_in), rows (m,), S (m, >= k1).

    Over a slice of each row, indexed from 0, which LLVM vectorises: indexed from k0 in the 2-D arrays, each
    index kept its check for negative values and the copy of 392 8-bit inputs of 10 rows took 3.1-3.3 us against
    0.12-0.22 (float32) and 0.36 (float64), on one core."""
    n = k1 - k0
    for x in range(rows.shape[0]):
        src, dst = X[rows[x], k0:k1], S[x, k0:k1]
        for k in range(n):
            dst[k] = src[k]


@njit(cache=True)
def input_sums(WT, A, rows, H, k0, k1, u0):
    """H[x, u] = sum_{k0 <= k < k1} A[rows[x], k] WT[k, u] for units u0 <= u < u0 + LANES and every x < m, each
    a chain of FMAs in order of k from 0. WT (n_in, n_pad), A (*, n_in) of WT's dtype, rows (m,), H (m, n_pad)."""
    m = rows.shape[0]
    if k1 <= k0:  # no inputs (half of a single one): the sums are 0
        for x in range(m):
            vstore(H, x, u0, vzero(H, 32))
    for kb in range(k0, k1, K_BLOCK):
        kb1, first = min(kb + K_BLOCK, k1), kb == k0
        x = 0
        while x + SUMS_TILE <= m:
            r0, r1, r2, r3, r4 = rows[x], rows[x + 1], rows[x + 2], rows[x + 3], rows[x + 4]
            c0, c1, c2, c3, c4 = (start(H, x, u0, first), start(H, x + 1, u0, first), start(H, x + 2, u0, first),
                                  start(H, x + 3, u0, first), start(H, x + 4, u0, first))
            for k in range(kb, kb1):
                w = vload(WT, k, u0, 32)
                c0 = vfma(vsplat(A[r0, k], w), w, c0)
                c1 = vfma(vsplat(A[r1, k], w), w, c1)
                c2 = vfma(vsplat(A[r2, k], w), w, c2)
                c3 = vfma(vsplat(A[r3, k], w), w, c3)
                c4 = vfma(vsplat(A[r4, k], w), w, c4)
            vstore(H, x, u0, c0)
            vstore(H, x + 1, u0, c1)
            vstore(H, x + 2, u0, c2)
            vstore(H, x + 3, u0, c3)
            vstore(H, x + 4, u0, c4)
            x += SUMS_TILE
        while x + 2 <= m:
            r0, r1 = rows[x], rows[x + 1]
            c0, c1 = start(H, x, u0, first), start(H, x + 1, u0, first)
            for k in range(kb, kb1):
                w = vload(WT, k, u0, 32)
                c0 = vfma(vsplat(A[r0, k], w), w, c0)
                c1 = vfma(vsplat(A[r1, k], w), w, c1)
            vstore(H, x, u0, c0)
            vstore(H, x + 1, u0, c1)
            x += 2
        if x < m:
            r0 = rows[x]
            c0 = start(H, x, u0, first)
            for k in range(kb, kb1):
                w = vload(WT, k, u0, 32)
                c0 = vfma(vsplat(A[r0, k], w), w, c0)
            vstore(H, x, u0, c0)


@njit(cache=True)
def add_five(w, A, k, r0, r1, r2, r3, r4, d0, d1, d2, d3, d4):
    """w + A[r0, k] d0 + ... + A[r4, k] d4, added in that order, an FMA each (one step of ``update_weights``)."""
    w = vfma(vsplat(A[r0, k], w), d0, w)
    w = vfma(vsplat(A[r1, k], w), d1, w)
    w = vfma(vsplat(A[r2, k], w), d2, w)
    w = vfma(vsplat(A[r3, k], w), d3, w)
    return vfma(vsplat(A[r4, k], w), d4, w)


@njit(cache=True)
def prefetch_column(X, ahead, k, k0):
    """Ask for the lines of X[ahead[i], k] (every i) where k starts one of the lines of the columns from k0."""
    if (k - k0) % max(1, 64 // X.itemsize) == 0:
        for i in range(ahead.shape[0]):
            prefetch(X, ahead[i], k)


@njit(cache=True)
def scale_rows(WT, k0, k1, u0, beta):
    """WT[k, u0:u0 + LANES] *= beta for k0 <= k < k1 (set to 0 where beta is 0, whatever they hold; nothing where
    beta is 1): the weight decay before BP4."""
    if beta != 1:
        b = vsplat(beta, vzero(WT, 32))
        for k in range(k0, k1):
            vstore(WT, k, u0, vmul(vload(WT, k, u0, 32), b) if beta != 0 else vzero(WT, 32))


@njit(cache=True)
def update_block(m, k0, k1, tile):
    """Inputs per block of an update over inputs k0 .. k1-1 of m examples in tiles of up to ``tile`` examples:
    K_BLOCK where m exceeds one tile (a block keeps its rows of WT in L1 from one tile of examples to the next),
    else all of them in one block. (Each block's start reloads the tile's deltas and drains the FMA pipeline.
    Alone, on both halves of 784 inputs x 30 units, float64, one core: 1.06x faster in one block at m = 10,
    1.10-1.11x at m = 3, 4, 7 and 9, where the smaller tiles pass over all of the inputs in turn; float32
    1.02-1.03x.)"""
    return K_BLOCK if m > tile else max(1, k1 - k0)


@njit(cache=True)
def update_weights(WT, A, rows, D, k0, k1, u0, beta, X, ahead):
    """BP4 into the transposed weights, for inputs k0 <= k < k1 and units u0 <= u < u0 + LANES:
    WT[k, u] = beta WT[k, u] (0 where beta is 0), then WT[k, u] += A[rows[x], k] D[x, u] for x = 0 .. m-1 in
    order, one FMA each. D (m, n_pad): the deltas times the step (``scaled_deltas``); A, rows as in
    ``input_sums``. Its first pass over the inputs also asks for the lines of columns k0 .. k1-1 of the rows
    X[ahead] (X (n, n_in) of any type; ahead may be empty), a line of each row every line's worth of inputs:
    spread over the update's arithmetic, they arrive while it runs. (Asked all at once, before the update or
    before the examples' stage, they held the core: the update and the sums on those rows took longer than
    without asking.) The inputs go in blocks of K_BLOCK only where the mini-batch takes more than one tile of
    UPDATE_TILE (``update_block``)."""
    m = rows.shape[0]
    block = update_block(m, k0, k1, UPDATE_TILE)
    for kb in range(k0, k1, block):
        kb1 = min(kb + block, k1)
        scale_rows(WT, kb, kb1, u0, beta)
        x = 0
        while x + UPDATE_TILE <= m:
            r0, r1, r2, r3, r4 = rows[x], rows[x + 1], rows[x + 2], rows[x + 3], rows[x + 4]
            r5, r6, r7, r8, r9 = rows[x + 5], rows[x + 6], rows[x + 7], rows[x + 8], rows[x + 9]
            d0, d1, d2, d3, d4 = (vload(D, x, u0, 32), vload(D, x + 1, u0, 32), vload(D, x + 2, u0, 32),
                                  vload(D, x + 3, u0, 32), vload(D, x + 4, u0, 32))
            d5, d6, d7, d8, d9 = (vload(D, x + 5, u0, 32), vload(D, x + 6, u0, 32), vload(D, x + 7, u0, 32),
                                  vload(D, x + 8, u0, 32), vload(D, x + 9, u0, 32))
            for k in range(kb, kb1):
                if x == 0:
                    prefetch_column(X, ahead, k, k0)
                w = add_five(vload(WT, k, u0, 32), A, k, r0, r1, r2, r3, r4, d0, d1, d2, d3, d4)
                vstore(WT, k, u0, add_five(w, A, k, r5, r6, r7, r8, r9, d5, d6, d7, d8, d9))
            x += UPDATE_TILE
        while x + 5 <= m:
            r0, r1, r2, r3, r4 = rows[x], rows[x + 1], rows[x + 2], rows[x + 3], rows[x + 4]
            d0, d1, d2, d3, d4 = (vload(D, x, u0, 32), vload(D, x + 1, u0, 32), vload(D, x + 2, u0, 32),
                                  vload(D, x + 3, u0, 32), vload(D, x + 4, u0, 32))
            for k in range(kb, kb1):
                if x == 0:
                    prefetch_column(X, ahead, k, k0)
                vstore(WT, k, u0, add_five(vload(WT, k, u0, 32), A, k, r0, r1, r2, r3, r4, d0, d1, d2, d3, d4))
            x += 5
        while x + 2 <= m:
            r0, r1, d0, d1 = rows[x], rows[x + 1], vload(D, x, u0, 32), vload(D, x + 1, u0, 32)
            for k in range(kb, kb1):
                if x == 0:
                    prefetch_column(X, ahead, k, k0)
                w = vload(WT, k, u0, 32)
                w = vfma(vsplat(A[r0, k], w), d0, w)
                vstore(WT, k, u0, vfma(vsplat(A[r1, k], w), d1, w))
            x += 2
        if x < m:
            r0, d0 = rows[x], vload(D, x, u0, 32)
            for k in range(kb, kb1):
                if x == 0:
                    prefetch_column(X, ahead, k, k0)
                vstore(WT, k, u0, vfma(vsplat(A[r0, k], d0), d0, vload(WT, k, u0, 32)))
