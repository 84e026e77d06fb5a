"""Model files without pickle: ``.npz`` (NumPy arrays + JSON metadata) or ``.json`` (network2's format).

``save(model, path)`` picks the format from the suffix and writes atomically: the bytes go to a temporary
file in the target's directory, are flushed to disk, and replace the target in one step, so a crash or a
refused save never leaves a half-written file or touches the file already there.

The ``.json`` layout is the one ``network2.save`` writes -- ``sizes``, ``weights`` (nested lists
(n_out, n_in)), ``biases`` ((n_out, 1) columns) and ``cost`` ("QuadraticCost", "CrossEntropyCost") -- plus
fastbp's fields ``activations``, ``fastbp_cost``, ``dtype`` and ``format_version``. A file written by
network2 loads as a sigmoid network with its cost. Both formats reproduce every parameter bit for bit:
JSON stores each value as the shortest decimal that reads back to the same float64, and float32 values are
exact float64 numbers.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from . import activations, costs
from .atomic import atomic_write
from .model import MLP

__all__ = ["save", "load", "format_of"]

FORMAT_VERSION = 1
SUFFIXES = {".npz": "npz", ".json": "json"}
# network2's cost classes; LogLikelihoodCost has no network2 class but keeps the naming scheme.
COST_CLASSES = {"quadratic": "QuadraticCost", "cross-entropy": "CrossEntropyCost",
                "log-likelihood": "LogLikelihoodCost"}
FASTBP_COSTS = {cls: name for name, cls in COST_CLASSES.items()}
NETWORK2_COSTS = ("QuadraticCost", "CrossEntropyCost")


def format_of(path):
    """The format of ``path`` from its suffix: "npz" or "json" (ValueError for anything else)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}.")
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"model file {os.fspath(path)} must end in .npz or .json; got suffix {suffix!r}.")
    return SUFFIXES[suffix]


# ---------------------------------------------------------------------------------------------- saving
def save(model, path):
    """Write ``model`` (an :class:`MLP`) to ``path`` (.npz or .json), atomically.

    Custom (jitted) activations cannot be stored: they are code, not data, and are refused with ValueError.
    """
    kind = format_of(path)
    path = os.fspath(path)
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastbp MLP; got {type(model).__name__}.")
    if "custom" in model.activation_names:
        raise ValueError(f"model activations must be named activations to be saved; got a custom (numba-jitted) "
                         f"activation in {model.activation_names}. Save the parameters yourself "
                         "(model.params) and rebuild the model with the same functions.")
    if not np.isfinite(model.params).all():
        raise ValueError("model parameters must be finite to be saved; got NaN or infinity.")
    meta = {"sizes": list(model.sizes), "activations": list(model.activation_names),
            "fastbp_cost": model.cost_name, "dtype": model.dtype.name, "format_version": FORMAT_VERSION}
    if kind == "json":
        data = {"sizes": meta["sizes"],
                "weights": [np.asarray(w, dtype=np.float64).tolist() for w in model.weights],
                "biases": [np.asarray(b, dtype=np.float64).reshape(-1, 1).tolist() for b in model.biases],
                "cost": COST_CLASSES[model.cost_name]}
        data.update((key, meta[key]) for key in ("activations", "fastbp_cost", "dtype", "format_version"))
        payload = json.dumps(data, allow_nan=False).encode("utf-8")
        atomic_write(path, lambda fh: fh.write(payload))
    else:
        arrays = {"metadata": np.array(json.dumps(meta))}
        for i, (w, b) in enumerate(zip(model.weights, model.biases)):
            arrays[f"weights_{i}"] = w
            arrays[f"biases_{i}"] = b
        atomic_write(path, lambda fh: np.savez(fh, **arrays))


