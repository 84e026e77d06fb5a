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

import numpy as np

from . import _book
from ._book import sigmoid, sigmoid_prime
from .model import MLP, Trainer
from .threads import using_threads
from .validation import check_float, check_int

__all__ = ["Network", "sigmoid", "sigmoid_prime"]

# Ends every message about badly formed data.
_REMEDY = ("Pass pairs like those of mnist_loader.load_data_wrapper() (an input becomes a column with "
           "x.reshape(-1, 1)).")


class Network(_book.LiveParameters):
    """A feedforward network of sigmoid neurons with the quadratic cost, trained by mini-batch SGD.

    ``sizes`` lists the neurons per layer, inputs first, e.g. ``[784, 30, 10]``. Biases, then weights, are
    drawn from ``np.random.randn`` exactly as in the book. ``model`` is the underlying :class:`fastbp.MLP`;
    ``weights`` and ``biases`` are live views of its parameters.
    """

    def __init__(self, sizes):
        # The MLP validates sizes before anything is drawn from numpy's global generator.
        self._model = MLP(sizes, init="large", dtype="float64")
        self.num_layers = len(sizes)
        self.sizes = sizes
        s = self._model.sizes  # the checked sizes, as ints
        biases = [np.random.randn(y, 1) for y in s[1:]]
        weights = [np.random.randn(y, x) for x, y in zip(s[:-1], s[1:])]
        self._view_parameters()
        self.biases = biases
        self.weights = weights

    @property
    def model(self):
        """The underlying :class:`fastbp.MLP` (for ``fit``, ``score``, ... on arrays of rows)."""
        return self._model

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
        pairs = _book.as_pairs(training_data, "training_data")
        X, Y = self._training_arrays(pairs, "training_data")
        tests = None
        if test_data is not None:
            test_pairs = _book.as_pairs(test_data, "test_data")
            if test_pairs:  # the book skips evaluation for empty test data
                tests = (test_pairs, *self._test_arrays(test_pairs, "test_data"))
        fast = not self._overrides("update_mini_batch", "backprop", "cost_derivative")
        trainer = Trainer(self._model, X, Y, batch_size=mini_batch_size, eta=eta) if fast else None

        n = len(pairs)
        threads = (using_threads(self._model.n_threads, limit_blas=True) if fast
                   else contextlib.nullcontext())
        with threads:
            for j, order in _book.shuffled_orders(n, epochs):
                if fast:
                    trainer.epoch(order)
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
        pairs = _book.as_pairs(mini_batch, "mini_batch")
        X, Y = self._training_arrays(pairs, "mini_batch")
        if self._overrides("backprop", "cost_derivative"):
            self._book_update(pairs, eta)
        else:
            _book.gradient_step(self._model, X, Y, eta)

    def backprop(self, x, y):
        """Gradient of the cost C_x of one example: ``(nabla_b, nabla_w)``, lists shaped like ``biases``
        ((n, 1) columns) and ``weights``. ``x`` is ``(n_in, 1)``, ``y`` is ``(n_out, 1)`` (or an int label)."""
        X, Y = self._training_arrays([(x, y)], "(x, y)", single=True)
        if self._overrides("cost_derivative"):
            return self._book_backprop(X[0].reshape(-1, 1), Y[0].reshape(-1, 1))
        return _book.example_gradient(self._model, X, Y)

    def evaluate(self, test_data):
        """Number of pairs ``(x, label)`` in ``test_data`` whose most activated output neuron is ``label``."""
        pairs = _book.as_pairs(test_data, "test_data")
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
        return _book.book_rows(pairs, name, self._model.sizes, y="target or label", remedy=_REMEDY,
                               single=single)

    def _test_arrays(self, pairs, name):
        """Pairs (x, label) -> X (n, n_in) float64 and labels (n,) int64; a target column counts by its argmax."""
        return _book.book_rows(pairs, name, self._model.sizes, y="label to count", remedy=_REMEDY)

    def __repr__(self):
        return f"Network({list(self.sizes)!r})"
