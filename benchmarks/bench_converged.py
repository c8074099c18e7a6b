r"""Converged fits from the same init: torchmeans' algorithms against scikit-learn's.

Every library starts from the same k-means++ centers (drawn once by scikit-learn)
and runs to convergence with scikit-learn's defaults (``tol=1e-4``,
``max_iter=300``, ``n_init=1``). Reported per shape: total fit time as a ratio to
the faster of scikit-learn's ``lloyd`` and ``elkan``, iterations, and final
inertia relative to scikit-learn lloyd's. Libraries alternate within each
repeat; the median of ``--repeats`` fits is kept. Only ratios are meaningful on a
shared machine.

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_converged.py --markdown
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from sklearn.cluster import kmeans_plusplus
from threadpoolctl import threadpool_limits

import torchmeans

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_lloyd import make_data

DEFAULT_SHAPES = ((1_000_000, 8, 16), (200_000, 32, 256), (100_000, 768, 256))
QUICK_SHAPES = ((20_000, 8, 16), (10_000, 32, 64))
TORCHMEANS_ALGORITHMS = ("lloyd", "hamerly", "yinyang", "elkan", "auto")


def fitters(init: np.ndarray, k: int) -> dict[str, Callable[[np.ndarray], tuple[float, int]]]:
    """Return ``name -> fit(X) -> (inertia, n_iter)`` for every contender."""
    def sklearn_fit(algorithm: str) -> Callable[[np.ndarray], tuple[float, int]]:
        def fit(X: np.ndarray) -> tuple[float, int]:
            km = SKLearnKMeans(k, init=init, n_init=1, algorithm=algorithm).fit(X)
            return float(km.inertia_), int(km.n_iter_)
        return fit

    def torchmeans_fit(algorithm: str,
                       backend: str = "auto") -> Callable[[np.ndarray], tuple[float, int]]:
        def fit(X: np.ndarray) -> tuple[float, int]:
            km = torchmeans.KMeans(k, init=init, n_init=1, algorithm=algorithm,
                                   backend=backend).fit(X)
            return float(km.inertia_), int(km.n_iter_)
        return fit

    table = {f"sklearn {a}": sklearn_fit(a) for a in ("lloyd", "elkan")}
    table.update({f"torchmeans {a}": torchmeans_fit(a) for a in TORCHMEANS_ALGORITHMS})
    # Lloyd's pure-torch path (backend='torch'); 'lloyd' above takes the native kernel.
    table["torchmeans lloyd, backend=torch"] = torchmeans_fit("lloyd", "torch")
    return table


def bench(shape: tuple[int, int, int], repeats: int) -> list[tuple[str, float, int, float]]:
    """Median time, iterations and inertia of each contender on one shape."""
    n, d, k = shape
    X, _ = make_data(n, d, k)
    init, _ = kmeans_plusplus(X, k, random_state=0)
    contenders = fitters(init, k)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    outcome: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):
        for name, fit in contenders.items():
            start = time.perf_counter()
            outcome[name] = fit(X)
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(times[name]), *reversed(outcome[name])) for name in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--shapes", nargs="+", metavar="NxDxk", help="e.g. 200000x32x256")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchmeans {torchmeans.__version__}, "
          f"{args.threads} threads, median of {args.repeats}\n")
    print("| N x D x k | contender | time / best sklearn | n_iter "
          "| inertia rel. to sklearn lloyd |")
    print("|---|---|---:|---:|---:|")
    with threadpool_limits(args.threads):
        shapes = QUICK_SHAPES if args.quick else DEFAULT_SHAPES
        if args.shapes:
            shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
        for shape in shapes:
            rows = bench(shape, args.repeats)
            best_sklearn = min(t for name, t, _, _ in rows if name.startswith("sklearn"))
            reference = next(inertia for name, _, _, inertia in rows if name == "sklearn lloyd")
            for name, seconds, n_iter, inertia in rows:
                label = "x".join(f"{v:_}" for v in shape)
                print(f"| {label} | {name} | {seconds / best_sklearn:.2f} | {n_iter} | "
                      f"{inertia / reference - 1:+.1e} |", flush=True)


if __name__ == "__main__":
    main()
