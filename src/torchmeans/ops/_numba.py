"""Fused CPU kernels compiled by numba (optional: ``pip install torchmeans[numba]``).

After the distance product (a torch GEMM, as on every path), separate torch ops
read the chunk's score block several times (minimum, first index, previous-label
check) and then gather rows for the per-cluster sums. On the CPU with few
centers those passes, not the GEMM, dominate a Lloyd iteration
(benchmarks/RESULTS.md). The kernels here make one parallel pass over the score
block instead: per row the first minimum, the label change, and the weighted row
added to its cluster's sum, as scikit-learn's Cython Lloyd step does.

Exactness: labels are the first minimum of the same scores the torch path
computes (``torch.argmin``'s rule), so both paths give identical labels. Rows are
split into a number of blocks that depends only on the number of rows (never on
the thread count); each block sums into its own float64 partial, and the partials
are added in block order: results are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

try:
    import numba
except ImportError:  # pragma: no cover - exercised only without the extra
    numba = None

__all__ = ["assign_accumulate", "available", "first_minimum"]

MAX_BLOCKS = 32
"""Most partial accumulators per call (memory: ``MAX_BLOCKS * (k*d + k + 2)`` float64)."""
MIN_BLOCK_ROWS = 1024


def available() -> bool:
    """Return True when numba is installed."""
    return numba is not None


if numba is not None:

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _assign_accumulate_kernel(scores, x, weight, labels, block, partial):  # pragma: no cover
        n_rows, k = scores.shape
        d = x.shape[1]
        weighted = weight.shape[0] > 0
        for b in numba.prange(partial.shape[0]):
            acc = partial[b]
            inertia = 0.0
            changed = 0
            for i in range(b * block, min(n_rows, (b + 1) * block)):
                best = scores[i, 0]
                label = 0
                for j in range(1, k):
                    if scores[i, j] < best:
                        best = scores[i, j]
                        label = j
                if labels[i] != label:
                    changed += 1
                    labels[i] = label
                w = weight[i] if weighted else 1.0
                inertia += w * best
                acc[k * d + label] += w
                base = label * d
                for f in range(d):
                    acc[base + f] += w * x[i, f]
            acc[k * d + k] = inertia
            acc[k * d + k + 1] = changed

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _first_minimum_kernel(scores, labels, values):  # pragma: no cover
        n_rows, k = scores.shape
        for i in numba.prange(n_rows):
            best = scores[i, 0]
            label = 0
            for j in range(1, k):
                if scores[i, j] < best:
                    best = scores[i, j]
                    label = j
            labels[i] = label
            values[i] = best


def _set_threads() -> None:
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def assign_accumulate(scores: Tensor, x: Tensor, weight: Tensor | None, labels: Tensor,
                      flat: Tensor) -> None:
    """Label each row by its first minimum score and add it to the flat accumulator.

    Parameters
    ----------
    scores : Tensor
        ``(rows, k)`` CPU scores ``||c||^2 - 2 x.c`` (contiguous).
    x : Tensor
        ``(rows, d)`` dense CPU rows in the scores' dtype.
    weight : Tensor or None
        ``(rows,)`` sample weights; None for unit weights.
    labels : Tensor
        ``(rows,)`` int64 previous labels (-1 for none), overwritten with the new ones.
    flat : Tensor
        Lloyd's flat accumulator ``[sums (k*d) | weights (k) | partial inertia | n changed]``,
        added to in place.
    """
    n_rows = scores.shape[0]
    n_blocks = max(1, min(MAX_BLOCKS, math.ceil(n_rows / MIN_BLOCK_ROWS)))
    block = math.ceil(n_rows / n_blocks)
    partial = np.zeros((n_blocks, flat.numel()), dtype=np.float64)
    weight_array = np.empty(0, dtype=np.float64) if weight is None else weight.numpy()
    _set_threads()
    _assign_accumulate_kernel(scores.numpy(), x.numpy(), weight_array, labels.numpy(), block,
                              partial)
    flat += torch.from_numpy(partial.sum(axis=0)).to(flat.dtype)


def first_minimum(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum of each row of ``(rows, k)`` CPU scores and its first index (int64)."""
    labels = torch.empty(scores.shape[0], dtype=torch.int64)
    values = torch.empty(scores.shape[0], dtype=scores.dtype)
    _set_threads()
    _first_minimum_kernel(scores.numpy(), labels.numpy(), values.numpy())
    return values, labels
