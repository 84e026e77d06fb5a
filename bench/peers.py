"""What the benchmarks share: the training data, the timed *cases*, and the implementations fastbp is
measured against (the NumPy baselines of ``fastbp.reference`` and a PyTorch CPU peer).

A case is one implementation on one setup (layer sizes, mini-batch size, dtype, threads). All cases of a run
start from the same parameters and walk the same shuffled order of training rows, a chunk of mini-batches per
``step()``, so they train on the same mini-batches. ``run_interleaved`` times the cases round-robin, so that
any drift of the machine's speed (other load, clock changes) hits every implementation alike.

Nothing here is named ``time_*``/``track_*``/``mem_*``/``peakmem_*``: asv collects those from every module of
the benchmark directory.
"""
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

ETA = 3.0  # the book's learning rate for sigmoid neurons and the quadratic cost
N_CLASSES = 10
FASHION_SHAPE = (60_000, 784)  # Fashion-MNIST's training images


# ----------------------------------------------------------------------------------------------- data
class BenchData:
    """Training rows ``X`` (n, n_in) float64 in [0, 1] and labels ``y`` (n,) int64, with a note on their origin.

    ``X_as(dtype)`` and ``Y_as(dtype)`` (one-hot targets (n, 10)) convert once and keep the copies, so that
    every case of a run reads the same arrays (float ones start a cache line, as fastbp's loaders return them);
    ``X_as("uint8")`` is the inputs as 8-bit pixels (ScaledInputs, scale 1/255: exact for image data, a rounding
    of random data, whose values do not change the speed).
    """

    def __init__(self, name, X, y, note=""):
        from fastbp import aligned
        self.name = name
        self.X = aligned.ascontiguous(X, np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.note = note
        self._X = {"float64": self.X}
        self._Y = {}

    @property
    def n_rows(self):
        return self.X.shape[0]

    @property
    def n_in(self):
        return self.X.shape[1]

    def X_as(self, dtype):
        dtype = np.dtype(dtype).name
        if dtype not in self._X:
            if dtype == "uint8":
                from fastbp import ScaledInputs
                self._X[dtype] = ScaledInputs(np.rint(self.X * 255).astype(np.uint8), 1 / 255)
            else:
                from fastbp import aligned
                self._X[dtype] = aligned.ascontiguous(self.X, dtype)
        return self._X[dtype]

    def Y_as(self, dtype):
        dtype = np.dtype(dtype).name
        if dtype not in self._Y:
            from fastbp.datasets import one_hot
            self._Y[dtype] = one_hot(self.y, N_CLASSES, dtype=dtype)
        return self._Y[dtype]


def random_data(n_rows, n_in, seed=0, note=""):
    """Uniform [0, 1) inputs with uniform labels: the right shape when no real data set is at hand."""
    rng = np.random.default_rng(seed)
    return BenchData("random", rng.random((n_rows, n_in)), rng.integers(0, N_CLASSES, n_rows), note)


def load_bench_data(spec="fashion-mnist", n_rows=None, seed=0):
    """The training set to time on: "fashion-mnist" (random data of its shape when it is not installed),
    "digits" (scikit-learn's 8x8 digits, 64 inputs) or "random" (Fashion-MNIST's shape). ``n_rows`` keeps
    only the first rows."""
    from fastbp import datasets

    if spec not in ("fashion-mnist", "digits", "random"):
        raise ValueError(f"data must be 'fashion-mnist', 'digits' or 'random'; got {spec!r}.")
    if spec == "fashion-mnist" and datasets.fashion_mnist_available():
        d = datasets.load_fashion_mnist()
        data = BenchData("fashion-mnist", d.X_train, d.y_train,
                         f"Fashion-MNIST training set ({len(d.X_train):,} images of 784 pixels)")
    elif spec == "digits":
        d = datasets.load_digits()
        data = BenchData("digits", d.X_train, d.y_train,
                         f"scikit-learn digits training set ({len(d.X_train):,} images of 64 pixels)")
    else:
        why = ("Fashion-MNIST is not installed, so " if spec == "fashion-mnist" else "")
        rows = FASHION_SHAPE[0] if n_rows is None else min(n_rows, FASHION_SHAPE[0])
        return random_data(rows, FASHION_SHAPE[1], seed,
                           f"{why}random data of Fashion-MNIST's shape ({rows:,} x {FASHION_SHAPE[1]}); "
                           "the speed does not depend on the values")
    if n_rows is not None and n_rows < data.n_rows:
        data = BenchData(data.name, data.X[:n_rows], data.y[:n_rows], f"{data.note}, first {n_rows:,} rows")
    return data


def make_schedule(n_rows, min_length, seed=0):
    """The shuffled order of training rows that every case walks: permutations of range(n_rows) end to end,
    at least ``min_length`` long (int64)."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < max(n_rows, min_length):
        parts.append(rng.permutation(n_rows))
        total += n_rows
    return np.concatenate(parts).astype(np.int64)


class Cursor:
    """Hands out consecutive slices of ``length`` rows of the schedule, starting over at its end."""

    def __init__(self, schedule, length):
        if length > schedule.shape[0]:
            raise ValueError(f"length must be at most the schedule's {schedule.shape[0]} rows; got {length}.")
        self.schedule = schedule
        self.length = length
        self.pos = 0

    def next(self):
        if self.pos + self.length > self.schedule.shape[0]:
            self.pos = 0
        rows = self.schedule[self.pos:self.pos + self.length]
        self.pos += self.length
        return rows


def initial_parameters(sizes, seed=0):
    """The weights and biases every implementation starts from: network2's default initialisation
    (weights N(0, 1/n_in), biases N(0, 1)), float64 lists of (n_out, n_in) and (n_out,) arrays."""
    from fastbp.reference import init_parameters
    return init_parameters(list(sizes), np.random.default_rng(seed), scale="default")


# ----------------------------------------------------------------------------------------------- timing
class Case:
    """One implementation on one setup, timed a chunk at a time.

    ``key`` describes it (impl, setup, sizes, batch_size, dtype, threads); ``step()`` does one chunk of work
    worth ``units`` units (training examples, or gradients); ``context()`` is entered around every timed chunk
    but outside the clock (it sets thread counts); ``parameters()`` returns the current float64
    (weights, biases), to check that the implementations train alike.
    """

    def __init__(self, key, step, *, units, unit="example", context=None, parameters=None, info=None):
        self.key = dict(key)
        self.step = step
        self.units = units
        self.unit = unit
        self.context = context or contextlib.nullcontext
        self.parameters = parameters
        self.info = dict(info or {})

    def measure(self, lead_in=False):
        """Seconds per unit for one chunk; with ``lead_in``, after one untimed chunk in the same context, so that
        the case's own worker threads are running when the clock starts."""
        with self.context():
            if lead_in:
                self.step()
            start = time.perf_counter()
            self.step()
            elapsed = time.perf_counter() - start
        return elapsed / self.units

    def warm(self):
        """One untimed chunk: compiled code loaded, caches and allocators warm."""
        with self.context():
            self.step()

    def __repr__(self):
        return f"Case({self.key})"


def run_interleaved(cases, repeats, *, warm=True, pause=0.0, progress=None):
    """Time every case ``repeats`` times, round-robin; returns one list of seconds per unit for each case.

    With ``pause``, each timed chunk follows ``pause`` seconds of sleep and then an untimed lead-in chunk of the
    same case. The sleep lets the worker threads of the case before (BLAS, OpenMP), which spin for a while
    after their work, go idle instead of competing with the next case. The lead-in wakes the case's own
    threads: on a virtual machine a core left idle may take milliseconds to run again. Measured on 2 cores with
    a two-thread loop of equal halves after 0.1 s of sleep, the second thread started 0.8-4.7 ms after the
    first, as long as a whole timed chunk of the book's network at mini-batch 10. Training runs mini-batch
    after mini-batch, threads awake, and so does a timed chunk after its lead-in. ``progress(i, repeats)`` is
    called after each round.
    """
    if warm:
        for case in cases:
            case.warm()
    samples = [[] for _ in cases]
    for r in range(repeats):
        for case, out in zip(cases, samples):
            if pause:
                time.sleep(pause)
            out.append(case.measure(lead_in=bool(pause)))
        if progress is not None:
            progress(r + 1, repeats)
    return samples


def summarize(case, seconds):
    """A result record for one case: its key, the unit, and median / min / all samples in microseconds."""
    us = [s * 1e6 for s in seconds]
    return dict(case.key, unit=case.unit, units_per_chunk=case.units, median_us=float(np.median(us)),
                min_us=float(np.min(us)), samples_us=us, info=case.info)


def blas_threads(n):
    """Context: BLAS (NumPy's matmul) limited to n threads."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=n, user_api="blas")


def _key(impl, setup, sizes, batch_size, dtype, threads):
    return dict(impl=impl, setup=setup, sizes=list(sizes), batch_size=batch_size, dtype=np.dtype(dtype).name,
                threads=threads)


# ----------------------------------------------------------------------------------------------- fastbp
def train_epoch_stats():
    """Numba's cache hits and misses of the training kernel so far: tells a compile from a cache load."""
    from fastbp import kernels
    stats = kernels.train_epoch.stats
    return sum(stats.cache_hits.values()), sum(stats.cache_misses.values())


def fastbp_first_call(data, sizes, batch_size, dtype):
    """Seconds of the first model and training call for (sizes, dtype) in this process, on a scratch model: the
    JIT compile (or the load of the compiled code from numba's disk cache) plus one mini-batch. Returns
    (seconds, how) with how "compiled", "loaded from cache" or "already loaded"."""
    from fastbp.model import MLP, Trainer
    hits, misses = train_epoch_stats()
    start = time.perf_counter()
    model = MLP(sizes, dtype=dtype, seed=0, n_threads=1)
    trainer = Trainer(model, data.X[:batch_size], data.y[:batch_size], batch_size=batch_size, eta=ETA)
    trainer.epoch(np.arange(min(batch_size, data.n_rows), dtype=np.int64))
    seconds = time.perf_counter() - start
    hits2, misses2 = train_epoch_stats()
    how = "compiled" if misses2 > misses else "loaded from cache" if hits2 > hits else "already loaded"
    return seconds, how


def fastbp_case(data, setup, sizes, batch_size, dtype, n_threads, n_batches, schedule, params, eta=ETA,
                inputs="float"):
    """fastbp's ``MLP.fit`` loop without the per-epoch extras: ``Trainer(...).epoch(order)``, one jitted call
    per chunk of ``n_batches`` mini-batches, numba on ``n_threads`` threads and BLAS held to one, as in fit.
    ``inputs="uint8"`` trains on the 8-bit pixels (ScaledInputs) as ``fastbp train`` does."""
    from fastbp.model import MLP, Trainer
    from fastbp.threads import using_threads

    first_seconds, how = fastbp_first_call(data, sizes, batch_size, dtype)
    model = MLP(sizes, dtype=dtype, seed=0, n_threads=n_threads)
    model.weights, model.biases = params
    trainer = Trainer(model, data.X_as(dtype if inputs == "float" else inputs), data.y, batch_size=batch_size,
                      eta=eta)
    cursor = Cursor(schedule, n_batches * batch_size)

    def step():
        trainer.epoch(cursor.next())

    impl = "fastbp" if inputs == "float" else f"fastbp-{inputs}"
    return Case(_key(impl, setup, sizes, batch_size, dtype, n_threads), step, units=cursor.length,
                context=lambda: using_threads(n_threads, limit_blas=True),
                parameters=lambda: ([np.array(w, np.float64) for w in model.weights],
                                    [np.array(b, np.float64) for b in model.biases]),
                info={"first_call_seconds": first_seconds, "first_call": how})


# ----------------------------------------------------------------------------------------------- NumPy
def numpy_matrix_update(weights, biases, X, Y, eta):
    """One SGD step with the chapter's matrix-based backprop of ``fastbp.reference``, in the data's dtype.

    float64 goes through ``reference.update_mini_batch_matrix`` itself; that function computes in float64
    whatever it is given, so float32 calls its backprop core directly and applies the same update rule,
    keeping every array float32.
    """
    from fastbp import reference
    if X.dtype == np.float64:
        return reference.update_mini_batch_matrix(weights, biases, X, Y, eta)
    nabla_w, nabla_b = reference._backprop_matrix(weights, biases, X, Y, ["sigmoid"] * len(weights),
                                                  "quadratic")
    scale = X.dtype.type(eta / len(X))
    return ([w - scale * nw for w, nw in zip(weights, nabla_w)],
            [b - scale * nb for b, nb in zip(biases, nabla_b)])


def numpy_case(data, setup, sizes, batch_size, dtype, threads, n_batches, schedule, params, *,
               method="matrix", eta=ETA):
    """The NumPy baselines of ``fastbp.reference``: the book's per-example loop (``method="per_example"``,
    network.py's ``update_mini_batch``, float64 only) or the matrix-based mini-batch (``"matrix"``), with
    BLAS on ``threads`` threads."""
    from fastbp import reference
    if method not in ("matrix", "per_example"):
        raise ValueError(f"method must be 'matrix' or 'per_example'; got {method!r}.")
    dtype = np.dtype(dtype)
    if method == "per_example" and dtype != np.float64:
        raise ValueError(f"dtype must be float64 for the per-example baseline (it computes in float64); "
                         f"got {dtype.name}.")
    update = numpy_matrix_update if method == "matrix" else reference.update_mini_batch_per_example
    X, Y = data.X_as(dtype), data.Y_as(dtype)
    state = [[w.astype(dtype) for w in params[0]], [b.astype(dtype) for b in params[1]]]
    cursor = Cursor(schedule, n_batches * batch_size)

    def step():
        rows = cursor.next()
        weights, biases = state
        for k in range(0, rows.shape[0], batch_size):
            batch = rows[k:k + batch_size]
            weights, biases = update(weights, biases, X[batch], Y[batch], eta)
        state[:] = weights, biases

    impl = "numpy-matrix" if method == "matrix" else "numpy-per-example"
    return Case(_key(impl, setup, sizes, batch_size, dtype, threads), step, units=cursor.length,
                context=lambda: blas_threads(threads),
                parameters=lambda: ([np.array(w, np.float64) for w in state[0]],
                                    [np.array(b, np.float64) for b in state[1]]))


# ----------------------------------------------------------------------------------------------- PyTorch
def torch_version():
    """PyTorch's version, or None when ``import torch`` fails."""
    try:
        import torch
    except Exception:  # not installed, or a broken install: either way there is no peer to time
        return None
    return torch.__version__


class TorchMLP:
    """The same network in PyTorch: Linear layers with sigmoids, the quadratic cost
    C = 0.5 sum ||a - y||^2 / m (MSE summed, halved, over the batch), plain SGD with learning rate eta."""

    def __init__(self, weights, biases, dtype, eta=ETA):
        import torch
        self.torch = torch
        self.dtype = getattr(torch, np.dtype(dtype).name)
        layers = []
        for w, b in zip(weights, biases):
            linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=self.dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.asarray(w, np.float64)))
                linear.bias.copy_(torch.from_numpy(np.asarray(b, np.float64)))
            layers += [linear, torch.nn.Sigmoid()]
        self.net = torch.nn.Sequential(*layers)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=eta)

    def update_mini_batch(self, X, Y):
        """One SGD step on the batch X (m, n_in), Y (m, n_out) (tensors)."""
        self.optimizer.zero_grad(set_to_none=True)
        cost = 0.5 * self.torch.nn.functional.mse_loss(self.net(X), Y, reduction="sum") / X.shape[0]
        cost.backward()
        self.optimizer.step()

    def parameters(self):
        linears = [layer for layer in self.net if isinstance(layer, self.torch.nn.Linear)]
        return ([layer.weight.detach().double().numpy().copy() for layer in linears],
                [layer.bias.detach().double().numpy().copy() for layer in linears])


