"""What the drop-ins ``network`` and ``network2`` share: the book's parameter lists as live views, the book's
lists of ``(x, y)`` column pairs as arrays of rows, the book's shuffled epochs and the sigmoid."""
import numbers
import random

import numpy as np

from . import aligned
from .model import ParameterList, Trainer
from .threads import using_threads


# ---------------------------------------------------------------------- parameters
class LiveParameters:
    """``weights`` and ``biases`` laid out as in the book, but as live views of ``self.model``'s parameters.

    ``weights[l]`` is ``(sizes[l+1], sizes[l])`` and ``biases[l]`` a ``(sizes[l+1], 1)`` column. In-place
    edits and assignments (``weights[l] = w``, ``biases = [...]``) reach the arrays the kernels use; a whole
    list is copied in all at once or, on an error, not at all.
    """

    def _view_parameters(self):
        """Take the views of ``self.model``; call again whenever the model is replaced."""
        self._weights = self.model.weights
        # The engine's biases are (n,): reshaping a contiguous view gives a view, so the columns stay live.
        self._biases = ParameterList([b.reshape(-1, 1) for b in self.model.biases], "biases")

    @property
    def weights(self):
        """Live ``(n_out, n_in)`` weight matrices, one per layer after the input layer."""
        return self._weights

    @weights.setter
    def weights(self, new):
        self._weights.assign(new, self.model.params)

    @property
    def biases(self):
        """Live ``(n_out, 1)`` bias columns, one per layer after the input layer."""
        return self._biases

    @biases.setter
    def biases(self, new):
        self._biases.assign(new, self.model.params)


# ---------------------------------------------------------------------- training steps
def shuffled_orders(n, epochs):
    """Yield ``(j, order)`` for each epoch j: the order (int64 indices) in which the book visits n examples.

    The book shuffles its copy of the data with ``random.shuffle`` each epoch. Shuffling a list of indices,
    kept from one epoch to the next, draws the same random numbers (the permutation depends only on the
    length), so ``random.seed`` reproduces the book's mini-batches and the caller's list keeps its order.
    """
    order = list(range(n))
    for j in range(epochs):
        random.shuffle(order)
        yield j, np.array(order, dtype=np.int64)


def gradient_step(model, X, Y, eta, **l2):
    """One gradient-descent step on all rows of ``X`` together (the book's ``update_mini_batch``).

    ``l2``: ``lmbda`` and ``l2_n`` for network2's weight decay.
    """
    trainer = Trainer(model, X, Y, batch_size=len(X), eta=eta, **l2)
    with using_threads(model.n_threads):
        trainer.epoch(np.arange(len(X), dtype=np.int64))


def example_gradient(model, X, Y):
    """The book's ``backprop``: ``(nabla_b, nabla_w)`` of the cost of the one row of ``X``, ``Y``, with the
    biases' gradients as ``(n, 1)`` columns."""
    nabla_w, nabla_b = model.unflatten(model._gradient(X, Y, scale=1.0))
    return [nb.reshape(-1, 1) for nb in nabla_b], nabla_w


# ---------------------------------------------------------------------- data conversion
# What y may be in each kind of data: its word in messages, the requirement (formatted with n_out and
# last = n_out - 1), whether target columns and int labels are accepted, and whether labels come back.
_Y_KINDS = {
    "target": ("y", "a target column of shape ({n_out}, 1)", True, False, False),
    "label": ("y", "an int label in [0, {last}]", False, True, False),
    "target or label": ("y", "a target column of shape ({n_out}, 1) or an int label in [0, {last}]",
                        True, True, False),
    # network.py's test data: labels, though a target column counts by its argmax.
    "label to count": ("label", "an int in [0, {last}]", True, True, True),
}


def book_rows(data, name, sizes, *, y, remedy, single=False):
    """The book's ``(x, y)`` pairs as rows: ``X (n, n_in)`` and targets ``Y (n, n_out)``, float64.

    Each x is an ``(n_in, 1)`` column (or ``(n_in,)``). ``y`` names what each y may be (a key of
    ``_Y_KINDS``): int labels are one-hot encoded, except for "label to count", which returns
    ``labels (n,)`` int64 instead of ``Y``. ``remedy`` ends every message about a bad pair; ``single``: the
    one example of ``backprop``, whose messages name x and y. The caller's data are only read.
    """
    n_in, n_out = sizes[0], sizes[-1]
    word, requirement, columns_ok, labels_ok, as_labels = _Y_KINDS[y]
    need = f"an input column of shape ({n_in}, 1) and {word} {requirement.format(n_out=n_out, last=n_out - 1)}"
    expected = f"x must be {need}" if single else f"{name} must hold (x, {word}) pairs with x {need}"

    def fail(what, i, got, error=ValueError):
        at = "" if single else f" at index {i}"
        raise error(f"{expected}; got {what} {got}{at}. {remedy}")

    pairs = as_pairs(data, name)
    if not pairs:
        raise ValueError(f"{name} must contain at least one (x, y) pair; got none.")
    xs, ys = _unzip(pairs, name)
    X = _stack_columns(xs, n_in, lambda i, got, error: fail("x", i, got, error))
    complain = lambda i, got, error=ValueError: fail(word, i, got, error)  # noqa: E731
    labels = _int_labels(ys) if labels_ok else None
    if labels is None:
        if not columns_ok:
            i = next(i for i, v in enumerate(ys) if not _is_label(v))
            complain(i, *_describe(ys[i]))
        Y = _stack_columns(ys, n_out, complain)
        return X, (np.argmax(Y, axis=1) if as_labels else Y)
    bad = (labels < 0) | (labels >= n_out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        complain(i, repr(ys[i]))
    if as_labels:
        return X, labels
    Y = np.zeros((len(labels), n_out))
    Y[np.arange(len(labels)), labels] = 1.0
    return X, Y


def as_pairs(data, name):
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
    X = aligned.ascontiguous(arr.reshape(len(items), n), np.float64)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        complain(int(np.flatnonzero(~finite)[0]), "with a NaN or infinite value", ValueError)
    return X


def _is_label(v):
    """An integer (not a bool), also as a 0-d array."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_labels(ys):
    """ys as an int64 array if every one is an integer label, else None."""
    if not all(_is_label(v) for v in ys):
        return None
    return np.fromiter(ys, dtype=np.int64, count=len(ys))


# ---------------------------------------------------------------------- the book's miscellaneous functions
def sigmoid(z):
    """The sigmoid function, elementwise."""
    # exp(-z) overflows to inf for very negative z, and 1/(1+inf) = 0 is the right answer.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """Derivative of the sigmoid function, elementwise."""
    return sigmoid(z) * (1 - sigmoid(z))
