"""The NumPy baselines: the book's per-example loop and the matrix-based mini-batch.

The two versions are checked against each other, against finite differences
computed here with their own small loop and cost, and against the update
rules written out by hand.
"""
import math

import numpy as np
import pytest

from fastbp import reference as ref

ARCHITECTURES = {
    "2 layers": [4, 3],
    "3 layers": [4, 5, 3],
    "5 layers": [4, 6, 5, 4, 3],
}
ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear", "softmax")
# (cost, output activation) pairs for which the cost is defined: cross-entropy
# and log-likelihood need outputs in (0, 1).
COST_OUTPUT = (
    [("quadratic", out) for out in ACTIVATIONS]
    + [("cross-entropy", "sigmoid"), ("cross-entropy", "softmax")]
    + [("log-likelihood", "sigmoid"), ("log-likelihood", "softmax")]
)
HIDDEN = (("sigmoid", "sigmoid"), ("tanh", "relu"), ("linear", "tanh"), ("relu", "sigmoid"))


# ----------------------------------------------------------------------------
# Helpers, independent of the code under test
# ----------------------------------------------------------------------------

def make_problem(sizes, m, seed, *, cost="quadratic", output="sigmoid"):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
               for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    biases = [0.5 * rng.standard_normal(n_out) for n_out in sizes[1:]]
    X = rng.standard_normal((m, sizes[0]))
    if cost == "log-likelihood" and output == "softmax":
        # the a - y shortcut needs target rows that sum to 1
        Y = rng.dirichlet(np.ones(sizes[-1]), size=m)
    else:
        Y = rng.uniform(0.05, 0.95, (m, sizes[-1]))
    return weights, biases, X, Y


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


TEST_ACT = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "linear": lambda z: z,
    "softmax": _softmax,
}


def forward_zs(weights, biases, X, acts):
    """Weighted inputs of every layer, row per example."""
    zs, a = [], X
    for w, b, act in zip(weights, biases, acts):
        z = a @ w.T + b
        zs.append(z)
        a = TEST_ACT[act](z)
    return zs, a


def mean_cost(weights, biases, X, Y, acts, cost):
    _, a = forward_zs(weights, biases, X, acts)
    if cost == "quadratic":
        per_row = 0.5 * np.sum((a - Y) ** 2, axis=1)
    elif cost == "cross-entropy":
        per_row = -np.sum(Y * np.log(a) + (1 - Y) * np.log(1 - a), axis=1)
    else:
        per_row = -np.sum(Y * np.log(a), axis=1)
    return per_row.mean()


def fd_gradient(weights, biases, X, Y, acts, cost, h=5e-3):
    """Mean-cost gradient by central differences, Richardson-extrapolated.

    Combining steps h and h/2 cancels the h^2 error term of eq. 46 made
    symmetric, so a fairly large h can be used and the rounding error of the
    cost, divided by h, stays around 1e-13: even gradient components of 1e-5
    are then accurate to better than 1e-7 relative.
    """
    params = [w.copy() for w in weights] + [b.copy() for b in biases]
    L = len(weights)

    def cost_now():
        return mean_cost(params[:L], params[L:], X, Y, acts, cost)

    grads = []
    for p in params:
        g = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            original = p[idx]

            def central(step):
                p[idx] = original + step
                up = cost_now()
                p[idx] = original - step
                down = cost_now()
                p[idx] = original
                return (up - down) / (2 * step)

            g[idx] = (4 * central(h / 2) - central(h)) / 3
        grads.append(g)
    return grads[:L], grads[L:]


def max_rel_error(a_list, b_list):
    a = np.concatenate([np.ravel(x) for x in a_list])
    b = np.concatenate([np.ravel(x) for x in b_list])
    floor = 1e-8 * max(1.0, np.abs(a).max(), np.abs(b).max())
    return np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor))


def assert_lists_close(actual, expected, rtol=1e-12):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        # atol only absorbs rounding on components that cancel to ~0
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * np.abs(e).max())


def assert_lists_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


