r"""``max_samples_per_cluster``: a fit on a subsample against the full fit (and FAISS's).

Fits the same float32 ``make_blobs`` data (default 1,000,000 x 16, 64 centers) with
torchmeans on every row, torchmeans with ``max_samples_per_cluster=256`` (Lloyd on
``k * 256`` rows drawn uniformly, then every row assigned), and, when ``faiss`` imports,
``faiss.Kmeans`` with its defaults (it subsamples to ``max_points_per_centroid=256`` rows
per centroid itself, 25 iterations), all in one process, seed after seed (``--seeds``
fits' ``random_state``, ``n_init=1``: one seeding's luck is not the method's). Every
inertia is evaluated the same way on all rows (float64, against the returned centers);
the table gives each fit's median time and mean inertia over the full torchmeans fit's
(lower is better for both), and the range of the per-seed inertia ratios. FAISS runs
with as many OpenMP threads as torch uses.

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_subsample.py --markdown
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import make_blobs

import torchmeans


def inertia_on_all_rows(X: np.ndarray, centers: np.ndarray, rows: int = 65_536) -> float:
    """Sum over all rows of the squared distance to the nearest center, in float64."""
    c = torch.as_tensor(np.asarray(centers, dtype=np.float64))
    c_norms = c.square().sum(dim=1)
    total = 0.0
    for start in range(0, len(X), rows):
        x = torch.as_tensor(X[start:start + rows], dtype=torch.float64)
        nearest = (c_norms - 2 * x @ c.T).argmin(dim=1)
        total += float((x - c[nearest]).square().sum())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-clusters", type=int, default=64)
    parser.add_argument("--per-cluster", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    n, d, k, m = args.n_samples, args.n_features, args.n_clusters, args.per_cluster
    if args.quick:
        n, k = 50_000, 16
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, random_state=0)
    X = X.astype(np.float32)

    def full(seed):
        km = torchmeans.KMeans(k, n_init=1, random_state=seed).fit(X)
        return km.cluster_centers_, km.n_iter_

    def sampled(seed):
        km = torchmeans.KMeans(k, n_init=1, random_state=seed,
                               max_samples_per_cluster=m).fit(X)
        return km.cluster_centers_, km.n_iter_

    fits = {"torchmeans, every row": full,
            f"torchmeans, max_samples_per_cluster={m}": sampled}
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        faiss.omp_set_num_threads(torch.get_num_threads())

        def faiss_default(seed):
            model = faiss.Kmeans(d, k, seed=seed)  # max_points_per_centroid=256
            model.train(X)
            model.index.search(X, 1)  # the labels of all rows, as the others give
            return model.centroids, model.cp.niter

        fits[f"faiss.Kmeans defaults ({faiss.__version__})"] = faiss_default
    seconds = {name: [] for name in fits}
    inertias = {name: [] for name in fits}
    iterations = {name: [] for name in fits}
    seeds = 2 if args.quick else args.seeds
    for seed in range(seeds):
        for name, function in fits.items():
            start = time.perf_counter()
            centers, n_iter = function(seed)
            seconds[name].append(time.perf_counter() - start)
            inertias[name].append(inertia_on_all_rows(X, centers))
            iterations[name].append(n_iter)
    base = next(iter(fits))
    base_seconds, base_inertia = np.median(seconds[base]), np.array(inertias[base])
    header = ("fit", "median s", "time / full", "mean inertia / full", "per-seed range",
              "iterations")
    table = []
    for name in fits:
        ratio = np.array(inertias[name]) / base_inertia
        time_ratio = np.median(seconds[name]) / base_seconds
        table.append((name, f"{np.median(seconds[name]):.3f}", f"{time_ratio:.3f}",
                      f"{np.mean(inertias[name]) / base_inertia.mean():.4f}",
                      f"{ratio.min():.3f}-{ratio.max():.3f}",
                      f"{min(iterations[name])}-{max(iterations[name])}"))
    print(f"{n:,} x {d} float32 blobs, k={k}, {seeds} seeds, {torch.get_num_threads()} threads")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        for row in [header, *table]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
