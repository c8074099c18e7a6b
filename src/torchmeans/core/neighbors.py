"""Queries of fitted centers: each row's ``m`` nearest centers, and soft assignments.

:func:`nearest_k_centers` is ``kneighbors`` (scikit-learn's ``NearestNeighbors`` convention:
ascending distances, their center indices) with the centers as the indexed points;
:func:`soft_assignments` turns per-sample costs into the rows of ``soft_assign``. Like
:mod:`torchmeans.core.assign` they work chunk by chunk within the working-memory budget: no
``N x K`` block beyond one chunk's.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchmeans.backends import REGISTRY
from torchmeans.backends.base import Backend
from torchmeans.backends.torch import center_terms, chunk_scores
from torchmeans.core.assign import (
    NEAR_PAIR_SCALE,
    chunk_budget,
    chunk_rows_for,
    pair_sq_distances,
)
from torchmeans.core.validation import is_integer
from torchmeans.data.base import KMeansData

__all__ = [
    "Neighbors",
    "check_n_neighbors",
    "check_temperature",
    "first_m",
    "nearest_k_centers",
    "soft_assignments",
]


class Neighbors(NamedTuple):
    """The ``m`` nearest centers of every row, nearest first."""

    sq_distances: Tensor
    """``(n_samples, m)`` squared Euclidean distances, ascending along each row."""
    indices: Tensor
    """``(n_samples, m)`` int64 center indices; column 0 is ``predict``'s label."""


def check_n_neighbors(n_neighbors: Any, n_clusters: int) -> int:
    """Return ``n_neighbors`` as an int; ``ValueError`` unless an integer in ``[1, n_clusters]``."""
    if not is_integer(n_neighbors) or not 1 <= n_neighbors <= n_clusters:
        raise ValueError(f"n_neighbors must be an integer in [1, n_clusters={n_clusters}], "
                         f"got {n_neighbors!r}.")
    return int(n_neighbors)


def check_temperature(temperature: Any) -> float:
    """Return ``temperature`` as a float; ``ValueError`` unless a finite number above 0."""
    ok = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if not ok or not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")
    return float(temperature)


def first_m(scores: Tensor, m: int) -> Tensor:
    """Return the ``(rows, m)`` indices of each row's ``m`` least scores (lower index on ties).

    ``topk`` picks among equal scores in no documented order, so it is asked for ``m + 1``:
    the rows whose ``m``-th and ``m + 1``-th least scores are equal are redone by a stable
    sort, keeping the lower indices. Not in a useful order.
    """
    n_rows, k = scores.shape
    if m == k:
        return torch.arange(k, device=scores.device).expand(n_rows, k)
    values, indices = scores.topk(m + 1, dim=1, largest=False, sorted=True)
    tied = torch.nonzero(values[:, m - 1] == values[:, m]).squeeze(1)
    if tied.numel():
        indices[tied, :m] = scores[tied].sort(dim=1, stable=True).indices[:, :m]
    return indices[:, :m]


