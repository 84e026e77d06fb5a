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

# Third-party libraries
import numpy as np

# What network.py shares: parameter views, data conversion, epochs, and sigmoid / sigmoid_prime themselves.
from ._book import (LiveParameters, book_rows, example_gradient, gradient_step, shuffled_orders, sigmoid,
                    sigmoid_prime)
from .atomic import atomic_write
from .model import MLP, Trainer
from .threads import using_threads
from .validation import check_float, check_int

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
class Network(LiveParameters):
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
        self._view_parameters()
        self.default_weight_initializer()

    # ------------------------------------------------------------------ parameters
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
        self._view_parameters()

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
        if arr.ndim != 2 or arr.shape[0] != self.sizes[0] or arr.shape[1] == 0:
            raise ValueError(f"a must be an ({self.sizes[0]}, 1) input column or an ({self.sizes[0]}, k) "
                             f"matrix of columns; got shape {arr.shape}.")
        return np.ascontiguousarray(self.model._forward(self.model._inputs(arr.T, "a")).T)

    def accuracy(self, data, convert=False):
        """Return the number of inputs in ``data`` for which the network's
        most activated output neuron is the correct result.

        ``convert`` is False for validation or test data (``y`` an int label)
        and True for training data (``y`` a vectorized result, compared by
        its argmax), as in the book.
        """
        X, Y = book_rows(data, "data", self.sizes, y="target" if _flag(convert, "convert") else "label",
                         remedy="accuracy takes convert=True for vectorized y and convert=False for int labels.")
        return self._accuracy(X, Y)

    def total_cost(self, data, lmbda, convert=False):
        """Return the total cost for the data set ``data``: the mean cost plus
        ``0.5*(lmbda/len(data))*sum(||w||^2)``.

        ``convert`` is False for training data (``y`` vectorized) and True
        for validation or test data (``y`` an int label), as in the book.
        """
        lmbda = check_float(lmbda, "lmbda", low=0.0)
        X, Y = book_rows(data, "data", self.sizes, y="label" if _flag(convert, "convert") else "target",
                         remedy="total_cost takes convert=False for vectorized y and convert=True for int labels.")
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
        epochs = check_int(epochs, "epochs", minimum=0)
        mini_batch_size = check_int(mini_batch_size, "mini_batch_size", minimum=1)
        eta = check_float(eta, "eta", low=0.0, low_open=True)
        lmbda = check_float(lmbda, "lmbda", low=0.0)
        # Converted once: every epoch and every measurement reuses these arrays.
        X, Y = book_rows(training_data, "training_data", self.sizes, y="target",
                         remedy="SGD needs vectorized results y for training data.")
        X_eval = Y_eval = None
        if monitor_evaluation_cost or monitor_evaluation_accuracy:
            if evaluation_data is None:
                raise ValueError("evaluation_data must be given to monitor the evaluation cost or accuracy; "
                                 "got None.")
            X_eval, Y_eval = book_rows(evaluation_data, "evaluation_data", self.sizes, y="label",
                                       remedy="SGD needs int labels y for evaluation data.")
        trainer = Trainer(self.model, X, Y, batch_size=mini_batch_size, eta=eta, lmbda=lmbda, l2_n=len(X))

        evaluation_cost, evaluation_accuracy = [], []
        training_cost, training_accuracy = [], []
        with using_threads(self.model.n_threads, limit_blas=True):
            for j, order in shuffled_orders(len(X), epochs):
                trainer.epoch(order)  # the whole epoch in one kernel call
                print("Epoch %s training complete" % j)
                self._monitor("training", X, Y, lmbda, monitor_training_cost, training_cost,
                              monitor_training_accuracy, training_accuracy)
                self._monitor("evaluation", X_eval, Y_eval, lmbda, monitor_evaluation_cost, evaluation_cost,
                              monitor_evaluation_accuracy, evaluation_accuracy)
                print()
        return evaluation_cost, evaluation_accuracy, \
            training_cost, training_accuracy

    def _monitor(self, data, X, Y, lmbda, monitor_cost, costs, monitor_accuracy, accuracies):
        """The book's per-epoch monitoring of one data set: print, and append to ``costs`` and
        ``accuracies``, the total cost and the number correct on ``data`` ("training" or "evaluation")."""
        if monitor_cost:
            cost = self._total_cost(X, Y, lmbda)
            costs.append(cost)
            print("Cost on {} data: {}".format(data, cost))
        if monitor_accuracy:
            accuracy = self._accuracy(X, Y)
            accuracies.append(accuracy)
            print("Accuracy on {} data: {} / {}".format(data, accuracy, len(X)))

    def update_mini_batch(self, mini_batch, eta, lmbda, n):
        """Apply one step of gradient descent on ``mini_batch`` (a list of
        ``(x, y)`` pairs, ``y`` vectorized): ``w -> (1-eta*lmbda/n) w -
        eta/m sum nabla_w`` and ``b -> b - eta/m sum nabla_b``, where ``n``
        is the size of the whole training set.

        """
        eta = check_float(eta, "eta", low=0.0, low_open=True)
        lmbda = check_float(lmbda, "lmbda", low=0.0)
        n = check_int(n, "n", minimum=1)
        X, Y = book_rows(mini_batch, "mini_batch", self.sizes, y="target",
                         remedy="update_mini_batch needs vectorized results y.")
        gradient_step(self.model, X, Y, eta, lmbda=lmbda, l2_n=n)

    def backprop(self, x, y):
        """Return a tuple ``(nabla_b, nabla_w)``, the gradient of the cost
        C_x for one example: lists of ``(n_out, 1)`` and ``(n_out, n_in)``
        arrays, like ``self.biases`` and ``self.weights``. ``x`` is an
        ``(n_in, 1)`` column, ``y`` an ``(n_out, 1)`` vectorized result.

        """
        X, Y = book_rows([(x, y)], "(x, y)", self.sizes, y="target", single=True,
                         remedy="backprop needs a vectorized result y.")
        return example_gradient(self.model, X, Y)

    # ------------------------------------------------------------------ saving
    def save(self, filename):
        """Save the neural network to the file ``filename`` (network2's JSON format)."""
        data = {"sizes": self.sizes,
                "weights": [w.tolist() for w in self.weights],
                "biases": [b.tolist() for b in self.biases],
                "cost": str(self.cost.__name__)}
        payload = json.dumps(data).encode()  # serialised first, then written atomically: never half a file
        atomic_write(os.fspath(filename), lambda fh: fh.write(payload), what="network file")

    def __repr__(self):
        return f"Network({self.sizes}, cost={self.cost.__name__})"


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
# sigmoid and sigmoid_prime are imported above: the same functions as network.py's.
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


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__}.")
    return bool(value)
