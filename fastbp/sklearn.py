"""scikit-learn estimators over fastbp's engine: :class:`MLPClassifier` and :class:`MLPRegressor`.

Drop-in replacements for ``sklearn.neural_network``'s classes of the same names, for the stochastic solvers
("sgd", "adam"). The parameters, fitted attributes, initialisation (Glorot uniform from ``random_state``),
update rules and stopping rules are scikit-learn's; each epoch runs as one jitted call of
:class:`fastbp.model.Trainer` instead of a Python loop over mini-batches. Differences, all documented on the
classes: no "lbfgs" solver and no ``sample_weight``; ``loss_`` is measured on the whole training set after
each epoch; the L2 term of a smaller last mini-batch is divided by ``batch_size``; with ``shuffle=True`` each
epoch's order is drawn from ``random_state`` but is not the order scikit-learn draws, so results equal
scikit-learn's only with ``shuffle=False``.
"""
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted, column_or_1d
from sklearn.utils.validation import validate_data

from . import kernels
from .inputs import ScaledInputs
from .model import MLP, ParameterList, Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's hidden activation names -> fastbp's.
ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
# scikit-learn's output activation name -> (fastbp activation, fastbp cost); each pair has BP1 delta a - y.
OUTPUTS = {"softmax": ("softmax", "log-likelihood"), "logistic": ("sigmoid", "cross-entropy"),
           "identity": ("linear", "quadratic")}
# scikit-learn's "adaptive" schedule stops once the learning rate is at most this.
MIN_ADAPTIVE_ETA = 1e-6


