"""Exact k-means that skips distance work with bounds: Hamerly, Yinyang and Elkan.

Late Lloyd iterations move few samples, yet Lloyd scores every sample against every
center. Here each sample keeps an upper bound ``u`` on the distance to its center and a
lower bound ``l_g`` per *group* of other centers; when centers move by ``delta_j`` the
triangle inequality keeps them valid after ``u += delta[label]`` and ``l_g -= max_{j in g}
delta_j``. A sample whose ``u`` is below every ``l_g`` (or below half the distance from its
center to the nearest other, Hamerly's test) keeps its label at no cost; the others
tighten ``u`` to their exact distance, and those still failing are rescored in one GEMM
over the gathered block. With a backend that has its own Elkan pass
(:meth:`~torchmeans.backends.base.Backend.runs_elkan`: the native kernel) Elkan instead
tests center by center and scores only the centers whose own bound fails, as that
backend's Lloyd pass scores them.

One engine, three variants that differ only in the groups: ``'hamerly'`` one (Hamerly
2010); ``'yinyang'`` about ``k / 10`` from a k-means of the initial centers (Ding et al.
2015, global filter), capped so the bounds stay small next to the data; ``'elkan'`` one
per center (Elkan 2003: ``N x k`` memory, as scikit-learn's).

**Same labels as Lloyd.** The bounds hold for exact distances and the skip test keeps a
margin ``2 E`` covering the rounding of Lloyd's scores (``E = gamma (R + ||x||)^2``,
``gamma`` a worst-case dot-product error bound for ``n_features`` terms, ``R`` the largest
center norm), so a skipped sample is one whose label Lloyd's scores could not change;
rescored samples use Lloyd's score primitive. Updates, relocation and convergence are
Lloyd's own: :func:`torchmeans.core.lloyd.lloyd` runs this pass in place of its full one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchmeans.backends import get_backend
from torchmeans.backends.base import Backend
from torchmeans.backends.torch import (
    SMALL_K,
    CenterTerms,
    center_terms,
    first_minimum,
    recheck_previous,
    score_buffer,
)
from torchmeans.core.accumulate import new_accumulator
from torchmeans.core.assign import chunk_budget, inertia_of
from torchmeans.data.base import Chunk, KMeansData

__all__ = ["BoundedPass", "center_groups"]

FILTER_CHUNK_FACTOR = 16
"""A bounded pass filters rows in chunks this many times the GEMM's (when chunks are
views): fewer, larger per-chunk steps once few rows fail (RESULTS.md, "Converged fits from
the same init")."""

YINYANG_GROUP_SIZE = 10
"""Centers per group for ``'yinyang'`` (the paper's ``t = k / 10``)."""


def center_groups(centers: Tensor, algorithm: str, n_features: int) -> Tensor:
    """Return the group of each center, ``(k,)`` int64, for a bound-based algorithm.

    ``'yinyang'`` groups the initial centers by a few Lloyd iterations over them
    (deterministic: seeded with evenly spaced centers), with at most
    ``max(1, n_features // 2)`` groups so the ``N x groups`` bounds stay below
    half the size of the data.
    """
    k = centers.shape[0]
    device = centers.device
    if algorithm == "elkan":
        return torch.arange(k, device=device)
    n_groups = min(k // YINYANG_GROUP_SIZE, max(1, n_features // 2))
    if algorithm == "hamerly" or n_groups <= 1:
        return torch.zeros(k, dtype=torch.int64, device=device)
    means = centers[torch.linspace(0, k - 1, n_groups, device=device).round().long()]
    groups = torch.zeros(k, dtype=torch.int64, device=device)
    for _ in range(5):
        groups = torch.cdist(centers, means).argmin(dim=1)
        counts = torch.bincount(groups, minlength=n_groups).to(centers.dtype)
        sums = torch.zeros_like(means).index_add_(0, groups, centers)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], means)
    # Renumber the groups that are used, in order of first appearance: 0..G-1.
    used = torch.bincount(groups, minlength=n_groups) > 0
    return (torch.cumsum(used, 0) - 1)[groups]


