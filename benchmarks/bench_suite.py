r"""torchmeans against its peers, side by side in one process.

Peers: scikit-learn ``KMeans`` (``'lloyd'``, ``'elkan'``), FAISS CPU ``faiss.Kmeans``,
``fastkmeans.FastKMeans`` (its torch path on the CPU), ``fast_pytorch_kmeans.KMeans``
(``mode='euclidean'``) and ``torchmeans.KMeans`` with every algorithm of
``TORCHMEANS_ALGORITHMS``. A peer that is not installed, or an algorithm torchmeans does not
have (yet), or any fit that fails, is reported as ``n/a (reason)``; the suite goes on.
Everything runs on the CPU with ``--threads`` threads (``torch.set_num_threads``,
threadpoolctl for OpenMP/BLAS, ``faiss.omp_set_num_threads``). Every library fits the
same float32 array; fits alternate between libraries, ``--repeats`` times (median).
Only ratios measured in one run are meaningful on a shared machine.

Modes:

``fixed``
    The same initial centers for every library that accepts them (``k`` distinct rows of
    ``X`` drawn with a fixed seed, as in ``bench_lloyd.py``), ``--iters`` iterations,
    tolerance off (``tol=0`` for scikit-learn and torchmeans, which still stop when no
    label changes; ``tol=-1`` for fastkmeans and fast_pytorch_kmeans;
    ``early_stop_threshold=-1`` for FAISS, which otherwise stops on an unchanged objective).
    fastkmeans takes no initial centers: it starts from its own random rows (column
    ``init``). Time per iteration = fit time / the library's own iteration count (a
    ``*`` marks a fit that stopped before ``--iters``), against the GEMM floor (best
    chunked float32 ``X @ C.T`` pass, ``bench_lloyd.gemm_floor``) and against torchmeans
    ``'lloyd'``. scikit-learn and torchmeans fits include a final assignment (their
    ``labels_``); the others return centers only. ``peak MiB``: resident-memory growth
    over a separate 2-iteration fit.
``default``
    Each library's own defaults to convergence, seeded with 0 where it has a seed
    (scikit-learn and torchmeans ``KMeans(n_clusters=k, random_state=0)``); total fit
    time and iteration count.

Quality, both modes: each library's returned centers are scored the same way, by an
exact float64 nearest-center assignment of every point (chunked): the inertia relative
to the best library's (in ``fixed`` mode, the best of those started from the same
centers), and the labels against scikit-learn ``'lloyd'``'s (fraction equal, adjusted
Rand index).

Shapes ``NxDxk``: float32 gaussian mixtures from ``bench_lloyd.make_data``, except
``300x2x4``, which is the classic ``make_blobs(n_samples=300, centers=4,
cluster_std=0.6, random_state=0)`` (as float32).

Peers are the ``bench`` extra (``pip install -e ".[bench]"``). Run with the OpenBLAS
overrides of this workplace unset, in that command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_suite.py --mode fixed --markdown
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_suite.py --mode default \
        --shapes 300x2x4,1000000x8x16 --markdown

``--quick`` is a smoke test (tiny shapes, both modes, under a minute); ``--mode default``
at the large shapes takes a long time on a small machine. Under each table, the CPUs that
other processes used meanwhile (from /proc/stat, steal time included): far above 0 on a
2-core machine, the numbers are not worth keeping (2-thread OpenMP code waits at every
barrier for a descheduled thread).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

import torchmeans
from bench_lloyd import SEED, PeakRSS, environment, gemm_floor, make_data, parse_shape

BLOBS_SHAPE = (300, 2, 4)
DEFAULT_SHAPES = ((1_000_000, 8, 16), (200_000, 128, 1024), (100_000, 768, 256),
                  (200_000, 32, 256), BLOBS_SHAPE)
QUICK_SHAPES = ((20_000, 8, 16), (5_000, 64, 128), (2_000, 256, 32), BLOBS_SHAPE)
TORCHMEANS_ALGORITHMS = ("lloyd", "elkan", "hamerly", "yinyang", "auto")
REFERENCE = "torchmeans lloyd"  # time ratios are against this peer
LABELS_REFERENCE = "sklearn lloyd"  # labels are compared with this peer's
EXACT_CHUNK_BYTES = 64 << 20
MODES = ("fixed", "default")
OPTIONAL = {"faiss": "faiss-cpu", "fastkmeans": "fastkmeans",
            "fast_pytorch_kmeans": "fast-pytorch-kmeans"}


# -- the peers ------------------------------------------------------------------------


@dataclass
class FitOut:
    """What one fit returns: its centers and the iterations it ran."""

    centers: np.ndarray
    n_iter: int


# fit(X, k, init, iters): init and iters None -> the library's own defaults to convergence.
FitFn = Callable[[np.ndarray, int, np.ndarray | None, int | None], FitOut]


@dataclass(frozen=True)
class Peer:
    """One library configuration of the suite."""

    name: str
    fit: FitFn
    init: str = "same"  # how it starts in ``fixed`` mode
    defaults: str = ""  # its defaults, as used in ``default`` mode
    missing: str | None = None  # why it cannot run (not installed)


def _sklearn(algorithm: str) -> FitFn:
    def fit(X: np.ndarray, k: int, init: np.ndarray | None, iters: int | None) -> FitOut:
        if init is None:
            model = SKLearnKMeans(n_clusters=k, random_state=SEED, algorithm=algorithm)
        else:
            model = SKLearnKMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, tol=0.0,
                                  algorithm=algorithm)
        model.fit(X)
        return FitOut(model.cluster_centers_, int(model.n_iter_))
    return fit


def _torchmeans(algorithm: str) -> FitFn:
    def fit(X: np.ndarray, k: int, init: np.ndarray | None, iters: int | None) -> FitOut:
        if init is None:
            model = torchmeans.KMeans(n_clusters=k, random_state=SEED, algorithm=algorithm,
                                      device="cpu")
        else:
            model = torchmeans.KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters,
                                      tol=0.0, algorithm=algorithm, device="cpu")
        model.fit(X)
        return FitOut(np.asarray(model.cluster_centers_), int(model.n_iter_))
    return fit


def _faiss(faiss: ModuleType) -> FitFn:
    def fit(X: np.ndarray, k: int, init: np.ndarray | None, iters: int | None) -> FitOut:
        n, d = X.shape
        if init is None:
            model = faiss.Kmeans(d, k, seed=SEED)
            model.train(X)
        else:
            # No subsampling (max_points_per_centroid), no "too few points" warning, and
            # no stop on an unchanged objective (early_stop_threshold < 0), where it has one.
            no_stop = ({"early_stop_threshold": -1.0}
                       if hasattr(faiss.ClusteringParameters(), "early_stop_threshold") else {})
            model = faiss.Kmeans(d, k, niter=iters, max_points_per_centroid=n,
                                 min_points_per_centroid=1, **no_stop)
            model.train(X, init_centroids=init)
        return FitOut(model.centroids, len(model.iteration_stats))
    return fit


def _fastkmeans(fastkmeans: ModuleType) -> FitFn:
    def fit(X: np.ndarray, k: int, init: np.ndarray | None, iters: int | None) -> FitOut:
        # No initial centers in its API: always its own random rows (seed=0 by default).
        options = {} if iters is None else {"niter": iters, "tol": -1.0}
        model = fastkmeans.FastKMeans(X.shape[1], k, gpu=False, verbose=True, **options)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # one "Iteration i/n ..." line each
            model.train(X)
        lines = printed.getvalue().splitlines()
        return FitOut(model.centroids, sum(line.startswith("Iteration ") for line in lines))
    return fit


def _fast_pytorch_kmeans(module: ModuleType) -> FitFn:
    def fit(X: np.ndarray, k: int, init: np.ndarray | None, iters: int | None) -> FitOut:
        options = {} if iters is None else {"max_iter": iters, "tol": -1.0}
        model = module.KMeans(n_clusters=k, mode="euclidean", verbose=1, **options)
        centroids = None if init is None else torch.from_numpy(init.copy())
        torch.manual_seed(SEED)  # its random init draws from the global generator
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # "used N iterations (...)"
            model.fit(torch.from_numpy(X), centroids)
        match = re.search(r"used (\d+) iterations", printed.getvalue())
        n_iter = int(match.group(1)) if match else -1
        return FitOut(model.centroids.numpy(), n_iter)
    return fit


def _import(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(name), None
    except Exception as err:
        return None, _reason(err)


def make_peers(modules: dict[str, tuple[ModuleType | None, str | None]]) -> list[Peer]:
    """All peers of the suite, in table order; a missing module gives a ``missing`` peer."""

    def optional(name: str, module: str, build: Callable[[ModuleType], FitFn],
                 **kwargs: str) -> Peer:
        found, why = modules[module]
        if found is None:
            return Peer(name, _unavailable, missing=why, **kwargs)
        return Peer(name, build(found), **kwargs)

    sk_defaults = "k-means++ (n_init='auto': 1), max_iter=300, tol=1e-4"
    peers = [
        Peer("sklearn lloyd", _sklearn("lloyd"), defaults=sk_defaults),
        Peer("sklearn elkan", _sklearn("elkan"), defaults=sk_defaults),
        optional("faiss", "faiss", _faiss,
                 defaults="random rows, niter=25, stops when the objective is unchanged; trains on "
                 "a random sample of 256 * k points when n > 256 * k "
                 "(max_points_per_centroid=256)"),
        optional("fastkmeans", "fastkmeans", _fastkmeans,
                 init="own (random rows, seed 0)",
                 defaults="random rows, niter=25, tol=1e-8 on the summed center shift"),
        optional("fast_pytorch_kmeans", "fast_pytorch_kmeans", _fast_pytorch_kmeans,
                 defaults="random rows (with replacement), max_iter=100, "
                 "tol=1e-4 on the squared center shift"),
    ]
    peers += [Peer(f"torchmeans {algorithm}", _torchmeans(algorithm),
                   defaults="k-means++ (n_init='auto': 1), max_iter=300, tol=1e-4")
              for algorithm in TORCHMEANS_ALGORITHMS]
    return peers


def _unavailable(*args: Any) -> FitOut:
    raise RuntimeError("not installed")


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 90 else text[:87] + "..."


# -- data and exact scoring -----------------------------------------------------------


def dataset(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Float32 data of one shape, and ``k`` distinct rows of it as initial centers."""
    n, _, k = shape
    if shape != BLOBS_SHAPE:
        return make_data(*shape)
    X, _ = make_blobs(n_samples=n, centers=k, cluster_std=0.6, random_state=0)
    X = X.astype(np.float32)
    rng = np.random.default_rng(SEED)
    return X, X[np.sort(rng.choice(n, size=k, replace=False))].copy()


