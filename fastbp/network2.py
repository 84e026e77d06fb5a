"""Drop-in replacement for the book's ``network2.py`` (chapter 3), backed by the fastbp engine.

Same classes, functions, signatures, return values and printed lines as the
book's module: the cross-entropy and quadratic costs, L2 regularisation,
monitoring, ``save`` and ``load``. The arithmetic runs in one float64
:class:`fastbp.MLP`: a whole training epoch is one kernel call.

Data are in the book's format: lists of ``(x, y)`` pairs where ``x`` is an
``(n_in, 1)`` column, ``y`` is an ``(n_out, 1)`` vectorized result for training
data and an int label for validation and test data.

Differences from the book:

* ``weights`` and ``biases`` are live views of the engine's parameters;
  assigning an element or the whole list copies the new values in.
* Bad arguments raise ``ValueError`` or ``TypeError`` before anything changes.
* A ``convert`` flag that does not match the data raises instead of giving a
  wrong number.
* ``load`` accepts only the two cost class names, never any other attribute.
* ``SGD`` shuffles a list of indices, so the caller's list keeps its order.
  ``random.shuffle`` makes the same draws either way, so ``random.seed`` gives
  the book's mini-batches.
"""

#### Libraries
# Standard library
import json
import numbers
import os
import random

# Third-party libraries
import numpy as np

from .model import MLP, ParameterList, Trainer
from .threads import using_threads

__all__ = ["QuadraticCost", "CrossEntropyCost", "Network", "load", "vectorized_result", "sigmoid",
           "sigmoid_prime"]


#### Define the quadratic and cross-entropy cost functions

class QuadraticCost(object):

    @staticmethod
    def fn(a, y):
        """Return the cost associated with an output ``a`` and desired output
        ``y``.

        """
        return 0.5*np.linalg.norm(a-y)**2

    @staticmethod
    def delta(z, a, y):
        """Return the error delta from the output layer."""
        return (a-y) * sigmoid_prime(z)


class CrossEntropyCost(object):

    @staticmethod
    def fn(a, y):
        """Return the cost associated with an output ``a`` and desired output
        ``y``. ``np.nan_to_num`` turns the nan of 0*log(0) (a and y both 1
        in the same slot) into the correct value 0.0.

        """
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(np.nan_to_num(-y*np.log(a)-(1-y)*np.log(1-a)))

    @staticmethod
    def delta(z, a, y):
        """Return the error delta from the output layer. ``z`` is not used; it
        keeps the interface the same as the other cost classes'.

        """
        return (a-y)


# The engine's name of each cost class; ``load`` accepts exactly these class names.
_ENGINE_COST = {QuadraticCost: "quadratic", CrossEntropyCost: "cross-entropy"}
_COST_CLASS = {cls.__name__: cls for cls in _ENGINE_COST}


def _engine_cost(cost):
    """The engine's name for the cost class ``cost``; TypeError for anything else."""
    if isinstance(cost, type) and cost in _ENGINE_COST:
        return _ENGINE_COST[cost]
    if type(cost) in _ENGINE_COST:
        raise TypeError(f"cost must be the class QuadraticCost or CrossEntropyCost; got an instance of "
                        f"{type(cost).__name__}. Pass the class itself, e.g. cost=CrossEntropyCost.")
    name = getattr(cost, "__name__", type(cost).__name__)
    raise TypeError(f"cost must be QuadraticCost or CrossEntropyCost (the costs the engine implements); "
                    f"got {name}. Subclasses and other cost classes are not supported.")


