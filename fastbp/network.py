"""Drop-in replacement for the book's ``network.py`` (Python 3 version), running on the fast kernels.

Change ``import network`` to ``from fastbp import network`` and the same program runs the same algorithm:
quadratic cost, sigmoid neurons, weights and biases drawn with ``np.random.randn`` (so ``np.random.seed``
gives the book's network), mini-batches shuffled with ``random.shuffle`` (so ``random.seed`` gives the
book's order), the same update rule and the same printed lines. Only the speed differs: the data are
converted to arrays once per ``SGD`` call and each epoch is one kernel call.

``net.weights[l]`` is ``(sizes[l+1], sizes[l])`` and ``net.biases[l]`` is a ``(sizes[l+1], 1)`` column, as in
the book, but they are live views of the parameters the kernels use: in-place edits and assignments
(``net.weights[l] = w``, ``net.biases = [...]``) take effect. Training updates them in place, so to keep a
snapshot copy it: ``[w.copy() for w in net.weights]``.

A subclass that overrides ``update_mini_batch``, ``backprop``, ``cost_derivative``, ``feedforward`` or
``evaluate`` (as the book's exercises do) gets the book's Python loop around its own method.
"""
import contextlib
import numbers
import random

import numpy as np

from .model import MLP, ParameterList, Trainer
from .threads import using_threads
from .validation import check_float, check_int

__all__ = ["Network", "sigmoid", "sigmoid_prime"]


