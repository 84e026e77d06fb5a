"""What limits the book's setup on this machine: the pieces of one participant's mini-batch, each timed alone, and
the epoch they make up on one core and on two.

    python bench/limits.py [--data fashion-mnist|random] [--repeats N] [--calls N] [--markdown]

On two threads the one-region epoch gives each participant half of layer 1's work for a mini-batch of 10: its
update and next sums over half of the 784 inputs (392 inputs x 32 units, the 30 padded, x 10 examples); each
participant also computes the examples' stage of all 10 examples (layer 1's activation, layer 2's z and
activation, BP1, BP2) and layer 2's update, on a replica of its own (``kernels.train_batches_replicated``).
This script times those pieces alone on one core, next to the core's own limits: its rate of vector FMAs held in
registers and NumPy's GEMM rate on one thread. Layer 1's sums are timed on rows the core has in cache and on random
rows of the training set, as an epoch reads them: the difference is what reading the rows of random examples costs.
The pieces take their arrays as the epoch does (without reference counts), so their times add up to a
participant's work.

Then the epoch itself, per mini-batch: the one-region epoch on two threads (a participant's time), the same
epoch on one thread, whose one participant computes both shares (per share: what a participant's work costs on
one core, all of it in sequence), and the one-thread epoch that fastbp runs on one thread. What a participant
takes on two threads beyond a share on one core is what working on two cores costs: the meetings and the lines
that move between the cores.

Last, what moving lines between the cores costs by itself: two threads hand a counter's line back and forth, and
one core writes LINES_MOVED lines that the other then reads (about as many as a participant of the float64 epoch
reads from the other core per mini-batch of 10), next to the same writes and reads on one core.
"""
import argparse
import os
import sys
import time

import numba
import numpy as np
from numba import njit, prange

if __package__ in (None, ""):  # run as a script: make ``bench`` (and a source tree's fastbp) importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import compare, peers  # noqa: E402
import fastbp  # noqa: E402
from fastbp import aligned, codegen, kernels  # noqa: E402
from fastbp.kernels import _atomic_add, _atomic_read, _forward_and_back_share, _spin_pause, unowned  # noqa: E402
from fastbp.inputs import kernel_inputs  # noqa: E402
from fastbp.model import PARALLEL_MIN_WORK, Trainer  # noqa: E402
from fastbp.simd import vfma, vload, vstore  # noqa: E402
from fastbp.threads import available_cores, using_threads  # noqa: E402
from fastbp.transposed import LANES, aligned_matrix, input_sums, update_weights  # noqa: E402

N_HALF = 392  # half of the book's 784 inputs: one participant's share of layer 1 on two threads
M = 10  # the book's mini-batch
LINES_MOVED = 90  # a float64 participant's reads per mini-batch of 10 written by the other core where the two
# meet twice (``kernels.train_batches_shared``; where they meet once, about 40: the other half's sums). The other
# half's sums of its 5 examples (20 lines), the other's deltas of layer 1 (20) and of layer 2 with its activations of
# layer 1 (27), for layer 2's update, and the 6 (or 4) rows of layer 2's weights that the other updated (23)
CHAINS = 12  # independent FMA chains in the peak loop: more than latency x throughput (4 x 2) needs
PEAK_ROUNDS = 2_000_000


@njit
def fma_rounds(V, n):
    """n rounds of CHAINS independent FMAs on 16-lane vectors kept in registers; V (CHAINS + 2, 16) in and out."""
    a, b = vload(V, 0, 0, 16), vload(V, 1, 0, 16)
    c0, c1, c2, c3 = vload(V, 2, 0, 16), vload(V, 3, 0, 16), vload(V, 4, 0, 16), vload(V, 5, 0, 16)
    c4, c5, c6, c7 = vload(V, 6, 0, 16), vload(V, 7, 0, 16), vload(V, 8, 0, 16), vload(V, 9, 0, 16)
    c8, c9, c10, c11 = vload(V, 10, 0, 16), vload(V, 11, 0, 16), vload(V, 12, 0, 16), vload(V, 13, 0, 16)
    for _ in range(n):
        c0, c1, c2, c3 = vfma(a, b, c0), vfma(a, b, c1), vfma(a, b, c2), vfma(a, b, c3)
        c4, c5, c6, c7 = vfma(a, b, c4), vfma(a, b, c5), vfma(a, b, c6), vfma(a, b, c7)
        c8, c9, c10, c11 = vfma(a, b, c8), vfma(a, b, c9), vfma(a, b, c10), vfma(a, b, c11)
    for i, c in enumerate((c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)):
        vstore(V, 2 + i, 0, c)


