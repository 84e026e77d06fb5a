"""Data loading: IDX files (MNIST layout), Fashion-MNIST, scikit-learn digits
and the book's ``mnist.pkl.gz``.

Every loader returns a :class:`Dataset` whose inputs are ``(n, n_in)`` float
arrays scaled to [0, 1] and whose labels are ``(n,)`` int64 arrays. Sources that
store integers (IDX images, digits) can instead keep them as they are, one byte
per input, as :class:`~fastbp.ScaledInputs` (``compact=True``).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import aligned
from .inputs import ScaledInputs

__all__ = [
    "FASHION_MNIST_DIR",
    "Dataset",
    "fashion_mnist_available",
    "fashion_mnist_dir",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_dir",
    "load_mnist_pkl",
    "one_hot",
    "read_idx",
    "read_mnist_pkl",
    "write_idx",
]

#: Where the Debian package ``dataset-fashion-mnist`` installs the IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "FASTBP_FASHION_MNIST"

_GZIP_MAGIC = b"\x1f\x8b"
# IDX data are streamed in blocks of this many bytes.
_IDX_BLOCK_BYTES = 1 << 20

# IDX type code -> big-endian dtype, as stored on disk.
_IDX_CODE_TO_DTYPE = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_DTYPE_TO_CODE = {dt.newbyteorder("="): code for code, dt in _IDX_CODE_TO_DTYPE.items()}

# The four files of the MNIST / Fashion-MNIST layout, each optionally gzipped.
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_DATASET_SPECS = ("default", "fashion-mnist", "digits")


# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------

def _read_bytes(path: str, what: str) -> bytes:
    """Whole file content, gunzipped when it is a gzip stream."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if path.endswith(".gz") or raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _gzip_error(what, path, exc) from None
    return raw


