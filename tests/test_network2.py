"""Tests for fastbp.network2, the drop-in for the book's network2.py, against the NumPy reference."""

import json
import os
import random

import numpy as np
import pytest

from fastbp import network2, reference
from fastbp.network2 import CrossEntropyCost, Network, QuadraticCost

COSTS = [(QuadraticCost, "quadratic"), (CrossEntropyCost, "cross-entropy")]
TOL = 1e-12


def book_data(rng, n, n_in, n_out, vectorized):
    """The book's format: (x (n_in, 1), y) pairs, y an (n_out, 1) one-hot column or an int label."""
    data = []
    for _ in range(n):
        x = rng.random((n_in, 1))
        label = int(rng.integers(n_out))
        if vectorized:
            y = np.zeros((n_out, 1))
            y[label] = 1.0
            data.append((x, y))
        else:
            data.append((x, label))
    return data


def as_arrays(data, n_out):
    """X (n, n_in) and one-hot Y (n, n_out) from book-format data, written independently of the module."""
    X = np.array([x.ravel() for x, _ in data])
    Y = np.zeros((len(data), n_out))
    for i, (_, y) in enumerate(data):
        if isinstance(y, int):
            Y[i, y] = 1.0
        else:
            Y[i] = np.ravel(y)
    return X, Y


def params(net):
    """Copies of the network's weights and 1-D biases, for the reference functions."""
    return [np.array(w) for w in net.weights], [np.array(b).ravel() for b in net.biases]


def make_net(sizes, cost, seed=0):
    np.random.seed(seed)
    return Network(sizes, cost=cost)


# ---------------------------------------------------------------- costs and helpers
def test_cost_classes_match_formulas():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 1))
    a = 1 / (1 + np.exp(-z))
    y = np.array([[0.0], [1.0], [0.0], [0.3]])
    assert QuadraticCost.fn(a, y) == pytest.approx(0.5 * np.sum((a - y) ** 2), rel=TOL)
    np.testing.assert_allclose(QuadraticCost.delta(z, a, y), (a - y) * a * (1 - a), rtol=TOL)
    expected = np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a))
    assert CrossEntropyCost.fn(a, y) == pytest.approx(expected, rel=TOL)
    np.testing.assert_allclose(CrossEntropyCost.delta(z, a, y), a - y, rtol=0, atol=0)
    # a and y both 1 in one slot: 0*log(0) counts 0, as the book's nan_to_num gives.
    assert CrossEntropyCost.fn(np.array([[1.0], [0.5]]), np.array([[1.0], [0.0]])) == pytest.approx(np.log(2))


def test_helpers():
    np.testing.assert_array_equal(network2.vectorized_result(3), np.eye(10)[:, [3]])
    assert network2.vectorized_result(3).shape == (10, 1)
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(network2.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=TOL)
    np.testing.assert_allclose(network2.sigmoid_prime(z), np.exp(-z) / (1 + np.exp(-z)) ** 2, rtol=1e-12)
    with pytest.raises(ValueError, match="j must be"):
        network2.vectorized_result(10)
    with pytest.raises(TypeError, match="j must be"):
        network2.vectorized_result(2.5)


# ---------------------------------------------------------------- construction and parameters
def test_initializers_draw_like_the_book():
    sizes = [3, 4, 2]
    np.random.seed(7)
    net = Network(sizes)
    np.random.seed(7)
    biases = [np.random.randn(y, 1) for y in sizes[1:]]
    weights = [np.random.randn(y, x) / np.sqrt(x) for x, y in zip(sizes[:-1], sizes[1:])]
    for got, want in zip(net.weights + net.biases, weights + biases):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.random.seed(8)
    net.large_weight_initializer()
    np.random.seed(8)
    biases = [np.random.randn(y, 1) for y in sizes[1:]]
    weights = [np.random.randn(y, x) for x, y in zip(sizes[:-1], sizes[1:])]
    for got, want in zip(net.weights + net.biases, weights + biases):
        np.testing.assert_array_equal(got, want)
    assert net.sizes == sizes and net.num_layers == 3 and net.cost is CrossEntropyCost


