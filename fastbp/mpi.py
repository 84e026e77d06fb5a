"""Synchronous data-parallel training over MPI (mpi4py): the results of one process, on several.

Every rank holds the same data and the same network. Each mini-batch of m rows (from one shuffled order that
all ranks share) is cut into contiguous shares, one per rank; each rank adds its share's gradient, scaled by
1/m, into a zeroed flat buffer (theta's layout); one ``Allreduce(MPI.IN_PLACE, grad)`` leaves the mean gradient
of the whole mini-batch on every rank, and every rank applies the same optimizer step. Parameters therefore
stay identical on all ranks and equal those of :meth:`fastbp.MLP.fit` up to the summation order of the
gradient (bit for bit on one rank with "momentum" or "adam"; ~1e-13 with "sgd", which ``MLP.fit`` fuses into
BP4).

Run a script under the launcher, e.g. ``mpirun -n 4 python train.py``, with in it::

    from fastbp import MLP, mpi
    model = MLP([784, 30, 10], seed=0)
    history = mpi.fit(model, X, y, epochs=30, batch_size=1000, eta=3.0, validation_data=(Xt, yt))
    mpi.save(model, "model.npz")   # rank 0 writes, the others wait

or ``mpirun -n 4 python -m fastbp.mpi --data digits --epochs 3`` (the options of ``fastbp train``).

Data parallelism pays when a mini-batch holds enough work to hide one Allreduce of all parameters (large
mini-batches, large layers); at the book's mini-batch of 10 a single process is faster. Open MPI binds each
rank to one core unless started with ``--bind-to none``: see :func:`threads_per_rank`.

Needs mpi4py and an MPI library: ``pip install fastbp[mpi]`` (with e.g. Open MPI installed).
"""
import argparse
import contextlib
import io
import os
import signal
import sys
import time
import warnings

import numba
import numpy as np

try:
    from mpi4py import MPI
except ImportError as exc:  # an optional dependency: say how to get it
    raise ImportError("fastbp.mpi needs mpi4py and an MPI library; install them with `pip install fastbp[mpi]` "
                      "(and an MPI such as Open MPI: `apt-get install openmpi-bin libopenmpi-dev`). "
                      f"Import failed with: {exc}") from exc

from .checkpoint import check_checkpoint_options
from .inputs import kernel_inputs
from .model import Trainer, check_run_options
from .threads import available_cores, default_threads
from .validation import check_int

__all__ = ["fit", "save", "threads_per_rank", "share", "main"]


