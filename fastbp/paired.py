"""Layer 1's transposed kernels (``transposed``) for a tile of 30 float64 units, such as the book's layer 1: two
rows of ``WT`` at a time, units 24-29 of both rows sharing registers.

A tile of 32 float64 lanes is four 512-bit registers. A CPU that carries out a 512-bit FMA as two 256-bit halves
(Zen 4) spends as much on the 2 padding lanes of a 30-unit tile as on real ones, 1/16 of layer 1's arithmetic,
and no cut of one row into registers avoids them. Here rows k and k+1 (a pair) hold units 24-29 interleaved:

    WT[k, u0 + 24 : u0 + 32]     = w(k,24) w(k+1,24) w(k,25) w(k+1,25) w(k,26) w(k+1,26) w(k,27) w(k+1,27)
    WT[k + 1, u0 + 24 : u0 + 32] = w(k,28) w(k+1,28) w(k,29) w(k+1,29) 0 0 0 0

(w(k, j) = w^1_{jk}), so that a pair's 60 weights take the FMAs of 7.5 registers instead of 8: units 0-23 of
each row as three 8-lane vectors, units 24-29 of both rows as one 8-lane and one 4-lane vector, times the pair
of inputs (a_k, a_{k+1}) broadcast by one load. Pairs start at the first input of each half of the inputs
(``kernels.input_split``); a half of odd length ends with a row laid out as in ``transposed``.

The update (BP4) keeps each weight's chain of FMAs over the examples in order: the bits of
``transposed.update_weights``. The sums (eq. 25) of units 24-29 run as two chains, over a block's even and odd
inputs counted from its first, added at the block's end (then a half's lone last row); the same bits however
examples, cells or threads are cut, and within a few ulps of ``transposed.input_sums``.

On a 2-core Zen 4 (paired runs in one process, Fashion-MNIST's shuffled rows) the book's network trained 1.016x
faster on two threads in float64 at mini-batch 10 (median of nine pairs of runs: 1.001-1.041x), 1.005-1.015x on
one, 1.00-1.03x on 8-bit inputs and 0.995-0.998x at mini-batch 32. Alone, on both halves of 392 inputs and 10 of
20 rows, the update took 9.83 against 10.07 us and the sums 8.55 against 8.71 (2% and 2.4%, not the 6.25% of
FMAs saved: both kernels run at about 85% of the FMA rate there, and the sums of units 24-29 take a 128-bit
broadcast per example and pair).
"""
from numba import njit

from .simd import vadd, vevens, vfirst, vfma, vinter, vload, vload_pair_splat, vload_splat, vodds, vstore, vzero
from .transposed import K_BLOCK, LANES, input_sums, prefetch_column, scale_rows, update_block, update_weights

PAIRED_UNITS = 30  # units of a tile laid out in pairs of rows: 3 registers of 8 float64 per row, then 6
SUMS_TILE = 3  # examples per tile of ``paired_sums``: 3 x 5 running sums, beside the pair's 8 weight vectors
UPDATE_TILE = 10  # examples per tile of ``paired_update``, as in ``transposed.update_weights``


@njit(cache=True)
def pairs_rows(WT, n_out, u0):
    """Whether the tile of units u0 .. u0 + LANES - 1 of WT (n_in, n_pad), of n_out units in all, is laid out in
    pairs of rows: float64 with 30 units in that tile."""
    return WT.itemsize == 8 and min(n_out - u0, LANES) == PAIRED_UNITS


@njit(cache=True)
def _pair_lane(j, k, u0):
    """Where pair_rows puts w(k', j) for row k' = k or k + 1 of the pair from k (units j = 24 .. 29): (row,
    lane)."""
    return (k, u0 + 2 * j - 24) if j < 28 else (k + 1, u0 + 2 * j - 32)


