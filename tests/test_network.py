"""The drop-in ``fastbp.network``: the book's network.py API and results, checked against ``fastbp.reference``."""
import random

import numpy as np
import pytest

from fastbp import network
from fastbp import reference as ref

TOL = 1e-12
ARCHITECTURES = {
    "2 layers": [4, 3],
    "3 layers": [5, 6, 3],
    "4 layers": [5, 6, 4, 3],
    "6 layers": [4, 5, 6, 5, 4, 3],
}


# ----------------------------------------------------------------------------
# Helpers, independent of the code under test
# ----------------------------------------------------------------------------

def make_pairs(sizes, n, seed, *, labels=False):
    """n book-style pairs: x an (n_in, 1) column, y a one-hot (n_out, 1) column (or the int label)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        x = rng.random((sizes[0], 1))
        j = int(rng.integers(sizes[-1]))
        y = np.zeros((sizes[-1], 1))
        y[j] = 1.0
        pairs.append((x, j if labels else y))
    return pairs


def as_rows(pairs):
    """Pairs -> X (n, n_in), Y (n, n_out), the reference's layout."""
    return (np.array([x.ravel() for x, _ in pairs]), np.array([y.ravel() for _, y in pairs]))


def book_parameters(net):
    """Copies of the network's parameters in the reference's layout (1-D biases)."""
    return [np.array(w) for w in net.weights], [np.array(b).ravel() for b in net.biases]


def numpy_feedforward(weights, biases, a):
    """The book's feedforward on columns, with parameters held by the test."""
    for w, b in zip(weights, biases):
        a = 1.0 / (1.0 + np.exp(-(w @ a + b.reshape(-1, 1))))
    return a


def max_diff(xs, ys):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(xs, ys))


def seeded_net(sizes, seed):
    np.random.seed(seed)
    return network.Network(sizes)


# ----------------------------------------------------------------------------
# Initialisation and the live parameters
# ----------------------------------------------------------------------------

def test_np_random_seed_gives_the_books_weights():
    sizes = [5, 4, 3]
    net = seeded_net(sizes, 1234)
    np.random.seed(1234)
    biases = [np.random.randn(y, 1) for y in sizes[1:]]
    weights = [np.random.randn(y, x) for x, y in zip(sizes[:-1], sizes[1:])]
    assert net.sizes == sizes and net.num_layers == 3
    assert [w.shape for w in net.weights] == [(4, 5), (3, 4)]
    assert [b.shape for b in net.biases] == [(4, 1), (3, 1)]
    for got, want in zip(net.weights + net.biases, weights + biases):
        np.testing.assert_array_equal(got, want)
    # the model the kernels use holds the same numbers
    x = np.linspace(-1, 1, 5).reshape(-1, 1)
    np.testing.assert_allclose(net.feedforward(x), numpy_feedforward(weights, biases, x), rtol=0, atol=TOL)


def test_weights_and_biases_are_live_views():
    net = seeded_net([3, 4, 2], 0)
    params = net.model.params
    assert all(np.shares_memory(a, params) for a in list(net.weights) + list(net.biases))
    weights, biases = book_parameters(net)
    x = np.array([[0.3], [-0.2], [0.9]])
    net.weights[0][1, 2] += 0.5  # in-place edits
    weights[0][1, 2] += 0.5
    net.biases[1][:] = 0.25
    biases[1][:] = 0.25
    np.testing.assert_allclose(net.feedforward(x), numpy_feedforward(weights, biases, x), rtol=0, atol=TOL)


def test_assigning_items_and_whole_lists_takes_effect():
    rng = np.random.default_rng(5)
    net = seeded_net([3, 3, 3], 1)
    x = rng.random((3, 4))
    weights, biases = book_parameters(net)

    weights[1] = rng.standard_normal((3, 3))
    net.weights[1] = weights[1]
    biases[0] = rng.standard_normal(3)
    net.biases[0] = biases[0].reshape(-1, 1)  # a column, as the book stores biases
    np.testing.assert_allclose(net.feedforward(x), numpy_feedforward(weights, biases, x), rtol=0, atol=TOL)

    # the book's update_mini_batch assigns whole new lists
    weights = [w - 0.1 * rng.standard_normal(w.shape) for w in weights]
    biases = [b - 0.1 * rng.standard_normal(b.shape) for b in biases]
    net.weights = [w.copy() for w in weights]
    net.biases = [b.reshape(-1, 1).copy() for b in biases]
    np.testing.assert_allclose(net.feedforward(x), numpy_feedforward(weights, biases, x), rtol=0, atol=TOL)

    # a list made of the network's own views (swapping two layers) is read before it is written
    net.weights = [net.weights[1], net.weights[0]]
    weights = [weights[1], weights[0]]
    np.testing.assert_allclose(net.feedforward(x), numpy_feedforward(weights, biases, x), rtol=0, atol=TOL)


