"""Checkpoints: a resumed fit is bit for bit the uninterrupted one; foreign checkpoints are refused."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from fastbp import MLP, ScaledInputs, load
from fastbp.checkpoint import peek

FIT = dict(batch_size=10, eta=0.5)


@pytest.fixture
def data(rng):
    return rng.random((200, 12)), rng.integers(0, 3, 200), rng.random((40, 12)), rng.integers(0, 3, 40)


def fit(net, data, epochs, **options):
    X, y, Xv, yv = data
    return net.fit(X, y, epochs=epochs, validation_data=(Xv, yv), **FIT, **options)


@pytest.mark.parametrize("options", [
    {"optimizer": "sgd"}, {"optimizer": "adam"}, {"optimizer": "momentum", "momentum": 0.8, "nesterov": True},
    {"optimizer": "sgd", "halve_eta_after": 1, "lmbda": 0.1, "monitor_training": True},
], ids=lambda o: o["optimizer"] + ("+schedule" if "halve_eta_after" in o else ""))
def test_resume_is_bit_for_bit_the_uninterrupted_fit(tmp_path, data, options):
    path = tmp_path / "run.ckpt"
    whole = MLP([12, 7, 3], seed=4)
    expected = fit(whole, data, 5, **options)
    fit(MLP([12, 7, 3], seed=4), data, 2, checkpoint=path, **options)
    assert peek(path)["done"] == 2
    resumed = MLP([12, 7, 3], seed=123)  # other weights and generator: all of it comes from the checkpoint
    history = fit(resumed, data, 5, checkpoint=path, resume=True, **options)
    np.testing.assert_array_equal(resumed.params, whole.params)
    for key in expected:
        if key != "seconds":
            assert history[key] == expected[key], key
    assert peek(path)["done"] == 5
    assert os.listdir(tmp_path) == ["run.ckpt"]  # the atomic writes left no temporary files


def test_resume_without_a_checkpoint_file_starts_afresh(tmp_path, data):
    fresh, plain = MLP([12, 7, 3], seed=4), MLP([12, 7, 3], seed=4)
    fit(fresh, data, 2, checkpoint=tmp_path / "new.npz", resume=True)
    fit(plain, data, 2)
    np.testing.assert_array_equal(fresh.params, plain.params)


def test_an_early_stopped_fit_stays_stopped(tmp_path, data):
    path = tmp_path / "run.npz"
    net = MLP([12, 7, 3], seed=4)
    history = fit(net, data, 40, early_stopping=1, checkpoint=path)
    assert len(history["epoch"]) < 40 and peek(path)["finished"]
    again = MLP([12, 7, 3], seed=8)
    assert fit(again, data, 40, early_stopping=1, checkpoint=path, resume=True)["epoch"] == history["epoch"]
    np.testing.assert_array_equal(again.params, net.params)


def test_a_fit_stopped_by_its_callback_goes_on_when_resumed(tmp_path, data):
    path = tmp_path / "run.npz"
    fit(MLP([12, 7, 3], seed=4), data, 5, checkpoint=path, callback=lambda epoch, history: epoch == 2)
    assert peek(path)["done"] == 2 and not peek(path)["finished"]
    resumed, whole = MLP([12, 7, 3], seed=4), MLP([12, 7, 3], seed=4)
    fit(resumed, data, 5, checkpoint=path, resume=True)
    fit(whole, data, 5)
    np.testing.assert_array_equal(resumed.params, whole.params)


def test_scaled_inputs_resume(tmp_path, rng):
    inputs, y = ScaledInputs(rng.integers(0, 256, (100, 12)).astype(np.uint8), 1 / 255), rng.integers(0, 3, 100)
    path = tmp_path / "run.npz"
    MLP([12, 5, 3], seed=1).fit(inputs, y, epochs=1, checkpoint=path, **FIT)
    resumed, whole = MLP([12, 5, 3], seed=1), MLP([12, 5, 3], seed=1)
    resumed.fit(inputs, y, epochs=3, checkpoint=path, resume=True, **FIT)
    whole.fit(inputs, y, epochs=3, **FIT)
    np.testing.assert_array_equal(resumed.params, whole.params)


@pytest.mark.parametrize("change, pattern", [
    ({"sizes": [12, 6, 3]}, r"was written for the model .*'sizes': \[12, 7, 3\]"),
    ({"dtype": "float32"}, "was written for the model"),
    ({"batch_size": 20}, "was written by a fit with batch_size=10; this fit has batch_size=20"),
    ({"eta": 0.4}, "with eta=0.5; this fit has eta=0.4"),
    ({"optimizer": "adam"}, "with optimizer=0; this fit has optimizer=3"),
    ({"other_data": True}, "was written by a fit with data="),
])
def test_a_foreign_checkpoint_is_refused_and_the_model_left_alone(tmp_path, data, change, pattern):
    path = tmp_path / "run.npz"
    fit(MLP([12, 7, 3], seed=4), data, 1, checkpoint=path)
    net = MLP(change.get("sizes", [12, 7, 3]), seed=9, dtype=change.get("dtype", "float64"))
    before = net.params.copy()
    X, y, Xv, yv = data
    if change.get("other_data"):
        X = X.copy()
        X[0, 0] += 1e-9
    options = dict(FIT, batch_size=change.get("batch_size", 10), eta=change.get("eta", 0.5),
                   optimizer=change.get("optimizer", "sgd"))
    with pytest.raises(ValueError, match=pattern):
        net.fit(X, y, epochs=3, validation_data=(Xv, yv), checkpoint=path, resume=True, **options)
    np.testing.assert_array_equal(net.params, before)


def test_files_that_are_not_checkpoints_are_refused(tmp_path, data):
    model_file, junk, array = tmp_path / "model.npz", tmp_path / "junk.npz", tmp_path / "array.npz"
    MLP([12, 7, 3]).save(model_file)
    junk.write_bytes(b"not a zip file")
    with open(array, "wb") as fh:
        np.save(fh, np.zeros(3))  # a .npy array under an .npz name
    for path, pattern in ((model_file, "must be a fastbp checkpoint"),
                          (junk, r"must be an \.npz archive \(a zip file\); got other bytes"),
                          (array, r"must be an \.npz archive \(a zip file\); got other bytes")):
        with pytest.raises(ValueError, match=pattern):
            fit(MLP([12, 7, 3]), data, 1, checkpoint=path, resume=True)


@pytest.mark.parametrize("edit, pattern", [
    (dict(done=-5), "metadata field 'done' must be >= 0; got -5"),
    (dict(history={"epoch": 1}), "metadata field 'history' must map names"),
    (dict(history={}), "metadata field 'history' must map names"),
])
def test_edited_checkpoint_metadata_is_refused_and_the_model_left_alone(tmp_path, data, edit, pattern):
    path = tmp_path / "c.npz"
    fit(MLP([12, 7, 3], seed=4), data, 1, checkpoint=path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["metadata"])) | edit
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    net = MLP([12, 7, 3], seed=9)
    before = net.params.copy()
    with pytest.raises(ValueError, match=pattern):
        fit(net, data, 2, checkpoint=path, resume=True)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"resume": True}, ValueError, "resume=True needs checkpoint"),
    ({"resume": "yes", "checkpoint": "x.npz"}, TypeError, "resume must be True or False; got str"),
    ({"checkpoint": 5}, TypeError, "checkpoint must be a str or os.PathLike; got int"),
    ({"checkpoint": "/nonexistent-dir/x.npz"}, FileNotFoundError, "must be in an existing directory"),
])
def test_checkpoint_arguments_are_checked_before_training(data, kwargs, exc, pattern):
    net = MLP([12, 7, 3], seed=0)
    before = net.params.copy()
    with pytest.raises(exc, match=pattern):
        fit(net, data, 1, **kwargs)
    np.testing.assert_array_equal(net.params, before)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "fastbp", "train", "--data", "digits", "--seed", "2",
                           "--threads", "1", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_cli_resume_equals_one_run(tmp_path):
    ckpt = tmp_path / "c.npz"
    assert cli("--epochs", 1, "--checkpoint", ckpt, "--quiet").returncode == 0
    resumed = cli("--epochs", 3, "--checkpoint", ckpt, "--resume", "--save", tmp_path / "a.npz")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "epoch 2/3" in resumed.stdout and "epoch 1/3" not in resumed.stdout
    assert cli("--epochs", 3, "--quiet", "--save", tmp_path / "b.npz").returncode == 0
    np.testing.assert_array_equal(load(tmp_path / "a.npz").params, load(tmp_path / "b.npz").params)
    refused = cli("--epochs", 3, "--checkpoint", ckpt, "--resume", "--batch-size", 20)
    assert refused.returncode == 1 and "batch_size=10; this fit has batch_size=20" in refused.stderr
    assert cli("--resume").returncode == 2


def test_cli_stops_cleanly_on_sigterm(tmp_path):
    ckpt = tmp_path / "c.npz"
    proc = subprocess.Popen([sys.executable, "-m", "fastbp", "train", "--data", "digits", "--epochs", "1000000",
                             "--json", "--checkpoint", str(ckpt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "epoch":
                proc.send_signal(signal.SIGTERM)
                break
        last = json.loads(proc.stdout.read().strip().splitlines()[-1])
        assert proc.wait(timeout=600) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert last["event"] == "stopped" and last["epochs_run"] == peek(ckpt)["done"] >= 1


def test_the_callback_sees_every_recorded_epoch_of_an_early_stop(data):
    seen = []
    history = fit(MLP([12, 7, 3], seed=4), data, 40, early_stopping=1,
                  callback=lambda epoch, history: seen.append((epoch, len(history["epoch"]))))
    assert len(history["epoch"]) < 40
    assert seen == [(e, e) for e in history["epoch"]]
