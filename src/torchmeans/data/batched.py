"""Many independent problems held as one batch: ``(B, N, D)`` rows and their constants.

A :class:`ProblemBatch` is the data of batched fits (``batched_kmeans``, ``BatchedKMeans``):
every problem is a leading index, ragged problems are padded and masked. Its passes are the
backend's :meth:`~torchmeans.backends.base.Backend.batched_pass`; :func:`block_sizes`,
:func:`groups` and :func:`select` cut it into blocks of problems that fit the memory budget.
A problem of a pass is a pair (problem of the batch, restart): ``source`` maps each one to
the batch's problem whose rows it reads, so restarts are never copies of the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ProblemBatch", "block_sizes", "groups", "select"]


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