def _gzip_error(what: str, path: str, exc: Exception) -> ValueError:
    return ValueError(f"{what} {path} must be a valid gzip stream; got a corrupt or truncated one ({exc}).")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian array.

    Returns an array of shape ``dims`` from the header, e.g. ``(n, 28, 28)``
    uint8 for MNIST images or ``(n,)`` uint8 for labels.
    """
    return _read_idx_into(path, lambda dtype, dims: np.empty(dims, dtype.newbyteorder("=")))


def _read_idx_into(path, allocate) -> np.ndarray:
    """Check an IDX file's header and stream its data into ``allocate(file dtype, dims)``.

    The destination (any C-contiguous array of ``prod(dims)`` elements) receives the values in file order,
    cast by NumPy, a block of about 1 MiB at a time: neither the file nor its decompressed bytes are ever held
    whole in memory, so a 47 MB image file becomes a float array with no larger temporary.
    """
    path = os.fspath(path)
    with open(path, "rb") as raw:
        gzipped = path.endswith(".gz") or raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            dtype, dims = _idx_header(path, stream)
            out = allocate(dtype, dims)
            _stream_values(path, stream, dtype, dims, out.reshape(-1))
        except (OSError, EOFError, zlib.error) as exc:
            raise _gzip_error("IDX file", path, exc) from None
    return out


def _idx_header(path: str, stream):
    """(big-endian dtype, dims) from the header at the start of ``stream``."""
    head = stream.read(4)
    if len(head) < 4:
        raise ValueError(
            f"IDX file {path} must start with a 4-byte header; got {len(head)} bytes."
        )
    if head[0:2] != b"\x00\x00":
        raise ValueError(
            f"IDX file {path} must start with magic bytes 00 00; got {head[0:2].hex(' ')}."
        )
    code, ndim = head[2], head[3]
    if code not in _IDX_CODE_TO_DTYPE:
        valid = ", ".join(f"0x{c:02X}" for c in _IDX_CODE_TO_DTYPE)
        raise ValueError(
            f"IDX file {path} must have a type code in ({valid}); got 0x{code:02X}."
        )
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise ValueError(
            f"IDX file {path} must have a {4 + 4 * ndim}-byte header for {ndim} "
            f"dimensions; got {4 + len(sizes)} bytes (truncated)."
        )
    return _IDX_CODE_TO_DTYPE[code], struct.unpack(f">{ndim}I", sizes)


def _stream_values(path: str, stream, dtype: np.dtype, dims, flat: np.ndarray) -> None:
    """Fill ``flat`` (prod(dims),) from ``stream`` and check that exactly that many values follow."""
    expected = flat.size * dtype.itemsize
    buffer = bytearray(max(dtype.itemsize, min(expected, _IDX_BLOCK_BYTES)))
    found = 0
    while found < expected:
        got = _read_fully(stream, memoryview(buffer)[:min(len(buffer), expected - found)])
        whole = got - got % dtype.itemsize
        first = found // dtype.itemsize
        flat[first:first + whole // dtype.itemsize] = np.frombuffer(buffer, dtype, whole // dtype.itemsize)
        found += got
        if got < len(buffer) and found < expected:
            break
    extra = stream.read(_IDX_BLOCK_BYTES) if found == expected else b""
    while extra:
        found += len(extra)
        extra = stream.read(_IDX_BLOCK_BYTES)
    if found != expected:
        problem = "truncated" if found < expected else "trailing data"
        raise ValueError(
            f"IDX file {path} must hold {expected} data bytes for shape {tuple(dims)} "
            f"of {dtype.newbyteorder('=').name}; got {found} ({problem})."
        )


def _read_fully(stream, view: memoryview) -> int:
    """Read into ``view`` until it is full or the stream ends; the number of bytes read."""
    done = 0
    while done < len(view):
        got = stream.readinto(view[done:])
        if not got:
            break
        done += got
    return done


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64; at least
    one and at most 255 dimensions, each below 2**32.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_DTYPE_TO_CODE:
        raise TypeError(
            "array dtype must be one of uint8, int8, int16, int32, float32, "
            f"float64; got {arr.dtype}."
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions; got {arr.ndim}.")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"array dimensions must be below 2**32; got {arr.shape}.")
    header = struct.pack(f">BBBB{arr.ndim}I", 0, 0, _IDX_DTYPE_TO_CODE[native],
                         arr.ndim, *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=native.newbyteorder(">")).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(header)
        fh.write(payload)


# --------------------------------------------------------------------------
# Dataset container and helpers
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/test (and optional validation) split of a classification dataset.

    ``X_*`` are ``(n, n_in)`` float arrays scaled to [0, 1]; ``y_*`` are
    ``(n,)`` int64 labels in ``range(n_classes)``.  ``X_val``/``y_val`` are
    None when the source has no validation split.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __post_init__(self):
        if (self.X_val is None) != (self.y_val is None):
            raise ValueError(
                "X_val and y_val must be both given or both None; got "
                f"X_val={'None' if self.X_val is None else 'array'}, "
                f"y_val={'None' if self.y_val is None else 'array'}."
            )
        n_in = None
        for split, X, y in self._splits():
            if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
                raise ValueError(
                    f"X_{split} must be (n, n_in) and y_{split} (n,); got "
                    f"{X.shape} and {y.shape}."
                )
            if n_in is not None and X.shape[1] != n_in:
                raise ValueError(
                    f"X_{split} must have {n_in} columns like X_train; got {X.shape[1]}."
                )
            n_in = X.shape[1]

    def _splits(self):
        yield "train", self.X_train, self.y_train
        if self.X_val is not None:
            yield "val", self.X_val, self.y_val
        yield "test", self.X_test, self.y_test

    @property
    def n_features(self) -> int:
        """Number of inputs per example (``n_in``)."""
        return self.X_train.shape[1]

    def describe(self) -> str:
        """Multi-line summary: name, classes and the shape of every split."""
        lines = [f"{self.name}: {self.n_features} features, {self.n_classes} classes"]
        for split, X, y in self._splits():
            lines.append(f"  {split:<5} X {X.shape} {X.dtype}, y {y.shape} {y.dtype}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"train={self.X_train.shape}"]
        if self.X_val is not None:
            parts.append(f"val={self.X_val.shape}")
        parts += [f"test={self.X_test.shape}", f"n_classes={self.n_classes}",
                  f"dtype={self.X_train.dtype}"]
        return f"Dataset({', '.join(parts)})"


def _float_dtype(dtype) -> np.dtype:
    # np.dtype(None) means float64; here None is refused as ambiguous.
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}.")
    return dt


def _labels(y, what: str) -> np.ndarray:
    """Validated int64 copy of a 1-D array of non-negative integer labels."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"{what} must be a 1-D integer array; got shape {y.shape} "
                         f"of {y.dtype}.")
    if y.size and y.min() < 0:
        raise ValueError(f"{what} must be non-negative; got minimum {y.min()}.")
    return y.astype(np.int64)


