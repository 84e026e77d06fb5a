"""The MLP array API: construction, live parameters, validation at the boundary, fit options."""
import pickle

import numpy as np
import pytest

from conftest import F64_ATOL, copy_params
from fastbp import MLP, reference


def numpy_forward(net, X):
    a = X
    for w, b in zip(net.weights, net.biases):
        a = 1 / (1 + np.exp(-(a @ w.T + b)))
    return a


def test_shapes_and_same_seed_same_weights():
    net = MLP([7, 5, 3], seed=42)
    assert [w.shape for w in net.weights] == [(5, 7), (3, 5)]
    assert [b.shape for b in net.biases] == [(5,), (3,)]
    assert net.n_params == 5 * 7 + 5 + 3 * 5 + 3
    twin = MLP([7, 5, 3], seed=42)
    np.testing.assert_array_equal(net.params, twin.params)
    assert not np.array_equal(net.params, MLP([7, 5, 3], seed=43).params)


def test_default_init_scales_weights_by_fan_in():
    net = MLP([400, 300, 10], seed=0)
    assert np.std(net.weights[0]) == pytest.approx(1 / np.sqrt(400), rel=0.05)
    large = MLP([400, 300, 10], seed=0, init="large")
    assert np.std(large.weights[0]) == pytest.approx(1.0, rel=0.05)


def test_parameters_are_live_in_place_and_by_assignment(rng):
    net = MLP([4, 3, 2], seed=1)
    X = rng.random((5, 4))
    net.weights[0][1, 2] = 5.0
    np.testing.assert_allclose(net.forward(X), numpy_forward(net, X), atol=F64_ATOL)
    assert net.params[1 * 4 + 2] == 5.0
    new_w = rng.standard_normal((2, 3))
    net.weights[1] = new_w
    np.testing.assert_array_equal(net.weights[1], new_w)
    net.biases = [np.zeros(3), np.ones((2, 1))]  # a (n, 1) column is accepted for a bias
    np.testing.assert_array_equal(net.biases[1], np.ones(2))
    np.testing.assert_allclose(net.forward(X), numpy_forward(net, X), atol=F64_ATOL)
    net.weights[np.int64(0)] = np.full((3, 4), 0.5)  # numpy's integers index as ints do
    np.testing.assert_array_equal(net.weights[0], np.full((3, 4), 0.5))
    with pytest.raises(TypeError, match="weights items are assigned one at a time; got index slice"):
        net.weights[0:1] = [np.zeros((3, 4))]


def test_bad_assignment_leaves_parameters_untouched():
    net = MLP([4, 3, 2], seed=1)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(3, 4\); got \(4, 3\)"):
        net.weights[0] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"biases must be a list of 2 arrays \(one per layer after the input layer\); got 1"):
        net.biases = [np.zeros(3)]
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape"):
        net.weights = [np.zeros((3, 4)), np.zeros((3, 3))]  # first fits, second does not: nothing changes
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(sizes=[3]), ValueError, "sizes must list at least two layers"),
    (dict(sizes=[3, 0, 2]), ValueError, "sizes must contain positive ints"),
    (dict(sizes="784,30"), TypeError, "sizes must be a sequence of ints"),
    (dict(sizes=[3, 2], dtype="int32"), ValueError, "dtype must be 'float32' or 'float64'; got 'int32'"),
    (dict(sizes=[3, 2], activation="swish"), ValueError, "activation of layer 1 must be one of"),
    (dict(sizes=[3, 2, 2], activation=["softmax", "sigmoid"]), ValueError, "only allowed on the output layer"),
    (dict(sizes=[3, 2, 2], activation=["relu"]), ValueError, "one entry per weight layer"),
    (dict(sizes=[3, 2], cost="hinge"), ValueError, "cost must be one of"),
    (dict(sizes=[3, 2], seed=-1), ValueError, "seed must be an int >= 0; got -1"),
    (dict(sizes=[3, 2], n_threads=0), ValueError, "n_threads must be an int >= 1; got 0"),
    (dict(sizes=[3, 2], init="xavier"), ValueError, "init must be one of"),
])
def test_constructor_validation(kwargs, error, match):
    sizes = kwargs.pop("sizes")
    with pytest.raises(error, match=match):
        MLP(sizes, **kwargs)


