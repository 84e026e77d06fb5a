"""Tests for fastbp.datasets: IDX files, dataset loaders and the safe unpickler."""

import gzip
import os
import pickle
import re
import struct

import numpy as np
import pytest

from fastbp import ScaledInputs, datasets
from fastbp.datasets import (
    Dataset,
    fashion_mnist_available,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_idx_dir,
    load_mnist_pkl,
    one_hot,
    read_idx,
    read_mnist_pkl,
    write_idx,
)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# (numpy dtype, IDX type code, struct format char) per supported type.
IDX_TYPES = [
    (np.uint8, 0x08, "B"),
    (np.int8, 0x09, "b"),
    (np.int16, 0x0B, "h"),
    (np.int32, 0x0C, "i"),
    (np.float32, 0x0D, "f"),
    (np.float64, 0x0E, "d"),
]


def idx_bytes(code, dims, values, fmt):
    """IDX file content built by hand: magic, type code, dims, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, code, len(dims))
    header += struct.pack(f">{len(dims)}I", *dims)
    return header + struct.pack(f">{len(values)}{fmt}", *values)


def write_bytes(path, content, gz=False):
    with (gzip.open if gz else open)(path, "wb") as fh:
        fh.write(content)
    return path


@pytest.fixture
def tiny_idx_dir(tmp_path):
    """12 train and 5 test 28x28 uint8 images; train labels cover 0..9."""
    rng = np.random.default_rng(0)
    data = {
        "train_images": rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 7], dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "test_labels": np.array([4, 0, 9, 9, 1], dtype=np.uint8),
    }
    data["train_images"][0, 0, 0] = 255
    data["train_images"][0, 0, 1] = 0
    # Mix raw and gzipped files: both must be found.
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", data["train_images"])
    write_idx(tmp_path / "train-labels-idx1-ubyte", data["train_labels"])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", data["test_images"])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", data["test_labels"])
    return tmp_path, data


def write_pkl(path, splits, protocol=2):
    payload = pickle.dumps(tuple(splits), protocol=protocol)
    return write_bytes(path, payload, gz=str(path).endswith(".gz"))


@pytest.fixture
def tiny_splits():
    rng = np.random.default_rng(1)
    return tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))
        for n in (7, 3, 4)
    )


# --------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, code, fmt", IDX_TYPES)
def test_read_idx_parses_hand_built_bytes(tmp_path, dtype, code, fmt):
    values = [0, 1, 2, 3, 4, 5, 100, 7, 8, 9, 10, 11]
    if np.dtype(dtype).kind != "u":
        values[1] = -1
    if np.dtype(dtype).kind == "f":
        values[2] = 2.5
    path = write_bytes(tmp_path / "x.idx", idx_bytes(code, (2, 3, 2), values, fmt))
    arr = read_idx(path)
    assert arr.shape == (2, 3, 2)
    assert arr.dtype == np.dtype(dtype)
    assert arr.dtype.isnative
    assert arr.ravel().tolist() == values


@pytest.mark.parametrize("dtype, code, fmt", IDX_TYPES)
def test_write_idx_produces_hand_built_bytes(tmp_path, dtype, code, fmt):
    values = [3, 1, 4, 1, 5, 9]
    write_idx(tmp_path / "x.idx", np.array(values, dtype=dtype).reshape(3, 2))
    assert (tmp_path / "x.idx").read_bytes() == idx_bytes(code, (3, 2), values, fmt)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [t[0] for t in IDX_TYPES])
def test_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(2)
    if np.dtype(dtype).kind == "f":
        arr = rng.standard_normal((4, 5, 3)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=(4, 5, 3), endpoint=True, dtype=dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    original = arr.copy()
    write_idx(path, arr)
    np.testing.assert_array_equal(arr, original)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    out = read_idx(path)
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("block_bytes", [1, 3, 7, 64])
def test_read_idx_streams_in_blocks_of_any_size(tmp_path, monkeypatch, gz, block_bytes):
    # Blocks smaller than, or not a multiple of, one value must still give every value once, in order.
    monkeypatch.setattr(datasets, "_IDX_BLOCK_BYTES", block_bytes)
    arr = np.random.default_rng(3).standard_normal((7, 5)).astype(np.float64)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path), arr)
    write_bytes(path, path.read_bytes()[:-3] if not gz else gzip.decompress(path.read_bytes())[:-3], gz=gz)
    with pytest.raises(ValueError, match=r"must hold 280 data bytes .*; got 277 \(truncated\)"):
        read_idx(path)


def test_read_idx_detects_gzip_without_suffix(tmp_path):
    content = idx_bytes(0x08, (4,), [9, 8, 7, 6], "B")
    path = write_bytes(tmp_path / "labels-idx1-ubyte", content, gz=True)
    assert read_idx(path).tolist() == [9, 8, 7, 6]


def test_write_idx_accepts_big_endian_and_noncontiguous_input(tmp_path):
    arr = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    write_idx(tmp_path / "a.idx", arr)
    assert read_idx(tmp_path / "a.idx").tolist() == [[0, 2], [4, 6], [8, 10]]


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=bool), np.zeros(3, dtype=np.int64),
                                 np.zeros(3, dtype=np.complex128)])
def test_write_idx_rejects_unsupported_dtype(tmp_path, bad):
    with pytest.raises(TypeError, match="dtype must be one of"):
        write_idx(tmp_path / "a.idx", bad)


def test_write_idx_rejects_zero_dimensional(tmp_path):
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "a.idx", np.uint8(3))


GOOD = idx_bytes(0x08, (2, 3), [1, 2, 3, 4, 5, 6], "B")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("content, pattern", [
    (b"\x01\x00" + GOOD[2:], r"magic bytes 00 00; got 01 00"),
    (GOOD[:2] + b"\x0a" + GOOD[3:], r"type code in .*; got 0x0A"),
    (GOOD[:-1], r"must hold 6 data bytes .*; got 5 \(truncated\)"),
    (GOOD + b"\x00", r"must hold 6 data bytes .*; got 7 \(trailing data\)"),
    (GOOD[:10], r"12-byte header for 2 dimensions; got 10 bytes"),
    (b"\x00\x00", r"4-byte header; got 2 bytes"),
])
def test_read_idx_rejects_malformed(tmp_path, content, pattern, gz):
    path = write_bytes(tmp_path / ("bad.gz" if gz else "bad"), content, gz=gz)
    with pytest.raises(ValueError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    good = gzip.compress(GOOD)
    path = write_bytes(tmp_path / "bad.gz", good[: len(good) // 2])
    with pytest.raises(ValueError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------
# IDX directories
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32])
def test_load_idx_dir(tiny_idx_dir, dtype):
    directory, data = tiny_idx_dir
    ds = load_idx_dir(directory, dtype=dtype)
    assert isinstance(ds, Dataset)
    assert ds.name == directory.name
    assert ds.n_classes == 10
    assert ds.X_val is None and ds.y_val is None
    for split in ("train", "test"):
        X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
        images = data[f"{split}_images"]
        assert X.shape == (len(images), 784)
        assert X.dtype == np.dtype(dtype)
        assert X.flags.c_contiguous
        expected = images.reshape(len(images), -1).astype(np.float64) / 255.0
        np.testing.assert_allclose(X, expected, rtol=1e-6)
        assert y.dtype == np.int64
        assert y.tolist() == data[f"{split}_labels"].tolist()
    assert ds.X_train[0, 0] == 1.0 and ds.X_train[0, 1] == 0.0
    assert ds.X_train.min() >= 0.0 and ds.X_train.max() <= 1.0


def test_load_idx_dir_compact_keeps_the_pixels(tiny_idx_dir):
    directory, data = tiny_idx_dir
    compact, floats = load_idx_dir(directory, compact=True), load_idx_dir(directory)
    for split in ("train", "test"):
        X = getattr(compact, f"X_{split}")
        assert isinstance(X, ScaledInputs) and X.scale == 1 / 255
        images = data[f"{split}_images"]
        np.testing.assert_array_equal(X.values, images.reshape(len(images), -1))
        np.testing.assert_allclose(np.asarray(X), getattr(floats, f"X_{split}"), rtol=1e-15, atol=0)
        np.testing.assert_array_equal(getattr(compact, f"y_{split}"), getattr(floats, f"y_{split}"))
    assert "uint8" in compact.describe()


def test_load_idx_dir_name_and_repr(tiny_idx_dir):
    ds = load_idx_dir(tiny_idx_dir[0], name="tiny")
    assert ds.name == "tiny"
    assert "tiny" in repr(ds) and "(12, 784)" in repr(ds) and "(5, 784)" in repr(ds)
    text = ds.describe()
    assert "tiny" in text and "(12, 784)" in text and "(5,)" in text


@pytest.mark.parametrize("dtype", ["int32", "float16", "banana", None])
def test_load_idx_dir_rejects_dtype(tiny_idx_dir, dtype):
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        load_idx_dir(tiny_idx_dir[0], dtype=dtype)


def test_load_idx_dir_missing_file(tiny_idx_dir):
    directory, _ = tiny_idx_dir
    os.remove(directory / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load_idx_dir(directory)
    assert str(directory) in str(info.value)
    assert "train-images" not in str(info.value)


def test_load_idx_dir_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_idx_dir(tmp_path / "absent")


def test_load_idx_dir_count_mismatch(tiny_idx_dir):
    directory, data = tiny_idx_dir
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", data["test_labels"][:4])
    with pytest.raises(ValueError, match="5 images and 4 labels"):
        load_idx_dir(directory)


@pytest.mark.parametrize("cut", ["truncated", "corrupt gzip"])
def test_load_idx_dir_rejects_damaged_images(tiny_idx_dir, cut):
    directory, data = tiny_idx_dir
    path = directory / "train-images-idx3-ubyte.gz"
    content = path.read_bytes()
    if cut == "truncated":
        write_bytes(path, gzip.decompress(content)[:-1], gz=True)
        pattern = r"must hold 9408 data bytes .*got 9407 \(truncated\)"
    else:
        write_bytes(path, content[:len(content) // 2])
        pattern = "must be a valid gzip stream"
    with pytest.raises(ValueError, match=pattern) as info:
        load_idx_dir(directory)
    assert str(path) in str(info.value)


def test_load_idx_dir_rejects_non_uint8_images(tiny_idx_dir):
    directory, data = tiny_idx_dir
    write_idx(directory / "t10k-images-idx3-ubyte",
              data["test_images"].astype(np.float32))
    with pytest.raises(ValueError, match="must be uint8"):
        load_idx_dir(directory)


# --------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------

@pytest.mark.skipif(not fashion_mnist_available(),
                    reason="Fashion-MNIST IDX files not installed "
                           "(Debian package dataset-fashion-mnist)")
def test_load_fashion_mnist_real_files():
    ds = load_fashion_mnist(dtype="float32")
    assert ds.name == "fashion-mnist"
    assert ds.X_train.shape == (60000, 784) and ds.y_train.shape == (60000,)
    assert ds.X_test.shape == (10000, 784) and ds.y_test.shape == (10000,)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.n_classes == 10
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    assert ds.X_test.min() >= 0.0 and ds.X_test.max() <= 1.0
    # Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


def test_fashion_mnist_env_override(tiny_idx_dir, monkeypatch):
    monkeypatch.setenv("FASTBP_FASHION_MNIST", str(tiny_idx_dir[0]))
    assert fashion_mnist_available()
    ds = load_fashion_mnist()
    assert ds.name == "fashion-mnist"
    assert ds.X_train.shape == (12, 784)
    assert load_dataset("fashion-mnist").X_test.shape == (5, 784)
    assert load_dataset("default").name == "fashion-mnist"


def test_fashion_mnist_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_FASHION_MNIST", str(tmp_path))
    assert not fashion_mnist_available()
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as info:
        load_fashion_mnist()
    assert "FASTBP_FASHION_MNIST" in str(info.value)
    assert str(tmp_path) in str(info.value)
    # The default falls back to the bundled digits.
    assert load_dataset().name == "digits"


def test_fashion_mnist_default_location():
    assert datasets.FASHION_MNIST_DIR == "/usr/share/datasets/fashion-mnist"


# --------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------

def test_load_digits_shapes_and_split():
    from sklearn.datasets import load_digits as sk_load_digits

    sk = sk_load_digits()
    ds = load_digits()
    assert ds.name == "digits" and ds.n_classes == 10
    assert ds.X_train.shape == (1500, 64) and ds.X_test.shape == (297, 64)
    assert ds.y_train.shape == (1500,) and ds.y_test.shape == (297,)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert ds.X_train.flags.c_contiguous and ds.X_test.flags.c_contiguous
    np.testing.assert_allclose(ds.X_test, sk.data[-297:] / 16.0)
    np.testing.assert_allclose(ds.X_train, sk.data[:1500] / 16.0)
    assert ds.y_test.tolist() == sk.target[-297:].tolist()
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0


def test_load_digits_compact():
    compact, floats = load_digits(compact=True), load_digits()
    assert isinstance(compact.X_train, ScaledInputs) and compact.X_train.scale == 1 / 16
    assert compact.X_train.values.max() == 16 and compact.X_train.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(compact.X_test), floats.X_test)
    assert len(compact.X_train) == len(floats.X_train)


def test_load_dataset_compact_leaves_float_sources_as_floats(tmp_path, tiny_splits):
    path = tmp_path / "mnist.pkl.gz"
    write_pkl(path, tiny_splits)
    assert isinstance(load_dataset(str(path), compact=True).X_train, np.ndarray)
    assert isinstance(load_dataset("digits", compact=True).X_train, ScaledInputs)


def test_load_digits_deterministic_and_options():
    a, b = load_digits(), load_digits()
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_digits(dtype="float32", test_size=500)
    assert c.X_train.shape == (1297, 64) and c.X_test.shape == (500, 64)
    assert c.X_train.dtype == np.float32
    np.testing.assert_allclose(c.X_test[-297:], a.X_test, rtol=1e-6)


@pytest.mark.parametrize("test_size, exc", [(0, ValueError), (1797, ValueError),
                                            (-5, ValueError), (2.5, TypeError)])
def test_load_digits_rejects_test_size(test_size, exc):
    with pytest.raises(exc, match="test_size must be"):
        load_digits(test_size=test_size)


# --------------------------------------------------------------------------
# mnist.pkl.gz
# --------------------------------------------------------------------------

def test_read_and_load_mnist_pkl(tmp_path, tiny_splits):
    path = write_pkl(tmp_path / "mnist.pkl.gz", tiny_splits)
    raw = read_mnist_pkl(path)
    assert len(raw) == 3
    for (images, labels), (ei, el) in zip(raw, tiny_splits):
        np.testing.assert_array_equal(images, ei)
        np.testing.assert_array_equal(labels, el)

    ds = load_mnist_pkl(path)
    assert ds.name == "mnist"
    assert ds.X_train.shape == (7, 784) and ds.X_val.shape == (3, 784)
    assert ds.X_test.shape == (4, 784)
    assert ds.X_train.dtype == np.float64 and ds.y_val.dtype == np.int64
    np.testing.assert_array_equal(ds.X_val, tiny_splits[1][0].astype(np.float64))
    np.testing.assert_array_equal(ds.y_test, tiny_splits[2][1])
    assert ds.n_classes == max(int(s[1].max()) for s in tiny_splits) + 1
    assert "val=(3, 784)" in repr(ds)
    assert load_mnist_pkl(path, dtype="float32").X_test.dtype == np.float32


def test_load_mnist_pkl_uncompressed_and_via_load_dataset(tmp_path, tiny_splits):
    path = write_pkl(tmp_path / "mnist.pkl", tiny_splits, protocol=4)
    ds = load_dataset(str(path))
    np.testing.assert_array_equal(ds.X_train, tiny_splits[0][0].astype(np.float64))
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "other.pkl.gz"))


def _py2_array(arr):
    """Pickle opcodes for ``arr`` as Python 2 / numpy 1 wrote them (protocol 2)."""
    code = {np.dtype(np.float32): b"f4", np.dtype(np.int64): b"i8"}[arr.dtype]
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in arr.shape) + b"t"
    dtype = (b"cnumpy\ndtype\nU\x02" + code + b"K\x00K\x01\x87R"
             b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    raw = (b"U" + bytes([len(data)]) + data if len(data) < 256
           else b"T" + struct.pack("<I", len(data)) + data)
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            b"K\x00\x85U\x01b\x87R(K\x01" + shape + dtype + b"\x89" + raw + b"tb")


def test_read_mnist_pkl_python2_layout(tmp_path, tiny_splits):
    body = b"".join(b"(" + _py2_array(x) + _py2_array(y) + b"t" for x, y in tiny_splits)
    path = write_bytes(tmp_path / "mnist.pkl.gz", b"\x80\x02(" + body + b"t.", gz=True)
    raw = read_mnist_pkl(path)
    for (images, labels), (ei, el) in zip(raw, tiny_splits):
        assert images.dtype == np.float32 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, ei)
        np.testing.assert_array_equal(labels, el)


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_pkl_refuses_os_system(tmp_path, tiny_splits, gz):
    marker = tmp_path / "pwned"
    evil = _Evil(os.system, f"touch {marker}")
    splits = ((tiny_splits[0][0], evil),) + tiny_splits[1:]
    path = write_pkl(tmp_path / ("evil.pkl.gz" if gz else "evil.pkl"), splits)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        read_mnist_pkl(path)
    with pytest.raises(ValueError, match=f"MNIST pickle {re.escape(str(path))} is refused: global .*system"):
        load_mnist_pkl(path)  # a ValueError too, naming the file: bad input data
    assert not marker.exists()


def test_mnist_pkl_refuses_eval(tmp_path):
    import builtins

    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()"
    path = write_pkl(tmp_path / "evil.pkl.gz", [_Evil(builtins.eval, code)] * 3)
    with pytest.raises(pickle.UnpicklingError, match="eval"):
        read_mnist_pkl(path)
    assert not marker.exists()


def test_mnist_pkl_refuses_codecs_beyond_latin1(tmp_path):
    import codecs

    class Rot:
        def __reduce__(self):
            return (codecs.encode, ("abc", "rot13"))

    path = write_pkl(tmp_path / "evil.pkl.gz", [Rot()] * 3)
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        read_mnist_pkl(path)


@pytest.mark.parametrize("obj, pattern", [
    ([1, 2, 3], "training data must be a pair"),
    ("abc", "must hold a tuple"),
    ((None, None), "got tuple of length 2"),
])
def test_mnist_pkl_structure_errors(tmp_path, obj, pattern):
    path = write_bytes(tmp_path / "bad.pkl.gz", pickle.dumps(obj, protocol=2), gz=True)
    with pytest.raises(ValueError, match=pattern) as info:
        read_mnist_pkl(path)
    assert str(path) in str(info.value)


def test_mnist_pkl_array_errors(tmp_path, tiny_splits):
    (x0, y0), val, test = tiny_splits
    cases = [
        (((x0, y0[:-1]), val, test), "same length; got 7 and 6"),
        (((x0, y0.astype(np.float64)), val, test), "training labels must be a 1-D integer"),
        (((x0[0], y0), val, test), "training images must be a 2-D"),
        (((x0, y0), (val[0][:, :10], val[1]), test), "784 columns"),
    ]
    for i, (obj, pattern) in enumerate(cases):
        path = write_pkl(tmp_path / f"bad{i}.pkl.gz", obj)
        with pytest.raises(ValueError, match=pattern):
            read_mnist_pkl(path)


def test_load_mnist_pkl_rejects_unscaled_images(tmp_path, tiny_splits):
    (x0, y0), val, test = tiny_splits
    path = write_pkl(tmp_path / "m.pkl.gz", ((x0 * 255, y0), val, test))
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        load_mnist_pkl(path)


def test_mnist_pkl_truncated(tmp_path, tiny_splits):
    payload = pickle.dumps(tiny_splits, protocol=2)
    path = write_bytes(tmp_path / "t.pkl.gz", payload[: len(payload) // 2], gz=True)
    with pytest.raises(ValueError, match="valid pickle"):
        read_mnist_pkl(path)


# --------------------------------------------------------------------------
# load_dataset, one_hot, Dataset
# --------------------------------------------------------------------------

def test_load_dataset_specs(tiny_idx_dir):
    assert load_dataset("digits").X_train.shape == (1500, 64)
    ds = load_dataset(tiny_idx_dir[0], dtype="float32")
    assert ds.X_train.shape == (12, 784) and ds.X_train.dtype == np.float32


@pytest.mark.parametrize("spec", ["mnist", "fashion", "no/such/dir"])
def test_load_dataset_unknown_spec(spec):
    with pytest.raises(ValueError, match="'default', 'fashion-mnist', 'digits'"):
        load_dataset(spec)


def test_load_dataset_rejects_non_string():
    with pytest.raises(TypeError, match="spec must be"):
        load_dataset(3)


def test_one_hot():
    labels = np.array([2, 0, 1, 2])
    out = one_hot(labels, 3, "float32")
    assert out.dtype == np.float32
    assert out.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert labels.tolist() == [2, 0, 1, 2]
    assert one_hot(np.array([], dtype=np.int64), 4, "float64").shape == (0, 4)


@pytest.mark.parametrize("labels, n, exc, pattern", [
    ([0, 3], 3, ValueError, r"in \[0, 3\); got values in \[0, 3\]"),
    ([-1, 0], 3, ValueError, r"in \[0, 3\)"),
    ([0.0, 1.0], 3, ValueError, "integer"),
    ([[0, 1]], 3, ValueError, "1-D"),
    ([0, 1], 0, ValueError, "n_classes must be >= 1"),
    ([0, 1], 2.0, TypeError, "n_classes must be an int"),
])
def test_one_hot_rejects(labels, n, exc, pattern):
    with pytest.raises(exc, match=pattern):
        one_hot(np.array(labels), n, "float64")


def test_dataset_validates_and_is_frozen():
    X, y = np.zeros((4, 3)), np.zeros(4, dtype=np.int64)
    ds = Dataset("t", X, y, X, y, 2)
    with pytest.raises(AttributeError):
        ds.name = "other"
    with pytest.raises(ValueError, match="X_test must be"):
        Dataset("t", X, y, X, y[:3], 2)
    with pytest.raises(ValueError, match="3 columns"):
        Dataset("t", X, y, np.zeros((4, 2)), y, 2)
    with pytest.raises(ValueError, match="both given or both None"):
        Dataset("t", X, y, X, y, 2, X_val=X)


# --------------------------------------------------------------------------
# Inputs that start a cache line, so that training uses them without a copy
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loaders_return_aligned_inputs(tiny_idx_dir, tmp_path, tiny_splits, dtype):
    from fastbp.aligned import is_aligned
    directory, _ = tiny_idx_dir
    sets = [load_idx_dir(directory, dtype=dtype), load_digits(dtype=dtype),
            load_mnist_pkl(write_pkl(tmp_path / "mnist.pkl.gz", tiny_splits), dtype=dtype)]
    for ds in sets:
        for X in (ds.X_train, ds.X_test):
            assert X.dtype == np.dtype(dtype) and X.flags.c_contiguous
            assert is_aligned(X), ds.name
    assert is_aligned(load_idx_dir(directory, compact=True).X_train.values)
