"""Candidate rewrites of ``core.lloyd.accumulate``, timed end to end against scikit-learn.

Scratch code for issue 2: each variant has the signature of ``accumulate`` and is
monkeypatched into ``torchmeans.core.lloyd`` for the fits it times (src/ is untouched). For
each shape, scikit-learn and every ``variant@budget`` fit the same data from the same
centers, alternating, ``--repeats`` times; the table gives the median time per
iteration, its ratio to scikit-learn's, the final inertia against scikit-learn's and the
fraction of identical labels.

Variants:

``current``
    the library as it is.
``tuned``
    pure torch: the ``(rows, k)`` scores go into one buffer reused across chunks
    (``addmm(out=)``; a fresh tensor above glibc's 32 MiB mmap threshold costs page
    faults on every chunk), ``-2`` is folded into the centers once per pass, and unit
    sample weights skip the ``weight * x`` temporary (``bincount`` counts, ``sum``
    instead of ``partial @ weight``).
``smallk``
    ``tuned``, plus for ``k <= 32`` and unit weights: scores transposed ``(k, rows)``,
    nearest value by ``amin(dim=0)`` (vectorised, unlike ``min``'s index search), label =
    first hit, sums by a one-hot GEMM of the hit mask; a chunk with a tie falls back to
    ``min``/``index_add_``, so the result is the same.
``incremental``
    timing prototype: ``tuned``, but only rows whose label changed touch the sums
    (float64 running totals). Ignores empty-cluster relocation: not a drop-in.
``fused``
    prototype C++ kernel (``torch.utils.cpp_extension.load_inline``, needs a compiler and
    ninja): after the torch GEMM, one ``at::parallel_for`` pass does argmin, label
    compare/copy and the weighted sums/weights/inertia into per-thread accumulators.

Run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python benchmarks/lloyd_variants.py --configs current@64M tuned@4M fused@4M
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans
from threadpoolctl import threadpool_limits
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torchmeans
import torchmeans.core.lloyd as lloyd_module
from bench_lloyd import DEFAULT_SHAPES, make_data, parse_shape
from profile_lloyd_step import parse_bytes
from torchmeans.core.lloyd import _split
from torchmeans.data import KMeansData

Accumulate = Callable[[KMeansData, Tensor, Tensor, int], Tensor]

CURRENT: Accumulate = lloyd_module.accumulate


def _unit_weights(data: KMeansData) -> bool:
    # The library would compute this once in DenseData (or check_sample_weight): None -> ones.
    cached = getattr(data, "_bench_unit_weights", None)
    if cached is None:
        cached = bool((data.sample_weight == 1).all())
        data._bench_unit_weights = cached  # type: ignore[attr-defined]
    return cached


def tuned(data: KMeansData, centers: Tensor, labels: Tensor, rows: int) -> Tensor:
    """Reused scores buffer, ``-2`` folded into the centers, unit-weight fast path."""
    n_clusters, n_features = centers.shape
    flat = torch.zeros(n_clusters * n_features + n_clusters + 2, dtype=centers.dtype,
                       device=centers.device)
    acc = _split(flat, n_clusters, n_features)
    centers_t = centers.mul(-2).T.contiguous()
    sq_norms = centers.square().sum(dim=1)
    buffer = torch.empty(min(rows, data.n_samples), n_clusters, dtype=centers.dtype,
                         device=centers.device)
    unit = _unit_weights(data)
    for chunk in data.chunks(rows):
        scores = torch.addmm(sq_norms, chunk.x, centers_t, out=buffer[: chunk.stop - chunk.start])
        partial, chunk_labels = scores.min(dim=1)
        old = labels[chunk.start : chunk.stop]
        acc.n_changed.add_((old != chunk_labels).sum())
        old.copy_(chunk_labels)
        if unit:
            acc.sums.index_add_(0, chunk_labels, chunk.x)
            acc.weights.add_(torch.bincount(chunk_labels, minlength=n_clusters))
            acc.partial_inertia.add_(partial.sum())
        else:
            acc.sums.index_add_(0, chunk_labels, chunk.x * chunk.weight[:, None])
            acc.weights.index_add_(0, chunk_labels, chunk.weight)
            acc.partial_inertia.add_(partial @ chunk.weight)
    return flat


SMALL_K = 32


def smallk(data: KMeansData, centers: Tensor, labels: Tensor, rows: int) -> Tensor:
    """``tuned``; for small k, transposed scores + ``amin`` + one-hot GEMM for the sums."""
    n_clusters, n_features = centers.shape
    if n_clusters > SMALL_K or not _unit_weights(data):
        return tuned(data, centers, labels, rows)
    flat = torch.zeros(n_clusters * n_features + n_clusters + 2, dtype=centers.dtype)
    acc = _split(flat, n_clusters, n_features)
    centers_m2 = centers.mul(-2)
    sq_norms = centers.square().sum(dim=1)[:, None]
    descending = torch.arange(n_clusters, 0, -1, dtype=torch.uint8)[:, None]
    buffer = torch.empty(n_clusters, min(rows, data.n_samples), dtype=centers.dtype)
    for chunk in data.chunks(rows):
        n = chunk.stop - chunk.start
        scores = torch.addmm(sq_norms, centers_m2, chunk.x.T, out=buffer[:, :n])  # (k, rows)
        partial = scores.amin(dim=0)
        hits = scores == partial
        onehot = hits.to(centers.dtype)
        counts = onehot.sum(dim=1)
        if int(counts.sum()) == n:  # no ties: each row has exactly one hit
            chunk_labels = n_clusters - hits.to(torch.uint8).mul_(descending).amax(dim=0).long()
            acc.sums.addmm_(onehot, chunk.x)
            acc.weights.add_(counts)
        else:
            partial, chunk_labels = scores.min(dim=0)
            acc.sums.index_add_(0, chunk_labels, chunk.x)
            acc.weights.add_(torch.bincount(chunk_labels, minlength=n_clusters))
        acc.partial_inertia.add_(partial.sum())
        old = labels[chunk.start : chunk.stop]
        acc.n_changed.add_((old != chunk_labels).sum())
        old.copy_(chunk_labels)
    return flat


_RUNNING: dict[int, tuple[Tensor, Tensor]] = {}


def incremental(data: KMeansData, centers: Tensor, labels: Tensor, rows: int) -> Tensor:
    """Timing prototype: sums updated from the rows whose label changed only."""
    n_clusters, n_features = centers.shape
    if not _unit_weights(data):
        raise NotImplementedError("the incremental prototype assumes unit weights")
    first = bool(labels[0] < 0)
    if first:
        _RUNNING.clear()
        _RUNNING[id(labels)] = (torch.zeros(n_clusters, n_features, dtype=torch.float64),
                                torch.zeros(n_clusters, dtype=torch.float64))
    sums, weights = _RUNNING[id(labels)]
    flat = torch.zeros(n_clusters * n_features + n_clusters + 2, dtype=centers.dtype)
    acc = _split(flat, n_clusters, n_features)
    centers_t = centers.mul(-2).T.contiguous()
    sq_norms = centers.square().sum(dim=1)
    buffer = torch.empty(min(rows, data.n_samples), n_clusters, dtype=centers.dtype)
    for chunk in data.chunks(rows):
        scores = torch.addmm(sq_norms, chunk.x, centers_t, out=buffer[: chunk.stop - chunk.start])
        partial, chunk_labels = scores.min(dim=1)
        acc.partial_inertia.add_(partial.sum())
        old = labels[chunk.start : chunk.stop]
        if first:
            sums.index_add_(0, chunk_labels, chunk.x.double())
            weights.add_(torch.bincount(chunk_labels, minlength=n_clusters))
            acc.n_changed.add_(chunk.stop - chunk.start)
        else:
            moved = (old != chunk_labels).nonzero().squeeze(1)
            if moved.numel():
                x = chunk.x.index_select(0, moved).double()
                new_labels, old_labels = chunk_labels[moved], old[moved]
                sums.index_add_(0, new_labels, x).index_add_(0, old_labels, x, alpha=-1)
                weights.add_(torch.bincount(new_labels, minlength=n_clusters))
                weights.sub_(torch.bincount(old_labels, minlength=n_clusters))
                acc.n_changed.add_(moved.numel())
        old.copy_(chunk_labels)
    acc.sums.copy_(sums)
    acc.weights.copy_(weights)
    return flat


FUSED_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>

// scores (rows, k) f32, x (rows, d) f32, weight (rows,) f32 or empty, labels (rows,) i64
// in/out; local (T, k*d + k + 2) f32: thread t adds sums | weights | inertia | changed.
void argmin_accumulate(torch::Tensor scores, torch::Tensor x, torch::Tensor weight,
                       torch::Tensor labels, torch::Tensor local) {
  const int64_t rows = scores.size(0), k = scores.size(1), d = x.size(1);
  const float* S = scores.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  const float* W = weight.numel() ? weight.data_ptr<float>() : nullptr;
  int64_t* L = labels.data_ptr<int64_t>();
  float* A = local.data_ptr<float>();
  const int64_t width = local.size(1), n_local = local.size(0);
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    int64_t t = at::get_thread_num();
    if (t >= n_local) t = 0;
    float* sums = A + t * width;
    float* weights = sums + k * d;
    double inertia = 0;
    int64_t changed = 0;
    for (int64_t i = begin; i < end; ++i) {
      const float* s = S + i * k;
      float best = s[0];
      int64_t label = 0;
      if (k <= 64) {  // short rows: one branchy pass
        for (int64_t j = 1; j < k; ++j) if (s[j] < best) { best = s[j]; label = j; }
      } else {  // long rows: vectorised min, then the first index holding it
        #pragma omp simd reduction(min:best)
        for (int64_t j = 0; j < k; ++j) best = s[j] < best ? s[j] : best;
        while (label < k - 1 && !(s[label] == best)) ++label;
      }
      const float w = W ? W[i] : 1.f;
      changed += (L[i] != label);
      L[i] = label;
      float* dst = sums + label * d;
      const float* xi = X + i * d;
      #pragma omp simd
      for (int64_t f = 0; f < d; ++f) dst[f] += w * xi[f];
      weights[label] += w;
      inertia += (double)w * best;
    }
    weights[k] += (float)inertia;
    weights[k + 1] += (float)changed;
  });
}
"""

