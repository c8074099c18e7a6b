"""Assignments of whole data to given centers: labels with the exact inertia, distances.

Fit (its final assignment), predict, score, transform and the metrics go through the
functions here; each takes the :class:`~torchmeans.backends.base.Backend` that labels the
rows (the fit's, :func:`torchmeans.backends.predict_backend`) and works chunk by chunk
within a working-memory budget, never on an ``N x K`` matrix.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from torchmeans.backends import REGISTRY
from torchmeans.backends.base import Backend
from torchmeans.backends.torch import center_terms, chunk_scores
from torchmeans.data.base import Chunk, KMeansData, rows_per_chunk, supports_float64

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "Assignment",
    "assign",
    "chunk_budget",
    "chunk_rows_for",
    "inertia_of",
    "pair_sq_distances",
    "pairwise_distances",
]

DEFAULT_CHUNK_BYTES = {"cpu": 1 << 24}
"""Default working-memory budget of one chunk's temporaries, by device type.

16 MiB on the CPU, so the ``(rows, k)`` score block stays near the caches (RESULTS.md,
"Where the Lloyd step's time went at c6da09f"). Accelerators use ``FALLBACK_CHUNK_BYTES``.
"""
FALLBACK_CHUNK_BYTES = 1 << 28


class Assignment(NamedTuple):
    """Labels of every row, and the exact weighted inertia they give."""

    labels: Tensor
    inertia: Tensor


def chunk_budget(data: KMeansData, chunk_bytes: int | None) -> int:
    """Return the working-memory budget in bytes: ``chunk_bytes`` or the device's default."""
    if chunk_bytes is None:
        return DEFAULT_CHUNK_BYTES.get(data.device.type, FALLBACK_CHUNK_BYTES)
    return int(chunk_bytes)


def chunk_rows_for(data: KMeansData, n_clusters: int, chunk_bytes: int | None) -> int:
    """Rows per chunk for ``data`` against ``n_clusters`` centers within ``chunk_bytes``."""
    itemsize = torch.finfo(data.acc_dtype).bits // 8
    return rows_per_chunk(chunk_budget(data, chunk_bytes), n_clusters, data.dense_width, itemsize)


def assign(
    data: KMeansData,
    centers: Tensor,
    *,
    backend: Backend | None = None,
    chunk_bytes: int | None = None,
    labels_out: Tensor | None = None,
    previous: Tensor | None = None,
) -> Assignment:
    """Assign every row of ``data`` to its nearest center and return the exact inertia.

    The inertia is summed from exact distances ``||x - c_label||^2`` (not from the
    expansion), weighted by the data's sample weights.

    Parameters
    ----------
    data : KMeansData
        The rows.
    centers : Tensor
        ``(k, n_features)`` centers in the data's shifted space.
    backend : Backend, optional
        Labels and distances come from it (default: the torch reference).
    chunk_bytes : int, optional
        Working-memory budget per chunk.
    labels_out : Tensor, optional
        ``(n_samples,)`` int64 buffer to write the labels into.
    previous : Tensor, optional
        ``(n_samples,)`` labels from a nearby set of centers (e.g. the last Lloyd
        iteration's): may speed up the search, same result.

    Returns
    -------
    Assignment
        ``labels`` (int64) and ``inertia`` (a 0-d tensor on the data's device).
    """
    backend = backend or REGISTRY["torch"]
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    labels = labels_out
    if labels is None:
        labels = torch.empty(data.n_samples, dtype=torch.int64, device=data.device)
    inertia = torch.zeros((), dtype=_inertia_dtype(data), device=data.device)
    for chunk, chunk_labels in backend.nearest(data, centers, rows, previous=previous):
        labels[chunk.start : chunk.stop] = chunk_labels
        distances = backend.sq_distances(data, chunk, centers, chunk_labels)
        inertia += _weighted_total(distances, chunk.weight, inertia.dtype)
    return Assignment(labels, inertia)


def _inertia_dtype(data: KMeansData) -> torch.dtype:
    """Inertia is summed in float64 where the device has it: float32 totals overflow at 3e38."""
    return torch.float64 if supports_float64(data.device) else data.acc_dtype


def _weighted_total(distances: Tensor, weight: Tensor | None, dtype: torch.dtype) -> Tensor:
    wide = distances.to(dtype)
    return wide.sum() if weight is None else weight.to(dtype) @ wide


