"""The kernels against independent references: the NumPy baselines and central finite differences."""
import numpy as np
import pytest
from numba import njit

from conftest import F32_RTOL, F64_ATOL, FD_RTOL, copy_params, softplus, softplus_prime
from fastbp import MLP, kernels, reference
from fastbp.gradcheck import gradcheck
from fastbp.model import Trainer, progress_calls

ARCHITECTURES = [[5, 3], [6, 4, 3], [7, 6, 5, 4], [8, 7, 6, 5, 3], [9, 12, 10, 8, 6, 4]]
COMBINATIONS = [  # (activation per weight layer, cost); the last layer may be softmax
    ("sigmoid", "quadratic"), ("sigmoid", "cross-entropy"), (["tanh", "softmax"], "log-likelihood"),
    (["relu", "sigmoid"], "cross-entropy"), (["linear", "softmax"], "quadratic"),
    (["tanh", "linear"], "quadratic"), (["sigmoid", "softmax"], "cross-entropy"),
    (["relu", "tanh"], "quadratic"), (["sigmoid", "sigmoid"], "log-likelihood"),
]


def problem(rng, sizes, m, cost="quadratic"):
    """Inputs away from zero and targets away from the outputs, so that no gradient component is tiny."""
    X = rng.uniform(0.2, 1.0, (m, sizes[0]))
    Y = rng.uniform(0.05, 0.3, (m, sizes[-1]))
    if cost == "log-likelihood":
        Y /= Y.sum(axis=1, keepdims=True)
    return X, Y


def expand(activation, n_layers):
    """A two-entry (hidden, output) spec expanded to one entry per weight layer."""
    if isinstance(activation, str):
        return [activation] * n_layers
    return [activation[0]] * (n_layers - 1) + [activation[1]]


@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=str)
@pytest.mark.parametrize("m", [1, 7])
def test_gradient_matches_numpy_matrix_baseline(rng, sizes, m):
    net = MLP(sizes, seed=1, init="large")
    X, Y = problem(rng, sizes, m)
    grad_w, grad_b = net.gradient(X, Y)
    ref_w, ref_b = reference.mean_gradient(*copy_params(net), X, Y)
    for got, want in zip(grad_w + grad_b, ref_w + ref_b):
        np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)


@njit
def user_tanh(z):
    return np.tanh(z)


@njit
def user_tanh_prime(z):
    t = np.tanh(z)
    return 1.0 - t * t


@pytest.mark.parametrize("hidden", ["tanh", (user_tanh, user_tanh_prime)], ids=["tanh", "user-defined tanh"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_large_layers_against_the_matrix_baseline(rng, hidden, n_threads):
    """Blocks large enough that every kernel takes its parallel path when two threads are allowed (the
    activations and sigma' factors included), and batches of several example blocks."""
    sizes = [400, 150, 40, 5]
    cost = "log-likelihood"
    net = MLP(sizes, activation=[hidden, hidden, "softmax"], cost=cost, seed=2, n_threads=n_threads)
    acts = ["tanh", "tanh", "softmax"]  # what the reference computes
    X, Y = problem(rng, sizes, 200, cost)
    grad_w, grad_b = net.gradient(X, Y)
    ref_w, ref_b = reference.mean_gradient(*copy_params(net), X, Y, activations=acts, cost=cost)
    for got, want in zip(grad_w + grad_b, ref_w + ref_b):
        np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)
    weights, biases = copy_params(net)
    net.fit(X, Y, epochs=1, batch_size=100, eta=0.1, shuffle=False)
    w_ref, b_ref = reference.sgd_epoch(weights, biases, X, Y, batch_size=100, eta=0.1, activations=acts, cost=cost,
                                       method="matrix")
    for got, want in zip(list(net.weights) + list(net.biases), w_ref + b_ref):
        np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)


@pytest.mark.parametrize("activation,cost", COMBINATIONS, ids=str)
def test_every_activation_and_cost_against_reference_and_finite_differences(rng, activation, cost):
    sizes = [6, 5, 4, 3]
    acts = expand(activation, len(sizes) - 1)
    net = MLP(sizes, activation=acts, cost=cost, seed=3)
    X, Y = problem(rng, sizes, 5, cost)
    grad_w, grad_b = net.gradient(X, Y)
    ref_w, ref_b = reference.mean_gradient(*copy_params(net), X, Y, activations=acts, cost=cost)
    for got, want in zip(grad_w + grad_b, ref_w + ref_b):
        np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)
    assert net.cost(X, Y) == pytest.approx(reference.total_cost(*copy_params(net), X, Y, activations=acts,
                                                                cost=cost), rel=1e-13)
    assert gradcheck(net, X, Y) <= FD_RTOL