def exact_assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest center of every row in float64 (first on ties), and the exact inertia."""
    C = torch.as_tensor(np.asarray(centers), dtype=torch.float64)
    k, d = C.shape
    c_sq = C.square().sum(dim=1)
    rows = max(1, EXACT_CHUNK_BYTES // (8 * (k + 2 * d)))
    Xt = torch.from_numpy(X)
    labels = torch.empty(X.shape[0], dtype=torch.int64)
    inertia = 0.0
    for start in range(0, X.shape[0], rows):
        x = Xt[start:start + rows].to(torch.float64)
        # |c|^2 - 2 x.c ranks the centers like |x - c|^2; the inertia uses the differences.
        nearest = torch.addmm(c_sq, x, C.T, alpha=-2.0).argmin(dim=1)
        labels[start:start + rows] = nearest
        inertia += float((x - C[nearest]).square().sum())
    return labels.numpy(), inertia


# -- measurement ----------------------------------------------------------------------


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """Wall clock, busy CPU seconds of the whole machine (steal included), and this process's."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(value) for value in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_cpus(before: tuple[float, float, float] | None) -> float | None:
    """Average CPUs used by everything but this process since ``before`` (noisy neighbours)."""
    after = _cpu_snapshot()
    if before is None or after is None or after[0] <= before[0]:
        return None
    wall, busy, own = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, (busy - own) / wall)