#### Main Network class
class Network(object):
    """A network of sigmoid neurons, as the book's ``network2.Network``.

    ``sizes`` lists the neurons per layer, inputs first, e.g. ``[784, 30, 10]``.
    ``weights[l]`` is ``(sizes[l+1], sizes[l])`` and ``biases[l]`` is
    ``(sizes[l+1], 1)``; both are live views of ``self.model``'s parameters.
    """

    def __init__(self, sizes, cost=CrossEntropyCost):
        """The biases and weights are initialized by
        ``self.default_weight_initializer``, from NumPy's global random state
        as in the book (``np.random.seed`` reproduces the book's draws).

        """
        engine_cost = _engine_cost(cost)
        self.model = MLP(sizes, cost=engine_cost, init="default", dtype="float64")
        self.num_layers = len(self.model.sizes)
        self.sizes = list(self.model.sizes)
        self._cost = cost
        self._make_views()
        self.default_weight_initializer()

    def _make_views(self):
        self._weights = ParameterList(list(self.model.weights), "weights")
        # (n,) engine views seen as the book's (n, 1) columns: a reshape of a contiguous view is a view.
        self._biases = ParameterList([b.reshape(-1, 1) for b in self.model.biases], "biases")

    # ------------------------------------------------------------------ parameters
    @property
    def weights(self):
        """List of ``(n_out, n_in)`` weight matrices (live views)."""
        return self._weights

    @weights.setter
    def weights(self, new):
        self.model.weights = new  # all or nothing, shapes checked

    @property
    def biases(self):
        """List of ``(n_out, 1)`` bias columns (live views)."""
        return self._biases

    @biases.setter
    def biases(self, new):
        self.model.biases = new  # accepts (n, 1) columns and (n,) vectors

    @property
    def cost(self):
        """The cost class, ``QuadraticCost`` or ``CrossEntropyCost``."""
        return self._cost

    @cost.setter
    def cost(self, cost):
        # The engine fixes its cost at construction: build a new one with the same parameters.
        # Views taken from the old weights/biases lists no longer follow the network.
        engine_cost = _engine_cost(cost)
        model = MLP(self.sizes, cost=engine_cost, init="default", dtype="float64",
                    n_threads=self.model.n_threads)
        model.params[...] = self.model.params
        self.model, self._cost = model, cost
        self._make_views()

    def default_weight_initializer(self):
        """Initialize each weight using a Gaussian distribution with mean 0
        and standard deviation 1 over the square root of the number of
        weights connecting to the same neuron. Initialize the biases
        using a Gaussian distribution with mean 0 and standard
        deviation 1. The input layer has no biases.

        """
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x)/np.sqrt(x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    def large_weight_initializer(self):
        """Initialize the weights and biases using a Gaussian distribution
        with mean 0 and standard deviation 1, as in chapter 1 (included for
        comparison; the default initializer usually works better).

        """
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    # ------------------------------------------------------------------ evaluation
    def feedforward(self, a):
        """Return the output of the network if ``a`` is input.

        ``a`` is an ``(n_in, 1)`` column (or ``(n_in,)``) -> ``(n_out, 1)``;
        an ``(n_in, k)`` matrix of k input columns -> ``(n_out, k)``.
        """
        arr = np.asarray(a)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[0] != self.sizes[0]:
            raise ValueError(f"a must be an ({self.sizes[0]}, 1) input column or an ({self.sizes[0]}, k) "
                             f"matrix of columns; got shape {arr.shape}.")
        return np.ascontiguousarray(self.model.forward(arr.T).T)

    def accuracy(self, data, convert=False):
        """Return the number of inputs in ``data`` for which the network's
        most activated output neuron is the correct result.

        ``convert`` is False for validation or test data (``y`` an int label)
        and True for training data (``y`` a vectorized result, compared by
        its argmax), as in the book.
        """
        X, Y = self._data_arrays(data, "data", _vectorized_flag(convert, "convert"),
                                 hint="accuracy takes convert=True for vectorized y and "
                                      "convert=False for int labels")
        return self._accuracy(X, Y)

    def total_cost(self, data, lmbda, convert=False):
        """Return the total cost for the data set ``data``: the mean cost plus
        ``0.5*(lmbda/len(data))*sum(||w||^2)``.

        ``convert`` is False for training data (``y`` vectorized) and True
        for validation or test data (``y`` an int label), as in the book.
        """
        lmbda = _check_real(lmbda, "lmbda")
        X, Y = self._data_arrays(data, "data", not _vectorized_flag(convert, "convert"),
                                 hint="total_cost takes convert=False for vectorized y and "
                                      "convert=True for int labels")
        return self._total_cost(X, Y, lmbda)

    def _accuracy(self, X, Y):
        return int(np.sum(np.argmax(self.model.forward(X), axis=1) == np.argmax(Y, axis=1)))

    def _total_cost(self, X, Y, lmbda):
        cost = self.model.cost(X, Y)
        cost += 0.5*(lmbda/len(X))*sum(np.linalg.norm(w)**2 for w in self.weights)
        return float(cost)

    # ------------------------------------------------------------------ training
    def SGD(self, training_data, epochs, mini_batch_size, eta,
            lmbda=0.0,
            evaluation_data=None,
            monitor_evaluation_cost=False,
            monitor_evaluation_accuracy=False,
            monitor_training_cost=False,
            monitor_training_accuracy=False):
        """Train the network using mini-batch stochastic gradient descent.

        ``training_data`` is a list of ``(x, y)`` pairs with vectorized ``y``;
        ``evaluation_data`` (validation or test data) has int labels. ``lmbda``
        is the L2 regularization parameter. Returns the per-epoch lists
        ``(evaluation_cost, evaluation_accuracy, training_cost,
        training_accuracy)``, each empty unless its flag is set.
        """
        epochs = _check_int(epochs, "epochs", minimum=0)
        mini_batch_size = _check_int(mini_batch_size, "mini_batch_size", minimum=1)
        eta = _check_real(eta, "eta", positive=True)
        lmbda = _check_real(lmbda, "lmbda")
        # Converted once: every epoch and every measurement reuses these arrays.
        X, Y = self._data_arrays(training_data, "training_data", True,
                                 hint="SGD needs vectorized results y for training data")
        n = len(X)
        if monitor_evaluation_cost or monitor_evaluation_accuracy:
            if evaluation_data is None:
                raise ValueError("evaluation_data must be given to monitor the evaluation cost or accuracy; "
                                 "got None.")
            X_eval, Y_eval = self._data_arrays(evaluation_data, "evaluation_data", False,
                                               hint="SGD needs int labels y for evaluation data")
            n_data = len(X_eval)
        trainer = Trainer(self.model, X, Y, batch_size=mini_batch_size, eta=eta, lmbda=lmbda, l2_n=n)
        order = list(range(n))  # shuffled in place every epoch, like the book's copy of training_data

        evaluation_cost, evaluation_accuracy = [], []
        training_cost, training_accuracy = [], []
        with using_threads(self.model.n_threads, limit_blas=True):
            for j in range(epochs):
                random.shuffle(order)
                trainer.epoch(np.array(order, dtype=np.int64))  # the whole epoch in one kernel call
                print("Epoch %s training complete" % j)
                if monitor_training_cost:
                    cost = self._total_cost(X, Y, lmbda)
                    training_cost.append(cost)
                    print("Cost on training data: {}".format(cost))
                if monitor_training_accuracy:
                    accuracy = self._accuracy(X, Y)
                    training_accuracy.append(accuracy)
                    print("Accuracy on training data: {} / {}".format(accuracy, n))
                if monitor_evaluation_cost:
                    cost = self._total_cost(X_eval, Y_eval, lmbda)
                    evaluation_cost.append(cost)
                    print("Cost on evaluation data: {}".format(cost))
                if monitor_evaluation_accuracy:
                    accuracy = self._accuracy(X_eval, Y_eval)
                    evaluation_accuracy.append(accuracy)
                    print("Accuracy on evaluation data: {} / {}".format(accuracy, n_data))
                print()
        return evaluation_cost, evaluation_accuracy, \
            training_cost, training_accuracy

    def update_mini_batch(self, mini_batch, eta, lmbda, n):
        """Apply one step of gradient descent on ``mini_batch`` (a list of
        ``(x, y)`` pairs, ``y`` vectorized): ``w -> (1-eta*lmbda/n) w -
        eta/m sum nabla_w`` and ``b -> b - eta/m sum nabla_b``, where ``n``
        is the size of the whole training set.

        """
        eta = _check_real(eta, "eta", positive=True)
        lmbda = _check_real(lmbda, "lmbda")
        n = _check_int(n, "n", minimum=1)
        X, Y = self._data_arrays(mini_batch, "mini_batch", True,
                                 hint="update_mini_batch needs vectorized results y")
        trainer = Trainer(self.model, X, Y, batch_size=len(X), eta=eta, lmbda=lmbda, l2_n=n)
        with using_threads(self.model.n_threads):
            trainer.epoch(np.arange(len(X), dtype=np.int64))

    def backprop(self, x, y):
        """Return a tuple ``(nabla_b, nabla_w)``, the gradient of the cost
        C_x for one example: lists of ``(n_out, 1)`` and ``(n_out, n_in)``
        arrays, like ``self.biases`` and ``self.weights``. ``x`` is an
        ``(n_in, 1)`` column, ``y`` an ``(n_out, 1)`` vectorized result.

        """
        X, Y = self._data_arrays([(x, y)], "(x, y)", True, hint="backprop needs a vectorized result y")
        nabla_w, nabla_b = self.model.unflatten(self.model._gradient(X, Y, scale=1.0))
        return ([nb.reshape(-1, 1) for nb in nabla_b], nabla_w)

    # ------------------------------------------------------------------ saving
    def save(self, filename):
        """Save the neural network to the file ``filename`` (network2's JSON format)."""
        data = {"sizes": self.sizes,
                "weights": [w.tolist() for w in self.weights],
                "biases": [b.tolist() for b in self.biases],
                "cost": str(self.cost.__name__)}
        text = json.dumps(data)  # serialised first, so a failure cannot leave half a file
        with open(filename, "w") as f:
            f.write(text)

    def __repr__(self):
        return f"Network({self.sizes}, cost={self.cost.__name__})"

    # ------------------------------------------------------------------ data conversion
    def _data_arrays(self, data, name, vectorized, hint):
        """The book's list of ``(x, y)`` pairs as ``X (n, n_in)`` and targets ``Y (n, n_out)`` float64.

        ``vectorized``: each y is an ``(n_out, 1)`` result (True) or an int label (False, one-hot here).
        """
        if isinstance(data, (str, bytes, np.ndarray)) or not hasattr(data, "__iter__"):
            raise TypeError(f"{name} must be a list of (x, y) pairs; got {type(data).__name__}.")
        pairs = list(data)
        if not pairs:
            raise ValueError(f"{name} must hold at least one (x, y) pair; got none.")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"{name}[{i}] must be an (x, y) pair; got {type(pair).__name__}.")
        n_in, n_out = self.sizes[0], self.sizes[-1]
        X = _stack([p[0] for p in pairs], f"the inputs x of {name}")
        if X.ndim == 3 and X.shape[2] == 1:
            X = X[:, :, 0]
        if X.ndim != 2:
            raise ValueError(f"each x in {name} must be an ({n_in}, 1) column; got shape {X.shape[1:]}.")
        X = self.model._inputs(X, f"the inputs x of {name}")
        Y = _stack([p[1] for p in pairs], f"the results y of {name}")
        if vectorized:
            if Y.ndim == 3 and Y.shape[2] == 1:
                Y = Y[:, :, 0]
            if Y.ndim != 2:
                got = "int labels" if Y.ndim == 1 else f"shape {Y.shape[1:]}"
                raise ValueError(f"each y in {name} must be a vectorized result of shape ({n_out}, 1); "
                                 f"got {got} ({hint}).")
        elif Y.ndim != 1 or Y.dtype.kind not in "iu":
            got = f"arrays of shape {Y.shape[1:]}" if Y.ndim > 1 else f"dtype {Y.dtype}"
            raise ValueError(f"each y in {name} must be an int label; got {got} ({hint}).")
        return X, self.model._targets(Y, X.shape[0], f"the results y of {name}")


