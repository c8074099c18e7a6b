"""The one assignment primitive: nearest center by the norm expansion, chunk by chunk.

For a chunk of (shifted) rows ``x`` and centers ``c`` the squared Euclidean
distance is ``||x||^2 - 2 x.c + ||c||^2``. The row term does not change the
argmin, so the assignment only needs the ``rows x k`` block
``||c||^2 - 2 x.c``: one matrix product per chunk (``addmm``), never an
``N x K`` matrix. Fit, predict, transform, score and the metrics all go through
the functions below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from torchmeans.backends.native import kernel as _native
from torchmeans.core.precision import certify, largest_norm, resolve_in_float64, top2
from torchmeans.data.base import Chunk, KMeansData, rows_per_chunk, supports_float64

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "Assignment",
    "Moves",
    "assign",
    "chunk_rows_for",
    "chunk_scores_into",
    "direct_chunk_rows",
    "direct_pass_rows",
    "inertia_of",
    "nearest_centers",
    "pairwise_distances",
    "transposed_layout",
    "update_nearest",
]

DEFAULT_CHUNK_BYTES = {"cpu": 1 << 24}
"""Default working-memory budget of one chunk's temporaries, by device type.

16 MiB on the CPU: the ``(rows, k)`` score block then stays near the caches, and
was fastest of 1-64 MiB at all three shapes of ``benchmarks/bench_lloyd.py``
(see benchmarks/RESULTS.md). Accelerators use ``FALLBACK_CHUNK_BYTES``.
"""
FALLBACK_CHUNK_BYTES = 1 << 28


class Assignment(NamedTuple):
    """Labels of every row, and the exact weighted inertia they give."""

    labels: Tensor
    inertia: Tensor


class CenterTerms(NamedTuple):
    """What a pass needs of the centers, computed once per pass."""

    transposed: Tensor
    sq_norms: Tensor


def center_terms(centers: Tensor) -> CenterTerms:
    """Return ``centers.T`` (contiguous) and ``||c||^2`` for a pass over the data."""
    return CenterTerms(centers.T.contiguous(), centers.square().sum(dim=1))


def chunk_budget(data: KMeansData, chunk_bytes: int | None) -> int:
    """Return the working-memory budget in bytes: ``chunk_bytes`` or the device's default."""
    if chunk_bytes is None:
        return DEFAULT_CHUNK_BYTES.get(data.device.type, FALLBACK_CHUNK_BYTES)
    return int(chunk_bytes)


def chunk_rows_for(data: KMeansData, n_clusters: int, chunk_bytes: int | None) -> int:
    """Rows per chunk for ``data`` against ``n_clusters`` centers within ``chunk_bytes``."""
    itemsize = torch.finfo(data.acc_dtype).bits // 8
    return rows_per_chunk(chunk_budget(data, chunk_bytes), n_clusters, data.dense_width, itemsize)


SMALL_K = 32
"""Up to this many centers, scores are laid out ``(k, rows)``: the minimum over
centers is then an elementwise minimum of ``k`` long rows (vectorised), where a
row-wise minimum over a handful of values is not."""


