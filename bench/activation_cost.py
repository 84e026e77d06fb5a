"""What the other activations and costs cost against sigmoid + quadratic, in the same setup and run.

    python bench/activation_cost.py [--sizes 784,30,10] [--batch-size 10] [--threads 1] [--repeats 7]

Times one chunk of mini-batches on Fashion-MNIST (random data of its shape when it is not installed) for each
configuration, round-robin, and prints the median µs per example and the ratio to sigmoid + quadratic.
"""
import argparse
import time

import numpy as np
from numba import njit

import fastbp
from fastbp.datasets import fashion_mnist_available, load_fashion_mnist
from fastbp.model import Trainer


@njit
def softsign(z):
    return z / (1.0 + abs(z))


@njit
def softsign_prime(z):
    return 1.0 / (1.0 + abs(z)) ** 2


CONFIGS = {
    "sigmoid / quadratic (baseline)": ("sigmoid", "quadratic"),
    "sigmoid / cross-entropy": ("sigmoid", "cross-entropy"),
    "tanh + sigmoid / quadratic": (["tanh", "sigmoid"], "quadratic"),
    "relu + softmax / log-likelihood": (["relu", "softmax"], "log-likelihood"),
    "linear + sigmoid / quadratic": (["linear", "sigmoid"], "quadratic"),
    "custom softsign + sigmoid / quadratic": ([(softsign, softsign_prime), "sigmoid"], "quadratic"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="784,30,10")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    if fashion_mnist_available() and sizes[0] == 784:
        data = load_fashion_mnist()
        X, y = data.X_train, data.y_train
    else:
        rng = np.random.default_rng(0)
        X, y = rng.random((20_000, sizes[0])), rng.integers(0, sizes[-1], 20_000)
    order = np.random.default_rng(1).permutation(len(X))[:args.examples]
    trainers = {}
    for name, (activation, cost) in CONFIGS.items():
        activation = activation if isinstance(activation, str) else [activation[0]] * (len(sizes) - 2) + \
            [activation[1]]
        net = fastbp.MLP(sizes, activation=activation, cost=cost, seed=0, n_threads=args.threads)
        trainer = Trainer(net, X, y, batch_size=args.batch_size, eta=0.01)
        trainer.epoch(order[:args.batch_size])  # compile outside the timing
        trainers[name] = trainer
    times = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.epoch(order)
            times[name].append((time.perf_counter() - start) / len(order) * 1e6)
    base = np.median(times[next(iter(times))])
    print(f"sizes {sizes}, mini-batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats}")
    print("| activation / cost | µs/example | time vs sigmoid/quadratic |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {np.median(values):.2f} | {np.median(values) / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
