"""The torch backend: the reference every other backend is checked against, on every device.

For a chunk of (shifted) rows ``x`` and centers ``c`` the squared Euclidean distance is
``||x||^2 - 2 x.c + ||c||^2``. The row term does not change the argmin, so the assignment
only needs the ``rows x k`` block ``||c||^2 - 2 x.c``: one matrix product per chunk
(``addmm``), never an ``N x K`` matrix. The functions here make and read those blocks;
:class:`TorchBackend` runs the engine's passes with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from torchmeans.backends.base import Backend
from torchmeans.core.accumulate import (
    Accumulator,
    accumulator_width,
    new_accumulator,
    segment_sums,
)
from torchmeans.core.precision import certify, largest_norm, resolve_in_float64, top2
from torchmeans.data.base import Chunk, KMeansData, supports_float64, weighted_sum
from torchmeans.data.batched import ProblemBatch, block_sizes, groups, select

__all__ = [
    "SMALL_K",
    "CenterTerms",
    "Moves",
    "TorchBackend",
    "center_terms",
    "certified_nearest",
    "chunk_scores",
    "chunk_scores_into",
    "first_minimum",
    "nearest_centers",
    "recheck_previous",
    "score_buffer",
    "transposed_layout",
    "update_nearest",
]


SMALL_K = 32
"""Up to this many centers, scores are laid out ``(k, rows)``: the minimum over
centers is then an elementwise minimum of ``k`` long rows (vectorised), where a
row-wise minimum over a handful of values is not."""


class CenterTerms(NamedTuple):
    """What a pass needs of the centers, computed once per pass."""

    transposed: Tensor
    sq_norms: Tensor


def center_terms(centers: Tensor) -> CenterTerms:
    """Return ``centers.T`` (contiguous) and ``||c||^2`` for a pass over the data."""
    return CenterTerms(centers.T.contiguous(), centers.square().sum(dim=1))


def first_minimum(scores: Tensor, transposed: bool) -> tuple[Tensor, Tensor]:
    """Minimum score of each row and the first center holding it (``min``'s rule).

    Scores laid out ``(k, rows)`` take a vectorised ``amin``, then the hit with
    the largest weight ``k - j`` (a uint8 ``amax``): the first index exactly.
    """
    if not transposed:
        return scores.min(dim=1)
    k = scores.shape[0]
    values = scores.amin(dim=0)
    descending = torch.arange(k, 0, -1, dtype=torch.uint8, device=scores.device)[:, None]
    first_hit = (scores == values).to(torch.uint8).mul_(descending)
    return values, k - first_hit.amax(dim=0).long()


def score_buffer(data: KMeansData, centers: Tensor, rows: int) -> Tensor:
    """Return a flat buffer for the scores of one chunk, reused across chunks."""
    return torch.empty(min(rows, data.n_samples) * centers.shape[0], dtype=centers.dtype,
                       device=data.device)


def chunk_scores(data: KMeansData, chunk: Chunk, terms: CenterTerms,
                 out: Tensor | None = None, *, transposed: bool = False) -> Tensor:
    """Return ``||c||^2 - 2 x.c`` for the rows of ``chunk``.

    The shape is ``(rows, k)``, or ``(k, rows)`` when ``transposed``; ``out`` is
    written into when given.
    """
    return data.scores(chunk.x, terms.transposed, terms.sq_norms, out=out, transposed=transposed)


def transposed_layout(n_clusters: int) -> bool:
    """Whether scores against ``n_clusters`` centers are laid out ``(k, rows)`` (see SMALL_K)."""
    return n_clusters <= SMALL_K


def _transposed(terms: CenterTerms) -> bool:
    return transposed_layout(terms.sq_norms.numel())


def chunk_scores_into(data: KMeansData, chunk: Chunk, terms: CenterTerms,
                      buffer: Tensor | None) -> Tensor:
    """Scores of a chunk in the layout its ``k`` calls for, in ``buffer`` if given.

    Every assignment (fit, predict, the bounded passes, the native kernel after its
    GEMM) reads scores made here, so all of them see the same rounding and pick the same
    labels. (The native kernel's own scores sum as a BLAS kernel does; where they are
    used, predict uses them too.)
    """
    n_rows, k = chunk.stop - chunk.start, terms.sq_norms.numel()
    transposed = _transposed(terms)
    out = None
    if buffer is not None:
        out = buffer[: n_rows * k].view((k, n_rows) if transposed else (n_rows, k))
    return chunk_scores(data, chunk, terms, out, transposed=transposed)


def nearest_centers(data: KMeansData, chunk: Chunk, terms: CenterTerms,
                    buffer: Tensor | None = None,
                    previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Nearest center of each row of ``chunk``.

    Parameters
    ----------
    data, chunk, terms
        The rows and the centers.
    buffer : Tensor, optional
        Scores buffer from :func:`score_buffer`.
    previous : Tensor, optional
        Each row's previous label. A row keeps it when its previous center is
        strictly nearer than every other; the exact search (``argmin``) runs
        only on the other rows (moved or tied). Same result as without
        ``previous``; cheaper because ``amin`` beats ``min`` with indices on the CPU.

    Returns
    -------
    partial_sq_dist : Tensor
        ``min_j ||c_j||^2 - 2 x.c_j`` per row (add ``||x||^2`` for the distance).
    labels : Tensor
        Index of the nearest center (the first one on ties), int64.
    """
    if data.low_dtype is not None:
        return certified_nearest(data, chunk, terms).values_and_labels
    transposed = _transposed(terms)
    scores = chunk_scores_into(data, chunk, terms, buffer)
    if previous is None:
        return first_minimum(scores, transposed)
    values, recheck, new_labels = recheck_previous(scores, previous, transposed)
    labels = previous.clone()
    labels[recheck] = new_labels
    return values, labels


class CertifiedNearest(NamedTuple):
    """Nearest centers from certified low-precision products (see :mod:`.precision`)."""

    partial_sq_dist: Tensor
    labels: Tensor
    recomputed: Tensor
    """Rows (within the chunk) the margin test left uncertain (resolved exactly)."""

    @property
    def values_and_labels(self) -> tuple[Tensor, Tensor]:
        """``(partial_sq_dist, labels)``, as :func:`nearest_centers` returns them."""
        return self.partial_sq_dist, self.labels


def reference_labels(data: KMeansData, chunk: Chunk, terms: CenterTerms,
                     rows: Tensor, largest_center_norm: float | None = None) -> Tensor:
    """Return the full-precision path's labels of rows ``rows`` of ``chunk``.

    Float64 scores decide the rows they can (:func:`.precision.resolve_in_float64`);
    the float32 path's own ties are labelled from the chunk's scores computed exactly
    as that path computes them (the same call on the whole chunk).
    """
    centers_t = terms.transposed
    labels = torch.empty(rows.numel(), dtype=torch.int64, device=rows.device)
    undecided = torch.arange(rows.numel(), device=rows.device)
    if supports_float64(rows.device) and data.acc_dtype != torch.float64:
        x = data.select(chunk, rows).x
        if largest_center_norm is None:
            largest_center_norm = largest_norm(centers_t)
        labels, undecided = resolve_in_float64(x, centers_t, terms.sq_norms,
                                               largest_center_norm)
    if undecided.numel():
        scores = chunk_scores_into(data, chunk, terms, None)
        labels[undecided] = first_minimum(scores, _transposed(terms))[1][rows[undecided]]
    return labels


def certified_nearest(data: KMeansData, chunk: Chunk, terms: CenterTerms,
                      best_and_second: tuple[Tensor, Tensor, Tensor] | None = None,
                      product_dtype: torch.dtype | None = None) -> CertifiedNearest:
    """Nearest centers of ``chunk`` from approximate products, certified exact.

    Same labels as :func:`nearest_centers` in full precision: rows whose margin
    between best and second-best approximate score is within the proven error bound
    get their reference labels from :func:`reference_labels`
    (:func:`.precision.certify`). ``best_and_second`` (best, second, labels) come
    from a fused kernel whose products are ``product_dtype`` (float32 accumulation);
    else from one product in ``data.low_dtype`` and a top-2.
    """
    x = chunk.x
    if best_and_second is None:
        low = data.low_dtype
        products = torch.mm(x.to(low), terms.transposed.to(low))
        scores = torch.add(terms.sq_norms, products.to(terms.sq_norms.dtype), alpha=-2)
        best, second, labels = top2(scores)
        low_accumulation = None
    else:
        best, second, labels = best_and_second
        low, low_accumulation = product_dtype, False
    largest = largest_norm(terms.transposed)
    certified = certify(x, best, second, labels, largest, low,
                        lambda rows: reference_labels(data, chunk, terms, rows, largest),
                        low_accumulation=low_accumulation)
    labels = certified.labels
    # ||c||^2 - 2 x.c of the chosen center, in full precision (d flops per row).
    chosen = terms.transposed.index_select(1, labels).T
    partial = terms.sq_norms[labels] - 2 * (x.to(chosen.dtype) * chosen).sum(dim=1)
    return CertifiedNearest(partial, labels, certified.recomputed)


class Moves(NamedTuple):
    """What :func:`update_nearest` changed in a chunk's labels."""

    partial_sq_dist: Tensor
    """``min_j ||c_j||^2 - 2 x.c_j`` of every row of the chunk."""
    rows: Tensor
    """Indices (within the chunk) of the rows whose label changed."""
    old: Tensor
    """Their previous labels."""
    new: Tensor
    """Their new labels."""


def update_nearest(data: KMeansData, chunk: Chunk, terms: CenterTerms, buffer: Tensor,
                   labels: Tensor) -> Moves:
    """Update a chunk's valid ``labels`` in place to the nearest centers; report the moves.

    Same labels as :func:`nearest_centers` with ``previous=labels``, but only
    the rows that are rechecked are touched, so late Lloyd passes (few moves)
    do no work proportional to the chunk beyond the scores and their minimum.
    """
    if data.low_dtype is not None:
        values, new_labels = certified_nearest(data, chunk, terms).values_and_labels
        recheck = torch.nonzero(new_labels != labels).squeeze(1)
        new_labels = new_labels[recheck]
    else:
        scores = chunk_scores_into(data, chunk, terms, buffer)
        values, recheck, new_labels = recheck_previous(scores, labels, _transposed(terms))
    old_labels = labels[recheck]
    moved = new_labels != old_labels
    rows = recheck[moved]
    new_labels = new_labels[moved]
    labels[rows] = new_labels
    return Moves(values, rows, old_labels[moved], new_labels)


def recheck_previous(scores: Tensor, previous: Tensor,
                      transposed: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Minimum of each row; the rows whose previous label is not the strict minimum; their labels.

    The previous label stays iff its score is strictly below every other score:
    hide it (+inf) and take the minimum of the rest. Only the other rows (moved or
    tied) get the exact first-minimum search, on their scores with the hidden one
    put back. ``scores`` is left modified.
    """
    dim = 0 if transposed else 1
    index = previous.unsqueeze(dim)
    at_previous = scores.gather(dim, index)
    others = scores.scatter_(dim, index, torch.inf).amin(dim=dim)
    recheck = torch.nonzero(~(at_previous.squeeze(dim) < others)).squeeze(1)
    subset = scores.index_select(1 - dim, recheck)
    subset.scatter_(dim, index.index_select(1 - dim, recheck),
                    at_previous.index_select(1 - dim, recheck))
    subset_values, labels = first_minimum(subset, transposed)
    # Kept rows: the minimum is their previous score; only rechecked rows need theirs
    # (cheaper than a minimum over every row).
    values = at_previous.squeeze(dim)
    values[recheck] = subset_values
    return values, recheck, labels


class TorchBackend(Backend):
    """Score GEMMs and torch ops: the reference, on every device and data kind."""

    name: ClassVar[str] = "torch"

    def unsupported(self, data: KMeansData) -> str | None:  # noqa: D102
        return None

    def lloyd_pass(self, data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
                   incremental: bool = False) -> Tensor:
        """One pass: assign every row, update ``labels`` in place, return the flat accumulator.

        The partial inertia lacks the constant ``sum(w * ||x||^2)``. With
        ``incremental=True`` the sums and weights are the *change* from the previous
        labels: each row whose label changed is added to its new cluster and subtracted
        from its old one, and rows that stayed cost nothing (late iterations move few
        rows). ``labels`` must then hold valid previous labels.
        """
        n_clusters, n_features = centers.shape
        flat, acc = new_accumulator(n_clusters, n_features, centers.dtype, centers.device)
        terms = center_terms(centers)
        buffer = score_buffer(data, centers, rows)
        for chunk in data.chunks(rows):
            chunk_labels = labels[chunk.start : chunk.stop]
            if incremental:
                moves = update_nearest(data, chunk, terms, buffer, chunk_labels)
                acc.n_changed.add_(moves.rows.numel())
                acc.partial_inertia.add_(weighted_sum(moves.partial_sq_dist, chunk.weight))
                data.move_rows(chunk, moves.rows, moves.old, moves.new, acc.sums, acc.weights)
            else:
                partial, new_labels = nearest_centers(data, chunk, terms, buffer)
                acc.n_changed.add_((chunk_labels != new_labels).sum())
                acc.partial_inertia.add_(weighted_sum(partial, chunk.weight))
                data.add_weighted_sums(chunk, new_labels, acc.sums, acc.weights)
                chunk_labels.copy_(new_labels)
        return flat

    def nearest(self, data: KMeansData, centers: Tensor, rows: int, *,
                previous: Tensor | None = None) -> Iterator[tuple[Chunk, Tensor]]:
        """Yield ``(chunk, labels)``: each row's nearest center (:func:`nearest_centers`)."""
        terms = center_terms(centers)
        buffer = score_buffer(data, centers, rows)
        for chunk in data.chunks(rows):
            chunk_previous = None if previous is None else previous[chunk.start : chunk.stop]
            yield chunk, nearest_centers(data, chunk, terms, buffer, previous=chunk_previous)[1]

    def minima(self, data: KMeansData, centers: Tensor, rows: int, *, with_labels: bool = False
               ) -> Iterator[tuple[Chunk, Tensor, Tensor | None]]:
        """Yield ``(chunk, values, labels)``: each row's least score ``min_j ||c_j||^2 - 2 x.c_j``.

        ``labels`` (the first center holding it) are None unless ``with_labels``. Scores
        are laid out ``(rows, k)`` whatever ``k`` (the seeding's layout).
        """
        terms = center_terms(centers)
        for chunk in data.chunks(rows):
            scores = chunk_scores(data, chunk, terms)
            if with_labels:
                values, labels = scores.min(dim=1)
                yield chunk, values, labels
            else:
                yield chunk, scores.amin(dim=1), None

    def sq_distances(self, data: KMeansData, chunk: Chunk, centers: Tensor,
                     labels: Tensor) -> Tensor:
        """Return ``||x_i - centers[labels_i]||^2`` of a chunk's rows (from the differences)."""
        return data.sq_distances_to(chunk, centers, labels)

    def batched_pass(self, problems: ProblemBatch, source: Tensor, centers: Tensor,
                     labels: Tensor, deterministic: bool) -> tuple[Tensor, Tensor]:
        """Assign the rows of problems ``source`` to ``centers`` and sum them per cluster.

        ``labels`` are the problems' previous labels (``-1`` before the first pass and outside
        the mask). Returns the new labels and a ``(problems, k * d + k + 2)`` accumulator (one
        :class:`~torchmeans.core.accumulate.Accumulator` row per problem: sums, weights, NaN
        for the partial inertia, which the batched loop does not read, and the number of
        labels that changed).
        """
        n_problems, n_clusters = centers.shape[:2]
        n_samples, n_features = problems.x.shape[1:]
        group, rows = block_sizes(n_problems, n_samples, n_clusters, problems.x.element_size(),
                                  problems.budget)
        new_labels = torch.empty_like(labels)
        flat = centers.new_empty(n_problems, accumulator_width(n_clusters, n_features))
        accumulator = Accumulator.split(flat, n_clusters, n_features)
        # One scores buffer for every block: allocating it per block costs more than the
        # product itself on the CPU (fresh pages).
        buffer = centers.new_empty(min(group, n_problems) * rows * n_clusters)
        for ids in groups(n_problems, group, source.device):
            block = source[ids]
            x, weight = select(problems.x, block), select(problems.weight, block)
            transposed = centers[ids].transpose(1, 2)
            sq_centers = centers[ids].square().sum(dim=2)[:, None, :]
            segment = (torch.arange(ids.numel(), device=x.device) * n_clusters)[:, None]
            n_segments = ids.numel() * n_clusters
            group_sums = centers.new_zeros(n_segments, n_features)
            group_weights = centers.new_zeros(n_segments)
            for start in range(0, n_samples, rows):
                stop = min(start + rows, n_samples)
                chunk, chunk_weight = x[:, start:stop], weight[:, start:stop]
                scores = torch.baddbmm(sq_centers, chunk, transposed, alpha=-2,
                                       out=buffer[: chunk.numel() // n_features * n_clusters].view(
                                           ids.numel(), stop - start, n_clusters))
                # ``min`` gives the first minimum on ties (as a single fit), and is faster than
                # ``argmin`` on the CPU.
                chunk_labels = scores.min(dim=2).indices
                index = (chunk_labels + segment).flatten()
                weighted = (chunk if problems.unit_weights else
                            chunk * chunk_weight[..., None]).reshape(-1, n_features)
                segment_sums(weighted, index, n_segments, deterministic=deterministic,
                             out=group_sums)
                segment_sums(chunk_weight.flatten(), index, n_segments, deterministic=deterministic,
                             out=group_weights)
                if not problems.unit_weights:  # rows outside the mask get -1
                    valid = select(problems.valid, block)[:, start:stop]
                    chunk_labels = torch.where(valid, chunk_labels, -1)
                new_labels[ids, start:stop] = chunk_labels
            accumulator.sums[ids] = group_sums.view(-1, n_clusters, n_features)
            accumulator.weights[ids] = group_weights.view(-1, n_clusters)
        accumulator.partial_inertia.fill_(torch.nan)
        accumulator.n_changed.copy_((new_labels != labels).sum(dim=1))
        return new_labels, flat