def test_weights_and_biases_are_live():
    net = make_net([3, 4, 2], QuadraticCost)
    net.weights[0][1, 2] = 5.0
    assert net.model.weights[0][1, 2] == 5.0
    net.biases[1] = np.array([[0.25], [-0.5]])
    np.testing.assert_array_equal(net.model.biases[1], [0.25, -0.5])
    new_w = [np.full((4, 3), 0.1), np.full((2, 4), -0.2)]
    net.weights = new_w
    np.testing.assert_array_equal(net.model.weights[1], new_w[1])
    x = np.array([[0.1], [0.2], [0.3]])
    w, b = params(net)
    np.testing.assert_allclose(net.feedforward(x), reference.feedforward(w, b, x.T).T, rtol=TOL)
    assert net.feedforward(x).shape == (2, 1)
    before = net.model.params.copy()
    with pytest.raises(ValueError):
        net.weights = [np.zeros((4, 3)), np.zeros((3, 3))]  # second has the wrong shape
    np.testing.assert_array_equal(net.model.params, before)


def test_cost_argument_errors():
    with pytest.raises(TypeError, match="cost must be"):
        Network([2, 2], cost=object)
    with pytest.raises(TypeError, match="cost must be"):
        Network([2, 2], cost=CrossEntropyCost())

    class MyCost(CrossEntropyCost):
        pass

    with pytest.raises(TypeError, match="cost must be"):
        Network([2, 2], cost=MyCost)
    net = make_net([2, 3, 2], CrossEntropyCost)
    before = net.model.params.copy()
    net.cost = QuadraticCost
    assert net.model.cost_name == "quadratic"
    np.testing.assert_array_equal(net.model.params, before)


# ---------------------------------------------------------------- backprop and update_mini_batch
@pytest.mark.parametrize("cost, name", COSTS)
@pytest.mark.parametrize("sizes", [[4, 5, 3], [3, 6, 5, 4, 2]])
def test_backprop_matches_reference(cost, name, sizes):
    rng = np.random.default_rng(2)
    net = make_net(sizes, cost, seed=3)
    (x, y), = book_data(rng, 1, sizes[0], sizes[-1], vectorized=True)
    nabla_b, nabla_w = net.backprop(x, y)
    w, b = params(net)
    ref_b, ref_w = reference.backprop(w, b, x, y, cost=name)
    assert len(nabla_b) == len(nabla_w) == len(sizes) - 1
    for got, want in zip(nabla_w, ref_w):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    for got, want in zip(nabla_b, ref_b):
        assert got.shape == (want.shape[0], 1)
        np.testing.assert_allclose(got.ravel(), want, rtol=0, atol=TOL)


@pytest.mark.parametrize("cost, name", COSTS)
@pytest.mark.parametrize("sizes, m", [([4, 5, 3], 6), ([3, 6, 5, 4, 2], 5), ([3, 6, 5, 4, 2], 1)])
def test_update_mini_batch_matches_reference(cost, name, sizes, m):
    rng = np.random.default_rng(4)
    net = make_net(sizes, cost, seed=5)
    batch = book_data(rng, m, sizes[0], sizes[-1], vectorized=True)
    X, Y = as_arrays(batch, sizes[-1])
    w, b = params(net)
    eta, lmbda, n = 0.7, 2.5, 40
    ref_w, ref_b = reference.update_mini_batch_per_example(w, b, X, Y, eta, cost=name, lmbda=lmbda, n=n)
    net.update_mini_batch(batch, eta, lmbda, n)
    for got, want in zip(net.weights, ref_w):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    for got, want in zip(net.biases, ref_b):
        np.testing.assert_allclose(got.ravel(), want, rtol=0, atol=TOL)