#### Loading a Network
def load(filename):
    """Load a neural network from the file ``filename`` (written by ``save``).
    Returns an instance of Network.

    """
    with open(filename, "r") as f:
        try:
            data = json.load(f)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(filename)!s} must hold a network saved by Network.save (JSON); "
                             f"it does not parse: {exc}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"the file must hold a JSON object; got {type(data).__name__}.")
    missing = [key for key in ("sizes", "weights", "biases", "cost") if key not in data]
    if missing:
        raise ValueError(f"the saved network must have the fields sizes, weights, biases and cost; "
                         f"missing {', '.join(missing)}.")
    # Only the two cost classes: the name is looked up in a fixed table, never as an attribute.
    cost_name = data["cost"]
    if not isinstance(cost_name, str) or cost_name not in _COST_CLASS:
        raise ValueError(f"cost must be 'QuadraticCost' or 'CrossEntropyCost'; got {cost_name!r}.")
    sizes = data["sizes"]
    if (not isinstance(sizes, list) or len(sizes) < 2 or
            any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes)):
        raise ValueError(f"sizes must be a list of at least two positive ints; got {sizes!r}.")
    weights = _saved_arrays(data["weights"], "weights",
                            [(y, x) for x, y in zip(sizes[:-1], sizes[1:])])
    biases = _saved_arrays(data["biases"], "biases", [(y, 1) for y in sizes[1:]])
    net = Network(sizes, cost=_COST_CLASS[cost_name])
    net.weights = weights
    net.biases = biases
    return net