def inertia_of(data: KMeansData, centers: Tensor, labels: Tensor, *,
               backend: Backend | None = None, chunk_bytes: int | None = None,
               distances: Tensor | None = None) -> Tensor:
    """Exact weighted inertia ``sum_i w_i ||x_i - centers[labels_i]||^2`` (a 0-d tensor).

    The distances come from ``backend`` (default: the torch reference), summed in the
    chunks of its :meth:`~Backend.nearest`: the same total as :func:`assign`'s.
    ``distances``: all rows' distances already computed as ``backend`` computes them
    (:attr:`~torchmeans.core.lloyd.LloydResult.distances`), summed in the same chunks.
    """
    backend = backend or REGISTRY["torch"]
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    inertia = torch.zeros((), dtype=_inertia_dtype(data), device=data.device)
    for chunk in data.chunks(backend.nearest_chunk_rows(data, rows, centers.shape[0])):
        part = (backend.sq_distances(data, chunk, centers, labels[chunk.start : chunk.stop])
                if distances is None else distances[chunk.start : chunk.stop])
        inertia += _weighted_total(part, chunk.weight, inertia.dtype)
    return inertia


NEAR_PAIR_SCALE = 16.0
"""A squared distance at most ``NEAR_PAIR_SCALE * sqrt(eps) * (||x||^2 + ||c||^2)`` comes out
of the norm expansion with a large relative error (the terms cancel); :func:`pairwise_distances`
recomputes it from the difference of the vectors."""


def pairwise_distances(
    data: KMeansData, centers: Tensor, *, backend: Backend | None = None,
    chunk_bytes: int | None = None,
) -> Tensor:
    """Return the ``(n_samples, k)`` Euclidean distances of every row to every center.

    This is the output of ``transform``; it is filled chunk by chunk by the norm
    expansion, except where that cancels: each row's distance to its nearest center is
    recomputed from the difference of the vectors (``backend.sq_distances``, one pass),
    and so is any other pair the expansion put within ``NEAR_PAIR_SCALE`` of cancelling.
    So every distance has a small relative error, and a row equal to a center is at 0.
    (Sparse rows' own distances are exact but for float64 rounding of ``||c||^2``, so
    their near pairs are recomputed too; gathered rows are densified a few at a time.)
    """
    terms = center_terms(centers)
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    out = torch.empty(data.n_samples, centers.shape[0], dtype=centers.dtype, device=data.device)
    cancels = NEAR_PAIR_SCALE * torch.finfo(centers.dtype).eps ** 0.5
    backend = backend or REGISTRY["torch"]
    itemsize = torch.finfo(centers.dtype).bits // 8
    gathered = max(1, chunk_budget(data, chunk_bytes) // (data.n_features * itemsize))
    for chunk in data.chunks(rows):
        block = out[chunk.start : chunk.stop]
        scores = chunk_scores(data, chunk, terms, block)
        scores.add_(chunk.sq_norms[:, None]).clamp_(min=0)
        nearest = scores.argmin(dim=1)
        near = scores <= cancels * (chunk.sq_norms[:, None] + terms.sq_norms[None, :])
        block.scatter_(1, nearest[:, None], backend.sq_distances(
            data, chunk, centers, nearest).to(block.dtype)[:, None])
        if data.dense_rows:  # (the own center's distance is exact now)
            near[torch.arange(near.shape[0], device=near.device), nearest] = False
        if bool(near.any()):  # other near pairs (a row between close centers): gathered
            row, center = torch.nonzero(near).unbind(dim=1)
            block[row, center] = pair_sq_distances(data, chunk, centers, row, center, gathered)
        scores.sqrt_()
    return out


def pair_sq_distances(data: KMeansData, chunk: Chunk, centers: Tensor, rows: Tensor,
                      center_index: Tensor, block: int) -> Tensor:
    """Return ``||x_rows[i] - centers[center_index[i]]||^2`` from the differences.

    For the pairs the norm expansion cancels on: the rows (indices within ``chunk``) are
    gathered ``block`` pairs at a time (sparse rows densified), so the temporaries stay
    within the chunk budget.
    """
    out = torch.empty(rows.numel(), dtype=centers.dtype, device=centers.device)
    for start in range(0, rows.numel(), block):
        row, center = rows[start : start + block], center_index[start : start + block]
        x = data.select(chunk, row).x
        x = x.to_dense() if x.layout != torch.strided else x
        out[start : start + row.numel()] = (x.to(centers.dtype) - centers[center]).square_().sum(1)
    return out