@njit(cache=True)
def pair_rows(WT, n_out, h):
    """Lay out WT's tiles that ``pairs_rows`` in pairs of rows from input 0 and from input h, in place; WT
    (n_in, n_pad) as ``transposed.transposed_weights`` gives it. Scalars only: this runs at every epoch call."""
    for u0 in range(0, WT.shape[1], LANES):
        if pairs_rows(WT, n_out, u0):
            for start, stop in ((0, h), (h, WT.shape[0])):
                for k in range(start, stop - 1, 2):
                    a0, a1, a2, a3, a4, a5 = (WT[k, u0 + 24], WT[k, u0 + 25], WT[k, u0 + 26], WT[k, u0 + 27],
                                              WT[k, u0 + 28], WT[k, u0 + 29])
                    b0, b1, b2, b3, b4, b5 = (WT[k + 1, u0 + 24], WT[k + 1, u0 + 25], WT[k + 1, u0 + 26],
                                              WT[k + 1, u0 + 27], WT[k + 1, u0 + 28], WT[k + 1, u0 + 29])
                    for j, a, b in ((24, a0, b0), (25, a1, b1), (26, a2, b2), (27, a3, b3), (28, a4, b4),
                                    (29, a5, b5)):
                        row, lane = _pair_lane(j, k, u0)
                        WT[row, lane], WT[row, lane + 1] = a, b
                    WT[k + 1, u0 + 28:u0 + 32] = 0


@njit(cache=True)
def unpair_rows(WT, n_out, h):
    """Undo ``pair_rows`` (same n_out, h) in place."""
    for u0 in range(0, WT.shape[1], LANES):
        if pairs_rows(WT, n_out, u0):
            for start, stop in ((0, h), (h, WT.shape[0])):
                for k in range(start, stop - 1, 2):
                    r, q = _pair_lane(24, k, u0)
                    a0, b0, a1, b1, a2, b2, a3, b3 = (WT[r, q], WT[r, q + 1], WT[r, q + 2], WT[r, q + 3],
                                                      WT[r, q + 4], WT[r, q + 5], WT[r, q + 6], WT[r, q + 7])
                    r, q = _pair_lane(28, k, u0)
                    a4, b4, a5, b5 = WT[r, q], WT[r, q + 1], WT[r, q + 2], WT[r, q + 3]
                    for j, a, b in ((24, a0, b0), (25, a1, b1), (26, a2, b2), (27, a3, b3), (28, a4, b4),
                                    (29, a5, b5)):
                        WT[k, u0 + j], WT[k + 1, u0 + j] = a, b
                    WT[k, u0 + 30:u0 + 32] = 0
                    WT[k + 1, u0 + 30:u0 + 32] = 0


@njit(cache=True)
def cell_sums(WT, A, rows, H, k0, k1, u0, n_out):
    """``transposed.input_sums`` (same arguments) for one tile of units of layer 1, of n_out units in all, laid
    out in pairs of rows from k0 where it ``pairs_rows``."""
    if pairs_rows(WT, n_out, u0):
        paired_sums(WT, A, rows, H, k0, k1, u0)
    else:
        input_sums(WT, A, rows, H, k0, k1, u0)


@njit(cache=True)
def cell_update(WT, A, rows, D, k0, k1, u0, beta, X, ahead, n_out):
    """``transposed.update_weights`` (same arguments) for one tile of units of layer 1, of n_out units in all,
    laid out in pairs of rows from k0 where it ``pairs_rows``."""
    if pairs_rows(WT, n_out, u0):
        paired_update(WT, A, rows, D, k0, k1, u0, beta, X, ahead)
    else:
        update_weights(WT, A, rows, D, k0, k1, u0, beta, X, ahead)


# ------------------------------------------------------------------------------------------------- eq. 25
@njit(cache=True)
def _sums_start(H, x, u, first):
    """An example's running sums at a block's start: units 0-23 as three vectors, units 24-27 and 28-29 as
    (even chain, odd chain) pairs of lanes; 0 in the first block, else H[x, u:u + 30] with odd chains at 0."""
    if first:
        return vzero(H, 8), vzero(H, 8), vzero(H, 8), vzero(H, 8), vzero(H, 4)
    return (vload(H, x, u, 8), vload(H, x, u + 8, 8), vload(H, x, u + 16, 8),
            vinter(vload(H, x, u + 24, 4), vzero(H, 4)), vinter(vload(H, x, u + 28, 2), vzero(H, 2)))