# ---------------------------------------------------------------- SGD with monitoring
def book_orders(training_data, epochs, seed):
    """The book's shuffle: a copy of training_data shuffled in place every epoch; orders by identity."""
    random.seed(seed)
    position = {id(pair): i for i, pair in enumerate(training_data)}
    shuffled = list(training_data)
    orders = []
    for _ in range(epochs):
        random.shuffle(shuffled)
        orders.append(np.array([position[id(pair)] for pair in shuffled]))
    return orders


@pytest.mark.parametrize("cost, name", COSTS)
def test_sgd_matches_reference_with_monitoring(cost, name, capsys):
    rng = np.random.default_rng(6)
    sizes, n, batch, eta, lmbda, epochs = [5, 7, 4, 3], 11, 4, 0.9, 1.5, 2  # last batch has 3 rows
    training_data = book_data(rng, n, sizes[0], sizes[-1], vectorized=True)
    evaluation_data = book_data(rng, 6, sizes[0], sizes[-1], vectorized=False)
    snapshot = list(training_data)
    net = make_net(sizes, cost, seed=9)
    w, b = params(net)

    random.seed(123)
    result = net.SGD(training_data, epochs, batch, eta, lmbda=lmbda, evaluation_data=evaluation_data,
                     monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                     monitor_training_cost=True, monitor_training_accuracy=True)
    assert isinstance(result, tuple) and len(result) == 4
    evaluation_cost, evaluation_accuracy, training_cost, training_accuracy = result
    assert [len(r) for r in result] == [epochs] * 4
    assert [p is q for p, q in zip(training_data, snapshot)] == [True] * n  # caller's list not shuffled

    X, Y = as_arrays(training_data, sizes[-1])
    Xe, Ye = as_arrays(evaluation_data, sizes[-1])
    labels = np.array([y for _, y in evaluation_data])
    for epoch, order in enumerate(book_orders(training_data, epochs, seed=123)):
        w, b = reference.sgd_epoch(w, b, X, Y, batch_size=batch, eta=eta, method="per_example",
                                   cost=name, lmbda=lmbda, order=order)
        assert training_cost[epoch] == pytest.approx(
            reference.total_cost(w, b, X, Y, cost=name, lmbda=lmbda), rel=TOL)
        assert evaluation_cost[epoch] == pytest.approx(
            reference.total_cost(w, b, Xe, Ye, cost=name, lmbda=lmbda, n=len(Xe)), rel=TOL)
        out_train = reference.feedforward(w, b, X)
        assert training_accuracy[epoch] == int(np.sum(out_train.argmax(1) == Y.argmax(1)))
        assert evaluation_accuracy[epoch] == int(np.sum(reference.feedforward(w, b, Xe).argmax(1) == labels))
    for got, want in zip(net.weights, w):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    for got, want in zip(net.biases, b):
        np.testing.assert_allclose(got.ravel(), want, rtol=0, atol=TOL)

    expected = []
    for j in range(epochs):
        expected += ["Epoch %s training complete" % j,
                     "Cost on training data: {}".format(training_cost[j]),
                     "Accuracy on training data: {} / {}".format(training_accuracy[j], n),
                     "Cost on evaluation data: {}".format(evaluation_cost[j]),
                     "Accuracy on evaluation data: {} / {}".format(evaluation_accuracy[j], len(evaluation_data)),
                     ""]
    assert capsys.readouterr().out.split("\n")[:-1] == expected
    assert all(isinstance(c, float) for c in training_cost + evaluation_cost)
    assert all(type(a) is int for a in training_accuracy + evaluation_accuracy)


def test_sgd_without_monitoring_returns_empty_lists(capsys):
    rng = np.random.default_rng(10)
    net = make_net([3, 4, 2], CrossEntropyCost)
    result = net.SGD(book_data(rng, 5, 3, 2, vectorized=True), 3, 2, 0.5)
    assert result == ([], [], [], [])
    assert capsys.readouterr().out == "".join("Epoch %s training complete\n\n" % j for j in range(3))


