"""Gradient checking by central finite differences.

The book's eq. (46) estimates a partial derivative with a one-sided difference
``(C(p + eps) - C(p)) / eps``; here it is made symmetric,
``(C(p + eps) - C(p - eps)) / 2 eps``, whose error is O(eps^2) instead of O(eps).

The check works with any model object (duck typing) that has

* ``weights``: list of live ``(n_out, n_in)`` arrays (editing them in place
  changes the model),
* ``biases``: list of live ``(n_out,)`` arrays,
* ``cost(X, Y) -> float``: mean cost over the rows, unregularised,
* ``gradient(X, Y) -> (grad_w, grad_b)``: lists with the same shapes.

It perturbs one parameter at a time, so it costs two cost evaluations per
parameter: it is meant to be slow and trustworthy, for small networks.

The model is evaluated in its own dtype. The default ``eps=1e-6`` suits
float64; for float32 parameters use a larger step (around ``1e-3``) because
the perturbation must survive rounding to float32 and the cost itself is only
accurate to about 1e-7 relative.
"""

import numbers

import numpy as np

__all__ = ["finite_difference_gradient", "relative_errors", "gradcheck"]


def finite_difference_gradient(model, X, Y, *, eps=1e-3, richardson=True):
    """Central-difference estimate of ``model``'s gradient on ``X``, ``Y``.

    Each parameter ``p`` is set to ``p + eps`` and ``p - eps`` in the live arrays
    and restored bit for bit to its saved value afterwards, also when ``cost``
    raises. The difference is divided by the step actually taken, which differs
    from ``2 eps`` once ``p +- eps`` are rounded to the array's dtype.
    With ``richardson`` (the default) the central differences at ``eps`` and
    ``2 eps`` are combined as ``(4 D(eps) - D(2 eps)) / 3``, which cancels their
    O(eps^2) error: the truncation error becomes O(eps^4), so a step large
    enough to keep the cost's rounding small (1e-3) is also accurate (about
    1e-13 absolute on unit-scale costs in float64, against about 1e-10 for a
    plain central difference at eps = 1e-6).
    Returns ``(grad_w, grad_b)``: lists of float64 arrays shaped like the
    parameters.
    """
    eps = _check_eps(eps)
    weights, biases = _live_parameters(model)
    grads = [np.empty(p.shape, dtype=np.float64) for p in weights + biases]
    for p, grad in zip(weights + biases, grads):
        for idx in np.ndindex(p.shape):
            estimate = _central_difference(model, X, Y, p, idx, eps)
            if richardson:
                estimate = (4.0 * estimate - _central_difference(model, X, Y, p, idx, 2 * eps)) / 3.0
            grad[idx] = estimate
    return grads[:len(weights)], grads[len(weights):]


def _central_difference(model, X, Y, p, idx, eps):
    """(C(p + eps) - C(p - eps)) / (actual step) for the parameter p[idx], restored afterwards."""
    original = p[idx]  # a copy of the value, in the array's dtype
    try:
        p[idx] = original + eps
        p_plus = float(p[idx])
        c_plus = float(model.cost(X, Y))
        p[idx] = original - eps
        p_minus = float(p[idx])
        c_minus = float(model.cost(X, Y))
    finally:
        p[idx] = original
    step = p_plus - p_minus
    if step == 0.0:
        raise ValueError(f"eps must be large enough to change a parameter of dtype "
                         f"{p.dtype} (value {float(original)!r}); got {eps!r}.")
    return (c_plus - c_minus) / step