@njit(cache=True)
def _sums_end(H, x, u, c0, c1, c2, c3, c4):
    """H[x, u:u + 30] = the running sums of ``_sums_start``, each even chain + its odd chain."""
    vstore(H, x, u, c0)
    vstore(H, x, u + 8, c1)
    vstore(H, x, u + 16, c2)
    vstore(H, x, u + 24, vadd(vevens(c3), vodds(c3)))
    vstore(H, x, u + 28, vadd(vevens(c4), vodds(c4)))


@njit(cache=True)
def _pair_weights(WT, k, u):
    """The pair of rows k, k+1 of the tile at u: (units 0-7, 8-15, 16-23 of row k, the same of row k+1, units
    24-27 of both, units 28-29 of both)."""
    return (vload(WT, k, u, 8), vload(WT, k, u + 8, 8), vload(WT, k, u + 16, 8), vload(WT, k + 1, u, 8),
            vload(WT, k + 1, u + 8, 8), vload(WT, k + 1, u + 16, 8), vload(WT, k, u + 24, 8),
            vload(WT, k + 1, u + 24, 4))


@njit(cache=True)
def _sums_pair_step(A, r, k, w, c0, c1, c2, c3, c4):
    """An example's running sums after the pair of inputs k, k+1 of A[r]; w: ``_pair_weights``."""
    sa, sb, ab = vload_splat(A, r, k, 8), vload_splat(A, r, k + 1, 8), vload_pair_splat(A, r, k, 8)
    return (vfma(sb, w[3], vfma(sa, w[0], c0)), vfma(sb, w[4], vfma(sa, w[1], c1)),
            vfma(sb, w[5], vfma(sa, w[2], c2)), vfma(ab, w[6], c3), vfma(vfirst(ab, 4), w[7], c4))


@njit(cache=True)
def _sums_last_row(WT, A, rows, H, k, u):
    """H[x, u:u + 30] += A[rows[x], k] WT[k, u:u + 30] for every x (one FMA each): row k alone, laid out as in
    ``transposed``, after the block's pairs (a half's last row of an odd count). Kept out of the tiles, whose
    running sums then stay in registers."""
    for x in range(rows.shape[0]):
        s = vload_splat(A, rows[x], k, 8)
        vstore(H, x, u, vfma(s, vload(WT, k, u, 8), vload(H, x, u, 8)))
        vstore(H, x, u + 8, vfma(s, vload(WT, k, u + 8, 8), vload(H, x, u + 8, 8)))
        vstore(H, x, u + 16, vfma(s, vload(WT, k, u + 16, 8), vload(H, x, u + 16, 8)))
        vstore(H, x, u + 24, vfma(vfirst(s, 4), vload(WT, k, u + 24, 4), vload(H, x, u + 24, 4)))
        vstore(H, x, u + 28, vfma(vfirst(s, 2), vload(WT, k, u + 28, 2), vload(H, x, u + 28, 2)))


@njit(cache=True, inline="always")
def _sums_three(WT, A, rows, H, x, kb, kb1, u, first):
    """Examples x .. x+2 over the pairs of inputs from kb to kb1 (even in number)."""
    r0, r1, r2 = rows[x], rows[x + 1], rows[x + 2]
    c00, c01, c02, c03, c04 = _sums_start(H, x, u, first)
    c10, c11, c12, c13, c14 = _sums_start(H, x + 1, u, first)
    c20, c21, c22, c23, c24 = _sums_start(H, x + 2, u, first)
    for k in range(kb, kb1, 2):
        w = _pair_weights(WT, k, u)
        c00, c01, c02, c03, c04 = _sums_pair_step(A, r0, k, w, c00, c01, c02, c03, c04)
        c10, c11, c12, c13, c14 = _sums_pair_step(A, r1, k, w, c10, c11, c12, c13, c14)
        c20, c21, c22, c23, c24 = _sums_pair_step(A, r2, k, w, c20, c21, c22, c23, c24)
    _sums_end(H, x, u, c00, c01, c02, c03, c04)
    _sums_end(H, x + 1, u, c10, c11, c12, c13, c14)
    _sums_end(H, x + 2, u, c20, c21, c22, c23, c24)


