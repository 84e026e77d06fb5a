"""fastbp.sklearn: scikit-learn's estimator checks, scikit-learn's own MLP as the reference, and behaviour."""
import pickle
import warnings

import numpy as np
import pytest
from scipy import sparse
from sklearn import neural_network
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastbp import ScaledInputs
from fastbp.sklearn import MLPClassifier, MLPRegressor

# Same updates in another order of arithmetic (kernels vs NumPy/BLAS), over a few epochs: float64 rounding.
REF_ATOL = 1e-10
# The float32 network against the float64 one after a few epochs, relative to the values' scale.
F32_RTOL = 1e-3


@parametrize_with_checks([
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.01),
    MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.01),
])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ------------------------------------------------------------------------------- data
def regression_data(rng, n=24, n_features=3, n_outputs=1):
    X = rng.standard_normal((n, n_features))
    Y = np.tanh(X @ rng.standard_normal((n_features, n_outputs))) + 0.1 * rng.standard_normal((n, n_outputs))
    return X, Y.ravel() if n_outputs == 1 else Y


def classification_data(rng, n=24, n_features=3, n_classes=3):
    X = rng.standard_normal((n, n_features))
    y = np.argmax(X @ rng.standard_normal((n_features, n_classes)), axis=1)
    y[:n_classes] = np.arange(n_classes)  # every class present
    return X, y


def quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


# ------------------------------------------------------------------------------- scikit-learn as reference
SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    "sgd-nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, learning_rate_init=0.05),
    "sgd-momentum": dict(solver="sgd", momentum=0.5, nesterovs_momentum=False, learning_rate_init=0.05),
    "sgd-invscaling": dict(solver="sgd", momentum=0.0, learning_rate="invscaling", power_t=0.3,
                           learning_rate_init=0.2),
    "adam": dict(solver="adam", learning_rate_init=0.02),
}
TASKS = {
    "regressor": (MLPRegressor, neural_network.MLPRegressor, dict(n_outputs=1)),
    "regressor-2-outputs": (MLPRegressor, neural_network.MLPRegressor, dict(n_outputs=2)),
    "multiclass": (MLPClassifier, neural_network.MLPClassifier, dict(n_classes=3)),
    "binary": (MLPClassifier, neural_network.MLPClassifier, dict(n_classes=2)),
}


@pytest.mark.parametrize("batch_size", [8, 24])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_matches_scikit_learn_from_the_same_start(rng, task, solver, batch_size):
    ours_cls, theirs_cls, shape = TASKS[task]
    make = regression_data if ours_cls is MLPRegressor else classification_data
    X, y = make(rng, **shape)
    settings = dict(hidden_layer_sizes=(5, 4), activation="tanh", alpha=1e-3, batch_size=batch_size,
                    shuffle=False, tol=0.0, n_iter_no_change=1000, warm_start=True, random_state=0,
                    **SOLVERS[solver])
    ours, theirs = ours_cls(max_iter=1, **settings), theirs_cls(max_iter=1, **settings)
    # One epoch builds each network (and its output layer); then both get the same parameters, drawn here,
    # and a warm-started fit trains them from there, each with a fresh optimizer state.
    quiet_fit(ours, X, y)
    quiet_fit(theirs, X, y)
    start_w = [rng.uniform(-0.8, 0.8, c.shape) for c in theirs.coefs_]
    start_b = [rng.uniform(-0.8, 0.8, b.shape) for b in theirs.intercepts_]
    theirs.coefs_, theirs.intercepts_ = [w.copy() for w in start_w], [b.copy() for b in start_b]
    ours.coefs_, ours.intercepts_ = start_w, start_b
    epochs = 6
    for est in (ours, theirs):
        est.set_params(max_iter=epochs)
        quiet_fit(est, X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=REF_ATOL)
    assert not np.allclose(ours.coefs_[0], start_w[0])  # it did train
    assert ours.n_iter_ == theirs.n_iter_ == epochs
    assert ours.t_ == theirs.t_ == (epochs + 1) * X.shape[0]
    if batch_size == X.shape[0]:
        # scikit-learn's loss of an epoch is taken before its one update, fastbp's after it.
        np.testing.assert_allclose(ours.loss_curve_[1:-1], theirs.loss_curve_[2:], rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X) if ours_cls is MLPRegressor else ours.predict_proba(X),
                               theirs.predict(X) if ours_cls is MLPRegressor else theirs.predict_proba(X),
                               rtol=0, atol=REF_ATOL)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_same_random_state_gives_scikit_learns_initial_weights(rng, activation):
    # Glorot-uniform draws in scikit-learn's order: with the same random_state both networks start alike, so
    # after the same (deterministic, full-batch, unshuffled) epochs they still agree.
    X, y = classification_data(rng, n=30)
    settings = dict(hidden_layer_sizes=(6,), activation=activation, solver="sgd", momentum=0.0,
                    learning_rate_init=0.1, batch_size=30, shuffle=False, max_iter=3, random_state=7)
    ours = quiet_fit(MLPClassifier(**settings), X, y)
    theirs = quiet_fit(neural_network.MLPClassifier(**settings), X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=REF_ATOL)


