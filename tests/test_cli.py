"""The fastbp command, run in-process on scikit-learn's digits (1500 training, 297 test rows)."""
import gzip
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import fastbp.io as fio
from fastbp.cli import main
from fastbp.datasets import load_digits

# Small and quick: two epochs on digits, one thread so that the timing does not depend on other load.
TRAIN = ["train", "--data", "digits", "--epochs", "2", "--seed", "0", "--threads", "1"]
N_TEST = 297
EPOCH_LINE = re.compile(r"epoch (\d+)/2: test accuracy (\d+)/297 \((\d+\.\d\d)%\), test cost (\S+), "
                        r"(\d+\.\d\d) s, ([\d,]+) examples/s")
FINAL_LINE = re.compile(r"final: test accuracy (\d+)/297 \((\d+\.\d\d)%\) after (\d+) epochs in \S+ s")


def run(capsys, args):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_train_prints_data_network_and_one_line_per_epoch(capsys):
    code, lines, err = run(capsys, TRAIN)
    assert code == 0, err
    assert lines[0].startswith("data: digits, train X (1500, 64)")
    assert "test X (297, 64)" in lines[0] and "10 classes" in lines[0]
    assert lines[1].startswith("network: [64, 30, 10] sigmoid,sigmoid, quadratic cost, float64, sgd eta 3,")
    assert "mini-batch 10" in lines[1] and lines[1].endswith("seed 0, 1 thread")
    # Not a terminal (no progress bar): a line says why the first epoch may take a while.
    assert lines[2].startswith("preparing the kernels (compiled on the first run") and lines[2].endswith("...")
    epochs = [EPOCH_LINE.fullmatch(line) for line in lines[3:5]]
    assert all(epochs), lines
    assert [int(m.group(1)) for m in epochs] == [1, 2]
    for m in epochs:
        assert abs(int(m.group(2)) / N_TEST * 100 - float(m.group(3))) < 0.006
        assert 0 < float(m.group(4)) < 1  # the quadratic cost of sigmoid outputs lies in (0, 5)
    final = FINAL_LINE.match(lines[5])
    assert final and len(lines) == 6
    assert final.group(1) == epochs[-1].group(2)  # the last epoch's accuracy is the final one
    assert int(final.group(1)) > 0.5 * N_TEST  # the book's setup learns digits within two epochs


