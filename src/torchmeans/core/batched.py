"""Many independent problems as a leading dimension: the batch, its blocks and its passes.

``B`` problems of ``N`` rows each (``(B, N, D)``; a mask marks the valid rows of ragged
problems) are held as one :class:`ProblemBatch`. Its passes do what a single fit's
backend pass does, with the problems as a leading dimension: the scores of a block of
problems are one ``baddbmm``, the labels their first minimum, and the per-cluster sums go
through :func:`~torchmeans.core.accumulate.segment_sums` into the accumulator layout of
:mod:`torchmeans.core.accumulate`, one row per problem. The Lloyd loop over them is
:func:`torchmeans.core.lloyd.batched_lloyd` (the single fit's update, relocation and
stopping rule) and their seeding is
:func:`torchmeans.core.seeding.batched_kmeans_plusplus_centers`.

A problem of a pass is a pair (problem of the batch, restart): ``source`` maps each one to
the batch's problem whose rows it reads, so restarts are never copies of the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from torchmeans.core.accumulate import Accumulator, accumulator_width, segment_sums

__all__ = ["ProblemBatch", "batched_pass", "block_sizes", "final_assignment", "groups",
           "select"]


@dataclass
class ProblemBatch:
    """Checked problems: shifted rows, weights and per-problem constants."""

    x: Tensor
    """``(B, N, D)`` rows minus their problem's offset, in the accumulation dtype; zero
    outside the mask."""
    weight: Tensor
    """``(B, N)`` sample weights, zero outside the mask."""
    valid: Tensor
    """``(B, N)`` bool mask."""
    sq_norms: Tensor
    """``(B, N)`` squared norms of the shifted rows."""
    offset: Tensor
    """``(B, D)`` each problem's offset (its mean; zero for cosine)."""
    variance: Tensor
    """``(B,)`` mean per-feature variance of each problem's valid rows (``tol``'s scale)."""
    budget: int
    """Working-memory budget in bytes for one block of scores."""
    unit_weights: bool
    """Every row is valid and weighs 1 (the sums skip the multiplication by weights)."""


def block_sizes(n_problems: int, n_samples: int, width: int, itemsize: int,
                budget: int) -> tuple[int, int]:
    """Problems per group and rows per chunk so that a ``(group, rows, width)`` block fits."""
    per_problem = n_samples * width * itemsize
    group = max(1, min(n_problems, budget // max(1, per_problem)))
    rows = n_samples if group > 1 else max(1, min(n_samples, budget // max(1, width * itemsize)))
    return group, rows


def select(tensor: Tensor, problems: Tensor) -> Tensor:
    """Return ``tensor[problems]``, as a view when ``problems`` are consecutive.

    Consecutive problems (every problem once) are the common case; restarts and
    finished problems need a copy.
    """
    first, count = int(problems[0]), problems.numel()
    if int(problems[-1]) - first + 1 == count and bool((problems.diff() == 1).all()):
        return tensor[first : first + count]
    return tensor[problems]


def groups(n_problems: int, group: int, device: torch.device) -> Iterator[Tensor]:
    """Positions ``0 .. n_problems - 1`` in consecutive groups of at most ``group``."""
    ids = torch.arange(n_problems, device=device)
    for start in range(0, n_problems, group):
        yield ids[start : start + group]


def batched_pass(problems: ProblemBatch, source: Tensor, centers: Tensor, labels: Tensor,
                 deterministic: bool) -> tuple[Tensor, Tensor]:
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


def final_assignment(problems: ProblemBatch, source: Tensor, centers: Tensor,
                     deterministic: bool) -> tuple[Tensor, Tensor]:
    """Labels of every row for ``centers``, and each problem's exact weighted inertia.

    The inertia sums ``w ||x - c||^2`` from differences, as a single fit's final
    assignment does (the scores' norm expansion cancels near the centers).
    """
    labels = torch.full((source.numel(), problems.x.shape[1]), -1, dtype=torch.int64,
                        device=problems.x.device)
    labels = batched_pass(problems, source, centers, labels, deterministic)[0]
    inertia = centers.new_empty(source.numel())
    n_features = problems.x.shape[2]
    group, _ = block_sizes(source.numel(), problems.x.shape[1], n_features,
                           problems.x.element_size(), problems.budget)
    for ids in groups(source.numel(), group, source.device):
        assigned = torch.gather(centers[ids], 1,
                                labels[ids].clamp(min=0)[..., None].expand(-1, -1, n_features))
        distances = (select(problems.x, source[ids]) - assigned).square_().sum(dim=2)
        inertia[ids] = (distances * select(problems.weight, source[ids])).sum(dim=1)
    return labels, inertia