@pytest.mark.parametrize("X,y,match", [
    (np.zeros((4, 5)), np.zeros(4, int), r"X must have 3 columns to match the network; got shape \(4, 5\)"),
    (np.zeros(3), np.zeros(1, int), "X must be a 2-D array"),
    (np.array([[1, 2, 3]], dtype=object), np.zeros(1, int), "X must be an array of real numbers"),
    (np.ones((2, 3), dtype=bool), np.zeros(2, int), "X must be an array of real numbers"),
    (np.full((2, 3), np.nan), np.zeros(2, int), "X must contain only finite values"),
    (np.zeros((4, 3)), np.zeros(5, int), r"y must have one label per row of X \(4\); got 5"),
    (np.zeros((4, 3)), np.array([0, 1, 2, 2]), r"y must hold class labels in \[0, 1\]"),
    (np.zeros((4, 3)), np.array([0.5, 1, 0, 0]), "y given as 1-D must hold integer class labels"),
    (np.zeros((4, 3)), np.zeros((4, 3)), r"y must be labels \(4,\) or targets \(4, 2\)"),
    ([[1, 2, 3], [4, 5]], np.zeros(2, int), "X must be an array or equal-length nested lists; got a ragged"),
    (np.zeros((4, 3)), np.array([0, 1, 1e20, 0]), r"y must hold class labels in \[0, 1\] .* got values in "
                                                  r"\[0, 1e\+20\]"),
    (np.zeros((4, 3)), np.array([0, 1, 2 ** 63 + 5, 0], np.uint64), r"got values in \[0, 9\.22337e\+18\]"),
    (np.full((4, 3), 1e300), np.zeros(4, int), "X must hold values within float32's range .* got larger ones"),
    (np.zeros((4, 3)), np.full((4, 2), -1e300), "y must hold values within float32's range"),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_rejects_bad_data_and_leaves_the_model_untouched(X, y, match, dtype):
    if "float32's range" in match and dtype == "float64":
        pytest.skip("these values are within float64's range")
    net = MLP([3, 4, 2], seed=0, dtype=dtype)
    before = net.params.copy()
    with pytest.raises((ValueError, TypeError), match=match):
        net.fit(X, y, epochs=1, batch_size=2, eta=1.0)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=-1), "epochs must be an int >= 0; got -1"),
    (dict(batch_size=0), "batch_size must be an int >= 1; got 0"),
    (dict(eta=0.0), r"eta must be a finite float in the range \(0.0, inf\); got 0.0"),
    (dict(eta=float("nan")), "eta must be a finite float"),
    (dict(lmbda=-1), r"lmbda must be a finite float in the range \[0.0, inf\); got -1.0"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(nesterov=True), "nesterov=True needs momentum"),
    (dict(early_stopping=3), "early_stopping needs validation_data"),
    (dict(validation_data=np.zeros((2, 3))), "validation_data must be a pair"),
    (dict(callback=5), r"callback must be None or a callable \(epoch, history\) -> bool; got int 5"),
    (dict(optimizer="momentum", momentum=0.5, nesterov="no"), "nesterov must be True or False; got str 'no'"),
    (dict(shuffle=1), "shuffle must be True or False; got int 1"),
    (dict(monitor_gradients="yes"), "monitor_gradients must be True or False"),
])
def test_fit_rejects_bad_hyperparameters(rng, kwargs, match):
    net = MLP([3, 4, 2], seed=0)
    before = net.params.copy()
    args = dict(epochs=1, batch_size=2, eta=1.0) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        net.fit(rng.random((6, 3)), rng.integers(0, 2, 6), **args)
    np.testing.assert_array_equal(net.params, before)


