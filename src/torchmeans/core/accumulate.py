"""The update step: the accumulator layout of a pass, and rows summed into clusters.

A pass over the data fills one flat accumulator (:class:`Accumulator`): ``[sums (k*d) |
weights (k) | partial inertia | n changed]``. Every backend's pass returns this layout, a
distributed fit all-reduces it in one call, and the Lloyd loop reads it back with
:meth:`Accumulator.parts`; the pass over many independent problems
(:meth:`~torchmeans.backends.base.Backend.batched_pass`) returns one such row per problem, read with
:meth:`Accumulator.split`.

Every per-cluster sum of the engine (Lloyd's accumulators, the batched problems'
sums, the native kernel's fallbacks) goes through :func:`segment_sums`, so that
determinism is decided in one place:

- On the CPU, ``index_add_`` adds the rows in index order: the same sums, bit for
  bit, on every run.
- On CUDA, ``index_add_`` uses atomic additions whose order changes from run to run
  (so the last bits of the sums do). With ``deterministic=True`` (the default) the
  rows are sorted by segment (a stable sort) and each segment is summed in that
  fixed order by ``torch.segment_reduce``; with ``deterministic=False`` the atomics
  are used (faster when segments are long).
- Other accelerators (MPS, XPU) have no ``segment_reduce``: ``index_add_`` there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Accumulator", "accumulator_width", "new_accumulator", "segment_sums",
           "sorted_segment_sums"]


def accumulator_width(n_clusters: int, n_features: int) -> int:
    """Length of the flat accumulator of a pass: ``k * d + k + 2``."""
    return n_clusters * n_features + n_clusters + 2


class Accumulator(NamedTuple):
    """Views into a flat accumulator (see the module's docstring)."""

    sums: Tensor
    """``(k, d)`` weighted per-cluster sums."""
    weights: Tensor
    """``(k,)`` per-cluster weights."""
    partial_inertia: Tensor
    """0-d: ``sum w (||c||^2 - 2 x.c)`` of the labels (lacks ``sum w ||x||^2``); NaN when the
    pass does not compute it."""
    n_changed: Tensor
    """0-d: the number of labels that changed."""

    @classmethod
    def split(cls, flat: Tensor, n_clusters: int, n_features: int) -> Accumulator:
        """Return views of ``flat`` (its last dimension) as the four parts."""
        sums, weights, scalars = flat.split([n_clusters * n_features, n_clusters, 2], dim=-1)
        return cls(sums.unflatten(-1, (n_clusters, n_features)), weights, scalars[..., 0],
                   scalars[..., 1])

    @staticmethod
    def parts(flat: Tensor, n_clusters: int, n_features: int) -> tuple[Tensor, Tensor, Tensor]:
        """Return views of a 1-d ``flat``: ``(k, d)`` sums, ``(k,)`` weights, the 2 scalars.

        Three slices (fewer ops than :meth:`split`: a Lloyd iteration's fixed cost).
        """
        width = n_clusters * n_features
        return (flat[:width].view(n_clusters, n_features), flat[width : width + n_clusters],
                flat[width + n_clusters :])


def new_accumulator(n_clusters: int, n_features: int, dtype: torch.dtype,
                    device: torch.device) -> tuple[Tensor, Accumulator]:
    """Return a zeroed flat accumulator and its views."""
    flat = torch.zeros(accumulator_width(n_clusters, n_features), dtype=dtype, device=device)
    return flat, Accumulator.split(flat, n_clusters, n_features)


def segment_sums(values: Tensor, index: Tensor, n_segments: int, *,
                 deterministic: bool = True, out: Tensor | None = None,
                 alpha: float = 1.0) -> Tensor:
    """Return ``out[s] = sum of values[i] over the i with index[i] == s``.

    Parameters
    ----------
    values : Tensor
        ``(n, ...)`` rows to add (1-D values are scalars per row).
    index : Tensor
        ``(n,)`` int64 segment of each row, in ``[0, n_segments)``.
    n_segments : int
        Number of segments (rows of the result).
    deterministic : bool
        On CUDA, sum each segment in a fixed order instead of with atomics (the CPU
        is always deterministic; other accelerators use ``index_add_``).
    out : Tensor, optional
        ``(n_segments, ...)`` accumulator: ``alpha`` times the sums are added into it
        (in place, no temporary on the ``index_add_`` path) and it is returned.
    alpha : float
        Scale of the sums added into ``out``.

    Returns
    -------
    Tensor
        ``(n_segments, ...)`` sums in ``values``' dtype; empty segments are zero.
    """
    if values.device.type != "cuda" or not deterministic or values.shape[0] == 0:
        if out is None:
            out = values.new_zeros((n_segments, *values.shape[1:]))
        return out.index_add_(0, index, values, alpha=alpha)
    sums = sorted_segment_sums(values, index, n_segments)
    return sums if out is None else out.add_(sums, alpha=alpha)


def sorted_segment_sums(values: Tensor, index: Tensor, n_segments: int) -> Tensor:
    """Return :func:`segment_sums` computed without atomics, on any device.

    A stable sort of the rows by segment, then each segment summed in order by
    ``torch.segment_reduce``: what CUDA runs by default.
    """
    order = torch.argsort(index, stable=True)
    lengths = torch.bincount(index, minlength=n_segments)
    return torch.segment_reduce(values.index_select(0, order), "sum", lengths=lengths,
                                unsafe=True)