def test_loss_is_scikit_learns_definition_with_the_l2_term(rng):
    X, y = regression_data(rng, n_outputs=2)
    est = quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), alpha=0.5, max_iter=3, random_state=0), X, y)
    pred = est.predict(X)
    penalty = 0.5 * 0.5 * sum(np.sum(w ** 2) for w in est.coefs_) / X.shape[0]
    assert est.loss_ == pytest.approx(0.5 * np.mean((y - pred) ** 2) + penalty, rel=1e-12)
    assert est.loss_curve_[-1] == est.loss_


# ------------------------------------------------------------------------------- classifier behaviour
def test_predict_proba_rows_sum_to_one_and_log_proba(rng):
    X, y = classification_data(rng, n=60, n_classes=4)
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0), X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (60, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(est.predict_log_proba(X), np.log(proba), rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X), est.classes_[np.argmax(proba, axis=1)])
    assert est.out_activation_ == "softmax"


def test_string_labels(rng):
    X, y = classification_data(rng, n=60)
    names = np.array(["cat", "dog", "emu"])[y]
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, learning_rate_init=0.02,
                                  random_state=0), X, names)
    np.testing.assert_array_equal(est.classes_, ["cat", "dog", "emu"])
    pred = est.predict(X)
    assert set(pred) <= {"cat", "dog", "emu"}
    assert np.mean(pred == names) > 0.8


def test_binary_uses_one_sigmoid_unit(rng):
    X, y = classification_data(rng, n=60, n_classes=2)
    labels = np.where(y == 1, "yes", "no")
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, learning_rate_init=0.02,
                                  random_state=0), X, labels)
    assert est.n_outputs_ == 1 and est.out_activation_ == "logistic" and est.coefs_[-1].shape == (8, 1)
    proba = est.predict_proba(X)
    assert proba.shape == (60, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(X), np.where(proba[:, 1] > 0.5, "yes", "no"))
    assert est.score(X, labels) > 0.8


def test_multilabel(rng):
    X = rng.standard_normal((80, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < 0.5], axis=1).astype(int)
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.02,
                                  random_state=0), X, Y)
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 3
    proba = est.predict_proba(X)
    assert proba.shape == (80, 3) and np.all((proba >= 0) & (proba <= 1))
    pred = est.predict(X)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert np.mean(pred == Y) > 0.9


# ------------------------------------------------------------------------------- training behaviour
def test_early_stopping_restores_the_best_parameters(rng):
    X, y = regression_data(rng, n=80)
    y = y + 0.5 * rng.standard_normal(80)  # noisy: the validation score peaks, then falls
    settings = dict(hidden_layer_sizes=(32,), solver="adam", learning_rate_init=0.05, early_stopping=True,
                    validation_fraction=0.25, n_iter_no_change=5, tol=0.0, random_state=3, max_iter=200)
    full = quiet_fit(MLPRegressor(**settings), X, y)
    scores = np.asarray(full.validation_scores_)
    best = int(np.argmax(scores)) + 1  # the epoch of the (first) best validation score
    assert best < full.n_iter_ and full.best_validation_score_ == scores.max()
    assert full.best_loss_ is None and len(full.loss_curve_) == full.n_iter_ == len(scores)
    # The same run cut at the best epoch ends with that epoch's parameters.
    cut = quiet_fit(MLPRegressor(**dict(settings, max_iter=best)), X, y)
    np.testing.assert_array_equal(cut.validation_scores_, scores[:best])
    for a, b in zip(full.coefs_ + full.intercepts_, cut.coefs_ + cut.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_classifier_stratified_split(rng):
    X, y = classification_data(rng, n=100, n_classes=4)
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.2,
                                  learning_rate_init=0.02, max_iter=50, random_state=0), X, y)
    # Accuracy on 20 validation rows comes in steps of 1/20.
    assert all(abs(s * 20 - round(s * 20)) < 1e-9 for s in est.validation_scores_)
    assert est.best_validation_score_ == max(est.validation_scores_)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_equals_fit_for_one_epoch(rng, solver):
    X, y = classification_data(rng, n=50)
    settings = dict(hidden_layer_sizes=(6,), solver=solver, batch_size=10, random_state=4)
    fitted = quiet_fit(MLPClassifier(max_iter=1, **settings), X, y)
    partial = MLPClassifier(**settings).partial_fit(X, y, classes=[0, 1, 2])
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, partial.coefs_ + partial.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert partial.n_iter_ == 1 and partial.t_ == 50


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_keeps_the_optimizer_state(rng, solver):
    # Unshuffled, two partial_fit calls are two epochs of one fit only if Adam's moments and step count (or
    # the momentum velocity) carry over between the calls.
    X, y = regression_data(rng, n=40)
    settings = dict(hidden_layer_sizes=(6,), solver=solver, momentum=0.9, batch_size=10, shuffle=False,
                    random_state=1)
    fitted = quiet_fit(MLPRegressor(max_iter=3, **settings), X, y)
    partial = MLPRegressor(**settings)
    for _ in range(3):
        partial.partial_fit(X, y)
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, partial.coefs_ + partial.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    np.testing.assert_allclose(partial.loss_curve_, fitted.loss_curve_, rtol=1e-13)
    assert partial.t_ == 120