def nearest_k_centers(data: KMeansData, centers: Tensor, n_neighbors: int, *,
                      backend: Backend | None = None,
                      chunk_bytes: int | None = None) -> Neighbors:
    """Return the ``n_neighbors`` nearest centers of every row of ``data`` and their distances.

    Two passes: ``backend.nearest`` labels the rows as ``predict`` does, so column 0 is
    ``predict``'s label whatever the backend's rounding (with ``m = 1`` on dense rows, that
    pass and its exact distances are the answer); then per chunk the scores
    ``||c||^2 - 2 x.c`` (one GEMM) give the other candidates (:func:`first_m`). The kept
    pairs' squared distances are those of ``transform``: the own center's from the
    difference of the vectors (``backend.sq_distances``), the others from the expansion
    clamped at 0, recomputed from the differences where it cancels (``NEAR_PAIR_SCALE``).
    Order: ascending distance, the lower center index first on equal distances, the
    predicted center always first; a center that rounding puts nearer than the predicted
    one (a near-tie) is reported at the predicted one's distance, so rows stay ascending.

    Parameters
    ----------
    data : KMeansData
        The rows.
    centers : Tensor
        ``(k, n_features)`` centers in the data's shifted space.
    n_neighbors : int
        ``m``, in ``[1, k]`` (:func:`check_n_neighbors`).
    backend : Backend, optional
        Labels the rows (default: the torch reference).
    chunk_bytes : int, optional
        Working-memory budget per chunk: the scores and four ``(rows, m)`` blocks.
    """
    backend = backend or REGISTRY["torch"]
    k = centers.shape[0]
    m = check_n_neighbors(n_neighbors, k)
    labels = torch.empty(data.n_samples, dtype=torch.int64, device=data.device)
    own_only = m == 1 and data.dense_rows  # predict's pass gives it all (sparse: see below)
    if own_only:
        sq_out = torch.empty(data.n_samples, 1, dtype=centers.dtype, device=data.device)
    for chunk, chunk_labels in backend.nearest(data, centers, chunk_rows_for(data, k, chunk_bytes)):
        labels[chunk.start : chunk.stop] = chunk_labels
        if own_only:
            sq_out[chunk.start : chunk.stop, 0] = backend.sq_distances(data, chunk, centers,
                                                                       chunk_labels)
    if own_only:
        return Neighbors(sq_out, labels[:, None])
    terms = center_terms(centers)
    cancels = NEAR_PAIR_SCALE * torch.finfo(centers.dtype).eps ** 0.5
    itemsize = torch.finfo(centers.dtype).bits // 8
    gathered = max(1, chunk_budget(data, chunk_bytes) // (data.n_features * itemsize))
    sq_out = torch.empty(data.n_samples, m, dtype=centers.dtype, device=data.device)
    index_out = torch.empty(data.n_samples, m, dtype=torch.int64, device=data.device)
    for chunk in data.chunks(chunk_rows_for(data, k + 4 * m, chunk_bytes)):
        own = labels[chunk.start : chunk.stop]
        scores = chunk_scores(data, chunk, terms)
        scores.scatter_(1, own[:, None], -torch.inf)  # predict's label is kept, and first
        kept = first_m(scores, m)
        sq = scores.gather(1, kept).add_(chunk.sq_norms[:, None]).clamp_(min=0)
        near = sq <= cancels * (chunk.sq_norms[:, None] + terms.sq_norms[kept])
        is_own = kept == own[:, None]
        sq[is_own] = backend.sq_distances(data, chunk, centers, own).to(sq.dtype)
        if data.dense_rows:  # (the own center's distance is exact now)
            near &= ~is_own
        if bool(near.any()):
            row, column = torch.nonzero(near).unbind(dim=1)
            sq[row, column] = pair_sq_distances(data, chunk, centers, row, kept[row, column],
                                                gathered)
        # Order by (distance, index): sort by index, then a stable sort by distance, with
        # the own center's key below every distance.
        kept, by_index = kept.sort(dim=1)
        sq, is_own = sq.gather(1, by_index), is_own.gather(1, by_index)
        order = sq.masked_fill(is_own, -1.0).sort(dim=1, stable=True).indices
        sq, kept = sq.gather(1, order), kept.gather(1, order)
        sq[:, 1:] = sq[:, 1:].maximum(sq[:, :1])
        sq_out[chunk.start : chunk.stop] = sq
        index_out[chunk.start : chunk.stop] = kept
    return Neighbors(sq_out, index_out)


def soft_assignments(costs: Tensor, temperature: float, *, indices: Tensor | None = None,
                     n_clusters: int | None = None) -> Tensor:
    """Return ``softmax(-costs / temperature)`` along each row (``costs`` overwritten).

    ``costs`` are per-sample costs of the centers (squared distances; for cosine models
    ``1 - cos``): each row of the result sums to 1. The row minimum is subtracted first,
    so the largest term is ``exp(0)`` and nothing overflows. With ``indices`` (``(n, m)``,
    from :func:`nearest_k_centers`) the costs are those centers' only: the result is
    ``(n, n_clusters)`` with exact zeros for the other centers.
    """
    temperature = check_temperature(temperature)
    weights = costs.sub_(costs.amin(dim=1, keepdim=True)).div_(-temperature).exp_()
    weights.div_(weights.sum(dim=1, keepdim=True))
    if indices is None:
        return weights
    out = torch.zeros(costs.shape[0], n_clusters, dtype=costs.dtype, device=costs.device)
    return out.scatter_(1, indices, weights)