@dataclass
class Result:
    """Everything measured for one peer, one shape, one mode."""

    name: str
    init: str
    status: str | None = None  # None: ran; else why it is n/a
    times: list[float] = field(default_factory=list)  # seconds per fit
    n_iters: list[int] = field(default_factory=list)
    inertia: float | None = None  # exact, float64
    inertia_rel: float | None = None  # against the best peer's
    labels_equal: float | None = None  # fraction equal to LABELS_REFERENCE's
    ari: float | None = None
    peak: int | None = None  # bytes, fixed mode only

    @property
    def ok(self) -> bool:
        """Whether it ran."""
        return self.status is None and bool(self.times)

    @property
    def per_iter(self) -> float:
        """Median of fit time / iterations."""
        return statistics.median(t / max(1, i) for t, i in zip(self.times, self.n_iters,
                                                               strict=True))

    @property
    def total(self) -> float:
        """Median fit time."""
        return statistics.median(self.times)


@dataclass
class ShapeRun:
    """All results for one shape."""

    shape: tuple[int, int, int]
    floor: float
    floor_how: str
    modes: dict[str, list[Result]] = field(default_factory=dict)
    other_cpus: float | None = None  # CPUs used by other processes meanwhile, on average


def _fit_args(mode: str, init: np.ndarray, iters: int) -> tuple[np.ndarray | None, int | None]:
    return (init, iters) if mode == "fixed" else (None, None)


