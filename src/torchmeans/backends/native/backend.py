"""The native backend: the compiled CPU kernel of :mod:`torchmeans.backends.native.kernel`.

Dense float32/float64 rows on the CPU. After torch's score GEMM the kernel fuses the first
minimum, the label update, the weighted sums, the inertia and the changed count into one
pass over a chunk; where it scores rows of this width itself (:meth:`NativeBackend.
own_scores`: up to 16 features with FMA, any width on AVX2/AVX-512 CPUs) no score block is
written at all, and the fit's final assignment, ``predict`` and the seeding's minima use
those scores too. Elkan's bounded passes and the blocked k-means++ steps have their own
kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from torchmeans.backends.base import LloydRun
from torchmeans.backends.native import kernel
from torchmeans.backends.torch import (
    TorchBackend,
    center_terms,
    chunk_scores_into,
    score_buffer,
    transposed_layout,
)
from torchmeans.data.base import Chunk, KMeansData

__all__ = ["NativeBackend", "direct_pass_rows"]


def direct_chunk_rows(rows: int, n_clusters: int, n_features: int) -> int:
    """Rows per chunk for the native kernel's own scores (no score block).

    ``rows`` was sized for a ``rows x k`` score block; without one, a chunk may hold
    as many rows as fill the same memory (``rows x d``), so every thread gets many
    blocks of rows even at large ``k``.
    """
    return rows * max(1, n_clusters // max(1, n_features))


DIRECT_VIEW_CHUNK_ROWS = 1 << 16
"""Fewest rows per call of the native kernel's own scores when chunks are views of the
rows (nothing is materialised per chunk): each call packs the centers and forks the
threads, a fixed cost that small chunks would pay many times per pass (benchmarks/RESULTS.md,
"Figures moved from docstrings")."""


def direct_pass_rows(data: KMeansData, rows: int, n_clusters: int) -> int:
    """Rows per chunk for a pass of the native kernel's own scores over ``data``.

    :func:`direct_chunk_rows`, and at least ``DIRECT_VIEW_CHUNK_ROWS`` where the chunks
    are views (no per-chunk copy: the pass needs no temporary of the rows).
    """
    rows = direct_chunk_rows(rows, n_clusters, data.n_features)
    return max(rows, DIRECT_VIEW_CHUNK_ROWS) if data.chunks_are_views else rows


SMALL_RUN_MAX_WORK = 1 << 18
"""Most ``n_samples * n_clusters * n_features`` for which :meth:`NativeBackend.lloyd_run`
runs a fit's Lloyd iterations in one call on one thread: below it a pass takes less than
the fixed costs of a call per pass (benchmarks/RESULTS.md, "Small fits")."""


SMALL_RUN_MAX_FEATURES = 4
"""Widest rows :meth:`NativeBackend.lloyd_run` takes: up to 4 features torch sums a
center's squares in order, as the kernel does (wider rows torch sums in vector lanes), so
the run scores with the norms of :meth:`NativeBackend.nearest` and its last labels are
``predict``'s (tests/test_small_fits.py checks torch's order)."""


SMALL_RUN_MAX_ITER = 1024
"""Most iterations one :meth:`NativeBackend.lloyd_run` call runs (its history buffer is
allocated for them): a run that needs more is handed to the engine's loop to go on."""