@njit
def update_calls(WT, A, row_sets, D):
    """Layer 1's BP4 step (``transposed.update_weights``, beta 1) over the first N_HALF inputs, once per
    row set; WT (784, 32), A (n, 784), row_sets (calls, M), D (M, 32)."""
    WT, A, row_sets, D = unowned(WT), unowned(A), unowned(row_sets), unowned(D)
    for i in range(row_sets.shape[0]):
        update_weights(WT, A, row_sets[i], D, 0, N_HALF, 0, 1.0, A, row_sets[i, :0])


@njit
def sums_calls(WT, A, row_sets, H):
    """Layer 1's eq. 25 sums (``transposed.input_sums``) over the first N_HALF inputs, once per row set."""
    WT, A, row_sets, H = unowned(WT), unowned(A), unowned(row_sets), unowned(H)
    for i in range(row_sets.shape[0]):
        input_sums(WT, A, row_sets[i], H, 0, N_HALF, 0)


@njit
def stage_calls(n, theta, layout, cost_code, Y, rows, ident, ws, T):
    """n times the examples' stage of a whole mini-batch (``kernels._forward_and_back_share``), on arrays without
    reference counts as the epoch passes them (with them, each view the stage takes costs two atomic operations:
    1.8-1.9 us per call instead of 1.1-1.2 in float64)."""
    theta, layout, Y, rows, ident, ws = unowned(theta), unowned(layout), unowned(Y), unowned(rows), unowned(ident), \
        unowned(ws)
    T = (unowned(T[0]), unowned(T[1]), unowned(T[2]), unowned(T[3]))
    for _ in range(n):
        _forward_and_back_share(theta, layout, cost_code, Y, rows, ident, ws, 0, 1, 1.0, T)


@njit(parallel=True, fastmath=True)
def relay(counters, data, rounds, n_lines):
    """``rounds`` times, in turn: participant 0 writes n_lines cache lines of ``data`` (float64, from a line), then
    participant 1 reads them; each hands over to the other through counters[0], a line of its own. Needs two
    threads on two cores. counters (>= 24,) int64, zero on entry."""
    for p in prange(2):
        total = 0.0
        for i in range(rounds):
            while _atomic_read(counters, 0) != 2 * i + p:
                _spin_pause()
            if p == 0:
                for k in range(8 * n_lines):
                    data[k] = i
            else:
                for k in range(8 * n_lines):
                    total += data[k]
            _atomic_add(counters, 0, 1)
        counters[8 + 8 * p] = np.int64(total)  # keeps the reads


@njit(fastmath=True)
def relay_one_core(data, rounds, n_lines):
    """``relay``'s writes and reads, both on one core."""
    total = 0.0
    for i in range(rounds):
        for k in range(8 * n_lines):
            data[k] = i
        for k in range(8 * n_lines):
            total += data[k]
    return total


def line_moves(repeats, rounds):
    """{way: us per round} of ``relay``: the handover alone, LINES_MOVED lines with it, and those lines' writes and
    reads on one core; the first two None where Numba has one thread or the process one core."""
    data, counters = aligned_matrix(1, 8 * LINES_MOVED, np.zeros(0)), np.zeros(24, np.int64)
    data[:] = 0

    def relayed(n_lines):
        def call():
            counters[:] = 0
            relay(counters, data[0], rounds, n_lines)
        with using_threads(2):
            return seconds_per_call(call, rounds, repeats) * 1e6

    two_cores = numba.config.NUMBA_NUM_THREADS >= 2 and available_cores() >= 2
    return {"handover": relayed(0) if two_cores else None,
            "lines": relayed(LINES_MOVED) if two_cores else None,
            "one core": seconds_per_call(lambda: relay_one_core(data[0], rounds, LINES_MOVED), rounds, repeats) * 1e6}


