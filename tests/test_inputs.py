"""Integer-coded inputs (ScaledInputs): the kernels scale them as they read, with the float results."""
import numba
import numpy as np
import pytest

from conftest import F64_ATOL, copy_params
from fastbp import MLP, ScaledInputs, reference
from fastbp.kernels import staged_update_and_forward

two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread here")


def pixels(rng, n, n_in, dtype=np.uint8):
    return rng.integers(0, np.iinfo(dtype).max, (n, n_in), endpoint=True).astype(dtype)


@pytest.mark.parametrize("sizes, batch_size, optimizer, eta", [
    ([784, 30, 10], 10, "sgd", 3.0),      # the fused layer-1 step (one block of examples per batch)
    ([784, 30, 10], 200, "sgd", 3.0),     # batches of several example blocks
    ([50, 16, 12, 5], 7, "momentum", 0.5),
    ([50, 16, 5], 8, "adam", 0.01),
    ([50, 5], 9, "sgd", 1.0),             # one weight layer: layer 1 is the output layer
], ids=str)
def test_training_on_scaled_inputs_matches_the_matrix_baseline(rng, sizes, batch_size, optimizer, eta):
    values = pixels(rng, 400, sizes[0])
    X_float = values / 255.0
    y = rng.integers(0, sizes[-1], 400)
    scaled, plain = (MLP(sizes, seed=3, n_threads=1) for _ in range(2))
    scaled.fit(ScaledInputs(values, 1 / 255), y, epochs=2, batch_size=batch_size, eta=eta, optimizer=optimizer,
               shuffle=False)
    plain.fit(X_float, y, epochs=2, batch_size=batch_size, eta=eta, optimizer=optimizer, shuffle=False)
    np.testing.assert_allclose(scaled.params, plain.params, rtol=0, atol=F64_ATOL)
    if optimizer == "sgd":  # and against NumPy directly, from the same start
        start = MLP(sizes, seed=3)
        Y = np.eye(sizes[-1])[y]
        weights, biases = copy_params(start)
        for _ in range(2):
            weights, biases = reference.sgd_epoch(weights, biases, X_float, Y, batch_size=batch_size, eta=eta,
                                                  method="matrix")
        for got, want in zip(list(scaled.weights) + list(scaled.biases), weights + biases):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_evaluation_on_scaled_inputs_matches_float_inputs(rng):
    net = MLP([64, 20, 10], seed=1, init="large")
    values = pixels(rng, 300, 64, np.uint16)
    scaled, X = ScaledInputs(values, 1 / 65535), values / 65535.0
    y = rng.integers(0, 10, 300)
    np.testing.assert_allclose(net.forward(scaled), net.forward(X), rtol=0, atol=F64_ATOL)
    assert net.cost(scaled, y) == pytest.approx(net.cost(X, y), rel=1e-13)
    assert net.score(scaled, y) == net.score(X, y)
    (gw, gb), (fw, fb) = net.gradient(scaled, y), net.gradient(X, y)
    for got, want in zip(gw + gb, fw + fb):
        np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)
    ref_w, _ = reference.mean_gradient(*copy_params(net), X, np.eye(10)[y])
    np.testing.assert_allclose(net.gradient(scaled, y)[0][0], ref_w[0], rtol=0, atol=F64_ATOL)


@two_threads
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scaled_inputs_same_bits_whatever_the_thread_count(rng, dtype):
    values, y = pixels(rng, 300, 784), rng.integers(0, 10, 300)
    results = []
    for n_threads in (1, 2):
        net = MLP([784, 64, 10], seed=2, dtype=dtype, n_threads=n_threads)
        net.fit(ScaledInputs(values, 1 / 255), y, epochs=1, batch_size=10, eta=3.0)
        results.append(net.params.copy())
    np.testing.assert_array_equal(*results)


