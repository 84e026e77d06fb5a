"""Plain NumPy backpropagation: the oracle for the tests and the baseline for the benchmarks.

Two versions of the same algorithm, written to be read side by side with
chapter 2 of "Neural Networks and Deep Learning":

* the book's per-example loop (network.py / network2.py): every example is a
  column vector and ``backprop`` runs once per example;
* the chapter's fully matrix-based mini-batch: the whole batch goes through a
  layer in one matrix product, one example per row (``Z = A @ W.T + b``).

Conventions: weight ``w^l`` has shape ``(n_out, n_in)`` (the book's
``w^l_{jk}``, j output, k input), bias ``b^l`` has shape ``(n_out,)``, a batch
``X`` is ``(m, n_in)`` and its targets ``Y`` are ``(m, n_out)``.

Everything is computed in float64, whatever the input dtype, because this
module is the yardstick other implementations are measured against. Every
function is pure: parameters come in as lists of arrays and new lists come
out; the caller's arrays are never modified.

Costs (per example): ``"quadratic"`` 0.5 ||a - y||^2, ``"cross-entropy"``
sum -y ln a - (1 - y) ln(1 - a), ``"log-likelihood"`` -sum y ln a. The last two
need outputs in (0, 1), i.e. a sigmoid or softmax output layer, and the
log-likelihood shortcut for softmax assumes each row of ``Y`` sums to 1.

Activations, one name per weight layer: ``"sigmoid"``, ``"tanh"``, ``"relu"``
(derivative 0 at z = 0), ``"linear"``, ``"softmax"`` (last layer only).
``activations=None`` means sigmoid everywhere, as in the book.
"""

import numbers

import numpy as np

__all__ = [
    "sigmoid",
    "sigmoid_prime",
    "backprop",
    "update_mini_batch_per_example",
    "backprop_matrix",
    "update_mini_batch_matrix",
    "feedforward",
    "total_cost",
    "mean_gradient",
    "sgd_epoch",
    "init_parameters",
]

COSTS = ("quadratic", "cross-entropy", "log-likelihood")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear", "softmax")
# network.py and network2.py only know sigmoid neurons and these two costs.
PER_EXAMPLE_COSTS = ("quadratic", "cross-entropy")


# ----------------------------------------------------------------------------
# Activation functions and their derivatives
# ----------------------------------------------------------------------------

def sigmoid(z):
    """The sigmoid function, elementwise."""
    # exp(-z) overflows to inf for very negative z; 1/(1+inf) = 0 is still right.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """Derivative of the sigmoid function, elementwise."""
    s = sigmoid(z)
    return s * (1 - s)


def _softmax(z):
    """Softmax of each row of ``z`` (m, n)."""
    # Subtracting the row maximum does not change the result and keeps exp finite.
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_ACTIVATION = {
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "linear": lambda z: z,
    "softmax": _softmax,
}

# sigma'(z) for the elementwise activations; softmax has a Jacobian instead (see BP1).
_ACTIVATION_PRIME = {
    "sigmoid": sigmoid_prime,
    "tanh": lambda z: 1.0 - np.tanh(z) ** 2,
    "relu": lambda z: (z > 0).astype(np.float64),
    "linear": np.ones_like,
}


# ----------------------------------------------------------------------------
# Costs
# ----------------------------------------------------------------------------

def _cost_per_row(cost, A, Y):
    """Cost of each example (row) of the outputs ``A`` against ``Y``; shape (m,)."""
    if cost == "quadratic":
        return 0.5 * np.sum((A - Y) ** 2, axis=1)
    # log(0) is -inf and 0 * -inf is nan; nan_to_num turns those terms into
    # numbers, as network2 does.
    with np.errstate(divide="ignore", invalid="ignore"):
        if cost == "cross-entropy":
            return np.sum(np.nan_to_num(-Y * np.log(A) - (1 - Y) * np.log(1 - A)), axis=1)
        return np.sum(np.nan_to_num(-Y * np.log(A)), axis=1)


def _cost_gradient(cost, A, Y):
    """grad_a C of one example's cost, for each row."""
    if cost == "quadratic":
        return A - Y
    with np.errstate(divide="ignore", invalid="ignore"):
        if cost == "cross-entropy":
            return (A - Y) / (A * (1 - A))
        return -Y / A


