"""Backprop against PyTorch autograd (float64), an implementation that shares no code with fastbp."""
import numpy as np
import pytest

from conftest import F64_ATOL
from fastbp import MLP

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional: pip install torch==2.13.0)")

TORCH_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "linear": lambda z: z,
                     "softmax": lambda z: torch.softmax(z, dim=1)}


def torch_cost(name, a, y):
    if name == "quadratic":
        return 0.5 * ((a - y) ** 2).sum(dim=1)
    if name == "cross-entropy":
        return -(y * torch.log(a) + (1 - y) * torch.log(1 - a)).sum(dim=1)
    return -(y * torch.log(a)).sum(dim=1)


@pytest.mark.parametrize("activations,cost", [
    (["sigmoid", "sigmoid", "sigmoid"], "quadratic"),
    (["tanh", "relu", "softmax"], "log-likelihood"),
    (["relu", "tanh", "sigmoid"], "cross-entropy"),
    (["sigmoid", "linear", "softmax"], "quadratic"),
], ids=str)
@pytest.mark.parametrize("m", [1, 13])
def test_gradient_and_cost_match_autograd(rng, activations, cost, m):
    sizes = [9, 8, 6, 4]
    net = MLP(sizes, activation=activations, cost=cost, seed=11)
    X = rng.random((m, 9))
    Y = rng.dirichlet(np.ones(4), size=m) if cost == "log-likelihood" else rng.uniform(0.1, 0.9, (m, 4))
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True)
              for pair in zip(net.weights, net.biases) for p in pair]
    a = torch.tensor(X)
    for (w, b), name in zip(zip(params[0::2], params[1::2]), activations):
        a = TORCH_ACTIVATIONS[name](a @ w.T + b)
    loss = torch_cost(cost, a, torch.tensor(Y)).mean()
    loss.backward()
    grad_w, grad_b = net.gradient(X, Y)
    for got, want in zip(grad_w, params[0::2]):
        np.testing.assert_allclose(got, want.grad.numpy(), rtol=0, atol=F64_ATOL)
    for got, want in zip(grad_b, params[1::2]):
        np.testing.assert_allclose(got, want.grad.numpy(), rtol=0, atol=F64_ATOL)
    assert net.cost(X, Y) == pytest.approx(loss.item(), rel=1e-12)
