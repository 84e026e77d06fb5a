"""Thread count independence (bitwise), thread defaults, and the on-disk kernel cache."""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from fastbp import MLP
from fastbp.threads import default_threads

two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread here")


@two_threads
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [40, 360])  # one block of examples; several (kernels.example_block)
def test_same_seed_same_bits_whatever_the_thread_count(rng, dtype, optimizer, batch_size):
    # Layers big enough that the parallel kernels run (m * n_in * n_out above the threshold).
    X, y = rng.random((400, 300)), rng.integers(0, 10, 400)
    results = []
    for n_threads in (1, 2):
        net = MLP([300, 64, 48, 10], seed=9, dtype=dtype, n_threads=n_threads)
        net.fit(X, y, epochs=2, batch_size=batch_size, eta=0.5, optimizer=optimizer)
        results.append((net.params.copy(), net.forward(X), net.gradient(X, y)[0][0]))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@two_threads
def test_a_batch_larger_than_the_data_is_the_whole_data(rng):
    """The one-region epoch allocates by the rows there are, not by batch_size (2**40 would need 8 TB)."""
    X, y = rng.random((30, 200)), rng.integers(0, 3, 30)
    results = []
    for batch_size in (30, 2 ** 40):
        net = MLP([200, 40, 3], seed=0, n_threads=2)
        net.fit(X, y, epochs=2, batch_size=batch_size, eta=0.5)
        results.append(net.params.copy())
    np.testing.assert_array_equal(results[0], results[1])


# (sizes, activation, cost, batch_size, n, 8-bit inputs): odd mini-batches with a short last one; more
# participants than pairs of examples (some shares are empty); a softmax output; 8-bit inputs; a user-defined
# activation; layers whose mini-batches take several blocks of examples (kernels.example_block: layer 1 in
# blocks of 10 in float64 and of 30, 30, 5 in float32; layer 2 in 30, 30, 5 and in 40, 25), the last one odd, and
# a last mini-batch that fits one block (8 rows).
ONE_REGION_CASES = [
    ([20, 9, 7, 3], "sigmoid", "quadratic", 7, 52, False),
    ([3000, 1500, 5, 3], "sigmoid", "quadratic", 65, 138, False),
    ([12, 6, 5], ["tanh", "softmax"], "log-likelihood", 4, 30, False),
    ([16, 8, 4], ["relu", "sigmoid"], "cross-entropy", 6, 40, True),
    ([10, 5, 3], "custom", "quadratic", 5, 23, False),
    ([40, 9, 7, 3], "sigmoid", "quadratic", 17, 60, False),  # layer 1 transposed (kernels.layer1_transposed)
    ([50, 12, 4], ["relu", "sigmoid"], "cross-entropy", 16, 50, True),  # the same with 8-bit inputs
    ([64, 70, 5], "sigmoid", "quadratic", 16, 45, True),  # 6 cells of units x halves: shares of several cells
    ([64, 40, 5], "sigmoid", "quadratic", 22, 45, False),  # 4 cells; a last mini-batch of one example
    ([3000, 20, 5, 3], "sigmoid", "quadratic", 65, 138, True),  # blocks of 8-bit inputs copied as floats first
    ([67, 30, 6], "sigmoid", "quadratic", 10, 47, False),  # float64: 30 units in pairs of rows, a lone last row
    ([66, 62, 4], "sigmoid", "quadratic", 7, 40, True),  # 32 + 30 units, 8-bit inputs in halves of 33 rows
    # layers above layer 1 small enough for replicas (kernels.replicates_upper_layers): one meeting per mini-batch
    ([96, 30, 4], "sigmoid", "quadratic", 10, 47, False),
    ([120, 24, 6, 3], ["tanh", "relu", "softmax"], "log-likelihood", 9, 50, True),
    ([80, 30, 3], "custom", "quadratic", 6, 31, False),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ONE_REGION_CASES, ids=lambda c: "-".join(map(str, c[0])))
