r"""Lloyd iterations of torchmeans against scikit-learn, side by side in one process.

For each ``(n_samples, n_features, n_clusters)`` shape, both libraries fit the
same float32 data from the same initial centers (``n_init=1``, ``tol=0``,
``max_iter=--iters``), alternating, ``--repeats`` times; the median fit time
divided by ``n_iter_`` is the time per iteration. Every ratio compares numbers
measured in the same run: on a shared machine only ratios are meaningful.

The "GEMM floor" is the best time of one chunked pass of ``X @ C.T`` in float32
(torch and numpy, a few chunk sizes): no k-means iteration can beat it.

Benchmark with the OpenBLAS overrides of this workplace unset, in that command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_lloyd.py --markdown

``--quick`` runs small shapes as a smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from threadpoolctl import threadpool_info, threadpool_limits

import torchmeans

DEFAULT_SHAPES = ((1_000_000, 8, 16), (200_000, 128, 1024), (100_000, 768, 256))
QUICK_SHAPES = ((20_000, 8, 16), (5_000, 64, 128), (2_000, 256, 32))
GEMM_CHUNK_ROWS = (256, 1024, 4096, 16384)
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS")
SEED = 0


# -- data -----------------------------------------------------------------------------


def make_data(n_samples: int, n_features: int, n_clusters: int,
              seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Float32 gaussian mixture (make_blobs-like, ``2 * k`` blobs) and ``k`` initial rows.

    Samples are unit-variance gaussians around blob centres drawn from
    N(0, s^2) per feature with ``s = 4 * sqrt(8 / n_features)``, so the blobs
    overlap about as much at every dimension and Lloyd keeps moving labels for
    the whole ``--iters`` (well-separated high-dimensional blobs converge in a
    few iterations, and the fit's set-up would then dominate). The initial
    centers are ``k`` distinct rows of ``X`` chosen with a fixed seed, so both
    libraries start from the same point.
    """
    rng = np.random.default_rng(seed)
    n_blobs = 2 * n_clusters
    spread = 4.0 * math.sqrt(8.0 / n_features)
    blob_centers = rng.normal(0.0, spread, size=(n_blobs, n_features)).astype(np.float32)
    membership = rng.integers(n_blobs, size=n_samples)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    # Add the blob centres in slices so no float64 or second full-size temporary is made.
    step = 1 << 16
    for start in range(0, n_samples, step):
        X[start:start + step] += blob_centers[membership[start:start + step]]
    init = X[np.sort(rng.choice(n_samples, size=n_clusters, replace=False))].copy()
    return X, init


# -- measurement helpers ----------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Peak resident-set growth during a block, sampled from /proc every ``interval`` s.

    Approximate (sampling can miss a short spike; a heap that keeps freed memory
    hides reuse), but cheap and the same for both libraries. None where /proc is missing.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak_growth: int | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        if not os.path.exists("/proc/self/statm"):
            return self
        _trim_heap()
        self._base = self._peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not hasattr(self, "_thread"):
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_growth = self._peak - self._base


def gemm_floor(X: np.ndarray, init: np.ndarray, repeats: int) -> tuple[float, str]:
    """Best time of one chunked pass of ``X @ C.T`` (float32), and what achieved it."""
    Xt = torch.from_numpy(X)
    Ct = torch.from_numpy(init).T.contiguous()
    CtN = np.ascontiguousarray(init.T)
    best = (float("inf"), "")
    for rows in GEMM_CHUNK_ROWS:
        rows = min(rows, X.shape[0])
        out_t = torch.empty(rows, init.shape[0], dtype=torch.float32)
        out_n = np.empty((rows, init.shape[0]), dtype=np.float32)

        def torch_pass(rows: int = rows, out: torch.Tensor = out_t) -> None:
            for start in range(0, X.shape[0], rows):
                x = Xt[start:start + rows]
                torch.mm(x, Ct, out=out[: x.shape[0]])

        def numpy_pass(rows: int = rows, out: np.ndarray = out_n) -> None:
            for start in range(0, X.shape[0], rows):
                x = X[start:start + rows]
                np.matmul(x, CtN, out=out[: x.shape[0]])

        for name, run in (("torch", torch_pass), ("numpy", numpy_pass)):
            run()  # warm-up: first touch of the output buffer
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
                if elapsed < best[0]:
                    best = (elapsed, f"{name}, {rows} rows")
    return best