def _first_minimum(scores: Tensor, transposed: bool) -> tuple[Tensor, Tensor]:
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
threads (~0.7 ms at 256 x 768), which 3,600-row chunks paid 28 times per pass (223 ms
against 204 ms for one call at 100,000 x 768, k=256)."""


def direct_pass_rows(data: KMeansData, rows: int, n_clusters: int) -> int:
    """Rows per chunk for a pass of the native kernel's own scores over ``data``.

    :func:`direct_chunk_rows`, and at least ``DIRECT_VIEW_CHUNK_ROWS`` where the chunks
    are views (no per-chunk copy: the pass needs no temporary of the rows).
    """
    rows = direct_chunk_rows(rows, n_clusters, data.n_features)
    return max(rows, DIRECT_VIEW_CHUNK_ROWS) if data.chunks_are_views else rows


def kernel_scores_apply(data: KMeansData) -> bool:
    """Whether the native kernel can find the nearest centers of ``data``'s rows itself.

    Dense rows on the CPU in float32/float64 chunks (half-precision rows are shifted into
    float32; ``precision='fast'`` only concerns the fit's products), with a compiled
    kernel for their width (:func:`~torchmeans.backends.native.kernel.direct_applies`): see
    :func:`chunk_minima`. The seeding uses it whatever the fit's ``backend`` and
    ``precision``, so a ``random_state`` gives the same seeds with all of them.
    """
    return native_rows_apply(data) and _native.direct_applies(data.n_features)


def native_rows_apply(data: KMeansData) -> bool:
    """Whether the native kernel reads ``data``'s chunks: dense float32/float64 rows on the CPU."""
    return (data.device.type == "cpu" and data.dense_rows
            and data.acc_dtype in (torch.float32, torch.float64) and _native.available())


def exact_sq_distances(data: KMeansData, chunk: Chunk, centers: Tensor, labels: Tensor, *,
                       native: bool = False) -> Tensor:
    """``||x_i - centers[labels_i]||^2`` of a chunk's rows.

    With ``native`` (where :func:`native_rows_apply`), one pass of the compiled kernel
    summing in float64 and no ``(rows, d)`` temporary; otherwise
    :meth:`KMeansData.sq_distances_to` (the same differences, summed by torch).
    """
    if native and native_rows_apply(data):
        return _native.sq_distances_to(chunk.x.contiguous(), centers, labels)
    return data.sq_distances_to(chunk, centers, labels)


def chunk_minima(data: KMeansData, centers: Tensor, chunk_bytes: int | None, *,
                 with_labels: bool = False) -> Iterator[tuple[Chunk, Tensor, Tensor | None]]:
    """Yield ``(chunk, values, labels)``: each row's least score against ``centers``.

    ``values`` are ``min_j ||c_j||^2 - 2 x.c_j`` and ``labels`` the first center holding
    it (None unless ``with_labels``). Where :func:`kernel_scores_apply`, the native
    kernel computes them without a score block (at the speed of the GEMM alone, in
    chunks sized for rows only); else one GEMM per chunk, within the budget.
    """
    n_clusters = centers.shape[0]
    rows = chunk_rows_for(data, n_clusters, chunk_bytes)
    if not kernel_scores_apply(data):
        terms = center_terms(centers)
        for chunk in data.chunks(rows):
            scores = chunk_scores(data, chunk, terms)
            if with_labels:
                values, labels = scores.min(dim=1)
                yield chunk, values, labels
            else:
                yield chunk, scores.amin(dim=1), None
        return
    sq_norms = centers.square().sum(dim=1)  # as center_terms computes them
    for chunk in data.chunks(direct_pass_rows(data, rows, n_clusters)):
        n_rows = chunk.stop - chunk.start
        labels = torch.empty(n_rows, dtype=torch.int64)
        values = torch.empty(n_rows, dtype=data.acc_dtype)
        _native.lloyd_direct(chunk.x.contiguous(), centers, sq_norms, None, labels, None,
                             incremental=False, best_out=values)
        yield chunk, values, labels if with_labels else None


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
    used, predict uses them too: ``_lloyd.uses_direct_labels``.)
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
        ``previous``, but ``amin`` is several times faster than ``min`` with
        indices on the CPU.

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
        return _first_minimum(scores, transposed)
    values, recheck, new_labels = _recheck_previous(scores, previous, transposed)
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
        labels[undecided] = _first_minimum(scores, _transposed(terms))[1][rows[undecided]]
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
        values, recheck, new_labels = _recheck_previous(scores, labels, _transposed(terms))
    old_labels = labels[recheck]
    moved = new_labels != old_labels
    rows = recheck[moved]
    new_labels = new_labels[moved]
    labels[rows] = new_labels
    return Moves(values, rows, old_labels[moved], new_labels)