def test_one_region_epoch_gives_the_bits_of_the_one_thread_path(rng, dtype, case):
    """train_epoch_shared (one parallel region, participants meeting at barriers) against train_epoch's
    one-thread path: the same bits for 2, 3 and 5 participants, on two threads and on one (where the
    participants run one after another, the first taking the shares of those not started), and when an epoch
    is split into several calls (as for a progress bar)."""
    check_one_region_against_one_thread(rng, dtype, case, "SGD")


# Other optimizers train layer 1 as it is (never transposed) and never copy 8-bit inputs first.
ONE_REGION_OPTIMIZER_CASES = [ONE_REGION_CASES[i] for i in (0, 1, 3, 5, 9)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", ["MOMENTUM", "NESTEROV", "ADAM"])
@pytest.mark.parametrize("case", ONE_REGION_OPTIMIZER_CASES, ids=lambda c: "-".join(map(str, c[0])))
def test_one_region_epoch_of_other_optimizers_gives_the_bits_of_the_one_thread_path(rng, dtype, opt, case):
    """The same for momentum, Nesterov and Adam: each participant's share of the gradient, of the update and of
    layer 1's next weighted input; the optimizer's state and Adam's count of updates too."""
    check_one_region_against_one_thread(rng, dtype, case, opt)


def check_one_region_against_one_thread(rng, dtype, case, opt_name):
    from conftest import softplus, softplus_prime
    from fastbp import ScaledInputs, kernels
    from fastbp.inputs import kernel_inputs

    sizes, activation, cost, batch_size, n, integers = case
    if activation == "custom":
        activation = [(softplus, softplus_prime), "sigmoid"]
    net = MLP(sizes, activation=activation, cost=cost, dtype=dtype, seed=3)
    X = rng.random((n, sizes[0]))
    X = ScaledInputs(rng.integers(0, 256, X.shape, dtype=np.uint8), 1 / 255) if integers else X.astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    order = rng.permutation(n)
    opt = getattr(kernels, opt_name)
    n_batches = -(-n // batch_size)
    assert kernels.one_region_applies(opt, net._layout, batch_size, 0, 2)

    def train(n_threads, n_parts, splits=(0, n_batches)):
        theta, grad = net._theta.copy(), np.zeros_like(net._theta)
        state = np.zeros((2, theta.size) if opt != kernels.SGD else (2, 1), dtype)
        hyper = np.zeros(kernels.N_HYPER)
        hyper[[kernels.ETA, kernels.L2, kernels.MU, kernels.BETA1, kernels.BETA2, kernels.EPS]] = (
            0.02 if opt == kernels.ADAM else 0.5, 1e-3, 0.9, 0.9, 0.999, 1e-8)
        ws = np.empty(kernels.workspace_length(net._layout, batch_size), dtype)
        numba.set_num_threads(n_threads)
        try:
            for first, stop in zip(splits[:-1], splits[1:]):
                head = (theta, net._layout, net._cost_code, *kernel_inputs(X), Y, order, batch_size, first, stop, opt,
                        hyper, grad, state, ws)
                if n_parts > 1:
                    net._kernel("train_epoch_shared", *head, 0, n_parts)
                else:
                    net._kernel("train_epoch", *head, np.iinfo(np.int64).max)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        return np.concatenate([theta, state.ravel(), hyper])

    reference = train(1, 1)
    assert np.isfinite(reference).all() and not np.array_equal(reference[:net._theta.size], net._theta)
    for n_threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        for n_parts in (2, 3, 5):
            np.testing.assert_array_equal(train(n_threads, n_parts), reference, err_msg=f"{n_threads} {n_parts}")
    np.testing.assert_array_equal(train(numba.config.NUMBA_NUM_THREADS, 2, (0, 1, 3, n_batches)), reference)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_region_cases_take_both_ways_of_training_layer1(dtype):
    """The cases above cover layer 1 trained as it is and transposed, in both dtypes."""
    from fastbp import kernels
    ways = {bool(kernels.layer1_transposed(np.empty((sizes[1], sizes[0]), dtype), batch_size))
            for sizes, _, _, batch_size, _, _ in ONE_REGION_CASES}
    assert ways == {False, True}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_region_cases_take_both_meetings_of_layer1_transposed(dtype):
    """Among the cases above that train layer 1 transposed, some replicate the layers above it (one meeting per
    mini-batch, kernels.train_batches_replicated), others do not (two meetings), with and without a
    user-defined activation."""
    from fastbp import kernels
    replicas = set()
    for sizes, activation, _, batch_size, _, _ in ONE_REGION_CASES:
        if kernels.layer1_transposed(np.empty((sizes[1], sizes[0]), dtype), batch_size):
            replicas.add((bool(kernels.replicates_upper_layers(MLP(sizes)._layout, batch_size)),
                          activation == "custom"))
    assert replicas == {(False, False), (False, True), (True, False), (True, True)}


def test_a_replica_copies_every_parameter_but_layer1_weights(rng):
    """What the lead of the replicated epoch hands a participant that joins: every bias and every weight above
    layer 1 (NaN where nothing is copied: layer 1's weights and the padding after theta)."""
    from fastbp import kernels
    net = MLP([9, 5, 4, 3], seed=1)
    replica = np.full(net._theta.size + 5, np.nan)
    kernels._copy_replica(net._theta, replica, net._layout)
    w1 = kernels.weight(net._theta, net._layout, 1)
    for l in range(1, 4):
        np.testing.assert_array_equal(kernels.bias(replica, net._layout, l), net.biases[l - 1])
        if l > 1:
            np.testing.assert_array_equal(kernels.weight(replica, net._layout, l), net.weights[l - 1])
    assert np.isnan(kernels.weight(replica, net._layout, 1)).all() and w1.size == 45
    assert np.isnan(replica[net._theta.size:]).all()
    assert np.count_nonzero(np.isnan(replica)) == 45 + 5


def test_replicas_apply_where_the_upper_layers_are_small():
    """The book's network at m = 10 replicates its layers above layer 1 (300 weights against 23,520), not at
    m = 32 (9,600 multiply-adds per mini-batch); a wide second layer never does."""
    from fastbp import kernels
    book = MLP([784, 30, 10])._layout
    assert kernels.replicates_upper_layers(book, 10)
    assert kernels.replicates_upper_layers(book, 13) and not kernels.replicates_upper_layers(book, 14)
    assert not kernels.replicates_upper_layers(book, 32)
    assert not kernels.replicates_upper_layers(MLP([784, 256, 128, 10])._layout, 1)
    assert not kernels.replicates_upper_layers(MLP([40, 9, 7, 3])._layout, 2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_in", [3, 30, 67])
@pytest.mark.parametrize("n_out", [10, 7, 5])  # units left after the groups of four: 2, 3 (2 + 1), 1
def test_an_examples_values_do_not_depend_on_how_the_examples_are_paired(rng, dtype, n_in, n_out):
    """Stage 1's shares cut a mini-batch at any example, so eq. 25 (weighted_input: partial_input_units' 4-unit x
    2-example tiles) and BP2 (backpropagate, pairs of examples) must give each example the same bits whether it is
    paired with the one before, the one after, or itself."""
    from fastbp import kernels

    m = 7
    W, b = rng.standard_normal((n_out, n_in)).astype(dtype), rng.standard_normal(n_out).astype(dtype)
    A = rng.standard_normal((m + 3, n_in)).astype(dtype)
    rows = rng.permutation(m + 3)[:m]
    delta_next = rng.standard_normal((m, n_out)).astype(dtype)

    def forward(x0, x1):
        Z = np.full((x1 - x0, n_out), np.nan, dtype)
        kernels.weighted_input(W, b, A, 1.0, rows[x0:x1], Z, 0, kernels.unit_groups(W))
        return Z

    def bp2(x0, x1):
        out = np.full((x1 - x0, n_in), np.nan, dtype)
        kernels.backpropagate(W, delta_next[x0:x1], out)
        return out

    for compute in (forward, bp2):
        whole = compute(0, m)
        assert np.isfinite(whole).all()
        for cuts in ([0, 1, m], [0, 3, 4, m], [0, 1, 2, 5, m], list(range(m + 1))):
            parts = np.concatenate([compute(x0, x1) for x0, x1 in zip(cuts[:-1], cuts[1:])])
            np.testing.assert_array_equal(parts, whole, err_msg=f"{compute.__name__} {cuts}")
    np.testing.assert_allclose(forward(0, m), A[rows].astype(np.float64) @ W.T.astype(np.float64) + b,
                               rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5 if dtype == "float32" else 1e-12)


def test_one_region_epoch_is_chosen_only_where_it_applies():
    """A hidden layer (any optimizer), several threads and layer 1 big enough: anything else keeps
    train_epoch."""
    from fastbp import kernels
    from fastbp.model import ONE_REGION_MIN_WORK

    def applies(sizes, opt=kernels.SGD, batch_size=10, n_threads=2):
        net = MLP(sizes)
        return kernels.one_region_applies(opt, net._layout, batch_size, ONE_REGION_MIN_WORK, n_threads)

    assert applies([784, 30, 10])
    assert applies([784, 30, 10], batch_size=32)  # two blocks of examples
    assert not applies([784, 30, 10], n_threads=1)
    assert applies([784, 30, 10], opt=kernels.MOMENTUM)
    assert applies([784, 30, 10], opt=kernels.ADAM)
    assert not applies([784, 10])  # no hidden layer
    assert not applies([64, 20, 10])  # layer 1's work far below the threshold
    assert applies([784, 256, 128, 10], batch_size=128)  # layers 1 and 2 take several blocks of examples


def test_default_threads_order(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert default_threads() == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert default_threads() == 1
    monkeypatch.delenv("NUMBA_NUM_THREADS")
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert 1 <= default_threads() <= numba.config.NUMBA_NUM_THREADS
    assert MLP([2, 2], n_threads=1).n_threads == 1


SCRIPT = textwrap.dedent("""
    import numpy as np
    from fastbp import MLP, kernels
    rng = np.random.default_rng(0)
    net = MLP([20, 10, 3], seed=0)
    net.fit(rng.random((30, 20)), rng.integers(0, 3, 30), epochs=1, batch_size=10, eta=1.0)
    stats = kernels.train_epoch.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
""")


def run_script(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return tuple(map(int, run.stdout.split()))  # train_epoch's cache hits, misses


@pytest.fixture(scope="module")
def first_process(tmp_path_factory):
    """SCRIPT run once in a new process with an empty disk cache (the full compile, up to two minutes):
    the cache directory it filled and train_epoch's (hits, misses)."""
    cache_dir = tmp_path_factory.mktemp("numba_cache")
    return cache_dir, run_script(cache_dir)


def test_second_process_loads_compiled_kernels_from_disk(first_process):
    cache_dir, (first_hits, first_misses) = first_process
    second_hits, second_misses = run_script(cache_dir)
    assert first_misses >= 1 and first_hits == 0
    assert second_hits >= 1 and second_misses == 0


def test_the_kernel_cache_goes_stale_when_any_kernel_source_changes(tmp_path):
    """Numba stamps a cached function with its own file only; fastbp's cache locators add the stamp of every
    kernel source (codegen.KERNEL_SOURCES), so that a kernel inlining another file's code (kernels.py calls
    transposed.py, which uses simd.py's intrinsics) is compiled again when that file changes."""
    from fastbp import codegen, kernels
    locator = kernels.train_epoch._cache._impl._locator
    assert type(locator).__name__.startswith("FastbpSources")
    assert locator.get_source_stamp()[1] == codegen.kernel_sources_stamp(os.path.dirname(kernels.__file__))
    for name in codegen.KERNEL_SOURCES:
        (tmp_path / name).write_text("x = 1\n")
    before = codegen.kernel_sources_stamp(tmp_path)
    for name in codegen.KERNEL_SOURCES:
        st = (tmp_path / name).stat()
        os.utime(tmp_path / name, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
        after = codegen.kernel_sources_stamp(tmp_path)
        assert after != before, name
        before = after


def test_serial_and_parallel_kernels_do_not_share_a_cache(first_process):
    """Numba names a disk cache after the function, so each kernel's parallel twin needs a name of its own:
    otherwise a new process would load one compiled version for both (measured: 'serial' kernels that
    launched thread pools and 'parallel' ones that ran on one thread)."""
    cache_dir = first_process[0]
    for name in ("_weighted_input", "_accumulate_bp34", "_backpropagate", "_update_and_forward_layer1"):
        serial = list(cache_dir.rglob(f"kernels.{name}-*.nbc"))
        parallel = list(cache_dir.rglob(f"kernels.{name}_par-*.nbc"))
        assert serial and parallel, name
        # The parallel version calls Numba's work scheduler; the serial one never does.
        assert all(b"do_scheduling" in f.read_bytes() for f in parallel), name
        assert not any(b"do_scheduling" in f.read_bytes() for f in serial), name


@pytest.mark.parametrize("trainer_kind", ["single", "mpi", "one-region"])
def test_prepare_compiles_every_kernel_an_epoch_needs_and_changes_nothing(rng, trainer_kind, monkeypatch):
    """After Trainer.prepare, training and its per-epoch evaluation compile nothing (so no epoch's time includes
    compilation). The model uses a user-defined activation: its kernels are compiled afresh in this process, so
    any kernel that prepare missed would be compiled inside an epoch and show up here. "one-region": plain SGD
    on two threads with layer 1 large enough for kernels.train_epoch_shared."""
    from numba.core import event

    from conftest import softplus, softplus_prime
    from fastbp.model import Trainer

    n_in, n_threads, optimizer = (200, 2, "sgd") if trainer_kind == "one-region" else (6, 1, "momentum")
    if n_threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("numba's pool has one thread here")
    X, y = rng.random((30, n_in)), rng.integers(0, 3, 30)
    Xv, yv = rng.random((9, n_in)), rng.integers(0, 3, 9)
    model = MLP([n_in, 40, 3], activation=[(softplus, softplus_prime), "sigmoid"], seed=0, n_threads=n_threads)
    options = dict(batch_size=10, eta=0.1, validation_data=(Xv, yv), optimizer=optimizer,
                   momentum=0.0 if optimizer == "sgd" else 0.5)
    if trainer_kind == "mpi":
        mpi = pytest.importorskip("fastbp.mpi", reason="mpi4py is not installed (pip install fastbp[mpi])")
        trainer = mpi._MPITrainer(mpi.MPI.COMM_WORLD, model, X, y, **options)
    else:
        trainer = Trainer(model, X, y, **options)
    before = [a.copy() for a in (model._theta, trainer.state, trainer.hyper, trainer.grad)]
    with event.install_recorder("numba:compile") as compiled:
        trainer.prepare(monitor_training=True, monitor_gradients=True)
    assert compiled.buffer, "the model's kernels were expected to compile here"
    entry = {"single": "train_epoch", "mpi": "batch_gradient", "one-region": "train_epoch_shared"}[trainer_kind]
    assert entry in {ev.data["dispatcher"].py_func.__name__ for _, ev in compiled.buffer}
    for a, b in zip(before, (model._theta, trainer.state, trainer.hyper, trainer.grad)):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(trainer, "prepare", lambda *args, **kwargs: 0.0)  # run() would call it again
    with event.install_recorder("numba:compile") as compiled:
        history = trainer.run(2, shuffle=True, early_stopping=None, halve_eta_after=None, min_eta_fraction=0.0,
                              monitor_training=True, monitor_gradients=True, progress=False, callback=None)
    assert not compiled.buffer, [ev.data["dispatcher"] for _, ev in compiled.buffer]
    assert history["epoch"] == [1, 2] and not np.array_equal(model._theta, before[0])


def test_a_kernel_call_starts_numbas_threading_layer_before_the_kernel_runs():
    """A kernel cached by a process that had loaded (not compiled) its parallel callees lacks the hook that starts
    Numba's threading layer on load; a new process that loaded it first called a null pointer. fastbp starts the
    layer before it calls any kernel (``codegen.start_numba_threads``). Checked in a new process, where nothing
    has started it yet, with a kernel that has no parallel code of its own."""
    script = textwrap.dedent("""
        import types
        from numba.np.ufunc import parallel
        import fastbp.model as model
        net = model.MLP([4, 3, 2], seed=0)
        before = parallel._is_initialized
        model.kernels = types.SimpleNamespace(probe=lambda: parallel._is_initialized)
        print(before, net._kernel("probe"))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True"]