def test_bad_assignment_leaves_the_network_untouched():
    net = seeded_net([3, 4, 2], 2)
    before = net.model.params.copy()
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(2, 4\); got \(4, 2\)"):
        net.weights = [np.zeros((4, 3)), np.zeros((4, 2))]
    with pytest.raises(ValueError, match=r"biases must be a list of 2 arrays.*got 1"):
        net.biases = [np.zeros((4, 1))]
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \(2, 1\); got \(3, 1\)"):
        net.biases[1] = np.zeros((3, 1))
    np.testing.assert_array_equal(net.model.params, before)


# ----------------------------------------------------------------------------
# feedforward, evaluate and the small functions
# ----------------------------------------------------------------------------

def test_feedforward_column_and_batch():
    net = seeded_net([4, 5, 3], 3)
    weights, biases = book_parameters(net)
    A = np.random.default_rng(0).random((4, 6))
    out = net.feedforward(A[:, :1])
    assert out.shape == (3, 1)
    np.testing.assert_allclose(out, numpy_feedforward(weights, biases, A[:, :1]), rtol=0, atol=TOL)
    out = net.feedforward(A)
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out, numpy_feedforward(weights, biases, A), rtol=0, atol=TOL)


def test_evaluate_counts_correct_argmax():
    net = seeded_net([4, 6, 3], 4)
    weights, biases = book_parameters(net)
    test_data = make_pairs([4, 6, 3], 40, seed=1, labels=True)
    want = sum(int(np.argmax(numpy_feedforward(weights, biases, x)) == y) for x, y in test_data)
    assert 0 < want < 40  # the check can fail both ways
    assert net.evaluate(test_data) == want
    assert net.evaluate(zip(*zip(*test_data))) == want
    assert net.evaluate([]) == 0