def seconds_per_call(call, n_calls, repeats):
    """Median over ``repeats`` of the time of ``call()`` divided by n_calls (after one untimed call)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) / n_calls)
    return float(np.median(times))


def fma_peak(dtype, repeats, rounds=PEAK_ROUNDS):
    """One core's rate of vector FMAs held in registers, FLOP/s."""
    V = np.full((CHAINS + 2, 16), 0.5, dtype)
    return 2 * 16 * CHAINS / seconds_per_call(lambda: fma_rounds(V, rounds), rounds, repeats)


def layer1_pieces(A, repeats, calls, seed=0):
    """{piece: seconds per call} for layer 1's update and its sums on rows in cache and on random rows of A
    (n, 784), C-contiguous from a cache line; the layer's 30 units padded to 32, as in training."""
    rng = np.random.default_rng(seed)
    WT, H, D = aligned_matrix(A.shape[1], LANES, A), aligned_matrix(M, LANES, A), aligned_matrix(M, LANES, A)
    WT[:] = rng.standard_normal(WT.shape) * 0.1
    D[:] = rng.standard_normal(D.shape) * 1e-3
    hot = rng.integers(0, min(20, len(A)), (calls, M))
    random_rows = rng.integers(0, len(A), (calls, M))
    return {"update": seconds_per_call(lambda: update_calls(WT, A, hot, D), calls, repeats),
            "sums, rows in cache": seconds_per_call(lambda: sums_calls(WT, A, hot, H), calls, repeats),
            "sums, random rows": seconds_per_call(lambda: sums_calls(WT, A, random_rows, H), calls, repeats)}


def book_trainer(A, y, seed=0):
    """(MLP, Trainer) of the book's network in A's float type on A (n, 784) and labels y, mini-batches of M; the
    kernels are called directly, with the thread count each timing sets (the model itself asks for one)."""
    codegen.start_numba_threads()
    net = fastbp.MLP([A.shape[1], 30, 10], dtype=A.dtype, seed=seed, n_threads=1)
    return net, Trainer(net, A, y, batch_size=M, eta=3.0)


def examples_stage(A, y, repeats, calls):
    """Seconds per call of one participant's examples' stage (all of a mini-batch of 10) of the book's network in
    cache, in A's float type, with layer 1 transposed as training keeps it; A (n, 784) as ``layer1_pieces``."""
    net, trainer = book_trainer(A, y)
    order = np.arange(len(trainer.X))
    T = kernels.layer1_state(net._theta, net._layout, trainer.X, 1.0, order, M, 0, 1, trainer.ws, 2,
                             kernels.SERIAL, True)
    args = (net._theta, net._layout, net._cost_code, trainer.Y, order[:M], np.arange(M), trainer.ws, T)
    return seconds_per_call(lambda: stage_calls(calls, *args), calls, repeats)


