r"""BisectingKMeans against scikit-learn's, side by side in one process.

Each library fits the same ``make_blobs`` data with the same parameters (``init='random'``,
``n_init=1``, each bisecting strategy, defaults otherwise) for ``--seeds`` seeds; the
table reports scikit-learn's fastest fit time over torchmeans' (higher is better for
torchmeans; the two libraries alternate seed by seed and the fastest of the seeds is kept,
as these fits take milliseconds on a shared machine), the same for ``predict`` on the
training rows, and the ratio of mean final inertia (lower is better; about 1 means the
same quality). The draws differ (local torch generator), so compare means over seeds.

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_bisecting.py --markdown
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.cluster import BisectingKMeans as SKLearnBisectingKMeans
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

import torchmeans


def datasets(quick: bool) -> dict[str, tuple[np.ndarray, int]]:
    """The blobs of the table: ``name -> (X, n_clusters)`` (float32, as most users have)."""
    shapes = [(10_000, 16, 32), (2_000, 2, 8)] if quick else [(100_000, 16, 32),
                                                              (10_000, 2, 8)]
    out = {}
    for n, d, k in shapes:
        X, _ = make_blobs(n_samples=n, n_features=d, centers=k, random_state=0)
        out[f"{n:_} x {d} blobs, k={k}"] = (X.astype(np.float32), k)
    return out


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(args.threads):
        for name, (X, k) in datasets(args.quick).items():
            for strategy in ("biggest_inertia", "largest_cluster"):
                classes = {"sklearn": SKLearnBisectingKMeans,
                           "torchmeans": torchmeans.BisectingKMeans}
                results = {label: ([], [], []) for label in classes}
                for cls in classes.values():
                    cls(k, bisecting_strategy=strategy, random_state=0).fit(X[:2000])  # warm
                for seed in range(args.seeds):
                    for label, cls in classes.items():  # alternating: the same load on both
                        fits, predicts, inertias = results[label]
                        model, seconds = timed(cls(k, bisecting_strategy=strategy,
                                                   random_state=seed).fit, X)
                        fits.append(seconds)
                        predicts.append(timed(model.predict, X)[1])
                        inertias.append(model.inertia_)
                sk, tm = ([min(fits), min(predicts), np.mean(inertias)]
                          for fits, predicts, inertias in results.values())
                rows.append((name, strategy, sk[0] / tm[0], sk[1] / tm[1], tm[2] / sk[2],
                             sk[0], tm[0]))
    print(f"init='random', n_init=1, {args.seeds} seeds, {args.threads} threads, float32\n")
    print("| data | strategy | fit: scikit-learn / torchmeans time (ms / ms) | predict: "
          "scikit-learn / torchmeans time | inertia torchmeans / scikit-learn |")
    print("|---|---|---:|---:|---:|")
    for name, strategy, fit_speed, predict_speed, quality, sk_fit, tm_fit in rows:
        print(f"| {name} | {strategy} | **{fit_speed:.2f}** ({1e3 * sk_fit:.1f} / "
              f"{1e3 * tm_fit:.1f}) | {predict_speed:.2f} | {quality:.4f} |")


if __name__ == "__main__":
    main()
