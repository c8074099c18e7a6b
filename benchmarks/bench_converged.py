r"""Converged fits from the same init: torchmeans' algorithms against scikit-learn's.

Every library starts from the same k-means++ centers (drawn by scikit-learn; one
init per ``--seeds``) and runs to convergence with scikit-learn's defaults (``tol=1e-4``,
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


def bench(shape: tuple[int, int, int], repeats: int, seeds: int = 1,
          only: list[str] | None = None) -> list[tuple[str, float, list[int], float]]:
    """Time, iterations and inertia of each contender on one shape.

    Per init seed (scikit-learn's ``kmeans_plusplus`` with ``random_state=seed``) the
    median of ``repeats`` fits; times are summed over the seeds, iterations listed per
    seed, and the inertia (relative to scikit-learn lloyd's) averaged. One init decides
    how many iterations a trajectory takes (scikit-learn's lloyd and elkan, the same
    algorithm, can differ by half): several seeds even that out. ``only`` keeps the
    contenders whose name contains one of its strings (scikit-learn's two always run).
    """
    n, d, k = shape
    X, _ = make_data(n, d, k)
    totals: dict[str, float] = {}
    iterations: dict[str, list[int]] = {}
    relative: dict[str, list[float]] = {}
    for seed in range(seeds):
        init, _ = kmeans_plusplus(X, k, random_state=seed)
        contenders = {name: fit for name, fit in fitters(init, k).items()
                      if name.startswith("sklearn") or not only
                      or any(part in name for part in only)}
        times: dict[str, list[float]] = {name: [] for name in contenders}
        outcome: dict[str, tuple[float, int]] = {}
        for _ in range(repeats):
            for name, fit in contenders.items():
                start = time.perf_counter()
                outcome[name] = fit(X)
                times[name].append(time.perf_counter() - start)
        reference = outcome["sklearn lloyd"][0]
        for name in contenders:
            totals[name] = totals.get(name, 0.0) + statistics.median(times[name])
            iterations.setdefault(name, []).append(outcome[name][1])
            relative.setdefault(name, []).append(outcome[name][0] / reference - 1)
    return [(name, totals[name], iterations[name], statistics.mean(relative[name]))
            for name in totals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--shapes", nargs="+", metavar="NxDxk", help="e.g. 200000x32x256")
    parser.add_argument("--seeds", type=int, default=1,
                        help="k-means++ inits (random_state 0..seeds-1); times are summed")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="torchmeans contenders whose name contains one of these")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchmeans {torchmeans.__version__}, "
          f"{args.threads} threads, median of {args.repeats}, {args.seeds} init seed(s)\n")
    print("| N x D x k | contender | time / best sklearn | n_iter "
          "| inertia rel. to sklearn lloyd |")
    print("|---|---|---:|---:|---:|")
    with threadpool_limits(args.threads):
        shapes = QUICK_SHAPES if args.quick else DEFAULT_SHAPES
        if args.shapes:
            shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
        for shape in shapes:
            rows = bench(shape, args.repeats, args.seeds, args.only)
            best_sklearn = min(t for name, t, _, _ in rows if name.startswith("sklearn"))
            for name, seconds, n_iter, relative in rows:
                label = "x".join(f"{v:_}" for v in shape)
                print(f"| {label} | {name} | {seconds / best_sklearn:.2f} | "
                      f"{'/'.join(map(str, n_iter))} | {relative:+.1e} |", flush=True)


if __name__ == "__main__":
    main()
