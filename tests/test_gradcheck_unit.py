"""The gradient check, on a small duck-typed model built from the NumPy reference."""
import numpy as np
import pytest

from fastbp import reference as ref
from fastbp.gradcheck import finite_difference_gradient, gradcheck, relative_errors


class RefModel:
    """The minimal model interface gradcheck needs, backed by fastbp.reference."""

    def __init__(self, weights, biases, *, activations=None, cost="quadratic"):
        self.weights = weights
        self.biases = biases
        self.activations = activations
        self.cost_name = cost

    def cost(self, X, Y):
        return ref.total_cost(self.weights, self.biases, X, Y,
                              activations=self.activations, cost=self.cost_name)

    def gradient(self, X, Y):
        return ref.mean_gradient(self.weights, self.biases, X, Y,
                                 activations=self.activations, cost=self.cost_name)


class ScaledGradient(RefModel):
    def gradient(self, X, Y):
        grad_w, grad_b = super().gradient(X, Y)
        return [1.01 * g for g in grad_w], [1.01 * g for g in grad_b]


class OneEntryWrong(RefModel):
    def gradient(self, X, Y):
        grad_w, grad_b = super().gradient(X, Y)
        grad_w[0][1, 2] += 0.01 * np.abs(grad_w[0]).max()
        return grad_w, grad_b


class NoSigmaPrimeInBP1(RefModel):
    """Quadratic cost, but BP1 forgets sigma'(z): that is the cross-entropy delta a - y."""

    def gradient(self, X, Y):
        return ref.mean_gradient(self.weights, self.biases, X, Y, cost="cross-entropy")


def signed_uniform(rng, shape, low, high):
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def make_model(cls=RefModel, *, sizes=(3, 4, 1), activations=None, cost="quadratic", m=1,
               seed=0, dtype=np.float64):
    """A well-conditioned problem: every gradient component is far from zero.

    Finite differences with eps = 1e-6 carry an absolute rounding error of
    about 1e-11, so a relative error below 1e-7 is only meaningful for
    components above ~1e-3: weights, inputs and targets are chosen away from 0.
    """
    rng = np.random.default_rng(seed)
    weights = [signed_uniform(rng, (n_out, n_in), 0.5, 1.0).astype(dtype)
               for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    biases = [signed_uniform(rng, n_out, 0.2, 0.5).astype(dtype) for n_out in sizes[1:]]
    X = signed_uniform(rng, (m, sizes[0]), 0.5, 1.0)
    if activations is not None and activations[-1] == "softmax":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], m)]
    else:
        Y = rng.choice([0.0, 1.0], (m, sizes[-1]))
    return cls(weights, biases, activations=activations, cost=cost), X, Y


def snapshot(model):
    return [p.tobytes() for p in model.weights + model.biases]


CORRECT = {
    "sigmoid-quadratic": dict(),
    "sigmoid-cross-entropy": dict(cost="cross-entropy"),
    "tanh-softmax-log-likelihood": dict(sizes=(3, 4, 2), activations=["tanh", "softmax"],
                                        cost="log-likelihood"),
}


@pytest.mark.parametrize("config", CORRECT)
def test_gradcheck_accepts_correct_gradient(config):
    model, X, Y = make_model(**CORRECT[config])
    grad_w, grad_b = model.gradient(X, Y)
    assert min(np.abs(g).min() for g in grad_w + grad_b) > 1e-3  # the premise above
    assert gradcheck(model, X, Y) <= 1e-7


