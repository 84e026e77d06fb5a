"""Activation functions: names, integer codes for the kernels, and user-defined pairs.

The kernels never see a string: the model turns each layer's choice into one of the codes below once, at
construction. A user-defined activation is a pair of Numba-jitted scalar functions ``(f, f_prime)`` of ``z``;
the kernels call them directly, so they run at kernel speed.
"""
from numba import njit
from numba.core.registry import CPUDispatcher

SIGMOID, TANH, RELU, LINEAR, SOFTMAX, CUSTOM = 0, 1, 2, 3, 4, 5

CODES = {"sigmoid": SIGMOID, "tanh": TANH, "relu": RELU, "linear": LINEAR, "softmax": SOFTMAX}
NAMES = {code: name for name, code in CODES.items()}


@njit(cache=True)
def unused_f(z):
    """Placeholder passed to the kernels when no layer uses a custom activation."""
    return z


@njit(cache=True)
def unused_f_prime(z):
    """Placeholder derivative matching :func:`unused_f`."""
    return z - z + 1


def is_custom_pair(spec):
    """True when ``spec`` is a ``(f, f_prime)`` pair of Numba-jitted functions."""
    return (isinstance(spec, (tuple, list)) and len(spec) == 2
            and all(isinstance(fn, CPUDispatcher) for fn in spec))


def parse(activation, n_layers):
    """Turn the ``activation`` argument into per-layer codes and the custom pair.

    activation : a name, a ``(f, f_prime)`` jitted pair, or a list of either with one entry per weight layer.
    Returns ``(codes, names, (f, f_prime))`` where ``codes`` has ``n_layers`` ints and ``names`` has the
    names (``"custom"`` for the pair).
    """
    if isinstance(activation, str) or is_custom_pair(activation):
        specs = [activation] * n_layers
    elif isinstance(activation, (list, tuple)):
        specs = list(activation)
        if len(specs) != n_layers:
            raise ValueError(f"activation must have one entry per weight layer ({n_layers}); "
                             f"got {len(specs)} entries.")
    else:
        raise TypeError("activation must be a name, a (f, f_prime) pair of numba-jitted functions, "
                        f"or a list of those; got {type(activation).__name__}.")
    codes, names, pair = [], [], None
    for layer, spec in enumerate(specs, start=1):
        if is_custom_pair(spec):
            if pair is not None and tuple(spec) != pair:
                raise ValueError("activation may use at most one custom (f, f_prime) pair; got several.")
            pair = tuple(spec)
            codes.append(CUSTOM)
            names.append("custom")
            continue
        if not isinstance(spec, str) or spec not in CODES:
            raise ValueError(f"activation of layer {layer} must be one of {sorted(CODES)} or a "
                             f"(f, f_prime) pair of numba-jitted functions; got {spec!r}.")
        if spec == "softmax" and layer != n_layers:
            raise ValueError(f"activation 'softmax' is only allowed on the output layer; got it on layer {layer}.")
        codes.append(CODES[spec])
        names.append(spec)
    return codes, names, pair or (unused_f, unused_f_prime)