def epoch_shares(A, y, repeats, n_batches=3000, seed=0):
    """{way: us} for the book's network's epoch in A's float type on random mini-batches of M rows of A (as
    ``layer1_pieces``), the three ways taking turns: a mini-batch of the one-region epoch on two threads (None
    where Numba has one thread), half a mini-batch of it on one thread (one share), and half a mini-batch of
    the one-thread epoch."""
    n_batches = min(n_batches, len(A) // M)
    net, trainer = book_trainer(A, y, seed)
    X, x_scale = kernel_inputs(trainer.X)
    rng = np.random.default_rng(seed)

    def per_batch(way, order):
        head = (net._theta, net._layout, net._cost_code, X, x_scale, trainer.Y, order, M, 0, n_batches)
        with using_threads(1 if way != "two threads" else 2):
            start = time.perf_counter()
            if way == "one thread":
                kernels.train_epoch(*head, trainer.opt, trainer.hyper, trainer.grad, trainer.state, trainer.ws,
                                    np.iinfo(np.int64).max)
            else:
                kernels.train_epoch_shared(*head, trainer.opt, trainer.hyper, trainer.grad, trainer.state,
                                           trainer.ws, PARALLEL_MIN_WORK, 2)
            return (time.perf_counter() - start) / n_batches

    ways = ["one region, one thread", "one thread"]
    if numba.config.NUMBA_NUM_THREADS >= 2:
        ways.insert(0, "two threads")
    times = {way: [] for way in ways}
    for i in range(repeats + 1):
        for way in ways:
            seconds = per_batch(way, rng.permutation(len(A))[:n_batches * M])
            if i > 0:  # the first round compiles and warms up
                times[way].append(seconds)
    halves = {"two threads": 1, "one region, one thread": 2, "one thread": 2}
    return {way: (float(np.median(times[way])) * 1e6 / halves[way] if way in times else None) for way in halves}


def measure_limits(data, dtypes=compare.DTYPES, repeats=5, calls=2000, gemm_size=compare.GEMM_SIZE,
                   epoch_batches=3000):
    """[{"piece", "dtype", "us", "rate", "of_peak"}]: the rows of the table (rate in FLOP/s, of_peak its share of
    the core's FMA rate; None where they mean nothing)."""
    flops = 2 * N_HALF * LANES * M
    rows = []
    for dtype in dtypes:
        peak = fma_peak(dtype, repeats)
        gemm = compare.gemm_peak(dtype, threads=1, n=gemm_size, repeats=repeats)
        first, A = len(rows), aligned.ascontiguous(data.X, dtype)
        rows += [{"piece": "vector FMAs in registers (1 core)", "dtype": dtype, "us": None, "rate": peak},
                 {"piece": f"NumPy {gemm_size}x{gemm_size} matmul (1 thread)", "dtype": dtype, "us": None,
                  "rate": gemm}]
        for piece, seconds in layer1_pieces(A, repeats, calls).items():
            rows.append({"piece": f"layer 1 {piece}: {N_HALF} inputs x {LANES} units x {M} examples", "dtype": dtype,
                         "us": seconds * 1e6, "rate": flops / seconds})
        rows.append({"piece": f"examples' stage, {M} examples, in cache", "dtype": dtype,
                     "us": examples_stage(A, data.y, repeats, calls) * 1e6, "rate": None})
        epoch = epoch_shares(A, data.y, repeats, epoch_batches)
        rows += [{"piece": f"one-region epoch, 2 threads: a mini-batch of {M} (a participant's time)",
                  "dtype": dtype, "us": epoch["two threads"], "rate": None},
                 {"piece": "one-region epoch, 1 thread: half a mini-batch (one share)", "dtype": dtype,
                  "us": epoch["one region, one thread"], "rate": None},
                 {"piece": "one-thread epoch: half a mini-batch", "dtype": dtype, "us": epoch["one thread"],
                  "rate": None}]
        for row in rows[first:]:
            row["of_peak"] = None if row["rate"] is None else row["rate"] / peak
    moves = line_moves(repeats, 10 * calls)
    for piece, way in (("lines between the cores: a counter's line handed there and back", "handover"),
                       (f"{LINES_MOVED} lines written on one core, then read on the other, handed over", "lines"),
                       (f"the same {LINES_MOVED} lines written, then read, on one core", "one core")):
        rows.append({"piece": piece, "dtype": "float64", "us": moves[way], "rate": None, "of_peak": None})
    return rows


def format_limits(rows, markdown=False):
    """The table as text (or a Markdown table)."""
    header = ("piece", "dtype", "us", "GFLOP/s", "% of FMA peak")
    body = [(r["piece"], r["dtype"], compare._fmt(r["us"], ".2f"),
             compare._fmt(None if r["rate"] is None else r["rate"] / 1e9, ".1f"),
             compare._fmt(None if r["of_peak"] is None else 100 * r["of_peak"], ".0f", "%")) for r in rows]
    return compare._render(header, body, markdown, 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "random"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="calls per timing")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    data = peers.load_bench_data(args.data)
    print(data.note)
    print(format_limits(measure_limits(data, repeats=args.repeats, calls=args.calls), args.markdown))


if __name__ == "__main__":
    main()
