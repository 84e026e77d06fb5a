"""fastbp.mpi against single-process MLP.fit: in this process (one rank) and under mpirun with two ranks."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import F64_ATOL

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install fastbp[mpi])")
from mpi4py import MPI  # noqa: E402

from fastbp import MLP, ScaledInputs  # noqa: E402
from fastbp import io as fio  # noqa: E402
from fastbp import mpi  # noqa: E402
from fastbp.checkpoint import peek  # noqa: E402

MPIRUN = shutil.which("mpirun")
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="mpirun is not on PATH (install e.g. openmpi-bin)")

SIZES = [12, 9, 7, 4]
# (name, options of fit, batch sizes): the rows below are 101, an odd count, so 2 ranks get uneven shares;
# a batch of 1 is smaller than the rank count, so one rank has no rows.
CASES = [("sgd", dict(eta=0.5), (10, 7, 1)),
         ("sgd_l2", dict(eta=0.5, lmbda=0.5), (7,)),
         ("adam", dict(eta=0.01, optimizer="adam"), (10, 7)),
         ("momentum", dict(eta=0.3, optimizer="momentum", momentum=0.9), (10, 7)),
         ("nesterov", dict(eta=0.3, optimizer="momentum", momentum=0.9, nesterov=True), (7,))]
EPOCHS = 3


def make_data(seed=7, n=101, n_val=30):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((n, SIZES[0])), rng.integers(0, SIZES[-1], n)
    Xv, yv = rng.standard_normal((n_val, SIZES[0])), rng.integers(0, SIZES[-1], n_val)
    return X, y, Xv, yv


def reference(options, batch_size, seed=3, data=None):
    """Single-process MLP.fit: the expected parameters and history."""
    X, y, Xv, yv = make_data() if data is None else data
    model = MLP(SIZES, seed=seed)
    history = model.fit(X, y, epochs=EPOCHS, batch_size=batch_size, validation_data=(Xv, yv), **options)
    return model.params.copy(), history


# --------------------------------------------------------------------------------------------- one rank
@pytest.mark.parametrize("name, options, batch_sizes", CASES)
def test_one_rank_matches_fit(name, options, batch_sizes):
    X, y, Xv, yv = make_data()
    for batch_size in batch_sizes:
        expected, expected_history = reference(options, batch_size)
        model = MLP(SIZES, seed=3)
        history = mpi.fit(model, X, y, epochs=EPOCHS, batch_size=batch_size, validation_data=(Xv, yv),
                          comm=MPI.COMM_WORLD, **options)
        if options.get("optimizer", "sgd") == "sgd":
            # MLP.fit fuses plain SGD into BP4 ((1 - eta lmbda/n) w - eta/m sum): equal up to rounding.
            np.testing.assert_allclose(model.params, expected, rtol=0, atol=F64_ATOL)
        else:  # the same kernels in the same order: bit for bit
            np.testing.assert_array_equal(model.params, expected)
        assert history["epoch"] == [1, 2, 3]
        assert history["val_accuracy"] == expected_history["val_accuracy"]
        np.testing.assert_allclose(history["val_cost"], expected_history["val_cost"], rtol=0, atol=F64_ATOL)
        assert not np.array_equal(model.params, MLP(SIZES, seed=3).params)  # it did train


def test_one_rank_scaled_inputs_and_shuffle_off():
    rng = np.random.default_rng(0)
    X = ScaledInputs(rng.integers(0, 256, (50, SIZES[0]), dtype=np.uint8), 1 / 255)
    y = rng.integers(0, SIZES[-1], 50)
    expected = MLP(SIZES, seed=5)
    expected.fit(X, y, epochs=2, batch_size=8, eta=0.01, optimizer="adam", shuffle=False)
    model = MLP(SIZES, seed=5)
    history = mpi.fit(model, X, y, epochs=2, batch_size=8, eta=0.01, optimizer="adam", shuffle=False)
    np.testing.assert_array_equal(model.params, expected.params)
    assert "val_accuracy" not in history and len(history["seconds"]) == 2


def test_callback_stops_and_threads_restored():
    X, y, _, _ = make_data()
    model = MLP(SIZES, seed=1, n_threads=1)
    seen = []
    history = mpi.fit(model, X, y, epochs=5, batch_size=10, eta=0.5,
                      callback=lambda epoch, h: seen.append(epoch) or epoch == 2)
    assert seen == [1, 2] and history["epoch"] == [1, 2]
    assert model.n_threads == 1


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=-1), ValueError, "epochs must be an int >= 0; got -1"),
    (dict(eta=0.0), ValueError, r"eta must be a finite float in the range \(0.0, inf\); got 0.0"),
    (dict(batch_size=0), ValueError, "batch_size must be an int >= 1; got 0"),
    (dict(comm="world"), TypeError, "comm must be an mpi4py intracommunicator .*; got str"),
    (dict(early_stopping=2), ValueError, "early_stopping needs validation_data"),
    (dict(n_threads=0), ValueError, "n_threads must be an int >= 1; got 0"),
    (dict(callback=3), TypeError, "callback must be None or a callable .* got int 3"),
])
def test_rejects_bad_arguments_and_leaves_model(kwargs, error, match):
    X, y, _, _ = make_data()
    model = MLP(SIZES, seed=2)
    before = model.params.copy()
    options = dict(epochs=1, batch_size=10, eta=0.5) | kwargs
    with pytest.raises(error, match=match):
        mpi.fit(model, X, y, **options)
    np.testing.assert_array_equal(model.params, before)


def test_rejects_bad_data():
    X, y, _, _ = make_data()
    with pytest.raises(ValueError, match="X must have 12 columns"):
        mpi.fit(MLP(SIZES), X[:, :5], y, epochs=1, batch_size=10, eta=0.5)
    with pytest.raises(ValueError, match=r"y must hold class labels in \[0, 3\]"):
        mpi.fit(MLP(SIZES), X, y + 4, epochs=1, batch_size=10, eta=0.5)


@pytest.mark.parametrize("m, size", [(10, 2), (7, 2), (1, 2), (5, 3), (2, 5), (1000, 7)])
def test_shares_partition_the_batch(m, size):
    parts = [range(m)[mpi.share(m, r, size)] for r in range(size)]
    assert [i for p in parts for i in p] == list(range(m))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_threads_per_rank_one_rank():
    assert 1 <= mpi.threads_per_rank() <= os.cpu_count()


# --------------------------------------------------------------------------------------------- two ranks
SCRIPT = """
import json, sys
import numpy as np
from mpi4py import MPI
from fastbp import MLP, mpi
sys.path.insert(0, {tests!r})
from test_mpi import CASES, EPOCHS, SIZES, make_data

