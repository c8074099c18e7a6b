"""Small problems: the per-fit cost of small fits against scikit-learn and FAISS.

Four shapes (``make_blobs``, ``random_state=0``): the seed's demo, 300 x 2 with k=4
(``cluster_std=0.6``), 16,384 x 4 with k=4 (``n k d = 2^18``: the largest fit whose
iterations and seeding each run in one native call), 5,000 x 16 with k=8 and 50,000 x 32
with k=16. Warm, in one process:
each library fits the same data ``--fits`` times per repeat (fewer for the larger shapes),
with ``random_state`` cycling through 0-9 (the iteration count depends on the seeds); the
libraries take turns repeat by repeat, and each time is the median per fit over
``--repeats`` repeats, also given as a ratio to scikit-learn's ``KMeans(n_init=1)`` (the
same work as torchmeans' default k-means++ init; both run Lloyd to convergence). FAISS's
``Kmeans`` runs its default 25 iterations after a random init, on float32. ``--threads``
limits every library (torch, the OpenMP and BLAS pools scikit-learn uses, FAISS).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

import torchmeans

SHAPES = {  # name: (n_samples, n_features, k, cluster_std, fits per repeat at --fits 100)
    "300 x 2, k=4": (300, 2, 4, 0.6, 1.0),
    # n k d = 2^18: the largest problem whose iterations and seeding run in one native call
    "16,384 x 4, k=4": (16_384, 4, 4, 1.0, 0.1),
    "5,000 x 16, k=8": (5_000, 16, 8, 1.0, 0.2),
    "50,000 x 32, k=16": (50_000, 32, 16, 1.0, 0.03),
}
REFERENCE = "scikit-learn KMeans(n_init=1), numpy float64"

Fit = Callable[[int], object]


def per_fit(fit: Fit, fits: int) -> float:
    start = time.perf_counter()
    for index in range(fits):
        fit(index % 10)
    return (time.perf_counter() - start) / fits


def runs_for(n_samples: int, n_features: int, k: int, std: float) -> dict[str, Fit]:
    X, _ = make_blobs(n_samples=n_samples, n_features=n_features, centers=k,
                      cluster_std=std, random_state=0)
    tensor = torch.from_numpy(X).float()
    runs: dict[str, Fit] = {
        REFERENCE: lambda seed: SKLearnKMeans(k, n_init=1, random_state=seed).fit(X),
        "torchmeans KMeans, numpy float64":
            lambda seed: torchmeans.KMeans(k, random_state=seed).fit(X),
        "torchmeans KMeans, float32 tensor":
            lambda seed: torchmeans.KMeans(k, random_state=seed).fit(tensor),
        "torchmeans kmeans(), float32 tensor":
            lambda seed: torchmeans.kmeans(tensor, k, random_state=seed),
    }
    try:
        import faiss
    except ImportError:
        return runs
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    runs["faiss Kmeans (25 iterations, its default), float32"] = (
        lambda seed: faiss.Kmeans(n_features, k, niter=25, seed=seed).train(X32))
    return runs


def measure(runs: dict[str, Fit], fits: int, repeats: int) -> dict[str, float]:
    """Median seconds per fit of each run, the runs interleaved repeat by repeat."""
    for fit in runs.values():  # warm up: imports, kernel build, allocator
        per_fit(fit, min(fits, 10))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fit in runs.items():
            times[name].append(per_fit(fit, fits))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=100,
                        help="fits per repeat at 300 x 2 (scaled down for the larger shapes)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default=",".join(str(i) for i in range(len(SHAPES))),
                        help="comma-separated indices into the shapes (default: all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few fits")
    parser.add_argument("--markdown", action="store_true", help="(tables are markdown)")
    args = parser.parse_args()
    if args.quick:
        args.fits, args.repeats = 10, 1
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    chosen = [list(SHAPES)[int(index)] for index in args.shapes.split(",")]
    results: dict[str, dict[str, float]] = {}
    with threadpool_limits(args.threads):
        for shape in chosen:
            n_samples, n_features, k, std, scale = SHAPES[shape]
            runs = runs_for(n_samples, n_features, k, std)
            results[shape] = measure(runs, max(1, round(args.fits * scale)), args.repeats)
    print(f"torch {torch.__version__}, torchmeans {torchmeans.__version__}, "
          f"{args.threads} thread{'s' if args.threads != 1 else ''}; median of {args.repeats} "
          "interleaved repeats\n")
    print("| fit | " + " | ".join(f"{shape}: / scikit-learn | ms" for shape in chosen) + " |")
    print("|---|" + "---:|---:|" * len(chosen))
    for name in results[chosen[0]]:
        cells = []
        for shape in chosen:
            seconds = results[shape][name]
            cells.append(f"{seconds / results[shape][REFERENCE]:.2f} | {seconds * 1e3:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
