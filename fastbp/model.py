"""The array API: :class:`MLP` validates once at the boundary, allocates once, and calls the kernels."""
import math
import os
import sys
import time
import warnings

import numpy as np

from . import activations, aligned, costs, kernels
from .checkpoint import RunState, check_checkpoint_options, data_fingerprint
from .checkpoint import read as read_checkpoint
from .checkpoint import write as write_checkpoint
from .codegen import start_numba_threads
from .inputs import ScaledInputs, kernel_inputs
from .threads import check_threads, using_threads
from .validation import (check_bool, check_choice, check_dtype, check_float, check_int, check_matrix,
                         check_scaled_inputs, check_sizes, check_targets)

# Layers with at least this many multiply-adds per batch (m * n_in * n_out) run their parallel kernel; below
# it, a parallel region per layer (a few microseconds to open, and each core reads every input row) costs more
# than the second core gives back. On a 2-core AMD EPYC (Zen 4), paired runs on 2 threads, same bits: with
# 1 << 17 momentum and Adam trained the book's [784, 30, 10] at m = 10 (235,200 per layer-1 batch) 0.63x and
# 0.72x as fast as on one thread, [784, 100, 10] at m = 10 (784,000) 0.67x, and [784, 30, 10] at m = 32 with Adam
# about 0.45x; with 1 << 21 they run as on one thread (0.99-1.01x), while [784, 100, 10] at m = 32 (2.5 million)
# keeps its gain (1.22x against 1.28x) and [784, 256, 128, 10] at m = 128 its (1.73x against 1.62x). Evaluation
# moved 0.99-1.02x. Networks with a hidden layer train in one region per call instead (ONE_REGION_MIN_WORK).
PARALLEL_MIN_WORK = 1 << 21
# Layer 1's multiply-adds per mini-batch from which training on several threads (a hidden layer, any optimizer)
# runs in one parallel region per epoch call (``kernels.one_region_applies``).
ONE_REGION_MIN_WORK = 1 << 16
# Rows per kernel call when evaluating (forward, cost, gradient) large arrays.
EVAL_CHUNK = 256
OPTIMIZERS = {"sgd": kernels.SGD, "momentum": kernels.MOMENTUM, "adam": kernels.ADAM}
INITS = ("default", "large")
# What preparing the kernels means for the user (progress lines of fit and fastbp train).
PREPARE_NOTE = "compiled on the first run, up to two minutes; loaded from the cache after"
# A progress bar's kernel calls per epoch: one per PROGRESS_INTERVAL seconds of the epoch before (tqdm redraws at
# most every 0.1 s), at most PROGRESS_MAX_CALLS, which the first epoch takes. Each call costs about 0.05 ms of its
# own (layer 1's transposed copy and first sums, the dispatch): 50 calls made the book's epoch 2% longer on two
# threads, where one call takes 0.08 s.
PROGRESS_INTERVAL = 0.1
PROGRESS_MAX_CALLS = 50


def progress_calls(last_epoch_seconds):
    """Kernel calls for an epoch with a progress bar, from the seconds the epoch before took (None: none yet)."""
    if last_epoch_seconds is None:
        return PROGRESS_MAX_CALLS
    return int(min(PROGRESS_MAX_CALLS, max(1, round(last_epoch_seconds / PROGRESS_INTERVAL))))


def make_layout(sizes, act_codes):
    """The kernels' ``layout`` (L+1, 5) int64 and the parameter count, for layers ``sizes``."""
    layout = np.zeros((len(sizes), 5), dtype=np.int64)
    layout[:, kernels.N] = sizes
    offset = units = 0
    for l in range(1, len(sizes)):
        layout[l, kernels.W_OFF] = offset
        offset += sizes[l] * sizes[l - 1]
        layout[l, kernels.B_OFF] = offset
        offset += sizes[l]
        layout[l, kernels.U_OFF] = units
        units += sizes[l]
        layout[l, kernels.ACT] = act_codes[l - 1]
    return layout, offset


