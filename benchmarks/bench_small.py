"""Small problems: the per-fit cost of the seed's demo (300 x 2, k=4) against the peers.

Warm, in one process: each library fits the same data ``--fits`` times per repeat, with
``random_state`` cycling through 0-9 (the iteration count depends on the seeds), and the
table gives the median time per fit over ``--repeats`` interleaved repeats, as a ratio to
scikit-learn's (``KMeans(n_init=1)``, the same work as torchmeans' default k-means++ init).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from sklearn.datasets import make_blobs

import torchmeans


def per_fit(fit, fits: int) -> float:
    start = time.perf_counter()
    for index in range(fits):
        fit(index % 10)
    return (time.perf_counter() - start) / fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="(tables are markdown)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.60, random_state=0)
    tensor = torch.from_numpy(X).float()
    runs = {
        "scikit-learn KMeans(n_init=1)":
            lambda seed: SKLearnKMeans(4, n_init=1, random_state=seed).fit(X),
        "torchmeans KMeans, numpy float64":
            lambda seed: torchmeans.KMeans(4, random_state=seed).fit(X),
        "torchmeans KMeans, float32 tensor":
            lambda seed: torchmeans.KMeans(4, random_state=seed).fit(tensor),
        "torchmeans kmeans(), float32 tensor":
            lambda seed: torchmeans.kmeans(tensor, 4, random_state=seed),
    }
    try:
        import faiss

        X32 = np.ascontiguousarray(X, dtype=np.float32)

        def faiss_fit(seed: int) -> None:
            faiss.Kmeans(2, 4, niter=25, seed=seed).train(X32)

        runs["faiss Kmeans (25 iterations, its default)"] = faiss_fit
    except ImportError:
        pass
    for fit in runs.values():  # warm up: imports, kernel build, allocator
        per_fit(fit, 10)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fit in runs.items():
            times[name].append(per_fit(fit, args.fits))
    reference = statistics.median(times["scikit-learn KMeans(n_init=1)"])
    print(f"torch {torch.__version__}, torchmeans {torchmeans.__version__}, "
          f"{args.threads} threads; 300 x 2, k=4 (make_blobs, cluster_std=0.6)\n")
    print("| fit | time / scikit-learn's | ms per fit (median) |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median / reference:.2f} | {median * 1e3:.2f} |")


if __name__ == "__main__":
    main()