def test_warm_start_continues(rng):
    # Plain SGD, unshuffled: the optimizer has no state, so 3 epochs then 2 warm-started ones are 5 epochs.
    X, y = regression_data(rng, n=30)
    settings = dict(hidden_layer_sizes=(6,), solver="sgd", momentum=0.0, learning_rate_init=0.05, shuffle=False,
                    random_state=2, tol=0.0, n_iter_no_change=100)
    five = quiet_fit(MLPRegressor(max_iter=5, **settings), X, y)
    warm = quiet_fit(MLPRegressor(max_iter=3, warm_start=True, **settings), X, y)
    warm.set_params(max_iter=2)
    quiet_fit(warm, X, y)
    for a, b in zip(five.coefs_ + five.intercepts_, warm.coefs_ + warm.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    np.testing.assert_allclose(warm.loss_curve_, five.loss_curve_, rtol=1e-13)
    assert warm.n_iter_ == 2 and warm.t_ == five.t_ == 150
    cold = quiet_fit(MLPRegressor(max_iter=3, **settings), X, y)
    cold.set_params(max_iter=2)
    quiet_fit(cold, X, y)  # without warm_start a second fit starts over
    assert len(cold.loss_curve_) == 2


def test_convergence_warning_and_tol_stop(rng):
    X, y = regression_data(rng)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        settings = dict(hidden_layer_sizes=(4,), max_iter=500, tol=10.0, n_iter_no_change=2, random_state=0)
        est = MLPRegressor(**settings).fit(X, y)
    # A huge tol: only the first epoch improves (on an infinite best loss), then n_iter_no_change + 1 stale
    # epochs stop training, as in scikit-learn.
    assert est.n_iter_ == 4 == neural_network.MLPRegressor(**settings).fit(X, y).n_iter_
    assert est.best_loss_ == min(est.loss_curve_)


def test_adaptive_learning_rate_divides_by_five_then_stops(rng):
    X, y = regression_data(rng)
    settings = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate="adaptive", learning_rate_init=1e-5,
                    tol=10.0, n_iter_no_change=1, max_iter=500, random_state=0)
    est = MLPRegressor(**settings).fit(X, y)
    # One improving epoch, then 1e-5 -> 2e-6 -> 4e-7 <= 1e-6 stops: three rounds of 2 stale epochs.
    assert est.n_iter_ == 7 == neural_network.MLPRegressor(**settings).fit(X, y).n_iter_


def test_float32(rng):
    X, y = classification_data(rng, n=40)
    settings = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0, learning_rate_init=0.01)
    est32 = quiet_fit(MLPClassifier(dtype="float32", **settings), X, y)
    est64 = quiet_fit(MLPClassifier(**settings), X, y)
    assert all(c.dtype == np.float32 for c in est32.coefs_ + est32.intercepts_)
    proba32 = est32.predict_proba(X)
    assert proba32.dtype == np.float32
    np.testing.assert_allclose(proba32, est64.predict_proba(X), rtol=F32_RTOL, atol=F32_RTOL)
    for a, b in zip(est32.coefs_, est64.coefs_):
        np.testing.assert_allclose(a, b, rtol=F32_RTOL, atol=F32_RTOL)


def test_regressor_output_shapes(rng):
    X, y = regression_data(rng)
    est = quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y)
    assert est.predict(X).shape == (24,) and est.n_outputs_ == 1 and est.out_activation_ == "identity"
    X, Y = regression_data(rng, n_outputs=3)
    est = quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, Y)
    assert est.predict(X).shape == (24, 3) and est.coefs_[-1].shape == (4, 3)