# ----------------------------------------------------------------------------
# Per-example loop vs matrix-based mini-batch
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("m", [1, 7])
def test_backprop_matrix_equals_sum_of_per_example(arch, cost, m):
    weights, biases, X, Y = make_problem(ARCHITECTURES[arch], m, seed=1, cost=cost)
    nabla_w, nabla_b = ref.backprop_matrix(weights, biases, X, Y, cost=cost)
    sum_w = [np.zeros_like(w) for w in weights]
    sum_b = [np.zeros_like(b) for b in biases]
    for x, y in zip(X, Y):
        nb, nw = ref.backprop(weights, biases, x, y, cost=cost)  # the book's order
        sum_w = [s + d for s, d in zip(sum_w, nw)]
        sum_b = [s + d for s, d in zip(sum_b, nb)]
    assert_lists_close(nabla_w, sum_w)
    assert_lists_close(nabla_b, sum_b)
    grad_w, grad_b = ref.mean_gradient(weights, biases, X, Y, cost=cost, method="per_example")
    assert_lists_close(grad_w, [s / m for s in sum_w])
    assert_lists_close(grad_b, [s / m for s in sum_b])


def test_backprop_accepts_column_vectors_and_returns_1d_biases():
    weights, biases, X, Y = make_problem([4, 5, 3], 1, seed=2)
    nb_flat, nw_flat = ref.backprop(weights, biases, X[0], Y[0])
    nb_col, nw_col = ref.backprop(weights, biases, X[0].reshape(-1, 1), Y[0].reshape(-1, 1))
    assert [b.shape for b in nb_flat] == [(5,), (3,)]
    assert [w.shape for w in nw_flat] == [(5, 4), (3, 5)]
    assert_lists_equal(nb_col, nb_flat)
    assert_lists_equal(nw_col, nw_flat)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("m, lmbda, n", [(1, 0.0, None), (6, 0.0, None), (6, 2.0, 50)])
def test_update_per_example_equals_matrix(arch, cost, m, lmbda, n):
    weights, biases, X, Y = make_problem(ARCHITECTURES[arch], m, seed=3, cost=cost)
    w1, b1 = ref.update_mini_batch_per_example(weights, biases, X, Y, 0.7, cost=cost,
                                               lmbda=lmbda, n=n)
    w2, b2 = ref.update_mini_batch_matrix(weights, biases, X, Y, 0.7, cost=cost,
                                          lmbda=lmbda, n=n)
    assert_lists_close(w1, w2)
    assert_lists_close(b1, b2)
    # the step really moved every layer, so the agreement above means something
    assert all(not np.allclose(w, w0) for w, w0 in zip(w1, weights))
    assert all(not np.allclose(b, b0) for b, b0 in zip(b1, biases))


@pytest.mark.parametrize("lmbda", [0.0, 1.5])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_sgd_epoch_short_last_batch(cost, lmbda):
    # 11 examples in batches of 4: chunks of 4, 4 and 3
    weights, biases, X, Y = make_problem([3, 5, 4, 2], 11, seed=4, cost=cost)
    kwargs = dict(batch_size=4, eta=0.5, cost=cost, lmbda=lmbda)
    w1, b1 = ref.sgd_epoch(weights, biases, X, Y, method="per_example", **kwargs)
    w2, b2 = ref.sgd_epoch(weights, biases, X, Y, method="matrix", **kwargs)
    assert_lists_close(w1, w2)
    assert_lists_close(b1, b2)
    # the same thing step by step: the L2 term uses n = 11 in every step
    w, b = weights, biases
    for rows in (slice(0, 4), slice(4, 8), slice(8, 11)):
        w, b = ref.update_mini_batch_matrix(w, b, X[rows], Y[rows], 0.5, cost=cost,
                                            lmbda=lmbda, n=11)
    assert_lists_close(w2, w)
    assert_lists_close(b2, b)


def test_sgd_epoch_matrix_with_other_activations():
    weights, biases, X, Y = make_problem([3, 5, 4, 3], 10, seed=5, cost="log-likelihood",
                                         output="softmax")
    acts = ["tanh", "relu", "softmax"]
    w1, b1 = ref.sgd_epoch(weights, biases, X, Y, batch_size=3, eta=0.2, method="matrix",
                           activations=acts, cost="log-likelihood")
    w, b = weights, biases
    for k in range(0, 10, 3):
        w, b = ref.update_mini_batch_matrix(w, b, X[k:k + 3], Y[k:k + 3], 0.2,
                                            activations=acts, cost="log-likelihood")
    assert_lists_close(w1, w)
    assert_lists_close(b1, b)