def test_finite_differences_match_gradient_on_a_batch():
    rng = np.random.default_rng(1)
    weights, biases = ref.init_parameters([4, 6, 5, 3], rng, scale="default")
    model = RefModel(weights, biases, activations=["relu", "tanh", "softmax"],
                     cost="log-likelihood")
    X = rng.standard_normal((8, 4))
    Y = np.eye(3)[rng.integers(0, 3, 8)]
    fd_w, fd_b = finite_difference_gradient(model, X, Y)
    grad_w, grad_b = model.gradient(X, Y)
    for fd, g in zip(fd_w + fd_b, grad_w + grad_b):
        assert fd.shape == g.shape and fd.dtype == np.float64
        np.testing.assert_allclose(fd, g, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", [ScaledGradient, OneEntryWrong, NoSigmaPrimeInBP1])
@pytest.mark.parametrize("m", [1, 4])
def test_gradcheck_rejects_wrong_gradient(cls, m):
    model, X, Y = make_model(cls, m=m)
    assert gradcheck(model, X, Y) > 1e-3


def test_parameters_restored_bitwise_and_perturbed_live():
    model, X, Y = make_model(sizes=(3, 4, 2), m=3, seed=2)
    arrays = model.weights + model.biases
    before = snapshot(model)
    seen = []
    original_cost = model.cost

    def recording_cost(X_, Y_):
        seen.append(float(model.weights[0][0, 0]))
        return original_cost(X_, Y_)

    model.cost = recording_cost
    gradcheck(model, X, Y, eps=1e-3)
    assert snapshot(model) == before
    assert all(a is b for a, b in zip(model.weights + model.biases, arrays))
    w00 = float(np.frombuffer(before[0], dtype=np.float64)[0])
    assert w00 + 1e-3 in seen and w00 - 1e-3 in seen  # the live array was edited


def test_parameters_restored_when_cost_raises():
    model, X, Y = make_model(sizes=(3, 4, 2), seed=3)
    before = snapshot(model)
    calls = 0
    original_cost = model.cost

    def failing_cost(X_, Y_):
        nonlocal calls
        calls += 1
        if calls == 7:  # in the middle of a perturbation
            raise RuntimeError("cost failed")
        return original_cost(X_, Y_)

    model.cost = failing_cost
    with pytest.raises(RuntimeError, match="cost failed"):
        finite_difference_gradient(model, X, Y)
    assert snapshot(model) == before


def test_inputs_not_modified():
    model, X, Y = make_model(m=3, seed=4)
    X0, Y0 = X.copy(), Y.copy()
    gradcheck(model, X, Y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


def test_float32_uses_the_step_actually_taken():
    # float32 rounds p +- eps; dividing by 2 eps would leave a relative error of
    # about ulp(p) / eps ~ 1e-4 here, dividing by the real step removes it.
    model, X, Y = make_model(dtype=np.float32, seed=5)
    before = snapshot(model)
    assert gradcheck(model, X, Y, eps=1e-4) <= 1e-6
    assert snapshot(model) == before
    assert all(p.dtype == np.float32 for p in model.weights + model.biases)


def test_float32_eps_too_small_raises():
    model, X, Y = make_model(dtype=np.float32, seed=6)
    before = snapshot(model)
    with pytest.raises(ValueError, match="eps must be large enough to change a parameter"):
        finite_difference_gradient(model, X, Y, eps=1e-12)
    assert snapshot(model) == before


@pytest.mark.parametrize("eps", [0.0, -1e-6, float("nan"), float("inf")])
def test_bad_eps_raises(eps):
    model, X, Y = make_model()
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0; got"):
        gradcheck(model, X, Y, eps=eps)
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0; got"):
        finite_difference_gradient(model, X, Y, eps=eps)


def test_eps_of_wrong_type_raises():
    model, X, Y = make_model()
    with pytest.raises(TypeError, match="eps must be a real number; got str"):
        gradcheck(model, X, Y, eps="1e-6")


def test_gradient_of_wrong_shape_raises():
    class Transposed(RefModel):
        def gradient(self, X, Y):
            grad_w, grad_b = super().gradient(X, Y)
            return [g.T for g in grad_w], grad_b

    model, X, Y = make_model(Transposed)
    with pytest.raises(ValueError, match="model.gradient grad_w must have shapes"):
        gradcheck(model, X, Y)


def test_relative_errors_by_hand():
    a = [np.array([1.0, 0.0, 2.0, -1e-12])]
    b = [np.array([1.0, 0.0, 1.0, 0.0])]
    # default floor 1e-4 * max |g| = 2e-4 keeps the ~0 component from dominating
    np.testing.assert_allclose(relative_errors(a, b), [0.0, 0.0, 0.5, 5e-9], rtol=1e-12)
    np.testing.assert_allclose(relative_errors(a, b, floor=0.0), [0.0, 0.0, 0.5, 1.0],
                               rtol=1e-12)
    np.testing.assert_allclose(relative_errors(a, b, floor=4.0), [0.0, 0.0, 0.25, 2.5e-13],
                               rtol=1e-12)


def test_relative_errors_flattens_nested_gradients_in_order():
    g = ([np.array([[1.0, 2.0]]), np.array([[3.0]])], [np.array([4.0])])
    h = ([np.array([[1.0, 2.0]]), np.array([[3.0]])], [np.array([5.0])])
    err = relative_errors(g, h)
    np.testing.assert_allclose(err, [0.0, 0.0, 0.0, 0.2], rtol=1e-12)


def test_relative_errors_non_finite_is_inf():
    err = relative_errors(np.array([1.0, np.nan, np.inf]), np.array([1.0, 1.0, np.inf]))
    assert err[0] == 0.0 and np.isinf(err[1]) and np.isinf(err[2])


def test_relative_errors_argument_errors():
    with pytest.raises(ValueError, match=r"g_b must have as many entries as g_a \(3\); got 2"):
        relative_errors(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="floor must be a finite number >= 0; got -1.0"):
        relative_errors(np.zeros(3), np.zeros(3), floor=-1.0)
