"""Numba kernels: the feedforward (eq. 25) and BP1-BP4 over C-contiguous arrays.

Conventions
-----------
* All parameters live in one flat vector ``theta``. ``layout`` (L+1, 5) int64 says where: row ``l`` holds
  ``(n_l, weight offset, bias offset, unit offset, activation code)``; row 0 only holds ``n_0``. The weight
  ``w^l`` is the row-major block ``(n_l, n_{l-1})`` (Nielsen's ``w^l_{jk}``: j output, k input), ``b^l`` is
  ``(n_l,)``. A gradient or optimizer state with the same layout is a vector of the same length.
* A batch is a set of rows ``rows`` of the data ``X (n, n_0)`` and targets ``Y (n, n_L)``: the data set is read
  in place, never copied into batches. The inputs are ``x_scale * X``: X is float (x_scale = 1) or small
  unsigned integers such as pixels (x_scale = 1/255), scaled inside the kernels so that a data set can stay at
  one byte per input.
* ``ws`` is the workspace: three parts (z, a, delta), each ``m_max`` rows of every layer's units; layer ``l``'s
  block of a part is ``(m, n_l)``. ``workspace_length`` gives its size.
* Outputs are passed in and filled; kernels neither validate nor allocate (beyond tiny index arrays).
* Parallel loops run over groups of output units (or over examples where each owns its output row), so no two
  iterations write the same element, and each element is summed in a fixed order: results do not depend on
  the number of threads. Every parallel kernel also exists as a serial twin (``serial_and_parallel``); callers
  pick one by the layer's work.
"""
import inspect
import math
import types

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils
from numba.core import types as nbtypes
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array

from .activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from .activations import unused_f as custom_f
from .activations import unused_f_prime as custom_f_prime
from .codegen import X86
from .costs import CROSS_ENTROPY, LOG_LIKELIHOOD, QUADRATIC
from .paired import cell_sums, cell_update, pair_rows, unpair_rows
from .simd import prefetch
from .small_layers import small_backprop, small_bp34, small_forward, small_layer
from .transposed import (LANES, aligned_matrix, padded_units, scaled_deltas, stage_rows, transposed_weights,
                         untranspose)

# reassoc lets LLVM vectorise the dot-product reductions (x4 to x8 measured); contract lets it use FMA.
# Neither changes results by more than a few ulps of each sum; tests hold them to the NumPy baseline.
FASTMATH = {"reassoc", "contract"}

N, W_OFF, B_OFF, U_OFF, ACT = 0, 1, 2, 3, 4
Z_PART, A_PART, DELTA_PART = 0, 1, 2

SGD, MOMENTUM, NESTEROV, ADAM = 0, 1, 2, 3
# hyper: the optimizer's scalars, in this order (ADAM_T is the step counter, updated in place).
ETA, L2, MU, BETA1, BETA2, EPS, ADAM_T = 0, 1, 2, 3, 4, 5, 6
N_HYPER = 7


