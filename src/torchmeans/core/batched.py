"""The final assignment of batched problems (the batch is a leading dimension of the engine).

The batch is :class:`~torchmeans.data.batched.ProblemBatch`; its passes are the backend's
:meth:`~torchmeans.backends.base.Backend.batched_pass` (the scores of a block of problems one
``baddbmm``, the labels their first minimum, the per-cluster sums through
:func:`~torchmeans.core.accumulate.segment_sums` into the accumulator layout, one row per
problem). The Lloyd loop over them is :func:`torchmeans.core.lloyd.batched_lloyd` (the single
fit's update, relocation and stopping rule) and their seeding is
:func:`torchmeans.core.seeding.batched_kmeans_plusplus_centers`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchmeans.backends import get_backend
from torchmeans.backends.base import Backend
from torchmeans.data.batched import ProblemBatch, block_sizes, groups, select

__all__ = ["final_assignment"]


def final_assignment(problems: ProblemBatch, source: Tensor, centers: Tensor,
                     deterministic: bool, backend: Backend | None = None
                     ) -> tuple[Tensor, Tensor]:
    """Labels of every row for ``centers``, and each problem's exact weighted inertia.

    The inertia sums ``w ||x - c||^2`` from differences, as a single fit's final
    assignment does (the scores' norm expansion cancels near the centers).
    """
    labels = torch.full((source.numel(), problems.x.shape[1]), -1, dtype=torch.int64,
                        device=problems.x.device)
    backend = backend or get_backend("torch")
    labels = backend.batched_pass(problems, source, centers, labels, deterministic)[0]
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