def _saved_arrays(lists, name, shapes):
    """The nested lists of a saved file as float64 arrays of the given shapes ((n,) accepted for (n, 1))."""
    if not isinstance(lists, list) or len(lists) != len(shapes):
        got = f"a list of {len(lists)}" if isinstance(lists, list) else type(lists).__name__
        raise ValueError(f"{name} must be a list of {len(shapes)} nested lists, one per layer; got {got}.")
    arrays = []
    for l, (values, shape) in enumerate(zip(lists, shapes)):
        arr = _stack(values, f"{name}[{l}]")
        if arr.shape == shape[:1] and shape[1:] == (1,):
            arr = arr.reshape(shape)
        if arr.shape != shape or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
            raise ValueError(f"{name}[{l}] must be a {shape[0]} x {shape[1]} nested list of finite numbers; "
                             f"got shape {arr.shape}, dtype {arr.dtype}.")
        arrays.append(arr.astype(np.float64))
    return arrays


#### Miscellaneous functions
def vectorized_result(j):
    """Return a 10-dimensional unit vector with a 1.0 in the j'th position
    and zeroes elsewhere, the desired output for the digit j (0...9).

    """
    if isinstance(j, bool) or not isinstance(j, numbers.Integral):
        raise TypeError(f"j must be an int label; got {type(j).__name__}.")
    if not 0 <= j < 10:
        raise ValueError(f"j must be a digit label in [0, 9]; got {j}.")
    e = np.zeros((10, 1))
    e[j] = 1.0
    return e


def sigmoid(z):
    """The sigmoid function."""
    with np.errstate(over="ignore"):  # exp(-z) = inf for very negative z gives the right 0.0
        return 1.0/(1.0+np.exp(-z))


def sigmoid_prime(z):
    """Derivative of the sigmoid function."""
    return sigmoid(z)*(1-sigmoid(z))


#### Argument checks
def _stack(items, name):
    """``np.asarray`` of a list of equally-shaped items, with a clear error for ragged ones."""
    try:
        arr = np.asarray(items)
    except ValueError:
        raise ValueError(f"{name} must all have the same shape; got items of different shapes.") from None
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got dtype {arr.dtype}.")
    return arr


def _vectorized_flag(convert, name):
    if not isinstance(convert, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(convert).__name__}.")
    return bool(convert)


def _check_int(value, name, *, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}.")
    return int(value)


def _check_real(value, name, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}; got {value!r}.")
    return value
