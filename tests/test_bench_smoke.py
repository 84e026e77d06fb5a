"""Smoke test of the benchmark comparison (bench/compare.py): its functions run on tiny data, one repetition,
and build the expected table. Speeds are not checked, only that the figures are there and consistent."""
import json
import os
import sys

import numba
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import compare, peers  # noqa: E402
from fastbp.threads import available_cores  # noqa: E402

HAS_TORCH = peers.torch_version() is not None
SETUPS = ("book", "large")


@pytest.fixture(scope="module")
def tiny():
    """Every implementation on both setups, 2 mini-batches per chunk, 1 repetition, on 300 random rows."""
    data = peers.random_data(300, 784, seed=1)
    results = []
    for setup in SETUPS:
        cases = compare.build_cases(data, setup, thread_counts=(1,), n_batches=2, per_example_share=1)
        results += compare.measure(cases, repeats=1)
    peaks = compare.gemm_peaks(thread_counts=(1,), n=64, repeats=1)
    return results, peaks


def expected_rows(setups=SETUPS):
    rows = set()
    for setup in setups:
        if setup == "book-m32":  # fastbp alone
            rows |= {(setup, dtype, "fastbp") for dtype in ("float64", "float32")}
            continue
        for dtype in ("float64", "float32"):
            rows |= {(setup, dtype, "fastbp"), (setup, dtype, "fastbp-uint8"), (setup, dtype, "numpy-matrix")}
            if HAS_TORCH:
                rows.add((setup, dtype, "torch"))
        rows.add((setup, "float64", "numpy-per-example"))
    return rows


def test_flops_per_example_counts_forward_weight_gradient_and_error_propagation():
    # [784, 30, 10]: forward 2(784*30 + 30*10) = 47,640, BP4 as many, BP2 2*30*10 = 600.
    assert compare.flops_per_example([784, 30, 10]) == 95_880
    # [5, 4, 3, 2]: products 20, 12, 6 -> 76 + 76 + 2 * (12 + 6).
    assert compare.flops_per_example([5, 4, 3, 2]) == 188


def test_setup_sizes_follow_the_input_width():
    assert compare.setup_sizes("book") == [784, 30, 10]
    assert compare.setup_sizes("large", 64) == [64, 256, 128, 10]


def test_table_has_one_row_per_implementation_setup_and_dtype(tiny):
    results, peaks = tiny
    rows = compare.build_table(results, peaks)
    keys = [(r["setup"], r["dtype"], r["impl"]) for r in rows]
    assert len(keys) == len(set(keys))  # one thread count was timed, so one row each
    assert set(keys) == expected_rows()


def test_ratio_and_bound_columns_are_consistent(tiny):
    results, peaks = tiny
    rows = compare.build_table(results, peaks)
    fastbp = {(r["setup"], r["dtype"]): r["us_per_example"] for r in rows if r["impl"] == "fastbp"}
    for r in rows:
        assert r["us_per_example"] > 0 and np.isfinite(r["us_per_example"])
        assert r["ratio"] == pytest.approx(r["us_per_example"] / fastbp[(r["setup"], r["dtype"])])
        assert r["epoch_seconds"] == pytest.approx(r["us_per_example"] * 60_000 / 1e6)
        bound = compare.flops_per_example(r["sizes"]) / peaks[(r["dtype"], 1)] * 1e6
        assert r["bound_us"] == pytest.approx(bound)
        assert r["gemm_bound_pct"] == pytest.approx(100 * bound / r["us_per_example"])
        if r["impl"] == "fastbp":
            assert r["ratio"] == 1.0


def test_text_and_markdown_tables(tiny):
    results, peaks = tiny
    rows = compare.build_table(results, peaks)
    md = compare.format_table(rows, markdown=True).splitlines()
    assert md[0].startswith("| setup | dtype | implementation | threads | µs/example")
    assert "ratio" in md[0] and "% of GEMM bound" in md[0]
    assert len(md) == 2 + len(rows)
    assert all(line.startswith("|") and line.endswith("|") for line in md)
    text = compare.format_table(rows).splitlines()
    assert len(text) == 2 + len(rows)
    assert "fastbp" in text[2] and "1.00×" in text[2]