def share(m, rank, size):
    """The slice of a mini-batch of m rows that ``rank`` of ``size`` computes: contiguous, the shares differ by
    at most one row and some are empty when m < size."""
    return slice(rank * m // size, (rank + 1) * m // size)


def threads_per_rank(comm=None):
    """Kernel threads for this rank: the cores of its node divided among the ranks on the node.

    Counts the cores that the node's ranks may run on (the union of their CPU affinities, so a launcher's
    binding is respected) over the ranks on the node (``Split_type(COMM_TYPE_SHARED)``), never more than this
    rank's own cores nor numba's pool; at least 1. NUMBA_NUM_THREADS or SLURM_CPUS_PER_TASK, when set, already
    say how many threads one process gets and are used as they are. Collective over ``comm``.

    Open MPI binds each rank to one core by default; start with ``mpirun --bind-to none`` (or
    ``--map-by slot:PE=<threads>``) for ranks to run several threads.
    """
    comm = _check_comm(comm)
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        mine = _cpu_set()
        cpus = set().union(*node.allgather(mine))
        ranks_on_node = node.Get_size()
    finally:
        node.Free()
    if any(os.environ.get(v, "").strip().isdigit() for v in ("NUMBA_NUM_THREADS", "SLURM_CPUS_PER_TASK")):
        return default_threads()
    return max(1, min(len(cpus) // ranks_on_node, len(mine), numba.config.NUMBA_NUM_THREADS))


def fit(model, X, y, *, epochs, batch_size, eta, comm=None, lmbda=0.0, optimizer="sgd", momentum=0.0,
        nesterov=False, beta1=0.9, beta2=0.999, epsilon=1e-8, validation_data=None, shuffle=True,
        early_stopping=None, halve_eta_after=None, min_eta_fraction=1 / 128, monitor_training=False,
        monitor_gradients=False, progress=False, callback=None, n_threads=None, checkpoint=None, resume=False):
    """Train ``model`` on all ranks of ``comm`` (default MPI.COMM_WORLD) as :meth:`MLP.fit` would in one process.

    Collective: every rank calls it with the same X (n, n_in), y (n,) or (n, n_out), hyperparameters and
    validation data; the options mean what they mean in ``MLP.fit`` (lmbda's n is the full n). At the start
    rank 0's parameters and random generator (the shuffling) are sent to all ranks, so ranks whose models were
    initialised differently agree. Returns the history (``epoch``, ``seconds``, ``eta``, and ``val_accuracy``,
    ``val_cost`` with validation data), the same on every rank; the model is trained in place on every rank.

    Threads: ``n_threads`` per rank if given, else the model's ``n_threads`` when it was set explicitly (differs
    from the process default), else :func:`threads_per_rank` (cores per node / ranks per node); the model's
    setting is restored afterwards. Invalid arguments raise the same error on every rank, with the model left as
    it was; so does data that differ between ranks. ``callback(epoch, history)`` runs on every rank and training
    stops when any rank's returns True (test ``comm.rank == 0`` in it to print once). Warnings and the progress
    bar (``progress=True``) appear on rank 0 only. Writing files is rank 0's job: see :func:`save`.

    ``checkpoint`` and ``resume`` work as in ``MLP.fit``: rank 0 writes the checkpoint after every epoch and, on
    resume, reads it and sends its state to every rank (the other ranks need not see the file); the resumed
    run is bit for bit the uninterrupted one.
    """
    comm = _check_comm(comm)
    rank = comm.Get_rank()

    def prepare():
        trainer = _MPITrainer(comm, model, X, y, validation_data=validation_data, batch_size=batch_size, eta=eta,
                              lmbda=lmbda, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                              beta1=beta1, beta2=beta2, epsilon=epsilon)
        check_run_options(epochs, validation_data, early_stopping, halve_eta_after, min_eta_fraction, shuffle,
                          monitor_training, monitor_gradients, callback)
        if n_threads is not None:
            check_int(n_threads, "n_threads", minimum=1)
            if n_threads > numba.config.NUMBA_NUM_THREADS:
                raise ValueError(f"n_threads must be at most {numba.config.NUMBA_NUM_THREADS} (numba's thread "
                                 f"pool, set by NUMBA_NUM_THREADS); got {n_threads}.")
        return trainer, _signature(trainer, shuffle), check_checkpoint_options(checkpoint, resume)

    trainer, signature, checkpoint = _collectively(comm, prepare)
    _collectively(comm, lambda: _check_same(comm, signature))

    comm.Bcast(model.params, root=0)
    rng = comm.bcast(model.rng if rank == 0 else None, root=0)
    if rank != 0:
        model.rng = rng
    per_rank = threads_per_rank(comm)  # collective: every rank calls it, whatever it then uses
    threads = n_threads
    if threads is None:
        threads = model.n_threads if model.n_threads != default_threads() else per_rank
    if callback is None:
        agreed = None
    else:
        def agreed(epoch, history):  # one rank's stop must stop them all, or the others wait forever
            return comm.allreduce(bool(callback(epoch, history)), op=MPI.LOR)

    saved_threads, model.n_threads = model.n_threads, threads
    try:
        with warnings.catch_warnings():
            if rank != 0:  # the same warning (e.g. divergence) happens on every rank: show it once
                warnings.simplefilter("ignore")
            return trainer.run(epochs, shuffle=shuffle, early_stopping=early_stopping,
                               halve_eta_after=halve_eta_after, min_eta_fraction=min_eta_fraction,
                               monitor_training=monitor_training, monitor_gradients=monitor_gradients,
                               progress=bool(progress) and rank == 0, callback=agreed, checkpoint=checkpoint,
                               resume=resume)
    finally:
        model.n_threads = saved_threads


def save(model, path, comm=None):
    """Rank 0 writes ``model`` to ``path`` (see :meth:`MLP.save`); every rank returns once the file exists.
    Collective; an error while writing is raised on every rank."""
    comm = _check_comm(comm)
    _collectively(comm, lambda: model.save(path) if comm.Get_rank() == 0 else None)


class _MPITrainer(Trainer):
    """A Trainer whose epoch splits every mini-batch across the ranks of ``comm`` (Trainer.run does the rest:
    shuffling, divergence, history, the eta schedule, early stopping)."""

    def __init__(self, comm, model, X, y, **options):
        super().__init__(model, X, y, **options)
        self.comm = comm

    def epoch(self, order, on_progress=None, n_calls=1):
        """One epoch over X[order]: per mini-batch, this rank's share of the gradient, one Allreduce, the step."""
        model, comm, grad = self.model, self.comm, self.grad
        theta, layout = model._theta, model._layout
        X, x_scale = kernel_inputs(self.X)
        rank, size = comm.Get_rank(), comm.Get_size()
        n, par_min = order.shape[0], model._par_min()
        # self.ws holds min(batch_size, n) rows, at least every share: each share is one chunk of
        # batch_gradient, so one rank adds up its rows exactly as MLP.fit does.
        n_batches = -(-n // self.batch_size)
        report_every = max(1, n_batches // max(1, n_calls))
        reported = 0
        for batch in range(n_batches):
            rows = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            mine = rows[share(rows.shape[0], rank, size)]
            grad.fill(0)
            if mine.shape[0]:
                model._kernel("batch_gradient", theta, layout, model._cost_code, X, x_scale, self.Y, mine,
                              1.0 / rows.shape[0], grad, self.ws, par_min)
            comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM)
            model._kernel("optimizer_step", self.opt, theta, grad, self.state, self.hyper, layout)
            if on_progress is not None and ((batch + 1) % report_every == 0 or batch + 1 == n_batches):
                done = min((batch + 1) * self.batch_size, n)
                on_progress(done - reported)
                reported = done
        self._resynchronise()

    def _prepare_epoch(self):
        """``epoch``'s kernels on no rows, the optimizer step on copies (a step changes its arguments)."""
        model = self.model
        X, x_scale = kernel_inputs(self.X)
        none = np.zeros(0, np.int64)
        model._kernel("batch_gradient", model._theta, model._layout, model._cost_code, X, x_scale, self.Y, none,
                      1.0, self.grad.copy(), self.ws, model._par_min())
        model._kernel("optimizer_step", self.opt, model._theta.copy(), self.grad.copy(), self.state.copy(),
                      self.hyper.copy(), model._layout)

    def _resume(self, path, settings):
        """Rank 0 reads the checkpoint (an error there is raised on every rank); every rank takes its state."""
        comm = self.comm
        run = _collectively(comm, lambda: Trainer._resume(self, path, settings) if comm.Get_rank() == 0 else None)
        run = comm.bcast(run, root=0)
        if run is not None:
            for array in (self.model._theta, self.state, self.hyper):
                comm.Bcast(array, root=0)
            self.model.rng = comm.bcast(self.model.rng, root=0)
        return run

    def _write_checkpoint(self, path, run, settings):
        """Rank 0 writes; an error while writing is raised on every rank, so that none waits for the others."""
        comm = self.comm
        _collectively(comm, lambda: Trainer._write_checkpoint(self, path, run, settings)
                      if comm.Get_rank() == 0 else None)

    def _resynchronise(self):
        """Make sure all ranks hold rank 0's parameters and optimizer state.

        Every rank applies the same update to the same numbers, and Open MPI's Allreduce gives every rank the
        same sum; but the MPI standard only recommends that, so check once per epoch (one broadcast of the
        parameters, small beside an epoch's Allreduces) and, should they differ, adopt rank 0's and warn.
        """
        comm = self.comm
        theta0 = self.model._theta.copy()
        comm.Bcast(theta0, root=0)
        if comm.allreduce(not np.array_equal(theta0, self.model._theta), op=MPI.LOR):
            self.model._theta[...] = theta0
            comm.Bcast(self.state, root=0)
            comm.Bcast(self.hyper, root=0)
            warnings.warn("The ranks' parameters differed after an epoch (the MPI library's Allreduce gave the "
                          "ranks different sums); all ranks now use rank 0's.", RuntimeWarning, stacklevel=2)


# --------------------------------------------------------------------------------------------- helpers
def _check_comm(comm):
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD; "
                        f"got {type(comm).__name__}.")
    return comm


def _cpu_set():
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return frozenset(range(available_cores()))


_ERRORS = {e.__name__: e for e in (ValueError, TypeError, OSError, FileNotFoundError, PermissionError)}


def _collectively(comm, func):
    """func() on every rank; if it raises ValueError, TypeError or OSError on any rank, raise the error of the lowest
    such rank on every rank (rather than leave the others waiting in the next collective call)."""
    try:
        result, error = func(), None
    except (ValueError, TypeError, OSError) as exc:
        result, error = None, exc
    errors = comm.allgather(None if error is None else (type(error).__name__, str(error)))
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if not failed:
        return result
    if error is not None:
        raise error
    kind, message = failed[0][1]
    raise _ERRORS.get(kind, ValueError)(message)


def _signature(trainer, shuffle):
    """What must be equal on all ranks: the network, the data (a CRC-32) and the hyperparameters."""
    model = trainer.model
    return {"network": (model.sizes, tuple(model.activation_names), model.cost_name, model.dtype.name),
            "data": trainer.data_fingerprint(),
            "hyperparameters": (trainer.opt, trainer.batch_size, tuple(trainer.hyper.tolist()), bool(shuffle))}


def _check_same(comm, signature):
    signatures = comm.allgather(signature)
    for r, other in enumerate(signatures):
        for key in signature:
            if other[key] != signatures[0][key]:
                what = {"network": "the model (sizes, activations, cost, dtype)",
                        "data": "the data (X, y, validation_data)",
                        "hyperparameters": "the hyperparameters"}[key]
                raise ValueError(f"{what} must be the same on every rank; got a difference between rank 0 and "
                                 f"rank {r}.")


# --------------------------------------------------------------------------------------------- command
def main(argv=None):
    """``python -m fastbp.mpi [options]`` under mpirun: ``fastbp train``'s options, trained over MPI.

    Returns the exit code (0, 1 on an error, 2 on bad arguments, 143 when stopped by SIGTERM); only rank 0
    prints. With --checkpoint, a SIGTERM to any rank (a scheduler preempting the job signals them all) stops
    every rank after the same epoch, whose checkpoint is then on disk."""
    from . import datasets
    from .cli import (BOOK_HIDDEN, DEFAULT_MOMENTUM, StopOnSignal, add_train_options, check_option_pairs,
                      check_output_options, fallback_note, run_seed, seed_text)
    from .model import MLP

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    parser = argparse.ArgumentParser(prog="python -m fastbp.mpi", description="fastbp train's options, "
                                     "trained data-parallel over the ranks of mpirun; only rank 0 prints.")
    add_train_options(parser)
    # Every rank parses (each needs the options); only rank 0 shows usage and errors.
    with contextlib.redirect_stderr(sys.stderr if rank == 0 else io.StringIO()), \
            contextlib.redirect_stdout(sys.stdout if rank == 0 else io.StringIO()):
        try:
            args = parser.parse_args(sys.argv[1:] if argv is None else argv)
            check_option_pairs(args, parser)
            for option in ("plot", "json"):
                if getattr(args, option):
                    parser.error(f"--{option} is not supported under MPI")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2

    def say(text, file=sys.stdout):
        if rank == 0:
            print(text, file=file, flush=True)

    try:
        seed = comm.bcast(run_seed(args) if rank == 0 else None, root=0)  # rank 0's file, rank 0's draw

        def setup():
            check_output_options(args)  # before the data are read
            data = datasets.load_dataset(args.data, dtype=args.dtype, compact=True)
            sizes = args.sizes or [data.n_features, BOOK_HIDDEN, data.n_classes]
            model = MLP(sizes, activation=args.activation, cost=args.cost, dtype=args.dtype, seed=seed,
                        init=args.init, n_threads=args.threads)
            return data, model

        data, model = _collectively(comm, setup)
        note = fallback_note(args.data, data)
        if note:
            say(f"fastbp: note: {note}", file=sys.stderr)
        momentum = args.momentum if args.momentum is not None else (
            DEFAULT_MOMENTUM if args.optimizer == "momentum" else 0.0)
        threads = args.threads or threads_per_rank(comm)
        if not args.quiet:
            say(f"data: {data.name}, train X {data.X_train.shape}, test X {data.X_test.shape}\n"
                f"network: {list(model.sizes)} {','.join(model.activation_names)}, {model.cost_name} cost, "
                f"{model.dtype.name}, {args.optimizer} eta {args.eta:g}, mini-batch {args.batch_size}, "
                f"lmbda {args.lmbda:g}, {args.epochs} epochs, {seed_text(seed)}, {comm.Get_size()} ranks x "
                f"{threads} threads")

        def report(epoch, history):
            if not args.quiet:
                seconds = history["seconds"][-1]
                say(f"epoch {epoch}/{args.epochs}: test accuracy {100 * history['val_accuracy'][-1]:.2f}%, "
                    f"test cost {history['val_cost'][-1]:.5g}, {seconds:.2f} s, "
                    f"{len(data.y_train) / max(seconds, 1e-12):,.0f} examples/s")
            return bool(stopper and stopper.received)  # fit stops all ranks when any one returns True

        start = time.perf_counter()
        with (StopOnSignal(signal.SIGTERM) if args.checkpoint else contextlib.nullcontext(None)) as stopper:
            history = fit(model, data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                          eta=args.eta, comm=comm, lmbda=args.lmbda, optimizer=args.optimizer, momentum=momentum,
                          nesterov=args.nesterov, validation_data=(data.X_test, data.y_test),
                          early_stopping=args.early_stopping, halve_eta_after=args.halve_eta_after,
                          callback=report, n_threads=threads, checkpoint=args.checkpoint, resume=args.resume)
        seconds = time.perf_counter() - start
        if stopper and comm.allreduce(stopper.received, op=MPI.LOR) and len(history["epoch"]) < args.epochs:
            say(f"stopped by SIGTERM after epoch {len(history['epoch'])}; the checkpoint {args.checkpoint} holds "
                "it: run the same command with --resume to continue")
            return 128 + signal.SIGTERM
        if args.save:
            save(model, args.save, comm)
        accuracy = history["val_accuracy"][-1] if history["epoch"] else model.score(data.X_test, data.y_test)
        say(f"final: test accuracy {100 * accuracy:.2f}% after {len(history['epoch'])} epochs in {seconds:.2f} s"
            + (f"; saved {args.save}" if args.save else ""))
        return 0
    except (ValueError, TypeError, OSError) as exc:
        say(f"fastbp: error: {str(exc).replace(chr(10), ' ')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