def test_scaled_inputs_equal_their_float_values(rng):
    values = rng.integers(0, 256, size=(40, 5), dtype=np.uint8)
    y = (values[:, 0] > values[:, 1]).astype(int)
    scaled = ScaledInputs(values, 1 / 255)
    settings = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=0, early_stopping=True,
                    validation_fraction=0.2, batch_size=8)
    a = quiet_fit(MLPClassifier(**settings), scaled, y)
    b = quiet_fit(MLPClassifier(**settings), values / 255, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(scaled), b.predict_proba(values / 255), atol=1e-12)
    assert a.n_features_in_ == 5


def test_pickle_round_trip(rng):
    X, y = classification_data(rng, n=40)
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0), X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    for a, b in zip(copy.coefs_, est.coefs_):
        np.testing.assert_array_equal(a, b)
    copy.partial_fit(X, y)  # the unpickled network trains, and on its own parameters only
    assert not np.array_equal(copy.coefs_[0], est.coefs_[0])


def test_coefs_are_live_views_in_scikit_learns_orientation(rng):
    X, y = regression_data(rng)
    est = quiet_fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0), X, y)
    assert [c.shape for c in est.coefs_] == [(3, 5), (5, 1)]
    est.coefs_[1] = np.zeros((5, 1))
    est.intercepts_[1][...] = 2.5
    np.testing.assert_allclose(est.predict(X), 2.5)
    with pytest.raises(ValueError, match=r"coefs_\[0\] must have shape \(3, 5\)"):
        est.coefs_ = [np.zeros((5, 3)), np.zeros((5, 1))]


# ------------------------------------------------------------------------------- refusals
def test_refused_input_leaves_a_fitted_estimator_unchanged(rng):
    X, y = classification_data(rng, n=40)
    est = quiet_fit(MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0), X, y)
    before = pickle.dumps(est)
    params = [c.copy() for c in est.coefs_ + est.intercepts_]
    bad_y = rng.standard_normal(40)  # continuous targets, on X with another number of features
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(rng.standard_normal((40, 5)), bad_y)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        est.fit(X, np.where(np.arange(40) == 3, np.nan, y))
    with pytest.raises(ValueError, match="X has 5 features"):
        est.partial_fit(rng.standard_normal((40, 5)), y)
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X, y + 10)
    assert est.n_features_in_ == 3
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    for a, b in zip(params, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert pickle.dumps(est) == before


@pytest.mark.parametrize("param, value, error, message", [
    ("alpha", -1.0, InvalidParameterError, "'alpha' parameter"),
    ("learning_rate_init", 0.0, InvalidParameterError, "'learning_rate_init' parameter"),
    ("activation", "softplus", InvalidParameterError, "'activation' parameter"),
    ("momentum", 1.0, InvalidParameterError, "'momentum' parameter"),
    ("dtype", "float16", InvalidParameterError, "'dtype' parameter"),
    ("n_threads", 0, InvalidParameterError, "'n_threads' parameter"),
    ("solver", "lbfgs", ValueError, "solver must be 'adam' or 'sgd'; got 'lbfgs'"),
    ("hidden_layer_sizes", (4, 0), ValueError, "hidden_layer_sizes must be positive ints"),
])
def test_bad_parameters_are_named(rng, param, value, error, message):
    X, y = classification_data(rng)
    est = MLPClassifier(**{param: value})
    assert est.get_params()[param] is value  # stored unchanged
    with pytest.raises(error, match=message):
        est.fit(X, y)


def test_refusals_name_the_problem(rng):
    X, y = classification_data(rng)
    with pytest.raises(TypeError, match="toarray"):
        MLPClassifier(max_iter=1).fit(sparse.csr_matrix(X), y)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping must be False for partial_fit"):
        MLPRegressor(early_stopping=True).partial_fit(X, y.astype(float))
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.01).fit(X, y.astype(float))
    est = quiet_fit(MLPRegressor(hidden_layer_sizes=(3,), max_iter=2), X, y.astype(float))
    with pytest.raises(ValueError, match="y must have 1 outputs to continue"):
        est.partial_fit(X, np.ones((24, 2)))


def test_divergence_raises_and_keeps_finite_parameters(rng):
    X = 1e3 * rng.standard_normal((30, 3))
    y = 1e6 * rng.standard_normal(30)
    est = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", learning_rate_init=0.5, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the loss of the epochs before
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            est.fit(X, y)
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