@pytest.mark.parametrize("cost, name", COSTS)
def test_accuracy_and_total_cost_follow_convert_flags(cost, name):
    rng = np.random.default_rng(11)
    net = make_net([4, 6, 3], cost, seed=12)
    training_data = book_data(rng, 9, 4, 3, vectorized=True)
    test_data = book_data(rng, 7, 4, 3, vectorized=False)
    w, b = params(net)
    X, Y = as_arrays(training_data, 3)
    Xt, Yt = as_arrays(test_data, 3)
    assert net.accuracy(training_data, convert=True) == int(np.sum(
        reference.feedforward(w, b, X).argmax(1) == Y.argmax(1)))
    assert net.accuracy(test_data) == int(np.sum(reference.feedforward(w, b, Xt).argmax(1) == Yt.argmax(1)))
    assert net.total_cost(training_data, 0.4) == pytest.approx(
        reference.total_cost(w, b, X, Y, cost=name, lmbda=0.4), rel=TOL)
    # The book's own loop for test data: vectorize, mean of fn, L2 term over len(data).
    book = sum(cost.fn(net.feedforward(x), np.eye(3)[:, [y]]) for x, y in test_data) / len(test_data)
    book += 0.5 * (0.4 / len(test_data)) * sum(np.linalg.norm(wl) ** 2 for wl in w)
    assert net.total_cost(test_data, 0.4, convert=True) == pytest.approx(book, rel=1e-11)
    with pytest.raises(ValueError, match="convert=True"):
        net.accuracy(training_data)
    with pytest.raises(ValueError, match="convert=True"):
        net.total_cost(test_data, 0.4)


def test_bad_arguments_leave_network_untouched():
    rng = np.random.default_rng(13)
    net = make_net([3, 4, 2], CrossEntropyCost)
    training_data = book_data(rng, 6, 3, 2, vectorized=True)
    test_data = book_data(rng, 4, 3, 2, vectorized=False)
    before = net.model.params.copy()
    bad_calls = [
        (ValueError, lambda: net.SGD(training_data, 1, 2, 0.0)),
        (ValueError, lambda: net.SGD(training_data, -1, 2, 0.5)),
        (ValueError, lambda: net.SGD(training_data, 1, 0, 0.5)),
        (TypeError, lambda: net.SGD(training_data, 1.5, 2, 0.5)),
        (ValueError, lambda: net.SGD(training_data, 1, 2, 0.5, lmbda=-1.0)),
        (ValueError, lambda: net.SGD(test_data, 1, 2, 0.5)),  # int labels as training data
        (ValueError, lambda: net.SGD(training_data, 1, 2, 0.5, monitor_evaluation_accuracy=True)),
        (ValueError, lambda: net.SGD(training_data, 1, 2, 0.5, evaluation_data=training_data,
                                     monitor_evaluation_cost=True)),
        (ValueError, lambda: net.SGD([(np.zeros((5, 1)), np.zeros((2, 1)))], 1, 1, 0.5)),
        (ValueError, lambda: net.SGD([(np.full((3, 1), np.nan), np.zeros((2, 1)))], 1, 1, 0.5)),
        (ValueError, lambda: net.SGD([], 1, 1, 0.5)),
        (TypeError, lambda: net.SGD([np.zeros(3)], 1, 1, 0.5)),
        (TypeError, lambda: net.SGD(None, 1, 1, 0.5)),
        (ValueError, lambda: net.update_mini_batch(training_data, 0.5, 0.1, 0)),
        (ValueError, lambda: net.update_mini_batch(test_data, 0.5, 0.1, 10)),
        (ValueError, lambda: net.backprop(np.zeros((4, 1)), np.zeros((2, 1)))),
        (ValueError, lambda: net.feedforward(np.zeros((4, 1)))),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
        np.testing.assert_array_equal(net.model.params, before)
    with pytest.raises(ValueError, match=r"a must be an \(3, 1\) input column .* got shape \(3, 0\)"):
        net.feedforward(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="a must contain only finite values"):
        net.feedforward(np.full((3, 1), np.nan))


# ---------------------------------------------------------------- save and load
def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(14)
    net = make_net([4, 5, 3], QuadraticCost, seed=15)
    path = tmp_path / "net.json"
    net.save(str(path))
    data = json.loads(path.read_text())
    assert set(data) == {"sizes", "weights", "biases", "cost"}
    assert data["sizes"] == [4, 5, 3] and data["cost"] == "QuadraticCost"
    assert np.array(data["biases"][0]).shape == (5, 1)
    loaded = network2.load(str(path))
    assert loaded.cost is QuadraticCost and loaded.sizes == [4, 5, 3]
    for got, want in zip(loaded.weights + loaded.biases, net.weights + net.biases):
        np.testing.assert_array_equal(got, want)
    x = rng.random((4, 1))
    np.testing.assert_array_equal(loaded.feedforward(x), net.feedforward(x))


def test_load_file_in_the_books_format(tmp_path):
    rng = np.random.default_rng(16)
    sizes = [3, 4, 2]
    weights = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))]
    biases = [rng.normal(size=(4, 1)), rng.normal(size=(2, 1))]
    path = tmp_path / "book.json"
    # What the book's save writes: json.dump of the dict, arrays as nested lists.
    with open(path, "w") as f:
        json.dump({"sizes": sizes, "weights": [w.tolist() for w in weights],
                   "biases": [b.tolist() for b in biases], "cost": "CrossEntropyCost"}, f)
    net = network2.load(path)
    assert net.cost is CrossEntropyCost
    x = rng.random((3, 1))
    a = x
    for w, b in zip(weights, biases):
        a = 1 / (1 + np.exp(-(w @ a + b)))
    np.testing.assert_allclose(net.feedforward(x), a, rtol=TOL)


