r"""k-means++ seeding: its cost in Lloyd iterations, and its quality against scikit-learn's.

Cost: time of torchmeans' k-means++ (its default, the blocked seeding at the cost shape:
inside a fit and as the standalone ``kmeans_plusplus``; the exact greedy seeding on all
rows; ``init_size`` subsampling through ``KMeans``) and of scikit-learn's
``kmeans_plusplus``, each divided by the time of one torchmeans Lloyd iteration on the
same data (from a fixed-iteration fit), all measured in one process.

Quality: mean potential (inertia of the seeds) and mean converged inertia over
``--seeds`` seeds for both libraries; the ratio should be 1 within the spread
printed beside it (different random streams, same algorithm).

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_init.py --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from sklearn.cluster import kmeans_plusplus
from threadpoolctl import threadpool_limits

import torchmeans
from torchmeans.core import seeding as _init

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_lloyd import make_data

COST_SHAPE = (200_000, 128, 1024)
QUALITY_SHAPE = (200_000, 8, 16)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def potential(X: np.ndarray, centers: np.ndarray) -> float:
    """Inertia of ``X`` against ``centers`` in float64, chunked."""
    X64, C64 = torch.from_numpy(X).double(), torch.as_tensor(np.asarray(centers)).double()
    total = 0.0
    for start in range(0, len(X64), 65536):
        total += float(torch.cdist(X64[start : start + 65536], C64).amin(dim=1).square().sum())
    return total


@contextlib.contextmanager
def exact_greedy() -> Iterator[None]:
    """Within the block, k-means++ is the exact greedy seeding at every size."""
    saved = _init.BLOCKED_SEEDING_MIN_WORK
    _init.BLOCKED_SEEDING_MIN_WORK = 1 << 62
    try:
        yield
    finally:
        _init.BLOCKED_SEEDING_MIN_WORK = saved


def cost(shape: tuple[int, int, int], init_sizes: tuple[int, ...], repeats: int) -> None:
    """Seeding time over one Lloyd iteration's, measured side by side.

    The default seeding is timed ``repeats`` times, interleaved with the fits it is
    compared to; each repeat's ratio uses that repeat's iteration, and the median and
    range of the ratios are printed. "In a fit" is the extra time of a one-iteration fit
    seeded by k-means++ over one from given centers (the fit's set-up, validation and
    centred copy shared); the standalone function also validates and shifts its input.
    """
    n, d, k = shape
    X, init = make_data(n, d, k)
    X_tensor = torch.from_numpy(X)

    def fit(max_iter: int, init_: object) -> float:
        model = torchmeans.KMeans(k, init=init_, n_init=1, max_iter=max_iter, tol=0,
                                  random_state=0)
        return timed(lambda: model.fit(X_tensor))

    fit(1, init)  # build the kernel, warm the allocator
    standalone, in_fit, iterations = [], [], []
    for _ in range(repeats):
        iteration = fit(3, init) / 3
        iterations.append(iteration)
        standalone.append(timed(
            lambda: torchmeans.kmeans_plusplus(X_tensor, k, random_state=0)) / iteration)
        in_fit.append((fit(1, "k-means++") - fit(1, init)) / iteration)

    def spread(ratios: list[float]) -> str:
        return (f"**{statistics.median(ratios):.1f}** ({min(ratios):.1f}-{max(ratios):.1f})"
                if len(ratios) > 1 else f"**{ratios[0]:.1f}**")

    iteration = statistics.median(iterations)
    rows = [("torchmeans k-means++ in a fit (default: blocked at this size)", spread(in_fit)),
            ("torchmeans kmeans_plusplus, standalone", spread(standalone))]
    with exact_greedy():
        seconds = timed(lambda: torchmeans.kmeans_plusplus(X_tensor, k, random_state=0))
    rows.append(("torchmeans greedy on all rows (`blocked` off)", f"{seconds / iteration:.1f}"))
    for size in init_sizes:
        seeding = torchmeans.KMeans(k, init_size=size, n_init=1, max_iter=1, tol=0,
                                    random_state=0)
        seconds = timed(lambda s=seeding: s.fit(X_tensor)) - fit(1, init)
        rows.append((f"torchmeans init_size={size:_} in a fit", f"{seconds / iteration:.1f}"))
    seconds = timed(lambda: kmeans_plusplus(X, k, random_state=0))
    rows.append(("scikit-learn kmeans_plusplus", f"{seconds / iteration:.1f}"))
    print(f"\nSeeding cost at {n:_} x {d} x {k}; one torchmeans Lloyd iteration: "
          f"{iteration * 1e3:.0f} ms (median; from 3-iteration fits, set-up included); "
          f"{repeats} interleaved repeats: median (range)\n")
    print("| seeding | time / one Lloyd iteration |\n|---|---:|")
    for name, ratio in rows:
        print(f"| {name} | {ratio} |", flush=True)


def quality(shape: tuple[int, int, int], seeds: int) -> None:
    n, d, k = shape
    X, _ = make_data(n, d, k)
    seeded = {"scikit-learn": [], "torchmeans": []}
    fitted = {"scikit-learn": [], "torchmeans": []}
    for seed in range(seeds):
        seeded["scikit-learn"].append(potential(X, kmeans_plusplus(X, k, random_state=seed)[0]))
        seeded["torchmeans"].append(
            potential(X, torchmeans.kmeans_plusplus(X, k, random_state=seed)[0]))
        fitted["scikit-learn"].append(SKLearnKMeans(k, random_state=seed).fit(X).inertia_)
        fitted["torchmeans"].append(torchmeans.KMeans(k, random_state=seed).fit(X).inertia_)
    print(f"\nk-means++ quality at {n:_} x {d} x {k}, {seeds} seeds each\n")
    print("| stage | torchmeans mean / scikit-learn mean | std of per-seed ratio |\n"
          "|---|---:|---:|")
    for stage, values in (("seeds (potential)", seeded), ("converged fit", fitted)):
        ours, theirs = np.array(values["torchmeans"]), np.array(values["scikit-learn"])
        print(f"| {stage} | {ours.mean() / theirs.mean():.3f} | "
              f"{np.std(ours / theirs):.3f} |", flush=True)


def quality_at_scale(shape: tuple[int, int, int], init_sizes: tuple[int, ...],
                      seeds: int) -> None:
    """Seeding quality at ``shape``: every way torchmeans seeds, against scikit-learn's.

    For each seed: scikit-learn's ``kmeans_plusplus`` on all rows, torchmeans' exact
    greedy seeding on all rows, its default (the blocked seeding at this size), and its
    greedy seeding on ``init_size`` rows drawn without replacement (what
    ``KMeans(init_size=...)`` does); the potential of those centers on *all* rows,
    then a torchmeans fit to convergence (scikit-learn's defaults) from each.
    """
    n, d, k = shape
    X, _ = make_data(n, d, k)
    X_tensor = torch.from_numpy(X)
    names = ["scikit-learn, all rows", "torchmeans greedy, all rows",
             "torchmeans default (blocked)",
             *(f"torchmeans, init_size={size:_}" for size in init_sizes)]
    seeded: dict[str, list[float]] = {name: [] for name in names}
    fitted: dict[str, list[float]] = {name: [] for name in names}
    for seed in range(seeds):
        starts = {names[0]: kmeans_plusplus(X, k, random_state=seed)[0]}
        with exact_greedy():
            starts[names[1]] = torchmeans.kmeans_plusplus(X_tensor, k, random_state=seed)[0]
        starts[names[2]] = torchmeans.kmeans_plusplus(X_tensor, k, random_state=seed)[0]
        rng = np.random.default_rng(seed)
        for name, size in zip(names[3:], init_sizes, strict=True):
            rows = torch.from_numpy(rng.choice(n, size, replace=False))
            starts[name] = torchmeans.kmeans_plusplus(X_tensor[rows], k, random_state=seed)[0]
        for name, centers in starts.items():
            centers = np.asarray(centers, dtype=X.dtype)
            seeded[name].append(potential(X, centers))
            fitted[name].append(torchmeans.KMeans(k, init=centers, n_init=1).fit(X).inertia_)
    print(f"\nSeeding quality at {n:_} x {d} x {k}, {seeds} seeds; mean over seeds "
          "relative to scikit-learn's seeding on all rows (per-seed ratios' std)\n")
    print("| seeding | seeds' potential | converged inertia |\n|---|---:|---:|")
    reference_seeded = np.array(seeded[names[0]])
    reference_fitted = np.array(fitted[names[0]])
    for name in names:
        ours_seeded, ours_fitted = np.array(seeded[name]), np.array(fitted[name])
        print(f"| {name} | {ours_seeded.mean() / reference_seeded.mean():.4f} "
              f"({np.std(ours_seeded / reference_seeded):.4f}) | "
              f"{ours_fitted.mean() / reference_fitted.mean():.4f} "
              f"({np.std(ours_fitted / reference_fitted):.4f}) |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--cost-repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    parser.add_argument("--markdown", action="store_true", help="(tables are markdown)")
    parser.add_argument("--scale-seeds", type=int, default=0,
                        help="also compare the seedings' quality at the cost shape "
                             "(this many seeds; slow: converged fits at 200,000 x 128)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cost_shape = (20_000, 16, 64) if args.quick else COST_SHAPE
    quality_shape = (5_000, 4, 8) if args.quick else QUALITY_SHAPE
    print(f"torch {torch.__version__}, torchmeans {torchmeans.__version__}, "
          f"{args.threads} threads")
    with threadpool_limits(args.threads):
        cost(cost_shape, (cost_shape[0] // 10, cost_shape[0] // 40),
             2 if args.quick else args.cost_repeats)
        quality(quality_shape, 3 if args.quick else args.seeds)
        if args.scale_seeds or args.quick:
            n = cost_shape[0]
            quality_at_scale(cost_shape, (n // 40, n // 20, n // 10), args.scale_seeds or 1)


if __name__ == "__main__":
    main()