def run_mode(mode: str, peers: Sequence[Peer], X: np.ndarray, init: np.ndarray, *,
             iters: int, repeats: int, broken: dict[str, str], memory: bool,
             log: Callable[[str], None]) -> list[Result]:
    """Time every peer (alternating order between repeats), then score its centers."""
    k = init.shape[0]
    fit_init, fit_iters = _fit_args(mode, init, iters)
    results = {p.name: Result(p.name, p.init if mode == "fixed" else "own",
                              status=p.missing or broken.get(p.name)) for p in peers}
    last: dict[str, FitOut] = {}
    for repeat in range(repeats):
        for peer in peers if repeat % 2 == 0 else peers[::-1]:
            result = results[peer.name]
            if result.status is not None:
                continue
            gc.collect()
            try:
                start = time.perf_counter()
                out = peer.fit(X, k, fit_init, fit_iters)
                elapsed = time.perf_counter() - start
            except Exception as err:
                result.status = _reason(err)
                log(f"  {peer.name:<20} failed: {result.status}")
                continue
            result.times.append(elapsed)
            result.n_iters.append(out.n_iter)
            last[peer.name] = out
            log(f"  {mode:<7} {peer.name:<20} repeat {repeat}: {elapsed:8.3f} s, "
                f"{out.n_iter:3d} iterations, {1e3 * elapsed / max(1, out.n_iter):9.2f} ms/iter")
    _score(results, last, X)
    if memory:
        for peer in peers:
            result = results[peer.name]
            if result.ok:
                # The peak is reached in the first pass: 2 iterations are enough.
                try:
                    with PeakRSS() as peak:
                        peer.fit(X, k, init, 2)
                except Exception as err:
                    log(f"  {peer.name:<20} memory fit failed: {_reason(err)}")
                else:
                    result.peak = peak.peak_growth
    return list(results.values())


