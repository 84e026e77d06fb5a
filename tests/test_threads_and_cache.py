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
def test_same_seed_same_bits_whatever_the_thread_count(rng, dtype, optimizer):
    # Layers big enough that the parallel kernels run (m * n_in * n_out above the threshold).
    X, y = rng.random((200, 300)), rng.integers(0, 10, 200)
    results = []
    for n_threads in (1, 2):
        net = MLP([300, 64, 48, 10], seed=9, dtype=dtype, n_threads=n_threads)
        net.fit(X, y, epochs=2, batch_size=40, eta=0.5, optimizer=optimizer)
        results.append((net.params.copy(), net.forward(X), net.gradient(X, y)[0][0]))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


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


def test_second_process_loads_compiled_kernels_from_disk(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first_hits, first_misses = map(int, runs[0].stdout.split())
    second_hits, second_misses = map(int, runs[1].stdout.split())
    assert first_misses >= 1 and first_hits == 0
    assert second_hits >= 1 and second_misses == 0