@pytest.mark.parametrize("setup", SETUPS)
def test_every_implementation_trains_the_same_network(setup):
    """Same start, same mini-batches: after two chunks every float64 implementation holds the same parameters,
    so the table compares like with like."""
    raw = peers.random_data(200, 784, seed=2)
    data = peers.BenchData("random", np.rint(raw.X * 255) / 255, raw.y)  # 8-bit values: the uint8 case's too
    cases = compare.build_cases(data, setup, dtypes=("float64",), thread_counts=(1,), n_batches=2,
                                per_example_share=1)
    for case in cases:
        case.step()
        case.step()
    w_ref, b_ref = next(c for c in cases if c.key["impl"] == "fastbp").parameters()
    start_w, _ = peers.initial_parameters(compare.setup_sizes(setup))
    assert not np.allclose(w_ref[0], start_w[0])  # it did train
    for case in cases:
        w, b = case.parameters()
        for got, want in zip(w + b, w_ref + b_ref):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=case.key["impl"])


def test_finite_differences_cost_more_than_backprop():
    rows = compare.build_gradient_table(compare.measure_gradients(repeats=1, sizes=(8, 5, 3), n_rows=4,
                                                                  backprop_calls=3))
    by_impl = {r["impl"]: r for r in rows}
    assert set(by_impl) == {"backprop", "finite-differences"}
    assert by_impl["backprop"]["ratio"] == 1.0
    assert by_impl["finite-differences"]["n_params"] == 8 * 5 + 5 + 5 * 3 + 3
    # 2 cost evaluations per parameter (126) against one backprop pass.
    assert by_impl["finite-differences"]["ratio"] > 5


def test_main_writes_the_json_and_prints_the_tables(tmp_path, capsys):
    path = tmp_path / "bench.json"
    compare.main(["--data", "random", "--rows", "300", "--repeats", "1", "--batches", "2", "--gemm-size", "64",
                  "--threads", "1", "--no-compile-subprocess", "--markdown", "--json", str(path)])
    printed = capsys.readouterr().out
    assert "random data of Fashion-MNIST's shape" in printed
    assert "| setup | dtype | implementation |" in printed and "GEMM peak" in printed
    assert "fastbp on 2 threads against 1: one thread only" in printed
    out = json.loads(path.read_text())
    assert {(r["setup"], r["dtype"], r["impl"]) for r in out["table"]} == expected_rows(SETUPS + ("book-m32",))
    assert compare.setup_sizes("book-m32") == [784, 30, 10]
    assert out["flops_per_example"]["book"] == 95_880
    assert out["settings"]["thread_counts"] == [1] and {r["threads"] for r in out["table"]} == {1}
    assert all(v > 0 for v in out["gemm_peak_gflops"].values())
    assert {r["impl"] for r in out["gradients"]} == {"backprop", "finite-differences"}


def test_thread_speedups_divide_one_thread_by_two_for_fastbp_rows_only():
    def row(impl, setup, threads, us):
        return {"impl": impl, "setup": setup, "dtype": "float64", "threads": threads, "us_per_example": us}

    table = [row("fastbp", "book-m32", 1, 4.0), row("fastbp", "book-m32", 2, 2.5), row("fastbp", "large", 1, 9.0),
             row("torch", "book", 1, 50.0), row("torch", "book", 2, 10.0)]
    assert compare.thread_speedups(table) == {("book-m32", "float64"): 1.6}  # large: no 2-thread row


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        compare.parse_args(["--repeats", "0"])
    with pytest.raises(SystemExit):
        compare.parse_args(["--threads", "2", "0"])
    with pytest.raises(ValueError, match="data must be"):
        peers.load_bench_data("mnist")



class _FakeClock:
    """Stands for the ``time`` module in bench.peers: ``sleep`` and each case's step move it forward."""

    def __init__(self):
        self.now = 0.0
        self.slept = []

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def _recording_case(log, clock, name, seconds):
    """A case whose chunks take ``seconds`` of the fake clock each and are logged, with every entry of its
    context."""
    import contextlib

    @contextlib.contextmanager
    def context():
        log.append((name, "context"))
        yield

    def step():
        log.append((name, "step"))
        clock.now += seconds

    return peers.Case(dict(impl=name), step, units=2, context=context)


