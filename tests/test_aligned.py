"""Cache-line-aligned arrays: the helpers, where fastbp uses them, and results that do not depend on them."""
import pickle

import numpy as np
import pytest

import fastbp
from fastbp import aligned
from fastbp._book import book_rows
from fastbp.model import Trainer


def shifted(arr, offset):
    """A copy of arr whose first element sits ``offset`` bytes past a cache line."""
    buffer = aligned.empty(arr.nbytes + aligned.ALIGNMENT, np.uint8)
    out = buffer[offset:offset + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    return out


@pytest.mark.parametrize("shape", [0, 5, (0, 3), (7, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "int64"])
def test_empty_and_zeros_start_a_cache_line(shape, dtype):
    expected_shape = (shape,) if isinstance(shape, int) else shape
    for out in (aligned.empty(shape, dtype), aligned.zeros(shape, dtype)):
        assert out.size == 0 or out.ctypes.data % 64 == 0
        assert out.shape == expected_shape and out.dtype == np.dtype(dtype)
        assert out.flags.c_contiguous and out.flags.writeable
    assert not aligned.zeros(shape, dtype).any()


def test_numpy_arrays_are_not_aligned_by_themselves():
    """Why the module exists: NumPy's large arrays start mid-line (16 bytes in, with glibc's allocator)."""
    starts = {np.empty(100_000).ctypes.data % 64 for _ in range(5)}
    if starts == {0}:
        pytest.skip("this allocator happens to align large arrays to 64 bytes")
    assert starts - {0}


@pytest.mark.parametrize("offset", [8, 16, 32, 48])
def test_ascontiguous_copies_what_starts_mid_line(rng, offset):
    given = shifted(rng.random((6, 8)), offset)
    out = aligned.ascontiguous(given, np.float64)
    assert out is not given and aligned.is_aligned(out)
    np.testing.assert_array_equal(out, given)
    assert aligned.ascontiguous(given, np.float64, realign=False) is given


def test_ascontiguous_keeps_an_aligned_array_and_copies_to_convert(rng):
    given = aligned.ascontiguous(rng.random((6, 8)), np.float64)
    assert aligned.ascontiguous(given, np.float64) is given
    for other in (given.astype(np.float32), given[:, ::2], np.asfortranarray(given)):
        out = aligned.ascontiguous(other, np.float64)
        assert aligned.is_aligned(out) and out.flags.c_contiguous and out.dtype == np.float64
        np.testing.assert_array_equal(out, other)
    as32 = aligned.ascontiguous(given, np.float32, realign=False)
    assert aligned.is_aligned(as32)
    np.testing.assert_array_equal(as32, given.astype(np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_parameters_and_buffers_are_aligned(dtype):
    model = fastbp.MLP([64, 20, 10], dtype=dtype, seed=0)
    assert aligned.is_aligned(model.params)
    restored = pickle.loads(pickle.dumps(model))
    assert aligned.is_aligned(restored.params)
    np.testing.assert_array_equal(restored.params, model.params)
    restored.weights[0][0, 0] = 7.0  # the views still share the vector
    assert restored.params[0] == 7.0
    trainer = Trainer(model, np.zeros((30, 64), dtype), np.zeros(30, np.int64), batch_size=10, eta=1.0,
                      optimizer="adam")
    for buffer in (trainer.ws, trainer.grad, trainer.state):
        assert aligned.is_aligned(buffer)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_reads_aligned_inputs_and_uses_aligned_ones_in_place(rng, dtype):
    model = fastbp.MLP([64, 20, 10], dtype=dtype, seed=0)
    y = rng.integers(0, 10, 30)
    X = rng.random((30, 64)).astype(dtype)
    inside = shifted(X, 16)
    val = shifted(X[:5], 48)
    trainer = Trainer(model, inside, y, batch_size=10, eta=1.0, validation_data=(val, y[:5]))
    assert aligned.is_aligned(trainer.X) and aligned.is_aligned(trainer.validation[0])
    np.testing.assert_array_equal(trainer.X, X)
    np.testing.assert_array_equal(trainer.validation[0], X[:5])
    np.testing.assert_array_equal(inside, X)  # the caller's array is only read
    ready = aligned.ascontiguous(X, dtype)
    assert Trainer(model, ready, y, batch_size=10, eta=1.0).X is ready  # no copy of data that need none


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("offset", [8, 16, 48])
def test_kernel_results_do_not_depend_on_alignment(rng, dtype, offset):
    """Forward pass and gradient (the BP kernels) on inputs that start mid-line: the same bits as aligned."""
    model = fastbp.MLP([64, 40, 10], dtype=dtype, seed=3)
    X = aligned.ascontiguous(rng.random((23, 64)), dtype)
    Y = rng.random((23, 10))
    moved = shifted(X, offset)
    assert not aligned.is_aligned(moved)
    np.testing.assert_array_equal(model.predict(moved), model.predict(X))
    for got, expected in zip(*(sum(model.gradient(inputs, Y), []) for inputs in (moved, X))):
        np.testing.assert_array_equal(got, expected)


def test_fit_on_unaligned_inputs_equals_fit_on_aligned_ones(rng):
    X = rng.random((40, 64))
    y = rng.integers(0, 10, 40)
    models = [fastbp.MLP([64, 20, 10], seed=1) for _ in range(2)]
    models[0].fit(shifted(X, 16), y, epochs=2, batch_size=10, eta=1.0, shuffle=False)
    models[1].fit(aligned.ascontiguous(X, np.float64), y, epochs=2, batch_size=10, eta=1.0, shuffle=False)
    np.testing.assert_array_equal(models[0].params, models[1].params)


def test_book_pairs_become_aligned_rows(rng):
    pairs = [(rng.random((64, 1)), int(rng.integers(0, 10))) for _ in range(9)]
    X, _ = book_rows(pairs, "training_data", [64, 10], y="label to count", remedy="")
    assert aligned.is_aligned(X)
    np.testing.assert_array_equal(X, np.hstack([x for x, _ in pairs]).T)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("integers", [False, True], ids=["float inputs", "8-bit inputs"])
def test_layer1_transposed_state_is_a_copy_whose_arrays_start_on_cache_lines(rng, dtype, integers):
    """While an epoch call trains layer 1 transposed (kernels.transposed), its weights live in a copy
    (n_0, n_pad) with zeros in the padded units (tiles of 30 float64 units in pairs of rows: fastbp.paired);
    that copy and the sums, deltas and input copies beside it start a cache line, and so does every share's part
    and the second half of the inputs' rows (no two cores write one line). untransposed puts the weights back."""
    from fastbp import kernels, paired
    from fastbp.transposed import LANES
    for n_out, n_in, m, n_parts in ((30, 784, 10, 2), (7, 20, 3, 3), (70, 131, 16, 2), (62, 67, 4, 2)):
        W = rng.standard_normal((n_out, n_in)).astype(dtype)
        X = rng.integers(0, 256, (5, n_in), dtype=np.uint8) if integers else np.zeros((5, n_in), dtype)
        WT, H, D, S = kernels.transposed(W, X, m, n_parts)
        n_pad = -(-n_out // LANES) * LANES
        assert WT.shape == (n_in, n_pad) and H.shape == (2 * m, n_pad) and D.shape == (n_parts * m, n_pad)
        assert S.shape[0] == (2 * n_parts * m if integers else 0) and S.dtype == W.dtype
        assert not np.shares_memory(WT, W)
        h = kernels.input_split(n_in, X.itemsize)
        for part in (WT, H, D, S, WT[h:], H[m:], D[m:], S[m:]):
            assert aligned.is_aligned(part), part.shape
        unpaired = WT.copy()
        paired.unpair_rows(unpaired, n_out, h)
        np.testing.assert_array_equal(unpaired[:, :n_out], W.T)
        assert not unpaired[:, n_out:].any()
        assert np.array_equal(unpaired, WT) == (dtype == "float32" or n_out % LANES != 30)
        out = np.zeros_like(W)
        kernels.untransposed((WT, H, D, S), out, X)
        np.testing.assert_array_equal(out, W)


def test_layer1_inputs_are_cut_on_a_cache_line_near_the_middle():
    from fastbp import kernels
    assert kernels.input_split(784, 8) == 392  # 49 lines of eight float64
    assert kernels.input_split(784, 4) == 384  # 24 lines of sixteen float32
    assert kernels.input_split(784, 1) == 384  # 6 lines of 64 pixels
    assert kernels.input_split(20, 8) == 8
    assert kernels.input_split(3, 8) == 1  # less than a line: the middle
    assert kernels.input_split(1, 8) == 0