@pytest.mark.parametrize("sizes", [[4, 3], [5, 4, 3], [6, 5, 4, 3, 2]], ids=str)
def test_gradcheck_several_depths(rng, sizes):
    net = MLP(sizes, seed=7, init="large")
    X, Y = problem(rng, sizes, 3)
    assert gradcheck(net, X, Y) <= FD_RTOL


def test_gradcheck_detects_a_wrong_gradient(rng):
    """The check can fail: a model whose gradient is slightly off is caught."""
    net = MLP([5, 4, 3], seed=2)
    X, Y = problem(rng, [5, 4, 3], 4)

    class Skewed:
        weights, biases, cost = net.weights, net.biases, net.cost

        def gradient(self, X, Y):
            gw, gb = net.gradient(X, Y)
            gw[0][0, 0] *= 1.001
            return gw, gb

    assert gradcheck(Skewed(), X, Y) > 1e-4




def test_custom_activation_runs_in_the_kernels(rng):
    sizes = [5, 4, 3]
    net = MLP(sizes, activation=[(softplus, softplus_prime), "sigmoid"], seed=4)
    X, Y = problem(rng, sizes, 6)
    assert gradcheck(net, X, Y) <= FD_RTOL
    # Same forward pass written out in NumPy.
    a = np.log1p(np.exp(X @ net.weights[0].T + net.biases[0]))
    a = 1 / (1 + np.exp(-(a @ net.weights[1].T + net.biases[1])))
    np.testing.assert_allclose(net.forward(X), a, rtol=0, atol=F64_ATOL)
    history = net.fit(X, Y, epochs=2, batch_size=2, eta=0.5)
    assert history["epoch"] == [1, 2]


@pytest.mark.parametrize("sizes,batch_size,n", [([6, 5, 3], 4, 10), ([7, 6, 5, 4], 3, 9), ([5, 4], 1, 5),
                                                ([784, 30, 10], 10, 35),
                                                ([784, 30, 10], 32, 75), ([100, 20, 10], 16, 40),  # layer 1 transposed
                                                ([70, 40, 3], 6, 23), ([1, 6, 3], 8, 20),  # two tiles of units; no
                                                # inputs in the first half
                                                ([784, 9, 6, 5], 64, 150)],  # batches of several example blocks
                         ids=str)
def test_epochs_match_both_numpy_baselines(rng, sizes, batch_size, n):
    """Whole epochs in a fixed order, the last batch smaller when batch_size does not divide n."""
    net = MLP(sizes, seed=5, init="large")
    X = rng.random((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    Y = np.eye(sizes[-1])[y]
    order = rng.permutation(n)
    weights, biases = copy_params(net)
    trainer = Trainer(net, X, y, batch_size=batch_size, eta=3.0)
    for _ in range(2):
        trainer.epoch(order)
        for method in ("per_example", "matrix"):
            w_ref, b_ref = reference.sgd_epoch(weights, biases, X, Y, batch_size=batch_size, eta=3.0,
                                               method=method, order=order)
            for got, want in zip(list(net.weights) + list(net.biases), w_ref + b_ref):
                np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)
        weights, biases = w_ref, b_ref


@pytest.mark.parametrize("n_calls", [2, 5])
def test_an_epoch_in_several_calls_is_the_same_epoch(rng, n_calls):
    """The fused SGD step carries layer 1's forward pass from one mini-batch to the next; a progress bar cuts
    the epoch into several kernel calls, which must not change a bit."""
    X, y = rng.random((23, 12)), rng.integers(0, 4, 23)
    order = rng.permutation(23)
    results = []
    for calls in (1, n_calls):
        net = MLP([12, 9, 7, 4], seed=3)
        Trainer(net, X, y, batch_size=5, eta=2.0, lmbda=0.5).epoch(order, n_calls=calls)
        results.append(net.params.copy())
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("n_calls, expected", [(1, [23]), (2, [10, 13]), (3, [5, 10, 8]), (10, [5, 5, 5, 5, 3])])
def test_an_epoch_in_calls_reports_whole_mini_batches(rng, n_calls, expected):
    """epoch(n_calls=k) cuts the 5 mini-batches (the last of 3 rows) into min(k, 5) calls of whole mini-batches,
    as evenly as the count allows, and reports each call's rows."""
    X, y = rng.random((23, 12)), rng.integers(0, 4, 23)
    seen = []
    Trainer(MLP([12, 9, 4], seed=3), X, y, batch_size=5, eta=1.0).epoch(rng.permutation(23), seen.append,
                                                                         n_calls=n_calls)
    assert seen == expected


@pytest.mark.parametrize("seconds, calls", [(None, 50), (0.01, 1), (0.08, 1), (0.26, 3), (2.0, 20), (60.0, 50)])
def test_a_progress_bar_calls_the_kernel_about_every_tenth_of_a_second(seconds, calls):
    assert progress_calls(seconds) == calls


def test_fit_with_a_progress_bar_trains_the_same(rng, capsys):
    """With a progress bar the first epoch runs in 50 kernel calls and the next ones in as many as their time asks
    for: the weights are those of one call per epoch, bit for bit."""
    X, y = rng.random((300, 20)), rng.integers(0, 3, 300)
    shown, quiet = MLP([20, 8, 3], seed=0), MLP([20, 8, 3], seed=0)
    shown.fit(X, y, epochs=3, batch_size=10, eta=1.0, progress=True)
    quiet.fit(X, y, epochs=3, batch_size=10, eta=1.0, progress=False)
    np.testing.assert_array_equal(shown.params, quiet.params)
    assert "epoch 3/3" in capsys.readouterr().err


def test_fit_without_shuffle_is_the_books_rule_with_l2(rng):
    sizes, n = [6, 5, 3], 11
    net = MLP(sizes, cost="cross-entropy", seed=6)
    X, y = rng.random((n, 6)), rng.integers(0, 3, n)
    weights, biases = copy_params(net)
    net.fit(X, y, epochs=1, batch_size=4, eta=0.5, lmbda=2.0, shuffle=False)
    w_ref, b_ref = reference.sgd_epoch(weights, biases, X, np.eye(3)[y], batch_size=4, eta=0.5, lmbda=2.0,
                                       cost="cross-entropy", method="per_example")
    for got, want in zip(list(net.weights) + list(net.biases), w_ref + b_ref):
        np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)