def _group_minimum(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Per-row minimum of ``values`` (rows, k) within each group of columns: (rows, G)."""
    if n_groups == 1:
        return values.amin(dim=1, keepdim=True)
    if n_groups == values.shape[1]:
        return values.clone()
    out = values.new_full((values.shape[0], n_groups), torch.inf)
    return out.scatter_reduce_(1, groups.expand_as(values), values, "amin")


class BoundedPass:
    """The assignment pass of a bound-based algorithm, with its per-sample bounds.

    Called like :meth:`~torchmeans.backends.base.Backend.lloyd_pass` (same flat accumulator) once
    per iteration with the current centers; it remembers the previous centers to
    move the bounds by how far each center drifted.

    Parameters
    ----------
    data : KMeansData
        The rows.
    groups : Tensor
        ``(k,)`` group of each center (see :func:`center_groups`).
    rows : int
        Rows per chunk.
    exact_inertia : bool
        Report each iteration's inertia (one extra pass over the data); otherwise
        the flat accumulator carries NaN there.
    backend : Backend, optional
        The fit's backend: exact distances come from it (default: the torch reference).
    own_elkan : bool
        Elkan's passes after the first run in the backend (:meth:`~torchmeans.backends.
        base.Backend.elkan_pass`, where it :meth:`~torchmeans.backends.base.Backend.
        runs_elkan`): scores only for the rows and centers whose own bounds fail, as its
        Lloyd pass computes them; the first pass takes its labels from the backend too.
    """

    def __init__(self, data: KMeansData, groups: Tensor, rows: int,
                 backend: Backend | None = None, *, own_elkan: bool = False,
                 exact_inertia: bool = False) -> None:
        self.data = data
        self.transposed = groups.numel() <= SMALL_K
        self.groups = groups
        self.n_groups = int(groups.max()) + 1
        self.rows = rows
        self.exact_inertia = exact_inertia
        self.backend = backend or get_backend("torch")
        self.native = own_elkan
        if own_elkan and self.n_groups != groups.numel():
            raise ValueError("a backend's own bounded pass is Elkan's (one group per center)")
        dtype = data.acc_dtype
        self.upper = torch.empty(data.n_samples, dtype=dtype, device=data.device)
        self.lower = torch.empty(data.n_samples, self.n_groups, dtype=dtype, device=data.device)
        self.norms = data.sq_norms.sqrt()
        self.largest_norm = float(self.norms.max())
        eps = torch.finfo(dtype).eps
        # Worst-case relative error of a score ||c||^2 - 2 x.c over n_features terms
        # (the GEMM's dot products, the norms, addmm's scaling), with 4x headroom.
        self.gamma = 4 * (data.n_features + 8) * eps
        self.eps = eps
        self.previous_centers: Tensor | None = None
        self.n_recomputed = 0
        """Samples whose distances to other centers were recomputed (last pass)."""

    # -- helpers ------------------------------------------------------------------

    def _scores(self, chunk: Chunk, terms: CenterTerms, buffer: Tensor) -> Tensor:
        """``(rows, k)`` scores of a chunk (or selected rows), computed in Lloyd's layout.

        Lloyd computes ``(k, rows)`` products when ``k <= SMALL_K``; the same layout
        here gives the same rounding, so ties break as in Lloyd. Returns a view.
        """
        n_rows = chunk.x.shape[0]
        k = terms.sq_norms.numel()
        shape = (k, n_rows) if self.transposed else (n_rows, k)
        scores = self.data.scores(chunk.x, terms.transposed, terms.sq_norms,
                                  out=buffer[: n_rows * k].view(shape),
                                  transposed=self.transposed)
        return scores.T if self.transposed else scores

    def _margin(self, norms: Tensor, largest_center: float) -> Tensor:
        """``E``: bound on the rounding error of a score for rows of these norms."""
        return self.gamma * (norms + largest_center).square()

    def _bounds_from_scores(self, scores: Tensor, chunk: Chunk, labels: Tensor,
                            margin: Tensor) -> tuple[Tensor, Tensor]:
        """Upper and group lower bounds (true distances) from a block of scores.

        ``scores`` (a view of the pass's buffer) is overwritten.
        """
        sq_norms = chunk.sq_norms[:, None]
        best = scores.gather(1, labels[:, None])
        upper = (best + sq_norms + margin[:, None]).clamp_(min=0).sqrt_().squeeze(1)
        others = scores.scatter_(1, labels[:, None], torch.inf)
        lower = _group_minimum(others, self.groups, self.n_groups)
        lower = (lower + sq_norms - margin[:, None]).clamp_(min=0).sqrt_()
        return upper, lower

    def _reassign(self, scores: Tensor, chunk: Chunk, previous: Tensor,
                  margin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Nearest centers of rows with valid previous labels, and their new bounds.

        Lloyd's previous-label check (``amin`` with the previous center hidden; the
        slow first-minimum search only for rows whose previous center is not the
        strict minimum, usually few) leaves the (unchanged) center hidden for the
        kept rows; for the rechecked rows the previous center is put back and the
        new one hidden. The group minima of what is left are the lower bounds.
        ``scores`` is overwritten.
        """
        at_previous = scores.gather(1, previous[:, None]).squeeze(1)
        values, recheck, rechecked_labels = recheck_previous(scores, previous, False)
        labels = previous.clone()
        labels[recheck] = rechecked_labels
        # Rechecked rows: the previous center is one of the others again, the new hidden.
        previous_of_rechecked = previous[recheck]
        scores[recheck, previous_of_rechecked] = at_previous[recheck]
        scores[recheck, rechecked_labels] = torch.inf
        sq_norms = chunk.sq_norms
        upper = (values + sq_norms + margin).clamp_(min=0).sqrt_()
        lower = _group_minimum(scores, self.groups, self.n_groups)
        lower = (lower + sq_norms[:, None] - margin[:, None]).clamp_(min=0).sqrt_()
        return labels, upper, lower

    def _half_gaps(self, centers: Tensor, largest_center: float) -> Tensor:
        """Half the distance from each center to its nearest other center (a lower bound)."""
        k = centers.shape[0]
        if k == 1:
            return centers.new_full((1,), torch.inf)
        terms = center_terms(centers)
        block = max(1, chunk_budget(self.data, None) // (4 * k))
        gaps = []
        for start in range(0, k, block):
            part = centers[start : start + block]
            sq = torch.addmm(terms.sq_norms, part, terms.transposed, alpha=-2)
            sq += part.square().sum(dim=1, keepdim=True)
            sq[torch.arange(part.shape[0]), torch.arange(start, start + part.shape[0])] = (
                torch.inf
            )
            gaps.append(sq.amin(dim=1))
        sq_gap = torch.cat(gaps) - self.gamma * (2 * largest_center) ** 2
        return 0.5 * sq_gap.clamp_(min=0).sqrt_()

    # -- the pass -------------------------------------------------------------------

    def __call__(self, centers: Tensor, labels: Tensor, incremental: bool) -> Tensor:
        """Assign every row (updating ``labels`` in place); return the flat accumulator.

        See :meth:`torchmeans.backends.torch.TorchBackend.lloyd_pass` for ``incremental``
        and :mod:`torchmeans.core.accumulate` for the layout.
        """
        n_clusters, n_features = centers.shape
        # A backend's own pass sums in float64, as its Lloyd pass does (same centers).
        flat, acc = new_accumulator(n_clusters, n_features,
                                    torch.float64 if self.native else centers.dtype,
                                    centers.device)
        sums, weights, scalars = acc.sums, acc.weights, flat[-2:]
        terms = center_terms(centers)
        largest_center = float(terms.sq_norms.max().sqrt())
        if self.native and self.previous_centers is not None:
            self._native_pass(centers, terms, labels, scalars, largest_center, sums, weights,
                              incremental)
        else:
            buffer = score_buffer(self.data, centers, self.rows)
            if self.previous_centers is None:
                self._first_pass(centers, terms, labels, buffer, scalars, largest_center,
                                 sums, weights, incremental)
            else:
                self._update_bounds(centers, labels, largest_center)
                self._bounded_pass(centers, terms, labels, buffer, scalars, largest_center,
                                   sums, weights, incremental)
        self.previous_centers = centers
        if not incremental:
            for chunk in self.data.chunks(self.rows):
                self.data.add_weighted_sums(chunk, labels[chunk.start : chunk.stop], sums,
                                            weights)
        scalars[0] = self._partial_inertia(centers, labels) if self.exact_inertia else torch.nan
        return flat

    def _first_pass(self, centers: Tensor, terms: CenterTerms, labels: Tensor, buffer: Tensor,
                    scalars: Tensor, largest_center: float, sums: Tensor, weights: Tensor,
                    incremental: bool) -> None:
        """Compute all distances (no bounds yet) and set the bounds from them.

        Incremental whenever :func:`~torchmeans.core.lloyd.lloyd` asks for it, as for a
        Lloyd pass: usually, since bounds start after Lloyd passes have left valid labels
        (unit weights, few moves), and on resuming from a checkpoint that says so. Then
        only the changes of the rows that moved are added to the sums. With
        ``own_elkan`` the labels come from the backend's own scores, as its Elkan passes'
        that follow (the GEMM may round a near-tie the other way); the bounds from the
        GEMM's scores hold either way (the margin covers any order of summation).
        """
        own_labels = None
        if self.native:
            own_labels = torch.empty(self.data.n_samples, dtype=torch.int64)
            for chunk, chunk_labels in self.backend.nearest(self.data, centers, self.rows):
                own_labels[chunk.start : chunk.stop] = chunk_labels
        for chunk in self.data.chunks(self.rows):
            scores = self._scores(chunk, terms, buffer)
            if own_labels is not None:
                new_labels = own_labels[chunk.start : chunk.stop]
            else:
                _, new_labels = first_minimum(scores, False)
            chunk_labels = labels[chunk.start : chunk.stop]
            moved = torch.nonzero(chunk_labels != new_labels).squeeze(1)
            scalars[1] += moved.numel()
            if incremental and moved.numel():
                self.data.move_rows(chunk, moved, chunk_labels[moved], new_labels[moved], sums,
                                    weights)
            chunk_labels.copy_(new_labels)
            margin = self._margin(self.norms[chunk.start : chunk.stop], largest_center)
            upper, lower = self._bounds_from_scores(scores, chunk, new_labels, margin)
            self.upper[chunk.start : chunk.stop] = upper
            self.lower[chunk.start : chunk.stop] = lower
        self.n_recomputed = self.data.n_samples

    def _drift(self, centers: Tensor, largest_center: float) -> Tensor:
        """How far each center moved since the last pass, rounded up, in the bounds' dtype."""
        drift = (centers.double() - self.previous_centers.double()).square().sum(dim=1).sqrt()
        # Slack for the rounding of the bound updates themselves (bounds are at most
        # ||x|| + R, so each addition rounds by less than eps * (max ||x|| + R)).
        slack = 2 * self.eps * (self.largest_norm + largest_center)
        return (drift * (1 + 2 * self.eps) + slack).to(self.upper.dtype)

    def _update_bounds(self, centers: Tensor, labels: Tensor, largest_center: float) -> None:
        """Move the bounds by each center's drift, rounded outwards."""
        drift = self._drift(centers, largest_center)
        group_drift = drift.new_zeros(self.n_groups).scatter_reduce_(0, self.groups, drift, "amax")
        self.upper += drift[labels]
        self.lower -= group_drift

    def _bounded_pass(self, centers: Tensor, terms: CenterTerms, labels: Tensor, buffer: Tensor,
                      scalars: Tensor, largest_center: float, sums: Tensor, weights: Tensor,
                      incremental: bool) -> None:
        data = self.data
        half_gaps = self._half_gaps(centers, largest_center)
        margin = self._margin(self.norms, largest_center)
        lower = self.lower.amin(dim=1) if self.n_groups > 1 else self.lower[:, 0]
        # Hamerly's bound 2 s - u is negative for samples far from their center: clamp
        # it (and so the maximum) at 0 before the test squares it.
        lower = torch.maximum(lower, (2 * half_gaps[labels] - self.upper).clamp_(min=0))
        failing = self.upper.square() + 2 * margin >= lower.square()
        self.n_recomputed = 0
        # Chunks FILTER_CHUNK_FACTOR times the GEMM's size when they are views (no copy):
        # fewer per-chunk steps. Within one, failing rows are tightened in batches of at most
        # ``rows``; the GEMM-sized blocks where more than half still fail are recomputed
        # whole (a view, no copy), the other still-failing rows in gathered batches.
        factor = FILTER_CHUNK_FACTOR if data.chunks_are_views else 1
        for chunk in data.chunks(self.rows * factor):
            start, stop = chunk.start, chunk.stop
            failing_rows = torch.nonzero(failing[start:stop]).squeeze(1)
            if failing_rows.numel() == 0:
                continue
            still = torch.cat([
                self._tighten(chunk, failing_rows[begin : begin + self.rows], centers,
                              margin, lower, labels)
                for begin in range(0, failing_rows.numel(), self.rows)
            ])
            self.n_recomputed += still.numel()
            block = torch.div(still, self.rows, rounding_mode="floor")
            n_blocks = -(-(stop - start) // self.rows)
            block_sizes = torch.full((n_blocks,), self.rows, device=still.device)
            block_sizes[-1] = stop - start - (n_blocks - 1) * self.rows
            dense = torch.bincount(block, minlength=n_blocks) * 2 > block_sizes
            for index in torch.nonzero(dense).squeeze(1).tolist():
                first, last = index * self.rows, min((index + 1) * self.rows, stop - start)
                rows = torch.arange(first, last, device=still.device)
                subset = chunk if last - first == stop - start else Chunk(
                    start, stop, chunk.x[first:last],
                    None if chunk.weight is None else chunk.weight[first:last], data, rows)
                self._recompute(chunk, subset, rows, terms, buffer, labels, margin, scalars,
                                sums, weights, incremental)
            scattered = still[~dense[block]]
            for begin in range(0, scattered.numel(), self.rows):
                rows = scattered[begin : begin + self.rows]
                self._recompute(chunk, data.select(chunk, rows), rows, terms, buffer, labels,
                                margin, scalars, sums, weights, incremental)

    def _native_pass(self, centers: Tensor, terms: CenterTerms, labels: Tensor,
                     scalars: Tensor, largest_center: float, sums: Tensor, weights: Tensor,
                     incremental: bool) -> None:
        """Elkan's pass in the backend: bounds, tests and the needed scores per chunk."""
        data = self.data
        drift = self._drift(centers, largest_center)
        half_gaps = self._half_gaps(centers, largest_center).to(self.upper.dtype)
        margin = self._margin(self.norms, largest_center)
        factor = FILTER_CHUNK_FACTOR if data.chunks_are_views else 1
        self.n_recomputed = 0
        for chunk in data.chunks(self.rows * factor):
            start, stop = chunk.start, chunk.stop
            chunk_labels = labels[start:stop]
            previous = chunk_labels.clone()
            self.n_recomputed += self.backend.elkan_pass(
                chunk, margin[start:stop], centers, terms.sq_norms, drift, half_gaps,
                self.upper[start:stop], self.lower[start:stop], chunk_labels)
            moved = torch.nonzero(chunk_labels != previous).squeeze(1)
            scalars[1] += moved.numel()
            if incremental and moved.numel():
                data.move_rows(chunk, moved, previous[moved], chunk_labels[moved], sums, weights)

    def _tighten(self, chunk: Chunk, rows: Tensor, centers: Tensor, margin: Tensor,
                 lower: Tensor, labels: Tensor) -> Tensor:
        """Set ``u`` of ``rows`` (of ``chunk``) to the exact distance; return the still failing."""
        data, start, stop = self.data, chunk.start, chunk.stop
        row_labels = labels[start:stop].index_select(0, rows)
        row_margin = margin[start:stop].index_select(0, rows)
        exact = data.sq_distances_to(data.select(chunk, rows), centers, row_labels)
        upper = (exact + row_margin).sqrt_()
        self.upper[start + rows] = upper
        row_lower = lower[start:stop].index_select(0, rows)
        return rows[upper.square() + 2 * row_margin >= row_lower.square()]

    def _recompute(self, chunk: Chunk, subset: Chunk, rows: Tensor, terms: CenterTerms,
                   buffer: Tensor, labels: Tensor, margin: Tensor, scalars: Tensor,
                   sums: Tensor, weights: Tensor, incremental: bool) -> None:
        """All distances of ``rows`` of ``chunk`` (held by ``subset``): new labels and bounds."""
        data, start, stop = self.data, chunk.start, chunk.stop
        chunk_labels = labels[start:stop]
        row_labels = chunk_labels.index_select(0, rows)
        row_margin = margin[start:stop].index_select(0, rows)
        scores = self._scores(subset, terms, buffer)
        new_labels, upper, group_lower = self._reassign(scores, subset, row_labels, row_margin)
        self.upper[start + rows] = upper
        self.lower[start + rows] = group_lower
        moved = new_labels != row_labels
        moved_rows = rows[moved]
        scalars[1] += moved_rows.numel()
        if moved_rows.numel() == 0:
            return
        old, new = row_labels[moved], new_labels[moved]
        chunk_labels[moved_rows] = new
        if incremental:
            data.move_rows(chunk, moved_rows, old, new, sums, weights)

    def _partial_inertia(self, centers: Tensor, labels: Tensor) -> Tensor:
        """Exact inertia of ``labels`` against ``centers``, less ``sum w ||x||^2``."""
        inertia = inertia_of(self.data, centers, labels, backend=self.backend)
        return inertia - self.data.sq_norms @ self.data.sample_weight