# -- one shape ------------------------------------------------------------------------


@dataclass
class Row:
    """Everything measured for one shape."""

    shape: tuple[int, int, int]
    sk_iter: float
    tm_iter: float
    sk_n_iter: int
    tm_n_iter: int
    sk_inertia: float
    tm_inertia: float
    labels_equal: float
    floor: float
    floor_how: str
    sk_times: list[float]
    tm_times: list[float]
    torch_iter: float = float("nan")
    """torchmeans with ``backend='torch'`` (the pure-torch reference path)."""
    sk_peak: int | None = None
    tm_peak: int | None = None

    @property
    def ratio(self) -> float:
        """torchmeans / scikit-learn time per iteration (lower is better)."""
        return self.tm_iter / self.sk_iter

    @property
    def inertia_rel_diff(self) -> float:
        """``(torchmeans - sklearn) / sklearn`` final inertia."""
        return (self.tm_inertia - self.sk_inertia) / self.sk_inertia


def _estimators(k: int, init: np.ndarray, iters: int,
                chunk_bytes: int | None) -> dict[str, Callable[[], Any]]:
    common = {"n_clusters": k, "init": init, "n_init": 1, "max_iter": iters, "tol": 0.0,
              "algorithm": "lloyd"}
    return {
        "sklearn": lambda: SKLearnKMeans(**common),
        "torchmeans": lambda: torchmeans.KMeans(**common, chunk_bytes=chunk_bytes),
        "torch-backend": lambda: torchmeans.KMeans(**common, chunk_bytes=chunk_bytes,
                                                   backend="torch"),
    }


def _timed_fit(make: Callable[[], Any], X: np.ndarray) -> tuple[Any, float]:
    model = make()
    start = time.perf_counter()
    model.fit(X)
    return model, time.perf_counter() - start


def bench_shape(shape: tuple[int, int, int], *, iters: int, repeats: int,
                chunk_bytes: int | None, memory: bool, log: Callable[[str], None]) -> Row:
    """Time both libraries on one shape (alternating), and the GEMM floor."""
    n, d, k = shape
    X, init = make_data(n, d, k)
    makers = _estimators(k, init, iters, chunk_bytes)
    # Warm-up on a slice: thread pools, BLAS and allocator first touches.
    warm = X[: min(n, 20 * k + 2000)]
    for make_warm in _estimators(k, init, 2, chunk_bytes).values():
        make_warm().fit(warm)

    times: dict[str, list[float]] = {name: [] for name in makers}
    models: dict[str, Any] = {}
    for repeat in range(repeats):
        order = list(makers) if repeat % 2 == 0 else list(reversed(makers))
        for name in order:
            model, elapsed = _timed_fit(makers[name], X)
            times[name].append(elapsed / model.n_iter_)
            models[name] = model
            log(f"  {name:<10} repeat {repeat}: {elapsed:7.3f} s, {model.n_iter_} iterations, "
                f"{1e3 * elapsed / model.n_iter_:8.2f} ms/iter")
    sk, tm = models["sklearn"], models["torchmeans"]
    floor, floor_how = gemm_floor(X, init, repeats=max(2, repeats))
    row = Row(
        shape=shape,
        sk_iter=statistics.median(times["sklearn"]),
        tm_iter=statistics.median(times["torchmeans"]),
        sk_n_iter=int(sk.n_iter_),
        tm_n_iter=int(tm.n_iter_),
        sk_inertia=float(sk.inertia_),
        tm_inertia=float(tm.inertia_),
        labels_equal=float(np.mean(np.asarray(sk.labels_) == np.asarray(tm.labels_))),
        floor=floor,
        floor_how=floor_how,
        sk_times=times["sklearn"],
        tm_times=times["torchmeans"],
        torch_iter=statistics.median(times["torch-backend"]),
    )
    del models, sk, tm
    if memory:
        # Separate short fits (2 iterations): the peak is reached in the first pass.
        peaks = {}
        for name, make in _estimators(k, init, 2, chunk_bytes).items():
            with PeakRSS() as peak:
                make().fit(X)
            peaks[name] = peak.peak_growth
        row.sk_peak, row.tm_peak = peaks["sklearn"], peaks["torchmeans"]
    return row


# -- reporting ------------------------------------------------------------------------