_fused_module = None


def _fused_kernel() -> Callable[..., None]:
    global _fused_module
    if _fused_module is None:
        from torch.utils.cpp_extension import load_inline

        _fused_module = load_inline(
            "torchmeans_bench_fused_v2", FUSED_SOURCE, functions=["argmin_accumulate"],
            extra_cflags=["-O3", "-march=native", "-fopenmp"], verbose=False,
        )
    return _fused_module.argmin_accumulate


def fused(data: KMeansData, centers: Tensor, labels: Tensor, rows: int) -> Tensor:
    """Torch GEMM into a reused buffer, then one fused C++ argmin + accumulate pass."""
    kernel = _fused_kernel()
    n_clusters, n_features = centers.shape
    local = torch.zeros(torch.get_num_threads(), n_clusters * n_features + n_clusters + 2,
                        dtype=centers.dtype)
    centers_t = centers.mul(-2).T.contiguous()
    sq_norms = centers.square().sum(dim=1)
    buffer = torch.empty(min(rows, data.n_samples), n_clusters, dtype=centers.dtype)
    no_weight = torch.empty(0, dtype=centers.dtype)
    unit = _unit_weights(data)
    for chunk in data.chunks(rows):
        scores = torch.addmm(sq_norms, chunk.x, centers_t, out=buffer[: chunk.stop - chunk.start])
        kernel(scores, chunk.x, no_weight if unit else chunk.weight,
               labels[chunk.start : chunk.stop], local)
    return local.sum(dim=0)


