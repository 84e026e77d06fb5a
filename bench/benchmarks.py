"""The asv suite: fastbp's training speed over time, next to its baselines.

Run from the repository root: ``asv run`` (or ``asv run --python=same --quick`` to try the suite on the
installed fastbp). The cases come from ``bench/peers.py`` and ``bench/compare.py``, the same code as the
side-by-side table, so the two always measure the same thing.

Timings are seconds per chunk of ``CHUNK_EXAMPLES`` training examples (128 mini-batches of 10 for the book's
[784, 30, 10], 10 of 128 for [784, 256, 128, 10]) on the first ``ROWS`` images of Fashion-MNIST, or on random
data of the same shape when it is not installed. Every ``setup`` compiles (or loads) the kernels and trains one
untimed chunk first: compile time is never inside a timing; ``Compile`` measures it on its own.
"""
import contextlib
import os

from bench import compare, peers

ROWS = 12_000
CHUNK_EXAMPLES = 1_280
# "book": [784, 30, 10] m=10, "large": [784, 256, 128, 10] m=128: the setups every implementation runs.
SETUPS = [s for s in compare.SETUPS if compare.setup_impls(s) == compare.IMPLS]
DTYPES = list(compare.DTYPES)
THREADS = [1, 2]
SPEEDUP_REPEATS = 5

_DATA = []


def bench_data():
    """The training rows, loaded once per process."""
    if not _DATA:
        _DATA.append(peers.load_bench_data("fashion-mnist", n_rows=ROWS))
    return _DATA[0]