@njit(cache=True, inline="always")
def _sums_two(WT, A, rows, H, x, kb, kb1, u, first):
    """Examples x, x+1, as ``_sums_three``."""
    r0, r1 = rows[x], rows[x + 1]
    c00, c01, c02, c03, c04 = _sums_start(H, x, u, first)
    c10, c11, c12, c13, c14 = _sums_start(H, x + 1, u, first)
    for k in range(kb, kb1, 2):
        w = _pair_weights(WT, k, u)
        c00, c01, c02, c03, c04 = _sums_pair_step(A, r0, k, w, c00, c01, c02, c03, c04)
        c10, c11, c12, c13, c14 = _sums_pair_step(A, r1, k, w, c10, c11, c12, c13, c14)
    _sums_end(H, x, u, c00, c01, c02, c03, c04)
    _sums_end(H, x + 1, u, c10, c11, c12, c13, c14)


@njit(cache=True, inline="always")
def _sums_one(WT, A, rows, H, x, kb, kb1, u, first):
    """Example x, as ``_sums_three``."""
    r0 = rows[x]
    c00, c01, c02, c03, c04 = _sums_start(H, x, u, first)
    for k in range(kb, kb1, 2):
        c00, c01, c02, c03, c04 = _sums_pair_step(A, r0, k, _pair_weights(WT, k, u), c00, c01, c02, c03, c04)
    _sums_end(H, x, u, c00, c01, c02, c03, c04)


@njit(cache=True)
def paired_sums(WT, A, rows, H, k0, k1, u0):
    """``transposed.input_sums`` over a tile laid out in pairs of rows from k0: H[x, u] = sum_{k0 <= k < k1}
    A[rows[x], k] WT[k, u] for the tile's 30 units u and every x < m; lanes u0 + 30, u0 + 31 of H are left
    alone. Tiles of three examples, then two (a last four as two twos), then one."""
    m = rows.shape[0]
    if k1 <= k0:  # no inputs: the sums are 0
        for x in range(m):
            _sums_end(H, x, u0, vzero(H, 8), vzero(H, 8), vzero(H, 8), vzero(H, 8), vzero(H, 4))
    for kb in range(k0, k1, K_BLOCK):
        kb1, first = min(kb + K_BLOCK, k1), kb == k0
        pairs_end, x = kb1 - (kb1 - kb) % 2, 0
        while m - x > 4 or m - x == SUMS_TILE:
            _sums_three(WT, A, rows, H, x, kb, pairs_end, u0, first)
            x += SUMS_TILE
        while m - x >= 2:
            _sums_two(WT, A, rows, H, x, kb, pairs_end, u0, first)
            x += 2
        if x < m:
            _sums_one(WT, A, rows, H, x, kb, pairs_end, u0, first)
        if pairs_end < kb1:
            _sums_last_row(WT, A, rows, H, pairs_end, u0)


# --------------------------------------------------------------------------------------------------- BP4
@njit(cache=True)
def _deltas(D, x, u):
    """Example x's scaled deltas as the paired update's operands: units 0-7, 8-15, 16-23, then units 24-27 and
    28-29 each twice in a row (one copy per row of the pair)."""
    d3, d4 = vload(D, x, u + 24, 4), vload(D, x, u + 28, 2)
    return vload(D, x, u, 8), vload(D, x, u + 8, 8), vload(D, x, u + 16, 8), vinter(d3, d3), vinter(d4, d4)


@njit(cache=True)
def _update_pair_step(A, r, k, d, w0, w1, w2, w3, w4, w5, w6, w7):
    """A pair's weights (``_pair_weights``) after one example's FMA: + A[r, k] d (row k) and + A[r, k+1] d
    (row k+1); d: ``_deltas``."""
    sa, sb, ab = vload_splat(A, r, k, 8), vload_splat(A, r, k + 1, 8), vload_pair_splat(A, r, k, 8)
    return (vfma(sa, d[0], w0), vfma(sa, d[1], w1), vfma(sa, d[2], w2), vfma(sb, d[0], w3), vfma(sb, d[1], w4),
            vfma(sb, d[2], w5), vfma(ab, d[3], w6), vfma(vfirst(ab, 4), d[4], w7))


