"""fastbp side by side with the NumPy baselines, PyTorch CPU and finite differences, in one process.

    python bench/compare.py [--quick] [--data fashion-mnist|digits|random] [--repeats N] [--threads N ...]
                            [--markdown] [--json PATH]

Measures microseconds per training example of mini-batch SGD (sigmoid neurons, quadratic cost, eta = 3.0)
for the book's [784, 30, 10] network with mini-batches of 10 and a larger [784, 256, 128, 10] with
mini-batches of 128, in float64 and float32. Each measurement trains on a chunk of a few thousand examples of
one shuffled pass over the training set; the figure is the median over the repeats, the implementations taking
turns round-robin. Before each timed chunk the machine rests (so that one library's idle worker threads do not
slow down the next), then the case trains one untimed chunk (so that its own threads are awake when the clock
starts). Compile time is never inside a timing: it is reported on its own.

Each figure is also set against a bound from the machine's own matrix-multiply speed, measured in the same
run: an example needs ``flops_per_example(sizes)`` floating-point operations (forward pass, BP2's error
propagation and BP4's weight gradient), so at the GEMM peak it would take flops / peak seconds.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``bench`` (and a source tree's fastbp) importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import peers  # noqa: E402

SETUPS = {
    "book": {"hidden": (30,), "batch_size": 10},
    "large": {"hidden": (256, 128), "batch_size": 128},
    # The book's network at mini-batch 32, fastbp alone: how 2 threads compare with 1 on a small network.
    "book-m32": {"hidden": (30,), "batch_size": 32, "impls": ("fastbp",)},
}
DTYPES = ("float64", "float32")
THREADS = (1, 2)
# Mini-batches per timed chunk: a few thousand examples (an epoch of Fashion-MNIST is 60,000).
N_BATCHES = {"book": 500, "large": 40, "book-m32": 160}
N_BATCHES_QUICK = {"book": 100, "large": 8, "book-m32": 30}
PER_EXAMPLE_SHARE = 5  # the book's per-example loop is slow: it times a fifth of the chunk
GEMM_SIZE = 2048
# Seconds of rest before each timed chunk (and its untimed lead-in, see peers.run_interleaved): BLAS and OpenMP
# worker threads spin for a while after their work, and would otherwise slow down whichever case comes next.
PAUSE = 0.1
LABELS = {
    "fastbp": "fastbp",
    "fastbp-uint8": "fastbp, uint8 inputs",
    "torch": "PyTorch CPU",
    "numpy-matrix": "NumPy matrix mini-batch",
    "numpy-per-example": "NumPy per-example (book)",
    "backprop": "backprop (model.gradient)",
    "finite-differences": "finite differences",
}
IMPLS = ("fastbp", "fastbp-uint8", "torch", "numpy-matrix", "numpy-per-example")


# ----------------------------------------------------------------------------------------------- FLOPs and peak
def setup_impls(setup, impls=IMPLS):
    """The implementations of ``impls`` that a setup of SETUPS times (all, unless it names its own)."""
    return tuple(i for i in impls if i in SETUPS[setup].get("impls", impls))


def setup_sizes(setup, n_in=784, n_out=peers.N_CLASSES):
    """Layer sizes of a setup of SETUPS for n_in inputs, e.g. "book" -> [784, 30, 10]."""
    return [n_in, *SETUPS[setup]["hidden"], n_out]


def flops_per_example(sizes):
    """Floating-point operations to train on one example: forward pass 2 sum n_{l-1} n_l, weight gradient
    (BP4) as many, error propagation (BP2) 2 sum_{l>=2} n_{l-1} n_l. 95,880 for [784, 30, 10]."""
    pairs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * sum(pairs) + 2 * sum(pairs) + 2 * sum(pairs[1:])


def gemm_cases(dtypes=DTYPES, thread_counts=THREADS, n=GEMM_SIZE):
    """Cases that each multiply two n x n matrices (2 n^3 FLOPs, unit "flop") with BLAS on a thread count:
    timed with the others, round-robin, so the peak sees the same machine as the training figures."""
    rng = np.random.default_rng(0)
    cases = []
    for dtype in dtypes:
        a, b = (rng.random((n, n)).astype(dtype) for _ in range(2))
        out = np.empty((n, n), dtype=dtype)
        for threads in thread_counts:
            cases.append(peers.Case(
                dict(impl="gemm", setup=f"{n}x{n} matmul", sizes=[n, n, n], batch_size=n, dtype=dtype,
                     threads=threads),
                lambda a=a, b=b, out=out: np.matmul(a, b, out=out), units=2 * n ** 3, unit="flop",
                context=lambda threads=threads: peers.blas_threads(threads)))
    return cases


def peaks_from(results):
    """{(dtype, threads): FLOP/s} from the GEMM records of ``measure``: the best repetition of each."""
    return {(r["dtype"], r["threads"]): 1e6 / r["min_us"] for r in results if r["unit"] == "flop"}


def gemm_peak(dtype="float64", threads=None, n=GEMM_SIZE, repeats=3):
    """The machine's matrix-multiply rate in FLOP/s: 2 n^3 / t for an n x n NumPy matmul, best of ``repeats``,
    with BLAS on ``threads`` threads (None: BLAS's default)."""
    [peak] = peaks_from(measure(gemm_cases((dtype,), (threads,), n), repeats)).values()
    return peak


def gemm_peaks(dtypes=DTYPES, thread_counts=THREADS, n=GEMM_SIZE, repeats=3):
    """{(dtype, threads): FLOP/s} for every pair, timed round-robin."""
    return peaks_from(measure(gemm_cases(dtypes, thread_counts, n), repeats))


# ----------------------------------------------------------------------------------------------- measuring
def available_threads(thread_counts=THREADS):
    """The thread counts this machine can run: at most numba's pool (one thread always works)."""
    import numba
    kept = sorted({t for t in thread_counts if 1 <= t <= numba.config.NUMBA_NUM_THREADS} | {1})
    return tuple(kept)


def build_cases(data, setup, *, impls=IMPLS, dtypes=DTYPES, thread_counts=None, n_batches=None,
                schedule=None, seed=0, per_example_share=PER_EXAMPLE_SHARE):
    """The cases of one setup: fastbp, PyTorch (when importable), the NumPy matrix mini-batch and the book's
    per-example loop (float64 only, 1/per_example_share of the chunk), each dtype x thread count, all from the
    same initial parameters over the same shuffled rows. ``thread_counts`` defaults to ``available_threads()``."""
    sizes = setup_sizes(setup, data.n_in)
    batch_size = SETUPS[setup]["batch_size"]
    thread_counts = available_threads() if thread_counts is None else tuple(thread_counts)
    n_batches = N_BATCHES[setup] if n_batches is None else n_batches
    if schedule is None:
        schedule = peers.make_schedule(data.n_rows, n_batches * batch_size, seed)
    params = peers.initial_parameters(sizes, seed)
    if "torch" in impls and peers.torch_version() is None:
        impls = [i for i in impls if i != "torch"]
    cases = []
    for impl in impls:
        for dtype in dtypes:
            if impl == "numpy-per-example" and dtype != "float64":
                continue
            for threads in thread_counts:
                common = (data, setup, sizes, batch_size, dtype, threads)
                if impl in ("fastbp", "fastbp-uint8"):
                    cases.append(peers.fastbp_case(*common, n_batches, schedule, params,
                                                   inputs="float" if impl == "fastbp" else "uint8"))
                elif impl == "torch":
                    cases.append(peers.torch_case(*common, n_batches, schedule, params))
                elif impl == "numpy-matrix":
                    cases.append(peers.numpy_case(*common, n_batches, schedule, params, method="matrix"))
                elif impl == "numpy-per-example":
                    cases.append(peers.numpy_case(*common, max(1, n_batches // per_example_share), schedule,
                                                  params, method="per_example"))
                else:
                    raise ValueError(f"impls must hold names from {IMPLS}; got {impl!r}.")
    return cases


def measure(cases, repeats, progress=None, pause=0.0):
    """Time the cases round-robin (each warmed first; with ``pause``, each timed chunk after that many seconds of
    rest and an untimed lead-in chunk); one result record per case."""
    samples = peers.run_interleaved(cases, repeats, pause=pause, progress=progress)
    return [peers.summarize(case, seconds) for case, seconds in zip(cases, samples)]


def measure_fastbp(data, setup, *, dtypes=DTYPES, thread_counts=None, n_batches=None, repeats=5, seed=0):
    """fastbp alone: one record per dtype x threads (microseconds per example in "median_us")."""
    return measure(build_cases(data, setup, impls=("fastbp",), dtypes=dtypes, thread_counts=thread_counts,
                               n_batches=n_batches, seed=seed), repeats)


def measure_numpy(data, setup, *, methods=("matrix", "per_example"), dtypes=DTYPES, thread_counts=None,
                  n_batches=None, repeats=5, seed=0):
    """The NumPy baselines alone ("matrix" and/or "per_example")."""
    impls = tuple(f"numpy-{m.replace('_', '-')}" for m in methods)
    return measure(build_cases(data, setup, impls=impls, dtypes=dtypes, thread_counts=thread_counts,
                               n_batches=n_batches, seed=seed), repeats)


def measure_torch(data, setup, *, dtypes=DTYPES, thread_counts=None, n_batches=None, repeats=5, seed=0):
    """PyTorch CPU alone; an empty list when torch cannot be imported."""
    if peers.torch_version() is None:
        return []
    return measure(build_cases(data, setup, impls=("torch",), dtypes=dtypes, thread_counts=thread_counts,
                               n_batches=n_batches, seed=seed), repeats)


def measure_gradients(repeats=5, sizes=(64, 20, 10), n_rows=10, backprop_calls=200):
    """Finite differences against backprop: microseconds per gradient, interleaved."""
    return measure(peers.gradient_cases(sizes, n_rows, backprop_calls), repeats)


# ----------------------------------------------------------------------------------------------- the table
def build_table(results, peaks=None, n_train=peers.FASHION_SHAPE[0]):
    """Rows of the comparison from the training records of ``measure``.

    fastbp has a row per thread count; each other implementation keeps its best thread count. Columns:
    "us_per_example" (median), "epoch_seconds" (that rate over n_train examples), "ratio" (this row's time /
    fastbp's best time for the same setup and dtype: how many times faster fastbp is), "bound_us" and
    "gemm_bound_pct" (the GEMM bound's time / this row's time, in %, with the peak measured for the dtype and
    the row's thread count).
    """
    peaks = peaks or {}
    train = [r for r in results if r["unit"] == "example"]
    best = {}
    for r in train:
        group = (r["impl"], r["setup"], r["dtype"]) + ((r["threads"],) if r["impl"].startswith("fastbp") else ())
        if group not in best or r["median_us"] < best[group]["median_us"]:
            best[group] = r
    fastest = {}
    for r in train:
        if r["impl"] == "fastbp":
            k = (r["setup"], r["dtype"])
            fastest[k] = min(fastest.get(k, np.inf), r["median_us"])
    order = {name: i for i, name in enumerate(IMPLS)}
    setups = list(dict.fromkeys(r["setup"] for r in train))
    rows = []
    for r in sorted(best.values(), key=lambda r: (setups.index(r["setup"]), DTYPES.index(r["dtype"])
                                                  if r["dtype"] in DTYPES else 9, order.get(r["impl"], 9),
                                                  r["threads"])):
        flops = flops_per_example(r["sizes"])
        peak = peaks.get((r["dtype"], r["threads"]))
        bound = flops / peak * 1e6 if peak else None
        ref = fastest.get((r["setup"], r["dtype"]))
        rows.append({
            "setup": r["setup"], "sizes": r["sizes"], "batch_size": r["batch_size"], "dtype": r["dtype"],
            "impl": r["impl"], "implementation": LABELS.get(r["impl"], r["impl"]), "threads": r["threads"],
            "us_per_example": r["median_us"], "epoch_seconds": r["median_us"] * n_train / 1e6,
            "ratio": r["median_us"] / ref if ref else None,
            "flops_per_example": flops, "bound_us": bound,
            "gemm_bound_pct": 100.0 * bound / r["median_us"] if bound else None,
        })
    return rows


def build_gradient_table(results):
    """Rows for finite differences vs backprop: microseconds per gradient and the ratio to backprop."""
    grads = [r for r in results if r["unit"] == "gradient"]
    bp = {r["setup"]: r["median_us"] for r in grads if r["impl"] == "backprop"}
    return [{"setup": r["setup"], "impl": r["impl"], "implementation": LABELS.get(r["impl"], r["impl"]),
             "n_params": r["info"].get("n_params"), "us_per_gradient": r["median_us"],
             "ratio": r["median_us"] / bp[r["setup"]] if r["setup"] in bp else None} for r in grads]


def _fmt(value, spec, suffix=""):
    return "n/a" if value is None else format(value, spec) + suffix


def _render(header, body, markdown, n_text):
    """A table whose first n_text columns are text (left-aligned) and the rest numbers (right-aligned)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i < n_text else "---:" for i in range(len(header))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i < n_text else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(row) for row in body])


def format_table(rows, markdown=False):
    """The training rows as aligned text, or a GitHub table when ``markdown``."""
    header = ["setup", "dtype", "implementation", "threads", "µs/example", "s/epoch (60k)", "ratio",
              "% of GEMM bound"]
    body = [[f"{r['sizes']} m={r['batch_size']}", r["dtype"], r["implementation"], str(r["threads"]),
             _fmt(r["us_per_example"], ".2f"), _fmt(r["epoch_seconds"], ".2f"),
             _fmt(r["ratio"], ".2f", "×"), _fmt(r["gemm_bound_pct"], ".1f", "%")] for r in rows]
    return _render(header, body, markdown, 3)


def format_gradient_table(rows, markdown=False):
    """The finite-differences rows as aligned text, or a GitHub table when ``markdown``."""
    header = ["network", "gradient by", "params", "µs/gradient", "ratio to backprop"]
    body = [[r["setup"], r["implementation"], str(r["n_params"]), _fmt(r["us_per_gradient"], ".1f"),
             _fmt(r["ratio"], ".0f", "×")] for r in rows]
    return _render(header, body, markdown, 2)


# ----------------------------------------------------------------------------------------------- the run
def environment():
    """Versions, cores, threads and the BLAS in use."""
    import numba
    from threadpoolctl import threadpool_info
    from fastbp.threads import available_cores
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = "not started"
    blas = [f"{i.get('internal_api')} {i.get('version') or ''} ({i.get('num_threads')} threads)".strip()
            for i in threadpool_info() if i.get("user_api") == "blas"]
    from fastbp.codegen import WIDE_VECTORS, compiled_target
    cpu_name, features = compiled_target()
    target = cpu_name + (", 512-bit vectors" if WIDE_VECTORS in features.split(",") else "")
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "torch": peers.torch_version(), "cpu": cpu, "cores": available_cores(), "llvm_target": target,
            "numba_threads": numba.config.NUMBA_NUM_THREADS, "numba_threading_layer": layer, "blas": blas}


def compile_subprocesses(sizes, batch_size):
    """Seconds from import to the first epoch in fresh processes: an empty numba cache (the full compile),
    then the same cache again (the load of the compiled code)."""
    with tempfile.TemporaryDirectory(prefix="fastbp-numba-cache-") as cache:
        cold = peers.first_epoch_subprocess(cache, sizes, batch_size)
        warm = peers.first_epoch_subprocess(cache, sizes, batch_size)
    return {"cold_cache": cold, "warm_cache": warm}


def train_peak_memory(dtype="float32"):
    """Peak resident memory (MB) of ``fastbp train --dtype dtype --epochs 1 --quiet`` on Fashion-MNIST, in a
    fresh process (warm kernel cache), with the size of the data set as floats of that dtype for comparison."""
    from fastbp import datasets
    command = [sys.executable, "-m", "fastbp", "train", "--data", "fashion-mnist", "--dtype", dtype,
               "--epochs", "1", "--quiet"]
    # A wrapper process runs the command, so that its children's peak is that of the training process alone.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
               "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True)
    n_values = sum(int(np.prod(shape)) for shape in ((60_000, 784), (10_000, 784)))
    return {"dtype": dtype, "peak_mb": int(out.stdout.split()[-1]) * 1024 / 1e6,
            "data_mb": n_values * np.dtype(dtype).itemsize / 1e6, "pixels_mb": n_values / 1e6,
            "fashion_mnist": datasets.fashion_mnist_available()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="fastbp against NumPy, PyTorch CPU and finite differences: "
                                            "microseconds per training example.")
    p.add_argument("--quick", action="store_true", help="fewer examples and repeats (a smoke run)")
    p.add_argument("--data", choices=("fashion-mnist", "digits", "random"), default="fashion-mnist",
                   help="training set; without Fashion-MNIST installed, random data of its shape is used")
    p.add_argument("--repeats", type=int, default=None, help="timed chunks per case (default 7, quick 3)")
    p.add_argument("--markdown", action="store_true", help="print GitHub tables")
    p.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when it is installed")
    p.add_argument("--no-compile-subprocess", action="store_true",
                   help="skip the fresh-process compile and cache-load timings (skipped by --quick)")
    p.add_argument("--rows", type=int, default=None, help="use only the first ROWS training rows")
    p.add_argument("--batches", type=int, default=None, help="mini-batches per timed chunk (every setup)")
    p.add_argument("--gemm-size", type=int, default=None, help="matrix size of the GEMM peak (default 2048)")
    p.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                   help="thread counts to time (default 1 2; at most numba's pool)")
    args = p.parse_args(argv)
    if args.threads is not None and min(args.threads) < 1:
        p.error(f"--threads must be positive integers; got {args.threads}.")
    for name in ("repeats", "rows", "batches", "gemm_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; got {value}.")
    return args


def run(args, log=print):
    """Everything the script measures, as one JSON-ready dict."""
    repeats = args.repeats or (3 if args.quick else 7)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    data = peers.load_bench_data(args.data, n_rows=args.rows)
    thread_counts = available_threads(args.threads or THREADS)
    impls = tuple(i for i in IMPLS if not (i == "torch" and args.no_torch))
    log(f"data: {data.note}")
    gemm_n = args.gemm_size or (1024 if args.quick else GEMM_SIZE)
    cases, first_calls = gemm_cases(DTYPES, thread_counts, gemm_n), {}
    for setup in SETUPS:
        batches = args.batches or (N_BATCHES_QUICK if args.quick else N_BATCHES)[setup]
        log(f"preparing {setup}: {setup_sizes(setup, data.n_in)}, mini-batch {SETUPS[setup]['batch_size']}, "
            f"{batches} mini-batches per timed chunk ...")
        new = build_cases(data, setup, impls=setup_impls(setup, impls), thread_counts=thread_counts,
                          n_batches=batches)
        for case in new:
            if case.key["impl"] == "fastbp":
                first_calls.setdefault(case.key["dtype"], case.info)
        cases += new
    grad_cases = peers.gradient_cases(backprop_calls=50 if args.quick else 200)
    log(f"timing {len(cases) + len(grad_cases)} cases x {repeats} repeats, round-robin ...")
    results = measure(cases + grad_cases, repeats, pause=PAUSE,
                      progress=lambda i, n: log(f"  round {i}/{n}", end="\r" if i < n else "\n"))
    peaks = peaks_from(results)
    compile_info = {"in_process_first_call": {d: {"seconds": i["first_call_seconds"], "how": i["first_call"]}
                                              for d, i in first_calls.items()}}
    if not (args.quick or args.no_compile_subprocess):
        log("timing the first epoch in fresh processes (empty numba cache, then warm) ...")
        compile_info.update(compile_subprocesses(setup_sizes("book", data.n_in), SETUPS["book"]["batch_size"]))
    memory = None
    if data.name == "fashion-mnist" and not args.quick:
        log("measuring the peak memory of fastbp train --dtype float32 ...")
        memory = train_peak_memory()
    return {
        "environment": dict(environment(), load_average_before=load_before),
        "data": {"name": data.name, "note": data.note, "rows": data.n_rows, "inputs": data.n_in},
        "settings": {"repeats": repeats, "quick": bool(args.quick), "pause_seconds": PAUSE, "lead_in_chunk": True,
                     "eta": peers.ETA, "cost": "quadratic",
                     "activation": "sigmoid", "thread_counts": list(thread_counts), "gemm_size": gemm_n,
                     "chunk_examples": {s: next(r["units_per_chunk"] for r in results
                                                if r["setup"] == s and r["impl"] == "fastbp")
                                        for s in SETUPS if any(r["setup"] == s for r in results)}},
        "gemm_peak_gflops": {f"{d}/{t} threads": p / 1e9 for (d, t), p in peaks.items()},
        "flops_per_example": {s: flops_per_example(setup_sizes(s, data.n_in)) for s in SETUPS},
        "compile": compile_info,
        "memory": memory,
        "table": build_table(results, peaks),
        "gradients": build_gradient_table(results),
        "results": results,
    }


def thread_speedups(table):
    """{(setup, dtype): fastbp's time on 1 thread / on 2} from ``build_table``'s rows, where both were timed."""
    times = {(r["setup"], r["dtype"], r["threads"]): r["us_per_example"] for r in table if r["impl"] == "fastbp"}
    return {(setup, dtype): t / times[(setup, dtype, 2)] for (setup, dtype, threads), t in times.items()
            if threads == 1 and (setup, dtype, 2) in times}


SLOW_ROUND = 1.15  # a round whose two-thread chunks of fastbp took this many times their fastest, or more, was slow


def slow_rounds(results, threads=2, factor=SLOW_ROUND):
    """The rounds (from 1) in which fastbp's cases on ``threads`` threads ran slowly: the median over those cases
    of (the round's chunk / the case's fastest chunk) reaches ``factor``. On a shared virtual machine both virtual
    cores sometimes slow down together for a while (as if they shared one physical core); a median that falls
    among such rounds is not the machine's usual speed, and the one-thread cases beside it do not show it."""
    samples = [r["samples_us"] for r in results
               if r["impl"].startswith("fastbp") and r["threads"] == threads and r["samples_us"]]
    if not samples:
        return []
    n_rounds = min(len(s) for s in samples)
    return [i + 1 for i in range(n_rounds)
            if np.median([s[i] / min(s) for s in samples]) >= factor]


def report(out, markdown=False):
    """The printed summary of ``run``'s output."""
    env, s = out["environment"], out["settings"]
    load = env.get("load_average_before")
    lines = [
        f"fastbp benchmark: sigmoid + quadratic cost, plain SGD, eta = {s['eta']}; "
        f"median of {s['repeats']} timed chunks per case, round-robin, each after {s['pause_seconds']} s of rest "
        "and an untimed lead-in chunk"
        + (" (quick run)" if s["quick"] else ""),
        f"data: {out['data']['note']}",
        "examples per timed chunk: " + ", ".join(f"{k} {v:,}" for k, v in s["chunk_examples"].items())
        + f" (the per-example loop: 1/{PER_EXAMPLE_SHARE} of that)",
        f"machine: {env['cpu']} (compiled for {env['llvm_target']}), {env['cores']} cores; "
        f"numba pool {env['numba_threads']} threads "
        f"({env['numba_threading_layer']}); BLAS: {', '.join(env['blas']) or 'unknown'}",
        (f"load average (1 min) at the start: {load:.2f}"
         + (" -- other programs were busy, so the figures are noisier than on an idle machine" if load > 0.5
            else "")) if load is not None else "load average: unknown",
        f"versions: python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, "
        f"torch {env['torch'] or 'not installed (its rows are left out)'}",
        f"GEMM peak ({s['gemm_size']}x{s['gemm_size']} NumPy matmul, best of {s['repeats']}, timed with the rest): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in out["gemm_peak_gflops"].items()),
        "FLOPs per training example: " + ", ".join(f"{k} {v:,}" for k, v in out["flops_per_example"].items()),
    ]
    compile_info = out["compile"]
    for d, c in compile_info["in_process_first_call"].items():
        lines.append(f"fastbp first training call, {d}: {c['seconds']:.2f} s ({c['how']}; never inside a timing)")
    for name, what in (("cold_cache", "empty numba cache (full compile)"), ("warm_cache", "warm numba cache")):
        if name in compile_info:
            c = compile_info[name]
            lines.append(f"fresh process, import to first epoch, {what}: {c['total_seconds']:.2f} s "
                         f"(import {c['import_seconds']:.2f} s)")
    m = out.get("memory")
    if m:
        lines.append(f"peak memory of `fastbp train --dtype {m['dtype']} --epochs 1` (Fashion-MNIST, 8-bit pixels "
                     f"in memory): {m['peak_mb']:.1f} MB; the data set as {m['dtype']}: {m['data_mb']:.1f} MB "
                     f"(+150 MB: {m['data_mb'] + 150:.1f} MB), as pixels: {m['pixels_mb']:.1f} MB")
    slow = slow_rounds(out["results"])
    if slow:
        lines.append(f"slow rounds: {', '.join(map(str, slow))} of {s['repeats']} (fastbp's two-thread chunks took "
                     f"{SLOW_ROUND}x their fastest or more; a two-thread median among them is not the machine's "
                     "usual speed)")
    speedups = thread_speedups(out["table"])
    lines += ["", format_table(out["table"], markdown), "",
              "fastbp on 2 threads against 1: " + (", ".join(f"{setup} {dtype} {x:.2f}x" for (setup, dtype), x
                                                         in speedups.items()) or "one thread only"), "",
              "ratio: this row's time / fastbp's best time for the same setup and dtype (how many times faster "
              "fastbp is). % of GEMM bound: (FLOPs per example / GEMM peak for the dtype and the row's threads) / "
              "measured time. Other implementations show their best thread count.", "",
              format_gradient_table(out["gradients"], markdown)]
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def main(argv=None):
    args = parse_args(argv)
    log = lambda *a, **k: print(*a, file=sys.stderr, flush=True, **k)  # noqa: E731
    out = run(args, log)
    print(report(out, args.markdown))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_jsonable(out), f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