@pytest.mark.parametrize("method", ["per_example", "matrix"])
def test_sgd_epoch_respects_order(method):
    weights, biases, X, Y = make_problem([3, 4, 2], 9, seed=6)
    perm = np.random.default_rng(60).permutation(9)
    kwargs = dict(batch_size=2, eta=1.0, method=method)
    w1, b1 = ref.sgd_epoch(weights, biases, X, Y, order=perm, **kwargs)
    w2, b2 = ref.sgd_epoch(weights, biases, X[perm], Y[perm], **kwargs)
    assert_lists_equal(w1, w2)
    assert_lists_equal(b1, b2)
    # and the order matters, so the equality above is not trivial
    w3, _ = ref.sgd_epoch(weights, biases, X, Y, **kwargs)
    assert not np.allclose(w3[0], w1[0])
    w4, _ = ref.sgd_epoch(weights, biases, X, Y, order=np.arange(9), **kwargs)
    assert_lists_equal(w4, w3)


# ----------------------------------------------------------------------------
# Against finite differences
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("cost, output", COST_OUTPUT)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_matrix_gradient_matches_finite_differences(cost, output, hidden):
    sizes = [3, 5, 4, 3]
    weights, biases, X, Y = make_problem(sizes, 3, seed=7, cost=cost, output=output)
    acts = [*hidden, output]
    zs, _ = forward_zs(weights, biases, X, acts)
    for z, act in zip(zs, acts):
        if act == "relu":
            # finite differences across the kink would be meaningless
            assert np.abs(z).min() > 1e-2
    grad_w, grad_b = ref.mean_gradient(weights, biases, X, Y, activations=acts, cost=cost)
    fd_w, fd_b = fd_gradient(weights, biases, X, Y, acts, cost)
    assert max_rel_error(grad_w + grad_b, fd_w + fd_b) <= 1e-7
    # summed (not mean) gradient of backprop_matrix
    nabla_w, nabla_b = ref.backprop_matrix(weights, biases, X, Y, activations=acts, cost=cost)
    assert_lists_close(nabla_w, [3 * g for g in grad_w])
    assert_lists_close(nabla_b, [3 * g for g in grad_b])


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_per_example_gradient_matches_finite_differences(arch, cost):
    sizes = ARCHITECTURES[arch]
    weights, biases, X, Y = make_problem(sizes, 3, seed=8, cost=cost)
    acts = ["sigmoid"] * (len(sizes) - 1)
    grad_w, grad_b = ref.mean_gradient(weights, biases, X, Y, cost=cost, method="per_example")
    fd_w, fd_b = fd_gradient(weights, biases, X, Y, acts, cost)
    assert max_rel_error(grad_w + grad_b, fd_w + fd_b) <= 1e-7


def test_finite_difference_check_can_fail():
    # the quadratic-cost BP1 without sigma'(z) is a classic slip: it must be caught
    weights, biases, X, Y = make_problem([3, 4, 2], 3, seed=9)
    acts = ["sigmoid", "sigmoid"]
    fd_w, fd_b = fd_gradient(weights, biases, X, Y, acts, "quadratic")
    wrong_w, wrong_b = ref.mean_gradient(weights, biases, X, Y, cost="cross-entropy")
    assert max_rel_error(wrong_w + wrong_b, fd_w + fd_b) > 1e-2


# ----------------------------------------------------------------------------
# Update rules and costs by hand, on a 1-layer net
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("method", ["per_example", "matrix"])
def test_l2_update_by_hand(cost, method):
    w = [[0.3, -0.8]]
    b = [0.1]
    X = [[1.0, 2.0], [-0.5, 0.25]]
    Y = [[1.0], [0.0]]
    eta, lmbda, n = 0.5, 3.0, 20
    grad_w = [0.0, 0.0]
    grad_b = 0.0
    for x, (y,) in zip(X, Y):
        z = w[0][0] * x[0] + w[0][1] * x[1] + b[0]
        a = 1 / (1 + math.exp(-z))
        delta = (a - y) * a * (1 - a) if cost == "quadratic" else a - y
        grad_w = [grad_w[0] + delta * x[0], grad_w[1] + delta * x[1]]
        grad_b += delta
    decay = 1 - eta * lmbda / n
    expected_w = [[decay * w[0][k] - eta / 2 * grad_w[k] for k in range(2)]]
    expected_b = [b[0] - eta / 2 * grad_b]  # biases are not decayed

    weights, biases = [np.array(w)], [np.array(b)]
    if method == "per_example":
        new_w, new_b = ref.update_mini_batch_per_example(
            weights, biases, np.array(X), np.array(Y), eta, cost=cost, lmbda=lmbda, n=n)
    else:
        new_w, new_b = ref.update_mini_batch_matrix(
            weights, biases, np.array(X), np.array(Y), eta, cost=cost, lmbda=lmbda, n=n)
    np.testing.assert_allclose(new_w[0], expected_w, rtol=1e-14)
    np.testing.assert_allclose(new_b[0], expected_b, rtol=1e-14)