class Network:
    """A feedforward network of sigmoid neurons with the quadratic cost, trained by mini-batch SGD.

    ``sizes`` lists the neurons per layer, inputs first, e.g. ``[784, 30, 10]``. Biases, then weights, are
    drawn from ``np.random.randn`` exactly as in the book. ``model`` is the underlying :class:`fastbp.MLP`.
    """

    def __init__(self, sizes):
        # The MLP validates sizes before anything is drawn from numpy's global generator.
        self._model = MLP(sizes, init="large", dtype="float64")
        self.num_layers = len(sizes)
        self.sizes = sizes
        s = self._model.sizes  # the checked sizes, as ints
        biases = [np.random.randn(y, 1) for y in s[1:]]
        weights = [np.random.randn(y, x) for x, y in zip(s[:-1], s[1:])]
        self._weights = self._model.weights
        # reshape of a contiguous 1-D view is itself a view, so the columns stay live.
        self._biases = ParameterList([b.reshape(-1, 1) for b in self._model.biases], "biases")
        self.biases = biases
        self.weights = weights

    # ------------------------------------------------------------------ parameters
    @property
    def model(self):
        """The underlying :class:`fastbp.MLP` (for ``fit``, ``score``, ... on arrays of rows)."""
        return self._model

    @property
    def weights(self):
        """Live ``(n_out, n_in)`` weight matrices, one per layer after the input layer."""
        return self._weights

    @weights.setter
    def weights(self, new):
        self._assign_all(self._weights, new, "weights")

    @property
    def biases(self):
        """Live ``(n_out, 1)`` bias columns, one per layer after the input layer."""
        return self._biases

    @biases.setter
    def biases(self, new):
        self._assign_all(self._biases, new, "biases")

    def _assign_all(self, target, new, name):
        """Copy the arrays ``new`` into the views ``target``: all of them or, on an error, none."""
        try:
            new = list(new)
        except TypeError:
            raise TypeError(f"{name} must be a list of {len(target)} arrays; got {type(new).__name__}.") from None
        if len(new) != len(target):
            raise ValueError(f"{name} must be a list of {len(target)} arrays (one per layer after the input "
                             f"layer); got {len(new)}.")
        theta = self._model.params
        backup = theta.copy()
        try:
            arrays = []
            for a in new:
                a = np.asarray(a)
                # A view of the parameters themselves (e.g. swapping two layers) must be read before writing.
                arrays.append(a.copy() if np.may_share_memory(a, theta) else a)
            for i, a in enumerate(arrays):
                target[i] = a
        except (TypeError, ValueError):
            theta[...] = backup
            raise

    # ------------------------------------------------------------------ the book's methods
    def feedforward(self, a):
        """Output of the network for the input column ``a`` (n_in, 1) -> (n_out, 1).

        A batch of columns (n_in, k) gives (n_out, k); a vector (n_in,) gives (n_out,).
        """
        arr = np.asarray(a)
        n_in = self.sizes[0]
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            raise TypeError(f"a must be an array of real numbers; got dtype {arr.dtype}.")
        if arr.ndim == 1 and arr.shape == (n_in,):
            return self._forward_rows(arr.reshape(1, n_in), "a")[0]
        if arr.ndim != 2 or arr.shape[0] != n_in or arr.shape[1] == 0:
            raise ValueError(f"a must be an input column ({n_in}, 1) or a batch of columns ({n_in}, k); got "
                             f"shape {arr.shape}. Reshape one input with a.reshape(-1, 1).")
        return np.ascontiguousarray(self._forward_rows(arr.T, "a").T)

    def _forward_rows(self, X, name):
        return self._model._forward(self._model._inputs(X, name))

    def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):
        """Train by mini-batch stochastic gradient descent, as the book does.

        ``training_data``: an iterable (a list, a zip object, ...) of ``(x, y)`` pairs, ``x`` an ``(n_in, 1)``
        column and ``y`` an ``(n_out, 1)`` target column (or an int label). Every epoch shuffles the examples
        with ``random.shuffle`` and takes consecutive mini-batches of ``mini_batch_size`` (the last may be
        smaller). With ``test_data`` (pairs ``(x, int label)``) prints ``Epoch j : correct / total`` after each
        epoch, else ``Epoch j complete``. The caller's data are neither reordered nor modified.
        """
        epochs = check_int(epochs, "epochs", minimum=0)
        mini_batch_size = check_int(mini_batch_size, "mini_batch_size", minimum=1)
        eta = check_float(eta, "eta", low=0.0, low_open=True)
        pairs = _as_pairs(training_data, "training_data")
        X, Y = self._training_arrays(pairs, "training_data")
        tests = None
        if test_data is not None:
            test_pairs = _as_pairs(test_data, "test_data")
            if test_pairs:  # the book skips evaluation for empty test data
                tests = (test_pairs, *self._test_arrays(test_pairs, "test_data"))
        fast = not self._overrides("update_mini_batch", "backprop", "cost_derivative")
        trainer = Trainer(self._model, X, Y, batch_size=mini_batch_size, eta=eta) if fast else None

        n = len(pairs)
        # Shuffling an index list draws the same random numbers as shuffling the data (the permutation only
        # depends on the length), so random.seed reproduces the book's mini-batches.
        order = list(range(n))
        threads = (using_threads(self._model.n_threads, limit_blas=True) if fast
                   else contextlib.nullcontext())
        with threads:
            for j in range(epochs):
                random.shuffle(order)
                if fast:
                    trainer.epoch(np.array(order, dtype=np.int64))
                else:
                    for k in range(0, n, mini_batch_size):
                        self.update_mini_batch([pairs[i] for i in order[k:k + mini_batch_size]], eta)
                if tests is not None:
                    print("Epoch {} : {} / {}".format(j, self._count_correct(*tests), len(tests[0])))
                else:
                    print("Epoch {} complete".format(j))

    def update_mini_batch(self, mini_batch, eta):
        """One gradient-descent step on ``mini_batch``, a list of ``(x, y)`` pairs, with learning rate ``eta``:
        ``w -> w - eta/m sum nabla_w``, ``b -> b - eta/m sum nabla_b``."""
        eta = check_float(eta, "eta", low=0.0, low_open=True)
        pairs = _as_pairs(mini_batch, "mini_batch")
        X, Y = self._training_arrays(pairs, "mini_batch")
        if self._overrides("backprop", "cost_derivative"):
            self._book_update(pairs, eta)
            return
        trainer = Trainer(self._model, X, Y, batch_size=len(X), eta=eta)
        with using_threads(self._model.n_threads):
            trainer.epoch(np.arange(len(X), dtype=np.int64))

    def backprop(self, x, y):
        """Gradient of the cost C_x of one example: ``(nabla_b, nabla_w)``, lists shaped like ``biases``
        ((n, 1) columns) and ``weights``. ``x`` is ``(n_in, 1)``, ``y`` is ``(n_out, 1)`` (or an int label)."""
        X, Y = self._training_arrays([(x, y)], "(x, y)", single=True)
        if self._overrides("cost_derivative"):
            return self._book_backprop(X[0].reshape(-1, 1), Y[0].reshape(-1, 1))
        nabla_w, nabla_b = self._model.unflatten(self._model._gradient(X, Y, scale=1.0))
        return [nb.reshape(-1, 1) for nb in nabla_b], nabla_w

    def evaluate(self, test_data):
        """Number of pairs ``(x, label)`` in ``test_data`` whose most activated output neuron is ``label``."""
        pairs = _as_pairs(test_data, "test_data")
        if not pairs:
            return 0
        return self._count_correct(pairs, *self._test_arrays(pairs, "test_data"))

    def cost_derivative(self, output_activations, y):
        """dC_x/da for the output activations: ``output_activations - y``."""
        return output_activations - y

    # ------------------------------------------------------------------ helpers
    def _overrides(self, *names):
        """Whether a subclass replaces any of these methods (then the book's loop must call them)."""
        return any(getattr(type(self), name) is not getattr(Network, name) for name in names)

    def _count_correct(self, pairs, X, labels):
        if self._overrides("evaluate"):
            return self.evaluate(pairs)
        if self._overrides("feedforward"):
            return sum(int(np.argmax(self.feedforward(x)) == y) for x, y in zip(X[:, :, None], labels))
        return int(np.count_nonzero(np.argmax(self._model._forward(X), axis=1) == labels))

    def _book_update(self, pairs, eta):
        """The book's update_mini_batch, calling this object's backprop."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in pairs:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        self.weights = [w - (eta / len(pairs)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(pairs)) * nb for b, nb in zip(self.biases, nabla_b)]

    def _book_backprop(self, x, y):
        """The book's backprop on columns, calling this object's cost_derivative."""
        activation, activations, zs = x, [x], []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        nabla_b = [None] * len(self.biases)
        nabla_w = [None] * len(self.weights)
        delta = self.cost_derivative(activations[-1], y) * sigmoid_prime(zs[-1])
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())
        for l in range(2, self.num_layers):
            delta = np.dot(self.weights[-l + 1].transpose(), delta) * sigmoid_prime(zs[-l])
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
        return nabla_b, nabla_w

    def _training_arrays(self, pairs, name, single=False):
        """Pairs (x, y) -> X (n, n_in) and targets Y (n, n_out), float64; y may be a column or an int label.

        ``single``: the one example of ``backprop``, whose messages name x and y.
        """
        n_in, n_out = self.sizes[0], self.sizes[-1]
        if not pairs:
            raise ValueError(f"{name} must contain at least one (x, y) pair; got none.")
        columns = (f"an input column of shape ({n_in}, 1) and y a target column of shape ({n_out}, 1) or an int "
                   f"label in [0, {n_out - 1}]")
        if single:
            expected, where = f"x must be {columns}", (lambda i: "")
        else:
            expected, where = f"{name} must hold (x, y) pairs with x {columns}", (lambda i: f" at index {i}")
        xs, ys = _unzip(pairs, name)
        X = _stack_columns(xs, n_in, lambda i, got, error: _fail(expected, f"x {got}{where(i)}", error))
        complain = lambda i, got, error=ValueError: _fail(expected, f"y {got}{where(i)}", error)  # noqa: E731
        labels = _int_labels(ys)
        if labels is None:
            return X, _stack_columns(ys, n_out, complain)
        _check_label_range(labels, ys, n_out, complain)
        Y = np.zeros((len(labels), n_out))
        Y[np.arange(len(labels)), labels] = 1.0
        return X, Y

    def _test_arrays(self, pairs, name):
        """Pairs (x, label) -> X (n, n_in) float64 and labels (n,) int64; a target column counts by its argmax."""
        n_in, n_out = self.sizes[0], self.sizes[-1]
        expected = (f"{name} must hold (x, label) pairs with x an input column of shape ({n_in}, 1) and label an "
                    f"int in [0, {n_out - 1}]")
        xs, ys = _unzip(pairs, name)
        X = _stack_columns(xs, n_in, lambda i, got, error: _fail(expected, f"x {got} at index {i}", error))
        complain = lambda i, got, error=ValueError: _fail(expected, f"label {got} at index {i}", error)  # noqa: E731
        labels = _int_labels(ys)
        if labels is None:
            return X, np.argmax(_stack_columns(ys, n_out, complain), axis=1)
        _check_label_range(labels, ys, n_out, complain)
        return X, labels

    def __repr__(self):
        return f"Network({list(self.sizes)!r})"


# ---------------------------------------------------------------------- data conversion
def _fail(expected, got, error=ValueError):
    raise error(f"{expected}; got {got}. Pass pairs like those of mnist_loader.load_data_wrapper() (an input "
                "becomes a column with x.reshape(-1, 1)).")


def _as_pairs(data, name):
    """The caller's iterable as a list (the caller's own list is used read-only, never reordered)."""
    if isinstance(data, list):
        return data
    if isinstance(data, (str, bytes, np.ndarray)) or not hasattr(data, "__iter__"):
        raise TypeError(f"{name} must be an iterable of (x, y) pairs, such as a list or a zip object; got "
                        f"{type(data).__name__}.")
    return list(data)


def _unzip(pairs, name):
    xs, ys = [], []
    for i, pair in enumerate(pairs):
        try:
            x, y = pair
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold (x, y) pairs; got {type(pair).__name__} at index {i}. Build it "
                            "as list(zip(inputs, targets)).") from None
        xs.append(x)
        ys.append(y)
    return xs, ys


def _real_array(v):
    """v as a numeric array, or None if it is not one."""
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):
        return None
    return a if a.dtype != object and a.dtype.kind in "iuf" else None


def _describe(v):
    """What v is, and the error to raise for it: a wrong kind (TypeError) or a wrong shape (ValueError)."""
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):
        return f"of type {type(v).__name__}", TypeError
    if a.dtype == object or a.dtype.kind not in "iuf":
        return f"of dtype {a.dtype}", TypeError
    if a.ndim == 0:  # e.g. a float label
        return repr(v), ValueError
    return f"of shape {a.shape}", ValueError


def _stack_columns(items, n, complain):
    """Real, finite (n, 1) columns (or (n,) vectors) -> C-contiguous (len(items), n) float64.

    ``complain(index, description, error)`` raises for the first bad item.
    """
    try:
        same = set(map(np.shape, items)) in ({(n, 1)}, {(n,)})
        # Joining end to end is several times faster than np.asarray on a list of small arrays.
        arr = _real_array(np.concatenate(items, axis=0)) if same else None
    except (TypeError, ValueError):  # ragged nested lists, mixed kinds: the loop below says which item
        arr = None
    if arr is None:
        rows = []
        for i, v in enumerate(items):
            a = _real_array(v)
            if a is None or a.shape not in ((n, 1), (n,)):
                complain(i, *_describe(v))
            rows.append(a.reshape(n))
        arr = np.array(rows)
    X = np.ascontiguousarray(arr.reshape(len(items), n), dtype=np.float64)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        complain(int(np.flatnonzero(~finite)[0]), "with a NaN or infinite value", ValueError)
    return X


def _is_label(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_labels(ys):
    """ys as an int64 array if every one is an integer label, else None."""
    if not all(_is_label(v) for v in ys):
        return None
    return np.fromiter(ys, dtype=np.int64, count=len(ys))


def _check_label_range(labels, ys, n_out, complain):
    bad = (labels < 0) | (labels >= n_out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        complain(i, repr(ys[i]))


# ---------------------------------------------------------------------- the book's miscellaneous functions
def sigmoid(z):
    """The sigmoid function, elementwise."""
    # exp(-z) overflows to inf for very negative z, and 1/(1+inf) = 0 is the right answer.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """Derivative of the sigmoid function, elementwise."""
    return sigmoid(z) * (1 - sigmoid(z))
