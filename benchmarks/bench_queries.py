"""Queries of a fitted model: kneighbors and soft_assign against predict, transform and sklearn.

One fitted ``KMeans`` (float32 blobs, ``--n`` x ``--d``, ``--k`` clusters, a few Lloyd
iterations: the centers only need to exist), then per query, each in a process of its own
(which fits the same model): the memory its first call allocated above what the process held
(peak anonymous resident memory, sampled every 2 ms), then the median wall time of
``--repeats`` more calls. The queries: ``predict``; ``kneighbors`` with ``m = 1`` and ``--m``; the
same ``m`` nearest from ``transform`` and a stable ``argsort`` (the way without
``kneighbors``); scikit-learn's ``NearestNeighbors(algorithm='brute')`` fitted on the centers;
``soft_assign`` over all centers and over the ``m`` nearest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from peak_memory import PEAK_SAMPLER
from torchmeans import KMeans

exec(PEAK_SAMPLER)  # anon_mib(), sample_peak()
# glibc serves blocks of 64 KiB and more by mmap and unmaps them when freed, so a query's
# temporaries are not hidden in memory the fit freed (and resident memory falls after it).
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def measure(run, repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` calls, and the peak MiB the first call allocated.

    Memory from the first call: later calls may reuse what the first left (thread pools).
    """
    before = anon_mib()  # noqa: F821 (defined by PEAK_SAMPLER)
    stop = sample_peak()  # noqa: F821
    result = run()
    extra = stop() - before
    del result
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        del result
    return statistics.median(times), extra


def queries(km: KMeans, X: np.ndarray, m: int) -> dict:
    """The queries by name, each a function of no arguments."""
    nn = NearestNeighbors(n_neighbors=m, algorithm="brute").fit(km.cluster_centers_)
    return {
        "predict": lambda: km.predict(X),
        "kneighbors, m=1": lambda: km.kneighbors(X, 1),
        f"kneighbors, m={m}": lambda: km.kneighbors(X, m),
        f"transform + argsort, m={m}": lambda: np.argsort(km.transform(X), axis=1,
                                                          kind="stable")[:, :m],
        f"sklearn NearestNeighbors (brute), m={m}": lambda: nn.kneighbors(X),
        "soft_assign, all centers": lambda: km.soft_assign(X),
        f"soft_assign, m={m}": lambda: km.soft_assign(X, n_neighbors=m),
    }


def main() -> None:
    """Fit once per process; each query runs in a process of its own (see the docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--query", help=argparse.SUPPRESS)  # the child's one query
    args = parser.parse_args()
    X, _ = make_blobs(args.n, n_features=args.d, centers=args.k, random_state=0)
    X = X.astype(np.float32)
    km = KMeans(args.k, random_state=0, max_iter=3).fit(X)
    if args.query is not None:
        seconds, mib = measure(queries(km, X, args.m)[args.query], args.repeats)
        print(seconds, mib)
        return
    print(f"{args.n} x {args.d} float32, k={args.k}; median of {args.repeats}")
    print("| query | seconds | / predict | MiB allocated |")
    print("|---|---:|---:|---:|")
    base = None
    for name in queries(km, X[:1], args.m):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--query", name],
                             check=True, capture_output=True, text=True, env=CHILD_ENV).stdout
        seconds, mib = map(float, out.split())
        base = base or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