def _score(results: dict[str, Result], last: dict[str, FitOut], X: np.ndarray) -> None:
    """Exact inertia and labels of each peer's centers; the best inertia is the lowest of
    the peers that started from the same centers (of all of them in ``default`` mode)."""
    labels = {}
    for name, out in last.items():
        labels[name], results[name].inertia = exact_assign(X, out.centers)
    scored = [r for r in results.values() if r.inertia is not None and math.isfinite(r.inertia)]
    same_start = [r for r in scored if r.init == "same"]
    best = min((r.inertia for r in same_start or scored), default=None)
    reference = labels.get(LABELS_REFERENCE)
    for name, result in results.items():
        if name not in labels:
            continue
        if best is not None and best > 0:
            result.inertia_rel = (result.inertia - best) / best
        if reference is not None:
            result.labels_equal = float(np.mean(labels[name] == reference))
            result.ari = float(adjusted_rand_score(reference, labels[name]))


def bench_shape(shape: tuple[int, int, int], peers: Sequence[Peer], modes: Sequence[str], *,
                iters: int, repeats: int, memory: bool, log: Callable[[str], None]) -> ShapeRun:
    """Floor, warm-up, then every mode for one shape."""
    n, _, k = shape
    start = _cpu_snapshot()
    X, init = dataset(shape)
    floor, floor_how = gemm_floor(X, init, repeats=max(2, repeats))
    log(f"  GEMM floor {1e3 * floor:.3f} ms ({floor_how})")
    # Warm-up on a slice (thread pools, BLAS, allocators); a peer that fails here is n/a.
    warm = X[: min(n, 20 * k + 2000)]
    broken = {}
    for peer in peers:
        if peer.missing is None:
            try:
                peer.fit(warm, k, init, 2)
            except Exception as err:
                broken[peer.name] = _reason(err)
                log(f"  {peer.name:<20} n/a: {broken[peer.name]}")
    run = ShapeRun(shape, floor, floor_how)
    for mode in modes:
        run.modes[mode] = run_mode(mode, peers, X, init, iters=iters, repeats=repeats,
                                   broken=broken, memory=memory and mode == "fixed", log=log)
    run.other_cpus = other_cpus(start)
    log(f"  other processes used {_cpus(run.other_cpus)} CPUs meanwhile")
    return run


# -- reporting ------------------------------------------------------------------------


FIXED_COLUMNS = ("library", "init", "ms/iter", "x floor", "/ tm lloyd", "n_iter",
                 "inertia vs best", "labels = sk lloyd", "ARI vs sk lloyd", "peak MiB")
DEFAULT_COLUMNS = ("library", "total s", "/ tm lloyd", "n_iter", "ms/iter",
                   "inertia vs best", "ARI vs sk lloyd")


def _cpus(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.3f}" if ms < 1 else f"{ms:.2f}"


def _n_iter(result: Result, iters: int | None) -> str:
    low, high = min(result.n_iters), max(result.n_iters)
    text = str(low) if low == high else f"{low}-{high}"
    return text + "*" if iters is not None and low < iters else text


def _quality(result: Result) -> list[str]:
    rel = result.inertia_rel
    return [
        "n/a" if rel is None else "best" if rel == 0 else f"{rel:+.1e}",
        "n/a" if result.labels_equal is None else f"{100 * result.labels_equal:.2f}%",
        "n/a" if result.ari is None else f"{result.ari:.4f}",
    ]


def _reference(results: Sequence[Result]) -> Result | None:
    return next((r for r in results if r.name == REFERENCE and r.ok), None)