class _BaseMLP(BaseEstimator):
    """What both estimators share: parameters, initialisation, the training loop and the fitted attributes."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        # "lbfgs" passes here only to get its own message in _validate_params.
        "solver": [StrOptions({"sgd", "adam", "lbfgs"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        # The engine's momentum must stay below 1 (at 1 the velocity never decays).
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"), Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "dtype": [StrOptions({"float64", "float32"}), Options(type, {np.float64, np.float32})],
        "n_threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
    }

    def _store_parameters(self, arguments):
        """Keep every __init__ argument unchanged under its own name (scikit-learn's convention)."""
        for name, value in arguments.items():
            if name != "self":
                setattr(self, name, value)

    def _validate_params(self):
        if self.solver == "lbfgs":
            raise ValueError("solver must be 'adam' or 'sgd'; got 'lbfgs'. fastbp trains by mini-batch gradient "
                             "descent only: use scikit-learn's own MLP for L-BFGS.")
        super()._validate_params()

    # ------------------------------------------------------------------ fitted parameters
    @property
    def coefs_(self):
        """Weights per layer, ``coefs_[l]`` (n_in, n_out): live views of the network's parameters (the
        transposes of fastbp's ``weights[l]``). Assigning ``coefs_[l] = array`` or ``coefs_ = list`` copies in."""
        mlp = self._fitted_mlp("coefs_")
        return ParameterList([w.T for w in mlp.weights], "coefs_")

    @coefs_.setter
    def coefs_(self, new):
        self.coefs_.assign(new, self._mlp.params)

    @property
    def intercepts_(self):
        """Biases per layer, ``intercepts_[l]`` (n_out,): live views, like ``coefs_``."""
        mlp = self._fitted_mlp("intercepts_")
        return ParameterList(list(mlp.biases), "intercepts_")

    @intercepts_.setter
    def intercepts_(self, new):
        self.intercepts_.assign(new, self._mlp.params)

    def _fitted_mlp(self, name):
        # AttributeError (not NotFittedError) so that hasattr() and check_is_fitted see an unfitted estimator.
        if "_mlp" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} before it is fitted.")
        return self._mlp

    # ------------------------------------------------------------------ input validation
    def _dtype(self):
        return np.dtype(self.dtype)

    def _check_X(self, X, reset):
        """X for prediction: validated against the fitted n_features_in_ and converted once to the model's dtype."""
        if isinstance(X, ScaledInputs):
            self._check_scaled_features(X, reset)
            return X
        return validate_data(self, X, reset=reset, dtype=self._dtype(), order="C")

    def _check_X_y(self, X, y, reset, y_numeric):
        if isinstance(X, ScaledInputs):
            self._check_scaled_features(X, reset)
            y = check_array(y, ensure_2d=False, dtype="numeric" if y_numeric else None, input_name="y")
            check_consistent_length(X.values, y)
        else:
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=y_numeric, dtype=self._dtype(),
                                 order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _check_scaled_features(self, X, reset):
        if X.shape[0] == 0:
            raise ValueError(f"X must have at least one row; got shape {X.shape}.")
        if reset:
            self.n_features_in_ = X.shape[1]
            self.__dict__.pop("feature_names_in_", None)
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")

    # ------------------------------------------------------------------ training
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive ints; got {self.hidden_layer_sizes!r}.")
        return [int(s) for s in sizes]

    def _fit(self, X, y, incremental):
        hidden = self._hidden_sizes()
        first_pass = "_mlp" not in self.__dict__ or not (self.warm_start or incremental)
        # Validation sets n_features_in_ (and classes_) before it may still refuse y: undo that on a refusal,
        # so that a rejected input leaves a fitted estimator as it was.
        saved = dict(self.__dict__)
        try:
            X, Y = self._validate_input(X, y, incremental, reset=first_pass)
            if not first_pass and Y.shape[1] != self.n_outputs_:
                raise ValueError(f"y must have {self.n_outputs_} outputs to continue training (warm_start or "
                                 f"partial_fit); got {Y.shape[1]}.")
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], hidden, Y.shape[1])
        self._fit_stochastic(X, Y, incremental)
        return self

    def _initialize(self, n_features, hidden, n_outputs):
        """A new network with scikit-learn's Glorot-uniform weights and biases, drawn in its order."""
        self.n_outputs_ = n_outputs
        sizes = [n_features] + hidden + [n_outputs]
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._out_activation()
        out_act, cost = OUTPUTS[self.out_activation_]
        mlp = MLP(sizes, activation=[ACTIVATIONS[self.activation]] * len(hidden) + [out_act], cost=cost,
                  dtype=self._dtype(), n_threads=self.n_threads)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for w, b in zip(mlp.weights, mlp.biases):
            bound = np.sqrt(factor / (w.shape[1] + w.shape[0]))
            w[...] = self._random_state.uniform(-bound, bound, (w.shape[1], w.shape[0])).T
            b[...] = self._random_state.uniform(-bound, bound, b.shape[0])
        self._mlp = mlp
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._optimizer = None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _trainer(self, X, Y, batch_size, incremental):
        """A Trainer for this call; partial_fit carries the optimizer's state over from the call before."""
        sgd = self.solver == "sgd"
        momentum = float(self.momentum) if sgd else 0.0
        trainer = Trainer(self._mlp, X, Y, batch_size=batch_size, eta=float(self.learning_rate_init),
                          lmbda=float(self.alpha), optimizer=self.solver, momentum=momentum,
                          nesterov=sgd and momentum > 0 and bool(self.nesterovs_momentum),
                          beta1=float(self.beta_1), beta2=float(self.beta_2), epsilon=float(self.epsilon),
                          l2_n=batch_size)
        previous = self._optimizer
        if incremental and previous is not None and previous[0].shape == trainer.state.shape:
            trainer.state[...] = previous[0]
            trainer.hyper[kernels.ETA] = previous[1][kernels.ETA]  # a learning-rate schedule's current value
            trainer.hyper[kernels.ADAM_T] = previous[1][kernels.ADAM_T]
        return trainer

    def _fit_stochastic(self, X, Y, incremental):
        if self.early_stopping and incremental:
            raise ValueError("early_stopping must be False for partial_fit; got early_stopping=True.")
        X_val = Y_val = None
        if self.early_stopping:
            # Split row indices rather than the data, so that ScaledInputs split like arrays.
            n = X.shape[0]
            stratify = self._stratify_labels(Y)
            train, val = train_test_split(np.arange(n), random_state=self._random_state,
                                          test_size=self.validation_fraction, stratify=stratify)
            if val.shape[0] < 2:
                raise ValueError("The validation set is too small: validation_fraction must give at least 2 "
                                 f"rows; got {val.shape[0]} of {n}. Increase validation_fraction or the data.")
            X, Y, X_val, Y_val = X[train], Y[train], X[val], Y[val]
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                              UserWarning, stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        trainer = self._trainer(X, Y, batch_size, incremental)
        gen = np.random.default_rng(self._random_state.randint(np.iinfo(np.int32).max))
        sgd = self.solver == "sgd"
        params = self._mlp.params
        order = np.arange(n_samples)
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:
                order = gen.permutation(n_samples)
            before = params.copy()
            trainer.epoch(order)
            if not np.isfinite(params).all():
                params[...] = before
                self._optimizer = (trainer.state, trainer.hyper)
                raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                                 "values and need to be preprocessed (or learning_rate_init is too large); the "
                                 "parameters of the epoch before are kept.")
            self.n_iter_ += 1
            self.loss_ = self._loss(X, Y)
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._update_no_improvement_count(X_val, Y_val)
            if sgd and self.learning_rate == "invscaling":
                trainer.hyper[kernels.ETA] = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                       "consecutive epochs.")
                if sgd and self.learning_rate == "adaptive" and trainer.hyper[kernels.ETA] > MIN_ADAPTIVE_ETA:
                    trainer.hyper[kernels.ETA] /= 5.0
                    self._no_improvement_count = 0
                    if self.verbose:
                        print(f"{msg} Setting learning rate to {trainer.hyper[kernels.ETA]:f}")
                else:
                    if self.verbose:
                        print(f"{msg} Stopping.")
                    break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        self._optimizer = (trainer.state, trainer.hyper)
        if self.early_stopping:
            params[...] = self._best_params

    def _loss(self, X, Y):
        """scikit-learn's training loss at the current parameters: the data term (mean over rows) plus
        0.5 * alpha * sum(w^2) / n_samples."""
        out = self._mlp.forward(X)
        data = self._data_loss(Y, out)
        l2 = sum(float(np.dot(w.ravel(), w.ravel())) for w in self._mlp.weights)
        return float(data + 0.5 * self.alpha * l2 / X.shape[0])

    def _update_no_improvement_count(self, X_val, Y_val):
        if self.early_stopping:
            score = self._validation_score(X_val, Y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._mlp.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the network to X (n_samples, n_features) and y; returns self.

        With ``warm_start=True`` a fitted network continues from its parameters (with a fresh optimizer state,
        as scikit-learn), else it starts from new random ones.
        """
        return self._fit(X, y, incremental=False)

    def _forward(self, X):
        check_is_fitted(self)
        return self._mlp.forward(self._check_X(X, reset=False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


_PARAMETERS_DOC = """
    Parameters (scikit-learn's, same defaults)
    ----------
    hidden_layer_sizes : tuple of ints, default (100,); neurons per hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, the hidden layers' activation (fastbp's linear,
        sigmoid, tanh, relu).
    solver : {"adam", "sgd"}. "lbfgs" is not supported (fastbp trains by mini-batches only).
    alpha : L2 strength. Each mini-batch's weight gradient gets alpha * w / batch_size, as in scikit-learn,
        except on a smaller last batch, which scikit-learn divides by that batch's own size.
    batch_size : int or "auto" (min(200, n_samples)).
    learning_rate : {"constant", "invscaling", "adaptive"}, the "sgd" schedule (updated once per epoch, as in
        scikit-learn); power_t is invscaling's exponent.
    shuffle : reshuffle every epoch, by a generator seeded from random_state (reproducible, but not
        scikit-learn's order).
    learning_rate_init, max_iter, random_state, tol, verbose, warm_start, momentum (in [0, 1)),
    nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change :
        as in scikit-learn.
    max_fun : accepted for compatibility; only L-BFGS would use it.
    dtype : "float64" or "float32": the network's and the data's dtype (data are converted once per call).
    n_threads : threads for fastbp's kernels (default: all cores).

    Fitted attributes: coefs_ (n_in, n_out) per layer, intercepts_, n_layers_, n_outputs_, out_activation_,
    n_features_in_, feature_names_in_, loss_, loss_curve_, best_loss_, validation_scores_,
    best_validation_score_, n_iter_, t_.

    ``loss_`` and ``loss_curve_`` are the loss on the whole training set at the end of each epoch (the data
    term plus 0.5 * alpha * sum(w^2) / n_samples), i.e. the loss of the parameters the epoch produced.
    scikit-learn instead averages each mini-batch's loss taken before that batch's update (so with B batches
    its L2 term counts B times): with one batch per epoch, its loss_curve_[k + 1] is this loss_curve_[k].
    ``sample_weight`` is not supported. X may also be a :class:`fastbp.ScaledInputs` (integer-coded data).
    Sparse X is refused (TypeError): convert it with ``X.toarray()``.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    # A class docstring must be a literal: assemble it here instead, with the parameters both classes share.
    __doc__ = """Multi-layer perceptron classifier (log-loss), trained by fastbp's kernels.

    Multiclass: softmax outputs with the log-likelihood cost; binary: one sigmoid unit with the cross-entropy
    cost (as scikit-learn); multilabel (y a 2-D 0/1 indicator): sigmoid outputs with cross-entropy.
    """ + _PARAMETERS_DOC

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype="float64",
                 n_threads=None):
        self._store_parameters(locals())

    def _validate_input(self, X, y, incremental, reset):
        """(X, Y): Y the binarized targets (n_samples, n_outputs) in the model's dtype."""
        X, y = self._check_X_y(X, y, reset, y_numeric=False)
        check_classification_targets(y)
        if "classes_" not in self.__dict__ or not (self.warm_start or incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                 f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            if len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        Y = np.ascontiguousarray(self._label_binarizer.transform(y), dtype=self._dtype())
        return X, Y

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _data_loss(self, Y, out):
        # scikit-learn's log_loss / binary_log_loss: probabilities clipped to [eps, 1 - eps].
        eps = np.finfo(out.dtype).eps
        p = np.clip(out, eps, 1 - eps)
        if self.out_activation_ == "softmax":
            return -np.sum(Y * np.log(p)) / Y.shape[0]
        return -np.sum(Y * np.log(p) + (1 - Y) * np.log(1 - p)) / Y.shape[0]

    def _stratify_labels(self, Y):
        # Stratify single-label targets by class (scikit-learn does so only for binary ones); not multilabel.
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return None
        return Y.ravel() if Y.shape[1] == 1 else np.argmax(Y, axis=1)

    def _labels(self, out):
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1 else out)

    def _validation_score(self, X_val, Y_val):
        out = self._mlp.forward(X_val)
        if not np.isfinite(out).all():
            return np.nan
        truth = self._label_binarizer.inverse_transform(Y_val.ravel() if self.n_outputs_ == 1 else Y_val)
        return accuracy_score(truth, self._labels(out))

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the parameters and optimizer state of the calls before.

        ``classes`` (all labels across calls) is required on the first call and ignored later (multilabel
        targets give their own columns).
        """
        first = "classes_" not in self.__dict__
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit; got classes=None.")
        if not first and classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"classes must equal the classes of the first call to partial_fit ({self.classes_}); "
                             f"got {unique_labels(classes)}.")
        if first:
            binarizer = LabelBinarizer()
            binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self._label_binarizer = binarizer
            self.classes_ = binarizer.classes_
            try:
                return self._fit(X, y, incremental=True)
            except Exception:
                del self._label_binarizer, self.classes_
                raise
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Class labels for the rows of X: (n_samples,), or (n_samples, n_classes) indicators (multilabel)."""
        return self._labels(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X):
        """log(predict_proba(X)), (n_samples, n_classes)."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor (squared error), trained by fastbp's kernels.

    Linear outputs with the quadratic cost; a 1-D y gives 1-D predictions, a 2-D y multi-output ones.
    ``loss`` accepts only "squared_error" (scikit-learn's "poisson" needs an exp output the engine lacks).
    """ + _PARAMETERS_DOC

    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints, "loss": [StrOptions({"squared_error"})]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype="float64",
                 n_threads=None):
        self._store_parameters(locals())

    def _validate_input(self, X, y, incremental, reset):
        """(X, Y): Y the targets (n_samples, n_outputs) in the model's dtype."""
        X, y = self._check_X_y(X, y, reset, y_numeric=True)
        Y = np.ascontiguousarray(y.reshape(-1, 1) if y.ndim == 1 else y, dtype=self._dtype())
        return X, Y

    def _out_activation(self):
        return "identity"

    def _data_loss(self, Y, out):
        # scikit-learn's squared_loss: half the mean over rows and outputs (fastbp's cost sums over outputs).
        return 0.5 * np.mean((Y - out) ** 2)

    def _stratify_labels(self, Y):
        return None

    def _validation_score(self, X_val, Y_val):
        out = self._mlp.forward(X_val)
        if not np.isfinite(out).all():
            return np.nan
        return r2_score(Y_val, out)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing the parameters and optimizer state of the calls before."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predictions (n_samples,) for one output, else (n_samples, n_outputs)."""
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
