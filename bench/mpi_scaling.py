"""Seconds per epoch of fastbp.mpi.fit on 1 and 2 ranks (or those given), each in its own mpirun.

    python bench/mpi_scaling.py [--ranks 1,2] [--sizes 784,30,10] [--batch-size 1000] [--rows 20000]
                                [--epochs 3] [--optimizer sgd]

Random float64 data, sigmoid neurons, quadratic cost. The first epoch is reported apart (it may include
compilation); the figure is the median of the others. With R ranks each uses cores/R threads, so the table
compares one process using every core with R processes sharing them: data parallelism pays when a mini-batch's
gradient is worth far more than one Allreduce of all parameters.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys


def worker(args):
    import numpy as np

    from fastbp import MLP, mpi

    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, sizes[0]))
    y = rng.integers(0, sizes[-1], args.rows)
    model = MLP(sizes, seed=0)
    history = mpi.fit(model, X, y, epochs=args.epochs, batch_size=args.batch_size, eta=3.0,
                      optimizer=args.optimizer)
    threads = mpi.threads_per_rank()
    if mpi.MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps({"seconds": history["seconds"], "threads": threads}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--sizes", default="784,30,10")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("mpirun must be on PATH (e.g. apt-get install openmpi-bin); got none.")
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    # Open MPI binds each rank to one core by default: unbind so that threads_per_rank shares the cores out.
    flags = ["--oversubscribe", "--bind-to", "none"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    if "Open MPI" not in version:
        flags = []
    print(f"sizes [{args.sizes}], mini-batch {args.batch_size}, {args.rows} rows, {args.optimizer}, float64")
    print(f"{'ranks':>5} {'threads/rank':>12} {'first epoch s':>13} {'epoch s':>8} {'examples/s':>11} {'speed-up':>8}")
    base = None
    for ranks in (int(r) for r in args.ranks.split(",")):
        command = [mpirun, *flags, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
                   "--sizes", args.sizes, "--batch-size", str(args.batch_size), "--rows", str(args.rows),
                   "--epochs", str(args.epochs), "--optimizer", args.optimizer]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{proc.stdout}{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        seconds = result["seconds"]
        rest = sorted(seconds[1:]) or seconds
        epoch = rest[len(rest) // 2]
        base = epoch if base is None else base
        print(f"{ranks:>5} {result['threads']:>12} {seconds[0]:>13.3f} {epoch:>8.3f} {args.rows / epoch:>11,.0f} "
              f"{base / epoch:>8.2f}")


if __name__ == "__main__":
    main()
