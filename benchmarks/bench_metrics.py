r"""Clustering metrics: torchmeans.metrics against scikit-learn, side by side in one process.

For each metric, both libraries score the same float64 data and labels; the table
reports scikit-learn's time over torchmeans' (higher is better for torchmeans) and the
relative difference of the values. Silhouette is the costly one (``O(n^2 d)``).

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_metrics.py --markdown
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import sklearn.metrics as skm
import torch
from threadpoolctl import threadpool_limits

from torchmeans import metrics

METRICS: dict[str, tuple[Callable, Callable]] = {
    "silhouette_score": (skm.silhouette_score, metrics.silhouette_score),
    "calinski_harabasz_score": (skm.calinski_harabasz_score, metrics.calinski_harabasz_score),
    "davies_bouldin_score": (skm.davies_bouldin_score, metrics.davies_bouldin_score),
}


def median_time(function: Callable[[], float], repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=50_000)
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--n-clusters", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    n = 2_000 if args.quick else args.n_samples
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4, size=(args.n_clusters, args.n_features))
    labels = rng.integers(args.n_clusters, size=n)
    X = centers[labels] + rng.normal(size=(n, args.n_features))
    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(args.threads):
        for name, (reference, ours) in METRICS.items():
            sk_time, sk_value = median_time(lambda f=reference: f(X, labels), args.repeats)
            tm_time, tm_value = median_time(lambda f=ours: f(X, labels), args.repeats)
            rows.append((name, sk_time / tm_time, (tm_value - sk_value) / abs(sk_value)))
    print(f"{n} x {args.n_features}, {args.n_clusters} labels, float64, {args.threads} threads, "
          f"median of {args.repeats}\n")
    if args.markdown:
        print("| metric | scikit-learn time / torchmeans time | value rel. diff |")
        print("|---|---:|---:|")
        for name, speedup, diff in rows:
            print(f"| {name} | **{speedup:.1f}x** | {diff:+.1e} |")
    else:
        for name, speedup, diff in rows:
            print(f"{name:<26} {speedup:8.1f}x faster   rel. diff {diff:+.1e}")


if __name__ == "__main__":
    main()