@njit(cache=True)
def _store_pair(WT, k, u, w0, w1, w2, w3, w4, w5, w6, w7):
    """Write a pair's weights back (``_pair_weights``' order)."""
    vstore(WT, k, u, w0)
    vstore(WT, k, u + 8, w1)
    vstore(WT, k, u + 16, w2)
    vstore(WT, k + 1, u, w3)
    vstore(WT, k + 1, u + 8, w4)
    vstore(WT, k + 1, u + 16, w5)
    vstore(WT, k, u + 24, w6)
    vstore(WT, k + 1, u + 24, w7)


@njit(cache=True)
def _add_five(A, k, r0, r1, r2, r3, r4, d0, d1, d2, d3, d4, w0, w1, w2, w3, w4, w5, w6, w7):
    """A pair's weights after the FMAs of examples A[r0] .. A[r4] (deltas d0 .. d4), in that order."""
    w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r0, k, d0, w0, w1, w2, w3, w4, w5, w6, w7)
    w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r1, k, d1, w0, w1, w2, w3, w4, w5, w6, w7)
    w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r2, k, d2, w0, w1, w2, w3, w4, w5, w6, w7)
    w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r3, k, d3, w0, w1, w2, w3, w4, w5, w6, w7)
    return _update_pair_step(A, r4, k, d4, w0, w1, w2, w3, w4, w5, w6, w7)


@njit(cache=True)
def _five_deltas(D, x, u):
    """``_deltas`` of examples x .. x+4."""
    return _deltas(D, x, u), _deltas(D, x + 1, u), _deltas(D, x + 2, u), _deltas(D, x + 3, u), _deltas(D, x + 4, u)


@njit(cache=True, inline="always")
def _update_ten(WT, A, rows, D, x, kb, kb1, u, X, ahead, k0):
    """Examples x .. x+9 into the pairs of rows kb .. kb1-1 (from kb, even in number); asks for the lines of
    X[ahead] as ``transposed.update_weights`` does."""
    r0, r1, r2, r3, r4 = rows[x], rows[x + 1], rows[x + 2], rows[x + 3], rows[x + 4]
    r5, r6, r7, r8, r9 = rows[x + 5], rows[x + 6], rows[x + 7], rows[x + 8], rows[x + 9]
    d0, d1, d2, d3, d4 = _five_deltas(D, x, u)
    d5, d6, d7, d8, d9 = _five_deltas(D, x + 5, u)
    for k in range(kb, kb1, 2):
        prefetch_column(X, ahead, k, k0)
        w = _add_five(A, k, r0, r1, r2, r3, r4, d0, d1, d2, d3, d4, *_pair_weights(WT, k, u))
        _store_pair(WT, k, u, *_add_five(A, k, r5, r6, r7, r8, r9, d5, d6, d7, d8, d9, *w))


@njit(cache=True, inline="always")
def _update_five(WT, A, rows, D, x, kb, kb1, u, X, ahead, k0):
    """Examples x .. x+4, as ``_update_ten``."""
    r0, r1, r2, r3, r4 = rows[x], rows[x + 1], rows[x + 2], rows[x + 3], rows[x + 4]
    d0, d1, d2, d3, d4 = _five_deltas(D, x, u)
    for k in range(kb, kb1, 2):
        prefetch_column(X, ahead, k, k0)
        _store_pair(WT, k, u, *_add_five(A, k, r0, r1, r2, r3, r4, d0, d1, d2, d3, d4, *_pair_weights(WT, k, u)))