def fixed_rows(run: ShapeRun, iters: int) -> list[list[str]]:
    """Cells of the ``fixed`` table, the GEMM floor first."""
    results = run.modes["fixed"]
    ref = _reference(results)
    rows = [[f"GEMM floor ({run.floor_how})", "", _ms(run.floor), "1.0",
             f"{run.floor / ref.per_iter:.2f}" if ref else "n/a", "", "", "", "", ""]]
    for r in results:
        if not r.ok:
            rows.append([r.name, f"n/a ({r.status})"] + [""] * (len(FIXED_COLUMNS) - 2))
            continue
        inertia, equal, ari = _quality(r)
        if r.init != "same":
            equal = "-"  # other cluster numbers: only the ARI compares
        rows.append([r.name, r.init, _ms(r.per_iter), f"{r.per_iter / run.floor:.1f}",
                     f"**{r.per_iter / ref.per_iter:.2f}**" if ref else "n/a",
                     _n_iter(r, iters), inertia, equal, ari,
                     "n/a" if r.peak is None else f"{r.peak / 2**20:.0f}"])
    return rows


def default_rows(run: ShapeRun) -> list[list[str]]:
    """Cells of the ``default`` table, the GEMM floor (one pass) first."""
    results = run.modes["default"]
    ref = _reference(results)
    rows = [[f"GEMM floor ({run.floor_how})", "", "", "", _ms(run.floor), "", ""]]
    for r in results:
        if not r.ok:
            rows.append([r.name, f"n/a ({r.status})"] + [""] * (len(DEFAULT_COLUMNS) - 2))
            continue
        inertia, _, ari = _quality(r)
        rows.append([r.name, f"{r.total:.3f}", f"**{r.total / ref.total:.2f}**" if ref else "n/a",
                     _n_iter(r, None), _ms(r.per_iter), inertia, ari])
    return rows


def render(columns: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool) -> str:
    """A table as Markdown, or as aligned plain text."""
    if markdown:
        lines = ["| " + " | ".join(columns) + " |",
                 "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |"
                  for row in rows]
        return "\n".join(lines)
    table = [list(columns)] + [[cell.replace("**", "") for cell in row] for row in rows]

    def spans(row: list[str]) -> bool:  # an n/a row: its reason runs past the columns
        return row[1].startswith("n/a (") and not any(row[2:])

    widths = [max(len(row[i]) for row in table if i == 0 or not spans(row))
              for i in range(len(columns))]
    return "\n".join(
        f"{row[0].ljust(widths[0])}  {row[1]}" if spans(row) else
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in table)


def _shape_name(shape: tuple[int, int, int]) -> str:
    n, d, k = shape
    blobs = " (make_blobs)" if shape == BLOBS_SHAPE else ""
    return f"{n:_} x {d} x {k}{blobs}"


def report(runs: Sequence[ShapeRun], peers: Sequence[Peer], iters: int, *,
           markdown: bool) -> str:
    """All tables, one per shape and mode, with the notes they need."""
    out = []
    for run in runs:
        load = (f"Other processes used {_cpus(run.other_cpus)} CPUs on average during this "
                "shape (all modes).")
        if "fixed" in run.modes:
            out += [f"### fixed, {_shape_name(run.shape)}: {iters} iterations from the "
                    "same centers", "",
                    render(FIXED_COLUMNS, fixed_rows(run, iters), markdown=markdown), "",
                    load, ""]
        if "default" in run.modes:
            out += [f"### default, {_shape_name(run.shape)}: each library's defaults", "",
                    render(DEFAULT_COLUMNS, default_rows(run), markdown=markdown), "",
                    load, ""]
    if any("fixed" in run.modes for run in runs):
        out += [" ".join([
            "Fixed mode: ms/iter = fit time / the library's n_iter (median);",
            f"`*`: stopped before {iters} iterations (no label changed).",
            f"`/ tm lloyd`: against {REFERENCE}.",
            "`inertia vs best`: against the lowest of the libraries started from the same",
            "centers. `labels = sk lloyd`: only for those (cluster numbers differ otherwise;",
            "the ARI does not depend on them).",
        ]), ""]
    if any("default" in run.modes for run in runs):
        out += ["Defaults used:"] + [f"- {p.name}: {p.defaults}" for p in peers
                                     if not p.name.startswith("torchmeans ")]
        out += ["- torchmeans *: the same defaults as scikit-learn", ""]
    out.append("Quality: exact float64 assignment of every point to each library's returned "
               f"centers; labels compared with {LABELS_REFERENCE}'s.")
    return "\n".join(out)