class NativeBackend(TorchBackend):
    """The compiled CPU kernel; torch's GEMM where the kernel does not score the rows itself."""

    name: ClassVar[str] = "native"

    def unsupported(self, data: KMeansData) -> str | None:  # noqa: D102
        if data.device.type != "cpu":
            return f"it runs on the CPU, the data is on {data.device}"
        if not data.dense_rows:
            return "it needs dense rows, the data is sparse"
        if data.acc_dtype not in (torch.float32, torch.float64):
            return f"it computes in float32 or float64, not {data.acc_dtype}"
        return kernel.unavailable_reason()

    def auto_applies(self, data: KMeansData, n_clusters: int, budget: int) -> bool:
        """Where it runs, in full precision, and its per-thread float64 accumulators fit ``budget``.

        Why: RESULTS.md, "Lloyd step vs scikit-learn" (native beats torch at every shape there).
        """
        if self.unsupported(data) is not None or data.low_dtype is not None:
            return False
        accumulator_bytes = torch.get_num_threads() * (
            n_clusters * data.n_features + n_clusters + 2) * 8
        return accumulator_bytes <= budget

    def algorithm_unsupported(self, algorithm: str, data: KMeansData) -> str | None:  # noqa: D102
        if algorithm == "lloyd" or (algorithm == "elkan" and self.runs_elkan(data)):
            return None
        return (f"backend='native' runs Lloyd passes (and Elkan's where the kernel scores rows "
                f"of this width); algorithm={algorithm!r} uses torch ops: pass "
                "algorithm='lloyd' or backend='auto'.")

    def own_scores(self, data: KMeansData) -> bool:  # noqa: D102
        return self.unsupported(data) is None and kernel.direct_applies(data.n_features)

    def runs_elkan(self, data: KMeansData) -> bool:  # noqa: D102
        return self.own_scores(data)

    def lloyd_pass(self, data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
                   incremental: bool = False) -> Tensor:
        """:meth:`TorchBackend.lloyd_pass` in the kernel (a float64 accumulator).

        Same scores as the torch path after its GEMM, so the same labels; the sums are
        added per thread in float64. Where :meth:`own_scores`, the kernel computes the
        scores itself (summed in a BLAS kernel's order).
        """
        n_clusters, n_features = centers.shape
        accumulators = kernel.new_accumulators(n_clusters, n_features)
        if self.own_scores(data):  # the centers' norms only: no transposed copy, no scores
            sq_norms = centers.square().sum(dim=1)  # as center_terms computes them
            for chunk in data.chunks(direct_pass_rows(data, rows, n_clusters)):
                kernel.lloyd_direct(chunk.x.contiguous(), centers, sq_norms, chunk.weight,
                                    labels[chunk.start : chunk.stop], accumulators,
                                    incremental=incremental)
            return accumulators.sum(dim=0)
        terms = center_terms(centers)
        buffer = score_buffer(data, centers, rows)
        transposed = transposed_layout(n_clusters)
        for chunk in data.chunks(rows):
            x, chunk_labels = chunk.x.contiguous(), labels[chunk.start : chunk.stop]
            scores = chunk_scores_into(data, chunk, terms, buffer)
            kernel.lloyd_step(scores, x, chunk.weight, chunk_labels, accumulators,
                              transposed=transposed, incremental=incremental)
        return accumulators.sum(dim=0)

    def lloyd_run(self, data: KMeansData, centers: Tensor, *, max_iter: int, tol: float,
                  inertia_offset: float) -> LloydRun | None:
        """:func:`~.kernel.lloyd_run` for small single-process data held as one tensor."""
        n_clusters, n_features = centers.shape
        if (data.n_samples * n_clusters * n_features > SMALL_RUN_MAX_WORK
                or n_features > SMALL_RUN_MAX_FEATURES or data.collective
                or not data.chunks_are_views or data.low_dtype is not None
                or not kernel.serial_run_applies(n_features)
                or self.unsupported(data) is not None):
            return None
        x = data.all_rows()
        if x.dtype != centers.dtype or not x.is_contiguous():
            return None
        return kernel.lloyd_run(x, None if data.unit_weights else data.sample_weight,
                                data.offset, centers, max_iter=min(max_iter, SMALL_RUN_MAX_ITER),
                                tol=tol, inertia_offset=inertia_offset)

    def greedy_seeding(self, x: Tensor, weight: Tensor | None, uniforms: Tensor,
                       n_trials: int) -> Tensor | None:
        """:func:`~.kernel.greedy_seeding` (contiguous float32/float64 rows on the CPU)."""
        if not (x.is_cpu and x.dtype in kernel.KERNEL_DTYPES and x.is_contiguous()
                and uniforms.dtype == torch.float64 and kernel.available()):
            return None
        return kernel.greedy_seeding(x, weight, uniforms.contiguous(), n_trials)

    def nearest_chunk_rows(self, data: KMeansData, rows: int, n_clusters: int) -> int:  # noqa: D102
        return direct_pass_rows(data, rows, n_clusters) if self.own_scores(data) else rows

    def nearest(self, data: KMeansData, centers: Tensor, rows: int, *,
                previous: Tensor | None = None) -> Iterator[tuple[Chunk, Tensor]]:
        """As :meth:`TorchBackend.nearest`; the kernel's own scores where :meth:`own_scores`."""
        if not self.own_scores(data):
            yield from super().nearest(data, centers, rows, previous=previous)
            return
        sq_norms = centers.square().sum(dim=1)  # as center_terms computes them
        for chunk in data.chunks(self.nearest_chunk_rows(data, rows, centers.shape[0])):
            labels = torch.empty(chunk.stop - chunk.start, dtype=torch.int64)
            kernel.lloyd_direct(chunk.x.contiguous(), centers, sq_norms, None, labels, None,
                                incremental=False)
            yield chunk, labels

    def minima(self, data: KMeansData, centers: Tensor, rows: int, *, with_labels: bool = False
               ) -> Iterator[tuple[Chunk, Tensor, Tensor | None]]:
        """As :meth:`TorchBackend.minima`; the kernel's own scores (chunks sized for rows)."""
        if not self.own_scores(data):
            yield from super().minima(data, centers, rows, with_labels=with_labels)
            return
        sq_norms = centers.square().sum(dim=1)  # as center_terms computes them
        for chunk in data.chunks(direct_pass_rows(data, rows, centers.shape[0])):
            n_rows = chunk.stop - chunk.start
            labels = torch.empty(n_rows, dtype=torch.int64)
            values = torch.empty(n_rows, dtype=data.acc_dtype)
            kernel.lloyd_direct(chunk.x.contiguous(), centers, sq_norms, None, labels, None,
                                incremental=False, best_out=values)
            yield chunk, values, labels if with_labels else None

    def sq_distances(self, data: KMeansData, chunk: Chunk, centers: Tensor,
                     labels: Tensor) -> Tensor:
        """One pass of the kernel, summed in float64, no ``(rows, d)`` temporary."""
        return kernel.sq_distances_to(chunk.x.contiguous(), centers, labels)

    def elkan_pass(self, chunk: Chunk, margin: Tensor, centers: Tensor, center_sq_norms: Tensor,
                   drift: Tensor, half_gaps: Tensor, upper: Tensor, lower: Tensor,
                   labels: Tensor) -> int:
        """Elkan's bounds, tests and the needed scores of a chunk (``tm_elkan_pass``)."""
        _, recomputed = kernel.elkan_pass(
            chunk.x.contiguous(), chunk.sq_norms.contiguous(), margin, centers,
            center_sq_norms, drift, half_gaps, upper, lower, labels)
        return recomputed

    def seeding_rows(self, x: Tensor, weight: Tensor | None) -> Any:
        """Hold the rows in the tiled kernel's layout (:class:`~.kernel.TiledRows`; AVX2/512)."""
        return kernel.TiledRows(x, weight) if kernel.tiled_available() else None