def test_default_data_without_fashion_mnist_says_it_falls_back(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTBP_FASHION_MNIST", str(tmp_path / "none"))
    code, lines, err = run(capsys, ["train", "--epochs", "0", "--quiet", "--threads", "1"])
    assert code == 0, err
    assert err.startswith(f"fastbp: note: Fashion-MNIST is not installed (no {tmp_path / 'none'}; ")
    assert err.rstrip().endswith("training on scikit-learn's 8x8 digits instead.") and err.count("\n") == 1
    assert len(lines) == 1 and FINAL_LINE.match(lines[0])  # FINAL_LINE: out of digits' 297 test rows


def test_quiet_prints_only_the_final_line(capsys):
    code, lines, err = run(capsys, TRAIN + ["--quiet"])
    assert code == 0, err
    assert len(lines) == 1 and FINAL_LINE.match(lines[0]), lines
    assert err == ""  # no progress bar either


def test_json_prints_one_object_per_line(capsys):
    code, lines, err = run(capsys, TRAIN + ["--json", "--cost", "cross-entropy", "--eta", "0.5"])
    assert code == 0, err
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["start", "epoch", "epoch", "end"]
    start, *epochs, end = records
    assert start["data"] == "digits" and start["sizes"] == [64, 30, 10]
    assert start["cost"] == "cross-entropy" and start["eta"] == 0.5 and start["n_threads"] == 1
    assert start["train_shape"] == [1500, 64] and start["test_shape"] == [297, 64]
    for number, record in enumerate(epochs, start=1):
        assert record["epoch"] == number and record["epochs"] == 2
        assert record["test_size"] == N_TEST
        assert record["test_correct"] == round(record["test_accuracy"] * N_TEST)
        assert record["seconds"] > 0
        assert record["examples_per_second"] == pytest.approx(1500 / record["seconds"])
    assert end["epochs_run"] == 2 and end["test_accuracy"] == epochs[-1]["test_accuracy"]
    assert end["saved"] is None


def test_without_seed_a_fresh_one_is_reported_and_repeats_the_run(tmp_path, capsys):
    unseeded = [a for a in TRAIN if a not in ("--seed", "0")]
    first, again = tmp_path / "first.npz", tmp_path / "again.npz"
    code, lines, err = run(capsys, unseeded + ["--json", "--save", str(first)])
    assert code == 0, err
    seed = json.loads(lines[0])["seed"]
    assert isinstance(seed, int) and seed >= 0
    code, lines, err = run(capsys, unseeded + ["--seed", str(seed), "--save", str(again)])
    assert code == 0, err
    assert f"seed {seed}, " in lines[1]
    np.testing.assert_array_equal(fio.load(str(again)).params, fio.load(str(first)).params)
    code, lines, err = run(capsys, unseeded + ["--json"])
    assert json.loads(lines[0])["seed"] != seed  # 32 random bits: equal once in 4 billion runs


def test_resumed_run_without_seed_says_the_checkpoint_holds_it(tmp_path, capsys):
    unseeded = ["train", "--data", "digits", "--threads", "1", "--checkpoint", str(tmp_path / "c.npz")]
    code, lines, err = run(capsys, unseeded + ["--epochs", "1"])
    assert code == 0, err
    assert re.search(r", seed \d+, 1 thread$", lines[1])
    code, lines, err = run(capsys, unseeded + ["--epochs", "2", "--resume"])
    assert code == 0, err
    assert lines[1].endswith(", seed from the checkpoint, 1 thread") and "resuming from" in lines[2]
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    code, lines, err = run(capsys, unseeded + ["--epochs", "3", "--resume", "--plot", str(tmp_path / "p.png")])
    assert code == 1 and not (tmp_path / "p.png").exists()
    assert "--plot must be given when resuming exactly if the run that wrote" in err and "had no --plot" in err


def test_json_quiet_prints_only_the_end(capsys):
    code, lines, _ = run(capsys, TRAIN + ["--json", "--quiet"])
    assert code == 0
    assert [json.loads(line)["event"] for line in lines] == ["end"]


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_writes_a_loadable_model(tmp_path, capsys, suffix):
    path = tmp_path / f"digits{suffix}"
    code, lines, err = run(capsys, TRAIN + ["--sizes", "64,20,10", "--activation", "tanh,sigmoid", "--quiet",
                                            "--save", str(path)])
    assert code == 0, err
    assert lines[0].endswith(f"; saved {path}")
    model = fio.load(path)
    assert model.sizes == (64, 20, 10)
    assert model.activation_names == ["tanh", "sigmoid"]
    data = load_digits()
    correct = round(model.score(data.X_test, data.y_test) * N_TEST)
    assert f"test accuracy {correct}/297" in lines[0]  # the file holds the trained parameters


def test_float32_training(capsys):
    code, lines, err = run(capsys, TRAIN + ["--dtype", "float32", "--json", "--quiet"])
    assert code == 0, err
    assert json.loads(lines[0])["test_accuracy"] > 0.5


@pytest.mark.parametrize("args, message", [
    (["--sizes", "784,30,10"], "--sizes must start with 64 inputs and end with 10 outputs"),
    (["--sizes", "64,30,9"], "--sizes must start with 64 inputs and end with 10 outputs"),
    (["--save", "model.pkl"], r"must end in \.npz or \.json"),
    (["--data", "no-such-data"], "--data no-such-data"),
    (["--activation", "softmax"], "softmax"),
    (["--threads", "100000"], r"--threads must be at most \d+ \(numba's thread pool"),
    (["--checkpoint", "/nonexistent-dir/run.npz"],
     "--checkpoint /nonexistent-dir/run.npz must be in an existing directory; got no directory /nonexistent-dir"),
])
def test_errors_exit_1_with_one_line(capsys, args, message):
    code, lines, err = run(capsys, TRAIN + args)
    assert code == 1
    assert lines == []  # refused before training
    assert err.count("\n") == 1 and err.startswith("fastbp: error: ")
    assert re.search(message, err)
    assert "Traceback" not in err


def test_refused_pickle_is_one_error_line(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump((Evil(), Evil(), Evil()), fh, protocol=2)
    code, lines, err = run(capsys, ["train", "--data", str(path)])
    assert code == 1 and lines == []
    assert err.startswith(f"fastbp: error: --data {path}: MNIST pickle {path} is refused: global ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["train", "--sizes", "64,x,10"],
    ["train", "--sizes", "64"],
    ["train", "--epochs", "-1"],
    ["train", "--eta", "0"],
    ["train", "--cost", "hinge"],
    ["train", "--activation", "swish"],
    ["train", "--momentum", "0.5"],  # needs --optimizer momentum
    ["train", "--nesterov"],  # needs --optimizer momentum
    ["train", "--optimizer", "momentum", "--momentum", "1"],  # below 1
    ["gradcheck", "--tol", "nan"],
    ["nonsense"],
    [],
])
def test_bad_arguments_exit_2(capsys, args):
    code, lines, err = run(capsys, args)
    assert code == 2
    assert lines == [] and "error:" in err


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "argument --batch-size: must be an int >= 1; got '0'"),
    (["--eta", "0"], "argument --eta: must be a float > 0.0; got '0'"),
    (["--optimizer", "momentum", "--momentum", "1.0"], "argument --momentum: must be a float >= 0.0 and < 1.0; "
                                                         "got '1.0'"),
    (["--nesterov"], "--nesterov needs --optimizer momentum"),
])
def test_bad_numbers_say_what_was_expected(capsys, args, message):
    code, _, err = run(capsys, ["train"] + args)
    assert code == 2 and message in err