def test_total_cost_by_hand_with_l2():
    w, b = np.array([[0.3, -0.8]]), np.array([0.1])
    X, Y = np.array([[1.0, 2.0], [-0.5, 0.25]]), np.array([[1.0], [0.0]])
    a = [1 / (1 + math.exp(-(0.3 * x0 - 0.8 * x1 + 0.1))) for x0, x1 in X]
    l2 = 0.5 * (3.0 / 20) * (0.3 ** 2 + 0.8 ** 2)
    quad = (0.5 * (a[0] - 1) ** 2 + 0.5 * a[1] ** 2) / 2
    xent = (-math.log(a[0]) - math.log(1 - a[1])) / 2
    assert ref.total_cost([w], [b], X, Y) == pytest.approx(quad, rel=1e-14)
    assert ref.total_cost([w], [b], X, Y, lmbda=3.0, n=20) == pytest.approx(quad + l2, rel=1e-14)
    assert ref.total_cost([w], [b], X, Y, cost="cross-entropy", lmbda=3.0, n=20) == \
        pytest.approx(xent + l2, rel=1e-14)
    # n defaults to the number of rows, as network2's total_cost uses len(data)
    assert ref.total_cost([w], [b], X, Y, lmbda=3.0) == \
        pytest.approx(quad + 0.5 * (3.0 / 2) * (0.3 ** 2 + 0.8 ** 2), rel=1e-14)


@pytest.mark.parametrize("cost, output", COST_OUTPUT)
def test_total_cost_and_feedforward_match_independent_versions(cost, output):
    weights, biases, X, Y = make_problem([3, 5, 4], 6, seed=10, cost=cost, output=output)
    acts = ["tanh", output]
    _, a = forward_zs(weights, biases, X, acts)
    np.testing.assert_allclose(ref.feedforward(weights, biases, X, activations=acts), a,
                               rtol=1e-14, atol=1e-15)
    assert ref.total_cost(weights, biases, X, Y, activations=acts, cost=cost) == \
        pytest.approx(mean_cost(weights, biases, X, Y, acts, cost), rel=1e-13)


def test_cross_entropy_cost_saturated_output_is_finite():
    # a == y == 1 exactly: (1 - y) ln(1 - a) is 0 * -inf, which nan_to_num makes 0
    w, b = [np.array([[1.0]])], [np.array([0.0])]
    X, Y = np.array([[100.0]]), np.array([[1.0]])
    assert ref.feedforward(w, b, X)[0, 0] == 1.0
    assert ref.total_cost(w, b, X, Y, cost="cross-entropy") == 0.0


def test_softmax_is_stable_for_large_inputs():
    w, b = [np.eye(3)], [np.zeros(3)]
    a = ref.feedforward(w, b, np.array([[1000.0, 999.0, -1000.0]]), activations=["softmax"])
    e = math.exp(-1)
    np.testing.assert_allclose(a, [[1 / (1 + e), e / (1 + e), 0.0]], rtol=1e-14)


# ----------------------------------------------------------------------------
# Purity and initialisation
# ----------------------------------------------------------------------------

def test_inputs_not_mutated_and_outputs_are_new_arrays():
    weights, biases, X, Y = make_problem([3, 4, 2], 5, seed=11)
    saved = [a.copy() for a in weights + biases + [X, Y]]
    for a in weights + biases + [X, Y]:
        a.flags.writeable = False  # any in-place write would raise
    acts = ["relu", "linear"]
    outputs = []
    outputs += ref.backprop(weights, biases, X[0], Y[0])
    outputs += ref.backprop_matrix(weights, biases, X, Y, activations=acts)
    outputs += ref.update_mini_batch_per_example(weights, biases, X, Y, 0.1, lmbda=1.0)
    outputs += ref.update_mini_batch_matrix(weights, biases, X, Y, 0.1, activations=acts)
    outputs += ref.mean_gradient(weights, biases, X, Y, method="per_example")
    outputs += ref.mean_gradient(weights, biases, X, Y, activations=acts)
    outputs += ref.sgd_epoch(weights, biases, X, Y, batch_size=2, eta=0.1)
    outputs += ref.sgd_epoch(weights, biases, X, Y, batch_size=2, eta=0.1, method="matrix",
                             order=np.arange(5)[::-1], activations=acts)
    outputs.append([ref.feedforward(weights, biases, X, activations=acts)])
    ref.total_cost(weights, biases, X, Y, lmbda=1.0)
    for a, s in zip(weights + biases + [X, Y], saved):
        np.testing.assert_array_equal(a, s)
    for out in (o for group in outputs for o in group):
        assert all(not np.shares_memory(out, a) for a in weights + biases + [X, Y])