def test_float32_within_float32_tolerance(rng):
    sizes = [20, 16, 8, 5]
    net64 = MLP(sizes, seed=8)
    net32 = MLP(sizes, seed=8, dtype="float32")
    assert net32.params.dtype == np.float32
    X, y = rng.random((50, 20)), rng.integers(0, 5, 50)
    np.testing.assert_allclose(net32.params, net64.params.astype(np.float32), rtol=0, atol=0)
    out32 = net32.forward(X)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, net64.forward(X), rtol=F32_RTOL, atol=1e-6)
    g32, g64 = net32.gradient(X, y), net64.gradient(X, y)
    for got, want in zip(g32[0] + g32[1], g64[0] + g64[1]):
        np.testing.assert_allclose(got, want, rtol=0, atol=F32_RTOL * np.abs(want).max())
    order = np.arange(50)
    Trainer(net32, X, y, batch_size=10, eta=3.0).epoch(order)
    Trainer(net64, X, y, batch_size=10, eta=3.0).epoch(order)
    np.testing.assert_allclose(net32.params, net64.params, rtol=0, atol=F32_RTOL * np.abs(net64.params).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_weight_and_workspace_views_alias_the_flat_buffers(rng, dtype):
    """kernels.weight / kernels.block build their views without reshape: same values and memory as NumPy's."""
    from fastbp import kernels
    net = MLP([7, 5, 3], dtype=dtype, seed=1)
    theta, layout = net.params, net._layout
    for l, w in enumerate(net.weights, start=1):
        view = kernels.weight(theta, layout, l)
        assert view.shape == w.shape and view.dtype == w.dtype and view.flags.c_contiguous
        np.testing.assert_array_equal(view, w)
        assert np.shares_memory(view, theta)
        view[0, 0] += 1  # writes reach the model's parameters
        assert w[0, 0] == view[0, 0]
    m_max, units = 4, 5 + 3
    ws = rng.random(3 * m_max * units).astype(dtype)  # three parts
    assert kernels.workspace_length(layout, m_max) == ws.size and kernels.batch_capacity(ws, layout) == m_max
    for l, n in ((1, 5), (2, 3)):
        for part in (kernels.Z_PART, kernels.A_PART, kernels.DELTA_PART):
            o = part * m_max * units + layout[l, kernels.U_OFF] * m_max
            np.testing.assert_array_equal(kernels.block(ws, layout, l, part, 3), ws[o:o + 3 * n].reshape(3, n))


def test_unowned_views_read_and_write_the_same_memory(rng):
    """kernels.unowned: the same array without a reference count; views taken from it read and write the
    original, and the original's reference count is left as it was."""
    import sys

    from fastbp import kernels

    @njit
    def total_and_bump(a):
        u = kernels.unowned(a)
        s = 0.0
        for i in range(u.shape[0]):
            row = u[i]  # a view of a view: no count to update
            s += row.sum()
            row[0] += 1.0
        return s

    a = rng.random((4, 3))
    before, refs = a.copy(), sys.getrefcount(a)
    assert total_and_bump(a) == pytest.approx(before.sum(), rel=1e-15)
    np.testing.assert_array_equal(a[:, 0], before[:, 0] + 1.0)
    np.testing.assert_array_equal(a[:, 1:], before[:, 1:])
    assert sys.getrefcount(a) == refs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta", [1.0, 0.99, 0.0])
@pytest.mark.parametrize("m", [1, 10, 13])
@pytest.mark.parametrize("j_start, j_stop", [(0, 30), (3, 30), (4, 10), (0, 8), (5, 6)])
def test_bias_step_is_bp3_for_its_units_only(rng, dtype, beta, m, j_start, j_stop):
    """BP3 summed over the batch against NumPy for units j_start .. j_stop-1 only: the units outside keep their
    values (a NaN there stays), and beta 0 overwrites even an infinite bias."""
    delta = rng.standard_normal((m, 30)).astype(dtype)
    b = rng.standard_normal(30).astype(dtype)
    outside = np.r_[0:j_start, j_stop:30]
    b[outside[::2]] = np.nan
    if beta == 0:
        b[j_start] = np.inf
    before = b.copy()
    kernels.bias_step(delta, -0.3, beta, b, j_start, j_stop)
    j = slice(j_start, j_stop)
    kept = 0.0 if beta == 0 else beta * before[j].astype(np.float64)
    expected = kept - 0.3 * delta[:, j].sum(axis=0, dtype=np.float64)
    tol = F32_RTOL if dtype == "float32" else 1e-13
    np.testing.assert_allclose(b[j], expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(b[outside], before[outside])


@njit
def per_value_step(opt, theta, grad, state, hyper, layout):
    """The optimizers' rules one parameter at a time, in the order of theta: the arithmetic to match."""
    eta, l2, mu = hyper[kernels.ETA], hyper[kernels.L2], hyper[kernels.MU]
    dt = theta.dtype.type
    step, b1, b2, eps = dt(0), dt(0), dt(0), dt(0)
    if opt == kernels.ADAM:
        hyper[kernels.ADAM_T] += 1.0
        t = hyper[kernels.ADAM_T]
        step = dt(eta * np.sqrt(1.0 - hyper[kernels.BETA2] ** t) / (1.0 - hyper[kernels.BETA1] ** t))
        b1, b2, eps = dt(hyper[kernels.BETA1]), dt(hyper[kernels.BETA2]), dt(hyper[kernels.EPS])
    for l in range(1, layout.shape[0]):
        start = layout[l, kernels.W_OFF]
        n_weights = layout[l, kernels.N] * layout[l - 1, kernels.N]
        for p in range(start, layout[l, kernels.B_OFF] + layout[l, kernels.N]):
            g = grad[p]
            if p < start + n_weights and l2 != 0.0:
                g += dt(l2) * theta[p]
            if opt == kernels.SGD:
                theta[p] -= dt(eta) * g
            elif opt == kernels.ADAM:
                state[0, p] = b1 * state[0, p] + (1 - b1) * g
                state[1, p] = b2 * state[1, p] + (1 - b2) * g * g
                theta[p] -= step * state[0, p] / (np.sqrt(state[1, p]) + eps)
            else:
                v = dt(mu) * state[0, p] - dt(eta) * g
                state[0, p] = v
                theta[p] += dt(mu) * v - dt(eta) * g if opt == kernels.NESTEROV else v


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", ["SGD", "MOMENTUM", "NESTEROV", "ADAM"])
@pytest.mark.parametrize("lmbda_n", [0.0, 1e-3])
def test_optimizer_step_computes_every_value_as_its_rule(rng, dtype, opt, lmbda_n):
    """The vectorised optimizer step gives the bits of its rule applied one value at a time (odd layer sizes:
    slices that end inside a vector; gradients over seven orders of magnitude)."""
    net = MLP([37, 21, 9, 3], dtype=dtype, seed=3)
    code, n_params = getattr(kernels, opt), net.params.size
    thetas = [net.params.copy(), net.params.copy()]
    states = [np.zeros((2, n_params) if code != kernels.SGD else (2, 1), dtype) for _ in range(2)]
    hypers = [np.array([0.05, lmbda_n, 0.9, 0.9, 0.999, 1e-8, 0.0]) for _ in range(2)]
    for _ in range(5):
        grad = (rng.standard_normal(n_params) * 10.0 ** rng.integers(-6, 1, n_params)).astype(dtype)
        kernels.optimizer_step(code, thetas[0], grad, states[0], hypers[0], net._layout)
        per_value_step(code, thetas[1], grad, states[1], hypers[1], net._layout)
    np.testing.assert_array_equal(thetas[0], thetas[1])
    np.testing.assert_array_equal(states[0], states[1])
    np.testing.assert_array_equal(hypers[0], hypers[1])
    assert not np.array_equal(thetas[0], net.params)