def test_help_exits_0(capsys):
    code, lines, _ = run(capsys, ["train", "--help"])
    assert code == 0
    assert any("--batch-size" in line for line in lines)


def test_plot_writes_an_image(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    path = tmp_path / "curves.png"
    code, lines, err = run(capsys, TRAIN + ["--quiet", "--sizes", "64,16,12,10", "--plot", str(path)])
    assert code == 0, err
    assert lines[0].endswith(f"; plot {path}")
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_after_no_epochs_is_an_empty_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    path = tmp_path / "curves.png"
    code, lines, err = run(capsys, TRAIN + ["--quiet", "--epochs", "0", "--plot", str(path)])
    assert code == 0, err
    assert "after 0 epochs" in lines[0] and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_fails_before_training(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    code, lines, err = run(capsys, TRAIN + ["--plot", str(tmp_path / "curves.png")])
    assert code == 1
    assert lines == [] and "needs matplotlib" in err
    assert not (tmp_path / "curves.png").exists()


def test_plot_with_unknown_format_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    code, lines, err = run(capsys, TRAIN + ["--plot", str(tmp_path / "curves.xyz")])
    assert code == 1 and lines == [] and "--plot must end in one of" in err


def test_gradcheck_passes_on_defaults(capsys):
    code, lines, err = run(capsys, ["gradcheck"])
    assert code == 0, err
    m = re.fullmatch(r"gradcheck: sizes \[20, 12, 8, 5\], sigmoid,sigmoid,sigmoid, quadratic cost, batch 16, "
                     r"401 parameters: max relative error (\S+) \(tol 1e-07\) PASS", lines[0])
    assert m, lines
    assert float(m.group(1)) <= 1e-7


def test_gradcheck_fails_below_its_error(capsys):
    code, lines, _ = run(capsys, ["gradcheck", "--sizes", "3,2", "--batch", "2", "--tol", "1e-300"])
    assert code == 1
    assert lines[0].endswith("FAIL")
    assert float(re.search(r"max relative error (\S+)", lines[0]).group(1)) > 1e-300


def test_info(capsys):
    code, lines, _ = run(capsys, ["info"])
    assert code == 0
    text = "\n".join(lines)
    assert re.search(r"^fastbp \d", text, re.M)
    assert f"numpy {np.__version__}" in text
    assert re.search(r"^threading layer: \w+", text, re.M)
    assert re.search(r"^fashion-mnist: (installed|not installed)", text, re.M)


def test_python_dash_m_help():
    result = subprocess.run([sys.executable, "-m", "fastbp", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("train", "gradcheck", "info"):
        assert command in result.stdout


def test_divergence_warns_in_one_line(capsys):
    code, lines, err = run(capsys, TRAIN + ["--activation", "relu,linear", "--eta", "1e30", "--quiet"])
    assert code == 0
    assert err.startswith("fastbp: warning: Training diverged in epoch 1") and err.count("\n") == 1
    assert "after 0 epochs" in lines[0]


def test_train_accepts_the_schedule_options(capsys):
    code = main(["train", "--data", "digits", "--epochs", "40", "--threads", "1", "--optimizer", "momentum",
                 "--nesterov", "--eta", "0.5", "--early-stopping", "2", "--halve-eta-after", "1", "--json"])
    assert code == 0
    epochs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    epochs = [e for e in epochs if e.get("event") == "epoch"]
    assert 1 <= len(epochs) < 40  # the schedule or early stopping ended training before 40 epochs