def _recheck_previous(scores: Tensor, previous: Tensor,
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
    subset_values, labels = _first_minimum(subset, transposed)
    # Kept rows: the minimum is their previous score; only rechecked rows need theirs
    # (cheaper than a minimum over every row).
    values = at_previous.squeeze(dim)
    values[recheck] = subset_values
    return values, recheck, labels


def assign(
    data: KMeansData,
    centers: Tensor,
    *,
    chunk_bytes: int | None = None,
    labels_out: Tensor | None = None,
    previous: Tensor | None = None,
    direct: bool = False,
) -> Assignment:
    """Assign every row of ``data`` to its nearest center and return the exact inertia.

    The inertia is summed from exact distances ``||x - c_label||^2`` (not from
    the expansion), weighted by the data's sample weights.

    Parameters
    ----------
    data : KMeansData
        The rows.
    centers : Tensor
        ``(k, n_features)`` centers in the data's shifted space.
    chunk_bytes : int, optional
        Working-memory budget per chunk.
    labels_out : Tensor, optional
        ``(n_samples,)`` int64 buffer to write the labels into.
    previous : Tensor, optional
        ``(n_samples,)`` labels from a nearby set of centers (e.g. the last Lloyd
        iteration's): speeds up the search, same result (see :func:`nearest_centers`).
    direct : bool
        Label with the native kernel's own scores (:func:`~torchmeans.backends.native.kernel.
        lloyd_direct`; the caller checks that it applies, see
        :func:`torchmeans.core.lloyd.uses_direct_labels`) instead of the GEMM's, and take
        the inertia's distances from the kernel too.

    Returns
    -------
    Assignment
        ``labels`` (int64) and ``inertia`` (a 0-d tensor on the data's device).
    """
    terms = center_terms(centers)
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    labels = labels_out
    if labels is None:
        labels = torch.empty(data.n_samples, dtype=torch.int64, device=data.device)
    inertia = torch.zeros((), dtype=_inertia_dtype(data), device=data.device)
    buffer = None if direct else score_buffer(data, centers, rows)
    if direct:
        rows = direct_pass_rows(data, rows, centers.shape[0])
    for chunk in data.chunks(rows):
        if direct:
            chunk_labels = labels[chunk.start : chunk.stop]
            _native.lloyd_direct(chunk.x.contiguous(), centers, terms.sq_norms, None,
                                 chunk_labels, None, incremental=False)
        else:
            chunk_previous = None if previous is None else previous[chunk.start : chunk.stop]
            _, chunk_labels = nearest_centers(data, chunk, terms, buffer,
                                              previous=chunk_previous)
            labels[chunk.start : chunk.stop] = chunk_labels
        distances = exact_sq_distances(data, chunk, centers, chunk_labels, native=direct)
        inertia += _weighted_total(distances, chunk.weight, inertia.dtype)
    return Assignment(labels, inertia)


def _inertia_dtype(data: KMeansData) -> torch.dtype:
    """Inertia is summed in float64 where the device has it: float32 totals overflow at 3e38."""
    return torch.float64 if supports_float64(data.device) else data.acc_dtype


def _weighted_total(distances: Tensor, weight: Tensor | None, dtype: torch.dtype) -> Tensor:
    wide = distances.to(dtype)
    return wide.sum() if weight is None else weight.to(dtype) @ wide


def inertia_of(data: KMeansData, centers: Tensor, labels: Tensor, *,
               chunk_bytes: int | None = None, native: bool = False) -> Tensor:
    """Exact weighted inertia ``sum_i w_i ||x_i - centers[labels_i]||^2`` (a 0-d tensor).

    ``native``: distances from the compiled kernel (see :func:`exact_sq_distances`).
    """
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    inertia = torch.zeros((), dtype=_inertia_dtype(data), device=data.device)
    for chunk in data.chunks(rows):
        distances = exact_sq_distances(data, chunk, centers, labels[chunk.start : chunk.stop],
                                       native=native)
        inertia += _weighted_total(distances, chunk.weight, inertia.dtype)
    return inertia


NEAR_PAIR_SCALE = 16.0
"""A squared distance at most ``NEAR_PAIR_SCALE * sqrt(eps) * (||x||^2 + ||c||^2)`` comes out
of the norm expansion with a large relative error (the terms cancel); :func:`pairwise_distances`
recomputes it from the difference of the vectors."""


def pairwise_distances(
    data: KMeansData, centers: Tensor, *, chunk_bytes: int | None = None
) -> Tensor:
    """Return the ``(n_samples, k)`` Euclidean distances of every row to every center.

    This is the output of ``transform``; it is filled chunk by chunk by the norm
    expansion, except where that cancels: each row's distance to its nearest center is
    recomputed from the difference of the vectors (:func:`exact_sq_distances`, one pass),
    and so is any other pair the expansion put within ``NEAR_PAIR_SCALE`` of cancelling.
    So every distance has a small relative error, and a row equal to a center is at 0.
    (Sparse rows' own distances are exact but for float64 rounding of ``||c||^2``, so
    their near pairs are recomputed too; gathered rows are densified a few at a time.)
    """
    terms = center_terms(centers)
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    out = torch.empty(data.n_samples, centers.shape[0], dtype=centers.dtype, device=data.device)
    cancels = NEAR_PAIR_SCALE * torch.finfo(centers.dtype).eps ** 0.5
    native = native_rows_apply(data)
    itemsize = torch.finfo(centers.dtype).bits // 8
    gathered = max(1, chunk_budget(data, chunk_bytes) // (data.n_features * itemsize))
    for chunk in data.chunks(rows):
        block = out[chunk.start : chunk.stop]
        scores = chunk_scores(data, chunk, terms, block)
        scores.add_(chunk.sq_norms[:, None]).clamp_(min=0)
        nearest = scores.argmin(dim=1)
        near = scores <= cancels * (chunk.sq_norms[:, None] + terms.sq_norms[None, :])
        block.scatter_(1, nearest[:, None], exact_sq_distances(
            data, chunk, centers, nearest, native=native).to(block.dtype)[:, None])
        if data.dense_rows:  # (the own center's distance is exact now)
            near[torch.arange(near.shape[0], device=near.device), nearest] = False
        if bool(near.any()):  # other near pairs (a row between close centers): gathered
            for pairs in torch.nonzero(near).split(gathered):
                row, center = pairs.unbind(dim=1)
                x = data.select(chunk, row).x
                x = x.to_dense() if x.layout != torch.strided else x
                block[row, center] = (x.to(centers.dtype) - centers[center]).square_().sum(1)
        scores.sqrt_()
    return out