def relative_errors(g_a, g_b, *, floor=None):
    """Elementwise relative errors ``|a - b| / max(|a|, |b|, floor)``, as a flat array.

    ``g_a`` and ``g_b`` are arrays or (nested) lists/tuples of arrays, such as
    ``(grad_w, grad_b)``, flattened in order; they must have the same number of
    entries. The default ``floor`` is ``1e-4 * max |g|`` over both gradients (at least
    1e-12): without it a component whose true value is ~0 would be compared
    relative to its own rounding noise, and that noise would dominate the
    result. (The finite differences carry an absolute error of about
    1e-16 |C| / eps, ~1e-12 at the default eps: measured up to 5e-7 "relative"
    on components 1e-6 of the largest with a 1e-5 floor.)
    Entries that are not finite (or give a non-finite error) count as ``inf``,
    so they can never pass a tolerance.
    """
    a = _flatten("g_a", g_a)
    b = _flatten("g_b", g_b)
    if a.shape != b.shape:
        raise ValueError(f"g_b must have as many entries as g_a ({a.size}); got {b.size}.")
    if floor is None:
        finite = np.concatenate([a, b])
        finite = finite[np.isfinite(finite)]
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        floor = max(1e-4 * scale, 1e-12)
    elif isinstance(floor, bool) or not isinstance(floor, numbers.Real):
        raise TypeError(f"floor must be a real number; got {type(floor).__name__}.")
    elif not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be a finite number >= 0; got {floor!r}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.abs(a - b)
        denom = np.maximum(np.maximum(np.abs(a), np.abs(b)), float(floor))
        err = diff / denom
    # With floor = 0, two exact zeros agree perfectly.
    err[(diff == 0) & (denom == 0)] = 0.0
    err[~np.isfinite(err) | ~np.isfinite(a) | ~np.isfinite(b)] = np.inf
    return err


def gradcheck(model, X, Y, *, eps=1e-3, richardson=True):
    """Largest relative error of ``model.gradient`` against finite differences.

    With float64 and the defaults, each finite difference is accurate to about
    1e-12 absolute, so a correct backprop gives well under 1e-7 (components
    below 1e-4 of the largest are judged against that floor, see
    ``relative_errors``); an error in the equations gives 1e-3 or more. Returns a float (``inf`` if any component is
    not finite).
    """
    eps = _check_eps(eps)
    # Copied at once, in case the model reuses its gradient buffers while the
    # finite differences call ``cost``.
    grad_w, grad_b = (
        [np.array(g, dtype=np.float64) for g in grads] for grads in model.gradient(X, Y))
    weights, biases = _live_parameters(model)
    for name, grads, params in (("grad_w", grad_w, weights), ("grad_b", grad_b, biases)):
        shapes = [np.shape(g) for g in grads]
        expected = [p.shape for p in params]
        if shapes != expected:
            raise ValueError(f"model.gradient {name} must have shapes {expected}; got {shapes}.")
    fd_w, fd_b = finite_difference_gradient(model, X, Y, eps=eps, richardson=richardson)
    err = relative_errors((grad_w, grad_b), (fd_w, fd_b))
    return float(np.max(err)) if err.size else 0.0


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number; got {type(eps).__name__}.")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}.")
    return float(eps)


def _live_parameters(model):
    """The model's weight and bias arrays themselves (not copies), checked once."""
    params = {}
    for name in ("weights", "biases"):
        value = getattr(model, name, None)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"model.{name} must be a list of arrays; got {type(value).__name__}.")
        for i, p in enumerate(value):
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"model.{name}[{i}] must be a floating-point numpy array; "
                                f"got {type(p).__name__}"
                                + (f" of dtype {p.dtype}." if isinstance(p, np.ndarray) else "."))
            if not p.flags.writeable:
                raise ValueError(f"model.{name}[{i}] must be writeable to be perturbed in "
                                 f"place; got a read-only array.")
        params[name] = list(value)
    return params["weights"], params["biases"]


def _flatten(name, g):
    """All entries of an array or nested list/tuple of arrays, as one float64 vector."""
    if isinstance(g, (list, tuple)):
        parts = [_flatten(name, item) for item in g]
        return np.concatenate(parts) if parts else np.empty(0)
    arr = np.asarray(g)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numeric arrays; got dtype {arr.dtype}.")
    return arr.astype(np.float64).ravel()