def _n_classes(*ys: np.ndarray) -> int:
    return int(max((y.max() for y in ys if y.size), default=-1)) + 1


def one_hot(labels, n_classes: int, dtype="float64") -> np.ndarray:
    """``(n,)`` integer labels -> ``(n, n_classes)`` one-hot matrix."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int; got {type(n_classes).__name__}.")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1; got {n_classes}.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array; got shape "
                         f"{labels.shape} of {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}); got values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    out = np.zeros((labels.size, n_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out


# --------------------------------------------------------------------------
# IDX directories and Fashion-MNIST
# --------------------------------------------------------------------------

def _find_idx_files(directory: str) -> tuple[dict[str, str], list[str]]:
    """Map role -> existing path, plus the base names not found."""
    found, missing = {}, []
    for role, base in _IDX_FILES.items():
        for candidate in (base, base + ".gz"):
            full = os.path.join(directory, candidate)
            if os.path.isfile(full):
                found[role] = full
                break
        else:
            missing.append(base)
    return found, missing


def _idx_images(path: str, dt: np.dtype, compact: bool):
    """IDX uint8 images ``(n, rows, cols)`` -> C-contiguous ``(n, rows*cols)`` of ``dt`` in [0, 1], or with
    ``compact`` the pixels themselves as ScaledInputs (scale 1/255)."""
    def allocate(dtype, dims):
        if dtype != np.uint8 or len(dims) < 2:
            raise ValueError(
                f"IDX images {path} must be uint8 with shape (n, rows, cols); got "
                f"{tuple(dims)} of {dtype.newbyteorder('=')}."
            )
        return aligned.empty((dims[0], int(np.prod(dims[1:], dtype=np.int64))), np.uint8 if compact else dt)

    X = _read_idx_into(path, allocate)
    if compact:
        return ScaledInputs(X, 1 / 255)
    X /= dt.type(255)
    return X


def load_idx_dir(directory, *, dtype="float64", name=None, compact=False) -> Dataset:
    """Load the four MNIST-layout IDX files (raw or ``.gz``) from a directory.

    Images become ``(n, rows*cols)`` arrays of ``dtype`` divided by 255 (with
    ``compact``: the uint8 pixels as ScaledInputs with scale 1/255); labels
    int64; ``n_classes`` is the largest label + 1.
    """
    directory = os.fspath(directory)
    dt = _float_dtype(dtype)
    found, missing = _find_idx_files(directory)
    if missing:
        where = directory if os.path.isdir(directory) else f"{directory} (no such directory)"
        raise FileNotFoundError(
            f"IDX file(s) {', '.join(missing)} (raw or .gz) not found in {where}."
        )
    splits = {}
    for split in ("train", "test"):
        images = _idx_images(found[f"{split}_images"], dt, compact)
        labels = _labels(read_idx(found[f"{split}_labels"]),
                         f"IDX labels {found[f'{split}_labels']}")
        if len(images) != len(labels):
            raise ValueError(
                f"{split} images and labels must have the same count; got "
                f"{len(images)} images and {len(labels)} labels in {directory}."
            )
        splits[split] = (images, labels)
    (X_train, y_train), (X_test, y_test) = splits["train"], splits["test"]
    if name is None:
        name = os.path.basename(os.path.normpath(directory)) or directory
    return Dataset(name=name, X_train=X_train, y_train=y_train, X_test=X_test,
                   y_test=y_test, n_classes=_n_classes(y_train, y_test))


def fashion_mnist_dir() -> str:
    """Fashion-MNIST directory: ``$FASTBP_FASHION_MNIST`` or :data:`FASHION_MNIST_DIR`."""
    return os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR


def fashion_mnist_available() -> bool:
    """True when all four Fashion-MNIST IDX files are present."""
    return not _find_idx_files(fashion_mnist_dir())[1]


def load_fashion_mnist(directory=None, *, dtype="float64", compact=False) -> Dataset:
    """Fashion-MNIST: 60000 train and 10000 test images of 784 pixels, 10 classes (``compact``: see
    :func:`load_idx_dir`)."""
    directory = fashion_mnist_dir() if directory is None else os.fspath(directory)
    missing = _find_idx_files(directory)[1]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST file(s) {', '.join(missing)} (raw or .gz) not found "
            f"in {directory}. Install the Debian package dataset-fashion-mnist, "
            f"or set {FASHION_MNIST_ENV} to a directory holding the IDX files."
        )
    return load_idx_dir(directory, dtype=dtype, name="fashion-mnist", compact=compact)


# --------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------

def load_digits(*, dtype="float64", test_size: int = 297, compact=False) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1797 images of 64 pixels, 10 classes.

    Pixels (0..16) are divided by 16 (``compact``: kept as uint8 ScaledInputs
    with scale 1/16); the last ``test_size`` rows are the test set.
    """
    dt = _float_dtype(dtype)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer)):
        raise TypeError(f"test_size must be an int; got {type(test_size).__name__}.")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    if compact:
        X = ScaledInputs(bunch.data.astype(np.uint8), 1 / 16)
    else:
        X = aligned.empty(bunch.data.shape, dt)
        np.divide(bunch.data, 16, out=X, casting="unsafe")  # whole numbers 0..16: exact in either dtype
    y = bunch.target.astype(np.int64)
    n = len(X)
    if not 1 <= test_size < n:
        raise ValueError(f"test_size must be in [1, {n - 1}]; got {test_size}.")
    cut = n - test_size
    return Dataset(name="digits", X_train=X[:cut], y_train=y[:cut].copy(),
                   X_test=X[cut:], y_test=y[cut:].copy(), n_classes=10)