out, comm = {out!r}, MPI.COMM_WORLD
rank = comm.rank
X, y, Xv, yv = make_data()
for name, options, batch_sizes in CASES:
    for batch_size in batch_sizes:
        # rank 1 starts from other weights and another generator: rank 0's must win
        model = MLP(SIZES, seed=3 if rank == 0 else 1000 + rank)
        history = mpi.fit(model, X, y, epochs=EPOCHS, batch_size=batch_size, validation_data=(Xv, yv), **options)
        theta0 = model.params.copy()
        comm.Bcast(theta0, root=0)
        spread = comm.allreduce(float(np.abs(model.params - theta0).max()), op=MPI.MAX)
        np.save(f"{{out}}/{{name}}_{{batch_size}}_rank{{rank}}.npy", model.params)
        if rank == 0:
            with open(f"{{out}}/{{name}}_{{batch_size}}.json", "w") as fh:
                json.dump(dict(history, spread=spread), fh)

# a checkpoint written by rank 0 after epoch 1; resumed by a model that starts elsewhere
ckpt = f"{{out}}/run.npz"
options = dict(eta=0.01, optimizer="adam", batch_size=7, validation_data=(Xv, yv))
mpi.fit(MLP(SIZES, seed=3), X, y, epochs=1, checkpoint=ckpt, **options)
model = MLP(SIZES, seed=50 + rank)
history = mpi.fit(model, X, y, epochs=EPOCHS, checkpoint=ckpt, resume=True, **options)
np.save(f"{{out}}/resumed_rank{{rank}}.npy", model.params)