def _output_delta(cost, name, z, a, y):
    """BP1 for a batch: delta^L = grad_a C (.) sigma'(z^L), one example per row."""
    if (cost, name) in (("cross-entropy", "sigmoid"), ("log-likelihood", "softmax")):
        # network2's shortcut: sigma'(z) cancels the denominator of grad_a C exactly,
        # which also avoids dividing by a saturated a(1 - a).
        return a - y
    g = _cost_gradient(cost, a, y)
    if name == "softmax":
        # Each softmax output depends on every z, so the Hadamard product of BP1
        # becomes the Jacobian product: delta_j = a_j (g_j - sum_i g_i a_i).
        return a * (g - np.sum(g * a, axis=1, keepdims=True))
    return g * _ACTIVATION_PRIME[name](z)


# ----------------------------------------------------------------------------
# 1. The book's per-example loop (network.py / network2.py)
# ----------------------------------------------------------------------------

def backprop(weights, biases, x, y, *, cost="quadratic"):
    """Gradient of one example's cost, network.py's ``backprop``.

    Sigmoid neurons everywhere. ``x`` is ``(n_in,)`` or ``(n_in, 1)``, ``y`` is
    ``(n_out,)`` or ``(n_out, 1)``. Returns ``(nabla_b, nabla_w)`` in the book's
    order: lists of ``(n_out,)`` and ``(n_out, n_in)`` arrays (biases are 1-D,
    the package's convention, although the loop works on column vectors).
    """
    weights, biases = _check_parameters(weights, biases)
    _check_choice("cost", cost, PER_EXAMPLE_COSTS)
    x = _check_vector("x", x, weights[0].shape[1])
    y = _check_vector("y", y, weights[-1].shape[0])
    return _backprop(weights, biases, x, y, cost)


def _backprop(weights, biases, x, y, cost):
    """``backprop`` on checked float64 inputs; ``x`` and ``y`` are column vectors."""
    num_layers = len(weights) + 1
    nabla_b = [np.zeros((b.shape[0], 1)) for b in biases]
    nabla_w = [np.zeros(w.shape) for w in weights]
    # feedforward
    activation = x
    activations = [x]  # list to store all the activations, layer by layer
    zs = []  # list to store all the z vectors, layer by layer
    for b, w in zip(biases, weights):
        z = np.dot(w, activation) + b.reshape(-1, 1)
        zs.append(z)
        activation = sigmoid(z)
        activations.append(activation)
    # backward pass: BP1
    if cost == "quadratic":
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
    else:
        # cross-entropy: network2's CrossEntropyCost.delta, sigma'(z) cancels
        delta = activations[-1] - y
    nabla_b[-1] = delta  # BP3
    nabla_w[-1] = np.dot(delta, activations[-2].transpose())  # BP4
    # l = 1 is the last layer, l = 2 the second-last, and so on.
    for l in range(2, num_layers):
        z = zs[-l]
        sp = sigmoid_prime(z)
        delta = np.dot(weights[-l + 1].transpose(), delta) * sp  # BP2
        nabla_b[-l] = delta
        nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
    return [nb.ravel() for nb in nabla_b], nabla_w


def _summed_backprop(weights, biases, X, Y, cost):
    """network.py's loop: backprop on each row as a column vector, summed -> (nabla_b, nabla_w)."""
    nabla_b = [np.zeros(b.shape) for b in biases]
    nabla_w = [np.zeros(w.shape) for w in weights]
    for x, y in zip(X, Y):
        delta_nabla_b, delta_nabla_w = _backprop(
            weights, biases, x.reshape(-1, 1), y.reshape(-1, 1), cost)
        nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
        nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
    return nabla_b, nabla_w


def update_mini_batch_per_example(weights, biases, X, Y, eta, *, cost="quadratic",
                                  lmbda=0.0, n=None):
    """One gradient step on the mini-batch ``X (m, n_in)``, ``Y (m, n_out)``.

    network2.py's ``update_mini_batch``: ``backprop`` for each row, then
    ``w -> (1 - eta*lmbda/n) w - eta/m sum nabla_w`` and
    ``b -> b - eta/m sum nabla_b``. ``n`` is the training set size used by the
    L2 term (default ``len(X)``). Sigmoid neurons everywhere. Returns new
    ``(weights, biases)`` lists.
    """
    weights, biases = _check_parameters(weights, biases)
    X, Y = _check_batch(X, Y, weights)
    _check_choice("cost", cost, PER_EXAMPLE_COSTS)
    eta, lmbda, n = _check_step(eta, lmbda, n, len(X))
    nabla_b, nabla_w = _summed_backprop(weights, biases, X, Y, cost)
    m = len(X)
    weights = [(1 - eta * (lmbda / n)) * w - (eta / m) * nw
               for w, nw in zip(weights, nabla_w)]
    biases = [b - (eta / m) * nb for b, nb in zip(biases, nabla_b)]
    return weights, biases


