"""In-memory sparse rows: a CSR matrix (e.g. TF-IDF features), never densified."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from torchmeans.data.base import (
    Chunk,
    KMeansData,
    csr_tensor,
    expand_scores,
    row_ranges,
    supports_float64,
)

__all__ = ["SparseData"]


class SparseData(KMeansData):
    """A sparse CSR matrix (e.g. TF-IDF features) held in memory, never densified.

    Parameters
    ----------
    X : Tensor
        A ``torch.sparse_csr`` tensor of shape ``(n_samples, n_features)``.
    sample_weight : Tensor
        ``(n_samples,)`` non-negative weights.

    Notes
    -----
    Like scikit-learn, sparse data are not shifted by their mean (that would
    make them dense): ``offset`` is zero.
    """

    def __init__(self, X: Tensor, sample_weight: Tensor) -> None:
        self.n_samples, self.n_features = X.shape
        self.dense_rows = False
        self.dense_width = 0
        self.dtype = X.dtype
        self.device = X.device
        self._set_sample_weight(sample_weight)
        self.offset = torch.zeros(self.n_features, dtype=self.acc_dtype, device=self.device)
        self._crow = X.crow_indices()
        self._col = X.col_indices()
        self._values = X.values()
        self._row_ids = torch.repeat_interleave(
            torch.arange(self.n_samples, device=self.device), self._crow.diff()
        )
        self._crow_host = self._crow.cpu()
        norms = torch.zeros(self.n_samples, dtype=self.acc_dtype, device=self.device)
        norms.index_add_(0, self._row_ids, self._values.to(self.acc_dtype).square())
        self.sq_norms = norms

    def _slice(self, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        lo, hi = int(self._crow_host[start]), int(self._crow_host[stop])
        crow = self._crow[start : stop + 1] - lo
        return crow, self._col[lo:hi], self._values[lo:hi], self._row_ids[lo:hi] - start

    def chunks(self, rows: int) -> Iterator[Chunk]:  # noqa: D102
        for start, stop in row_ranges(self.n_samples, rows):
            crow, col, values, _ = self._slice(start, stop)
            x = csr_tensor(crow, col, values, (stop - start, self.n_features))
            yield Chunk(start, stop, x, self._chunk_weight(start, stop), self)

    def scores(self, x: Tensor, centers_t: Tensor, center_sq_norms: Tensor,  # noqa: D102
               out: Tensor | None = None, transposed: bool = False) -> Tensor:
        return expand_scores(x @ centers_t.to(x.dtype), center_sq_norms, out, transposed)

    def _coo(self, chunk: Chunk) -> tuple[Tensor, Tensor, Tensor]:
        if chunk.index is None:
            _, col, values, rows = self._slice(chunk.start, chunk.stop)
        else:
            crow, col, values = chunk.x.crow_indices(), chunk.x.col_indices(), chunk.x.values()
            rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=self.device),
                                           crow.diff())
        return rows, col, values.to(self.acc_dtype)

    def _select_rows(self, x: Tensor, rows: Tensor) -> Tensor:
        crow, col, values = gather_csr_rows(x.crow_indices(), x.col_indices(), x.values(), rows)
        return csr_tensor(crow, col, values, (rows.numel(), self.n_features))

    def subset(self, indices: Tensor) -> SparseData:  # noqa: D102
        crow, col, values = gather_csr_rows(self._crow, self._col, self._values, indices)
        rows = csr_tensor(crow, col, values, (indices.numel(), self.n_features))
        return SparseData(rows, self.sample_weight[indices])

    def _add_sums(self, chunk: Chunk, labels: Tensor, sums: Tensor, rows: Tensor | None,
                  alpha: float) -> None:
        row, col, values = self._coo(chunk)
        if rows is not None:
            # Labels are given for the selected rows only: spread them over the chunk.
            full = torch.full((chunk.stop - chunk.start,), -1, dtype=labels.dtype,
                              device=self.device)
            full[rows] = labels
            labels = full
            keep = labels[row] >= 0
            row, col, values = row[keep], col[keep], values[keep]
        if chunk.weight is not None:
            values = values * chunk.weight[row]
        flat_index = labels[row] * self.n_features + col
        sums.view(-1).index_add_(0, flat_index, values.to(sums.dtype), alpha=alpha)

    def sq_distances_to(self, chunk: Chunk, centers: Tensor, labels: Tensor) -> Tensor:  # noqa: D102
        # ||c||^2 + sum over the row's non-zeros of (x_j - c_j)^2 - c_j^2: O(nnz), no dense
        # row, and no cancellation of ||x||^2 against 2 x.c (a row on its center is at 0).
        # In float64 where the device has it: ||c||^2 less the support's part cancels when
        # the center lies on the row's support.
        rows, col, values = self._coo(chunk)
        wide = torch.float64 if supports_float64(self.device) else centers.dtype
        wide_centers = centers.to(wide)
        on_support = wide_centers[labels[rows], col]
        distances = wide_centers.square().sum(dim=1)[labels]
        distances.index_add_(0, rows, (values.to(wide) - on_support).square_()
                             - on_support.square())
        return distances.clamp_(min=0).to(centers.dtype)

    def take(self, indices: Tensor) -> Tensor:  # noqa: D102
        crow, col, values = gather_csr_rows(self._crow, self._col, self._values, indices)
        out_rows = torch.repeat_interleave(torch.arange(indices.numel(), device=self.device),
                                           crow.diff())
        dense = torch.zeros(len(indices), self.n_features, dtype=self.acc_dtype, device=self.device)
        dense[out_rows, col] = values.to(self.acc_dtype)
        return dense

    def mean_variance(self) -> Tensor:  # noqa: D102
        # Two passes in float64: sum (v - mean)^2 over the stored values, plus
        # mean^2 for each implicit zero of the column.
        dtype = torch.float64 if supports_float64(self.device) else self.acc_dtype
        values = self._values.to(dtype)
        total = torch.zeros(self.n_features, dtype=dtype, device=self.device)
        mean = total.index_add(0, self._col, values) / self.n_samples
        stored = torch.bincount(self._col, minlength=self.n_features).to(dtype)
        deviations = total.index_add(0, self._col, (values - mean[self._col]).square())
        variance = (deviations + (self.n_samples - stored) * mean.square()) / self.n_samples
        return variance.mean().to(self.acc_dtype)


def gather_csr_rows(crow: Tensor, col: Tensor, values: Tensor,
                     rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CSR parts (crow, col, values) of the rows ``rows`` of a CSR matrix, in that order."""
    starts = crow[rows]
    lengths = crow[rows + 1] - starts
    first = torch.cumsum(lengths, 0) - lengths
    positions = (
        torch.arange(int(lengths.sum()), device=crow.device)
        - torch.repeat_interleave(first, lengths)
        + torch.repeat_interleave(starts, lengths)
    )
    new_crow = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
    return new_crow, col[positions], values[positions]