class ParameterList(list):
    """A list of live views into the model's parameter vector.

    ``params[i] = array`` copies the array into the view (after checking its shape), so the list always
    shows, and edits, the parameters the kernels use.
    """

    def __init__(self, views, name):
        super().__init__(views)
        self._name = name

    def __setitem__(self, index, value):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self._name} items are assigned one at a time; got index {index!r}.")
        index = int(index)
        view = self[index]
        arr = np.asarray(value)
        if arr.shape != view.shape and arr.size == view.size and arr.squeeze().shape == view.squeeze().shape:
            arr = arr.reshape(view.shape)  # a (n, 1) column for a bias (n,), as network.py stores them
        if arr.shape != view.shape:
            raise ValueError(f"{self._name}[{index}] must have shape {view.shape}; got {arr.shape}.")
        if arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
            raise ValueError(f"{self._name}[{index}] must be finite real numbers; got dtype {arr.dtype} "
                             "or non-finite values.")
        view[...] = arr

    def assign(self, new, backing):
        """Copy every array of ``new`` into the views, all or nothing: on an error ``backing`` (the vector the
        views share) is restored. Arrays that are views of ``backing`` themselves are read before any write."""
        try:
            new = list(new)
        except TypeError:
            raise TypeError(f"{self._name} must be a list of {len(self)} arrays; got {type(new).__name__}.") from None
        if len(new) != len(self):
            raise ValueError(f"{self._name} must be a list of {len(self)} arrays (one per layer after the input "
                             f"layer); got {len(new)}.")
        arrays = [np.array(a) if np.may_share_memory(a, backing) else a for a in new]
        backup = backing.copy()
        try:
            for i, arr in enumerate(arrays):
                self[i] = arr
        except (TypeError, ValueError):
            backing[...] = backup
            raise

    def __reduce__(self):
        return list, (list(self),)