# ----------------------------------------------------------------------------
# 2. The chapter's fully matrix-based mini-batch
# ----------------------------------------------------------------------------

def backprop_matrix(weights, biases, X, Y, *, activations=None, cost="quadratic"):
    """Gradient of the cost summed over the batch, all examples at once.

    ``X (m, n_in)``, ``Y (m, n_out)``, one example per row, so a layer is
    ``Z = A @ W.T + b`` and BP4 summed over the batch is ``delta.T @ A``.
    Returns ``(nabla_w, nabla_b)``: lists of ``(n_out, n_in)`` and ``(n_out,)``
    arrays (note the order, weights first).
    """
    weights, biases = _check_parameters(weights, biases)
    X, Y = _check_batch(X, Y, weights)
    names = _check_activations(activations, len(weights))
    _check_choice("cost", cost, COSTS)
    return _backprop_matrix(weights, biases, X, Y, names, cost)


def _backprop_matrix(weights, biases, X, Y, names, cost):
    """``backprop_matrix`` on checked float64 inputs; ``names`` has one entry per layer."""
    num_layers = len(weights) + 1
    nabla_w = [None] * len(weights)
    nabla_b = [None] * len(weights)
    # feedforward, the whole batch at a time
    A = X
    activations = [X]  # the book's list of layer outputs, now (m, n) matrices
    zs = []
    for w, b, name in zip(weights, biases, names):
        Z = A @ w.T + b
        zs.append(Z)
        A = _ACTIVATION[name](Z)
        activations.append(A)
    # backward pass
    delta = _output_delta(cost, names[-1], zs[-1], activations[-1], Y)  # BP1
    nabla_b[-1] = delta.sum(axis=0)  # BP3 summed over the batch
    nabla_w[-1] = delta.T @ activations[-2]  # BP4 summed over the batch
    for l in range(2, num_layers):
        # The softmax can only be last, so every hidden layer is elementwise.
        sp = _ACTIVATION_PRIME[names[-l]](zs[-l])
        delta = (delta @ weights[-l + 1]) * sp  # BP2, rows are examples
        nabla_b[-l] = delta.sum(axis=0)
        nabla_w[-l] = delta.T @ activations[-l - 1]
    return nabla_w, nabla_b


def update_mini_batch_matrix(weights, biases, X, Y, eta, *, activations=None,
                             cost="quadratic", lmbda=0.0, n=None):
    """One gradient step on the mini-batch, with the matrix-based backprop.

    Same rule as ``update_mini_batch_per_example`` (network2's L2 weight decay
    with training set size ``n``, default ``len(X)``; biases are not decayed).
    Returns new ``(weights, biases)`` lists.
    """
    weights, biases = _check_parameters(weights, biases)
    X, Y = _check_batch(X, Y, weights)
    names = _check_activations(activations, len(weights))
    _check_choice("cost", cost, COSTS)
    eta, lmbda, n = _check_step(eta, lmbda, n, len(X))
    nabla_w, nabla_b = _backprop_matrix(weights, biases, X, Y, names, cost)
    m = len(X)
    weights = [(1 - eta * (lmbda / n)) * w - (eta / m) * nw
               for w, nw in zip(weights, nabla_w)]
    biases = [b - (eta / m) * nb for b, nb in zip(biases, nabla_b)]
    return weights, biases


# ----------------------------------------------------------------------------
# 3. Network output, cost and mean gradient
# ----------------------------------------------------------------------------

def feedforward(weights, biases, X, *, activations=None):
    """Output of the network for each row of ``X (m, n_in)``; shape ``(m, n_out)``."""
    weights, biases = _check_parameters(weights, biases)
    X = _check_matrix("X", X, weights[0].shape[1])
    names = _check_activations(activations, len(weights))
    return _feedforward(weights, biases, X, names)


def _feedforward(weights, biases, X, names):
    a = X
    for w, b, name in zip(weights, biases, names):
        a = _ACTIVATION[name](a @ w.T + b)
    return a


def total_cost(weights, biases, X, Y, *, activations=None, cost="quadratic",
               lmbda=0.0, n=None):
    """Mean cost over the rows of ``X``, ``Y``, plus network2's L2 term.

    The L2 term is ``0.5 * (lmbda / n) * sum ||w||^2`` over the weights only,
    with ``n`` defaulting to ``len(X)``. Returns a Python float.
    """
    weights, biases = _check_parameters(weights, biases)
    X, Y = _check_batch(X, Y, weights)
    names = _check_activations(activations, len(weights))
    _check_choice("cost", cost, COSTS)
    lmbda = _check_real("lmbda", lmbda, minimum=0.0)
    n = len(X) if n is None else _check_positive_int("n", n)
    A = _feedforward(weights, biases, X, names)
    c = float(np.mean(_cost_per_row(cost, A, Y)))
    if lmbda > 0:
        c += 0.5 * (lmbda / n) * sum(np.linalg.norm(w) ** 2 for w in weights)
    return c