def test_sigmoid_sigmoid_prime_and_cost_derivative():
    z = np.linspace(-30, 30, 13).reshape(-1, 1)
    s = 1.0 / (1.0 + np.exp(-z))
    np.testing.assert_allclose(network.sigmoid(z), s, rtol=1e-15)
    np.testing.assert_allclose(network.sigmoid_prime(z), s * (1 - s), rtol=1e-14)
    assert network.sigmoid(0.0) == 0.5
    net = seeded_net([2, 2], 0)
    a, y = np.array([[0.7], [0.2]]), np.array([[1.0], [0.0]])
    np.testing.assert_allclose(net.cost_derivative(a, y), [[-0.3], [0.2]], rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------
# backprop and update_mini_batch against the reference
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_backprop_matches_reference(sizes):
    net = seeded_net(sizes, 10)
    weights, biases = book_parameters(net)
    for x, y in make_pairs(sizes, 3, seed=2):
        nabla_b, nabla_w = net.backprop(x, y)
        want_b, want_w = ref.backprop(weights, biases, x, y)
        assert [nb.shape for nb in nabla_b] == [b.shape for b in net.biases]
        assert [nw.shape for nw in nabla_w] == [w.shape for w in net.weights]
        assert max_diff(nabla_w, want_w) < TOL
        assert max_diff([nb.ravel() for nb in nabla_b], want_b) < TOL
    assert max_diff(net.weights, weights) == 0  # backprop does not train


@pytest.mark.parametrize("m", [1, 7])
@pytest.mark.parametrize("sizes", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_update_mini_batch_matches_reference(sizes, m):
    net = seeded_net(sizes, 11)
    weights, biases = book_parameters(net)
    mini_batch = make_pairs(sizes, m, seed=3)
    X, Y = as_rows(mini_batch)
    want_w, want_b = ref.update_mini_batch_per_example(weights, biases, X, Y, 3.0)
    net.update_mini_batch(mini_batch, 3.0)
    assert max_diff(net.weights, want_w) < TOL
    assert max_diff([b.ravel() for b in net.biases], want_b) < TOL
    assert max_diff(net.weights, weights) > 1e-6  # it did move


# ----------------------------------------------------------------------------
# SGD: whole epochs in the book's shuffled order, printed lines, the caller's data
# ----------------------------------------------------------------------------

def reference_sgd(net, pairs, epochs, batch_size, eta, seed, test_data=None):
    """The book's SGD with the reference: the same random.shuffle order, and the lines it prints."""
    weights, biases = book_parameters(net)
    X, Y = as_rows(pairs)
    random.seed(seed)
    order = list(range(len(pairs)))
    lines = []
    for j in range(epochs):
        random.shuffle(order)
        weights, biases = ref.sgd_epoch(weights, biases, X, Y, batch_size=batch_size, eta=eta,
                                        method="per_example", order=np.array(order))
        if test_data:
            correct = sum(int(np.argmax(numpy_feedforward(weights, biases, x)) == y) for x, y in test_data)
            lines.append(f"Epoch {j} : {correct} / {len(test_data)}")
        else:
            lines.append(f"Epoch {j} complete")
    return weights, biases, lines


@pytest.mark.parametrize("sizes", [[5, 6, 3], [5, 6, 4, 5, 3]], ids=["3 layers", "5 layers"])
def test_sgd_matches_reference_in_the_books_order(sizes, capsys):
    training_data = make_pairs(sizes, 23, seed=4)  # batches of 5: the last one has 3
    test_data = make_pairs(sizes, 30, seed=5, labels=True)
    caller_list = list(training_data)
    net = seeded_net(sizes, 12)
    want_w, want_b, want_lines = reference_sgd(net, training_data, 2, 5, 3.0, seed=99, test_data=test_data)

    random.seed(99)
    net.SGD(training_data, 2, 5, 3.0, test_data=test_data)
    assert max_diff(net.weights, want_w) < TOL
    assert max_diff([b.ravel() for b in net.biases], want_b) < TOL
    assert capsys.readouterr().out.splitlines() == want_lines
    # the caller's list is neither reordered nor modified
    assert all(a is b for a, b in zip(training_data, caller_list)) and len(training_data) == 23


def test_sgd_without_test_data_prints_epoch_complete(capsys):
    sizes = [4, 5, 3]
    training_data = make_pairs(sizes, 11, seed=6)
    net = seeded_net(sizes, 13)
    want_w, want_b, want_lines = reference_sgd(net, training_data, 3, 4, 0.5, seed=7)
    random.seed(7)
    net.SGD(training_data, 3, 4, 0.5)
    assert capsys.readouterr().out == "Epoch 0 complete\nEpoch 1 complete\nEpoch 2 complete\n"
    assert want_lines == ["Epoch 0 complete", "Epoch 1 complete", "Epoch 2 complete"]
    assert max_diff(net.weights, want_w) < TOL
    assert max_diff([b.ravel() for b in net.biases], want_b) < TOL


def test_sgd_accepts_zip_iterables(capsys):
    sizes = [4, 5, 3]
    training_data = make_pairs(sizes, 13, seed=8)
    test_data = make_pairs(sizes, 9, seed=9, labels=True)
    net = seeded_net(sizes, 14)
    want_w, want_b, want_lines = reference_sgd(net, training_data, 2, 3, 2.0, seed=15, test_data=test_data)
    random.seed(15)
    net.SGD(zip(*zip(*training_data)), 2, 3, 2.0, test_data=zip(*zip(*test_data)))
    assert capsys.readouterr().out.splitlines() == want_lines
    assert max_diff(net.weights, want_w) < TOL
    assert max_diff([b.ravel() for b in net.biases], want_b) < TOL


def test_subclass_overriding_cost_derivative_is_used(capsys):
    """The book's exercises edit the methods: SGD must then call them. Doubling dC/da doubles eta."""
    class Doubled(network.Network):
        def cost_derivative(self, output_activations, y):
            return 2 * (output_activations - y)

    sizes = [4, 5, 3]
    training_data = make_pairs(sizes, 10, seed=10)
    np.random.seed(16)
    net = Doubled(sizes)
    want_w, want_b, _ = reference_sgd(net, training_data, 2, 4, 2 * 1.5, seed=17)
    random.seed(17)
    net.SGD(training_data, 2, 4, 1.5)
    assert max_diff(net.weights, want_w) < TOL
    assert max_diff([b.ravel() for b in net.biases], want_b) < TOL


# ----------------------------------------------------------------------------
# Validation at the boundary
# ----------------------------------------------------------------------------

@pytest.fixture
def net():
    return seeded_net([4, 5, 3], 20)


def good_pairs(n=6):
    return make_pairs([4, 5, 3], n, seed=21)


@pytest.mark.parametrize("bad, error, match", [
    (lambda p: p[:2] + [(np.zeros((3, 1)), p[2][1])] + p[3:], ValueError,
     r"training_data must hold \(x, y\) pairs with x an input column of shape \(4, 1\).*"
     r"got x of shape \(3, 1\) at index 2"),
    (lambda p: p[:1] + [(p[1][0], np.zeros((4, 1)))] + p[2:], ValueError,
     r"training_data must hold .*y a target column of shape \(3, 1\).*got y of shape \(4, 1\) at index 1"),
    (lambda p: p[:3] + [(p[3][0], 7)], ValueError, r"int label in \[0, 2\]; got y 7 at index 3"),
    (lambda p: p[:1] + [(np.full((4, 1), np.nan), p[1][1])], ValueError,
     r"got x with a NaN or infinite value at index 1"),
    (lambda p: p[:2] + [(np.array([["a"]] * 4), p[2][1])], TypeError, r"got x of dtype <U1 at index 2"),
    (lambda p: p[:1] + [p[1][0]], TypeError, r"training_data must hold \(x, y\) pairs; got ndarray at index 1"),
    (lambda p: [], ValueError, r"training_data must contain at least one \(x, y\) pair; got none"),
    (lambda p: 5, TypeError, r"training_data must be an iterable of \(x, y\) pairs.*got int"),
])
def test_bad_training_data_is_refused_and_the_network_untouched(net, bad, error, match, capsys):
    before = net.model.params.copy()
    data = bad(good_pairs())
    state = random.getstate()
    with pytest.raises(error, match=match):
        net.SGD(data, 1, 2, 1.0)
    np.testing.assert_array_equal(net.model.params, before)
    assert random.getstate() == state and capsys.readouterr().out == ""


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": 1.5}, TypeError, r"epochs must be an int"),
    ({"epochs": -1}, ValueError, r"epochs must be an int >= 0; got -1"),
    ({"mini_batch_size": 0}, ValueError, r"mini_batch_size must be an int >= 1; got 0"),
    ({"eta": 0.0}, ValueError, r"eta must be a finite float in the range \(0.0, inf\); got 0.0"),
    ({"test_data": [(np.zeros((4, 1)), 3)]}, ValueError,
     r"test_data must hold \(x, label\) pairs .*int in \[0, 2\]; got label 3 at index 0"),
])
def test_bad_sgd_arguments_are_refused(net, kwargs, error, match):
    before = net.model.params.copy()
    args = {"epochs": 1, "mini_batch_size": 2, "eta": 1.0} | kwargs
    with pytest.raises(error, match=match):
        net.SGD(good_pairs(), **args)
    np.testing.assert_array_equal(net.model.params, before)


def test_bad_single_examples_are_refused(net):
    x, y = good_pairs(1)[0]
    with pytest.raises(ValueError, match=r"a must be an input column \(4, 1\) or a batch of columns \(4, k\); "
                                         r"got shape \(3, 1\)"):
        net.feedforward(np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"x must be an input column of shape \(4, 1\).*got x of shape \(5, 1\)"):
        net.backprop(np.zeros((5, 1)), y)
    with pytest.raises(ValueError, match=r"got y of shape \(2, 1\)"):
        net.backprop(x, np.zeros((2, 1)))
    before = net.model.params.copy()
    with pytest.raises(ValueError, match=r"mini_batch must hold \(x, y\) pairs .*got x of shape \(4, 2\) at index 0"):
        net.update_mini_batch([(np.zeros((4, 2)), y)], 1.0)
    with pytest.raises(ValueError, match=r"mini_batch must contain at least one"):
        net.update_mini_batch([], 1.0)
    np.testing.assert_array_equal(net.model.params, before)