def make_case(impl, setup, dtype, threads, examples=CHUNK_EXAMPLES):
    """One case of compare.build_cases; NotImplementedError (asv: skipped) for a thread count or an
    implementation this machine does not have."""
    if threads not in compare.available_threads(THREADS):
        raise NotImplementedError(f"{threads} threads are more than this machine's numba pool")
    if impl == "torch" and peers.torch_version() is None:
        raise NotImplementedError("PyTorch is not installed")
    n_batches = max(1, examples // compare.SETUPS[setup]["batch_size"])
    [case] = compare.build_cases(bench_data(), setup, impls=(impl,), dtypes=(dtype,), thread_counts=(threads,),
                                 n_batches=n_batches, per_example_share=1)
    return case


class _OneCase:
    """setup builds one case, warms it and sets its threads (outside the timing) until teardown."""
    timeout = 300
    impl = None

    def setup(self, setup, dtype, threads):
        self.case = make_case(self.impl, setup, dtype, threads)
        self.case.warm()
        self._threads = contextlib.ExitStack()
        self._threads.enter_context(self.case.context())

    def teardown(self, *params):
        if getattr(self, "_threads", None) is not None:
            self._threads.close()
            self._threads = None


class FastbpTrain(_OneCase):
    """fastbp: Trainer(...).epoch(order) over one chunk, the loop of MLP.fit."""
    impl = "fastbp"
    params = (SETUPS, DTYPES, THREADS)
    param_names = ["setup", "dtype", "threads"]

    def time_fastbp_epoch_chunk(self, setup, dtype, threads):
        self.case.step()


class FastbpTrainUint8(_OneCase):
    """fastbp on 8-bit pixels (ScaledInputs), as ``fastbp train`` reads Fashion-MNIST."""
    impl = "fastbp-uint8"
    params = (SETUPS, DTYPES, THREADS)
    param_names = ["setup", "dtype", "threads"]

    def time_fastbp_uint8_epoch_chunk(self, setup, dtype, threads):
        self.case.step()


class FastbpOptimizers:
    """fastbp with momentum (0.9) and Adam on the book's [784, 30, 10] at mini-batch 10: the gradient of each
    mini-batch, then the optimizer's update of every parameter (``MLP.fit(..., optimizer=...)``'s loop)."""
    timeout = 300
    params = (["momentum", "adam"], DTYPES, THREADS)
    param_names = ["optimizer", "dtype", "threads"]

    def setup(self, optimizer, dtype, threads):
        from fastbp.model import MLP, Trainer
        from fastbp.threads import using_threads
        if threads not in compare.available_threads(THREADS):
            raise NotImplementedError(f"{threads} threads are more than this machine's numba pool")
        data, batch_size = bench_data(), compare.SETUPS["book"]["batch_size"]
        model = MLP(compare.setup_sizes("book", data.n_in), dtype=dtype, seed=0, n_threads=threads)
        extra = {"momentum": 0.9} if optimizer == "momentum" else {}
        self.trainer = Trainer(model, data.X_as(dtype), data.y, batch_size=batch_size,
                               eta=0.5 if optimizer == "momentum" else 0.01, optimizer=optimizer, **extra)
        self.cursor = peers.Cursor(peers.make_schedule(data.n_rows, CHUNK_EXAMPLES), CHUNK_EXAMPLES)
        self._threads = contextlib.ExitStack()
        self._threads.enter_context(using_threads(threads, limit_blas=True))
        self.trainer.epoch(self.cursor.next())  # compiles or loads the kernels outside the timing

    def teardown(self, *params):
        self._threads.close()

    def time_fastbp_optimizer_chunk(self, optimizer, dtype, threads):
        self.trainer.epoch(self.cursor.next())


class NumpyMatrix(_OneCase):
    """The chapter's matrix-based mini-batch in NumPy (fastbp.reference), BLAS on `threads` threads."""
    impl = "numpy-matrix"
    params = (SETUPS, DTYPES, THREADS)
    param_names = ["setup", "dtype", "threads"]

    def time_numpy_matrix(self, setup, dtype, threads):
        self.case.step()


class NumpyPerExample(_OneCase):
    """The book's per-example loop (network.py's update_mini_batch), on the book's setup only: it is slow."""
    impl = "numpy-per-example"
    params = (["book"], ["float64"], [1])
    param_names = ["setup", "dtype", "threads"]

    def time_numpy_per_example(self, setup, dtype, threads):
        self.case.step()


class Torch(_OneCase):
    """PyTorch CPU: Linear + sigmoid layers, the quadratic cost, plain SGD; skipped without torch."""
    impl = "torch"
    params = (SETUPS, DTYPES, THREADS)
    param_names = ["setup", "dtype", "threads"]

    def time_torch(self, setup, dtype, threads):
        self.case.step()


class Gradients:
    """One gradient of the mean cost over 10 rows of a [64, 20, 10] network: backprop against central finite
    differences (two cost evaluations per parameter)."""
    timeout = 300

    def setup(self):
        self.backprop, self.finite_differences = peers.gradient_cases(backprop_calls=1)

    def time_backprop_gradient(self):
        self.backprop.step()

    def time_finite_differences(self):
        self.finite_differences.step()

    def track_fd_over_backprop(self):
        bp, fd = compare.build_gradient_table(compare.measure_gradients(repeats=3, backprop_calls=100))
        return fd["ratio"]

    track_fd_over_backprop.unit = "ratio"


def _speedup(setup, dtype, baseline, examples=CHUNK_EXAMPLES):
    """Median time of `baseline` / median time of fastbp, both on one thread, timed round-robin."""
    n_batches = max(1, examples // compare.SETUPS[setup]["batch_size"])
    cases = compare.build_cases(bench_data(), setup, impls=("fastbp", baseline), dtypes=(dtype,),
                                thread_counts=(1,), n_batches=n_batches, per_example_share=1)
    rows = compare.build_table(compare.measure(cases, SPEEDUP_REPEATS))
    return next(r["ratio"] for r in rows if r["impl"] == baseline)


class Speedup:
    """How many times faster fastbp trains than the NumPy matrix mini-batch (both single-threaded)."""
    timeout = 600
    params = (SETUPS, DTYPES)
    param_names = ["setup", "dtype"]

    def track_speedup_vs_numpy_matrix(self, setup, dtype):
        return _speedup(setup, dtype, "numpy-matrix")

    track_speedup_vs_numpy_matrix.unit = "ratio"


class SpeedupPerExample:
    """How many times faster fastbp trains than the book's per-example loop ([784, 30, 10], float64)."""
    timeout = 600

    def track_speedup_vs_numpy_per_example(self):
        return _speedup("book", "float64", "numpy-per-example", examples=500)

    track_speedup_vs_numpy_per_example.unit = "ratio"


class Memory:
    """Peak memory of the process around MLP.fit for one epoch over 2,000 rows of Fashion-MNIST's shape.

    The rows are random: memory depends on the shapes only, and loading the whole data set would dominate the
    peak."""
    timeout = 300
    params = (SETUPS,)
    param_names = ["setup"]

    def setup(self, setup):
        from fastbp import MLP
        data = peers.random_data(2000, peers.FASHION_SHAPE[1])
        self.X, self.y = data.X, data.y
        self.sizes = compare.setup_sizes(setup, data.n_in)
        self.batch_size = compare.SETUPS[setup]["batch_size"]
        MLP(self.sizes, seed=0).fit(self.X[:50], self.y[:50], epochs=1, batch_size=10, eta=3.0, progress=False)

    def peakmem_train(self, setup):
        from fastbp import MLP
        MLP(self.sizes, seed=0).fit(self.X, self.y, epochs=1, batch_size=self.batch_size, eta=3.0,
                                    progress=False)


class Compile:
    """Seconds from `import fastbp` to the first training epoch returning, in a fresh process: with an empty
    numba cache (the whole JIT compile) and with the cache that run left behind (loading compiled code)."""
    timeout = 900

    def setup_cache(self):
        # asv runs this once, in a directory the benchmarks of this class then run in.
        cache = os.path.abspath("numba-cache")
        cold = peers.first_epoch_subprocess(cache, compare.setup_sizes("book"), compare.SETUPS["book"]["batch_size"])
        return {"cache_dir": cache, "cold_seconds": cold["total_seconds"]}

    setup_cache.timeout = 900

    def track_compile_seconds(self, cache):
        return cache["cold_seconds"]

    track_compile_seconds.unit = "seconds"

    def track_cached_load_seconds(self, cache):
        warm = peers.first_epoch_subprocess(cache["cache_dir"], compare.setup_sizes("book"),
                                            compare.SETUPS["book"]["batch_size"])
        return warm["total_seconds"]

    track_cached_load_seconds.unit = "seconds"