def mean_gradient(weights, biases, X, Y, *, activations=None, cost="quadratic",
                  method="matrix"):
    """Gradient of the mean (unregularised) cost over the rows of ``X``, ``Y``.

    ``method`` is ``"matrix"`` (``backprop_matrix``) or ``"per_example"`` (the
    book's loop, sigmoid only, quadratic or cross-entropy cost). Returns
    ``(grad_w, grad_b)``: lists of ``(n_out, n_in)`` and ``(n_out,)`` arrays.
    """
    weights, biases = _check_parameters(weights, biases)
    X, Y = _check_batch(X, Y, weights)
    names = _check_activations(activations, len(weights))
    _check_choice("method", method, ("matrix", "per_example"))
    m = len(X)
    if method == "matrix":
        _check_choice("cost", cost, COSTS)
        nabla_w, nabla_b = _backprop_matrix(weights, biases, X, Y, names, cost)
    else:
        _check_per_example(cost, names)
        nabla_b, nabla_w = _summed_backprop(weights, biases, X, Y, cost)
    return [nw / m for nw in nabla_w], [nb / m for nb in nabla_b]


# ----------------------------------------------------------------------------
# 4. One epoch of mini-batch SGD
# ----------------------------------------------------------------------------

def sgd_epoch(weights, biases, X, Y, *, batch_size, eta, method="per_example",
              order=None, cost="quadratic", lmbda=0.0, activations=None):
    """One epoch of mini-batch SGD over ``X (n, n_in)``, ``Y (n, n_out)``.

    The examples are taken in ``order`` (a permutation of ``range(n)``,
    default ``arange(n)``) in consecutive chunks of ``batch_size``; the last
    chunk is smaller when ``n`` is not a multiple, as in the book. ``method``
    is ``"per_example"`` (sigmoid only, quadratic or cross-entropy) or
    ``"matrix"``. The L2 term uses ``n = len(X)``. Returns new
    ``(weights, biases)`` lists.
    """
    weights, biases = _check_parameters(weights, biases)
    X, Y = _check_batch(X, Y, weights)
    names = _check_activations(activations, len(weights))
    _check_choice("method", method, ("per_example", "matrix"))
    if method == "per_example":
        _check_per_example(cost, names)
    else:
        _check_choice("cost", cost, COSTS)
    batch_size = _check_positive_int("batch_size", batch_size)
    n = len(X)
    eta, lmbda, _ = _check_step(eta, lmbda, None, n)
    order = _check_order(order, n)
    for k in range(0, n, batch_size):
        idx = order[k:k + batch_size]
        if method == "per_example":
            weights, biases = update_mini_batch_per_example(
                weights, biases, X[idx], Y[idx], eta, cost=cost, lmbda=lmbda, n=n)
        else:
            weights, biases = update_mini_batch_matrix(
                weights, biases, X[idx], Y[idx], eta, activations=names, cost=cost,
                lmbda=lmbda, n=n)
    return weights, biases


# ----------------------------------------------------------------------------
# 5. Initialisation
# ----------------------------------------------------------------------------

def init_parameters(sizes, rng, *, scale="large"):
    """Random weights and biases for a network with layer sizes ``sizes``.

    ``scale="large"`` is network.py's (and network2's ``large_weight_initializer``):
    standard normal weights and biases. ``scale="default"`` is network2's
    ``default_weight_initializer``: weights divided by ``sqrt(n_in)`` so that
    ``z`` does not start saturated. As in the book, all biases are drawn first,
    then all weights, from the ``numpy.random.Generator`` ``rng``.
    Returns ``(weights, biases)``: lists of ``(n_out, n_in)`` and ``(n_out,)`` arrays.
    """
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ValueError(f"sizes must be a list of at least 2 layer sizes; got {sizes!r}.")
    sizes = [_check_positive_int("sizes[%d]" % i, s) for i, s in enumerate(sizes)]
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}.")
    _check_choice("scale", scale, ("large", "default"))
    biases = [rng.standard_normal(y) for y in sizes[1:]]
    weights = [rng.standard_normal((y, x)) for x, y in zip(sizes[:-1], sizes[1:])]
    if scale == "default":
        weights = [w / np.sqrt(w.shape[1]) for w in weights]
    return weights, biases


# ----------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------

