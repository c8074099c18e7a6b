r"""MiniBatchKMeans against scikit-learn's, side by side in one process.

Each library fits the same data with the same parameters (``batch_size``, ``n_init=3``,
defaults otherwise) for ``--seeds`` seeds; the table reports scikit-learn's mean fit time
over torchmeans' (higher is better for torchmeans) and the ratio of mean final inertia
(lower is better; within a few percent means the same quality). The draws differ (local
torch generator), so compare means over seeds.

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_minibatch.py --markdown
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans as SKLearnMiniBatchKMeans
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

import torchmeans

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_lloyd import make_data


def datasets(quick: bool) -> dict[str, tuple[np.ndarray, int]]:
    n = 20_000 if quick else 500_000
    X, _ = make_data(n, 32, 64)
    return {f"{n:_} x 32 mixture, k=64": (X, 64),
            "digits 1,797 x 64, k=10": (load_digits().data.astype(np.float32), 10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(args.threads):
        for name, (X, k) in datasets(args.quick).items():
            results = {}
            for label, cls in (("sklearn", SKLearnMiniBatchKMeans),
                               ("torchmeans", torchmeans.MiniBatchKMeans)):
                cls(k, batch_size=args.batch_size, n_init=3, random_state=0).fit(X[:5000])
                times, inertias = [], []
                for seed in range(args.seeds):
                    start = time.perf_counter()
                    km = cls(k, batch_size=args.batch_size, n_init=3, random_state=seed).fit(X)
                    times.append(time.perf_counter() - start)
                    inertias.append(km.inertia_)
                results[label] = (np.mean(times), np.mean(inertias))
            rows.append((name, results["sklearn"][0] / results["torchmeans"][0],
                         results["torchmeans"][1] / results["sklearn"][1]))
    print(f"batch_size={args.batch_size}, n_init=3, {args.seeds} seeds, {args.threads} threads\n")
    print("| data | scikit-learn time / torchmeans time | inertia torchmeans / scikit-learn |")
    print("|---|---:|---:|")
    for name, speed, quality in rows:
        print(f"| {name} | **{speed:.2f}** | {quality:.4f} |")


if __name__ == "__main__":
    main()