@njit(cache=True, inline="always")
def _update_two(WT, A, rows, D, x, kb, kb1, u, X, ahead, k0):
    """Examples x, x+1, as ``_update_ten``."""
    r0, r1, d0, d1 = rows[x], rows[x + 1], _deltas(D, x, u), _deltas(D, x + 1, u)
    for k in range(kb, kb1, 2):
        prefetch_column(X, ahead, k, k0)
        w0, w1, w2, w3, w4, w5, w6, w7 = _pair_weights(WT, k, u)
        w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r0, k, d0, w0, w1, w2, w3, w4, w5, w6, w7)
        w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r1, k, d1, w0, w1, w2, w3, w4, w5, w6, w7)
        _store_pair(WT, k, u, w0, w1, w2, w3, w4, w5, w6, w7)


@njit(cache=True, inline="always")
def _update_one(WT, A, rows, D, x, kb, kb1, u, X, ahead, k0):
    """Example x, as ``_update_ten``."""
    r0, d0 = rows[x], _deltas(D, x, u)
    for k in range(kb, kb1, 2):
        prefetch_column(X, ahead, k, k0)
        w0, w1, w2, w3, w4, w5, w6, w7 = _pair_weights(WT, k, u)
        w0, w1, w2, w3, w4, w5, w6, w7 = _update_pair_step(A, r0, k, d0, w0, w1, w2, w3, w4, w5, w6, w7)
        _store_pair(WT, k, u, w0, w1, w2, w3, w4, w5, w6, w7)


@njit(cache=True, inline="always")
def _update_row(WT, A, rows, D, k, u):
    """Every example into row k alone, laid out as in ``transposed`` (a half's last row of an odd count)."""
    w0, w1, w2 = vload(WT, k, u, 8), vload(WT, k, u + 8, 8), vload(WT, k, u + 16, 8)
    w3, w4 = vload(WT, k, u + 24, 4), vload(WT, k, u + 28, 2)
    for x in range(rows.shape[0]):
        s = vload_splat(A, rows[x], k, 8)
        w0, w1 = vfma(s, vload(D, x, u, 8), w0), vfma(s, vload(D, x, u + 8, 8), w1)
        w2, w3 = vfma(s, vload(D, x, u + 16, 8), w2), vfma(vfirst(s, 4), vload(D, x, u + 24, 4), w3)
        w4 = vfma(vfirst(s, 2), vload(D, x, u + 28, 2), w4)
    vstore(WT, k, u, w0)
    vstore(WT, k, u + 8, w1)
    vstore(WT, k, u + 16, w2)
    vstore(WT, k, u + 24, w3)
    vstore(WT, k, u + 28, w4)


@njit(cache=True)
def paired_update(WT, A, rows, D, k0, k1, u0, beta, X, ahead):
    """``transposed.update_weights`` (same arguments, same bits) over a tile laid out in pairs of rows from k0:
    WT[k, u] = beta WT[k, u] (0 where beta is 0), then + A[rows[x], k] D[x, u] for x = 0 .. m-1 in order, for
    k0 <= k < k1 and the tile's units. Tiles of ten examples, then five, two, one; the inputs in one block where
    the mini-batch fits one tile of ten (``transposed.update_block``)."""
    m = rows.shape[0]
    block = update_block(m, k0, k1, UPDATE_TILE)
    for kb in range(k0, k1, block):
        kb1 = min(kb + block, k1)
        scale_rows(WT, kb, kb1, u0, beta)
        pairs_end, x = kb1 - (kb1 - kb) % 2, 0
        while x + UPDATE_TILE <= m:
            _update_ten(WT, A, rows, D, x, kb, pairs_end, u0, X, ahead if x == 0 else ahead[:0], k0)
            x += UPDATE_TILE
        while x + 5 <= m:
            _update_five(WT, A, rows, D, x, kb, pairs_end, u0, X, ahead if x == 0 else ahead[:0], k0)
            x += 5
        while x + 2 <= m:
            _update_two(WT, A, rows, D, x, kb, pairs_end, u0, X, ahead if x == 0 else ahead[:0], k0)
            x += 2
        if x < m:
            _update_one(WT, A, rows, D, x, kb, pairs_end, u0, X, ahead if x == 0 else ahead[:0], k0)
        if pairs_end < kb1:
            prefetch_column(X, ahead, pairs_end, k0)
            _update_row(WT, A, rows, D, pairs_end, u0)
