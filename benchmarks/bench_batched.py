r"""Batched k-means: B problems at once against a loop of single fits and the batched peers.

Data: ``B`` independent problems, each a mixture of ``k`` Gaussian blobs (``N`` rows,
``D`` features, float32). Two modes, side by side in one process:

- *fixed*: the same initial centers for everyone (k-means++ from torchmeans), a fixed
  number of iterations (``--iters``, tolerance off): time per fit, relative to
  torchmeans' batched fit (higher = slower than torchmeans), and the mean final
  inertia relative to the lowest.
- *default*: each library's defaults to convergence (its own init): total time and
  mean inertia relative to the lowest.

Peers: a Python loop of ``torchmeans.kmeans`` (one problem at a time),
``fast_pytorch_kmeans.MultiKMeans`` and ``flash_kmeans``' torch path
(``batch_kmeans_Euclid_torch_native``), when installed (``pip install -e .[bench]``).

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_batched.py --markdown
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable

import torch

import torchmeans


def make_problems(n_problems: int, n_samples: int, n_features: int, n_clusters: int,
                  seed: int = 0) -> torch.Tensor:
    """``(B, N, D)`` float32: each problem a mixture of ``n_clusters`` overlapping unit blobs.

    The blob centers are ``N(0, 0.25)``: close enough that Lloyd needs tens of iterations
    (as on real embeddings), not the handful of well-separated blobs.
    """
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_problems, n_clusters, n_features, generator=generator) * 0.5
    picks = torch.randint(0, n_clusters, (n_problems, n_samples), generator=generator)
    noise = torch.randn(n_problems, n_samples, n_features, generator=generator)
    return torch.gather(centers, 1, picks[..., None].expand(-1, -1, n_features)) + noise


def inertia(X: torch.Tensor, centers: torch.Tensor) -> float:
    """Mean over problems of the inertia of ``centers`` (nearest-center assignment)."""
    scores = torch.baddbmm(centers.square().sum(2)[:, None], X, centers.transpose(1, 2),
                           alpha=-2)
    return float((scores.min(dim=2).values + X.square().sum(2)).clamp(min=0).sum(1).mean())


def peers(k: int, iters: int | None) -> dict[str, Callable]:
    """Each method as ``fit(X, init or None) -> centers``; ``iters=None``: its defaults."""
    fixed = iters is not None
    methods: dict[str, Callable] = {}

    def batched(X, init):
        if fixed:
            return torchmeans.batched_kmeans(X, k, init=init, max_iter=iters, tol=0).centers
        return torchmeans.batched_kmeans(X, k, random_state=0).centers

    def loop(X, init):
        if fixed:
            return torch.stack([torchmeans.kmeans(x, k, init=c, max_iter=iters, tol=0).centers
                                for x, c in zip(X, init, strict=True)])
        return torch.stack([torchmeans.kmeans(x, k, random_state=0).centers for x in X])

    methods["torchmeans batched"] = batched
    methods["loop of torchmeans.kmeans"] = loop
    try:
        multi = importlib.import_module("fast_pytorch_kmeans").MultiKMeans

        def fast_pytorch(X, init):
            model = multi(k, max_iter=iters, tol=0) if fixed else multi(k)
            model.fit_predict(X, centroids=init.clone() if fixed else None)
            return model.centroids
        methods["fast_pytorch_kmeans MultiKMeans"] = fast_pytorch
    except ImportError:
        pass
    try:
        flash = importlib.import_module("flash_kmeans.torch_fallback")

        def flash_torch(X, init):
            if fixed:
                _, centers, _ = flash.batch_kmeans_Euclid_torch_native(
                    X, k, max_iters=iters, tol=0.0, init_centroids=init.clone())
            else:
                _, centers, _ = flash.batch_kmeans_Euclid_torch_native(X, k)
            return centers
        methods["flash-kmeans torch path"] = flash_torch
    except ImportError:
        pass
    return methods


def run(X: torch.Tensor, k: int, iters: int | None, repeats: int) -> dict[str, dict]:
    init = torch.stack([torch.as_tensor(torchmeans.kmeans_plusplus(x, k, random_state=0)[0])
                        for x in X])
    results = {}
    for name, fit in peers(k, iters).items():
        fit(X[:2], init[:2])  # warm-up
        times, centers = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            centers = fit(X, init)
            times.append(time.perf_counter() - start)
        results[name] = {"seconds": min(times), "inertia": inertia(X, centers.to(X.dtype))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32x4096x64x64",
                        help="B x N x D x k (the issue's shape; try 512x256x16x8 too)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    B, N, D, k = (int(v) for v in args.shape.split("x"))
    if args.quick:
        B, N, D, k, args.repeats = 4, 256, 8, 8, 1
    X = make_problems(B, N, D, k)
    report = {}
    for mode, iters in (("fixed", args.iters), ("default", None)):
        results = run(X, k, iters, args.repeats)
        base = results["torchmeans batched"]["seconds"]
        best = min(r["inertia"] for r in results.values())
        report[mode] = results
        title = (f"{mode}: B={B}, N={N}, D={D}, k={k}"
                 + (f", {iters} iterations from the same k-means++ init" if iters else
                    ", each library's defaults to convergence"))
        print(f"\n{title}\n")
        print("| method | time / torchmeans batched | mean inertia / best |")
        print("|---|---|---|")
        for name, r in results.items():
            print(f"| {name} | {r['seconds'] / base:.2f} | {r['inertia'] / best:.4f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
