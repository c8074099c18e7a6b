"""Queries of a fitted model: kneighbors and predict_proba against predict, transform and sklearn.

One fitted ``KMeans`` (float32 blobs, ``--n`` x ``--d``, ``--k`` clusters, a few Lloyd
iterations: the centers only need to exist), then per query (after a warm-up call) the median
wall time over
``--repeats`` and the memory it allocated above what was held before (peak anonymous resident
memory, sampled every 2 ms in this process): ``predict``; ``kneighbors`` with ``m = 1`` and
``--m``; the same ``m`` nearest from ``transform`` and a stable ``argsort`` (the way without
``kneighbors``); scikit-learn's ``NearestNeighbors(algorithm='brute')`` fitted on the centers;
``predict_proba`` over all centers and over the ``m`` nearest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from peak_memory import PEAK_SAMPLER
from torchmeans import KMeans

exec(PEAK_SAMPLER)  # anon_mib(), sample_peak()


def measure(run, repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` calls, and the peak MiB allocated above the start."""
    times, extra = [], 0.0
    run()  # warm-up: one-time allocations and thread pools are not the query's
    for _ in range(repeats):
        before = anon_mib()  # noqa: F821 (defined by PEAK_SAMPLER)
        stop = sample_peak()  # noqa: F821
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        del result
        extra = max(extra, stop() - before)
    return statistics.median(times), extra


def main() -> None:
    """Fit once, then time and measure each query (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, _ = make_blobs(args.n, n_features=args.d, centers=args.k, random_state=0)
    X = X.astype(np.float32)
    km = KMeans(args.k, random_state=0, max_iter=3).fit(X)
    m = args.m
    nn = NearestNeighbors(n_neighbors=m, algorithm="brute").fit(km.cluster_centers_)
    queries = {
        "predict": lambda: km.predict(X),
        "kneighbors, m=1": lambda: km.kneighbors(X, 1),
        f"kneighbors, m={m}": lambda: km.kneighbors(X, m),
        f"transform + argsort, m={m}": lambda: np.argsort(km.transform(X), axis=1,
                                                          kind="stable")[:, :m],
        f"sklearn NearestNeighbors (brute), m={m}": lambda: nn.kneighbors(X),
        "predict_proba, all centers": lambda: km.predict_proba(X),
        f"predict_proba, m={m}": lambda: km.predict_proba(X, n_neighbors=m),
    }
    print(f"{args.n} x {args.d} float32, k={args.k}; median of {args.repeats}")
    print("| query | seconds | / predict | MiB allocated |")
    print("|---|---:|---:|---:|")
    base = None
    for name, run in queries.items():
        seconds, mib = measure(run, args.repeats)
        base = base or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