class MLP:
    """A fully-connected network trained by backpropagation (Nielsen, ch. 2) in Numba kernels.

    Parameters
    ----------
    sizes : neurons per layer, inputs first, e.g. ``[784, 30, 10]``.
    activation : a name ("sigmoid", "tanh", "relu", "linear", "softmax" for the last layer), a jitted
        ``(f, f_prime)`` pair, or a list with one of those per weight layer.
    cost : "quadratic", "cross-entropy" or "log-likelihood".
    dtype : "float64" or "float32"; data are converted to it once per call.
    seed : seeds the weights and the shuffling; the same seed gives the same weights.
    init : "default" (weights N(0, 1/n_in), network2's default) or "large" (N(0, 1), network.py's).
    n_threads : threads for the kernels (default: NUMBA_NUM_THREADS, SLURM_CPUS_PER_TASK, else the cores).

    ``weights[l]`` is ``(sizes[l+1], sizes[l])`` and ``biases[l]`` is ``(sizes[l+1],)``: live views of one
    flat parameter vector ``params``; editing them in place or assigning arrays both take effect.
    """

    def __init__(self, sizes, *, activation="sigmoid", cost="quadratic", dtype="float64", seed=None,
                 init="default", n_threads=None):
        self.sizes = check_sizes(sizes)
        self.num_layers = len(self.sizes)
        self.dtype = check_dtype(dtype)
        act_codes, self.activation_names, pair = activations.parse(activation, self.num_layers - 1)
        self._custom_pair = pair if activations.CUSTOM in act_codes else None
        self._specialized = None
        self.activation = activation
        self.cost_name = cost
        self._cost_code = costs.parse(cost)
        self.n_threads = check_threads(n_threads)
        check_choice(init, "init", INITS)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0)
        self.seed = seed
        self._layout, n_params = make_layout(self.sizes, act_codes)
        self._theta = aligned.zeros(n_params, self.dtype)
        self._ws = None
        self._make_views()
        self.rng = np.random.default_rng(seed)
        self.initialize(init)

    # ------------------------------------------------------------------ parameters
    def initialize(self, init="default"):
        """Draw new weights and biases from ``self.rng``: "default" N(0, 1/n_in) weights or "large" N(0, 1)."""
        check_choice(init, "init", INITS)
        for w, b in zip(self._weights, self._biases):
            scale = 1.0 if init == "large" else 1.0 / math.sqrt(w.shape[1])
            w[...] = self.rng.standard_normal(w.shape) * scale
            b[...] = self.rng.standard_normal(b.shape)

    @property
    def params(self):
        """All parameters as one flat vector (a live view): w^1, b^1, w^2, b^2, ..."""
        return self._theta

    @property
    def n_params(self):
        return self._theta.size

    @property
    def weights(self):
        return self._weights

    @weights.setter
    def weights(self, new):
        self._weights.assign(new, self._theta)

    @property
    def biases(self):
        return self._biases

    @biases.setter
    def biases(self, new):
        self._biases.assign(new, self._theta)

    def __getstate__(self):
        # The parameter lists are views of _theta: pickle the vector once and rebuild the views on load.
        return dict(self.__dict__, _weights=None, _biases=None, _specialized=None, _ws=None)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._theta = aligned.ascontiguous(self._theta, self._theta.dtype)
        self._make_views()

    def _make_views(self):
        self._weights = ParameterList([kernels.weight(self._theta, self._layout, l)
                                       for l in range(1, self.num_layers)], "weights")
        self._biases = ParameterList([kernels.bias(self._theta, self._layout, l)
                                      for l in range(1, self.num_layers)], "biases")

    def _workspace(self, m):
        """The kernels' workspace for batches of up to m rows, reused across calls."""
        size = kernels.workspace_length(self._layout, m)
        if self._ws is None or self._ws.size < size:
            self._ws = aligned.empty(size, self.dtype)
        if self._ws.size == size:
            return self._ws
        return self._ws[:size]

    def _kernel(self, name, *args):
        """Call kernels.<name>, or its twin compiled for this model's custom activation pair."""
        start_numba_threads()
        if self._custom_pair is None:
            return getattr(kernels, name)(*args)
        if self._specialized is None:
            self._specialized = kernels.specialize(*self._custom_pair)
        return getattr(self._specialized, name)(*args)

    def _par_min(self):
        return PARALLEL_MIN_WORK if self.n_threads > 1 else np.iinfo(np.int64).max

    # ------------------------------------------------------------------ boundary conversions
    def _inputs(self, X, name="X", realign=False):
        """X as the kernels read it: a C-contiguous array of the model's dtype, or ScaledInputs as they are. With
        ``realign`` (data that training reads every epoch) the array starts a cache line: an aligned copy if
        it does not (see ``aligned``)."""
        if isinstance(X, ScaledInputs):
            return check_scaled_inputs(X, name, n_cols=self.sizes[0])
        return check_matrix(X, name, n_cols=self.sizes[0], dtype=self.dtype, realign=realign)

    def _targets(self, y, n_rows, name="y"):
        return check_targets(y, name, n_rows=n_rows, n_out=self.sizes[-1], dtype=self.dtype)

    # ------------------------------------------------------------------ evaluation
    def forward(self, X):
        """Output activations a^L for every row of X (n, n_in) -> (n, n_out)."""
        return self._forward(self._inputs(X))

    def _forward(self, X):
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        with using_threads(self.n_threads):
            self._kernel("predict_into", self._theta, self._layout, *kernel_inputs(X), np.arange(X.shape[0]),
                         self._workspace(EVAL_CHUNK), out, self._par_min())
        return out

    feedforward = forward

    def predict(self, X):
        """Index of the most activated output neuron for every row of X -> (n,) int64."""
        return np.argmax(self.forward(X), axis=1)

    def score(self, X, y):
        """Fraction of rows whose predicted class matches y (labels (n,) or targets (n, n_out), by argmax)."""
        X = self._inputs(X)
        labels = np.argmax(self._targets(y, X.shape[0]), axis=1)
        return float(np.mean(np.argmax(self._forward(X), axis=1) == labels))

    def cost(self, X, Y):
        """Mean over rows of the per-example cost C_x (unregularised)."""
        X = self._inputs(X)
        return self._cost(X, self._targets(Y, X.shape[0], "Y"))

    def _cost(self, X, Y):
        with using_threads(self.n_threads):
            total = self._kernel("total_cost", self._theta, self._layout, self._cost_code, *kernel_inputs(X), Y,
                                 np.arange(X.shape[0]), self._workspace(EVAL_CHUNK), self._par_min())
        return total / X.shape[0]

    def gradient(self, X, Y):
        """Mean over rows of dC_x/dw and dC_x/db by backpropagation -> (grad_w, grad_b), shaped like
        (weights, biases). Unregularised."""
        X = self._inputs(X)
        grad = self._gradient(X, self._targets(Y, X.shape[0], "Y"))
        return self.unflatten(grad)

    def _gradient(self, X, Y, rows=None, scale=None):
        """Flat gradient: scale * sum over X[rows] (default: the mean over all rows)."""
        rows = np.arange(X.shape[0]) if rows is None else rows
        grad = aligned.zeros(self._theta.size, self.dtype)
        with using_threads(self.n_threads):
            self._kernel("batch_gradient", self._theta, self._layout, self._cost_code, *kernel_inputs(X), Y,
                         rows, 1.0 / rows.shape[0] if scale is None else scale, grad, self._workspace(EVAL_CHUNK),
                         self._par_min())
        return grad

    def unflatten(self, vector):
        """Split a flat vector of theta's layout (n_params,) into (weight arrays, bias arrays), as copies of the
        model's dtype."""
        if not isinstance(vector, np.ndarray) or vector.ndim != 1 or vector.shape[0] != self.n_params:
            shape = vector.shape if isinstance(vector, np.ndarray) else type(vector).__name__
            raise ValueError(f"vector must be a 1-D array of n_params = {self.n_params} values; got {shape}.")
        if vector.dtype.kind not in "fiu":
            raise TypeError(f"vector must hold real numbers; got dtype {vector.dtype}.")
        vector = np.ascontiguousarray(vector, dtype=self.dtype)
        return ([kernels.weight(vector, self._layout, l).copy() for l in range(1, self.num_layers)],
                [kernels.bias(vector, self._layout, l).copy() for l in range(1, self.num_layers)])

    # ------------------------------------------------------------------ training
    def fit(self, X, y, *, epochs, batch_size, eta, validation_data=None, shuffle=True, lmbda=0.0,
            optimizer="sgd", momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, epsilon=1e-8,
            early_stopping=None, halve_eta_after=None, min_eta_fraction=1 / 128, monitor_training=False,
            monitor_gradients=False, progress=None, callback=None, checkpoint=None, resume=False):
        """Train by mini-batch gradient descent; returns the history (a dict of per-epoch lists).

        X (n, n_in) floats or :class:`ScaledInputs` (integer-coded, e.g. pixels); y labels (n,) or targets
        (n, n_out). Float X is read in place when it is C-contiguous, of the model's dtype and starts a cache
        line (``fastbp.aligned``, as the loaders return it), else from one such copy. Each epoch takes
        mini-batches of ``batch_size`` consecutive rows of a shuffled order (of the given order when
        ``shuffle=False``); the last batch may be smaller. ``optimizer="sgd"`` is the book's rule
        w -> (1 - eta lmbda/n) w - eta/m sum_x delta a^T; ``momentum > 0`` (or "momentum") adds momentum,
        ``nesterov=True`` Nesterov's; "adam" is Adam; all with the same L2 term.
        ``early_stopping=k`` stops after k epochs without a better validation accuracy and restores the best
        parameters; ``halve_eta_after=k`` halves eta after k such epochs and stops when eta falls below
        ``min_eta_fraction`` of its start (the book's chapter 3 schedule). ``monitor_gradients`` records the
        norm of each layer's weight gradient (the speed of learning of that layer) on up to 1,000 training rows.
        ``callback(epoch, history)`` runs after each epoch and stops training by returning True; ``progress``
        shows a bar within each epoch (default: when stderr is a terminal).

        ``checkpoint=path`` writes, atomically after every epoch, all that training needs to go on: parameters,
        optimizer state, the random generator (next shuffle), early-stopping state and the history so far
        (``fastbp.checkpoint``; an .npz archive without pickle). With ``resume=True`` a fit whose checkpoint
        exists continues from it -- ``epochs`` counts from the first epoch, and the result is bit for bit the
        one of an uninterrupted run -- and a checkpoint from another network, other settings or other data is
        refused (ValueError) with the model left as it was. Without the file, training starts afresh, so one
        command serves the first run and every restart of a preempted job.
        """
        trainer = Trainer(self, X, y, validation_data=validation_data, batch_size=batch_size, eta=eta,
                           lmbda=lmbda, optimizer=optimizer, momentum=momentum, nesterov=nesterov, beta1=beta1,
                           beta2=beta2, epsilon=epsilon)
        epochs, min_eta_fraction = check_run_options(epochs, validation_data, early_stopping, halve_eta_after,
                                                     min_eta_fraction, shuffle, monitor_training, monitor_gradients,
                                                     callback)
        checkpoint = check_checkpoint_options(checkpoint, resume)
        show = sys.stderr.isatty() if progress is None else bool(progress)
        return trainer.run(epochs, shuffle=shuffle, early_stopping=early_stopping, halve_eta_after=halve_eta_after,
                           min_eta_fraction=min_eta_fraction, monitor_training=monitor_training,
                           monitor_gradients=monitor_gradients, progress=show, callback=callback,
                           checkpoint=checkpoint, resume=resume)

    def save(self, path):
        """Write the model to ``path``: ``.npz`` or ``.json`` (network2's fields plus fastbp's), atomically."""
        from .io import save  # io builds MLPs when loading: import it only when needed
        save(self, path)

    def __repr__(self):
        return (f"MLP(sizes={list(self.sizes)}, activation={self.activation_names}, cost={self.cost_name!r}, "
                f"dtype={self.dtype.name!r})")


