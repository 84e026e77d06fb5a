"""The ``fastbp`` command: ``train``, ``gradcheck`` and ``info``.

``fastbp train`` runs the book's chapter 1 experiment -- sizes [n_in, 30, n_classes], sigmoid neurons, the
quadratic cost, mini-batches of 10, eta = 3.0, 30 epochs, test accuracy after every epoch -- on Fashion-MNIST
when it is installed, else on scikit-learn's digits. Exit codes: 0 success, 1 an error (one line on stderr),
2 bad arguments.
"""
import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import sys
import threading
import time
import warnings

import numba
import numpy as np

from . import __version__, activations, costs, datasets, io
from .atomic import check_target
from .gradcheck import gradcheck
from .model import INITS, MLP, OPTIMIZERS, PREPARE_NOTE

BOOK_HIDDEN = 30
DEFAULT_MOMENTUM = 0.9


# ---------------------------------------------------------------------------------------------- argument types
def _sizes(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive ints such as 784,30,10; got {text!r}")
    return sizes


def _activation(text):
    names = text.split(",")
    for name in names:
        if name not in activations.CODES:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(activations.CODES)} (or one per layer, "
                                             f"comma-separated); got {text!r}")
    return names[0] if len(names) == 1 else names


def _number(kind, low, low_open=False, below=None):
    """An argparse type: a number of ``kind`` >= low (> low if low_open) and, if given, < below."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (value is None or not np.isfinite(value) or value < low or (low_open and value == low)
                or (below is not None and value >= below)):
            article = "an" if kind is int else "a"
            bound = f" and < {below}" if below is not None else ""
            raise argparse.ArgumentTypeError(f"must be {article} {kind.__name__} {'>' if low_open else '>='} {low}"
                                             f"{bound}; got {text!r}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_train_options(train):
    """The options of ``fastbp train`` (also those of ``python -m fastbp.mpi``) on the parser ``train``."""
    act_names = ",".join(activations.CODES)
    train.add_argument("--data", default="default", metavar="{fashion-mnist,digits,PATH}",
                       help="data set, a directory of IDX files or a mnist.pkl.gz (default: Fashion-MNIST "
                       "when installed, else digits)")
    train.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                       help=f"neurons per layer, e.g. 784,30,10 (default: inputs,{BOOK_HIDDEN},classes)")
    train.add_argument("--epochs", type=_number(int, 0), default=30, metavar="N", help="(default: %(default)s)")
    train.add_argument("--batch-size", type=_number(int, 1), default=10, metavar="M",
                       help="mini-batch size (default: %(default)s)")
    train.add_argument("--eta", type=_number(float, 0.0, low_open=True), default=3.0,
                       help="learning rate (default: %(default)s)")
    train.add_argument("--activation", type=_activation, default="sigmoid", metavar="NAME[,NAME...]",
                       help=f"{act_names}; one name, or one per weight layer (default: %(default)s)")
    train.add_argument("--cost", choices=list(costs.CODES), default="quadratic", help="(default: %(default)s)")
    train.add_argument("--lmbda", type=_number(float, 0.0), default=0.0,
                       help="L2 regularisation, network2's lmbda (default: %(default)s)")
    train.add_argument("--optimizer", choices=list(OPTIMIZERS), default="sgd", help="(default: %(default)s)")
    train.add_argument("--momentum", type=_number(float, 0.0, below=1.0), metavar="MU",
                       help=f"with --optimizer momentum (default: {DEFAULT_MOMENTUM})")
    train.add_argument("--nesterov", action="store_true", help="Nesterov momentum (with --optimizer momentum)")
    train.add_argument("--early-stopping", type=_number(int, 1), metavar="K",
                       help="stop after K epochs without a better test accuracy; keep the best parameters")
    train.add_argument("--halve-eta-after", type=_number(int, 1), metavar="K",
                       help="halve eta after K epochs without a better test accuracy; stop below eta/128")
    train.add_argument("--init", choices=list(INITS), default="default",
                       help="weights N(0, 1/n_in) or N(0, 1) (default: %(default)s)")
    train.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="(default: %(default)s)")
    train.add_argument("--seed", type=_number(int, 0), metavar="N",
                       help="seed for the weights and shuffling (default: a fresh one, printed at the start so "
                       "that the run can be repeated)")
    train.add_argument("--threads", type=_number(int, 1), metavar="N",
                       help="kernel threads (default: NUMBA_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the "
                       "cores available; under MPI, the node's cores shared among its ranks)")
    train.add_argument("--save", metavar="PATH", help="write the trained model (.npz or .json)")
    train.add_argument("--checkpoint", metavar="PATH", help="write the training state to PATH after every epoch; "
                       "on SIGTERM (a preempted job) stop after the current epoch with exit code 143")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint when the file exists "
                       "(bit for bit the uninterrupted run); --epochs counts from the start")
    train.add_argument("--plot", metavar="PATH", help="plot accuracy, cost and per-layer gradient norms "
                       "per epoch (needs matplotlib)")
    train.add_argument("--json", action="store_true", help="print JSON lines: start, one per epoch, end")
    train.add_argument("--quiet", action="store_true", help="no progress bar; print only the final line")


def build_parser():
    """The argument parser of the ``fastbp`` command."""
    parser = argparse.ArgumentParser(prog="fastbp", description="Fast CPU backpropagation for fully-connected "
                                     "networks (Nielsen's chapter 2 as Numba kernels).")
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    act_names = ",".join(activations.CODES)

    train = commands.add_parser("train", help="train a network and report test accuracy per epoch",
                                description="Train by mini-batch SGD with the book's setup and print, after "
                                "every epoch, test accuracy, test cost, seconds and examples/s.")
    add_train_options(train)
    train.set_defaults(run=run_train, parser=train)

    check = commands.add_parser("gradcheck", help="check backprop against finite differences",
                                description="Compare backprop's gradient with central finite differences on a "
                                "small random network and batch; exit 1 if the error exceeds --tol.")
    check.add_argument("--sizes", type=_sizes, default=[20, 12, 8, 5], metavar="N,N,...",
                       help="neurons per layer (default: 20,12,8,5)")
    check.add_argument("--activation", type=_activation, default="sigmoid", metavar="NAME[,NAME...]",
                       help=f"{act_names} (default: %(default)s)")
    check.add_argument("--cost", choices=list(costs.CODES), default="quadratic", help="(default: %(default)s)")
    check.add_argument("--batch", type=_number(int, 1), default=16, metavar="N",
                       help="rows in the random batch (default: %(default)s)")
    check.add_argument("--seed", type=_number(int, 0), default=0, metavar="N", help="(default: %(default)s)")
    check.add_argument("--tol", type=_number(float, 0.0, low_open=True), default=1e-7,
                       help="largest relative error that passes (default: %(default)s)")
    check.set_defaults(run=run_gradcheck, parser=check)

    info = commands.add_parser("info", help="versions, threads and data",
                               description="Show versions, the threading layer, threads and whether "
                               "Fashion-MNIST is installed.")
    info.set_defaults(run=run_info, parser=info)
    return parser


def main(argv=None):
    """Run the ``fastbp`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if hasattr(args, "optimizer"):
            check_option_pairs(args, args.parser)
    except SystemExit as exc:  # argparse: --help/--version (0) or bad arguments (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"fastbp: error: {str(exc).replace(chr(10), ' ')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # One line such as "fastbp: warning: Training diverged in epoch 3 ...", not Python's source excerpt.
    print(f"fastbp: warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- train
def run_train(args):
    # Everything that can be checked is checked before the data are read and the training starts.
    figure_class = _plotting(args.plot) if args.plot else None
    check_output_options(args)
    resumed_from = _epochs_to_resume_from(args)
    out = _Output(json_lines=args.json, quiet=args.quiet)

    try:
        # Integer-coded sources stay one byte per input; the kernels scale them (1/4 of float32's memory).
        data = datasets.load_dataset(args.data, dtype=args.dtype, compact=True)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise type(exc)(f"--data {args.data}: {exc}") from None
    note = fallback_note(args.data, data)
    if note:
        print(f"fastbp: note: {note}", file=sys.stderr, flush=True)
    sizes = args.sizes or [data.n_features, BOOK_HIDDEN, data.n_classes]
    if sizes[0] != data.n_features or sizes[-1] != data.n_classes:
        raise ValueError(f"--sizes must start with {data.n_features} inputs and end with {data.n_classes} "
                         f"outputs to match {data.name}; got {','.join(map(str, sizes))}.")
    momentum = args.momentum if args.momentum is not None else (
        DEFAULT_MOMENTUM if args.optimizer == "momentum" else 0.0)
    seed = run_seed(args)
    model = MLP(sizes, activation=args.activation, cost=args.cost, dtype=args.dtype, seed=seed,
                init=args.init, n_threads=args.threads)
    n_train, n_test = len(data.y_train), len(data.y_test)
    out.emit(
        f"data: {data.name}, train X {data.X_train.shape} y {data.y_train.shape}, test X {data.X_test.shape} "
        f"y {data.y_test.shape}, {data.n_classes} classes\n"
        f"network: {list(model.sizes)} {','.join(model.activation_names)}, {model.cost_name} cost, "
        f"{model.dtype.name}, {args.optimizer} eta {args.eta:g}, mini-batch {args.batch_size}, lmbda {args.lmbda:g}, "
        f"{args.epochs} epochs, {seed_text(seed)}, "
        f"{model.n_threads} thread{'s' if model.n_threads != 1 else ''}",
        {"event": "start", "data": data.name, "train_shape": list(data.X_train.shape),
         "test_shape": list(data.X_test.shape), "n_classes": data.n_classes, "sizes": list(model.sizes),
         "activations": model.activation_names, "cost": model.cost_name, "dtype": model.dtype.name,
         "optimizer": args.optimizer, "eta": args.eta, "batch_size": args.batch_size, "lmbda": args.lmbda,
         "momentum": momentum, "init": args.init, "epochs": args.epochs, "seed": seed,
         "n_threads": model.n_threads})

    if resumed_from:
        out.emit(f"resuming from {args.checkpoint} after epoch {resumed_from}",
                 {"event": "resume", "checkpoint": args.checkpoint, "after_epoch": resumed_from})
    stop = StopOnSignal(signal.SIGTERM) if args.checkpoint else contextlib.nullcontext(None)

    def report(epoch, history):
        accuracy, seconds = history["val_accuracy"][-1], history["seconds"][-1]
        correct, rate = round(accuracy * n_test), n_train / max(seconds, 1e-12)
        record = {"event": "epoch", "epoch": epoch, "epochs": args.epochs, "test_accuracy": accuracy,
                  "test_correct": correct, "test_size": n_test, "test_cost": history["val_cost"][-1],
                  "seconds": seconds, "examples_per_second": rate, "eta": history["eta"][-1]}
        if "grad_norms" in history:
            record["grad_norms"] = history["grad_norms"][-1]
        out.emit(f"epoch {epoch}/{args.epochs}: test accuracy {correct}/{n_test} ({100 * accuracy:.2f}%), "
                  f"test cost {record['test_cost']:.5g}, {seconds:.2f} s, {rate:,.0f} examples/s", record)
        return bool(stopper and stopper.received)

    if args.epochs > resumed_from and not (args.quiet or args.json or sys.stderr.isatty()):
        # On a terminal, fit's progress line says it.
        out.emit(f"preparing the kernels ({PREPARE_NOTE}) ...", None)
    start = time.perf_counter()
    with stop as stopper:
        history = model.fit(data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                            eta=args.eta, validation_data=(data.X_test, data.y_test), lmbda=args.lmbda,
                            optimizer=args.optimizer, momentum=momentum, nesterov=args.nesterov,
                            early_stopping=args.early_stopping, halve_eta_after=args.halve_eta_after,
                            monitor_gradients=bool(args.plot),
                            progress=not (args.quiet or args.json) and sys.stderr.isatty(), callback=report,
                            checkpoint=args.checkpoint, resume=args.resume)
    seconds = time.perf_counter() - start
    if stopper and stopper.received and len(history["epoch"]) < args.epochs:
        epochs_run = len(history["epoch"])
        out.emit(f"stopped by SIGTERM after epoch {epochs_run}; the checkpoint {args.checkpoint} holds it: run "
                 "the same command with --resume to continue",
                 {"event": "stopped", "signal": "SIGTERM", "epochs_run": epochs_run,
                  "checkpoint": args.checkpoint}, final=True)
        return 128 + signal.SIGTERM
    if args.save:
        io.save(model, args.save)
    if args.plot:
        _plot(figure_class, history, args.plot, f"{data.name}, sizes {list(model.sizes)}")
    accuracy = model.score(data.X_test, data.y_test)
    correct, epochs_run = round(accuracy * n_test), len(history["epoch"])
    extras = "".join(f"; {what} {path}" for what, path in (("saved", args.save), ("plot", args.plot)) if path)
    out.emit(f"final: test accuracy {correct}/{n_test} ({100 * accuracy:.2f}%) after {epochs_run} epochs in "
            f"{seconds:.2f} s{extras}",
            {"event": "end", "epochs_run": epochs_run, "test_accuracy": accuracy, "test_correct": correct,
             "test_size": n_test, "seconds": seconds, "saved": args.save, "plot": args.plot}, final=True)
    return 0


def fallback_note(spec, data):
    """What to tell the user when the default data set is the digits because Fashion-MNIST is not installed."""
    if spec != "default" or data.name == "fashion-mnist":
        return None
    return (f"Fashion-MNIST is not installed (no {datasets.fashion_mnist_dir()}; on Debian: apt-get install "
            f"dataset-fashion-mnist, or set {datasets.FASHION_MNIST_ENV}): training on scikit-learn's 8x8 digits "
            "instead.")


def run_seed(args):
    """The seed of a ``fastbp train`` run: --seed, or None when resuming from an existing checkpoint (which holds
    the parameters and the shuffling), else a fresh one, 32 random bits from the operating system."""
    if args.seed is not None:
        return args.seed
    return None if args.resume and os.path.exists(args.checkpoint) else secrets.randbits(32)


def seed_text(seed):
    """How the run's first lines name its seed (``run_seed``)."""
    return "seed from the checkpoint" if seed is None else f"seed {seed}"


class StopOnSignal:
    """While active, a signal (SIGTERM: the scheduler preempts the job) only sets ``received``: training ends
    after the current epoch, whose checkpoint is then on disk, instead of dying in the middle of one."""

    def __init__(self, signum):
        self.signum, self.received, self._previous = signum, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers can only be set from there
            self._previous = signal.signal(self.signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
        return False


def _epochs_to_resume_from(args):
    """How many epochs the checkpoint to resume from holds (0 without --resume or before the first run), after
    checking that --plot is given as it was in the run that wrote it (it records the gradient norms)."""
    from .checkpoint import peek
    if not (args.resume and os.path.exists(args.checkpoint)):
        return 0
    meta = peek(args.checkpoint)
    had_plot = meta["settings"].get("monitor_gradients")
    if had_plot != bool(args.plot):
        raise ValueError(f"--plot must be given when resuming exactly if the run that wrote {args.checkpoint} had "
                         f"it (it records gradient norms every epoch); that run had {'' if had_plot else 'no '}"
                         "--plot.")
    return len(meta["history"]["epoch"])


class _Output:
    """Text lines or JSON lines on stdout; --quiet keeps only the final one."""

    def __init__(self, *, json_lines, quiet):
        self.json_lines, self.quiet = json_lines, quiet

    def emit(self, text, record, *, final=False):
        if final or not self.quiet:
            print(json.dumps(record) if self.json_lines else text, flush=True)


def check_option_pairs(args, parser):
    """Options of ``fastbp train`` that need another one: a usage error (exit 2) from ``parser`` if not."""
    for option, needs in (("momentum", "--optimizer momentum"), ("nesterov", "--optimizer momentum")):
        if getattr(args, option) not in (None, False) and args.optimizer != "momentum":
            parser.error(f"--{option} needs {needs}")
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint PATH")


def check_output_options(args):
    """Before any data are read: --save names a model format and, like --checkpoint, a file that can be written
    (``atomic.check_target``), and --threads fits numba's thread pool."""
    if args.save:
        io.format_of(args.save)
        check_target(args.save, "--save")
    if args.checkpoint:
        check_target(args.checkpoint, "--checkpoint")
    pool = numba.config.NUMBA_NUM_THREADS
    if args.threads is not None and args.threads > pool:
        raise ValueError(f"--threads must be at most {pool} (numba's thread pool, set by NUMBA_NUM_THREADS); "
                         f"got {args.threads}.")


def _plotting(path):
    """matplotlib's Figure class, after checking that it is installed and can write ``path``'s format."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("--plot needs matplotlib; install it (pip install matplotlib) or leave out --plot.") \
            from None
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    formats = Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(f"--plot must end in one of {', '.join('.' + f for f in sorted(formats))}; got {path}.")
    check_target(path, "--plot")
    return Figure


def _plot(Figure, history, path, title):
    """Test accuracy, test cost and ||dC/dw^l|| of every layer l per epoch (the speed of learning)."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax_acc, ax_cost, ax_grad = fig.subplots(1, 3)
    epochs = history["epoch"]
    ax_acc.plot(epochs, [100 * a for a in history.get("val_accuracy", [])], marker=".")
    ax_acc.set(ylabel="test accuracy (%)")
    ax_cost.plot(epochs, history.get("val_cost", []), marker=".")
    ax_cost.set(ylabel="test cost")
    norms = np.array(history.get("grad_norms", []), dtype=float).reshape(len(epochs), -1 if epochs else 0)
    for layer in range(norms.shape[1]):
        ax_grad.plot(epochs, norms[:, layer], marker=".", label=f"$w^{{{layer + 2}}}$")  # the book numbers from 2
    ax_grad.set(ylabel="$\\|\\partial C / \\partial w^l\\|$ (speed of learning)")
    if norms.size:
        ax_grad.set_yscale("log")
        ax_grad.legend()
    for ax in (ax_acc, ax_cost, ax_grad):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.savefig(path)


# ---------------------------------------------------------------------------------------------- gradcheck
def run_gradcheck(args):
    model = MLP(args.sizes, activation=args.activation, cost=args.cost, seed=args.seed)
    # The batch continues the model's random stream, so one seed fixes weights and data.
    X = model.rng.standard_normal((args.batch, model.sizes[0]))
    y = model.rng.integers(0, model.sizes[-1], args.batch)
    error = gradcheck(model, X, y)
    passed = error <= args.tol
    print(f"gradcheck: sizes {list(model.sizes)}, {','.join(model.activation_names)}, {model.cost_name} cost, "
          f"batch {args.batch}, {model.n_params} parameters: max relative error {error:.3g} "
          f"(tol {args.tol:g}) {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


# ---------------------------------------------------------------------------------------------- info
def run_info(args):
    from .threads import available_cores, default_threads

    try:
        import matplotlib
        plot = f"matplotlib {matplotlib.__version__}"
    except ImportError:
        plot = "not installed (train --plot needs matplotlib)"
    fashion = (f"installed ({datasets.fashion_mnist_dir()})" if datasets.fashion_mnist_available()
               else "not installed (train uses digits)")
    print(f"fastbp {__version__}\npython {platform.python_version()}\nnumpy {np.__version__}\n"
          f"numba {numba.__version__}\nthreading layer: {_threading_layer()}\n"
          f"threads: {default_threads()} (numba pool {numba.config.NUMBA_NUM_THREADS}, "
          f"{available_cores()} cores available)\nfashion-mnist: {fashion}\nplotting: {plot}")
    return 0


def _threading_layer():
    """The layer numba's parallel kernels use; it is only chosen once a parallel region has run."""
    @numba.njit(parallel=True)
    def touch(n):
        total = 0
        for i in numba.prange(n):
            total += i
        return total

    try:
        touch(4)
        return numba.threading_layer()
    except Exception as exc:  # diagnostics only: report why no layer could start instead of failing
        return f"unavailable ({type(exc).__name__}: {exc})"