@contextlib.contextmanager
def torch_threads(n):
    """Context: PyTorch's intra-op pool on n threads."""
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_case(data, setup, sizes, batch_size, dtype, threads, n_batches, schedule, params, eta=ETA):
    """PyTorch CPU with ``torch.set_num_threads(threads)``, on the same mini-batches."""
    import torch
    model = TorchMLP(params[0], params[1], dtype, eta)
    X = torch.from_numpy(data.X_as(dtype))
    Y = torch.from_numpy(data.Y_as(dtype))
    cursor = Cursor(schedule, n_batches * batch_size)

    def step():
        rows = torch.from_numpy(cursor.next())
        for k in range(0, rows.shape[0], batch_size):
            batch = rows[k:k + batch_size]
            model.update_mini_batch(X.index_select(0, batch), Y.index_select(0, batch))

    return Case(_key("torch", setup, sizes, batch_size, dtype, threads), step, units=cursor.length,
                context=lambda: torch_threads(threads), parameters=model.parameters)


# ----------------------------------------------------------------------------------------------- gradients
def gradient_cases(sizes=(64, 20, 10), n_rows=10, backprop_calls=200, seed=0):
    """Finite differences (``fastbp.gradcheck.finite_difference_gradient``: two cost evaluations per
    parameter) against backprop (``model.gradient``), per gradient of the mean cost over ``n_rows`` rows."""
    from fastbp.gradcheck import finite_difference_gradient
    from fastbp.model import MLP

    model = MLP(list(sizes), seed=seed, n_threads=1)
    rng = np.random.default_rng(seed)
    X = rng.random((n_rows, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n_rows)]
    model.gradient(X, Y)  # compile (or load) before anything is timed
    key = dict(setup=f"{list(sizes)}, {n_rows} rows", sizes=list(sizes), batch_size=n_rows, dtype="float64",
               threads=1)

    def backprop():
        for _ in range(backprop_calls):
            model.gradient(X, Y)

    return [Case(dict(key, impl="backprop"), backprop, units=backprop_calls, unit="gradient",
                 info={"n_params": model.n_params}),
            Case(dict(key, impl="finite-differences"), lambda: finite_difference_gradient(model, X, Y),
                 units=1, unit="gradient", info={"n_params": model.n_params})]


