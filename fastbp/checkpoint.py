"""Training checkpoints: everything a fit needs to continue bit for bit after the process dies.

A checkpoint is an ``.npz`` archive (no pickle) written atomically after every epoch: the parameters, the
optimizer state and scalars (Adam's step counter, the current eta), the random generator's state (the next
epoch's shuffle), the best parameters and counters of early stopping, and the history so far. Its metadata also
records the model, the fit's settings and a CRC-32 of the training and validation data, so that a resume with a
different network, different settings or different data is refused instead of silently continuing something
else.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from .atomic import atomic_write, check_target

__all__ = ["RunState", "check_checkpoint_options", "data_fingerprint", "peek", "write", "read"]

FORMAT_VERSION = 1
KIND = "fastbp checkpoint"
ARRAYS = ("params", "state", "hyper", "best_params")


class RunState:
    """Where a fit stands between epochs: epochs done, whether it has stopped for good, early-stopping
    bookkeeping (best validation accuracy, its parameters, epochs since) and the history."""

    def __init__(self, params, history):
        self.done = 0
        self.finished = False
        self.best_accuracy = -1.0
        self.best_params = params.copy()
        self.stale = 0
        self.history = history


def check_checkpoint_options(path, resume):
    """The ``checkpoint`` and ``resume`` arguments of a fit, checked before any training: the path (a str, or
    None for no checkpoints) of a file that can be written (``atomic.check_target``), and resume a bool that
    needs a path."""
    if not isinstance(resume, bool):
        raise TypeError(f"resume must be True or False; got {type(resume).__name__}.")
    if path is None:
        if resume:
            raise ValueError("resume=True needs checkpoint (the file to resume from); got checkpoint=None.")
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a str or os.PathLike; got {type(path).__name__}.")
    check_target(os.fspath(path), "checkpoint")
    return os.fspath(path)


def data_fingerprint(*arrays):
    """CRC-32 and shapes of C-contiguous arrays: cheap (~1 GB/s) and enough to tell data sets apart."""
    crc = 0
    for arr in arrays:
        crc = zlib.crc32(memoryview(arr).cast("B"), crc)
    return {"crc32": crc, "shapes": [list(a.shape) for a in arrays]}


def write(path, trainer, run, settings):
    """Write the checkpoint of ``trainer`` (model, optimizer state, generator) and ``run`` to ``path``."""
    model = trainer.model
    meta = {"kind": KIND, "format_version": FORMAT_VERSION, "model": _model_fields(model), "settings": settings,
            "done": run.done, "finished": run.finished, "best_accuracy": run.best_accuracy, "stale": run.stale,
            "history": run.history, "rng": model.rng.bit_generator.state}
    arrays = {"metadata": np.array(json.dumps(meta)), "params": model.params, "state": trainer.state,
              "hyper": trainer.hyper, "best_params": run.best_params}
    atomic_write(os.fspath(path), lambda fh: np.savez(fh, **arrays), what="checkpoint")


def read(path, trainer, settings):
    """Check the checkpoint at ``path`` against ``trainer``'s model and this fit's ``settings``; return
    ``(run, apply)`` where ``apply()`` moves its state into the trainer. Nothing is changed before ``apply``:
    a refused checkpoint leaves the model as it was."""
    path = os.fspath(path)
    meta, arrays = _load(path)
    model = trainer.model
    if meta["model"] != _model_fields(model):
        _fail(path, f"was written for the model {meta['model']}; this model is {_model_fields(model)}. Resume "
                    "with the same network, or write checkpoints to another path.")
    settings = json.loads(json.dumps(settings))  # as the file holds them: lists, not tuples
    for key in sorted(set(settings) | set(meta["settings"])):
        theirs, ours = meta["settings"].get(key), settings.get(key)
        if theirs != ours:
            _fail(path, f"was written by a fit with {key}={theirs!r}; this fit has {key}={ours!r}. Resume with "
                        "the same data and settings, or write checkpoints to another path.")
    expected = {"params": model.params.shape, "best_params": model.params.shape,
                "state": trainer.state.shape, "hyper": trainer.hyper.shape}
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != (trainer.hyper.dtype if name == "hyper" else model.dtype):
            _fail(path, f"array '{name}' must be {shape} of {model.dtype if name != 'hyper' else 'float64'}; got "
                        f"{arr.shape} of {arr.dtype}.")
    if not all(np.isfinite(arrays[name]).all() for name in expected):
        _fail(path, "arrays must hold finite values; got NaN or infinity.")
    run = RunState(arrays["best_params"], meta["history"])
    run.done, run.finished, run.stale = meta["done"], meta["finished"], meta["stale"]
    run.best_accuracy = meta["best_accuracy"]
    generator = type(model.rng.bit_generator)()
    try:
        generator.state = meta["rng"]
    except (TypeError, ValueError, KeyError) as exc:
        _fail(path, f"field 'rng' must be a {type(generator).__name__} state; got {exc}.")

    def apply():
        model.params[...] = arrays["params"]
        trainer.state[...] = arrays["state"]
        trainer.hyper[...] = arrays["hyper"]
        model.rng.bit_generator.state = generator.state

    return run, apply


def peek(path):
    """The metadata of the checkpoint at ``path`` (checked for its kind and version), e.g. its ``history``."""
    return _load(os.fspath(path))[0]


def _model_fields(model):
    return {"sizes": list(model.sizes), "activations": list(model.activation_names), "cost": model.cost_name,
            "dtype": model.dtype.name}


def _fail(path, message):
    raise ValueError(f"checkpoint {path} {message}")


def _load(path):
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            _fail(path, "must be an .npz archive (a zip file); got other bytes.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, NotImplementedError, ValueError) as exc:
        _fail(path, f"must be a readable .npz archive without pickled objects; got {exc}")
    meta = None
    if "metadata" in arrays:
        try:
            meta = json.loads(str(arrays.pop("metadata")))
        except json.JSONDecodeError as exc:
            _fail(path, f"metadata must be JSON; got a parse error ({exc}).")
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        _fail(path, "must be a fastbp checkpoint (metadata kind 'fastbp checkpoint'); got another file. A model "
                    "file (fastbp.save) is read with fastbp.load.")
    missing = sorted(set(ARRAYS) - set(arrays))
    if missing:
        _fail(path, f"must hold the arrays {', '.join(ARRAYS)}; got no {', '.join(missing)}.")
    if meta.get("format_version") != FORMAT_VERSION:
        _fail(path, f"format_version must be {FORMAT_VERSION}; got {meta.get('format_version')!r}.")
    kinds = {"model": dict, "settings": dict, "done": int, "finished": bool, "best_accuracy": (int, float),
             "stale": int, "history": dict, "rng": dict}
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind) or (kind is int and isinstance(meta[key], bool)):
            _fail(path, f"metadata field '{key}' must be {getattr(kind, '__name__', 'a number')}; got "
                        f"{meta.get(key)!r:.60}.")
        if kind is int and meta[key] < 0:
            _fail(path, f"metadata field '{key}' must be >= 0; got {meta[key]}.")
    history = meta["history"]
    if "epoch" not in history or not all(isinstance(v, list) for v in history.values()):
        _fail(path, f"metadata field 'history' must map names (epoch, ...) to per-epoch lists; got "
                    f"{history!r:.60}.")
    return meta, arrays
