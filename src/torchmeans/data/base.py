"""The data interface the k-means engine talks to.

The Lloyd loop, the seeding and the final assignment never touch a tensor of
samples directly: they ask a :class:`KMeansData` for its rows in chunks, and for
the few data-kind-specific products (``x @ centers.T``, the weighted per-cluster
sums, the distance of a row to one given center). In-memory dense tensors and
sparse CSR matrices are implemented in :mod:`.dense` and :mod:`.sparse`, memory-mapped
files and iterators of batches in :mod:`.stream`: implementations of the same interface,
never branches inside the loop. A distributed fit is no data kind: every data carries a
:class:`~torchmeans.data.distributed.Collective`.

All rows a :class:`KMeansData` yields are already *shifted*: ``offset`` (the
training mean for dense data, zero for sparse data) has been subtracted, so the
norm expansion ``||x||^2 - 2 x.c + ||c||^2`` keeps its precision for data far
from the origin. Centers passed to these methods live in the same shifted space.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from torchmeans.core.accumulate import segment_sums
from torchmeans.data.distributed import LOCAL, Collective

__all__ = [
    "Chunk",
    "DenseRows",
    "KMeansData",
    "accumulation_dtype",
    "check_magnitudes",
    "csr_tensor",
    "expand_scores",
    "row_ranges",
    "rows_per_chunk",
    "supports_float64",
    "weighted_sum",
    "wide_dot",
]


SMALL_D = 8
"""Up to this many features, per-cluster sums are accumulated as columns (see ``_add_sums``)."""


def csr_tensor(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """Build a CSR tensor from already valid parts, without torch's beta warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def weighted_sum(values: Tensor, weight: Tensor | None) -> Tensor:
    """Return ``weight @ values`` (sum over the first dimension); ``None`` weights are ones."""
    return values.sum(dim=0) if weight is None else weight @ values