def test_unflatten_checks_the_vector_and_splits_it_as_the_parameters():
    net = MLP([5, 4, 3], seed=2)
    weights, biases = net.unflatten(net.params)
    for got, want in zip(weights + biases, list(net.weights) + list(net.biases)):
        np.testing.assert_array_equal(got, want)
    weights, _ = net.unflatten(net.params.astype(np.float32))  # converted to the model's dtype
    assert weights[0].dtype == np.float64 and weights[0].shape == (4, 5)
    for bad, error, match in [(np.zeros(1), ValueError, r"n_params = 39 values; got \(1,\)"),
                              (list(net.params), ValueError, "1-D array .* got list"),
                              (np.zeros((39, 1)), ValueError, r"got \(39, 1\)"),
                              (np.zeros(39, complex), TypeError, "real numbers; got dtype complex128")]:
        with pytest.raises(error, match=match):
            net.unflatten(bad)


def test_callers_arrays_are_not_modified(rng):
    net = MLP([3, 4, 2], seed=0)
    X, y = rng.random((6, 3)), rng.integers(0, 2, 6)
    X_copy, y_copy = X.copy(), y.copy()
    net.fit(X, y, epochs=2, batch_size=4, eta=1.0)
    net.gradient(X, y)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_predict_score_cost_against_numpy(rng):
    net = MLP([6, 5, 3], seed=3)
    X, y = rng.random((40, 6)), rng.integers(0, 3, 40)
    out = numpy_forward(net, X)
    np.testing.assert_allclose(net.forward(X), out, atol=F64_ATOL)
    np.testing.assert_array_equal(net.predict(X), out.argmax(axis=1))
    assert net.score(X, y) == pytest.approx(np.mean(out.argmax(axis=1) == y))
    assert net.cost(X, y) == pytest.approx(0.5 * np.sum((out - np.eye(3)[y]) ** 2) / 40, rel=1e-13)


def test_forward_on_more_rows_than_one_chunk(rng):
    net = MLP([5, 7, 3], seed=3)
    X = rng.random((1000, 5))  # several evaluation chunks, the last one partial
    np.testing.assert_allclose(net.forward(X), numpy_forward(net, X), atol=F64_ATOL)


def test_fit_learns_and_reports_history(rng):
    from sklearn.datasets import load_digits
    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    net = MLP([64, 30, 10], seed=0)
    history = net.fit(X[:1500], y[:1500], epochs=5, batch_size=10, eta=3.0, validation_data=(X[1500:], y[1500:]),
                      monitor_training=True, monitor_gradients=True)
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert len(history["val_accuracy"]) == len(history["train_cost"]) == 5
    assert history["val_accuracy"][-1] > 0.85
    assert history["train_cost"][-1] < history["train_cost"][0]
    assert all(len(norms) == 2 and all(n > 0 for n in norms) for norms in history["grad_norms"])
    assert history["val_accuracy"][-1] == pytest.approx(net.score(X[1500:], y[1500:]))


@pytest.mark.parametrize("optimizer,extra", [("momentum", dict(momentum=0.9)),
                                             ("momentum", dict(momentum=0.9, nesterov=True)),
                                             ("sgd", dict(momentum=0.9)),
                                             ("sgd", dict(momentum=0.9, nesterov=True)),
                                             ("adam", dict())])