def test_with_a_pause_each_timed_chunk_follows_an_untimed_lead_in_of_the_same_case(monkeypatch):
    log, clock = [], _FakeClock()
    monkeypatch.setattr(peers, "time", clock)
    cases = [_recording_case(log, clock, "a", 3.0), _recording_case(log, clock, "b", 5.0)]
    samples = peers.run_interleaved(cases, 2, warm=False, pause=0.25)
    # Per chunk: a rest, then one context around the lead-in and the timed step; the cases take turns.
    assert clock.slept == [0.25] * 4
    assert log == [("a", "context"), ("a", "step"), ("a", "step"), ("b", "context"), ("b", "step"), ("b", "step")] * 2
    # Only the second step is timed: seconds per unit of one chunk, not of two.
    assert samples == [[1.5, 1.5], [2.5, 2.5]]


def test_without_a_pause_chunks_are_timed_with_no_rest_and_no_lead_in(monkeypatch):
    log, clock = [], _FakeClock()
    monkeypatch.setattr(peers, "time", clock)
    samples = peers.run_interleaved([_recording_case(log, clock, "a", 4.0)], 3, warm=False)
    assert clock.slept == []
    assert log == [("a", "context"), ("a", "step")] * 3
    assert samples == [[2.0, 2.0, 2.0]]


def test_limits_table_times_every_piece_against_the_core_peak():
    from bench import limits
    data = peers.random_data(300, 784, seed=2)
    rows = limits.measure_limits(data, dtypes=("float64",), repeats=1, calls=3, gemm_size=64)
    pieces = [r["piece"] for r in rows]
    assert len(pieces) == 12 and pieces[0].startswith("vector FMAs") and "random rows" in pieces[4]
    assert rows[0]["of_peak"] == 1.0 and all(r["rate"] > 0 for r in rows[:5])
    assert all(r["us"] > 0 for r in rows[2:6] + rows[7:9])
    assert "2 threads" in pieces[6] and "one share" in pieces[7] and pieces[8].startswith("one-thread epoch")
    two_threads = rows[6]["us"]  # None where Numba runs one thread
    assert (two_threads is None) == (numba.config.NUMBA_NUM_THREADS < 2) and (two_threads is None or two_threads > 0)
    assert "handed there and back" in pieces[9] and "read on the other" in pieces[10] and "on one core" in pieces[11]
    two_cores = numba.config.NUMBA_NUM_THREADS >= 2 and available_cores() >= 2
    assert all((r["us"] is None) != two_cores and (r["us"] is None or r["us"] > 0) for r in rows[9:11])
    assert rows[11]["us"] > 0 and all(r["rate"] is None and r["of_peak"] is None for r in rows[9:])
    assert all(r["rate"] * r["us"] * 1e-6 == pytest.approx(2 * 392 * 32 * 10) for r in rows[2:5])
    text = limits.format_limits(rows, markdown=True)
    assert text.count("\n") == len(rows) + 1 and "| examples' stage" in text


def test_slow_rounds_are_those_where_the_two_thread_chunks_slowed_together():
    """A round counts as slow where the median, over fastbp's two-thread cases, of its chunk against the case's
    fastest chunk reaches the factor; one-thread cases and other implementations do not count."""
    def rec(impl, threads, samples):
        return {"impl": impl, "threads": threads, "samples_us": samples}
    results = [rec("fastbp", 2, [1.8, 1.0, 1.0, 1.3]), rec("fastbp-uint8", 2, [2.0, 1.1, 1.0, 1.2]),
               rec("fastbp", 2, [1.0, 1.0, 1.1, 1.5]),  # round 1: ratios 1.8, 2.0, 1.0 -> median 1.8
               rec("fastbp", 1, [1.0, 9.0, 9.0, 9.0]), rec("torch", 2, [1.0, 9.0, 9.0, 9.0])]
    assert compare.slow_rounds(results, factor=1.15) == [1, 4]  # round 4: 1.3, 1.2, 1.5 -> 1.3
    assert compare.slow_rounds(results, factor=1.5) == [1]
    assert compare.slow_rounds([rec("fastbp", 1, [1.0, 2.0])]) == []
