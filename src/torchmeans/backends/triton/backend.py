"""The Triton backend: fused CUDA kernels (:mod:`torchmeans.backends.triton.kernels`).

Each chunk's nearest centers come from one fused distance + argmin kernel (no ``rows x k``
block in memory); the sums from a deterministic sort-based reduction. Dense float32,
float16 and bfloat16 rows on CUDA (anywhere under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import torch
from torch import Tensor

from torchmeans.backends.torch import TorchBackend, center_terms, certified_nearest
from torchmeans.backends.triton import kernels
from torchmeans.core.accumulate import new_accumulator
from torchmeans.core.warning import warn
from torchmeans.data.base import KMeansData, weighted_sum

__all__ = ["TritonBackend"]


@functools.cache
def _warn_once(message: str) -> None:
    warn(message, RuntimeWarning)


class TritonBackend(TorchBackend):
    """Fused Triton Lloyd passes; the torch reference for everything else."""

    name: ClassVar[str] = "triton"
    exact_pass_labels: ClassVar[bool] = False
    """float32 scores summed in the kernel's own order: a near-tie can go the other way than
    in the torch GEMM (as between two BLAS libraries), so a fit's labels come from a final
    :meth:`nearest` (torch's) pass."""

    def unsupported(self, data: KMeansData) -> str | None:  # noqa: D102
        if not data.dense_rows:
            return "they need dense rows, the data is sparse"
        if data.acc_dtype == torch.float64:
            return "they compute in float32/float16/bfloat16, the data is float64"
        return kernels.unavailable_reason(data.device)

    def auto_applies(self, data: KMeansData, n_clusters: int, budget: int) -> bool:
        """On CUDA where the kernels run and pass their self-check (else a warning, once)."""
        if data.device.type != "cuda" or self.unsupported(data) is not None:
            return False
        problem = kernels.self_check(data.device, data.low_dtype or data.acc_dtype)
        if problem is not None:
            _warn_once(f"torchmeans: the Triton kernels are not used ({problem}); the torch "
                       "path runs instead (same results). Pass backend='torch' to silence.")
            return False
        return True

    def lloyd_pass(self, data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
                   incremental: bool = False) -> Tensor:
        """:meth:`TorchBackend.lloyd_pass` with the fused kernels (a float64 accumulator).

        float32 scores are summed in the kernel's order; low-precision scores are
        certified against the float32 torch path (:func:`~torchmeans.backends.torch.
        certified_nearest`). The sums come from the deterministic sort-based reduction
        (incremental passes: the moved rows, added to their new clusters and removed
        from their old ones).
        """
        n_clusters, n_features = centers.shape
        flat, acc = new_accumulator(n_clusters, n_features, torch.float64, centers.device)
        terms = center_terms(centers)
        low = data.low_dtype
        centers_t = terms.transposed.to(low or centers.dtype)
        sq_norms = terms.sq_norms.float()
        for chunk in data.chunks(rows):
            x = chunk.x.contiguous()
            if low is None:  # float32, summed in the kernel's order (see exact_pass_labels)
                partial, new_labels = kernels.nearest(x, centers_t, sq_norms)
            else:  # low-precision scores, certified: the float32 torch path's labels
                best, labels_fused, second = kernels.nearest(x.to(low), centers_t, sq_norms,
                                                             second=True)
                partial, new_labels = certified_nearest(
                    data, chunk, terms, (best, second, labels_fused),
                    product_dtype=low).values_and_labels
            chunk_labels = labels[chunk.start : chunk.stop]
            moved = chunk_labels != new_labels
            acc.n_changed.add_(moved.sum())
            acc.partial_inertia.add_(weighted_sum(partial, chunk.weight))
            if incremental:
                rows_moved = torch.nonzero(moved).squeeze(1)
                x_moved = x.index_select(0, rows_moved)
                weight = None if chunk.weight is None else chunk.weight.index_select(0, rows_moved)
                for cluster_of, sign in ((new_labels, 1), (chunk_labels, -1)):
                    sums, weights = kernels.segment_sums(x_moved, cluster_of[rows_moved], weight,
                                                         n_clusters)
                    acc.sums.add_(sums, alpha=sign)
                    acc.weights.add_(weights, alpha=sign)
            else:
                sums, weights = kernels.segment_sums(x, new_labels, chunk.weight, n_clusters)
                acc.sums.add_(sums)
                acc.weights.add_(weights)
            chunk_labels.copy_(new_labels)
        return flat