VARIANTS: dict[str, Accumulate] = {
    "current": CURRENT, "tuned": tuned, "smallk": smallk, "incremental": incremental,
    "fused": fused,
}


def _fit(X: np.ndarray, init: np.ndarray, iters: int, variant: str | None,
         budget: int | None) -> tuple[float, object]:
    k = init.shape[0]
    common = {"n_clusters": k, "init": init, "n_init": 1, "max_iter": iters, "tol": 0.0}
    if variant is None:
        model = SKLearnKMeans(**common, algorithm="lloyd")
    else:
        lloyd_module.accumulate = VARIANTS[variant]
        model = torchmeans.KMeans(**common, chunk_bytes=budget)
    try:
        start = time.perf_counter()
        model.fit(X)
        elapsed = time.perf_counter() - start
    finally:
        lloyd_module.accumulate = CURRENT
    return elapsed / model.n_iter_, model


def main(argv: list[str] | None = None) -> int:
    """Time each ``variant@budget`` against scikit-learn on each shape."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=list(DEFAULT_SHAPES))
    parser.add_argument("--configs", nargs="+",
                        default=["current@64M", "current@4M", "tuned@1M", "tuned@4M",
                                 "tuned@16M", "smallk@4M", "fused@4M", "fused@16M"],
                        help="variant@budget, variants: " + ", ".join(VARIANTS))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configs = [(name, parse_bytes(budget)) for name, budget in
               (config.split("@") for config in args.configs)]
    if any(name == "fused" for name, _ in configs):
        try:
            _fused_kernel()
        except Exception as error:  # no compiler or no ninja: skip the variant
            print(f"fused variant skipped: {error}", flush=True)
            configs = [c for c in configs if c[0] != "fused"]
    torch.set_num_threads(torch.get_num_threads())
    with threadpool_limits(limits=torch.get_num_threads()):
        for shape in args.shapes:
            n, d, k = shape
            X, init = make_data(n, d, k)
            active = [c for c in configs if not (c[0] == "smallk" and k > SMALL_K)]
            warm = X[: min(n, 20 * k + 2000)]
            _fit(warm, init, 2, None, None)
            for name, budget in active:
                _fit(warm, init, 2, name, budget)
            times: dict[tuple[str, int] | None, list[float]] = {None: []}
            times.update({c: [] for c in active})
            models: dict[tuple[str, int] | None, object] = {}
            for repeat in range(args.repeats):
                order = [None, *active]
                for config in order if repeat % 2 == 0 else order[::-1]:
                    name, budget = config if config else (None, None)
                    per_iter, model = _fit(X, init, args.iters, name, budget)
                    times[config].append(per_iter)
                    models[config] = model
            sk = statistics.median(times[None])
            reference = models[None]
            print(f"shape {n} x {d} x {k}: scikit-learn {1e3 * sk:.1f} ms/iter "
                  f"({reference.n_iter_} iterations)", flush=True)
            for config in active:
                model = models[config]
                tm = statistics.median(times[config])
                rel = (model.inertia_ - reference.inertia_) / reference.inertia_
                equal = float(np.mean(model.labels_ == reference.labels_))
                print(f"  {config[0]:>11}@{config[1] >> 10:>5} KiB: {1e3 * tm:8.1f} ms/iter, "
                      f"ratio {tm / sk:5.2f}, n_iter {model.n_iter_}, inertia {rel:+.1e}, "
                      f"labels equal {100 * equal:.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