# --------------------------------------------------------------------------
# The book's mnist.pkl.gz, unpickled without running arbitrary code
# --------------------------------------------------------------------------

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray


class _RefusedPickle(pickle.UnpicklingError, ValueError):
    """A pickle asked for something beyond rebuilding numpy arrays (a ValueError too: bad input data)."""


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, "latin1");
    # anything beyond that exact use is refused.
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise _RefusedPickle(
            f"_codecs.encode may only be used to rebuild latin1 bytes; got "
            f"encoding {encoding!r} on {type(obj).__name__}."
        )
    return obj.encode("latin1", errors)


_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays (no arbitrary globals)."""

    def find_class(self, module, name):
        try:
            return _PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedPickle(
                f"global {module}.{name} is refused: only numpy arrays may be "
                f"unpickled from an MNIST pickle."
            ) from None


def read_mnist_pkl(path):
    """Read the book's ``mnist.pkl.gz`` (or an uncompressed ``.pkl``).

    Returns ``(training, validation, test)``, each ``(images (n, n_in),
    labels (n,))`` as stored in the file.  Raises ``pickle.UnpicklingError``
    if the pickle references anything other than numpy arrays.
    """
    path = os.fspath(path)
    data = _read_bytes(path, "MNIST pickle")
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _RefusedPickle as exc:
        raise _RefusedPickle(f"MNIST pickle {path} is refused: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as exc:
        raise ValueError(
            f"MNIST pickle {path} must be a valid pickle; got a corrupt one "
            f"({type(exc).__name__}: {exc})."
        ) from None
    return _check_mnist_structure(obj, path)


def _describe(obj) -> str:
    if isinstance(obj, np.ndarray):
        return f"array {obj.shape} of {obj.dtype}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__} of length {len(obj)}"
    return type(obj).__name__


def _check_mnist_structure(obj, path):
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ValueError(
            f"MNIST pickle {path} must hold a tuple (training, validation, test); "
            f"got {_describe(obj)}."
        )
    n_in = None
    out = []
    for split, pair in zip(("training", "validation", "test"), obj):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                f"MNIST pickle {path}: {split} data must be a pair (images, labels); "
                f"got {_describe(pair)}."
            )
        images, labels = pair
        if (not isinstance(images, np.ndarray) or images.ndim != 2
                or images.dtype.kind not in "fiu"):
            raise ValueError(
                f"MNIST pickle {path}: {split} images must be a 2-D numeric "
                f"array; got {_describe(images)}."
            )
        if (not isinstance(labels, np.ndarray) or labels.ndim != 1
                or labels.dtype.kind not in "iu"):
            raise ValueError(
                f"MNIST pickle {path}: {split} labels must be a 1-D integer "
                f"array; got {_describe(labels)}."
            )
        if len(images) != len(labels):
            raise ValueError(
                f"MNIST pickle {path}: {split} images and labels must have the "
                f"same length; got {len(images)} and {len(labels)}."
            )
        if n_in is not None and images.shape[1] != n_in:
            raise ValueError(
                f"MNIST pickle {path}: {split} images must have {n_in} columns "
                f"like the training images; got {images.shape[1]}."
            )
        n_in = images.shape[1]
        out.append((images, labels))
    return tuple(out)


def load_mnist_pkl(path, *, dtype="float64") -> Dataset:
    """Load the book's ``mnist.pkl.gz`` with train, validation and test splits.

    Images are kept as stored (already in [0, 1]), cast to ``dtype``.
    """
    path = os.fspath(path)
    dt = _float_dtype(dtype)
    splits = []
    for split, (images, labels) in zip(("training", "validation", "test"),
                                       read_mnist_pkl(path)):
        X = aligned.ascontiguous(images, dt)
        if X.size and not (X.min() >= 0 and X.max() <= 1):
            raise ValueError(
                f"MNIST pickle {path}: {split} images must be scaled to [0, 1]; "
                f"got values in [{X.min()}, {X.max()}]."
            )
        splits.append((X, _labels(labels, f"MNIST pickle {path}: {split} labels")))
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = splits
    return Dataset(name="mnist", X_train=X_tr, y_train=y_tr, X_test=X_te,
                   y_test=y_te, n_classes=_n_classes(y_tr, y_va, y_te),
                   X_val=X_va, y_val=y_va)


# --------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------

def load_dataset(spec="default", *, dtype="float64", compact=False) -> Dataset:
    """Load a dataset by name or path.

    ``spec`` is ``"default"`` (Fashion-MNIST when installed, else digits),
    ``"fashion-mnist"``, ``"digits"``, a directory of IDX files, or a
    ``.pkl``/``.pkl.gz`` file in the book's format. ``compact=True`` keeps the
    inputs of the sources that store integers (all but the pickle, which holds
    floats) as uint8 ScaledInputs.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"spec must be a str or path; got {type(spec).__name__}.")
    spec = os.fspath(spec)
    if spec == "default":
        return load_fashion_mnist(dtype=dtype, compact=compact) if fashion_mnist_available() \
            else load_digits(dtype=dtype, compact=compact)
    if spec == "fashion-mnist":
        return load_fashion_mnist(dtype=dtype, compact=compact)
    if spec == "digits":
        return load_digits(dtype=dtype, compact=compact)
    if os.path.isdir(spec):
        return load_idx_dir(spec, dtype=dtype, compact=compact)
    if spec.endswith((".pkl", ".pkl.gz")):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"MNIST pickle {spec} must exist; got no such file.")
        return load_mnist_pkl(spec, dtype=dtype)
    choices = ", ".join(repr(s) for s in _DATASET_SPECS)
    raise ValueError(
        f"spec must be one of {choices}, a directory of IDX files or a "
        f".pkl/.pkl.gz file; got {spec!r}."
    )