def environment(threads: int) -> list[str]:
    """Lines describing versions, threads and BLAS settings of this run."""
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"torchmeans {torchmeans.__version__}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}",
        f"threads: requested {threads}, torch.get_num_threads() = {torch.get_num_threads()}",
    ]
    for entry in threadpool_info():
        arch = entry.get("architecture")
        lines.append(
            f"threadpoolctl: {entry['internal_api']} {entry.get('version') or ''} "
            f"({entry['prefix']}{', ' + arch if arch else ''}), "
            f"num_threads={entry['num_threads']}"
        )
    env = ", ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in BLAS_ENV)
    lines.append(f"env: {env}")
    return lines


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _shape_name(shape: tuple[int, int, int]) -> str:
    n, d, k = shape
    return f"{n:_} x {d} x {k}"


COLUMNS = ("N x D x k", "sklearn ms/iter", "torchmeans ms/iter", "tm/sk",
           "backend='torch'/sk", "GEMM floor ms",
           "sk/floor", "tm/floor", "n_iter sk/tm", "inertia rel diff", "labels equal",
           "peak MiB sk/tm")


def _cells(row: Row) -> list[str]:
    return [
        _shape_name(row.shape),
        _ms(row.sk_iter),
        _ms(row.tm_iter),
        f"**{row.ratio:.2f}**",
        f"{row.torch_iter / row.sk_iter:.2f}",
        _ms(row.floor),
        f"{row.sk_iter / row.floor:.2f}",
        f"{row.tm_iter / row.floor:.2f}",
        f"{row.sk_n_iter}/{row.tm_n_iter}",
        f"{row.inertia_rel_diff:+.1e}",
        f"{100 * row.labels_equal:.2f}%",
        f"{_mib(row.sk_peak)}/{_mib(row.tm_peak)}",
    ]


def markdown(rows: list[Row], header: list[str], command: str) -> str:
    """The results table (with the environment) as Markdown."""
    lines = [f"Command: `{command}`", ""]
    lines += [f"- {line}" for line in header]
    lines += ["", "| " + " | ".join(COLUMNS) + " |",
              "|" + "|".join("---:" if i else "---" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += ["", "GEMM floor achieved by: "
              + "; ".join(f"{_shape_name(r.shape)}: {r.floor_how}" for r in rows)]
    return "\n".join(lines)


def plain(rows: list[Row]) -> str:
    """The results table as aligned text."""
    table = [list(COLUMNS)] + [[c.replace("**", "") for c in _cells(row)] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                     for r in table)


def parse_shape(text: str) -> tuple[int, int, int]:
    """Parse ``NxDxk`` (underscores allowed), e.g. ``1_000_000x8x16``."""
    try:
        n, d, k = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        message = f"shape must look like 1000000x8x16, got {text!r}"
        raise argparse.ArgumentTypeError(message) from err
    return n, d, k


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the environment, progress and the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = " ".join("x".join(map(str, shape)) for shape in DEFAULT_SHAPES)
    parser.add_argument("--shapes", nargs="+", type=parse_shape, metavar="NxDxk",
                        help=f"shapes to run (default: {defaults})")
    parser.add_argument("--iters", type=int, default=20, help="max_iter of each fit")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per library")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both libraries (torch and OpenMP/BLAS)")
    parser.add_argument("--chunk-bytes", type=int, default=None,
                        help="torchmeans chunk_bytes (default: the library's)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-RSS fits")
    parser.add_argument("--quick", action="store_true",
                        help="small shapes, 5 iterations, 1 repeat (smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    if args.quick:
        args.iters, args.repeats = min(args.iters, 5), 1

    torch.set_num_threads(args.threads)
    command = " ".join([os.path.relpath(sys.executable) if sys.executable else "python",
                        *sys.argv])
    with threadpool_limits(limits=args.threads):
        header = environment(args.threads)
        header.append(f"iters={args.iters}, repeats={args.repeats} (median), "
                      f"chunk_bytes={args.chunk_bytes or 'default'}")
        for line in header:
            print(line, flush=True)
        rows = []
        for shape in shapes:
            print(f"shape {_shape_name(shape)}", flush=True)
            rows.append(bench_shape(shape, iters=args.iters, repeats=args.repeats,
                                    chunk_bytes=args.chunk_bytes, memory=not args.no_memory,
                                    log=lambda line: print(line, flush=True)))
    print()
    print(plain(rows))
    if args.markdown:
        print()
        print(markdown(rows, header, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
