"""Accuracy against training time on Fashion-MNIST: how good a network fastbp trains in a fixed budget.

    python bench/accuracy.py [--budget 60] [--plot curve.png] [--json results.json]

Trains on the first 50,000 training images, uses the last 10,000 for the learning-rate schedule (halve eta when
validation accuracy stalls) and reports test accuracy (10,000 images never used for any decision) after every
epoch, with the cumulative training seconds (evaluation time excluded), until the budget is spent.
"""
import argparse
import json
import time


import fastbp
from fastbp.datasets import load_dataset

CONFIG = dict(sizes=[784, 256, 128, 10], activation=["relu", "relu", "softmax"], cost="log-likelihood",
              dtype="float32", seed=0)
FIT = dict(batch_size=32, eta=0.05, optimizer="momentum", momentum=0.9, lmbda=2.0, halve_eta_after=2)


def accuracy_curve(budget_seconds, *, n_threads=None, data=None):
    """Train CONFIG with FIT until budget_seconds of training time; returns a list of per-epoch dicts."""
    data = data or load_dataset("fashion-mnist", dtype=CONFIG["dtype"])
    X, y = data.X_train[:50000], data.y_train[:50000]
    net = fastbp.MLP(**CONFIG, n_threads=n_threads)
    net.fit(X[:64], y[:64], epochs=1, batch_size=32, eta=1e-9)  # compile outside the timed budget
    net.initialize("default")
    curve = []

    def record(epoch, history):
        spent = sum(history["seconds"])
        curve.append({"epoch": epoch, "seconds": spent, "val_accuracy": history["val_accuracy"][-1],
                      "test_accuracy": net.score(data.X_test, data.y_test), "eta": history["eta"][-1]})
        return spent >= budget_seconds

    net.fit(X, y, epochs=10_000, validation_data=(data.X_train[50000:], data.y_train[50000:]), progress=False,
            callback=record, **FIT)
    return curve


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds (default 60)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plot", help="write the accuracy-vs-seconds curve to this PNG (needs matplotlib)")
    parser.add_argument("--json", help="write the curve as JSON")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    curve = accuracy_curve(args.budget, n_threads=args.threads)
    print(f"{CONFIG} {FIT}")
    print("| epoch | training s | validation accuracy | test accuracy |\n|---:|---:|---:|---:|")
    for row in curve:
        print(f"| {row['epoch']} | {row['seconds']:.1f} | {row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} |")
    within = [row["test_accuracy"] for row in curve if row["seconds"] <= args.budget]
    print(f"best test accuracy within {args.budget:g} s of training: {max(within, default=float('nan')):.4f} "
          f"(wall time {time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": CONFIG, "fit": FIT, "curve": curve}, f, indent=1)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        seconds = [row["seconds"] for row in curve]
        ax.plot(seconds, [row["test_accuracy"] for row in curve], "o-", label="test")
        ax.plot(seconds, [row["val_accuracy"] for row in curve], "s--", label="validation")
        ax.axhline(0.885, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("accuracy")
        ax.set_title("fastbp on Fashion-MNIST: " + "-".join(map(str, CONFIG["sizes"])))
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
