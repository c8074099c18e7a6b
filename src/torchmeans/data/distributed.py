"""Fits across processes with ``torch.distributed``: the few collectives the engine needs.

When a process group is initialised (e.g. under ``torchrun``) each rank passes its own
rows; a :class:`Collective` turns the per-rank quantities into global ones, so every rank
runs the same iterations on the same centers:

- the shift (global column means) and the row count, before any pass;
- per iteration, one flat ``all_reduce`` of (sums, weights, partial inertia, changed
  labels) -- the ``reduce`` hook of :func:`torchmeans.core.lloyd.lloyd`;
- the tolerance's mean variance, the inertia of the final assignment, ``n_init``'s choice;
- the candidates for empty-cluster relocation (gathered, then chosen identically);
- the seeding sample: every rank draws the same global row indices (same seed), takes the
  rows it holds, and the sample is gathered in draw order, so k-means++ runs on the very
  sample a single process would draw from the concatenated data.

With one process every method is the identity, so the single-process engine is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["LOCAL", "Collective", "global_mean", "global_mean_variance"]


class Collective:
    """Collectives over the default process group, or the identity for one process."""

    def __init__(self, enabled: bool | None = None) -> None:
        initialized = dist.is_available() and dist.is_initialized()
        if enabled and not initialized:
            raise ValueError("distributed=True needs an initialised torch.distributed process "
                             "group (e.g. run under torchrun and call init_process_group).")
        self.active = bool(initialized and dist.get_world_size() > 1 and enabled is not False)
        self.rank = dist.get_rank() if self.active else 0
        self.world_size = dist.get_world_size() if self.active else 1

    def __bool__(self) -> bool:
        return self.active

    def sum(self, tensor: Tensor) -> Tensor:
        """Sum of ``tensor`` over ranks (a new tensor)."""
        if not self.active:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def all(self, flag: bool, device: torch.device) -> bool:
        """Return True when ``flag`` holds on every rank."""
        if not self.active:
            return flag
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def broadcast_int(self, value: int, device: torch.device) -> int:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def gather(self, tensor: Tensor) -> Tensor:
        """Concatenation over ranks, in rank order, of tensors whose first dimension varies."""
        if not self.active:
            return tensor
        size = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        longest = int(max(s.item() for s in sizes))
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(s.item())] for part, s in zip(parts, sizes, strict=True)])

    def row_range(self, n_local: int, device: torch.device) -> tuple[int, int]:
        """Return the first global row of this rank and the global row count."""
        if not self.active:
            return 0, n_local
        counts = self.gather(torch.tensor([n_local], dtype=torch.int64, device=device))
        return int(counts[: self.rank].sum()), int(counts.sum())


LOCAL = Collective(False)
"""One process: every collective is the identity (the data's default)."""


def global_mean(X: Tensor, collective: Collective) -> tuple[Tensor, int]:
    """Column means of the rows of all ranks (float64 where possible) and the row count."""
    wide = torch.float64 if X.device.type != "mps" else torch.float32
    total = collective.sum(torch.cat([X.sum(dim=0, dtype=wide),
                                      torch.tensor([X.shape[0]], dtype=wide, device=X.device)]))
    n_global = int(total[-1].item())
    return total[:-1] / max(n_global, 1), n_global


def global_mean_variance(data: Any) -> float:
    """Mean per-feature variance of the rows of all ranks (as ``KMeansData.mean_variance``)."""
    collective = data.collective
    if not collective:
        return float(data.mean_variance())
    wide = torch.float64 if data.device.type != "mps" else torch.float32
    parts = torch.cat([data.sq_norms.sum(dtype=wide).reshape(1),
                       data._column_sums.to(wide),
                       torch.tensor([data.n_samples], dtype=wide, device=data.device)])
    total = collective.sum(parts)
    n = total[-1].clamp(min=1)
    mean = total[1:-1] / n
    mean_square = total[0] / (n * data.n_features)
    return float((mean_square - mean.square().mean()).clamp(min=0))