def test_optimizers_follow_their_update_rules(rng, optimizer, extra):
    """One epoch of each optimizer against the same rule written in NumPy on the reference gradient."""
    sizes, n, m, eta, lmbda = [5, 4, 3], 9, 4, 0.1, 0.5
    net = MLP(sizes, seed=2)
    X, y = rng.random((n, 5)), rng.integers(0, 3, n)
    Y = np.eye(3)[y]
    w, b = copy_params(net)
    params = w + b
    state = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    for t, start in enumerate(range(0, n, m), start=1):
        gw, gb = reference.mean_gradient(params[:2], params[2:], X[start:start + m], Y[start:start + m])
        grads = [g + lmbda / n * p for g, p in zip(gw, params[:2])] + gb
        for i, (p, g) in enumerate(zip(params, grads)):
            if optimizer == "adam":
                state[0][i] = 0.9 * state[0][i] + 0.1 * g
                state[1][i] = 0.999 * state[1][i] + 0.001 * g * g
                step = eta * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
                params[i] = p - step * state[0][i] / (np.sqrt(state[1][i]) + 1e-8)
            else:
                state[0][i] = 0.9 * state[0][i] - eta * g
                params[i] = p + (0.9 * state[0][i] - eta * g if extra.get("nesterov") else state[0][i])
    net.fit(X, y, epochs=1, batch_size=m, eta=eta, lmbda=lmbda, optimizer=optimizer, shuffle=False, **extra)
    for got, want in zip(list(net.weights) + list(net.biases), params):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_early_stopping_restores_the_best_parameters(rng):
    X, y = rng.random((30, 4)), rng.integers(0, 2, 30)
    Xv, yv = rng.random((20, 4)), rng.integers(0, 2, 20)  # noise: validation accuracy soon stalls
    net = MLP([4, 6, 2], seed=1)
    snapshots = []
    history = net.fit(X, y, epochs=40, batch_size=5, eta=2.0, validation_data=(Xv, yv), early_stopping=2,
                      callback=lambda epoch, h: snapshots.append(net.params.copy()))
    accuracies = history["val_accuracy"]
    assert len(accuracies) < 40
    best = int(np.argmax(accuracies))
    assert len(accuracies) == best + 1 + 2
    np.testing.assert_array_equal(net.params, snapshots[best])


def test_halving_eta_on_a_plateau(rng):
    X, y = rng.random((30, 4)), rng.integers(0, 2, 30)
    Xv, yv = rng.random((20, 4)), rng.integers(0, 2, 20)
    net = MLP([4, 6, 2], seed=1)
    history = net.fit(X, y, epochs=60, batch_size=5, eta=1.0, validation_data=(Xv, yv), halve_eta_after=1,
                      min_eta_fraction=1 / 8)
    etas = history["eta"]
    assert set(etas) <= {1.0, 0.5, 0.25, 0.125}
    assert etas == sorted(etas, reverse=True)
    assert len(etas) < 60  # stopped once eta fell below 1/8 of its start


def test_divergence_restores_the_last_finite_parameters(rng):
    X = rng.random((20, 3)) * 1e3
    Y = rng.random((20, 2)) * 1e3
    net = MLP([3, 4, 2], activation="linear", seed=0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        history = net.fit(X, Y, epochs=50, batch_size=5, eta=10.0)
    assert np.isfinite(net.params).all()
    assert len(history["epoch"]) < 50


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_and_load_give_identical_predictions(rng, tmp_path, suffix):
    import fastbp
    net = MLP([5, 4, 3], activation=["relu", "softmax"], cost="log-likelihood", dtype="float32", seed=2)
    path = tmp_path / f"model{suffix}"
    net.save(path)
    loaded = fastbp.load(path)
    X = rng.random((8, 5))
    np.testing.assert_array_equal(loaded.params, net.params)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    assert (loaded.activation_names, loaded.cost_name, loaded.dtype) == (net.activation_names, net.cost_name,
                                                                         net.dtype)


def test_callback_returning_true_stops_training(rng):
    net = MLP([3, 4, 2], seed=0)
    history = net.fit(rng.random((10, 3)), rng.integers(0, 2, 10), epochs=20, batch_size=5, eta=1.0,
                      callback=lambda epoch, h: epoch == 3)
    assert history["epoch"] == [1, 2, 3]


def test_pickled_model_keeps_live_parameter_views(rng):
    net = MLP([5, 4, 3], seed=1)
    net.fit(rng.random((20, 5)), rng.integers(0, 3, 20), epochs=1, batch_size=5, eta=1.0)
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.params, net.params)
    np.testing.assert_array_equal(copy.forward(np.ones((2, 5))), net.forward(np.ones((2, 5))))
    copy.weights[0][0, 0] = 7.0  # still a view of the parameter vector the kernels use
    assert copy.params[0] == 7.0 and net.params[0] != 7.0