def versions(modules: dict[str, tuple[ModuleType | None, str | None]]) -> str:
    """One line with the version (or the import error) of each optional peer."""
    parts = []
    for module, dist in OPTIONAL.items():
        found, why = modules[module]
        parts.append(f"{dist} {metadata.version(dist)}" if found else f"{dist}: {why}")
    return "peers: " + ", ".join(parts)


def to_json(runs: Sequence[ShapeRun], header: list[str], args: argparse.Namespace,
            command: str) -> dict[str, Any]:
    """All raw results as plain data."""
    def result(r: Result) -> dict[str, Any]:
        return {"name": r.name, "init": r.init, "status": r.status, "fit_seconds": r.times,
                "n_iter": r.n_iters, "inertia": r.inertia, "inertia_rel_best": r.inertia_rel,
                "labels_equal_sklearn_lloyd": r.labels_equal, "ari_sklearn_lloyd": r.ari,
                "peak_rss_growth_bytes": r.peak}
    return {
        "command": command,
        "environment": header,
        "args": {key: value for key, value in vars(args).items() if key != "json"},
        "shapes": [{"shape": list(run.shape), "gemm_floor_seconds": run.floor,
                    "gemm_floor_how": run.floor_how, "other_cpus": run.other_cpus,
                    **{mode: [result(r) for r in results]
                       for mode, results in run.modes.items()}} for run in runs],
    }


def parse_shapes(values: Sequence[str]) -> list[tuple[int, int, int]]:
    """``NxDxk`` shapes, separated by commas and/or spaces."""
    return [parse_shape(part) for value in values for part in value.split(",") if part]


def log(line: str) -> None:
    """Print a progress line now."""
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the environment, progress and the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ",".join("x".join(map(str, shape)) for shape in DEFAULT_SHAPES)
    parser.add_argument("--mode", choices=(*MODES, "both"), default=None,
                        help="fixed (default), default, or both (default with --quick)")
    parser.add_argument("--shapes", nargs="+", metavar="NxDxk",
                        help=f"comma- or space-separated shapes (default: {defaults})")
    parser.add_argument("--iters", type=int, default=20, help="iterations in fixed mode")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per library")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS fits")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, 5 iterations, 1 repeat, both modes (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write all raw results to PATH")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes) if args.shapes else None
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    shapes = shapes or list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    args.shapes = ["x".join(map(str, shape)) for shape in shapes]
    args.mode = args.mode or ("both" if args.quick else "fixed")
    if args.quick:
        args.iters, args.repeats = min(args.iters, 5), 1
    modes = MODES if args.mode == "both" else (args.mode,)

    modules = {name: _import(name) for name in OPTIONAL}
    peers = make_peers(modules)
    torch.set_num_threads(args.threads)
    if modules["faiss"][0] is not None:
        modules["faiss"][0].omp_set_num_threads(args.threads)
    command = " ".join([os.path.relpath(sys.executable) if sys.executable else "python",
                        *sys.argv])
    with threadpool_limits(limits=args.threads):
        header = [*environment(args.threads), versions(modules),
                  f"mode={args.mode}, iters={args.iters} (fixed mode), "
                  f"repeats={args.repeats} (median)"]
        for line in header:
            log(line)
        runs = []
        for shape in shapes:
            log(f"shape {_shape_name(shape)}")
            runs.append(bench_shape(shape, peers, modes, iters=args.iters,
                                    repeats=args.repeats, memory=not args.no_memory, log=log))
    print()
    print(report(runs, peers, args.iters, markdown=False))
    if args.markdown:
        print()
        print("\n".join([f"Command: `{command}`", "", *(f"- {line}" for line in header), "",
                         report(runs, peers, args.iters, markdown=True)]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(runs, header, args, command), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
