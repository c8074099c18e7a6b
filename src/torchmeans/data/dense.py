"""In-memory dense rows: a ``(n_samples, n_features)`` tensor on any device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from torchmeans.data.base import Chunk, DenseRows, row_ranges

__all__ = ["DenseData"]


class DenseData(DenseRows):
    """A dense ``(n_samples, n_features)`` tensor held in memory (on any device).

    Parameters
    ----------
    X : Tensor
        The rows; never written to.
    sample_weight : Tensor
        ``(n_samples,)`` non-negative weights.
    offset : Tensor or None
        Point subtracted from every row before any product. ``None`` means the
        column mean of ``X``.
    precompute_shift : bool
        If True, store one shifted copy of ``X`` (fast repeated passes, as
        scikit-learn's ``copy_x=True``); if False, shift each chunk as it is
        read and keep no copy (saves the memory of ``X``). float16/bfloat16
        rows are always shifted per chunk, in float32: chunks of half-precision
        data are float32 (products in half precision overflow past 65504).
    shifted : bool
        ``X`` is already shifted, in the accumulation dtype (rows taken from other
        data): used as it is, no copy; ``offset`` is only recorded.
    """

    def __init__(
        self,
        X: Tensor,
        sample_weight: Tensor,
        offset: Tensor | None = None,
        *,
        precompute_shift: bool = True,
        shifted: bool = False,
    ) -> None:
        self.n_samples, self.n_features = X.shape
        self.dense_rows = True
        self.dense_width = self.n_features
        self.dtype = X.dtype
        self.device = X.device
        self._set_sample_weight(sample_weight)
        if offset is None:
            offset = X.mean(dim=0, dtype=self.acc_dtype)
        self.offset = offset.to(self.acc_dtype)
        if shifted:
            self._rows = X
            self._lazy_offset = None
        elif precompute_shift and X.dtype == self.acc_dtype:
            self._rows = X - self.offset
            self._lazy_offset = None
        else:
            # Half-precision rows stay as they are (half the memory) and each chunk is
            # cast and shifted in float32: shifting in half precision would round.
            self._rows = X
            self._lazy_offset = self.offset
        self._sq_norms: Tensor | None = None
        self.chunks_are_views = self._lazy_offset is None
        self._whole: Chunk | None = None

    def _shifted(self, start: int, stop: int) -> Tensor:
        x = self._rows[start:stop]
        return x if self._lazy_offset is None else x.to(self.acc_dtype) - self._lazy_offset

    @property
    def sq_norms(self) -> Tensor:
        """``||x||^2`` of every shifted row, computed on first use."""
        if self._sq_norms is None:
            self._row_statistics()
        return self._sq_norms

    def _row_statistics(self) -> None:
        """One pass: squared norms of the shifted rows, and their column sums."""
        # Chunks of ~1M elements: the temporaries stay in cache (no fresh pages per pass).
        rows = max(1, (1 << 20) // max(1, self.n_features))
        if self.n_samples <= rows:  # one block: no buffers to fill
            x = self._shifted(0, self.n_samples).to(self.acc_dtype)
            self._sq_norms, self._column_sums = x.square().sum(dim=1), x.sum(dim=0)
            return
        norms = torch.empty(self.n_samples, dtype=self.acc_dtype, device=self.device)
        total = torch.zeros(self.n_features, dtype=self.acc_dtype, device=self.device)
        for start, stop in row_ranges(self.n_samples, rows):
            x = self._shifted(start, stop).to(self.acc_dtype)
            norms[start:stop] = x.square().sum(dim=1)
            total += x.sum(dim=0)
        self._sq_norms, self._column_sums = norms, total

    def chunks(self, rows: int) -> Iterator[Chunk]:  # noqa: D102
        if rows >= self.n_samples and self.chunks_are_views:
            yield self._whole_chunk()
            return
        for start, stop in row_ranges(self.n_samples, rows):
            yield Chunk(start, stop, self._shifted(start, stop), self._chunk_weight(start, stop),
                        self)

    def _whole_chunk(self) -> Chunk:
        """All rows as one chunk, made once (a pass over small data makes no chunk)."""
        whole = self._whole
        if whole is None or (whole.weight is None) != self.unit_weights:
            whole = self._whole = Chunk(0, self.n_samples, self._rows,
                                        self._chunk_weight(0, self.n_samples), self)
        return whole

    def subset(self, indices: Tensor) -> DenseData:  # noqa: D102
        return DenseData(self.take(indices), self.sample_weight[indices],
                         torch.zeros_like(self.offset), shifted=True)

    def take(self, indices: Tensor) -> Tensor:  # noqa: D102
        rows = self._rows.index_select(0, indices).to(self.acc_dtype)
        return rows if self._lazy_offset is None else rows - self.offset

    def all_rows(self) -> Tensor:  # noqa: D102
        rows = self._rows.to(self.acc_dtype).contiguous()  # (as take's rows are)
        return rows if self._lazy_offset is None else rows - self.offset