@pytest.mark.parametrize("cost_name", ["os.system", "load", "Network", "sys", "json", "__class__", "", 3, None])
def test_load_refuses_other_cost_names(tmp_path, cost_name):
    path = tmp_path / "evil.json"
    path.write_text(json.dumps({"sizes": [2, 1], "weights": [[[0.0, 0.0]]], "biases": [[[0.0]]],
                                "cost": cost_name}))
    with pytest.raises(ValueError, match="cost must be 'QuadraticCost' or 'CrossEntropyCost'"):
        network2.load(path)


@pytest.mark.parametrize("content, message", [
    ("not json", "does not parse"),
    ("[1, 2]", "JSON object"),
    ('{"sizes": [2, 1], "weights": [[[0, 0]]], "cost": "QuadraticCost"}', "missing biases"),
    ('{"sizes": [2], "weights": [], "biases": [], "cost": "QuadraticCost"}', "sizes must be"),
    ('{"sizes": [2, 1], "weights": [[[0, 0, 0]]], "biases": [[[0]]], "cost": "QuadraticCost"}', "weights"),
    ('{"sizes": [2, 1], "weights": [[[0, 0]], [[1]]], "biases": [[[0]]], "cost": "QuadraticCost"}', "weights"),
    ('{"sizes": [2, 1], "weights": [[[0, "a"]]], "biases": [[[0]]], "cost": "QuadraticCost"}', "weights"),
    ('{"sizes": [2, 1], "weights": [[[0, [1]]]], "biases": [[[0]]], "cost": "QuadraticCost"}', "weights"),
    ('{"sizes": [2, 1], "weights": [[[0, NaN]]], "biases": [[[0]]], "cost": "QuadraticCost"}', "weights"),
])
def test_load_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises((ValueError, TypeError), match=message):
        network2.load(path)


def test_save_failure_leaves_no_file(tmp_path):
    net = make_net([2, 2], CrossEntropyCost)
    with pytest.raises(OSError):
        net.save(tmp_path / "missing-dir" / "net.json")
    assert not (tmp_path / "missing-dir").exists()


def test_save_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.json"
    make_net([2, 2], CrossEntropyCost).save(path)
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        make_net([3, 2], CrossEntropyCost).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["net.json"]