# --------------------------------------------------------------------------------------------- views
@intrinsic
def matrix_view(typingctx, flat, start, n_rows, n_cols):
    """Values start .. start + n_rows * n_cols - 1 of the C-contiguous array ``flat`` (any shape, read in its
    memory order) as a C-contiguous (n_rows, n_cols) view; the caller guarantees the range lies inside it. What
    ``flat.ravel()[a:b].reshape(...)`` gives, without the calls into Numba's C reshape helper (about 35 ns each,
    and a batch of a small network takes some twenty views)."""
    if not (isinstance(flat, nbtypes.Array) and flat.layout == "C"):
        return None
    view = flat.copy(ndim=2, layout="C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        start, rows, cols = (context.cast(builder, v, t, nbtypes.intp) for v, t in zip(args[1:], sig.args[1:]))
        out = context.make_array(view)(context, builder)
        populate_array(out, data=builder.gep(src.data, [start]), shape=[rows, cols],
                       strides=[builder.mul(cols, src.itemsize), src.itemsize], itemsize=src.itemsize,
                       meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, view, out._getvalue())
    return view(flat, start, n_rows, n_cols), codegen


@intrinsic
def row_piece(typingctx, ary, i, k0, n):
    """ary[i, k0:k0 + n] of a C-contiguous 2-D array as a 1-D view; the caller guarantees the range lies inside
    the row. Without a slice's index checks and clipping: as slices, the tiles' pieces of rows made layer 1's
    fused update 8% slower in float32 on one core."""
    if not (isinstance(ary, nbtypes.Array) and ary.layout == "C" and ary.ndim == 2):
        return None
    view = ary.copy(ndim=1, layout="C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        i, k0, n = (context.cast(builder, v, t, nbtypes.intp) for v, t in zip(args[1:], sig.args[1:]))
        n_cols = builder.extract_value(src.shape, 1)
        start = builder.add(builder.mul(i, n_cols), k0)
        out = context.make_array(view)(context, builder)
        populate_array(out, data=builder.gep(src.data, [start]), shape=[n], strides=[src.itemsize],
                       itemsize=src.itemsize, meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, view, out._getvalue())
    return view(ary, i, k0, n), codegen


@intrinsic
def unowned(typingctx, ary):
    """The array ``ary`` without its reference count (a view of the same memory with no owner), so that the views
    taken from it in a hot loop need no atomic count updates. ``ary`` must outlive the result: the kernels apply it
    to their own arguments, which their caller holds for the whole call.

    Each view of an owned array adds and removes a reference with a locked instruction; with two threads taking
    views of the same ``theta`` and ``ws``, these went back and forth between the cores."""
    if not isinstance(ary, nbtypes.Array):
        return None

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        out = context.make_array(sig.return_type)(context, builder)
        populate_array(out, data=src.data, shape=src.shape, strides=src.strides, itemsize=src.itemsize,
                       meminfo=None, parent=None)
        return out._getvalue()
    return ary(ary), codegen


@njit(cache=True)
def weight(theta, layout, l):
    """w^l as a (n_l, n_{l-1}) view of the flat vector ``theta``."""
    return matrix_view(theta, layout[l, W_OFF], layout[l, N], layout[l - 1, N])


@njit(cache=True)
def bias(theta, layout, l):
    """b^l as a (n_l,) view of ``theta``."""
    o = layout[l, B_OFF]
    return theta[o:o + layout[l, N]]


@njit(cache=True)
def workspace_length(layout, m_max):
    """The length of a workspace for batches of up to m_max rows."""
    return m_max * 3 * (layout[-1, U_OFF] + layout[-1, N])


@njit(cache=True)
def batch_capacity(ws, layout):
    """How many rows a batch in ``ws`` may have."""
    return ws.shape[0] // (3 * (layout[-1, U_OFF] + layout[-1, N]))


@njit(cache=True)
def block(ws, layout, l, part, m):
    """Layer l's (m, n_l) block of workspace part ``part`` (Z_PART, A_PART or DELTA_PART)."""
    m_max = batch_capacity(ws, layout)
    o = part * m_max * (layout[-1, U_OFF] + layout[-1, N]) + layout[l, U_OFF] * m_max
    return matrix_view(ws, o, m, layout[l, N])


# ----------------------------------------------------------------------------- matrix-shaped kernels
# The widest inputs that layer 1 prefetches (bytes per value). On a 2-core Emerald Rapids Xeon the book's network
# in float64 trained faster without prefetching its float64 inputs, in paired A/B runs (float32 rows, the same code
# in both, moved 0.95-1.02x): 1.06-1.13x on one thread at m = 10, 16 and 32 (six pairs), 0.94-1.07x on two;
# prefetching them into L2 only instead of L1 was slower still (0.86-0.97x against none). float32 and 8-bit inputs,
# half the lines or fewer, kept their prefetch (without it float32 trained 0.97-0.98x at m = 10). Since layer 1
# trains transposed, float32 inputs train faster unprefetched there (``transposed_step``): 1.035-1.075x on two
# threads and 1.06-1.11x on one at m = 10, 1.04-1.10x on two at m = 32 (on one 0.94x and 1.02x); 8-bit inputs keep
# it (without: 0.91x on one thread, 0.98-1.01x on two; since their float copy vectorises, ``stage_rows``, 0.97x in
# float64 on one and two threads, 1.00x and 1.01x in float32), and so does the row-major path
# ([784, 256, 128, 10] at m = 128 in float32: 0.97x without). Where layer 1 trains transposed, inputs of any
# type are now asked for inside the update before the sums (or the float copy) that read them
# (``transposed.update_weights``), a line of each row at a time: that pays where asking for them all at once did
# not.
PREFETCH_MAX_ITEMSIZE = 4


@njit(cache=True)
def prefetch_share(X, rows, k0, k1, part, n_parts):
    """Prefetch part ``part`` of ``n_parts`` of the cache lines of columns k0 .. k1-1 of the rows X[rows]
    (X (n, n_in)): the lines t = r * lines + l with t % n_parts == part; nothing where X's values are wider than
    PREFETCH_MAX_ITEMSIZE. One division per row, not per line (two divisions per line cost more than the
    prefetches: 0.54 against 0.22 us per example measured at the book's setup)."""
    if X.itemsize > PREFETCH_MAX_ITEMSIZE:
        return
    per_line = max(1, 64 // X.itemsize)
    lines = (k1 - k0 + per_line - 1) // per_line
    for r in range(rows.shape[0]):
        row = rows[r]
        for l in range((part - r * lines) % n_parts, lines, n_parts):
            prefetch(X, row, k0 + l * per_line)


@njit(cache=True)
def prefetch_targets(Y, rows, part, n_parts):
    """Prefetch the rows Y[rows[x]] (targets (n, n_L)) of part ``part`` of n_parts of the examples, cut evenly as
    stage 1 cuts them: the first and the last value of each, so both lines of a row that straddles two.

    Asked one mini-batch ahead, BP1's reads of the targets no longer wait for memory: on Fashion-MNIST's 60,000
    rows (the one-hot targets, 2.4-4.8 MB, do not stay in cache beside the inputs) BP1 took 0.11-0.13 us per
    mini-batch of 10 on each of 2 threads instead of 0.30-0.35 (float32, cycle counts)."""
    m, last = rows.shape[0], Y.shape[1] - 1
    for x in range(part * m // n_parts, (part + 1) * m // n_parts):
        prefetch(Y, rows[x], 0)
        prefetch(Y, rows[x], last)


@njit(cache=True, fastmath=FASTMATH)
def partial_input_units(W, b, A_prev, x_scale, rows, Z, j_start, j_stop, k0, k1, wk0, finish):
    """Eq. 25's z = w a + b, or its sums over part of the inputs, for units j_start <= j < j_stop of a batch:
    Z[x, j] = sum_k W[j, wk0 + k - k0] A_prev[rows[x], k]  (k0 <= k < k1), and then with ``finish`` (all the
    inputs, k0 = wk0 = 0 and k1 = n_in) Z[x, j] = x_scale Z[x, j] + b[j].

    W (n_out, *): those inputs' weights start at column wk0 (k0 for a layer's whole weights, 0 for a matrix of
    their own); b (n_out,); A_prev (*, n_in) read at rows (m,); Z (m, n_out) output (those columns). x_scale = 1
    (exact, so float inputs are unaffected) except for integer-coded inputs.
    A 4-unit x 2-example register tile: each loaded weight is used twice, each input value four times. An odd
    last example goes through the same tile paired with itself, so that every value is computed by the same
    instructions however the examples are paired (the shares of ``_forward_and_back_share`` may start at an odd
    example). Two or three units left over take a 2-unit tile, so that each input row is read once for both: with
    layer 1's 30 units (the second thread's share ends in such a pair), the book's network trained 1.017-1.031x
    faster than with those units one at a time (float64 and float32, m = 10 and 32, same bits).
    """
    n_in = k1 - k0
    m = rows.shape[0]
    zero = W.dtype.type(0)
    j0 = j_start
    while j0 + 4 <= j_stop:
        w0, w1 = row_piece(W, j0, wk0, n_in), row_piece(W, j0 + 1, wk0, n_in)
        w2, w3 = row_piece(W, j0 + 2, wk0, n_in), row_piece(W, j0 + 3, wk0, n_in)
        for x in range(0, m, 2):
            y = min(x + 1, m - 1)  # y == x for an odd last example: its second column is computed twice
            a, c = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[y], k0, n_in)
            s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = zero
            for k in range(n_in):
                ak, ck = a[k], c[k]
                s0 += w0[k] * ak
                s1 += w1[k] * ak
                s2 += w2[k] * ak
                s3 += w3[k] * ak
                t0 += w0[k] * ck
                t1 += w1[k] * ck
                t2 += w2[k] * ck
                t3 += w3[k] * ck
            Z[y, j0], Z[y, j0 + 1], Z[y, j0 + 2], Z[y, j0 + 3] = t0, t1, t2, t3
            Z[x, j0], Z[x, j0 + 1], Z[x, j0 + 2], Z[x, j0 + 3] = s0, s1, s2, s3
        j0 += 4
    if j0 + 2 <= j_stop:  # two or three units left: a 2-unit x 2-example tile
        w0, w1 = row_piece(W, j0, wk0, n_in), row_piece(W, j0 + 1, wk0, n_in)
        for x in range(0, m, 2):
            y = min(x + 1, m - 1)
            a, c = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[y], k0, n_in)
            s0 = s1 = t0 = t1 = zero
            for k in range(n_in):
                ak, ck = a[k], c[k]
                s0 += w0[k] * ak
                s1 += w1[k] * ak
                t0 += w0[k] * ck
                t1 += w1[k] * ck
            Z[y, j0], Z[y, j0 + 1] = t0, t1
            Z[x, j0], Z[x, j0 + 1] = s0, s1
        j0 += 2
    for j in range(j0, j_stop):  # one unit left: one unit x two examples
        w = row_piece(W, j, wk0, n_in)
        for x in range(0, m, 2):
            y = min(x + 1, m - 1)
            a, c = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[y], k0, n_in)
            s0 = t0 = zero
            for k in range(n_in):
                s0 += w[k] * a[k]
                t0 += w[k] * c[k]
            Z[y, j] = t0
            Z[x, j] = s0
    if finish:
        xs = W.dtype.type(x_scale)
        for x in range(m):
            for j in range(j_start, j_stop):
                Z[x, j] = Z[x, j] * xs + b[j]


BP4_TILE = 5  # examples per pass of accumulate_bp34_units


@njit(cache=True)
def unit_groups(W):
    """How many groups of four units (rows; the last may have fewer) the parallel kernels cut W (n_out, n_in)
    into."""
    return (W.shape[0] + 3) // 4


@njit(cache=True)
def example_block(m, n_in, itemsize):
    """How many of a batch's m examples a kernel takes at a time: blocks of about equal size whose inputs
    (block, n_in) fill at most ~384 KiB, so that they stay in the L2 cache while every weight row passes over
    them (with room for the next batch's inputs: layer 1's fused update reads both; 384 KiB against 192 KiB on
    a 1 MiB L2: 1.06-1.08x at the book's m = 32 in float64 and m = 64 in float32, level elsewhere; 512 KiB was
    slower, 0.92-0.95x). A batch that fits gets one block (the result is then >= m). A multiple of BP4_TILE,
    and even, so that BP4 groups every block's examples (in fives, then pairs) the same way on every path.

    ``itemsize`` is the weights' (the kernels' float type), for 8-bit inputs too: blocks sized by those inputs'
    own bytes (one block of 128 examples on [784, 256, 128, 10]) trained 0.93-0.96x as fast on 2 threads (with
    the 192 KiB blocks of a 512 KiB L2)."""
    t = 2 * BP4_TILE
    cap = max(t, (384 * 1024 // (n_in * itemsize)) // t * t)
    n_blocks = max(1, (m + cap - 1) // cap)
    return max(t, ((m + n_blocks - 1) // n_blocks + t - 1) // t * t)


def _weighted_input(W, b, A_prev, x_scale, rows, Z, g_start, g_stop):
    """Eq. 25's z = w a + b for a batch (see ``partial_input_units``) and the units of groups g_start .. g_stop-1
    of four, one group per parallel iteration.

    Large batches go in blocks of ``example_block`` examples, so a block's inputs are read from memory once
    and then served from each core's cache while all the weight rows pass over them.
    """
    n_out, n_in = W.shape
    m = rows.shape[0]
    xb = example_block(m, n_in, W.itemsize)
    for x0 in range(0, m, xb):
        x1 = min(x0 + xb, m)
        for g in prange(g_start, g_stop):
            j0, j1 = 4 * g, min(4 * g + 4, n_out)
            partial_input_units(W, b, A_prev, x_scale, rows[x0:x1], Z[x0:x1], j0, j1, np.int64(0), n_in, np.int64(0),
                                np.bool_(True))


@njit(cache=True)
def _scale_row(w, beta):
    """w *= beta; beta == 0 overwrites with zeros even where w is not finite."""
    if beta == 0:
        w[:] = 0
    elif beta != 1:
        c = w.dtype.type(beta)
        for k in range(w.shape[0]):
            w[k] *= c


@njit(cache=True, fastmath=FASTMATH)
def accumulate_bp34_units(delta, A_prev, x_scale, rows, scale, beta_w, beta_b, W, b, j_start, j_stop, k0, k1,
                          wk0, with_bias):
    """BP3 and BP4 summed over the batch, added into rows j_start <= j < j_stop of (W, b), for inputs
    k0 <= k < k1 (whose weights start at W's column wk0, as in ``partial_input_units``):

    W[j, k] = beta_w W[j, k] + scale x_scale sum_x delta[x, j] A_prev[rows[x], k]
    b[j]    = beta_b b[j]    + scale sum_x delta[x, j]                            (only if with_bias)

    delta (m, n_out), A_prev (*, n_in) read at rows (m,), W (n_out, *), b (n_out,). A weight's value does not
    depend on the range of inputs it is updated with: each is its own sum.
    With W = the weights, scale = -eta/m and beta_w = 1 - eta*lmbda/n this is the SGD update itself.
    BP4 takes four rows x five examples at a time, then two rows: each weight row is loaded and stored once per
    five examples (2x faster than one row and one example at a time; five examples rather than four take a
    book-sized mini-batch of 10 in two passes instead of three), and each input value loaded serves four rows.
    Four rows against two trained the book's network 1.13-1.15x faster in float64 (1.10-1.14x on 8-bit inputs),
    1.01-1.04x in float32, and [784, 256, 128, 10] 1.15x in float64, 1.16-1.19x in float32; but 8-bit inputs in
    float32 0.82-0.86x, so those keep two rows. Each row gets the same sums in the same order either way. (The tiles
    stay written out here: as functions of their own, called or inlined, BP4 ran 0.76-0.97x as fast.)
    """
    n_in = k1 - k0
    m = rows.shape[0]
    sw = W.dtype.type(scale * x_scale)  # == s when x_scale is 1
    for j in range(j_start, j_stop):
        _scale_row(row_piece(W, j, wk0, n_in), beta_w)
    four_rows = A_prev.itemsize == W.itemsize or W.itemsize == 8  # not integer inputs in float32 (see above)
    j_two = j_start + (j_stop - j_start) // 4 * 4 if four_rows else j_start
    for j0 in range(j_start, j_two, 4):  # BP4, four rows
        w, v = row_piece(W, j0, wk0, n_in), row_piece(W, j0 + 1, wk0, n_in)
        u, q = row_piece(W, j0 + 2, wk0, n_in), row_piece(W, j0 + 3, wk0, n_in)
        x = 0
        while x + BP4_TILE <= m:  # the tile's five examples are written out
            d0, d1, d2, d3, d4 = (sw * delta[x, j0], sw * delta[x + 1, j0], sw * delta[x + 2, j0],
                                  sw * delta[x + 3, j0], sw * delta[x + 4, j0])
            e0, e1, e2, e3, e4 = (sw * delta[x, j0 + 1], sw * delta[x + 1, j0 + 1], sw * delta[x + 2, j0 + 1],
                                  sw * delta[x + 3, j0 + 1], sw * delta[x + 4, j0 + 1])
            f0, f1, f2, f3, f4 = (sw * delta[x, j0 + 2], sw * delta[x + 1, j0 + 2], sw * delta[x + 2, j0 + 2],
                                  sw * delta[x + 3, j0 + 2], sw * delta[x + 4, j0 + 2])
            g0, g1, g2, g3, g4 = (sw * delta[x, j0 + 3], sw * delta[x + 1, j0 + 3], sw * delta[x + 2, j0 + 3],
                                  sw * delta[x + 3, j0 + 3], sw * delta[x + 4, j0 + 3])
            a0, a1 = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[x + 1], k0, n_in)
            a2, a3 = row_piece(A_prev, rows[x + 2], k0, n_in), row_piece(A_prev, rows[x + 3], k0, n_in)
            a4 = row_piece(A_prev, rows[x + 4], k0, n_in)
            for k in range(n_in):
                p0, p1, p2, p3, p4 = a0[k], a1[k], a2[k], a3[k], a4[k]
                w[k] += d0 * p0 + d1 * p1 + d2 * p2 + d3 * p3 + d4 * p4
                v[k] += e0 * p0 + e1 * p1 + e2 * p2 + e3 * p3 + e4 * p4
                u[k] += f0 * p0 + f1 * p1 + f2 * p2 + f3 * p3 + f4 * p4
                q[k] += g0 * p0 + g1 * p1 + g2 * p2 + g3 * p3 + g4 * p4
            x += BP4_TILE
        while x + 2 <= m:  # remaining pairs in one pass each rather than two
            d0, d1, e0, e1 = sw * delta[x, j0], sw * delta[x + 1, j0], sw * delta[x, j0 + 1], sw * delta[x + 1, j0 + 1]
            f0, f1, g0, g1 = (sw * delta[x, j0 + 2], sw * delta[x + 1, j0 + 2], sw * delta[x, j0 + 3],
                              sw * delta[x + 1, j0 + 3])
            a0, a1 = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[x + 1], k0, n_in)
            for k in range(n_in):
                p0, p1 = a0[k], a1[k]
                w[k] += d0 * p0 + d1 * p1
                v[k] += e0 * p0 + e1 * p1
                u[k] += f0 * p0 + f1 * p1
                q[k] += g0 * p0 + g1 * p1
            x += 2
        if x < m:
            d0, e0, f0, g0 = sw * delta[x, j0], sw * delta[x, j0 + 1], sw * delta[x, j0 + 2], sw * delta[x, j0 + 3]
            a0 = row_piece(A_prev, rows[x], k0, n_in)
            for k in range(n_in):
                w[k] += d0 * a0[k]
                v[k] += e0 * a0[k]
                u[k] += f0 * a0[k]
                q[k] += g0 * a0[k]
    for j0 in range(j_two, j_stop, 2):  # BP4, two rows: the same sums for each row as with four
        j1 = min(j0 + 1, j_stop - 1)  # j1 == j0 for the last row of an odd count: its second lane is masked
        w, v = row_piece(W, j0, wk0, n_in), row_piece(W, j1, wk0, n_in)
        live = W.dtype.type(1 if j1 != j0 else 0)
        x = 0
        while x + BP4_TILE <= m:
            d0, d1, d2 = sw * delta[x, j0], sw * delta[x + 1, j0], sw * delta[x + 2, j0]
            d3, d4 = sw * delta[x + 3, j0], sw * delta[x + 4, j0]
            e0, e1, e2 = live * sw * delta[x, j1], live * sw * delta[x + 1, j1], live * sw * delta[x + 2, j1]
            e3, e4 = live * sw * delta[x + 3, j1], live * sw * delta[x + 4, j1]
            a0, a1 = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[x + 1], k0, n_in)
            a2, a3 = row_piece(A_prev, rows[x + 2], k0, n_in), row_piece(A_prev, rows[x + 3], k0, n_in)
            a4 = row_piece(A_prev, rows[x + 4], k0, n_in)
            for k in range(n_in):
                p0, p1, p2, p3, p4 = a0[k], a1[k], a2[k], a3[k], a4[k]
                w[k] += d0 * p0 + d1 * p1 + d2 * p2 + d3 * p3 + d4 * p4
                v[k] += e0 * p0 + e1 * p1 + e2 * p2 + e3 * p3 + e4 * p4
            x += BP4_TILE
        while x + 2 <= m:
            d0, d1 = sw * delta[x, j0], sw * delta[x + 1, j0]
            e0, e1 = live * sw * delta[x, j1], live * sw * delta[x + 1, j1]
            a0, a1 = row_piece(A_prev, rows[x], k0, n_in), row_piece(A_prev, rows[x + 1], k0, n_in)
            for k in range(n_in):
                p0, p1 = a0[k], a1[k]
                w[k] += d0 * p0 + d1 * p1
                v[k] += e0 * p0 + e1 * p1
            x += 2
        if x < m:
            d0, e0 = sw * delta[x, j0], live * sw * delta[x, j1]
            a0 = row_piece(A_prev, rows[x], k0, n_in)
            for k in range(n_in):
                w[k] += d0 * a0[k]
                v[k] += e0 * a0[k]
    if with_bias:
        bias_step(delta, scale, beta_b, b, j_start, j_stop)


@njit(cache=True, fastmath=FASTMATH)
def bias_step(delta, scale, beta_b, b, j_start, j_stop):
    """BP3 summed over the batch: b[j] = beta_b b[j] + scale sum_x delta[x, j] for j_start <= j < j_stop (b[j] is
    overwritten where beta_b is 0); delta (m, n_out), b (n_out,)."""
    s = b.dtype.type(scale)
    for j in range(j_start, j_stop):
        total = b.dtype.type(0)
        for x in range(delta.shape[0]):
            total += delta[x, j]
        b[j] = s * total if beta_b == 0 else b.dtype.type(beta_b) * b[j] + s * total


def _accumulate_bp34(delta, A_prev, x_scale, rows, scale, beta_w, beta_b, W, b, g_start, g_stop):
    """BP3 and BP4 for a batch (see ``accumulate_bp34_units``) into the rows of groups g_start .. g_stop-1 of
    four, one group per parallel iteration and, for large batches, blocks of examples that stay in cache (beta_w
    and beta_b apply with the first block)."""
    n_out, n_in = W.shape
    m = rows.shape[0]
    xb = example_block(m, n_in, W.itemsize)
    for x0 in range(0, m, xb):
        x1 = min(x0 + xb, m)
        bw, bb = (beta_w, beta_b) if x0 == 0 else (1.0, 1.0)
        for g in prange(g_start, g_stop):
            accumulate_bp34_units(delta[x0:x1], A_prev, x_scale, rows[x0:x1], scale, bw, bb, W, b, 4 * g,
                                  min(4 * g + 4, n_out), np.int64(0), n_in, np.int64(0), np.bool_(True))


# Where mini-batches of at least ``transposed_min_batch`` examples fit one block (``layer1_transposed``), training
# keeps layer 1's weights transposed (``transposed``) for the length of an epoch call, on every path, and sums
# its weighted input in two halves of its inputs: H0 over k < h, H1 over k >= h (h = ``input_split``), then
# z = x_scale (H0 + H1) + b (``add_halves``). The one-region epoch (below) gives each half to a participant of its
# own, which then reads, prefetches and keeps in its core's cache only its half of every input row (reading ten
# rows of random examples took a core 4.0-4.4 us longer than reading ten cached ones, prefetched or not).
# Against the row-major kernels (4-unit x 2-example tiles, layer 1 cut by halves from m = 6 in float64 and 16 in
# float32), the book's network trained, on a 2-core Emerald Rapids Xeon (paired runs in one process, 1 / 2
# threads): float64 1.36-1.40x / 1.17x faster at m = 10, 1.18x / 1.11x at m = 32, 1.24x / 1.15x at m = 6,
# 1.08x / 1.11x at m = 4, 1.01x / 0.99x at m = 2; float32 1.19-1.22x / 1.19-1.23x at m = 10, 1.24x / 1.18x at
# m = 32, 1.13x / 1.03x at m = 6, 1.32x / 1.30x at m = 5, 1.10x / 1.18x at m = 4 and 1.45x at m = 2 (once subnormal
# deltas were left out: ``transposed.scaled_deltas``).
TRANSPOSED_MIN_BATCH = 2  # float32
TRANSPOSED_MIN_BATCH_FLOAT64 = 4


@njit(cache=True)
def transposed_min_batch(itemsize):
    """The smallest mini-batch whose layer 1 trains transposed, for weights of ``itemsize`` bytes (see
    TRANSPOSED_MIN_BATCH)."""
    return TRANSPOSED_MIN_BATCH_FLOAT64 if itemsize == 8 else TRANSPOSED_MIN_BATCH


@njit(cache=True)
def input_split(n_in, itemsize):
    """Where layer 1's n_in inputs are cut in two: the middle, rounded down to a whole cache line of inputs of
    ``itemsize`` bytes (the middle itself where half the inputs fill less than a line)."""
    per_line = max(1, 64 // itemsize)
    h = n_in // 2 // per_line * per_line
    return h if h > 0 else n_in // 2


@njit(cache=True)
def add_halves(H0, H1, x_scale, b, Z):
    """Layer 1's z from its two half-sums: Z = x_scale (H0 + H1) + b; H0, H1 (m, >= n_1) and Z (m, n_1)
    C-contiguous, b (n_1,). Without fast-math, so that these roundings are the same wherever it is inlined. Row by
    row over contiguous rows, which LLVM vectorises (2.2-2.4x faster than over a column slice of H at the book's
    m = 10, same bits)."""
    xs, n = Z.dtype.type(x_scale), Z.shape[1]
    for x in range(Z.shape[0]):
        h0, h1, z = H0[x], H1[x], Z[x]
        for j in range(n):
            z[j] = (h0[j] + h1[j]) * xs + b[j]


@njit(cache=True)
def add_transposed_halves(T, x_scale, b, Z, x0, x1):
    """Rows x0 .. x1-1 of layer 1's z from the half-sums in its transposed state T (``transposed``): Z (m, n_1)."""
    H = T[1]
    m_cap = H.shape[0] // 2
    add_halves(H[x0:x1], H[m_cap + x0:m_cap + x1], x_scale, b, Z[x0:x1])


def batch_inputs(X, rows, S, ident):
    """(A, rows') such that A[rows'[x]] holds the inputs X[rows[x]] in the weights' float type: X and rows
    themselves where X has that type, else the float copy S (m, n_0) (``stage_rows``) and ident[:m]."""


@overload(batch_inputs)
def _batch_inputs(X, rows, S, ident):
    if X.dtype == S.dtype:
        return lambda X, rows, S, ident: (X, rows)
    return lambda X, rows, S, ident: (S, ident[:rows.shape[0]])


def stages_inputs(X, W):
    """Whether layer 1 trains on float copies of its inputs (``stage_rows``): where X's type is not W's."""


@overload(stages_inputs)
def _stages_inputs(X, W):
    staged = X.dtype != W.dtype
    return lambda X, W: staged


@njit(cache=True)
def transposed(W, X, m, n_parts):
    """Layer 1's state while it trains transposed, for mini-batches of up to m examples in n_parts shares:
    (WT, H, D, S), each starting a cache line:
    WT (n_0, n_pad) its weights (``transposed_weights``, tiles of 30 float64 units in pairs of rows from each
    half's first input: ``paired``); H (2 m, n_pad) the sums over each half of the inputs
    (half c in rows c m ..); D (n_parts m, n_pad) each share's scaled deltas; S (2 n_parts m, n_0') each share's
    float copies of two mini-batches' inputs (mini-batch t in rows (2 r + t % 2) m ..; n_0' = n_0 rounded up to a
    cache line) where the inputs are not of W's type (``stages_inputs``), else S has no rows."""
    n_pad = padded_units(W.shape[0])
    n_rows_s = 2 * n_parts * m if stages_inputs(X, W) else 0
    WT = transposed_weights(W)
    pair_rows(WT, W.shape[0], input_split(W.shape[1], X.itemsize))
    return WT, aligned_matrix(2 * m, n_pad, W), aligned_matrix(n_parts * m, n_pad, W), input_copies(n_rows_s, W)


@njit(cache=True)
def untransposed(T, W, X):
    """Put layer 1's weights back from its transposed state T (``transposed``) into W (n_1, n_0); X: its inputs.
    T's weights are left in the layout of ``transposed_weights``."""
    unpair_rows(T[0], W.shape[0], input_split(W.shape[1], X.itemsize))
    untranspose(T[0], W)


@njit(cache=True)
def input_copies(n_rows, W):
    """Room for float copies of n_rows rows of layer 1's inputs (``stage_rows``): (n_rows, n_0') of W's type,
    n_0' = n_0 rounded up to a cache line, from a line; W (n_1, n_0)."""
    return lines_of_rows(n_rows, W.shape[1], W)


@njit(cache=True)
def lines_of_rows(n_rows, n_cols, like):
    """An uninitialised (n_rows, n_cols') array of ``like``'s dtype, n_cols' = n_cols rounded up to a cache line,
    from a line: each row starts a line of its own."""
    per_line = max(1, 64 // like.itemsize)
    return aligned_matrix(n_rows, (n_cols + per_line - 1) // per_line * per_line, like)


@njit(cache=True)
def no_transposed(W):
    """A state of ``transposed``'s types with nothing in it, for paths that keep W as it is."""
    return (np.empty((0, 0), W.dtype), np.empty((0, 0), W.dtype), np.empty((0, 0), W.dtype),
            np.empty((0, 0), W.dtype))


@njit(cache=True)
def transposed_cells(WT):
    """How many cells layer 1's transposed step has: (half of the inputs, LANES units), half-major."""
    return 2 * (WT.shape[1] // LANES)


@njit(cache=True)
def transposed_cell(cell, WT, h):
    """Cell ``cell`` of ``transposed_cells``: (half c, first unit u0, first input k0, end of inputs k1), for inputs
    cut at h (``input_split``)."""
    n_chunks = WT.shape[1] // LANES
    c, u = cell // n_chunks, cell % n_chunks
    return c, u * LANES, (0 if c == 0 else h), (h if c == 0 else WT.shape[0])


@njit(cache=True)
def transposed_first_sums(T, X, rows, batch, n_parts, n_out):
    """The half-sums of layer 1 (state T, ``transposed``) for mini-batch ``batch``, X[rows], before its first
    step: every share's float copy of those inputs (where it keeps one), then every cell's sums; n_out: layer 1's
    units."""
    WT, H, D, S = T
    m_cap = H.shape[0] // 2
    m, n_in = rows.shape[0], WT.shape[0]
    ident = np.arange(m)
    if S.shape[0] > 0:
        for r in range(n_parts):
            stage_rows(X, rows, 0, n_in, S[(2 * r + batch % 2) * m_cap:(2 * r + batch % 2) * m_cap + m])
    o = (batch % 2) * m_cap
    A, A_rows = batch_inputs(X, rows, S[o:o + m], ident)
    h = input_split(n_in, X.itemsize)
    for cell in range(transposed_cells(WT)):
        c, u0, k0, k1 = transposed_cell(cell, WT, h)
        cell_sums(WT, A, A_rows, H[c * m_cap:c * m_cap + m], k0, k1, u0, n_out)


@njit(cache=True)
def transposed_step(T, b, X, x_scale, rows, delta, scale, beta_w, rows_next, batch, ident, r, n_parts,
                    steps_bias):
    """Share r of n_parts of layer 1's step on its transposed state T (``transposed``): the cells (half c, units
    u .. u + LANES - 1) c-major, cut evenly. Each cell updates its weights for the batch X[rows] (BP4; BP3 with
    the first half), then sums its units over its half of the inputs X[rows_next] into H, where its share first
    makes its float copy of those inputs (where it keeps one). The update of the share's first cell of each half
    asks for those inputs as it goes (``update_weights``): in paired runs on a 2-core Zen 4 (same bits) the
    book's network then trained 1.07x faster on two threads and 1.04x on one in float64 at m = 10, 1.10x and
    1.05x in float32, 1.02x (float64) and 1.17x (float32) on two threads at m = 32; 8-bit inputs, which had been
    asked for all at once a mini-batch ahead, 1.06x and 1.00x in float64, 1.03x and 1.03x in float32.
    b (n_1,), delta (m, n_1) layer 1's; ident = arange(>= m); the bias only where ``steps_bias``."""
    WT, H, D, S = T
    m_cap, n_in = H.shape[0] // 2, WT.shape[0]
    m, m_next, n_out = rows.shape[0], rows_next.shape[0], b.shape[0]
    n_cells = transposed_cells(WT)
    c_lo, c_hi = r * n_cells // n_parts, (r + 1) * n_cells // n_parts
    if c_lo >= c_hi:
        return
    h = input_split(n_in, X.itemsize)
    Dr = D[r * m_cap:r * m_cap + m]
    scaled_deltas(delta, scale * x_scale, Dr)
    cur, nxt = (2 * r + batch % 2) * m_cap, (2 * r + (batch + 1) % 2) * m_cap
    A, A_rows = batch_inputs(X, rows, S[cur:cur + m], ident)
    A_next, A_next_rows = batch_inputs(X, rows_next, S[nxt:nxt + m_next], ident)
    for cell in range(c_lo, c_hi):
        c, u0, k0, k1 = transposed_cell(cell, WT, h)
        ahead = rows_next if cell == c_lo or u0 == 0 else rows_next[:0]
        cell_update(WT, A, A_rows, Dr, k0, k1, u0, beta_w, X, ahead, n_out)
        if c == 0 and steps_bias:
            bias_step(delta, scale, 1.0, b, u0, min(n_out, u0 + LANES))
        if S.shape[0] > 0 and (cell == c_lo or u0 == 0):
            stage_rows(X, rows_next, k0, k1, S[nxt:nxt + m_next])
        cell_sums(WT, A_next, A_next_rows, H[c * m_cap:c * m_cap + m_next], k0, k1, u0, n_out)


@njit(cache=True)
def update_and_forward_group(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, rows_ahead, g, n_groups):
    """Group g of n_groups (units 4g .. 4g+3) of ``_update_and_forward_layer1``; it also asks for its part of the
    inputs X[rows_ahead]."""
    n_in = W.shape[1]
    j0, j1 = 4 * g, min(4 * g + 4, W.shape[0])
    prefetch_share(X, rows_ahead, 0, n_in, g, n_groups)
    zero = np.int64(0)  # int64 and bool, not literal constants: Numba compiles a callee once per literal value
    accumulate_bp34_units(delta, X, x_scale, rows, scale, beta_w, 1.0, W, b, j0, j1, zero, n_in, zero, np.bool_(True))
    partial_input_units(W, b, X, x_scale, rows_next, Z, j0, j1, zero, n_in, zero, np.bool_(True))


def staged_update_and_forward(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, S, ident, g0, g1):
    """Layer 1's SGD step (BP3, BP4) for the batch X[rows], then its weighted input for X[rows_next] into Z, for
    the units of groups g0 .. g1-1 of four, where the inputs are integers and the two run one after the other
    (``layer1_fuses`` is false; layer 1 not transposed): block by block of examples (``example_block``), each
    block's rows first copied as floats into S (>= block, >= n_0) (``stage_rows``), so that the tiles read floats
    instead of converting each input. Every path takes it alike, so the bits still do not depend on the thread
    count; against the tiles that convert, a few z may differ in their last bit (LLVM vectorises a tile's sums in
    an order that may depend on the inputs' type). delta (m, n_1), Z (m', n_1), ident = arange(>= m, m'). Serial:
    where plain SGD runs on several threads, such a layer 1 always has the work of the one-region epoch
    (``one_region_applies``), whose participants call this for their shares.

    On [784, 256, 128, 10] at m = 128 (paired runs) the 8-bit pixels trained 1.20x faster in float32 and 1.14x in
    float64 on two threads (1.28x and 1.06x on one) than converted inside the tiles, as fast as float inputs.
    Compiled only for integer inputs (float inputs are never copied: ``layer1_state``): compiled for every input
    type, it added 3 s to the cold compile of every process."""


@overload(staged_update_and_forward)
def _staged_update_and_forward(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, S, ident, g0, g1):
    if X.dtype == W.dtype:
        return lambda W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, S, ident, g0, g1: None

    def staged(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, S, ident, g0, g1):
        n_in = W.shape[1]
        for step in range(2):
            batch = rows if step == 0 else rows_next
            m = batch.shape[0]
            xb = example_block(m, n_in, W.itemsize)
            for x0 in range(0, m, xb):
                x1 = min(x0 + xb, m)
                stage_rows(X, batch[x0:x1], 0, n_in, S)
                if step == 0:
                    bw = beta_w if x0 == 0 else 1.0
                    accumulate_bp34(delta[x0:x1], S, x_scale, ident[:x1 - x0], scale, bw, 1.0, W, b, g0, g1)
                else:
                    weighted_input(W, b, S, x_scale, ident[:x1 - x0], Z[x0:x1], g0, g1)
    return staged


def _update_and_forward_layer1(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, rows_ahead):
    """Layer 1's SGD update for this batch fused with its weighted input for the next one:

    W[J] = beta_w W[J] + scale sum_x delta[x, J] (x_scale X[rows[x]])^T, b[J] += scale sum_x delta[x, J]
    Z[:, J] = W[J] (x_scale X[rows_next])^T + b[J]                                    (BP3, BP4; eq. 25)

    W (n_1, n_0), b (n_1,), X (n, n_0), rows (m,), delta (m, n_1), rows_next (m'), Z (m', n_1) output. Both
    batches fit one block of examples (``example_block``). A group of four units J is read and written only by
    the iteration that owns it, so one parallel region covers layer 1's update and its next forward pass, and
    meanwhile asks for the inputs X[rows_ahead] of the batch after next.
    """
    n_groups = unit_groups(W)
    for g in prange(n_groups):
        update_and_forward_group(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, rows_ahead, g, n_groups)


def _backpropagate(W_next, delta_next, delta):
    """BP2 before the sigma' factor: delta[x, k] = sum_j W_next[j, k] delta_next[x, j].

    W_next (n_next, n), delta_next (m, n_next), delta (m, n) output. Two examples at a time, each owning its
    output rows; each loaded weight serves both (measured 1.2x to 3.5x over one example at a time).
    """
    n_next, n = W_next.shape
    m = delta.shape[0]
    for p in prange((m + 1) // 2):
        x = 2 * p
        y = min(x + 1, m - 1)  # y == x for the last example of an odd count: its second lane is masked
        live = W_next.dtype.type(1 if y != x else 0)
        out, out2 = delta[x], delta[y]
        out[:] = 0
        out2[:] = 0
        j = 0
        while j + 4 <= n_next:
            d0, d1, d2, d3 = delta_next[x, j], delta_next[x, j + 1], delta_next[x, j + 2], delta_next[x, j + 3]
            e0, e1 = live * delta_next[y, j], live * delta_next[y, j + 1]
            e2, e3 = live * delta_next[y, j + 2], live * delta_next[y, j + 3]
            w0, w1, w2, w3 = W_next[j], W_next[j + 1], W_next[j + 2], W_next[j + 3]
            for k in range(n):
                out[k] += w0[k] * d0 + w1[k] * d1 + w2[k] * d2 + w3[k] * d3
                out2[k] += w0[k] * e0 + w1[k] * e1 + w2[k] * e2 + w3[k] * e3
            j += 4
        while j < n_next:
            d0, e0 = delta_next[x, j], live * delta_next[y, j]
            w0 = W_next[j]
            for k in range(n):
                out[k] += w0[k] * d0
                out2[k] += w0[k] * e0
            j += 1


def serial_and_parallel(func):
    """``func`` compiled twice: without and with ``parallel=True`` (prange becomes range in the first).

    Numba names a function's disk cache after the function, not after its compile options, so the same
    function under both options would share one cache and a new process would load whichever version was
    written last for both. The parallel one is therefore compiled from a renamed copy with a cache of its own.
    """
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_par", func.__defaults__,
                              func.__closure__)
    twin.__qualname__ = func.__qualname__ + "_par"
    return (njit(cache=True, fastmath=FASTMATH)(func),
            njit(cache=True, fastmath=FASTMATH, parallel=True)(twin))


weighted_input, weighted_input_par = serial_and_parallel(_weighted_input)
accumulate_bp34, accumulate_bp34_par = serial_and_parallel(_accumulate_bp34)
backpropagate, backpropagate_par = serial_and_parallel(_backpropagate)


# ------------------------------------------------------------------------------------------ exp
# exp(x) and exp(x) - 1 in straight-line float64 arithmetic, so that LLVM can vectorise a loop that calls them
# (the sigmoid and tanh activations).
#
# ``np.exp`` inside a Numba loop is one call into the C library per element (about 10 ns for a sigmoid at the
# book's setup); this version has no call and no branch, so a loop over a row of units runs 4 (float64) or more
# values per instruction: the sigmoid of a (10, 30) block measured 1.2 us against 2.8-3.1 us with ``np.exp``.
# Two details below keep the vectorised loop short: n is read from the bits of a sum rather than converted from
# float to integer (AVX2 has no 4-lane conversion, so LLVM did it one lane at a time), and the polynomial is a
# shallow tree rather than one long chain; together 1.2-1.4x faster again (sigmoid of (10, 30) and (128, 256)).
#
# Method: exp(x) = 2^n exp(r) with n = round(x / ln 2) and r = x - n ln 2 (ln 2 split in two parts, so r is exact
# to about 1e-20), |r| <= ln2 / 2; exp(r) by its Taylor polynomial to degree 13 (truncation error below 2e-17),
# and 2^n built from its bits. Against NumPy (tests/test_exp.py): exp and expm1 within 2 units in the last place,
# the sigmoid 1 / (1 + exp(-z)) within 4 (float64) and 2 (float32, computed through float64), tanh within 4 and 1.
#
# Limits: NaN gives NaN, x > 709.78 gives inf, as with ``np.exp``; below -708 the result stays at exp(-708) ~ 3e-308
# where ``np.exp`` returns subnormal numbers or 0 (1 + exp(x) is exactly 1 in both cases).
#
# It lives here rather than in a module of its own because Numba's disk cache of a kernel is invalidated
# by a change of the kernel's own file only, not of the files its callees come from.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 = _LN2_HI + _LN2_LO; n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_X_MIN, _X_MAX = -708.0, 709.782712893384  # exp(_X_MAX) is the largest float64
_ROUND_SHIFT = 6755399441055744.0  # 1.5 * 2^52


@intrinsic
def _same_bits(typingctx, x):
    """The int64 with the IEEE-754 bits of the float64 ``x``, or the float64 with the bits of the int64 ``x``."""
    other = {nbtypes.float64: nbtypes.int64, nbtypes.int64: nbtypes.float64}.get(x)
    if other is None:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))
    return other(x), codegen


@njit(cache=True, fastmath={"contract"})
def _exp_reduced(x):
    """(s, r, h) with exp(x) = 1 + s r exactly as far as the polynomial goes, times 2 h (h = 2^(n-1)); x is
    clamped to [_X_MIN, _X_MAX]."""
    xc = min(max(x, _X_MIN), _X_MAX)
    # n = x / ln 2 rounded to an integer by adding 1.5 * 2^52: the sum's low bits are then n itself (two's
    # complement), read below without a float-to-integer conversion, which AVX2 lacks for 4 lanes.
    t = xc * _LOG2E + _ROUND_SHIFT
    n = t - _ROUND_SHIFT
    r = (xc - n * _LN2_HI) - n * _LN2_LO
    # s = sum_{i=0}^{12} r^i / (i+1)! (so exp(r) = 1 + s r): the terms from r^3 on by Estrin's scheme (pairs
    # in a tree, three levels deep), the first three by Horner's rule, which keeps the last roundings small.
    # Twelve dependent multiply-adds become six, so a vectorised loop overlaps more of its iterations.
    r2 = r * r
    r4 = r2 * r2
    q0 = (1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5040.0))
    q1 = (1.0 / 40320.0 + r * (1.0 / 362880.0)) + r2 * (1.0 / 3628800.0 + r * (1.0 / 39916800.0))
    q2 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0)
    s = 1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (q0 + r4 * (q1 + r4 * q2))))
    # 2^n as 2^(n-1) * 2: n reaches 1024 near the top of the range, one more than a float64 exponent holds.
    return s, r, _same_bits((_same_bits(t) + 1022) << 52)  # the shift leaves only n + 1022


@njit(cache=True, fastmath={"contract"})
def exp_branch_free(x):
    """exp of a float64 scalar (accuracy and limits in the comment above)."""
    s, r, h = _exp_reduced(x)
    y = (s * r + 1.0) * h * 2.0
    y = np.inf if x > _X_MAX else y
    return x if x != x else y


@njit(cache=True, fastmath={"contract"})
def expm1_branch_free(x):
    """exp(x) - 1 of a float64 scalar, accurate to a few units in the last place also where it is near 0
    (2^n (e^r - 1) + (2^n - 1): no 1 is added and then taken away). Limits as ``exp_branch_free``; +-0 and
    NaN are returned as they are."""
    s, r, h = _exp_reduced(x)
    y = ((s * r) * h + (h - 0.5)) * 2.0  # the factor 2 last: 2^n itself overflows where n = 1024
    y = np.inf if x > _X_MAX else y
    return x if (x != x or x == 0.0) else y


# ------------------------------------------------------------------------------ elementwise kernels
@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def sigmoid_units(Z, A, j_start, j_stop):
    """a = 1 / (1 + e^-z) for units j_start <= j < j_stop of one layer's block; Z, A (m, n).

    e^-z in float64 by ``exp_branch_free``, so that LLVM vectorises the loop over a row; the numpy error model
    drops the division's check for a zero divisor (1 + e^-z >= 1), which would also stop it."""
    one = Z.dtype.type(1)
    for x in range(Z.shape[0]):
        z, a = Z[x, j_start:j_stop], A[x, j_start:j_stop]
        for j in range(z.shape[0]):
            a[j] = one / (one + Z.dtype.type(exp_branch_free(-np.float64(z[j]))))


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def tanh_units(Z, A, j_start, j_stop):
    """a = tanh(z) = -t / (t + 2) with t = e^(-2|z|) - 1, and z's sign, for units j_start <= j < j_stop of one
    layer's block; Z, A (m, n). Vectorised as ``sigmoid_units`` (``np.tanh`` is one C-library call per value)."""
    for x in range(Z.shape[0]):
        z, a = Z[x, j_start:j_stop], A[x, j_start:j_stop]
        for j in range(z.shape[0]):
            v = np.float64(z[j])
            t = expm1_branch_free(-2.0 * abs(v))
            a[j] = Z.dtype.type(math.copysign(-t / (t + 2.0), v))


@njit(cache=True)
def activate_units(code, Z, A, j_start, j_stop):
    """a = sigma(z) for units j_start <= j < j_stop of one layer's block; Z, A (m, n).
    (Softmax couples a row's units: it needs the whole row, j_start = 0 and j_stop = n.)"""
    m = Z.shape[0]
    if code == SIGMOID:
        sigmoid_units(Z, A, j_start, j_stop)
    elif code == TANH:
        tanh_units(Z, A, j_start, j_stop)
    elif code == RELU:
        for x in range(m):
            for j in range(j_start, j_stop):
                A[x, j] = max(Z[x, j], Z.dtype.type(0))
    elif code == LINEAR:
        for x in range(m):
            for j in range(j_start, j_stop):
                A[x, j] = Z[x, j]
    elif code == SOFTMAX:
        for x in range(m):
            # Shifting by the row maximum keeps exp() finite; the softmax itself is unchanged.
            top = Z[x, j_start]
            for j in range(j_start + 1, j_stop):
                top = max(top, Z[x, j])
            total = Z.dtype.type(0)
            for j in range(j_start, j_stop):
                A[x, j] = np.exp(Z[x, j] - top)
                total += A[x, j]
            for j in range(j_start, j_stop):
                A[x, j] /= total
    else:
        for x in range(m):
            for j in range(j_start, j_stop):
                A[x, j] = custom_f(Z[x, j])


@njit(cache=True)
def activate(code, Z, A):
    """a = sigma(z) for one layer's block; Z, A (m, n) C-contiguous. Elementwise activations run over the block
    as one row of m n values: a vectorised loop then has one remainder, not one per row."""
    if code == SOFTMAX:
        activate_units(code, Z, A, 0, Z.shape[1])
    else:
        activate_units(code, matrix_view(Z, 0, 1, Z.size), matrix_view(A, 0, 1, A.size), 0, Z.size)


@njit(cache=True)
def times_sigma_prime(code, Z, A, delta):
    """delta *= sigma'(z), written through a = sigma(z) where that is cheaper. Z, A, delta (m, n)."""
    m, n = Z.shape
    one = Z.dtype.type(1)
    if code == SIGMOID:
        for x in range(m):
            for j in range(n):
                delta[x, j] *= A[x, j] * (one - A[x, j])
    elif code == TANH:
        for x in range(m):
            for j in range(n):
                delta[x, j] *= one - A[x, j] * A[x, j]
    elif code == RELU:
        for x in range(m):
            for j in range(n):
                if Z[x, j] <= 0:
                    delta[x, j] = 0
    elif code != LINEAR and code != SOFTMAX:  # CUSTOM
        for x in range(m):
            for j in range(n):
                delta[x, j] *= custom_f_prime(Z[x, j])
    # LINEAR: sigma' = 1. SOFTMAX only occurs on the output layer, handled by output_delta.


# An elementwise pass runs in parallel when ELEMENTWISE_COST * elements reaches the threshold of the products
# (``model.PARALLEL_MIN_WORK``): from 16,384 elements (an activation costs about as much as 32 multiply-adds,
# an exp against a fused multiply-add; the rest is what a region costs against the products' regions).
ELEMENTWISE_COST = 128
ROWS_PER_CHUNK = 8


def _activate_rows(code, Z, A):
    """``activate`` in parallel over chunks of rows (each row is independent, softmax included)."""
    m = Z.shape[0]
    for c in prange((m + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK):
        x0 = c * ROWS_PER_CHUNK
        activate(code, Z[x0:x0 + ROWS_PER_CHUNK], A[x0:x0 + ROWS_PER_CHUNK])


def _times_sigma_prime_rows(code, Z, A, delta):
    """``times_sigma_prime`` in parallel over chunks of rows."""
    m = Z.shape[0]
    for c in prange((m + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK):
        x0 = c * ROWS_PER_CHUNK
        times_sigma_prime(code, Z[x0:x0 + ROWS_PER_CHUNK], A[x0:x0 + ROWS_PER_CHUNK], delta[x0:x0 + ROWS_PER_CHUNK])


activate_par = njit(cache=True, parallel=True)(_activate_rows)
times_sigma_prime_par = njit(cache=True, parallel=True)(_times_sigma_prime_rows)


@njit(cache=True)
def activate_block(code, Z, A, n_par_min):
    """a = sigma(z) for a layer's (m, n) block, in parallel when it is large (see ELEMENTWISE_COST)."""
    if ELEMENTWISE_COST * Z.size >= n_par_min:
        activate_par(code, Z, A)
    else:
        activate(code, Z, A)


@njit(cache=True)
def times_sigma_prime_block(code, Z, A, delta, n_par_min):
    """delta *= sigma'(z) for a layer's (m, n) block, in parallel when it is large (see ELEMENTWISE_COST)."""
    if ELEMENTWISE_COST * Z.size >= n_par_min:
        times_sigma_prime_par(code, Z, A, delta)
    else:
        times_sigma_prime(code, Z, A, delta)


@njit(cache=True)
def output_delta(act_code, cost_code, Z, A, Y, rows, delta):
    """BP1: delta^L = grad_a C (.) sigma'(z^L) for a batch; Z, A, delta (m, n_L), Y (*, n_L) read at rows."""
    m, n = A.shape
    one = A.dtype.type(1)
    if (cost_code == CROSS_ENTROPY and act_code == SIGMOID) or \
            (cost_code == LOG_LIKELIHOOD and act_code == SOFTMAX):
        # sigma' cancels against the cost's denominator (the book's eqs. 66 and 81): delta = a - y exactly.
        for x in range(m):
            y = Y[rows[x]]
            for j in range(n):
                delta[x, j] = A[x, j] - y[j]
        return
    for x in range(m):
        y = Y[rows[x]]
        for j in range(n):
            a = A[x, j]
            if cost_code == QUADRATIC:
                delta[x, j] = a - y[j]
            elif cost_code == CROSS_ENTROPY:
                delta[x, j] = (a - y[j]) / (a * (one - a))
            else:
                delta[x, j] = -y[j] / a
    if act_code == SOFTMAX:
        # The softmax couples a row's outputs: delta_j = a_j (g_j - sum_i g_i a_i) with g = grad_a C.
        for x in range(m):
            dot = A.dtype.type(0)
            for j in range(n):
                dot += delta[x, j] * A[x, j]
            for j in range(n):
                delta[x, j] = A[x, j] * (delta[x, j] - dot)
    else:
        times_sigma_prime(act_code, Z, A, delta)


@njit(cache=True)
def cost_sum(cost_code, A, Y, rows):
    """Sum over the batch of the per-example cost C_x. A (m, n_L), Y (*, n_L) read at rows. Returns float64."""
    m, n = A.shape
    total = 0.0
    largest = np.finfo(np.float64).max
    for x in range(m):
        y = Y[rows[x]]
        for j in range(n):
            a, t = np.float64(A[x, j]), np.float64(y[j])
            if cost_code == QUADRATIC:
                total += 0.5 * (a - t) ** 2
            elif cost_code == CROSS_ENTROPY:
                # As network2's np.nan_to_num: 0*log(0) counts 0, log(0) counts as the largest float.
                c = -t * np.log(a) - (1.0 - t) * np.log(1.0 - a)
                if np.isnan(c):
                    c = 0.0
                elif np.isinf(c):
                    c = largest
                total += c
            elif t != 0.0:
                total -= t * np.log(a)
    return total


# ------------------------------------------------------------------------------------ network passes
# Layer 1 reads the data X (float or integer-coded), the layers above read float activations: each layer goes
# through these two helpers, compiled for either kind of input, rather than through one variable of two types.
@njit(cache=True)
def layer_forward(W, b, A_prev, x_scale, rows, Z, n_par_min):
    """Z = x_scale A_prev[rows] W^T + b (eq. 25), in parallel when the layer's work reaches n_par_min."""
    n_groups = unit_groups(W)
    if rows.shape[0] * W.size >= n_par_min:
        weighted_input_par(W, b, A_prev, x_scale, rows, Z, 0, n_groups)
    else:
        weighted_input(W, b, A_prev, x_scale, rows, Z, 0, n_groups)


@njit(cache=True)
def layer_bp34(delta, A_prev, x_scale, rows, scale, beta_w, beta_b, W, b, n_par_min):
    """BP3/BP4 of one layer into (W, b) (see ``accumulate_bp34_units``), in parallel when its work is large."""
    n_groups = unit_groups(W)
    if rows.shape[0] * W.size >= n_par_min:
        accumulate_bp34_par(delta, A_prev, x_scale, rows, scale, beta_w, beta_b, W, b, 0, n_groups)
    else:
        accumulate_bp34(delta, A_prev, x_scale, rows, scale, beta_w, beta_b, W, b, 0, n_groups)


# Layers above the first read and write blocks of ``ws`` (C-contiguous, the weights' type): where their weights
# are small (``small_layer``) they take ``small_layers``' kernels on every path, else the row-major tiles.
SERIAL = 1 << 62  # an n_par_min that no layer's work reaches: inside a parallel region


@njit(cache=True)
def upper_forward(W, b, A_prev, Z, ident, x0, x1, n_par_min):
    """Eq. 25 for examples x0 <= x < x1 of a layer above the first: Z = A_prev W^T + b; A_prev (m, n_in),
    Z (m, n_out) its blocks of ``ws``, ident = arange(>= x1)."""
    if small_layer(W):
        small_forward(W, b, A_prev, Z, x0, x1)
    elif (x1 - x0) * W.size >= n_par_min:
        weighted_input_par(W, b, A_prev, 1.0, ident[x0:x1], Z[x0:x1], 0, unit_groups(W))
    else:
        weighted_input(W, b, A_prev, 1.0, ident[x0:x1], Z[x0:x1], 0, unit_groups(W))


@njit(cache=True)
def upper_backprop(W_next, delta_next, delta, x0, x1, n_par_min):
    """BP2 before the sigma' factor for examples x0 <= x < x1 (``_backpropagate``); W_next (n_next, n) a layer
    above the first, delta_next (m, n_next), delta (m, n) blocks of ``ws``."""
    if small_layer(W_next):
        small_backprop(W_next, delta_next, delta, x0, x1)
    elif (x1 - x0) * W_next.size >= n_par_min:
        backpropagate_par(W_next, delta_next[x0:x1], delta[x0:x1])
    else:
        backpropagate(W_next, delta_next[x0:x1], delta[x0:x1])


@njit(cache=True)
def upper_bp34(delta, A_prev, ident, scale, beta_w, beta_b, W, b, g0, g1, n_par_min):
    """BP3/BP4 of a layer above the first (``accumulate_bp34_units``) for its groups of four units g0 .. g1-1;
    delta (m, n_out), A_prev (m, n_in) blocks of ``ws``, ident = arange(>= m)."""
    m = delta.shape[0]
    if small_layer(W):
        j0, j1 = min(4 * g0, W.shape[0]), min(4 * g1, W.shape[0])
        small_bp34(delta, A_prev, scale, beta_w, W, j0, j1)
        bias_step(delta, scale, beta_b, b, j0, j1)
    elif m * W.size >= n_par_min:
        accumulate_bp34_par(delta, A_prev, 1.0, ident[:m], scale, beta_w, beta_b, W, b, g0, g1)
    else:
        accumulate_bp34(delta, A_prev, 1.0, ident[:m], scale, beta_w, beta_b, W, b, g0, g1)


@njit(cache=True)
def feedforward(theta, layout, X, x_scale, rows, ws, n_par_min, first_layer=1, last_layer=-1):
    """Eq. 25 through layers first_layer .. last_layer (-1: L) for the batch X[rows]; fills the z and a blocks
    of ``ws`` (from first_layer = 2 on, layer 1's a block must already hold the batch's activations).

    X (n, n_0) inputs x_scale * X, rows (m,) int64. Layers whose m*n_in*n_out reaches n_par_min run in parallel.
    """
    m = rows.shape[0]
    ident = np.arange(m)
    stop = layout.shape[0] if last_layer < 0 else last_layer + 1
    for l in range(first_layer, stop):
        W, b = weight(theta, layout, l), bias(theta, layout, l)
        Z, A = block(ws, layout, l, Z_PART, m), block(ws, layout, l, A_PART, m)
        if l == 1:
            layer_forward(W, b, X, x_scale, rows, Z, n_par_min)
        else:
            upper_forward(W, b, block(ws, layout, l - 1, A_PART, m), Z, ident, 0, m, n_par_min)
        activate_block(layout[l, ACT], Z, A, n_par_min)


@njit(cache=True)
def backward(theta, layout, cost_code, Y, rows, ws, n_par_min):
    """BP1 then BP2 down to layer 1: fills the delta blocks of ``ws`` (after ``feedforward`` on the same rows)."""
    m = rows.shape[0]
    L = layout.shape[0] - 1
    output_delta(layout[L, ACT], cost_code, block(ws, layout, L, Z_PART, m), block(ws, layout, L, A_PART, m),
                 Y, rows, block(ws, layout, L, DELTA_PART, m))  # BP1
    for l in range(L - 1, 0, -1):  # BP2
        delta = block(ws, layout, l, DELTA_PART, m)
        upper_backprop(weight(theta, layout, l + 1), block(ws, layout, l + 1, DELTA_PART, m), delta, 0, m, n_par_min)
        times_sigma_prime_block(layout[l, ACT], block(ws, layout, l, Z_PART, m), block(ws, layout, l, A_PART, m),
                                delta, n_par_min)


@njit(cache=True)
def add_gradient(out, layout, X, x_scale, rows, ws, scale, beta_w, beta_b, n_par_min, first_layer=1):
    """BP3/BP4 for layers first_layer .. L into ``out`` (theta's layout): out_w = beta_w out_w + scale sum_x
    delta a^T, out_b = beta_b out_b + scale sum_x delta. Reads the a and delta blocks left by feedforward and
    backward."""
    m = rows.shape[0]
    ident = np.arange(m)
    for l in range(first_layer, layout.shape[0]):
        W, b = weight(out, layout, l), bias(out, layout, l)
        delta = block(ws, layout, l, DELTA_PART, m)
        if l == 1:
            layer_bp34(delta, X, x_scale, rows, scale, beta_w, beta_b, W, b, n_par_min)
        else:
            upper_bp34(delta, block(ws, layout, l - 1, A_PART, m), ident, scale, beta_w, beta_b, W, b, 0,
                       unit_groups(W), n_par_min)


update_and_forward_layer1, update_and_forward_layer1_par = serial_and_parallel(_update_and_forward_layer1)


# ---------------------------------------------------------------------------------------- optimizers
@njit(cache=True)
def optimizer_step(opt, theta, grad, state, hyper, layout):
    """One update of theta from the mean gradient ``grad`` (both theta's layout).

    opt: SGD, MOMENTUM, NESTEROV or ADAM; state (2, P) holds velocity (momentum) or the two moments (Adam);
    hyper (N_HYPER,) the scalars (ETA, L2 = lmbda/n, MU, BETA1, BETA2, EPS, ADAM_T; ADAM_T is advanced here).
    L2 regularisation adds lmbda/n * w to the weights' gradient (network2's rule), never to biases.
    """
    step = 0.0
    if opt == ADAM:
        hyper[ADAM_T] += 1.0
        step = adam_step_size(hyper, hyper[ADAM_T])
    for l in range(1, layout.shape[0]):
        step_units(opt, theta, grad, state, hyper, step, layout, l, 0, layout[l, N])


@njit(cache=True)
def adam_step_size(hyper, t):
    """Adam's step size for its update number t (a float): eta sqrt(1 - beta2^t) / (1 - beta1^t)."""
    return hyper[ETA] * np.sqrt(1.0 - hyper[BETA2] ** t) / (1.0 - hyper[BETA1] ** t)


@njit(cache=True)
def step_units(opt, theta, grad, state, hyper, step, layout, l, j0, j1):
    """``optimizer_step`` for units j0 .. j1-1 of layer l: their rows of weights, then their biases, each a slice
    of its own for ``step_values`` (SGD's state has one column: its slices are short, and never read)."""
    n_in, w0, b0 = layout[l - 1, N], layout[l, W_OFF], layout[l, B_OFF]
    for p0, p1, l2 in ((w0 + j0 * n_in, w0 + j1 * n_in, hyper[L2]), (b0 + j0, b0 + j1, 0.0)):
        step_values(opt, theta[p0:p1], grad[p0:p1], state[0, p0:p1], state[1, p0:p1], hyper, l2, step)


@njit(cache=True, error_model="numpy")
def step_values(opt, theta, grad, v, s, hyper, l2, step):
    """``optimizer_step`` on a slice of the parameters: theta, grad (n,), v and s (n,) the state's two rows (unread
    by SGD), l2 the L2 factor of these values (0 for biases), step Adam's step size for this update.

    One loop per optimizer over slices indexed from 0, which LLVM vectorises: indexed by offset into the whole
    vectors, with every optimizer's branch in the loop, it ran one value at a time (the book's network, float32:
    an update took 21 us with momentum and 72 us with Adam). NumPy's error model lets Adam's division vectorise
    (Python's checks each divisor for zero; Adam's is at least eps > 0). The arithmetic of each value is
    unchanged."""
    dt = theta.dtype.type
    eta, mu, c, decay = dt(hyper[ETA]), dt(hyper[MU]), dt(l2), l2 != 0.0
    n = theta.shape[0]
    if opt == SGD:
        for p in range(n):
            g = grad[p] + c * theta[p] if decay else grad[p]
            theta[p] -= eta * g
    elif opt == ADAM:
        b1, b2, eps, st = dt(hyper[BETA1]), dt(hyper[BETA2]), dt(hyper[EPS]), dt(step)
        for p in range(n):
            g = grad[p] + c * theta[p] if decay else grad[p]
            v[p] = b1 * v[p] + (1 - b1) * g
            s[p] = b2 * s[p] + (1 - b2) * g * g
            theta[p] -= st * v[p] / (np.sqrt(s[p]) + eps)
    elif opt == NESTEROV:
        for p in range(n):
            g = grad[p] + c * theta[p] if decay else grad[p]
            u = mu * v[p] - eta * g
            v[p] = u
            theta[p] += mu * u - eta * g
    else:
        for p in range(n):
            g = grad[p] + c * theta[p] if decay else grad[p]
            u = mu * v[p] - eta * g
            v[p] = u
            theta[p] += u


# -------------------------------------------------------------------------------------- entry points
@njit(cache=True)
def batch_gradient(theta, layout, cost_code, X, x_scale, Y, rows, scale, grad, ws, n_par_min):
    """grad += scale * sum over X[rows] of the per-example gradient; rows is processed in chunks that fit ws.

    With scale = 1/len(rows) and grad zeroed this is the mean gradient; across MPI ranks use scale = 1/m_global
    so one Allreduce of ``grad`` gives the global mean.
    """
    m_max = batch_capacity(ws, layout)
    for start in range(0, rows.shape[0], m_max):
        chunk = rows[start:start + m_max]
        feedforward(theta, layout, X, x_scale, chunk, ws, n_par_min)
        backward(theta, layout, cost_code, Y, chunk, ws, n_par_min)
        add_gradient(grad, layout, X, x_scale, chunk, ws, scale, 1.0, 1.0, n_par_min)


@njit(cache=True)
def layer1_fuses(W, m, m_next):
    """Whether layer 1's update (a batch of m examples) and its next weighted input (m_next) run fused
    (``_update_and_forward_layer1``): when both batches fit one block of examples. W (n_1, n_0)."""
    n_in, size = W.shape[1], W.itemsize
    return example_block(m, n_in, size) >= m and example_block(m_next, n_in, size) >= m_next


@njit(cache=True)
def layer1_transposed(W, batch_size):
    """Whether training keeps layer 1 transposed (``transposed_min_batch``): decided once per call of an epoch
    kernel, from the batch size (a mini-batch of batch_size fuses, then so does every smaller one), so that every
    path takes the same way for every mini-batch. W (n_1, n_0)."""
    return batch_size >= transposed_min_batch(W.itemsize) and layer1_fuses(W, batch_size, batch_size)


@njit(cache=True)
def update_layer1_and_forward(theta, layout, X, x_scale, rows, ws, scale, beta_w, rows_next, rows_ahead,
                              n_par_min, T, batch):
    """Layer 1's SGD step for the batch X[rows] (its deltas in ``ws``), then its feedforward for X[rows_next]
    into the z and a blocks of ``ws``; rows_next may be empty. On its transposed state T where it has one
    (``transposed``; mini-batch ``batch``), else fused into one pass when both batches fit one block of examples,
    else the two steps one after the other."""
    m, m_next = rows.shape[0], rows_next.shape[0]
    W, b = weight(theta, layout, 1), bias(theta, layout, 1)
    delta = block(ws, layout, 1, DELTA_PART, m)
    Z, A = block(ws, layout, 1, Z_PART, m_next), block(ws, layout, 1, A_PART, m_next)
    if T[0].size > 0:
        transposed_step(T, b, X, x_scale, rows, delta, scale, beta_w, rows_next, batch,
                        np.arange(max(m, m_next)), 0, 1, np.bool_(True))
        add_transposed_halves(T, x_scale, b, Z, 0, m_next)
    elif layer1_fuses(W, m, m_next):
        if max(m, m_next) * W.size >= n_par_min:
            update_and_forward_layer1_par(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, rows_ahead)
        else:
            update_and_forward_layer1(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, rows_ahead)
    elif T[3].shape[0] > 0:
        staged_update_and_forward(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z, T[3],
                                  np.arange(max(m, m_next)), 0, unit_groups(W))
    else:
        layer_bp34(delta, X, x_scale, rows, scale, beta_w, 1.0, W, b, n_par_min)
        layer_forward(W, b, X, x_scale, rows_next, Z, n_par_min)
    # After the fused region rather than inside it: over whole rows of units the sigmoid vectorises.
    activate_block(layout[1, ACT], Z, A, n_par_min)


# ------------------------------------------------------------------------- one parallel region per epoch
# Opening and closing a Numba parallel region costs 1.4-3.6 us on a 2-core AMD EPYC (measured empty), about
# as much as the serial work of a book-sized mini-batch above layer 1. An epoch can therefore run as one region
# of P participants that meet at two barriers per mini-batch (0.1 us for both, measured):
#   stage 1, by examples: layer 1's activation (and first its z from its half-sums, ``layer1_transposed``), eq. 25
#            through the layers above, BP1 and BP2 for a share of the mini-batch's examples (each example is
#            independent of the others);
#   stage 2, by units: BP3/BP4 updates a share of every layer's units, and layer 1's share computes its
#            weighted input for the next mini-batch, at the same time (``_update_and_forward_layer1``) where
#            both mini-batches fit one block of examples, else after the update; by halves of layer 1's inputs
#            first, then by units, where it trains transposed (``transposed_step``). Other optimizers than
#            plain SGD (``_optimizer_share``): the share's gradient, then its update, then layer 1's share of
#            the next weighted input (on a 2-core Zen 4, paired runs against their per-layer regions, same bits:
#            momentum 1.43x faster on the book's network in float32, Adam 1.64x in float64, Adam on
#            [784, 100, 10] at m = 32 1.53x in float32, momentum on [784, 256, 128, 10] at m = 128 1.09x).
# Stage 2's shares are whole groups of four units, as the other kernels compute them; stage 1's are even cuts of
# the examples, whose values the kernels compute the same way however they pair them (``partial_input_units``,
# ``_backpropagate``). So the bits do not depend on the thread count.
#
# A participant never waits for one that has not started: Numba may run a region's iterations one after another
# (one thread, a nested region), so each share is claimed once with a compare-and-swap, by its owner or, while
# the owner is absent, by whoever reaches it first; a barrier then waits only for shares already being computed.
# Counters live 64 bytes apart (one cache line each) in an int64 array: the number of shares done, then per
# participant "present" and the number of stages whose share has been claimed.
_LINE = 8


def _is_counters(t):
    """Whether t is the type of a 1-D int64 array, the only one the counter intrinsics take."""
    return isinstance(t, nbtypes.Array) and t.dtype == nbtypes.int64 and t.ndim == 1


def _counter_pointer(context, builder, sig, args):
    """The address of counters[i] for an intrinsic called as f(counters, i, ...)."""
    a = context.make_array(sig.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, sig.args[0], a, [args[1]], wraparound=False)


@intrinsic
def _atomic_add(typingctx, counters, i, v):
    """counters[i] += v atomically (sequentially consistent: writes before it are seen by whoever sees it)."""
    if not _is_counters(counters):
        return None

    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", _counter_pointer(context, builder, sig, args), args[2], "seq_cst")
    return nbtypes.int64(counters, nbtypes.intp, nbtypes.int64), codegen


@intrinsic
def _atomic_claim(typingctx, counters, i, expected):
    """counters[i] = expected + 1 if it equals ``expected``, atomically; whether it did."""
    if not _is_counters(counters):
        return None

    def codegen(context, builder, sig, args):
        new = builder.add(args[2], ir.Constant(args[2].type, 1))
        pair = builder.cmpxchg(_counter_pointer(context, builder, sig, args), args[2], new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return nbtypes.boolean(counters, nbtypes.intp, nbtypes.int64), codegen


@intrinsic
def _atomic_read(typingctx, counters, i):
    """counters[i], read afresh from memory (acquire: what was written before it was stored is seen after)."""
    if not _is_counters(counters):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_counter_pointer(context, builder, sig, args), "acquire", 8)
    return nbtypes.int64(counters, nbtypes.intp), codegen


@intrinsic
def _spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``), nothing elsewhere."""
    def codegen(context, builder, sig, args):
        if X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return nbtypes.void(), codegen


@njit(cache=True)
def _claim(counters, n_parts, p, r, stage):
    """Whether participant p computes participant r's share of ``stage``: its own share unless another took it
    first, another's only while that one has not started, and each share once."""
    if r != p and _atomic_read(counters, _LINE * (1 + r)) != 0:
        return False
    return _atomic_claim(counters, _LINE * (1 + n_parts + r), stage)


@njit(cache=True)
def _barrier(counters, n_done, target):
    """Add this participant's n_done shares, then wait until ``target`` shares are done in all."""
    _atomic_add(counters, 0, n_done)
    while _atomic_read(counters, 0) < target:
        _spin_pause()


@njit(cache=True)
def fuses_layer1(opt, layout):
    """Whether training fuses the update into BP4 and layer 1's update with its next forward pass: plain SGD
    with a hidden layer."""
    return opt == SGD and layout.shape[0] > 2


@njit(cache=True)
def one_region_applies(opt, layout, batch_size, min_work, n_threads):
    """Whether ``train_epoch_shared`` may stand in for ``train_epoch``: a network with a hidden layer on more
    than one thread (any optimizer); layer 1's multiply-adds per mini-batch reach min_work
    (``model.ONE_REGION_MIN_WORK``; the region costs less than a region per layer: [784, 16, 10] at m = 10,
    125,440 of them, trained 1.5x faster than on one thread, [200, 30, 10] 1.1x, [64, 20, 10] 0.8x). Both paths
    take the same blocks of examples (``example_block``) and the same pairs, so they compute every value the same
    way."""
    if layout.shape[0] <= 2 or n_threads <= 1:
        return False
    return batch_size * layout[1, N] * layout[0, N] >= min_work


@njit(cache=True)
def _forward_and_back_share(theta, layout, cost_code, Y, rows, ident, ws, r, n_parts, x_scale, T):
    """Stage 1 for share r of n_parts (examples, cut evenly): layer 1's activation (its z is in ``ws``, or its
    half-sums in its transposed state T where it has one), eq. 25 through layers 2 .. L, BP1 and BP2 down to
    layer 1, for those rows of the ws blocks."""
    m = rows.shape[0]
    x0, x1 = r * m // n_parts, (r + 1) * m // n_parts
    if x0 >= x1:
        return
    L = layout.shape[0] - 1
    for l in range(1, L + 1):
        Z, A = block(ws, layout, l, Z_PART, m), block(ws, layout, l, A_PART, m)
        if l > 1:
            upper_forward(weight(theta, layout, l), bias(theta, layout, l), block(ws, layout, l - 1, A_PART, m), Z,
                          ident, x0, x1, SERIAL)
        elif T[0].size > 0:
            add_transposed_halves(T, x_scale, bias(theta, layout, 1), Z, x0, x1)
        activate(layout[l, ACT], Z[x0:x1], A[x0:x1])
    output_delta(layout[L, ACT], cost_code, Z[x0:x1], A[x0:x1], Y, rows[x0:x1],
                 block(ws, layout, L, DELTA_PART, m)[x0:x1])  # Z, A: layer L's blocks
    for l in range(L - 1, 0, -1):
        delta = block(ws, layout, l, DELTA_PART, m)
        upper_backprop(weight(theta, layout, l + 1), block(ws, layout, l + 1, DELTA_PART, m), delta, x0, x1, SERIAL)
        times_sigma_prime(layout[l, ACT], block(ws, layout, l, Z_PART, m)[x0:x1],
                          block(ws, layout, l, A_PART, m)[x0:x1], delta[x0:x1])


@njit(cache=True)
def _layer_share(theta, layout, ws, l, m, r, n_parts):
    """Layer l's W, b, delta (m, n_l) block of ``ws``, its number of groups of four units and the groups g0 .. g1-1
    of share r of n_parts (cut evenly): what stage 2 works on."""
    W = weight(theta, layout, l)
    n_groups = unit_groups(W)
    return (W, bias(theta, layout, l), block(ws, layout, l, DELTA_PART, m), n_groups, r * n_groups // n_parts,
            (r + 1) * n_groups // n_parts)


@njit(cache=True)
def _update_share(theta, layout, X, x_scale, rows, ident, ws, scale, beta_w, rows_next, rows_ahead, batch, r,
                  n_parts, T):
    """Stage 2 for share r of n_parts (groups of four units of each layer, cut evenly): the SGD update (BP3,
    BP4) of those units, and for layer 1's also their weighted input for the batch X[rows_next], fused as in
    ``update_layer1_and_forward`` where both batches fit one block of examples; on layer 1's transposed state T
    (``transposed_step``'s cells) where it has one."""
    m, m_next = rows.shape[0], rows_next.shape[0]
    Z_next = block(ws, layout, 1, Z_PART, m_next)
    for l in range(1, layout.shape[0]):
        W, b, delta, n_groups, g0, g1 = _layer_share(theta, layout, ws, l, m, r, n_parts)
        if l > 1:
            upper_bp34(delta, block(ws, layout, l - 1, A_PART, m), ident, scale, beta_w, 1.0, W, b, g0, g1, SERIAL)
        elif T[0].size > 0:
            transposed_step(T, b, X, x_scale, rows, delta, scale, beta_w, rows_next, batch, ident, r,
                            n_parts, np.bool_(True))
        elif layer1_fuses(W, m, m_next):
            for g in range(g0, g1):
                update_and_forward_group(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z_next,
                                         rows_ahead, g, n_groups)
        elif T[3].shape[0] > 0:
            cap = T[3].shape[0] // n_parts
            staged_update_and_forward(W, b, X, x_scale, rows, delta, scale, beta_w, rows_next, Z_next,
                                      T[3][r * cap:(r + 1) * cap], ident, g0, g1)
        else:
            accumulate_bp34(delta, X, x_scale, rows, scale, beta_w, 1.0, W, b, g0, g1)
            weighted_input(W, b, X, x_scale, rows_next, Z_next, g0, g1)


@njit(cache=True)
def _optimizer_share(opt, theta, layout, X, x_scale, rows, ident, ws, rows_next, grad, state, hyper, step, r,
                     n_parts):
    """Stage 2 of another optimizer (momentum, Nesterov, Adam) for share r of n_parts (groups of four units of
    each layer, cut evenly): those units' mean gradient (BP3, BP4) into ``grad``, their update (``step_units``;
    ``step``: Adam's step size) and, for layer 1's, then their weighted input for the batch X[rows_next]. Each
    value as ``train_epoch``'s one-thread path computes it (``add_gradient``, ``optimizer_step``, ``feedforward``)."""
    m, m_next = rows.shape[0], rows_next.shape[0]
    for l in range(1, layout.shape[0]):
        W, b, delta, _, g0, g1 = _layer_share(theta, layout, ws, l, m, r, n_parts)
        if l > 1:
            upper_bp34(delta, block(ws, layout, l - 1, A_PART, m), ident, 1.0 / m, 0.0, 0.0, weight(grad, layout, l),
                       bias(grad, layout, l), g0, g1, SERIAL)
        else:
            accumulate_bp34(delta, X, x_scale, rows, 1.0 / m, 0.0, 0.0, weight(grad, layout, 1), bias(grad, layout, 1),
                            g0, g1)
        step_units(opt, theta, grad, state, hyper, step, layout, l, min(4 * g0, W.shape[0]), min(4 * g1, W.shape[0]))
        if l == 1:
            weighted_input(W, b, X, x_scale, rows_next, block(ws, layout, 1, Z_PART, m_next), g0, g1)


@njit(cache=True)
def _participant(p, n_parts, counters, theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch,
                 stop_batch, opt, hyper, grad, state, ws, T, ident):
    """Participant p's part of ``train_batches_shared``: each stage, its own share first, then those of
    participants not started yet, then the barrier."""
    counters, theta, layout, X, Y, order, hyper, grad, state, ws, ident = (
        unowned(counters), unowned(theta), unowned(layout), unowned(X), unowned(Y), unowned(order), unowned(hyper),
        unowned(grad), unowned(state), unowned(ws), unowned(ident))
    T = (unowned(T[0]), unowned(T[1]), unowned(T[2]), unowned(T[3]))
    _atomic_add(counters, _LINE * (1 + p), 1)
    stage, adam_t = 0, hyper[ADAM_T]
    for batch in range(first_batch, stop_batch):
        rows, rows_next, rows_ahead = batch_rows(order, batch_size, batch, stop_batch)
        prefetch_targets(Y, rows_next, p, n_parts)
        done = 0
        for k in range(n_parts):
            r = (p + k) % n_parts
            if _claim(counters, n_parts, p, r, stage):
                _forward_and_back_share(theta, layout, cost_code, Y, rows, ident, ws, r, n_parts, x_scale, T)
                done += 1
        stage += 1
        _barrier(counters, done, n_parts * stage)
        scale, beta_w = -hyper[ETA] / rows.shape[0], 1.0 - hyper[ETA] * hyper[L2]
        step = adam_step_size(hyper, adam_t + (batch - first_batch + 1)) if opt == ADAM else 0.0
        done = 0
        for k in range(n_parts):
            r = (p + k) % n_parts
            if _claim(counters, n_parts, p, r, stage):
                if opt == SGD:
                    _update_share(theta, layout, X, x_scale, rows, ident, ws, scale, beta_w, rows_next, rows_ahead,
                                  batch, r, n_parts, T)
                else:
                    _optimizer_share(opt, theta, layout, X, x_scale, rows, ident, ws, rows_next, grad, state, hyper,
                                     step, r, n_parts)
                done += 1
        stage += 1
        _barrier(counters, done, n_parts * stage)


def _train_batches_shared(theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch, stop_batch,
                          opt, hyper, grad, state, ws, n_parts, T):
    """Training by ``opt`` over mini-batches first_batch .. stop_batch-1 (as ``train_epoch``; Adam's count of
    updates in hyper is the caller's to advance) in one parallel region of
    n_parts participants; layer 1's z for the first of them must be in ``ws`` already, or its half-sums in its
    transposed state T where it has one (``transposed``, for n_parts shares). Same results, bit for bit, as
    ``train_epoch``'s other path, for any n_parts and any number of threads."""
    counters = np.zeros(_LINE * (1 + 2 * n_parts), np.int64)
    ident = np.arange(min(batch_size, order.shape[0]))  # a batch never has more rows than the order
    for p in prange(n_parts):
        _participant(np.int64(p), n_parts, counters, theta, layout, cost_code, X, x_scale, Y, order, batch_size,
                     first_batch, stop_batch, opt, hyper, grad, state, ws, T, ident)


train_batches_shared = njit(cache=True, parallel=True)(_train_batches_shared)


# ------------------------------------------------------------------ one meeting per mini-batch (replicas)
# Where layer 1 trains transposed and the layers above it are small (``replicates_upper_layers``), the one-region
# epoch meets once per mini-batch instead of twice: each participant computes stage 1 for the whole mini-batch and
# the update of the layers above layer 1 on a replica of its own (the same values, computed the same way, so the
# same bits), then layer 1's step for its share of the cells, whose half-sums of the next mini-batch it hands
# over by a count of shares done. Only those half-sums move between the cores (about 40 lines a mini-batch of 10
# in float64 against about 90 lines and two meetings), at the cost of computing stage 1 and the upper layers'
# update twice. On a 2-core Zen 4 (book's network, Fashion-MNIST's shuffled rows, same bits; paired chunks of 500
# mini-batches, each after 0.1 s of rest and a lead-in chunk, as ``bench/compare.py`` times them) float64 at m = 10
# trained 1.077x faster (median of 150 pairs): 1.02x in the calm stretches, 1.25x in the frequent ones where a
# line took 0.35 us instead of 0.08 to move between the virtual cores; float32 1.01x, 8-bit inputs 0.99x (1.20x
# in their slowest quarter); at m = 32 it lost 3% in calm stretches (``replicates_upper_layers``).
#
# The participant that arrives first (the "lead") trains on theta itself and takes the shares of participants not
# started yet; one that arrives later asks to join, and the lead, between two mini-batches, copies its replica
# (every layer but layer 1's weights) into the newcomer's and hands its share over. The counters: arrivals, the
# lead's "finished", then per participant (a line each) its shares done, its request to join and the mini-batch
# from which it computes its own share (plus one).
_FINISHED = _LINE  # where the counters hold the lead's "finished" (counters[0] counts arrivals)


@njit(cache=True)
def _done_at(q):
    """Where the counters of ``train_batches_replicated`` hold how many mini-batches of share q are done."""
    return _LINE * (2 + q)


@njit(cache=True)
def _request_at(q, n_parts):
    """Where they hold participant q's request to join."""
    return _LINE * (2 + n_parts + q)


@njit(cache=True)
def _start_at(q, n_parts):
    """Where they hold the first mini-batch of q's own share, plus one (0: not handed over)."""
    return _LINE * (2 + 2 * n_parts + q)


REPLICA_MAX_SHARE = 16  # the layers above layer 1 replicate where their weights are at most 1/16 of layer 1's
REPLICA_MAX_WORK = 4096  # and their weights times the mini-batch at most this many (the book's network: m <= 13)


@njit(cache=True)
def replicates_upper_layers(layout, batch_size):
    """Whether the one-region epoch with layer 1 transposed gives each participant a replica of the layers above
    layer 1 (see above): their weights are at most 1/REPLICA_MAX_SHARE of layer 1's, and their multiply-adds per
    mini-batch at most REPLICA_MAX_WORK (stage 1 computed twice grows with the mini-batch; the meeting it saves
    does not: at m = 32, 0.97x in calm stretches)."""
    upper = 0
    for l in range(2, layout.shape[0]):
        upper += layout[l, N] * layout[l - 1, N]
    return REPLICA_MAX_SHARE * upper <= layout[1, N] * layout[0, N] and upper * batch_size <= REPLICA_MAX_WORK


@njit(cache=True)
def _copy_replica(theta, replica, layout):
    """Every parameter of theta but layer 1's weights into replica (theta's layout, or longer)."""
    for l in range(1, layout.shape[0]):
        if l > 1:
            weight(replica, layout, l)[:, :] = weight(theta, layout, l)
        bias(replica, layout, l)[:] = bias(theta, layout, l)


@njit(cache=True)
def _join(counters, p, n_parts):
    """Ask to join and wait for the lead's answer: the first mini-batch of p's own share, or -1 if the lead
    finished without handing it over (it hands over before it finishes, so "finished" is read first)."""
    _atomic_add(counters, _request_at(p, n_parts), 1)
    while True:
        finished = _atomic_read(counters, _FINISHED) != 0
        first = _atomic_read(counters, _start_at(p, n_parts))
        if first != 0 or finished:
            return first - 1
        _spin_pause()


@njit(cache=True)
def _replica(p, n_parts, counters, theta, replicas, layout, cost_code, X, x_scale, Y, order, batch_size,
             first_batch, stop_batch, hyper, ws, workspaces, T, H_next, ident):
    """Participant p of ``train_batches_replicated``."""
    counters, theta, replicas, layout, X, Y, order, hyper, ws, workspaces, H_next, ident = (
        unowned(counters), unowned(theta), unowned(replicas), unowned(layout), unowned(X), unowned(Y),
        unowned(order), unowned(hyper), unowned(ws), unowned(workspaces), unowned(H_next), unowned(ident))
    WT, H, D, S = unowned(T[0]), unowned(T[1]), unowned(T[2]), unowned(T[3])
    lead = _atomic_add(counters, 0, 1) == 0
    own = np.zeros(n_parts, np.bool_)  # the lead's: who computes their own share
    own[p] = True
    if lead:
        th, w, start = theta, ws, first_batch
    else:
        th, w = replicas[p][:theta.shape[0]], workspaces[p][:ws.shape[0]]
        start = _join(counters, p, n_parts)
        if start < 0:
            return
    L = layout.shape[0] - 1
    b1 = bias(th, layout, 1)
    for batch in range(start, stop_batch):
        if lead:
            for q in range(n_parts):
                if not own[q] and _atomic_read(counters, _request_at(q, n_parts)) != 0:
                    _copy_replica(theta, replicas[q], layout)
                    own[q] = True
                    _atomic_add(counters, _start_at(q, n_parts), batch + 1)
        rows, rows_next, _ = batch_rows(order, batch_size, batch, stop_batch)
        prefetch_targets(Y, rows_next, 0, 1)
        for q in range(n_parts):  # every share of the previous mini-batch done: its half-sums are in
            while _atomic_read(counters, _done_at(q)) < batch - first_batch:
                _spin_pause()
        H_now, H_then = (H, H_next) if (batch - first_batch) % 2 == 0 else (H_next, H)
        m = rows.shape[0]
        _forward_and_back_share(th, layout, cost_code, Y, rows, ident, w, 0, 1, x_scale, (WT, H_now, D, S))
        scale, beta_w = -hyper[ETA] / m, 1.0 - hyper[ETA] * hyper[L2]
        for l in range(2, L + 1):
            W = weight(th, layout, l)
            upper_bp34(block(w, layout, l, DELTA_PART, m), block(w, layout, l - 1, A_PART, m), ident, scale, beta_w,
                       1.0, W, bias(th, layout, l), 0, unit_groups(W), SERIAL)
        delta = block(w, layout, 1, DELTA_PART, m)
        bias_step(delta, scale, 1.0, b1, 0, b1.shape[0])
        for q in range(n_parts):
            if q == p or (lead and not own[q]):
                transposed_step((WT, H_then, D, S), b1, X, x_scale, rows, delta, scale, beta_w, rows_next, batch,
                                ident, q, n_parts, np.bool_(False))
                _atomic_add(counters, _done_at(q), 1)
    if lead:
        _atomic_add(counters, _FINISHED, 1)


def _train_batches_replicated(theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch, stop_batch,
                              hyper, ws, n_parts, T):
    """Plain SGD over mini-batches first_batch .. stop_batch-1 (as ``train_epoch``) in one parallel region of
    n_parts participants that meet once per mini-batch (see above); layer 1's transposed state T (``transposed``,
    for n_parts shares) holds the half-sums of the first of them. Same results, bit for bit, as ``train_epoch``."""
    counters = np.zeros(_LINE * (2 + 3 * n_parts), np.int64)
    ident = np.arange(min(batch_size, order.shape[0]))  # a batch never has more rows than the order
    replicas, workspaces = lines_of_rows(n_parts, theta.shape[0], theta), lines_of_rows(n_parts, ws.shape[0], ws)
    H_next = aligned_matrix(T[1].shape[0], T[1].shape[1], T[1])
    for p in prange(n_parts):
        _replica(np.int64(p), n_parts, counters, theta, replicas, layout, cost_code, X, x_scale, Y, order,
                 batch_size, first_batch, stop_batch, hyper, ws, workspaces, T, H_next, ident)


train_batches_replicated = njit(cache=True, parallel=True)(_train_batches_replicated)


@njit(cache=True)
def layer1_state(theta, layout, X, x_scale, order, batch_size, first_batch, stop_batch, ws, n_parts, n_par_min,
                 transposes):
    """Before mini-batch first_batch of an epoch call: layer 1's transposed state (``transposed``) where
    ``transposes``, with the half-sums of that mini-batch, else that mini-batch's z in ``ws`` and a state without
    weights (``no_transposed``), whose S holds a block of examples' float inputs per share (``example_block`` rows
    of n_0, rounded up to a cache line, each share's from a line) where the inputs are integers and layer 1's two
    steps are not fused (``staged_update_and_forward``)."""
    rows = batch_rows(order, batch_size, first_batch, stop_batch)[0]
    m, bs = rows.shape[0], min(batch_size, order.shape[0])
    W, b = weight(theta, layout, 1), bias(theta, layout, 1)
    if not transposes:
        layer_forward(W, b, X, x_scale, rows, block(ws, layout, 1, Z_PART, m), n_par_min)
        T = no_transposed(W)
        if stages_inputs(X, W) and not layer1_fuses(W, bs, bs):
            T = (T[0], T[1], T[2], input_copies(n_parts * example_block(bs, W.shape[1], W.itemsize), W))
        return T
    T = transposed(W, X, bs, n_parts)
    transposed_first_sums(T, X, rows, first_batch, n_parts, W.shape[0])
    return T


@njit(cache=True)
def train_epoch_shared(theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch, stop_batch, opt,
                       hyper, grad, state, ws, n_par_min, n_threads):
    """``train_epoch`` (same arguments) in one parallel region of n_threads participants, where
    ``one_region_applies``: the same results, bit for bit. A separate entry point, so that a process that does
    not use it never compiles it (it adds about a third to the cold compile)."""
    if first_batch >= stop_batch:
        return
    W = weight(theta, layout, 1)
    transposes = opt == SGD and layer1_transposed(W, min(batch_size, order.shape[0]))
    T = layer1_state(theta, layout, X, x_scale, order, batch_size, first_batch, stop_batch, ws, n_threads,
                     n_par_min, transposes)
    if transposes and replicates_upper_layers(layout, min(batch_size, order.shape[0])):
        train_batches_replicated(theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch,
                                 stop_batch, hyper, ws, n_threads, T)
    else:
        train_batches_shared(theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch, stop_batch,
                             opt, hyper, grad, state, ws, n_threads, T)
    if opt == ADAM:
        hyper[ADAM_T] += stop_batch - first_batch
    if T[0].size > 0:
        untransposed(T, W, X)


@njit(cache=True)
def batch_rows(order, batch_size, batch, stop_batch):
    """The rows of X[order] in mini-batch ``batch``, in the next one and in the one after (empty from
    stop_batch on): the batch to train, the one whose layer-1 z to compute, the one whose inputs to prefetch."""
    n = order.shape[0]
    next_start = (batch + 1) * batch_size if batch + 1 < stop_batch else n
    ahead_start = (batch + 2) * batch_size if batch + 2 < stop_batch else n
    return (order[batch * batch_size:min((batch + 1) * batch_size, n)],
            order[next_start:min(next_start + batch_size, n)], order[ahead_start:min(ahead_start + batch_size, n)])


@njit(cache=True)
def train_epoch(theta, layout, cost_code, X, x_scale, Y, order, batch_size, first_batch, stop_batch, opt, hyper,
                grad, state, ws, n_par_min):
    """Mini-batches first_batch .. stop_batch-1 of one epoch, taken from X[order] in consecutive chunks of
    batch_size (the last one may be smaller), each followed by its parameter update.

    Plain SGD fuses the update into BP4: w -> (1 - eta lmbda/n) w - eta/m sum_x delta^x (a^x)^T, b likewise,
    exactly the book's rule; layer 1's update is also fused with its feedforward for the next mini-batch
    (``update_and_forward_layer1``); on several threads ``train_epoch_shared`` is faster where it applies.
    Other optimizers go through ``grad`` (theta's layout) and ``optimizer_step``.
    """
    theta, layout, X, Y, order, hyper, grad, state, ws = (
        unowned(theta), unowned(layout), unowned(X), unowned(Y), unowned(order), unowned(hyper), unowned(grad),
        unowned(state), unowned(ws))
    fused = fuses_layer1(opt, layout)
    W = weight(theta, layout, 1)
    T = no_transposed(W)
    if fused and first_batch < stop_batch:
        T = layer1_state(theta, layout, X, x_scale, order, batch_size, first_batch, stop_batch, ws, 1, n_par_min,
                         layer1_transposed(W, min(batch_size, order.shape[0])))
        m = min(batch_size, order.shape[0] - first_batch * batch_size)
        if T[0].size > 0:
            add_transposed_halves(T, x_scale, bias(theta, layout, 1), block(ws, layout, 1, Z_PART, m), 0, m)
        activate_block(layout[1, ACT], block(ws, layout, 1, Z_PART, m), block(ws, layout, 1, A_PART, m), n_par_min)
    for batch in range(first_batch, stop_batch):
        rows, rows_next, rows_ahead = batch_rows(order, batch_size, batch, stop_batch)
        prefetch_targets(Y, rows_next, 0, 1)
        m = rows.shape[0]
        feedforward(theta, layout, X, x_scale, rows, ws, n_par_min, 2 if fused else 1)
        backward(theta, layout, cost_code, Y, rows, ws, n_par_min)
        if fused:
            scale, beta_w = -hyper[ETA] / m, 1.0 - hyper[ETA] * hyper[L2]
            add_gradient(theta, layout, X, x_scale, rows, ws, scale, beta_w, 1.0, n_par_min, 2)
            update_layer1_and_forward(theta, layout, X, x_scale, rows, ws, scale, beta_w, rows_next, rows_ahead,
                                      n_par_min, T, batch)
        elif opt == SGD:
            add_gradient(theta, layout, X, x_scale, rows, ws, -hyper[ETA] / m, 1.0 - hyper[ETA] * hyper[L2], 1.0,
                         n_par_min)
        else:
            add_gradient(grad, layout, X, x_scale, rows, ws, 1.0 / m, 0.0, 0.0, n_par_min)
            optimizer_step(opt, theta, grad, state, hyper, layout)
    if T[0].size > 0:
        untransposed(T, W, X)


@njit(cache=True)
def predict_into(theta, layout, X, x_scale, rows, ws, out, n_par_min):
    """out[i] = a^L of X[rows[i]]; out (len(rows), n_L)."""
    m_max = batch_capacity(ws, layout)
    L = layout.shape[0] - 1
    for start in range(0, rows.shape[0], m_max):
        chunk = rows[start:start + m_max]
        feedforward(theta, layout, X, x_scale, chunk, ws, n_par_min)
        out[start:start + chunk.shape[0]] = block(ws, layout, L, A_PART, chunk.shape[0])


@njit(cache=True)
def total_cost(theta, layout, cost_code, X, x_scale, Y, rows, ws, n_par_min):
    """Sum over X[rows] of the per-example cost (float64)."""
    m_max = batch_capacity(ws, layout)
    L = layout.shape[0] - 1
    total = 0.0
    for start in range(0, rows.shape[0], m_max):
        chunk = rows[start:start + m_max]
        feedforward(theta, layout, X, x_scale, chunk, ws, n_par_min)
        total += cost_sum(cost_code, block(ws, layout, L, A_PART, chunk.shape[0]), Y, chunk)
    return total



# The functions that reach the custom activation (through the globals custom_f and custom_f_prime). For a
# model with a user-defined (f, f_prime) they are compiled again with those globals bound to the pair, so the
# user's functions are inlined at kernel speed; every other model uses the cached versions above.
SPECIALIZED = ("activate_units", "activate", "times_sigma_prime", "activate_block", "times_sigma_prime_block",
               "output_delta", "feedforward", "backward", "batch_gradient", "update_layer1_and_forward",
               "_forward_and_back_share", "_participant", "_replica", "train_epoch", "train_epoch_shared",
               "predict_into", "total_cost")
# Plain functions that reach it too: {source: ((compiled name, parallel), ...)}.
SPECIALIZED_PLAIN = {"_activate_rows": (("activate_par", True),),
                     "_times_sigma_prime_rows": (("times_sigma_prime_par", True),),
                     "_train_batches_shared": (("train_batches_shared", True),),
                     "_train_batches_replicated": (("train_batches_replicated", True),)}
# Their source, read once now: the file on disk may change later (an upgrade, an edit) while this module runs.
_SOURCES = {name: inspect.getsource(getattr(globals()[name], "py_func", globals()[name]))
            for name in SPECIALIZED + tuple(SPECIALIZED_PLAIN)}


def _njit_uncached(*args, **options):
    options.pop("cache", None)
    if args and callable(args[0]):
        return njit(args[0])
    return njit(**options)


def specialize(f, f_prime):
    """This module's kernels with custom_f, custom_f_prime bound to the jitted pair (f, f_prime).

    Returns a namespace with the same names as this module (compiled on first call, not cached on disk).
    """
    namespace = dict(globals(), custom_f=f, custom_f_prime=f_prime, njit=_njit_uncached)
    for name in SPECIALIZED + tuple(SPECIALIZED_PLAIN):
        exec(compile(_SOURCES[name], __file__, "exec"), namespace)
    for source, variants in SPECIALIZED_PLAIN.items():
        for name, parallel in variants:
            namespace[name] = njit(fastmath=FASTMATH, parallel=parallel)(namespace[source])
    return types.SimpleNamespace(**namespace)
