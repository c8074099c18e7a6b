r"""k-means|| against greedy k-means++: seeding time and the inertia each leads to.

For one shape, in one process: the time of each seeding (the engine's samplers, run
alone) divided by the time of one Lloyd iteration, the potential of the seeds, and the
inertia after a fit from them (``--fit-iter`` iterations at most, default 50,
``algorithm='auto'``), relative to k-means++'s. Only ratios are meaningful on a shared
machine.

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_parallel_init.py --markdown
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from threadpoolctl import threadpool_limits

import torchmeans
from torchmeans.core.assign import assign
from torchmeans.core.seeding import kmeans_parallel_centers, kmeans_plusplus_centers
from torchmeans.core.validation import make_data

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_lloyd import make_data as make_mixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1000000x64x1024", help="NxDxk")
    parser.add_argument("--fit-iter", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small shape (smoke test)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    n, d, k = (20_000, 16, 64) if args.quick else map(int, args.shape.split("x"))
    X, _ = make_mixture(n, d, k)
    torch.set_num_threads(args.threads)
    tensor = torch.from_numpy(X)
    data = make_data(tensor, torch.ones(n, dtype=tensor.dtype))
    rows = []
    with threadpool_limits(args.threads):
        one = torchmeans.KMeans(k, init=X[:k], n_init=1, max_iter=3, tol=0).fit(X)
        start = time.perf_counter()
        torchmeans.KMeans(k, init=X[:k], n_init=1, max_iter=3, tol=0).fit(X)
        iteration = (time.perf_counter() - start) / one.n_iter_
        for name, sampler in (("k-means++", kmeans_plusplus_centers),
                              ("k-means||", kmeans_parallel_centers)):
            start = time.perf_counter()
            seeds, _ = sampler(data, k, torch.Generator().manual_seed(0))
            seconds = time.perf_counter() - start
            centers = (seeds + data.offset).numpy()
            fit = torchmeans.KMeans(k, init=centers, n_init=1, max_iter=args.fit_iter,
                                    algorithm="auto").fit(X)
            seed_potential = float(assign(data, seeds).inertia)
            rows.append((name, seconds / iteration, seed_potential, fit.inertia_, fit.n_iter_))
    base_seed, base_fit = rows[0][2], rows[0][3]
    print(f"{n} x {d}, k={k}, float32, {args.threads} threads; one Lloyd iteration = "
          f"{iteration * 1e3:.0f} ms; fits of at most {args.fit_iter} iterations\n")
    header = ("| seeding | time / one Lloyd iteration | seed potential / k-means++'s | "
              "inertia after the fit / k-means++'s | n_iter |")
    print(header if args.markdown else header.replace("|", " "))
    if args.markdown:
        print("|---|---:|---:|---:|---:|")
    for name, cost, seed, final, n_iter in rows:
        print(f"| {name} | **{cost:.1f}** | {seed / base_seed:.3f} | {final / base_fit:.4f} | "
              f"{n_iter} |")


if __name__ == "__main__":
    main()
