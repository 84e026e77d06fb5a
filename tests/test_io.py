"""Model files: exact round trips, network2's JSON format, atomic writes and strict validation on load."""
import errno
import json
import os
import pickle
import re

import numpy as np
import pytest

import fastbp.io as fio
from conftest import softplus, softplus_prime
from fastbp import MLP

COMBOS = [
    ([5, 4, 3], "sigmoid", "quadratic"),
    ([5, 4, 3], "sigmoid", "cross-entropy"),
    ([6, 5, 4, 3], ["tanh", "relu", "softmax"], "log-likelihood"),
    ([3, 7, 2], ["relu", "linear"], "quadratic"),
]


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def bits(a):
    """The exact bytes of an array: equality here is bitwise (it tells -0.0 from 0.0)."""
    return np.ascontiguousarray(a).tobytes()


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def network2_dict(rng, sizes, cost):
    """What network2.Network.save writes: biases as (n, 1) columns, the cost's class name."""
    weights = [rng.standard_normal((n_out, n_in)) / np.sqrt(n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal((n_out, 1)) for n_out in sizes[1:]]
    return {"sizes": sizes, "weights": [w.tolist() for w in weights], "biases": [b.tolist() for b in biases],
            "cost": cost}


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes, activation, cost", COMBOS)
def test_round_trip_is_exact(tmp_path, rng, suffix, dtype, sizes, activation, cost):
    model = MLP(sizes, activation=activation, cost=cost, dtype=dtype, seed=7)
    before = model.params.copy()
    path = tmp_path / f"model{suffix}"
    fio.save(model, path)
    loaded = fio.load(path)
    assert bits(model.params) == bits(before)  # saving leaves the model alone
    assert loaded.sizes == model.sizes
    assert loaded.activation_names == model.activation_names
    assert loaded.cost_name == cost
    assert loaded.dtype == np.dtype(dtype)
    assert bits(loaded.params) == bits(model.params)
    X = rng.standard_normal((9, sizes[0]))
    assert bits(loaded.forward(X)) == bits(model.forward(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_keeps_awkward_values_bit_for_bit(tmp_path, suffix, dtype):
    info = np.finfo(dtype)
    awkward = np.array([-0.0, info.smallest_subnormal, -info.smallest_subnormal, info.tiny, info.max, -info.max,
                        info.eps, 1 / 3, 0.1, np.nextafter(np.array(1.0, dtype), np.array(2.0, dtype))], dtype=dtype)
    model = MLP([5, 2], dtype=dtype, seed=1)
    model.params[:awkward.size] = awkward
    fio.save(model, tmp_path / f"m{suffix}")
    assert bits(fio.load(tmp_path / f"m{suffix}").params) == bits(model.params)


def test_json_has_network2_fields(tmp_path):
    model = MLP([4, 3, 2], cost="cross-entropy", seed=2)
    fio.save(model, tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["sizes"] == [4, 3, 2]
    assert data["cost"] == "CrossEntropyCost"
    assert data["activations"] == ["sigmoid", "sigmoid"]
    assert data["fastbp_cost"] == "cross-entropy"
    assert data["dtype"] == "float64"
    # Read as network2.load does: np.array of the nested lists.
    for w, b, w_file, b_file in zip(model.weights, model.biases, data["weights"], data["biases"]):
        assert np.array(w_file).shape == w.shape
        assert np.array(b_file).shape == (b.shape[0], 1)
        assert bits(np.array(w_file)) == bits(w)
        assert bits(np.array(b_file)[:, 0]) == bits(b)


@pytest.mark.parametrize("cost_class, cost", [("CrossEntropyCost", "cross-entropy"), ("QuadraticCost", "quadratic")])
def test_loads_a_file_written_by_network2(tmp_path, rng, cost_class, cost):
    data = network2_dict(rng, [6, 4, 3], cost_class)
    path = tmp_path / "net.json"
    with open(path, "w") as f:  # as network2.save does
        json.dump(data, f)
    model = fio.load(path)
    assert model.sizes == (6, 4, 3)
    assert model.activation_names == ["sigmoid", "sigmoid"]
    assert model.cost_name == cost
    assert model.dtype == np.float64
    weights = [np.array(w) for w in data["weights"]]
    biases = [np.array(b) for b in data["biases"]]
    for l in range(2):
        assert bits(model.weights[l]) == bits(weights[l])
        assert bits(model.biases[l]) == bits(biases[l][:, 0])
    # The book's feedforward, a <- sigmoid(w a + b), one column per example.
    X = rng.standard_normal((5, 6))
    a = X.T
    for w, b in zip(weights, biases):
        a = sigmoid(w @ a + b)
    np.testing.assert_allclose(model.forward(X), a.T, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------------------- atomic writes


def leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_custom_activation_is_refused_and_old_file_kept(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"previous contents")
    model = MLP([3, 4, 2], activation=[(softplus, softplus_prime), "sigmoid"])
    with pytest.raises(ValueError, match="custom"):
        fio.save(model, path)
    assert path.read_bytes() == b"previous contents"
    assert leftovers(tmp_path, {path.name}) == []


def test_non_finite_parameters_are_refused(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"previous contents")
    model = MLP([3, 2], seed=0)
    model.params[1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fio.save(model, path)
    assert path.read_bytes() == b"previous contents"


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_crash_during_write_keeps_old_file(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"previous contents")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        fio.save(MLP([3, 2], seed=0), path)
    assert path.read_bytes() == b"previous contents"
    assert leftovers(tmp_path, {path.name}) == []


def test_save_replaces_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("old")
    fio.save(MLP([3, 2], seed=0), path)
    assert json.loads(path.read_text())["sizes"] == [3, 2]
    assert leftovers(tmp_path, {path.name}) == []


def test_new_file_permissions_follow_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        fio.save(MLP([3, 2], seed=0), tmp_path / "m.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


def test_save_checks_path_and_model(tmp_path):
    model = MLP([3, 2], seed=0)
    with pytest.raises(ValueError, match=r"\.npz or \.json"):
        fio.save(model, tmp_path / "model.pkl")
    with pytest.raises(FileNotFoundError, match="existing directory"):
        fio.save(model, tmp_path / "missing" / "model.npz")
    with pytest.raises(TypeError, match="MLP"):
        fio.save({"sizes": [3, 2]}, tmp_path / "model.npz")
    with pytest.raises(TypeError, match="path"):
        fio.save(model, 42)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_directory_it_may_not_write_to(tmp_path, monkeypatch):
    # The superuser may write anywhere that is not mounted read-only, so the refusal is simulated there.
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: False if os.fspath(path) == str(locked)
                            else real_access(path, mode))
    try:
        with pytest.raises(PermissionError, match=f"model file {locked / 'm.npz'} must be in a directory this "
                                                  "process may write to"):
            fio.save(MLP([3, 2], seed=0), locked / "m.npz")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=r"d\.npz must name a file; got a directory"):
        fio.save(MLP([3, 2], seed=0), tmp_path / "d.npz")


def test_failure_to_create_the_file_names_the_file_asked_for(tmp_path, monkeypatch):
    real_open = os.open

    def read_only_open(path, flags, mode=0o777):
        if os.fspath(path).endswith(".tmp"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(OSError, match=f"cannot write model file {tmp_path / 'm.npz'}: Read-only file system$"):
        fio.save(MLP([3, 2], seed=0), tmp_path / "m.npz")


# ---------------------------------------------------------------------------------------------- validation
def valid_json(rng):
    data = network2_dict(rng, [4, 3, 2], "QuadraticCost")
    data.update(activations=["sigmoid", "sigmoid"], fastbp_cost="quadratic", dtype="float64", format_version=1)
    return data


def set_field(key, value):
    def edit(data):
        data[key] = value
    return edit


def drop_field(key):
    def edit(data):
        del data[key]
    return edit


def edit_array(key, index, fn):
    def edit(data):
        data[key][index] = fn(data[key][index])
    return edit


BAD_JSON = [
    (drop_field("weights"), r"'weights' must be present"),
    (drop_field("cost"), r"'cost' must be present"),
    (set_field("sizes", "4,3,2"), r"'sizes' must be a list"),
    (set_field("sizes", [4, True, 2]), r"'sizes' must be a list"),
    (set_field("sizes", [4, 0, 2]), r"'sizes' must be a list"),
    (set_field("sizes", [4, 5, 2]), r"weights\[0\] must have shape \(5, 4\)"),
    (edit_array("weights", 0, lambda w: np.array(w).T.tolist()), r"weights\[0\] must have shape \(3, 4\)"),
    (edit_array("biases", 1, lambda b: b[:1]), r"biases\[1\] must have shape \(2,\)"),
    (edit_array("weights", 1, lambda w: [w[0], w[1][:2]]), r"weights\[1\] must be a rectangular"),
    (edit_array("weights", 1, lambda w: [["x"] * 3] * 2), r"weights\[1\] must hold real numbers"),
    (edit_array("weights", 0, lambda w: [[1e39] * 4] * 3), r"weights\[0\] must hold finite float32"),
    (set_field("weights", []), r"'weights' must be a list of 2 arrays"),
    (set_field("activations", ["sigmoid", "swish"]), r"'activations' must hold names"),
    (set_field("activations", ["sigmoid"]), r"'activations' must be a list of 2 names"),
    (set_field("activations", ["softmax", "sigmoid"]), r"softmax"),
    (set_field("fastbp_cost", "hinge"), r"'fastbp_cost' must be one of"),
    (set_field("cost", "CrossEntropyCost"), r"'cost' must be 'QuadraticCost' to agree"),
    (set_field("dtype", "float16"), r"'dtype' must be"),
    (set_field("format_version", 99), r"format_version must be"),
]


@pytest.mark.parametrize("edit, message", BAD_JSON)
def test_malformed_json_is_rejected(tmp_path, rng, edit, message):
    data = valid_json(rng)
    data["dtype"] = "float32"  # so that 1e39 overflows
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        fio.load(path)


def test_network2_file_with_unknown_cost_is_rejected(tmp_path, rng):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(network2_dict(rng, [4, 3, 2], "LogLikelihoodCost")))
    with pytest.raises(ValueError, match="'cost' must be one of"):
        fio.load(path)


@pytest.mark.parametrize("text, message", [
    ("{not json", "must be JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"sizes": [2, 1], "weights": [[[NaN, 1.0]]], "biases": [[[0.0]]], "cost": "QuadraticCost"}', "finite"),
    ('{"sizes": [2, 1], "weights": [[[1e400, 1.0]]], "biases": [[[0.0]]], "cost": "QuadraticCost"}',
     r"weights\[0\] must hold finite float64"),
])
def test_unparsable_json_is_rejected(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        fio.load(path)


def write_npz(path, model, *, drop=(), replace=None):
    arrays = {"metadata": np.array(json.dumps({"sizes": list(model.sizes), "activations": model.activation_names,
                                               "fastbp_cost": model.cost_name, "dtype": model.dtype.name,
                                               "format_version": 1}))}
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        arrays[f"weights_{i}"], arrays[f"biases_{i}"] = w, b
    arrays.update(replace or {})
    for key in drop:
        del arrays[key]
    np.savez(path, **arrays)


def test_hand_written_npz_loads(tmp_path):
    model = MLP([4, 3, 2], activation=["tanh", "sigmoid"], seed=3)
    write_npz(tmp_path / "m.npz", model)
    assert bits(fio.load(tmp_path / "m.npz").params) == bits(model.params)


@pytest.mark.parametrize("kwargs, message", [
    ({"drop": ["metadata"]}, "'metadata' must be present"),
    ({"drop": ["biases_1"]}, "arrays must be"),
    ({"replace": {"extra": np.zeros(2)}}, "arrays must be"),
    ({"replace": {"weights_0": np.zeros((4, 3))}}, r"weights_0 must have shape \(3, 4\)"),
    ({"replace": {"biases_0": np.array([0.0, np.inf, 1.0])}}, "biases_0 must hold finite"),
    ({"replace": {"biases_0": np.array(["a", "b", "c"])}}, "biases_0 must hold real numbers"),
    ({"replace": {"metadata": np.zeros(3)}}, "'metadata' must be a JSON string"),
    ({"replace": {"metadata": np.array('{"sizes": [4, 3, 2]}')}}, "'activations' must be present"),
    ({"replace": {"metadata": np.array("not json")}}, "must hold JSON"),
])
def test_malformed_npz_is_rejected(tmp_path, kwargs, message):
    path = tmp_path / "bad.npz"
    write_npz(path, MLP([4, 3, 2], seed=0), **kwargs)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        fio.load(path)


def test_corrupted_npz_is_rejected(tmp_path):
    good = tmp_path / "good.npz"
    fio.save(MLP([4, 3, 2], seed=0), good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="readable .npz archive"):
        fio.load(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x93NUMPY not an archive")
    with pytest.raises(ValueError, match="zip file"):
        fio.load(garbage)


UNPICKLED = []


def _record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class Trap:
    """Unpickling this object calls _record_unpickling: the test sees whether pickle ever ran."""

    def __reduce__(self):
        return _record_unpickling, ("unpickled",)


def test_pickled_arrays_are_never_unpickled(tmp_path):
    model = MLP([4, 3, 2], seed=0)
    trap = np.empty(3, dtype=object)
    trap[:] = [Trap(), Trap(), Trap()]
    path = tmp_path / "trap.npz"
    write_npz(path, model, replace={"biases_0": trap})
    assert pickle.loads(pickle.dumps(Trap())) == "unpickled"  # the trap works ...
    UNPICKLED.clear()
    with pytest.raises(ValueError, match="pickled"):
        fio.load(path)
    assert UNPICKLED == []  # ... and load never sprang it


def test_np_load_is_called_without_pickle(tmp_path, monkeypatch):
    fio.save(MLP([4, 3, 2], seed=0), tmp_path / "m.npz")
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", "default"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    fio.load(tmp_path / "m.npz")
    assert calls == [False]


def test_load_checks_path(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz or \.json"):
        fio.load(tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match="must exist"):
        fio.load(tmp_path / "missing.npz")
    assert fio.format_of("A.NPZ") == "npz" and fio.format_of(tmp_path / "b.json") == "json"