def supports_float64(device: torch.device) -> bool:
    """Return False for devices without float64 arithmetic (Apple's MPS)."""
    return device.type != "mps"


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return the dtype centers, sums and distances are kept in for data of ``dtype``.

    float64 and float32 keep their own precision (as scikit-learn does); float16
    and bfloat16 accumulate in float32.
    """
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def wide_dot(values: Tensor, weight: Tensor | None, dtype: torch.dtype) -> Tensor:
    """``weight @ values`` (or ``values.sum()``) accumulated in ``dtype``, a block at a time.

    No ``dtype`` copy of the whole vectors (8 MiB per million rows in float64).
    """
    if values.numel() <= 1 << 16:  # one block (+ 0: a -0 total is 0, as below)
        wide = values.to(dtype)
        return (wide.sum() if weight is None else wide @ weight.to(dtype)).add_(0.0)
    total = torch.zeros((), dtype=dtype, device=values.device)
    for start in range(0, values.numel(), 1 << 16):
        part = values[start : start + (1 << 16)].to(dtype)
        total += part.sum() if weight is None else part @ weight[start : start + (1 << 16)].to(
            dtype)
    return total


def check_magnitudes(sq_norms: Tensor, weight: Tensor | None = None) -> None:
    """Raise ``ValueError`` where these rows' squared norms, or the inertia, overflow.

    ``sq_norms`` are the squared norms of the shifted rows. Where one is ``inf`` in the
    rows' dtype, so are its distances: every such row falls into one cluster, or a NaN
    score gives it no label at all. (Finite norms whose scores overflow are resolved by
    the certified products, :mod:`torchmeans.core.precision`.) The inertia, summed in
    float64 (the accumulators' dtype, where the device has it), is at most four times the
    weighted sum of the norms: where that overflows, the weights are too large. Both are
    refused with the fix named.
    """
    if not sq_norms.numel():
        return
    dtype = str(sq_norms.dtype).removeprefix("torch.")
    largest = sq_norms.max()
    if not bool(torch.isfinite(largest)):
        raise ValueError(
            f"X has values too large for {dtype} arithmetic: the squared norm of a "
            "centered row overflows. Scale the data down, e.g. with "
            "sklearn.preprocessing.StandardScaler.")
    if weight is not None:
        wide = torch.float64 if supports_float64(sq_norms.device) else sq_norms.dtype
        if not bool(torch.isfinite(4 * wide_dot(sq_norms, weight, wide))):
            raise ValueError(
                f"sample_weight is too large for these data: the weighted squared distances "
                f"overflow (the largest weight is {float(weight.max()):.3g}). Scale the "
                "weights down (only their ratios matter to the centers).")


@dataclass(frozen=True)
class Chunk:
    """A contiguous block of rows ``[start, stop)`` with their weights.

    ``x`` is a dense ``(rows, n_features)`` tensor or a sparse CSR tensor,
    already shifted by the data's offset; ``weight`` is ``(rows,)`` in the
    accumulation dtype, or None when every sample weighs 1 (so the hot loop
    skips the multiplications). A chunk made by :meth:`KMeansData.select` holds
    only the rows ``start + index`` of its block.
    """

    start: int
    stop: int
    x: Tensor
    weight: Tensor | None
    source: KMeansData
    index: Tensor | None = None

    @property
    def sq_norms(self) -> Tensor:
        """``||x||^2`` of each (shifted) row, from the data's cached norms."""
        norms = self.source.sq_norms[self.start : self.stop]
        return norms if self.index is None else norms.index_select(0, self.index)


class KMeansData(ABC):
    """Rows to cluster, as the engine sees them.

    Subclasses hold the rows (or know where to read them) and implement the
    handful of products that depend on how rows are stored.
    """

    n_samples: int
    n_features: int
    dtype: torch.dtype
    device: torch.device
    offset: Tensor
    sample_weight: Tensor
    """``(n_samples,)`` weights in the accumulation dtype."""
    unit_weights: bool
    """True when every weight is 1: chunks then carry ``weight=None``."""
    sq_norms: Tensor
    """``(n_samples,)`` squared norms of the shifted rows (may be computed on first use)."""
    dense_rows: bool
    """True when chunks hold dense rows (``chunk.x`` is a strided tensor)."""
    chunks_are_views: bool = False
    """True when a chunk's ``x`` is a view of rows held in memory (no copy per chunk), so
    passes that touch few rows may read the data in larger chunks than the budget."""
    deterministic: bool = True
    """Add per-cluster sums in a fixed order on accelerators (:mod:`torchmeans.core.accumulate`)."""
    low_dtype: torch.dtype | None = None
    """float16/bfloat16: distance products are computed in this precision and certified
    exact (:mod:`torchmeans.core.precision`); None: in the accumulation dtype."""
    streamed: bool = False
    """True when the rows are read from outside memory on every pass
    (:mod:`torchmeans.sources`): then nothing may gather a large subset of them."""
    dense_width: int
    """Floats per row that chunk temporaries hold besides the scores (``n_features``
    for dense rows, 0 for sparse rows, whose products never densify a row)."""
    collective: Collective = LOCAL
    """The ranks whose rows together make the data (:mod:`torchmeans.data.distributed`):
    a distributed fit sums each pass's accumulator over them; one process: the identity."""

    @property
    def acc_dtype(self) -> torch.dtype:
        """Dtype of centers, sums and distances (see :func:`accumulation_dtype`)."""
        return accumulation_dtype(self.dtype)

    def _set_sample_weight(self, sample_weight: Tensor) -> None:
        self.sample_weight = sample_weight
        self.unit_weights = bool((sample_weight == 1).all())

    def _chunk_weight(self, start: int, stop: int) -> Tensor | None:
        return None if self.unit_weights else self.sample_weight[start:stop]

    @abstractmethod
    def chunks(self, rows: int) -> Iterator[Chunk]:
        """Yield the data in consecutive chunks of at most ``rows`` rows."""

    @abstractmethod
    def scores(self, x: Tensor, centers_t: Tensor, center_sq_norms: Tensor,
               out: Tensor | None = None, transposed: bool = False) -> Tensor:
        """Return ``center_sq_norms - 2 x @ centers_t`` for a chunk's rows.

        The ``(rows, k)`` result (``(k, rows)`` if ``transposed``) is in the
        accumulation dtype; ``centers_t`` is the contiguous ``(n_features, k)``
        transpose of the centers. ``out``, a buffer of the result's shape reused
        across chunks, saves an allocation per chunk.
        """

    def add_weighted_sums(self, chunk: Chunk, labels: Tensor, sums: Tensor, weights: Tensor, *,
                          rows: Tensor | None = None, alpha: float = 1.0) -> None:
        """Add ``alpha * w_i * x_i`` to ``sums[labels[i]]``, ``alpha * w_i`` to ``weights[...]``.

        Parameters
        ----------
        chunk : Chunk
            The rows.
        labels : Tensor
            Cluster of each row of the chunk, or of each row in ``rows`` when given.
        sums, weights : Tensor
            ``(k, n_features)`` and ``(k,)`` accumulators, updated in place.
        rows : Tensor, optional
            Indices (within the chunk) of the only rows to add; all rows when None.
        alpha : float
            Scale (``-1`` removes rows from their clusters).
        """
        weight = chunk.weight
        if rows is not None and weight is not None:
            weight = weight.index_select(0, rows)
        if weight is None:  # integer counts: exact in any order
            weights.add_(torch.bincount(labels, minlength=weights.numel()), alpha=alpha)
        else:
            segment_sums(weight.to(weights.dtype), labels, weights.numel(),
                         deterministic=self.deterministic, out=weights, alpha=alpha)
        self._add_sums(chunk, labels, sums, rows, alpha)

    def move_rows(self, chunk: Chunk, rows: Tensor, old: Tensor, new: Tensor, sums: Tensor,
                  weights: Tensor) -> None:
        """Move ``rows`` (indices within ``chunk``) from clusters ``old`` to ``new`` in the sums.

        The incremental update of a pass: each moved row is added to its new cluster's
        sums and weights and taken from its old one's.
        """
        self.add_weighted_sums(chunk, new, sums, weights, rows=rows)
        self.add_weighted_sums(chunk, old, sums, weights, rows=rows, alpha=-1)

    @abstractmethod
    def _add_sums(self, chunk: Chunk, labels: Tensor, sums: Tensor, rows: Tensor | None,
                  alpha: float) -> None:
        """Add ``alpha * w_i * x_i`` of the (selected) rows to ``sums[labels[i]]``."""

    @abstractmethod
    def sq_distances_to(self, chunk: Chunk, centers: Tensor, labels: Tensor) -> Tensor:
        """Return exact ``||x_i - centers[labels_i]||^2`` for each row of ``chunk``."""

    def select(self, chunk: Chunk, rows: Tensor) -> Chunk:
        """Return the rows ``rows`` (indices within ``chunk``) of a whole chunk as a chunk."""
        weight = None if chunk.weight is None else chunk.weight.index_select(0, rows)
        return Chunk(chunk.start, chunk.stop, self._select_rows(chunk.x, rows), weight, self,
                     rows)

    @abstractmethod
    def subset(self, indices: Tensor) -> KMeansData:
        """Return the rows ``indices`` (and their weights) as data of the same kind.

        The rows are already shifted: the subset's ``offset`` is zero, so centers
        found on it live in this data's shifted space.
        """

    @abstractmethod
    def _select_rows(self, x: Tensor, rows: Tensor) -> Tensor:
        """Return rows ``rows`` of a chunk's ``x``, in the same storage."""

    @abstractmethod
    def take(self, indices: Tensor) -> Tensor:
        """Return the (shifted) rows at ``indices`` as a dense tensor in the accumulation dtype."""

    def all_rows(self) -> Tensor:
        """Return :meth:`take` of every row (rows held in memory may come uncopied: read only)."""
        return self.take(torch.arange(self.n_samples, device=self.device))

    @abstractmethod
    def mean_variance(self) -> Tensor:
        """Return the mean over features of the per-feature (unweighted) variance.

        This is scikit-learn's scale for ``tol``.
        """


def expand_scores(products: Tensor, center_sq_norms: Tensor, out: Tensor | None,
            transposed: bool) -> Tensor:
    """Return ``center_sq_norms - 2 * products`` in the norms' dtype, into ``out`` if given.

    ``products`` is ``(rows, k)``; the result is transposed to ``(k, rows)`` if asked.
    """
    products = products.to(center_sq_norms.dtype)
    norms = center_sq_norms
    if transposed:
        products, norms = products.T, center_sq_norms[:, None]
    return torch.add(norms, products, alpha=-2, out=out)


def row_ranges(n_samples: int, rows: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` of consecutive chunks of ``rows`` rows covering ``n_samples``."""
    rows = max(1, int(rows))
    for start in range(0, n_samples, rows):
        yield start, min(start + rows, n_samples)


class DenseRows(KMeansData):
    """The products of data whose chunks hold dense rows (in memory, or streamed).

    Subclasses provide ``chunks``, ``take``, ``subset``, ``sq_norms`` and the column
    sums of the shifted rows (``_column_sums``) that :meth:`mean_variance` reads.
    """

    _column_sums: Tensor

    def scores(self, x: Tensor, centers_t: Tensor, center_sq_norms: Tensor,  # noqa: D102
               out: Tensor | None = None, transposed: bool = False) -> Tensor:
        if transposed:
            return torch.addmm(center_sq_norms[:, None], centers_t.T, x.T, alpha=-2, out=out)
        return torch.addmm(center_sq_norms, x, centers_t, alpha=-2, out=out)

    def _add_sums(self, chunk: Chunk, labels: Tensor, sums: Tensor, rows: Tensor | None,
                  alpha: float) -> None:
        x, weight = chunk.x, chunk.weight
        if rows is not None:
            x = x.index_select(0, rows)
            weight = None if weight is None else weight.index_select(0, rows)
        x = x.to(sums.dtype)
        if weight is not None:
            x = x * weight[:, None]
        if self.n_features > SMALL_D or self.device.type != "cpu":
            segment_sums(x, labels, sums.shape[0], deterministic=self.deterministic, out=sums,
                         alpha=alpha)
            return
        # Few features: torch's CPU index_add_ over short rows is slow; adding columns of
        # x.T into a (d, k) block is not (RESULTS.md, "The native Lloyd step", item 7).
        columns = torch.zeros(self.n_features, sums.shape[0], dtype=sums.dtype,
                              device=sums.device)
        sums.add_(columns.index_add_(1, labels, x.T).T, alpha=alpha)

    def _select_rows(self, x: Tensor, rows: Tensor) -> Tensor:
        return x.index_select(0, rows)

    def sq_distances_to(self, chunk: Chunk, centers: Tensor, labels: Tensor) -> Tensor:  # noqa: D102
        assigned = centers.index_select(0, labels)
        return (chunk.x.to(assigned.dtype) - assigned).square_().sum(dim=1)

    def mean_variance(self) -> Tensor:  # noqa: D102
        # E[x^2] - E[x]^2 of the shifted rows, from the squared norms' pass: the rows
        # are shifted by (about) their mean, so E[x] is ~0 and nothing cancels.
        dtype = torch.float64 if supports_float64(self.device) else self.acc_dtype
        sq_norms = self.sq_norms
        mean = self._column_sums.to(dtype) / self.n_samples
        mean_square = sq_norms.sum(dtype=dtype) / (self.n_samples * self.n_features)
        return (mean_square - mean.square().mean()).clamp(min=0).to(self.acc_dtype)


def rows_per_chunk(chunk_bytes: int, n_clusters: int, n_features: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk's temporaries fit in ``chunk_bytes``.

    A chunk needs its ``rows x n_clusters`` block of scores (plus two byte-sized
    blocks of that shape when labels are found by first hit) and, for exact
    distances, a ``rows x n_features`` block.
    """
    per_row = (n_clusters + n_features + 4) * itemsize + 2 * n_clusters
    return max(1, math.floor(chunk_bytes / per_row))