def _as_float_array(name, a):
    """``a`` as a float64 array, refusing non-numeric data (no copy if already float64)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}.")
    return np.asarray(arr, dtype=np.float64)


def _check_parameters(weights, biases):
    for name, value in (("weights", weights), ("biases", biases)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of arrays; got {type(value).__name__}.")
        if len(value) == 0:
            raise ValueError(f"{name} must be a non-empty list of arrays; got an empty list.")
    if len(weights) != len(biases):
        raise ValueError(f"biases must have one array per weight matrix ({len(weights)}); "
                         f"got {len(biases)}.")
    ws, bs = [], []
    for l, (w, b) in enumerate(zip(weights, biases)):
        w = _as_float_array(f"weights[{l}]", w)
        b = _as_float_array(f"biases[{l}]", b)
        if w.ndim != 2 or w.size == 0:
            raise ValueError(f"weights[{l}] must be a non-empty 2-D array (n_out, n_in); "
                             f"got shape {w.shape}.")
        if b.shape != (w.shape[0],):
            raise ValueError(f"biases[{l}] must have shape ({w.shape[0]},); got shape {b.shape}.")
        if ws and w.shape[1] != ws[-1].shape[0]:
            raise ValueError(f"weights[{l}] must have {ws[-1].shape[0]} columns to follow "
                             f"weights[{l - 1}]; got shape {w.shape}.")
        ws.append(w)
        bs.append(b)
    return ws, bs


def _check_matrix(name, A, n_cols):
    A = _as_float_array(name, A)
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] != n_cols:
        raise ValueError(f"{name} must be a 2-D array with at least one row and {n_cols} "
                         f"columns; got shape {A.shape}.")
    return A


def _check_batch(X, Y, weights):
    X = _check_matrix("X", X, weights[0].shape[1])
    Y = _check_matrix("Y", Y, weights[-1].shape[0])
    if len(Y) != len(X):
        raise ValueError(f"Y must have as many rows as X ({len(X)}); got {len(Y)}.")
    return X, Y


def _check_vector(name, v, n):
    """One example as a column vector ``(n, 1)``, from ``(n,)`` or ``(n, 1)``."""
    v = _as_float_array(name, v)
    if v.shape not in ((n,), (n, 1)):
        raise ValueError(f"{name} must have shape ({n},) or ({n}, 1); got shape {v.shape}.")
    return v.reshape(n, 1)


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")


def _check_activations(activations, num_weight_layers):
    """The list of activation names, one per weight layer."""
    if activations is None:
        return ["sigmoid"] * num_weight_layers
    if isinstance(activations, str) or not isinstance(activations, (list, tuple)):
        raise TypeError(f"activations must be None or a list of names; got "
                        f"{type(activations).__name__}.")
    if len(activations) != num_weight_layers:
        raise ValueError(f"activations must have one name per weight layer "
                         f"({num_weight_layers}); got {len(activations)}.")
    for l, name in enumerate(activations):
        _check_choice(f"activations[{l}]", name, ACTIVATIONS)
        if name == "softmax" and l != num_weight_layers - 1:
            raise ValueError(f"activations[{l}] must not be 'softmax' (only the last layer "
                             f"can be); got 'softmax'.")
    return list(activations)


def _check_per_example(cost, names):
    """The book's loop knows sigmoid neurons and the quadratic and cross-entropy costs."""
    _check_choice("cost", cost, PER_EXAMPLE_COSTS)
    if any(name != "sigmoid" for name in names):
        raise ValueError(f"activations must be None or all 'sigmoid' for "
                         f"method='per_example'; got {names!r}.")


def _check_real(name, value, *, minimum=None, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and (
            value < minimum or (strict and value == minimum))):
        bound = "" if minimum is None else (" > " if strict else " >= ") + repr(minimum)
        raise ValueError(f"{name} must be a finite number{bound}; got {value!r}.")
    return value


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}.")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value}.")
    return int(value)


def _check_step(eta, lmbda, n, batch_rows):
    """eta > 0, lmbda >= 0, n (training set size) defaulting to ``batch_rows``."""
    eta = _check_real("eta", eta, minimum=0.0, strict=True)
    lmbda = _check_real("lmbda", lmbda, minimum=0.0)
    n = batch_rows if n is None else _check_positive_int("n", n)
    return eta, lmbda, n


def _check_order(order, n):
    if order is None:
        return np.arange(n)
    order = np.asarray(order)
    if order.dtype.kind not in "iu" or order.ndim != 1:
        raise TypeError(f"order must be a 1-D integer array; got dtype {order.dtype}, "
                        f"shape {order.shape}.")
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"order must be a permutation of range({n}); got an array of "
                         f"length {len(order)} that is not.")
    return order