# errors: raised on every rank with the same message, also when only one rank's input is bad
errors = {{}}
for what, kwargs in [("eta", dict(eta=0.5 if rank == 0 else -1.0)), ("data", dict(flip=rank == 1))]:
    Xr = X.copy()
    if kwargs.pop("flip", False):
        Xr[0, 0] += 1.0
    try:
        mpi.fit(MLP(SIZES), Xr, y, epochs=1, batch_size=10, **{{"eta": 0.5, **kwargs}})
        errors[what] = None
    except ValueError as exc:
        errors[what] = str(exc)
with open(f"{{out}}/errors_rank{{rank}}.json", "w") as fh:
    json.dump(errors, fh)
"""


def mpirun(n):
    """The command that starts n ranks, and the environment to start it in."""
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    flags = []
    if "Open MPI" in version:  # two ranks on a machine that may have fewer cores; root in containers
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    # This process started MPI as a singleton (the one-rank tests), which exports OMPI_*/PMIX_* variables
    # at the C level; an mpirun inheriting them fails. Give it the environment without them.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "OPAL_"))}
    return [MPIRUN, *flags, "-n", str(n)], env


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run SCRIPT on 2 ranks once; returns its output directory."""
    if MPIRUN is None:
        pytest.skip("mpirun is not on PATH (install e.g. openmpi-bin)")
    out = tmp_path_factory.mktemp("mpi")
    script = out / "run.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(out)))
    command, env = mpirun(2)
    proc = subprocess.run([*command, sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, f"mpirun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "differed" not in proc.stderr, proc.stderr  # the once-per-epoch check never had to re-synchronise
    return out


@needs_mpirun
@pytest.mark.parametrize("name, options, batch_size", [(n, o, b) for n, o, bs in CASES for b in bs])
def test_two_ranks_match_fit(two_ranks, name, options, batch_size):
    expected, expected_history = reference(options, batch_size)
    params = [np.load(two_ranks / f"{name}_{batch_size}_rank{r}.npy") for r in range(2)]
    np.testing.assert_array_equal(params[0], params[1])  # the ranks never drift apart
    np.testing.assert_allclose(params[0], expected, rtol=0, atol=F64_ATOL)
    history = json.loads((two_ranks / f"{name}_{batch_size}.json").read_text())
    assert history["spread"] == 0.0
    assert history["epoch"] == [1, 2, 3] and len(history["seconds"]) == 3
    assert history["val_accuracy"] == expected_history["val_accuracy"]
    np.testing.assert_allclose(history["val_cost"], expected_history["val_cost"], rtol=0, atol=F64_ATOL)


@needs_mpirun
def test_two_ranks_resume_bit_for_bit(two_ranks):
    uninterrupted = np.load(two_ranks / "adam_7_rank0.npy")  # the same fit without a break, on the same ranks
    for r in range(2):
        np.testing.assert_array_equal(np.load(two_ranks / f"resumed_rank{r}.npy"), uninterrupted)
    assert sorted(p.name for p in two_ranks.iterdir() if p.name.startswith((".run", "run.npz"))) == ["run.npz"]


def test_one_rank_checkpoint_and_resume(tmp_path):
    X, y, Xv, yv = make_data()
    options = dict(batch_size=10, eta=0.5, validation_data=(Xv, yv), comm=MPI.COMM_WORLD)
    path = tmp_path / "run.npz"
    whole = MLP(SIZES, seed=3)
    mpi.fit(whole, X, y, epochs=EPOCHS, **options)
    mpi.fit(MLP(SIZES, seed=3), X, y, epochs=1, checkpoint=path, **options)
    resumed = MLP(SIZES, seed=8)
    history = mpi.fit(resumed, X, y, epochs=EPOCHS, checkpoint=path, resume=True, **options)
    np.testing.assert_array_equal(resumed.params, whole.params)
    assert history["epoch"] == list(range(1, EPOCHS + 1))
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        mpi.fit(resumed, X, y, epochs=1, resume=True, **options)


@needs_mpirun
def test_two_ranks_raise_the_same_error(two_ranks):
    errors = [json.loads((two_ranks / f"errors_rank{r}.json").read_text()) for r in range(2)]
    assert errors[0] == errors[1]
    assert errors[0]["eta"].startswith("eta must be a finite float in the range (0.0, inf); got -1.0.")
    assert errors[0]["data"].startswith("the data (X, y, validation_data) must be the same on every rank; got a "
                                        "difference between rank 0 and rank 1.")


def test_command_one_rank(tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert mpi.main(["--data", "digits", "--epochs", "1", "--batch-size", "50", "--seed", "0", "--quiet",
                     "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("final: test accuracy ") and out.count("\n") == 1
    assert path.stat().st_size > 0
    # Without --seed, a fresh one is printed, and giving it repeats the run.
    first, again = tmp_path / "first.npz", tmp_path / "again.npz"
    assert mpi.main(["--data", "digits", "--epochs", "1", "--batch-size", "50", "--save", str(first)]) == 0
    seed = int(re.search(r", seed (\d+), 1 ranks x ", capsys.readouterr().out).group(1))
    assert mpi.main(["--data", "digits", "--epochs", "1", "--batch-size", "50", "--seed", str(seed), "--quiet",
                     "--save", str(again)]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(fio.load(str(again)).params, fio.load(str(first)).params)
    resume = ["--data", "digits", "--batch-size", "50", "--checkpoint", str(tmp_path / "c.npz"), "--resume"]
    assert mpi.main(resume + ["--epochs", "1"]) == 0  # no checkpoint yet: a fresh seed
    assert re.search(r", seed \d+, 1 ranks x ", capsys.readouterr().out)
    assert mpi.main(resume + ["--epochs", "2"]) == 0
    assert ", seed from the checkpoint, 1 ranks x " in capsys.readouterr().out
    assert mpi.main(["--eta", "-1"]) == 2
    assert "--eta: must be a float > 0.0" in capsys.readouterr().err
    assert mpi.main(["--plot", str(tmp_path / "c.png")]) == 2
    assert "--plot is not supported under MPI" in capsys.readouterr().err
    assert mpi.main(["--resume"]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err
    assert mpi.main(["--data", "no-such-data", "--checkpoint", "/nonexistent-dir/c.npz"]) == 1
    err = capsys.readouterr().err  # refused before the data are read
    assert "--checkpoint /nonexistent-dir/c.npz must be in an existing directory" in err
    assert "no-such-data" not in err


def _rank_pids(marker):
    """The pids of this machine's Python processes whose command line contains ``marker`` (mpirun's excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if argv[0] == sys.executable.encode() and marker.encode() in argv:
            pids.append(int(entry))
    return pids


@needs_mpirun
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the rank processes through /proc (Linux)")
def test_command_sigterm_to_one_rank_stops_all_after_the_same_epoch(tmp_path):
    ckpt = str(tmp_path / "c.npz")
    command, env = mpirun(2)
    train = [*command, sys.executable, "-m", "fastbp.mpi", "--data", "digits", "--batch-size", "50",
             "--threads", "1", "--seed", "0", "--checkpoint", ckpt]
    proc = subprocess.Popen([*train, "--epochs", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("epoch "):
                pids = _rank_pids(ckpt)
                assert len(pids) == 2, pids
                os.kill(pids[-1], signal.SIGTERM)  # one rank only, whichever it is
                break
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    stopped = [line for line in out.splitlines() if line.startswith("stopped by SIGTERM after epoch ")]
    assert len(stopped) == 1, out  # rank 0 reports, once
    done = int(stopped[0].split()[5].rstrip(";"))
    assert done >= 1 and peek(ckpt)["done"] == done
    resumed = subprocess.run([*train, "--epochs", str(done + 1), "--resume"], capture_output=True, text=True,
                             timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {done + 1}/{done + 1}" in resumed.stdout and f"epoch {done}/" not in resumed.stdout
