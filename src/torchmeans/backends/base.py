"""The interface every backend implements: what the engine asks of the code that runs a pass.

A backend computes the engine's operations on a :class:`~torchmeans.data.KMeansData`: the
Lloyd pass (labels and the flat accumulator of :mod:`torchmeans.core.accumulate`; over many
problems at once, :meth:`Backend.batched_pass`), the
nearest centers (final assignment, ``predict``), the seeding's minima, exact distances, and
where it has them its own Elkan pass and seeding steps. It says whether it can run on given
data (:meth:`Backend.unsupported`, with the reason) and whether ``backend='auto'`` takes it
(:meth:`Backend.auto_applies`); the registry (:mod:`torchmeans.backends`) resolves
``'auto'`` once per fit.

Same results everywhere: a backend's labels equal the torch reference's wherever their
scores round alike. A backend that scores rows in its own summation order
(:meth:`Backend.own_scores`) also serves ``predict`` and the final assignment, so
``labels_`` equal ``predict(X)``; where its Lloyd pass may round near-ties unlike its
:meth:`Backend.nearest` (``exact_pass_labels = False``), a final :meth:`Backend.nearest`
pass gives the fit's labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

from torch import Tensor

from torchmeans.data.base import Chunk, KMeansData
from torchmeans.data.batched import ProblemBatch

__all__ = ["Backend", "LloydRun"]


class LloydRun(NamedTuple):
    """What :meth:`Backend.lloyd_run` returns: where a run of Lloyd's iterations ended.

    A run that meets a cluster without weight hands it back (``outcome`` 2) before
    counting that pass: the engine goes on from ``centers`` and ``labels`` (its empty-cluster
    relocation is scikit-learn's and lives in one place, :mod:`torchmeans.core.lloyd`).
    """

    centers: Tensor
    """``(k, d)`` the last centers: the final ones, or where a hand-back happened."""
    labels: Tensor
    """``(n,)`` int64 labels of the last counted pass (-1 before the first)."""
    history: Tensor
    """``(iterations, 4)`` float64: inertia, center shift, changed labels, 0 per iteration."""
    outcome: int
    """1 converged, 0 ``max_iter`` reached, 2 handed back at a cluster without weight."""
    labels_final: bool
    """Whether the last pass labelled the rows against the final centers (none moved)."""
    sq_norms: Tensor
    """``(k,)`` the norms the last pass scored with (the final centers' where final)."""
    distances: Tensor | None
    """Where the labels are final: the rows' exact squared distances to their centers, the
    numbers :meth:`Backend.sq_distances` gives (the inertia's terms); else None."""
    sums: Tensor
    """``(k, d)`` float64 per-cluster sums of the last counted pass (a checkpoint's)."""
    weights: Tensor
    """``(k,)`` float64 per-cluster weights of the last counted pass."""


class Backend:
    """Base class of the backends; subclasses override the operations they run differently."""

    name: ClassVar[str]
    """The ``backend=`` value that selects it."""

    exact_pass_labels: ClassVar[bool] = True
    """Whether :meth:`lloyd_pass`'s labels are always :meth:`nearest`'s."""

    def unsupported(self, data: KMeansData) -> str | None:
        """Why this backend cannot run on ``data`` (None when it can)."""
        raise NotImplementedError

    def auto_applies(self, data: KMeansData, n_clusters: int, budget: int) -> bool:
        """Whether ``backend='auto'`` takes this backend for ``data`` (it can run on it).

        ``budget`` is the fit's working-memory budget per chunk, in bytes.
        """
        return self.unsupported(data) is None

    def algorithm_unsupported(self, algorithm: str, data: KMeansData) -> str | None:
        """Why this backend does not run ``algorithm``'s passes on ``data`` (None when it does)."""
        return None

    def own_scores(self, data: KMeansData) -> bool:
        """Whether :meth:`nearest` scores ``data``'s rows itself rather than by torch's GEMM."""
        return False

    def runs_elkan(self, data: KMeansData) -> bool:
        """Whether Elkan's bounded passes run in this backend (:meth:`elkan_pass`)."""
        return False

    def nearest_chunk_rows(self, data: KMeansData, rows: int, n_clusters: int) -> int:
        """Rows per chunk of :meth:`nearest` (``rows``: what the budget allows for scores).

        Totals over an assignment (the inertia) are summed chunk by chunk in this chunking
        wherever they are computed, so they agree to the bit.
        """
        return rows

    # -- operations ---------------------------------------------------------------------

    def lloyd_pass(self, data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
                   incremental: bool = False) -> Tensor:
        """Assign every row (``labels`` updated in place); return the flat accumulator.

        See :class:`torchmeans.backends.torch.TorchBackend.lloyd_pass` for the meaning
        of ``incremental``; ``rows`` is the chunk size the budget allows for scores.
        """
        raise NotImplementedError

    def nearest(self, data: KMeansData, centers: Tensor, rows: int, *,
                previous: Tensor | None = None) -> Iterator[tuple[Chunk, Tensor]]:
        """Yield ``(chunk, labels)`` over ``data``: each row's nearest center (first on ties).

        ``previous`` (labels against nearby centers) may speed the search up; the result
        is the same without it.
        """
        raise NotImplementedError

    def minima(self, data: KMeansData, centers: Tensor, rows: int, *, with_labels: bool = False
               ) -> Iterator[tuple[Chunk, Tensor, Tensor | None]]:
        """Yield ``(chunk, values, labels)``: each row's least ``||c||^2 - 2 x.c`` (seeding)."""
        raise NotImplementedError

    def sq_distances(self, data: KMeansData, chunk: Chunk, centers: Tensor,
                     labels: Tensor) -> Tensor:
        """Exact ``||x_i - centers[labels_i]||^2`` of a chunk's rows."""
        raise NotImplementedError

    def batched_pass(self, problems: ProblemBatch, source: Tensor, centers: Tensor,
                     labels: Tensor, deterministic: bool) -> tuple[Tensor, Tensor]:
        """One Lloyd pass over many problems: their new labels and one accumulator row each.

        The problems are a leading dimension (:class:`~torchmeans.data.batched.ProblemBatch`;
        ``source`` picks each pass problem's rows); see :meth:`TorchBackend.batched_pass
        <torchmeans.backends.torch.TorchBackend.batched_pass>`.
        """
        raise NotImplementedError

    def elkan_pass(self, chunk: Chunk, margin: Tensor, centers: Tensor, center_sq_norms: Tensor,
                   drift: Tensor, half_gaps: Tensor, upper: Tensor, lower: Tensor,
                   labels: Tensor) -> int:
        """One Elkan pass over a chunk (bounds and labels in place); return rows recomputed."""
        raise NotImplementedError(f"backend={self.name!r} has no Elkan pass of its own")

    def lloyd_run(self, data: KMeansData, centers: Tensor, *, max_iter: int, tol: float,
                  inertia_offset: float) -> LloydRun | None:
        """All of a small problem's Lloyd iterations in one call, or None (not run).

        For problems whose per-call costs would outweigh the work of a pass (a few
        hundred rows): the iterations :func:`torchmeans.core.lloyd.lloyd` would run with
        this backend's passes, up to rounding (see :class:`LloydRun`). None: the engine
        runs the passes itself.
        """
        return None

    def greedy_seeding(self, x: Tensor, weight: Tensor | None, uniforms: Tensor,
                       n_trials: int) -> Tensor | None:
        """Row indices of greedy k-means++ on all of ``x`` in one call, or None (not run).

        What :func:`torchmeans.core.seeding.greedy_kmeans_plusplus_centers` computes with
        torch ops, for small problems; None: it runs them.
        """
        return None

    def seeding_rows(self, x: Tensor, weight: Tensor | None) -> Any:
        """Rows held for the blocked k-means++ steps in this backend's layout, or None.

        None: the seeding compares candidates with torch products (``_CandidateJudge`` in
        :mod:`torchmeans.core.seeding`).
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.name!r}>"
