"""How many threads the kernels use, and keeping BLAS from oversubscribing the cores."""
import contextlib
import os

import numba
from threadpoolctl import threadpool_limits

from .validation import check_int


def available_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads():
    """NUMBA_NUM_THREADS if set, else SLURM_CPUS_PER_TASK, else the cores available; never above numba's pool."""
    for var in ("NUMBA_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return min(int(value), numba.config.NUMBA_NUM_THREADS)
    return min(available_cores(), numba.config.NUMBA_NUM_THREADS)


def check_threads(n_threads):
    """None (the default) or an int in [1, numba's pool size]."""
    if n_threads is None:
        return default_threads()
    n = check_int(n_threads, "n_threads", minimum=1)
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n_threads must be at most {numba.config.NUMBA_NUM_THREADS} (numba's thread pool, "
                         f"set by NUMBA_NUM_THREADS); got {n}.")
    return n


@contextlib.contextmanager
def using_threads(n_threads, *, limit_blas=False):
    """Run the kernels on n_threads; with limit_blas, hold BLAS to one thread meanwhile so that the two never
    oversubscribe the cores (worth its cost of a library scan only around long work such as fit)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        if limit_blas:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
        else:
            yield
    finally:
        numba.set_num_threads(previous)