def test_init_parameters_follows_the_book():
    sizes = [4, 3, 2]
    weights, biases = ref.init_parameters(sizes, np.random.default_rng(12))
    assert [w.shape for w in weights] == [(3, 4), (2, 3)]
    assert [b.shape for b in biases] == [(3,), (2,)]
    # the book draws all biases first, then all weights, from N(0, 1)
    rng = np.random.default_rng(12)
    expected_b = [rng.standard_normal(3), rng.standard_normal(2)]
    expected_w = [rng.standard_normal((3, 4)), rng.standard_normal((2, 3))]
    assert_lists_equal(biases, expected_b)
    assert_lists_equal(weights, expected_w)
    w2, b2 = ref.init_parameters(sizes, np.random.default_rng(12), scale="default")
    assert_lists_equal(b2, expected_b)
    assert_lists_close(w2, [w / np.sqrt(w.shape[1]) for w in expected_w], rtol=1e-15)


def test_init_parameters_default_scale_statistics():
    weights, _ = ref.init_parameters([400, 300], np.random.default_rng(13), scale="default")
    assert abs(weights[0].std() - 1 / 20) < 0.002


# ----------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------

def test_argument_errors():
    weights, biases, X, Y = make_problem([3, 4, 2], 5, seed=14)
    with pytest.raises(ValueError, match="cost must be one of"):
        ref.backprop_matrix(weights, biases, X, Y, cost="hinge")
    with pytest.raises(ValueError, match="cost must be one of 'quadratic', 'cross-entropy'"):
        ref.backprop(weights, biases, X[0], Y[0], cost="log-likelihood")
    with pytest.raises(ValueError, match=r"activations\[0\] must not be 'softmax'"):
        ref.feedforward(weights, biases, X, activations=["softmax", "sigmoid"])
    with pytest.raises(ValueError, match="activations must have one name per weight layer"):
        ref.feedforward(weights, biases, X, activations=["tanh"])
    with pytest.raises(ValueError, match="all 'sigmoid' for method='per_example'"):
        ref.mean_gradient(weights, biases, X, Y, activations=["tanh", "sigmoid"],
                          method="per_example")
    with pytest.raises(ValueError, match="X must be a 2-D array with at least one row and 3"):
        ref.feedforward(weights, biases, X[:, :2])
    with pytest.raises(ValueError, match=r"Y must have as many rows as X \(5\); got 4\."):
        ref.backprop_matrix(weights, biases, X, Y[:4])
    with pytest.raises(ValueError, match=r"x must have shape \(3,\) or \(3, 1\)"):
        ref.backprop(weights, biases, X[:2], Y[0])
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \(2,\)"):
        ref.feedforward(weights, [biases[0], biases[1].reshape(-1, 1)], X)
    with pytest.raises(ValueError, match=r"weights\[1\] must have 4 columns"):
        ref.feedforward([weights[0], weights[1][:, :3]], biases, X)
    with pytest.raises(TypeError, match="weights must be a list of arrays"):
        ref.feedforward(weights[0], biases, X)
    with pytest.raises(ValueError, match="eta must be a finite number > 0.0"):
        ref.update_mini_batch_matrix(weights, biases, X, Y, -1.0)
    with pytest.raises(ValueError, match="lmbda must be a finite number >= 0.0"):
        ref.update_mini_batch_per_example(weights, biases, X, Y, 1.0, lmbda=-0.1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        ref.sgd_epoch(weights, biases, X, Y, batch_size=0, eta=1.0)
    with pytest.raises(ValueError, match=r"order must be a permutation of range\(5\)"):
        ref.sgd_epoch(weights, biases, X, Y, batch_size=2, eta=1.0, order=[0, 1, 1, 2, 3])
    with pytest.raises(ValueError, match="method must be one of"):
        ref.sgd_epoch(weights, biases, X, Y, batch_size=2, eta=1.0, method="fast")
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        ref.init_parameters([3, 2], 0)
    with pytest.raises(ValueError, match="scale must be one of"):
        ref.init_parameters([3, 2], np.random.default_rng(0), scale="small")
    with pytest.raises(ValueError, match="sizes must be a list of at least 2"):
        ref.init_parameters([3], np.random.default_rng(0))