@numba.njit
def staged_step(*args):
    staged_update_and_forward(*args)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_staged_layer1_step_matches_converting_inside_the_tiles(rng, dtype):
    """Layer 1's unfused step on 8-bit inputs copies each block of examples into floats first
    (kernels.staged_update_and_forward, reachable from jitted code only): the values of the tiles that convert
    each input as they read it, to the rounding of their sums (LLVM may vectorise a sum in another order for
    another input type)."""
    from fastbp import kernels
    n_out, n_in, m = 10, 3000, 47  # blocks of 10 examples in float64 and of 30 in float32 (example_block)
    X, scale = pixels(rng, 60, n_in), 1 / 255
    rows, rows_next = rng.permutation(60)[:m], rng.permutation(60)[:m - 4]
    W0, b0 = rng.standard_normal((n_out, n_in)).astype(dtype), rng.standard_normal(n_out).astype(dtype)
    delta = rng.standard_normal((m, n_out)).astype(dtype)
    results = []
    for staged in (False, True):
        W, b, Z = W0.copy(), b0.copy(), np.zeros((m - 4, n_out), dtype)
        if staged:
            S = np.full((kernels.example_block(m, n_in, W.itemsize), n_in), np.nan, dtype)
            staged_step(W, b, X, scale, rows, delta, -0.3, 0.99, rows_next, Z, S, np.arange(m), 0,
                        kernels.unit_groups(W))
        else:
            kernels.layer_bp34(delta, X, scale, rows, -0.3, 0.99, 1.0, W, b, kernels.SERIAL)
            kernels.layer_forward(W, b, X, scale, rows_next, Z, kernels.SERIAL)
        results.append((W, b, Z))
    assert kernels.example_block(m, n_in, np.dtype(dtype).itemsize) < m  # several blocks
    assert not np.array_equal(results[0][0], W0) and np.isfinite(results[0][2]).all()
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=0, atol=16 * np.finfo(dtype).eps * np.abs(want).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_integer_inputs_get_float_copies_only_where_layer1_steps_are_not_fused(dtype):
    from fastbp import kernels
    net = MLP([784, 30, 10], dtype=dtype, seed=0)
    X8, X = np.zeros((300, 784), np.uint8), np.zeros((300, 784), dtype)
    order, ws = np.arange(300), np.zeros(kernels.workspace_length(net._layout, 128), dtype)
    for inputs, batch_size, copies in ((X8, 128, True), (X, 128, False), (X8, 1, False)):
        T = kernels.layer1_state(net._theta, net._layout, inputs, 1.0, order, batch_size, 0, 2, ws, 2, 0, False)
        assert T[0].size == 0 and (T[3].shape[0] > 0) == copies, (inputs.dtype, batch_size)
        if copies:  # a block of examples per share, each row of the 784 inputs from a cache line
            assert T[3].shape[0] == 2 * kernels.example_block(128, 784, net._theta.itemsize)
            assert T[3].shape[1] * T[3].itemsize % 64 == 0 and T[3].ctypes.data % 64 == 0


def test_validation_data_and_subsets(rng):
    values, y = pixels(rng, 120, 30), rng.integers(0, 3, 120)
    inputs = ScaledInputs(values, 0.5)
    net = MLP([30, 8, 3], seed=0)
    history = net.fit(inputs[:100], y[:100], epochs=2, batch_size=10, eta=0.1,
                      validation_data=(inputs[100:], y[100:]), monitor_training=True, monitor_gradients=True)
    assert history["val_accuracy"][-1] == net.score(values[100:] * 0.5, y[100:])
    np.testing.assert_array_equal(np.asarray(inputs[[3, 5]]), values[[3, 5]] * 0.5)
    assert inputs[7].shape == (1, 30) and len(inputs) == 120 and inputs.dtype == np.uint8


@pytest.mark.parametrize("values, scale, exc, pattern", [
    (np.zeros((3, 4)), 1.0, TypeError, "values must be an array of uint8 or uint16; got dtype float64"),
    (np.zeros((3, 4), np.int8), 1.0, TypeError, "got dtype int8"),
    (np.zeros((3, 4), np.uint32), 1.0, TypeError, "got dtype uint32"),
    (np.zeros((2, 3, 4), np.uint8), 1.0, ValueError, r"2-D array .*got shape \(2, 3, 4\)"),
    (np.zeros((3, 4), np.uint8), 0.0, ValueError, "scale must be a finite number > 0; got 0.0"),
    (np.zeros((3, 4), np.uint8), -1, ValueError, "scale must be a finite number > 0; got -1"),
    (np.zeros((3, 4), np.uint8), float("nan"), ValueError, "scale must be a finite number > 0; got nan"),
    (np.zeros((3, 4), np.uint8), float("inf"), ValueError, "scale must be a finite number > 0; got inf"),
    (np.zeros((3, 4), np.uint8), "1/255", TypeError, "scale must be a real number; got str"),
    (np.zeros((3, 4), np.uint8), True, TypeError, "scale must be a real number; got bool"),
])
def test_scaled_inputs_reject_bad_arguments(values, scale, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ScaledInputs(values, scale)


def test_model_rejects_scaled_inputs_of_the_wrong_shape_and_stays_untouched(rng):
    net = MLP([30, 8, 3], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"X must have 30 columns to match the network; got shape \(5, 29\)"):
        net.fit(ScaledInputs(pixels(rng, 5, 29), 1.0), np.zeros(5, int), epochs=1, batch_size=2, eta=1.0)
    with pytest.raises(ValueError, match=r"validation_data\[0\] must have at least one row"):
        net.fit(ScaledInputs(pixels(rng, 5, 30), 1.0), np.zeros(5, int), epochs=1, batch_size=2, eta=1.0,
                validation_data=(ScaledInputs(pixels(rng, 0, 30), 1.0), np.zeros(0, int)))
    np.testing.assert_array_equal(net.params, before)
