"""Checks run once at the public boundary; each error names the argument, the requirement and what was given."""
import numbers

import numpy as np

from . import aligned

FLOAT_DTYPES = ("float32", "float64")


def all_finite(arr, rows_per_block=4096):
    """True when every value of the 2-D array is finite; checks blocks of rows so that the temporary mask stays
    small (a mask of the whole of Fashion-MNIST would add 47 MB to the peak memory)."""
    return all(np.isfinite(arr[i:i + rows_per_block]).all() for i in range(0, arr.shape[0], rows_per_block))


def check_int(value, name, *, minimum=None):
    """An int (not bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}.")
    return int(value)


def check_float(value, name, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (open ends where asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}.")
    value = float(value)
    left = "(" if low_open else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    bad = not np.isfinite(value)
    bad |= low is not None and (value < low or (low_open and value == low))
    bad |= high is not None and (value > high or (high_open and value == high))
    if bad:
        raise ValueError(f"{name} must be a finite float in the range {interval}; got {value!r}.")
    return value


def check_dtype(dtype, name="dtype"):
    """float32 or float64, as a numpy dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64'; got {dtype!r}.")
    return dt


def check_sizes(sizes):
    """Layer sizes: a sequence of at least two positive ints."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"sizes must be a sequence of ints such as [784, 30, 10]; got {sizes!r}.")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least two layers (inputs and outputs); got {sizes!r}.")
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"sizes must contain positive ints; got {sizes!r}.")
    return tuple(int(n) for n in sizes)


def _as_array(x, name):
    """np.asarray(x), with an error naming ``name`` for nested lists of unequal lengths."""
    try:
        return np.asarray(x)
    except ValueError as exc:
        raise ValueError(f"{name} must be an array or equal-length nested lists; got a ragged sequence "
                         f"({exc}).") from None


def check_matrix(X, name, *, n_cols, dtype, realign=False):
    """A finite real 2-D array with n_cols columns, as a C-contiguous array of dtype (a copy only if needed; a
    copy is aligned, and with ``realign`` so is the result: see ``aligned``)."""
    arr = _as_array(X, name)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, {n_cols}); got shape {arr.shape}.")
    if arr.shape[1] != n_cols:
        raise ValueError(f"{name} must have {n_cols} columns to match the network; got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {arr.shape}.")
    return _finite_as(arr, name, dtype, realign)


def _finite_as(arr, name, dtype, realign=False):
    """arr as a C-contiguous array of dtype (``aligned.ascontiguous``) whose values are all finite, checked in one
    pass over the result; else an error that tells NaN or infinity given from values too large for dtype."""
    with np.errstate(over="ignore"):
        out = aligned.ascontiguous(arr, dtype, realign)
    if not all_finite(out):
        if out is not arr and all_finite(arr):  # finite as given: the cast overflowed (float32)
            raise ValueError(f"{name} must hold values within {np.dtype(dtype).name}'s range (magnitude at most "
                             f"{np.finfo(dtype).max:.4g}); got larger ones.")
        raise ValueError(f"{name} must contain only finite values; got NaN or infinity.")
    return out


def check_scaled_inputs(X, name, *, n_cols):
    """A ScaledInputs (valid by construction) with n_cols columns and at least one row."""
    if X.shape[1] != n_cols:
        raise ValueError(f"{name} must have {n_cols} columns to match the network; got shape {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {X.shape}.")
    return X


def check_targets(y, name, *, n_rows, n_out, dtype):
    """Targets as an (n_rows, n_out) C-contiguous array of dtype.

    y is either integer class labels (n_rows,) in [0, n_out), one-hot encoded here, or real targets
    (n_rows, n_out). A 1-D float array of whole numbers counts as labels.
    """
    arr = _as_array(y, name)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be integer labels or an array of real targets; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name} must have one label per row of X ({n_rows}); got {arr.shape[0]}.")
        if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} given as 1-D must hold integer class labels; got non-integer values.")
        if arr.size and (arr.min() < 0 or arr.max() >= n_out):  # compared before any cast, as given
            raise ValueError(f"{name} must hold class labels in [0, {n_out - 1}] for {n_out} outputs; "
                             f"got values in [{arr.min():.6g}, {arr.max():.6g}].")
        labels = arr.astype(np.int64)
        Y = np.zeros((n_rows, n_out), dtype=dtype)
        Y[np.arange(n_rows), labels] = 1
        return Y
    if arr.ndim != 2 or arr.shape != (n_rows, n_out):
        raise ValueError(f"{name} must be labels ({n_rows},) or targets ({n_rows}, {n_out}); got shape {arr.shape}.")
    return _finite_as(arr, name, dtype)


def check_bool(value, name):
    """True or False (also numpy's bool), not another truthy value such as the string "no"."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}.")
    return bool(value)


def check_choice(value, name, choices):
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}.")
    return value