# ---------------------------------------------------------------------------------------------- loading
def load(path):
    """Read a model written by :func:`save` or by network2's ``save`` -> :class:`MLP`.

    Every field is checked (presence, kinds, shapes against ``sizes``, finite values, known names); a bad
    file raises ValueError naming the file and the field.
    """
    kind = format_of(path)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path} must exist; got no such file.")
    fields = _read_json(path) if kind == "json" else _read_npz(path)
    try:
        model = MLP(fields["sizes"], activation=fields["activations"], cost=fields["cost"],
                    dtype=fields["dtype"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model file {path}: {exc}") from None
    # Checked already, so these assignments cannot fail.
    model.weights = [w.astype(model.dtype) for w in fields["weights"]]
    model.biases = [b.astype(model.dtype) for b in fields["biases"]]
    return model


def _fail(path, message):
    raise ValueError(f"model file {path}: {message}")


def _read_json(path):
    def refuse_constant(name):
        _fail(path, f"values must be finite numbers; got {name}.")

    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(), parse_constant=refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"contents must be JSON; got a parse error ({exc}).")
    if not isinstance(data, dict):
        _fail(path, f"contents must be a JSON object; got {type(data).__name__}.")
    for key in ("sizes", "weights", "biases", "cost"):
        if key not in data:
            _fail(path, f"field '{key}' must be present; got fields {sorted(data)}.")
    _check_version(path, data.get("format_version", FORMAT_VERSION))
    sizes = _sizes(path, data["sizes"])
    n_layers = len(sizes) - 1
    # network2 files have no fastbp fields: its networks are all sigmoid, float64.
    names = data.get("activations", ["sigmoid"] * n_layers)
    cost = _cost(path, data["cost"], data.get("fastbp_cost"))
    fields = {"sizes": sizes, "activations": _activation_names(path, names, n_layers), "cost": cost,
              "dtype": _dtype(path, data.get("dtype", "float64"))}
    for key, column in (("weights", False), ("biases", True)):
        value = data[key]
        if not isinstance(value, list) or len(value) != n_layers:
            _fail(path, f"field '{key}' must be a list of {n_layers} arrays for sizes {list(sizes)}; "
                        f"got {_describe(value)}.")
        fields[key] = [_array(path, f"{key}[{i}]", item, _shape(key, sizes, i), fields["dtype"], column)
                       for i, item in enumerate(value)]
    return fields


def _read_npz(path):
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        _fail(path, "contents must be an .npz archive (a zip file); got other bytes.")
    try:
        # allow_pickle=False: an archive can hold pickled objects, and unpickling runs arbitrary code.
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, NotImplementedError, ValueError) as exc:
        _fail(path, f"contents must be a readable .npz archive without pickled objects; got {exc}")
    if "metadata" not in arrays:
        _fail(path, f"array 'metadata' must be present; got arrays {sorted(arrays)}.")
    meta_array = arrays.pop("metadata")
    if meta_array.shape != () or meta_array.dtype.kind != "U":
        _fail(path, f"array 'metadata' must be a JSON string; got dtype {meta_array.dtype}, shape "
                    f"{meta_array.shape}.")
    try:
        meta = json.loads(str(meta_array), parse_constant=lambda name: _fail(path, f"metadata has {name}."))
    except json.JSONDecodeError as exc:
        _fail(path, f"array 'metadata' must hold JSON; got a parse error ({exc}).")
    if not isinstance(meta, dict):
        _fail(path, f"array 'metadata' must hold a JSON object; got {type(meta).__name__}.")
    for key in ("sizes", "activations", "fastbp_cost", "dtype", "format_version"):
        if key not in meta:
            _fail(path, f"metadata field '{key}' must be present; got fields {sorted(meta)}.")
    _check_version(path, meta["format_version"])
    sizes = _sizes(path, meta["sizes"])
    n_layers = len(sizes) - 1
    fields = {"sizes": sizes, "activations": _activation_names(path, meta["activations"], n_layers),
              "cost": _cost(path, None, meta["fastbp_cost"]), "dtype": _dtype(path, meta["dtype"])}
    expected = {f"{key}_{i}" for key in ("weights", "biases") for i in range(n_layers)}
    if set(arrays) != expected:
        _fail(path, f"arrays must be {sorted(expected)} for sizes {list(sizes)}; got {sorted(arrays)}.")
    for key in ("weights", "biases"):
        fields[key] = [_array(path, f"{key}_{i}", arrays[f"{key}_{i}"], _shape(key, sizes, i), fields["dtype"])
                       for i in range(n_layers)]
    return fields


# ---------------------------------------------------------------------------------------------- field checks
def _check_version(path, version):
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        _fail(path, f"format_version must be an int in [1, {FORMAT_VERSION}] (a newer fastbp may read it); "
                    f"got {version!r}.")


def _sizes(path, sizes):
    if (not isinstance(sizes, list) or len(sizes) < 2
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes)):
        _fail(path, f"field 'sizes' must be a list of at least two positive ints; got {_describe(sizes)}.")
    return tuple(sizes)


def _activation_names(path, names, n_layers):
    if not isinstance(names, list) or len(names) != n_layers:
        _fail(path, f"field 'activations' must be a list of {n_layers} names; got {_describe(names)}.")
    for name in names:
        if not isinstance(name, str) or name not in activations.CODES:
            _fail(path, f"field 'activations' must hold names from {sorted(activations.CODES)}; got {name!r}.")
    return names


def _cost(path, network2_cost, fastbp_cost):
    """fastbp's cost name from network2's class name and/or fastbp's own field (which must agree)."""
    if fastbp_cost is None and network2_cost is not None:
        if network2_cost not in NETWORK2_COSTS:
            _fail(path, f"field 'cost' must be one of {list(NETWORK2_COSTS)}; got {_describe(network2_cost)}.")
        return FASTBP_COSTS[network2_cost]
    if not isinstance(fastbp_cost, str) or fastbp_cost not in costs.CODES:
        _fail(path, f"field 'fastbp_cost' must be one of {sorted(costs.CODES)}; got {_describe(fastbp_cost)}.")
    if network2_cost is not None and network2_cost != COST_CLASSES[fastbp_cost]:
        _fail(path, f"field 'cost' must be {COST_CLASSES[fastbp_cost]!r} to agree with fastbp_cost "
                    f"{fastbp_cost!r}; got {_describe(network2_cost)}.")
    return fastbp_cost


def _dtype(path, dtype):
    if dtype not in ("float32", "float64"):
        _fail(path, f"field 'dtype' must be 'float32' or 'float64'; got {_describe(dtype)}.")
    return np.dtype(dtype)


def _shape(key, sizes, i):
    return (sizes[i + 1], sizes[i]) if key == "weights" else (sizes[i + 1],)


def _array(path, field, value, shape, dtype, column=False):
    """``value`` as a finite float array of ``shape`` in ``dtype``; ``column`` also accepts (n, 1) for (n,)."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nested lists
        _fail(path, f"{field} must be a rectangular array of shape {shape}; got ragged lists.")
    if arr.dtype.kind not in "iuf":
        _fail(path, f"{field} must hold real numbers; got dtype {arr.dtype}.")
    if column and arr.shape == shape + (1,):
        arr = arr.reshape(shape)
    if arr.shape != shape:
        _fail(path, f"{field} must have shape {shape}{' (or a column)' if column else ''} to match sizes; "
                    f"got {arr.shape}.")
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    if not np.isfinite(out).all():
        _fail(path, f"{field} must hold finite {dtype.name} values; got NaN or infinity.")
    return out


def _describe(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} {text[:57]}..."