def check_run_options(epochs, validation_data, early_stopping, halve_eta_after, min_eta_fraction, shuffle,
                      monitor_training, monitor_gradients, callback):
    """The options of ``fit`` that ``Trainer.run`` takes (see ``MLP.fit``), checked before any training;
    returns epochs and min_eta_fraction as int and float."""
    epochs = check_int(epochs, "epochs", minimum=0)
    for name, value in (("early_stopping", early_stopping), ("halve_eta_after", halve_eta_after)):
        if value is not None:
            check_int(value, name, minimum=1)
            if validation_data is None:
                raise ValueError(f"{name} needs validation_data; got validation_data=None.")
    for name, value in (("shuffle", shuffle), ("monitor_training", monitor_training),
                        ("monitor_gradients", monitor_gradients)):
        check_bool(value, name)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be None or a callable (epoch, history) -> bool; got "
                        f"{type(callback).__name__} {callback!r}.")
    return epochs, check_float(min_eta_fraction, "min_eta_fraction", low=0.0, high=1.0)


class Trainer:
    """What one ``fit`` call prepares once: the data as the model's dtype, targets, buffers, optimizer state.

    The drop-in modules use it directly: ``Trainer(model, X, y, ...).epoch(order)`` runs one epoch over
    X[order] without any Python per mini-batch. ``l2_n`` is the n of network2's L2 term lmbda/n
    (default: the number of rows of X).
    """

    def __init__(self, model, X, y, *, batch_size, eta, validation_data=None, lmbda=0.0, optimizer="sgd",
                 momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, epsilon=1e-8, l2_n=None):
        self.model = model
        self.X = model._inputs(X, realign=True)
        self.Y = model._targets(y, self.X.shape[0])
        self.n = self.X.shape[0]
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        eta = check_float(eta, "eta", low=0.0, low_open=True)
        lmbda = check_float(lmbda, "lmbda", low=0.0)
        check_choice(optimizer, "optimizer", tuple(OPTIMIZERS))
        momentum = check_float(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        self.opt = OPTIMIZERS[optimizer]
        if optimizer == "sgd" and momentum > 0:  # sgd with momentum, as in scikit-learn
            self.opt = kernels.MOMENTUM
        if check_bool(nesterov, "nesterov"):
            if self.opt != kernels.MOMENTUM:
                raise ValueError("nesterov=True needs momentum: optimizer='sgd' with momentum > 0 (or "
                                 f"optimizer='momentum'); got optimizer={optimizer!r}, momentum={momentum!r}.")
            self.opt = kernels.NESTEROV
        beta1 = check_float(beta1, "beta1", low=0.0, high=1.0, high_open=True)
        beta2 = check_float(beta2, "beta2", low=0.0, high=1.0, high_open=True)
        epsilon = check_float(epsilon, "epsilon", low=0.0, low_open=True)
        l2_n = self.n if l2_n is None else check_int(l2_n, "n", minimum=1)
        self.hyper = np.array([eta, lmbda / l2_n, momentum, beta1, beta2, epsilon, 0.0])
        self.eta0 = eta
        self._last_epoch_seconds = None  # the last epoch shown with a progress bar
        self.validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val); "
                                f"got {type(validation_data).__name__}.")
            Xv = model._inputs(validation_data[0], "validation_data[0]", realign=True)
            self.validation = (Xv, model._targets(validation_data[1], Xv.shape[0], "validation_data[1]"))
        self.grad = aligned.zeros(model._theta.size, model.dtype)
        self.state = aligned.zeros((2, model._theta.size) if self.opt != kernels.SGD else (2, 1), model.dtype)
        self.ws = aligned.empty(kernels.workspace_length(model._layout, min(self.batch_size, self.n)), model.dtype)

    def epoch(self, order, on_progress=None, n_calls=1):
        """One epoch over X[order]; the kernel is called n_calls times so that on_progress(rows) can report."""
        n_batches = -(-order.shape[0] // self.batch_size)
        # Integer bounds in plain Python: each call's overhead counts where an epoch is cut into many calls (a
        # progress bar, small chunks), and right after the kernel has run np.linspace took about 0.1 ms.
        calls = min(n_calls, n_batches)
        bounds = [i * n_batches // calls for i in range(calls + 1)] if calls > 0 else []
        for first, stop in zip(bounds[:-1], bounds[1:]):
            self._train_batches(order, first, stop)
            if on_progress is not None:
                on_progress(min(stop * self.batch_size, order.shape[0]) - min(first * self.batch_size,
                                                                              order.shape[0]))

    def run(self, epochs, *, shuffle, early_stopping, halve_eta_after, min_eta_fraction, monitor_training,
            monitor_gradients, progress, callback, checkpoint=None, resume=False):
        """Train up to epoch ``epochs``; with ``checkpoint`` (a path), write the whole state there after every
        epoch, and with ``resume`` first continue from it when it exists (see ``MLP.fit``)."""
        model = self.model
        run = RunState(model._theta, {"epoch": [], "seconds": [], "eta": []})
        settings = None
        if checkpoint is not None:
            settings = self._checkpoint_settings(shuffle, early_stopping, halve_eta_after, min_eta_fraction,
                                                 monitor_training, monitor_gradients)
            if resume:
                run = self._resume(checkpoint, settings) or run
        order = np.arange(self.n)
        with using_threads(model.n_threads, limit_blas=True):
            if run.done < epochs and not run.finished:
                self.prepare(monitor_training, monitor_gradients, progress)
            for epoch in range(run.done + 1, epochs + 1):
                if run.finished:
                    break
                if shuffle:
                    order = model.rng.permutation(self.n)
                before = model._theta.copy()
                seconds = self._timed_epoch(order, epoch, epochs, progress)
                diverged = not np.isfinite(model._theta).all()
                if diverged:
                    model._theta[...] = before
                    warnings.warn(f"Training diverged in epoch {epoch} (non-finite parameters); restored the "
                                  "parameters of the epoch before and stopped. Try a smaller eta.",
                                  RuntimeWarning, stacklevel=3)
                    run.finished = True
                else:
                    self._record(run.history, epoch, seconds, monitor_training, monitor_gradients)
                    run.done = epoch
                    run.finished = self._schedule(run, early_stopping, halve_eta_after, min_eta_fraction)
                if checkpoint is not None:
                    self._write_checkpoint(checkpoint, run, settings)
                # The callback sees every recorded epoch, the last one of an early stop included.
                stopped = not diverged and callback is not None and callback(epoch, run.history)
                if run.finished or stopped:
                    break
        return run.history

    def prepare(self, monitor_training=False, monitor_gradients=False, progress=False):
        """Compile, or load from Numba's disk cache, every kernel that ``run`` will call, by calling each on no
        rows: no epoch's time then includes compilation (up to two minutes on the first run, under 1 s after).
        Changes nothing. Returns the seconds it took."""
        start = time.perf_counter()
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(desc=f"preparing the kernels ({PREPARE_NOTE})", bar_format="{desc}",
                       leave=False)
        try:
            self._prepare_epoch()
            model, none = self.model, np.zeros(0, np.int64)
            for _, X, Y in self._evaluation_sets(monitor_training):
                out = np.empty((0, model.sizes[-1]), dtype=model.dtype)
                model._kernel("predict_into", model._theta, model._layout, *kernel_inputs(X), none,
                              model._workspace(EVAL_CHUNK), out, model._par_min())
                kernels.cost_sum(model._cost_code, out, Y, none)
            if monitor_gradients:
                model._gradient(self.X, self.Y, none, scale=1.0)
        finally:
            if bar is not None:
                bar.close()
        return time.perf_counter() - start

    def _prepare_epoch(self):
        """``epoch``'s kernels on no mini-batches."""
        self._train_batches(np.zeros(0, np.int64), 0, 0)

    def _train_batches(self, order, first, stop):
        """Mini-batches first .. stop-1 of X[order], each followed by its update: in one parallel region when
        that applies (``kernels.train_epoch_shared``), else ``kernels.train_epoch``."""
        m = self.model
        head = (m._theta, m._layout, m._cost_code, *kernel_inputs(self.X), self.Y, order, self.batch_size, first,
                stop)
        if kernels.one_region_applies(self.opt, m._layout, self.batch_size, ONE_REGION_MIN_WORK, m.n_threads):
            m._kernel("train_epoch_shared", *head, self.opt, self.hyper, self.grad, self.state, self.ws, m._par_min(),
                      m.n_threads)
        else:
            m._kernel("train_epoch", *head, self.opt, self.hyper, self.grad, self.state, self.ws, m._par_min())

    def _resume(self, path, settings):
        """The RunState of the checkpoint at ``path`` with its state moved into this trainer; None without one."""
        if not os.path.exists(path):
            return None
        run, apply = read_checkpoint(path, self, settings)
        apply()
        return run

    def _write_checkpoint(self, path, run, settings):
        write_checkpoint(path, self, run, settings)

    def _schedule(self, run, early_stopping, halve_eta_after, min_eta_fraction):
        """Early stopping and the eta schedule after an epoch; True when training should stop."""
        if self.validation is None:
            return False
        accuracy = run.history["val_accuracy"][-1]
        if accuracy > run.best_accuracy:
            run.best_accuracy, run.stale = accuracy, 0
            run.best_params[...] = self.model._theta
            return False
        run.stale += 1
        if early_stopping is not None and run.stale >= early_stopping:
            self.model._theta[...] = run.best_params
            return True
        if halve_eta_after is not None and run.stale >= halve_eta_after:
            self.hyper[kernels.ETA] /= 2
            run.stale = 0
            return bool(self.hyper[kernels.ETA] < min_eta_fraction * self.eta0)
        return False

    def _checkpoint_settings(self, shuffle, *schedule):
        """What a resumed fit must share with the one that wrote the checkpoint: the hyperparameters, the
        schedule and monitoring options, and a fingerprint of the data (JSON-ready)."""
        names = ("early_stopping", "halve_eta_after", "min_eta_fraction", "monitor_training", "monitor_gradients")
        return dict(zip(names, schedule), shuffle=bool(shuffle), batch_size=self.batch_size, eta=self.eta0,
                    optimizer=int(self.opt), hyper=[float(h) for h in self.hyper[[kernels.L2, kernels.MU,
                                                                                  kernels.BETA1, kernels.BETA2,
                                                                                  kernels.EPS]]],
                    data=self.data_fingerprint())

    def data_fingerprint(self):
        """CRC-32 and shapes of the training and validation data as the kernels read them, and the input scale:
        what tells one data set from another (checkpoints, MPI ranks)."""
        arrays = [kernel_inputs(self.X)[0], self.Y]
        if self.validation is not None:
            arrays += [kernel_inputs(self.validation[0])[0], self.validation[1]]
        return dict(data_fingerprint(*arrays), x_scale=kernel_inputs(self.X)[1])

    def _timed_epoch(self, order, epoch, epochs, progress):
        start = time.perf_counter()
        if not progress:
            self.epoch(order)
            return time.perf_counter() - start
        from tqdm.auto import tqdm
        with tqdm(total=order.shape[0], desc=f"epoch {epoch}/{epochs}", unit="ex", unit_scale=True,
                  leave=False) as bar:
            self.epoch(order, bar.update, n_calls=progress_calls(self._last_epoch_seconds))
        self._last_epoch_seconds = time.perf_counter() - start
        return self._last_epoch_seconds

    def _evaluation_sets(self, monitor_training):
        """The (name, X, Y) sets evaluated after every epoch: the training set when monitored, the validation set."""
        sets = [("train", self.X, self.Y)] if monitor_training else []
        if self.validation is not None:
            sets.append(("val",) + self.validation)
        return sets

    def _record(self, history, epoch, seconds, monitor_training, monitor_gradients):
        model = self.model
        history["epoch"].append(epoch)
        history["seconds"].append(seconds)
        history["eta"].append(float(self.hyper[kernels.ETA]))
        for name, X, Y in self._evaluation_sets(monitor_training):
            out = model._forward(X)  # one pass gives both the cost and the accuracy
            cost = kernels.cost_sum(model._cost_code, out, Y, np.arange(X.shape[0])) / X.shape[0]
            history.setdefault(f"{name}_cost", []).append(cost)
            history.setdefault(f"{name}_accuracy", []).append(
                float(np.mean(np.argmax(out, axis=1) == np.argmax(Y, axis=1))))
        if monitor_gradients:
            rows = np.arange(min(self.n, 1000))
            grad_w, _ = model.unflatten(model._gradient(self.X, self.Y, rows))
            history.setdefault("grad_norms", []).append([float(np.linalg.norm(g)) for g in grad_w])