# ----------------------------------------------------------------------------------------------- compile time
_FIRST_EPOCH_SCRIPT = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from fastbp.model import MLP, Trainer
imported = time.perf_counter()
sizes, batch_size, dtype = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.random((4 * batch_size, sizes[0]))
y = rng.integers(0, sizes[-1], 4 * batch_size)
trainer = Trainer(MLP(sizes, dtype=dtype, seed=0), X, y, batch_size=batch_size, eta=3.0)
before = time.perf_counter()
trainer.epoch(np.arange(4 * batch_size, dtype=np.int64))
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "first_epoch_seconds": done - before,
                  "total_seconds": done - start}))
"""


def first_epoch_subprocess(cache_dir, sizes=(784, 30, 10), batch_size=10, dtype="float64", timeout=900):
    """A fresh Python with numba's cache in ``cache_dir``: seconds from ``import fastbp`` to its first
    training epoch returning (an empty directory: the full JIT compile; a warm one: the cache load).

    Returns a dict with "import_seconds", "first_epoch_seconds" and "total_seconds".
    """
    import fastbp
    env = dict(os.environ, NUMBA_CACHE_DIR=os.fspath(cache_dir))
    # The same fastbp as this process, also when it runs from a source tree rather than an install.
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", _FIRST_EPOCH_SCRIPT, json.dumps([list(sizes), batch_size, dtype])],
                         env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"the first-epoch subprocess failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
