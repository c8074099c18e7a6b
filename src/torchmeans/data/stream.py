"""Data larger than memory: memory-mapped arrays, ``.npy`` shards, and re-iterable batches.

A *source* describes where rows come from; ``KMeans.fit``, ``predict``, ``transform``,
``score`` and :func:`torchmeans.kmeans` accept one in place of an array. The engine then
reads it chunk by chunk (:class:`StreamData`, another implementation of the same
:class:`~torchmeans.data.KMeansData` interface as in-memory tensors): every Lloyd
iteration streams all chunks through the device, so a fit equals the in-memory fit from
the same initial centers while the memory it needs is the chunk budget plus a few numbers
per row (labels, squared norms), not the data.

- :func:`from_array` -- a NumPy array, ``numpy.memmap`` or CPU tensor (random access);
- :func:`from_npy` -- one ``.npy`` file or a list of shards, memory-mapped (random access);
- :func:`from_batches` -- any re-iterable of arrays/tensors, e.g. a
  ``torch.utils.data.DataLoader`` (sequential only: each pass iterates it again);
- ``source.shard(rank, world_size)`` -- the rows of one rank (random-access sources).

A ``numpy.memmap``, an ``h5py`` dataset or a zarr array passed straight to ``fit``,
``predict``... or :func:`torchmeans.kmeans` is streamed too (:func:`as_stream`), with
scikit-learn's rules for what comes back (numpy outputs, integer data clustered in
float64, its messages for NaN and infinity).

Sequential sources have no random access, so k-means++ (which looks up one row per
step) would read them ``k`` times: seed them with ``init='k-means||'`` (a few passes), or
with ``init_size`` (seeding on a uniform sample read in one pass).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchmeans.core.validation import safe_row_norms
from torchmeans.data.base import Chunk, DenseRows, row_ranges, supports_float64
from torchmeans.data.dense import DenseData

__all__ = ["DataSource", "StreamData", "as_stream", "from_array", "from_batches", "from_npy"]


class DataSource:
    """Rows to stream: subclasses yield blocks in a fixed order on every pass."""

    n_features: int
    random_access: bool = False

    @property
    def n_samples(self) -> int | None:
        """Number of rows (None until a pass has counted them, for sequential sources)."""
        return None

    def blocks(self) -> Iterator[np.ndarray | Tensor]:
        """Yield the rows, as 2-D blocks, in the same order on every call."""
        raise NotImplementedError

    def read(self, start: int, stop: int) -> np.ndarray | Tensor:
        """Rows ``[start, stop)`` (random-access sources only)."""
        raise TypeError(f"{type(self).__name__} has no random access")

    def read_rows(self, indices: np.ndarray) -> np.ndarray | Tensor:
        """Rows at sorted ``indices`` (random-access sources only)."""
        return np.concatenate([np.asarray(self.read(i, i + 1)) for i in indices.tolist()])

    def shard(self, rank: int, world_size: int) -> DataSource:
        """Return the ``rank``-th of ``world_size`` contiguous row ranges (as even as possible)."""
        if not self.random_access:
            raise TypeError(f"{type(self).__name__} cannot be sharded by row range; give each "
                            "rank its own source")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        n = self.n_samples
        return _RowRange(self, rank * n // world_size, (rank + 1) * n // world_size)

    def describe(self) -> str:  # noqa: D102
        return type(self).__name__

    def whole(self) -> Tensor | None:
        """All rows as one CPU tensor sharing the source's memory, where they are one array.

        A C-contiguous NumPy array or memory map (or a CPU tensor): reductions over it
        (the column means) are then the very ones in-memory data computes. None otherwise.
        """
        return None

    def non_finite_message(self, value: float, row: int, column: int,
                           dtype: torch.dtype) -> str:
        """Return the error for a NaN or infinite ``value`` at ``(row, column)``."""
        return (f"{self.describe()}: row {row}, column {column} is {value}; the data must "
                "be finite")


BLOCK_BYTES = 1 << 22
"""Bytes of rows a random-access source yields at a time (4 MiB: small next to a chunk)."""


class _RandomAccess(DataSource):
    random_access = True

    @property
    def block_rows(self) -> int:
        """Rows per block read, about ``BLOCK_BYTES`` of float32."""
        return max(1, BLOCK_BYTES // (4 * self.n_features))

    def blocks(self) -> Iterator[np.ndarray | Tensor]:
        n, step = self.n_samples, self.block_rows
        for start in range(0, n, step):
            yield self.read(start, min(start + step, n))


class _Array(_RandomAccess):
    sklearn_rules = False
    """Set by :func:`as_stream`: scikit-learn's messages (naming ``estimator_name``)."""
    estimator_name: str | None = None
    compute_dtype: torch.dtype | None = None
    """Set by :func:`as_stream`: the dtype scikit-learn converts the rows to."""

    def __init__(self, array: Any, name: str = "array") -> None:
        if isinstance(array, Tensor):
            if array.device.type != "cpu":
                raise ValueError("from_array takes host data; pass device tensors to fit directly")
        elif not hasattr(array, "shape") or not hasattr(array, "__getitem__"):
            array = np.asarray(array)
        if len(array.shape) != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape "
                             f"{tuple(array.shape)}.")
        self.array, self.name = array, name
        self.n_features = int(array.shape[1])

    @property
    def n_samples(self) -> int:
        return int(self.array.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray | Tensor:
        return self.array[start:stop]

    def read_rows(self, indices: np.ndarray) -> np.ndarray | Tensor:
        if isinstance(self.array, Tensor):
            return self.array[torch.from_numpy(indices)]
        if isinstance(self.array, np.ndarray):
            return self.array[indices]
        # h5py takes strictly increasing indices only; zarr's orthogonal selection is
        # its fancy indexing (zarr 2 has no other).
        unique, inverse = np.unique(indices, return_inverse=True)
        oindex = getattr(self.array, "oindex", None)
        rows = np.asarray(oindex[unique] if oindex is not None else self.array[unique])
        return rows if len(unique) == len(indices) else rows[inverse]

    def describe(self) -> str:
        return self.name

    def whole(self) -> Tensor | None:
        return _zero_copy(self.array)

    def non_finite_message(self, value: float, row: int, column: int,
                           dtype: torch.dtype) -> str:
        if not self.sklearn_rules:
            return super().non_finite_message(value, row, column, dtype)
        # Passed straight to fit or kmeans (as_stream): scikit-learn's message, as for
        # the same rows in memory, and where the first bad value is.
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        from sklearn.utils import assert_all_finite

        try:
            assert_all_finite(np.array([value], dtype=np_dtype), input_name=self.name,
                              estimator_name=self.estimator_name)
            message = f"Input {self.name} contains {value}."  # (not reached)
        except ValueError as error:
            message = str(error)
        return f"{message}\n(The first is at row {row}, column {column}.)"


class _Shards(_RandomAccess):
    """Several ``.npy`` files, memory-mapped, read as their concatenation."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        if not paths:
            raise ValueError("from_npy needs at least one file.")
        self.paths = [Path(p) for p in paths]
        self.arrays = []
        for path in self.paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such shard file")
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as error:
                raise ValueError(f"{path}: not a numeric .npy array ({error})") from error
            if array.ndim != 2:
                raise ValueError(f"{path}: shards must be 2-D, got shape {array.shape}")
            self.arrays.append(array)
        self.n_features = int(self.arrays[0].shape[1])
        for path, array in zip(self.paths, self.arrays, strict=True):
            if array.shape[1] != self.n_features:
                raise ValueError(f"{path}: {array.shape[1]} features, but {self.paths[0]} has "
                                 f"{self.n_features}; all shards need the same feature count")
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays]).tolist()

    @property
    def n_samples(self) -> int:
        return self.starts[-1]

    def read(self, start: int, stop: int) -> np.ndarray:
        parts = []
        shard = bisect.bisect_right(self.starts, start) - 1
        while start < stop and shard < len(self.arrays):
            local = start - self.starts[shard]
            take = min(stop, self.starts[shard + 1]) - start
            parts.append(self.arrays[shard][local : local + take])
            start += take
            shard += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        shard = np.searchsorted(self.starts, indices, side="right") - 1
        return np.concatenate([self.arrays[s][indices[shard == s] - self.starts[s]]
                               for s in np.unique(shard).tolist()])

    def blocks(self) -> Iterator[np.ndarray]:
        for array in self.arrays:  # shard by shard, in blocks
            for start in range(0, len(array), self.block_rows):
                yield array[start : start + self.block_rows]

    def check_unchanged(self) -> None:
        """Raise if a shard file changed length since it was opened."""
        for path, array in zip(self.paths, self.arrays, strict=True):
            rows_now = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
            if rows_now != len(array):
                raise RuntimeError(f"{path} changed length during the fit ({len(array)} -> "
                                   f"{rows_now} rows)")

    def describe(self) -> str:
        return str(self.paths[0]) if len(self.paths) == 1 else f"{len(self.paths)} shards"

    def whole(self) -> Tensor | None:
        return _zero_copy(self.arrays[0]) if len(self.arrays) == 1 else None


class _RowRange(_RandomAccess):
    def __init__(self, source: DataSource, start: int, stop: int) -> None:
        self.source, self.start, self.stop = source, start, stop
        self.n_features = source.n_features

    @property
    def n_samples(self) -> int:
        return self.stop - self.start

    def read(self, start: int, stop: int) -> np.ndarray | Tensor:
        return self.source.read(self.start + start, self.start + stop)

    def read_rows(self, indices: np.ndarray) -> np.ndarray | Tensor:
        return self.source.read_rows(indices + self.start)

    def describe(self) -> str:
        return f"rows {self.start}:{self.stop} of {self.source.describe()}"


class _Batches(DataSource):
    """A re-iterable of batches; a batch may be a tuple/list whose first item holds the rows."""

    def __init__(self, batches: Iterable[Any]) -> None:
        if iter(batches) is batches:
            raise TypeError("from_batches needs a re-iterable (a list, a DataLoader...), not an "
                            "iterator: every Lloyd iteration reads the batches again")
        self.batches = batches
        self._n_samples: int | None = None
        first = next(iter(self.blocks()), None)
        if first is None:
            raise ValueError("from_batches: the batches are empty")
        self.n_features = int(first.shape[1])

    @property
    def n_samples(self) -> int | None:
        return self._n_samples

    def blocks(self) -> Iterator[np.ndarray | Tensor]:
        for batch in self.batches:
            rows = batch[0] if isinstance(batch, tuple | list) else batch
            if isinstance(rows, Tensor):
                rows = rows.detach()
            elif not hasattr(rows, "shape"):
                rows = np.asarray(rows)
            if rows.ndim == 1:
                rows = rows.reshape(1, -1)
            yield rows


def from_array(array: Any, *, name: str = "array") -> DataSource:
    """Return a source over an array with row slicing (random access).

    A NumPy array, ``numpy.memmap``, CPU tensor, or anything 2-D with ``shape``,
    ``[start:stop]`` and sorted fancy indexing (an ``h5py`` dataset, a zarr array).

    Parameters
    ----------
    array : array-like of shape (n_samples, n_features)
    name : str
        Used in error messages.

    Returns
    -------
    DataSource
    """
    return _Array(array, name)


def _zero_copy(array: Any) -> Tensor | None:
    """``array`` as a CPU tensor sharing its memory, where it is C-contiguous and numeric."""
    if isinstance(array, Tensor):
        return array if array.device.type == "cpu" and array.is_contiguous() else None
    if (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.dtype.isnative
            and array.dtype.kind in "fiub" and array.dtype.itemsize <= 8):
        with warnings.catch_warnings():  # read-only memory maps: the rows are only read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(np.asarray(array))
    return None


def as_stream(X: Any, *, estimator_name: str | None = None) -> Any:
    """Return a source over ``X`` where it is a file to stream; ``X`` itself otherwise.

    A 2-D numeric ``numpy.memmap`` (``np.load(..., mmap_mode='r')``, ``open_memmap``,
    a slice of either), an ``h5py`` dataset or a zarr array (recognised without
    importing them) is read chunk by chunk, as :func:`from_array` reads it, instead of
    being copied into memory. The source follows scikit-learn's input rules: rows of
    float32 or float64 are computed in that dtype, others (integers, booleans, float16)
    in float64; NaN or infinity raise scikit-learn's ``ValueError`` (naming
    ``estimator_name``). Anything else, and inputs that scikit-learn refuses (not 2-D,
    empty, complex...), is returned unchanged, to be checked (and raise) as usual.

    Parameters
    ----------
    X : any
        The input of ``fit``, ``predict``... or :func:`torchmeans.kmeans`.
    estimator_name : str, optional
        Named in the error for non-finite values, as scikit-learn does.

    Returns
    -------
    DataSource or X
    """
    if isinstance(X, np.memmap):
        pass
    elif isinstance(X, np.ndarray | Tensor) or not type(X).__module__.startswith(
            ("h5py", "zarr")):
        return X
    shape, dtype = getattr(X, "shape", None), getattr(X, "dtype", None)
    if shape is None or dtype is None or not hasattr(X, "__getitem__"):
        return X
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # (zarr 3 string dtypes and the like)
        return X
    # (long doubles: torch takes no float128; check_array's float64 copy handles them)
    if (len(shape) != 2 or min(shape) < 1 or dtype.kind not in "fiub" or not dtype.isnative
            or dtype.itemsize > 8):
        return X
    source = _Array(X, "X")
    source.sklearn_rules, source.estimator_name = True, estimator_name
    source.compute_dtype = torch.float32 if dtype == np.float32 else torch.float64
    return source


def from_npy(paths: str | Path | Sequence[str | Path]) -> DataSource:
    """Return a source over one ``.npy`` file or several shards, memory-mapped.

    All shards must have the same feature count (checked when opened).

    Parameters
    ----------
    paths : path or list of paths
        The rows are the shards' rows in the order given.

    Returns
    -------
    DataSource
    """
    return _Shards([paths] if isinstance(paths, str | Path) else list(paths))


def from_batches(batches: Iterable[Any]) -> DataSource:
    """Return a source over a re-iterable of 2-D batches (sequential access).

    Batches are arrays or tensors, or tuples whose first item is one (as a
    ``DataLoader`` over a ``TensorDataset`` yields).

    Parameters
    ----------
    batches : re-iterable
        Iterated once per pass over the data; it must yield the same rows in the same
        order each time (no shuffling).

    Returns
    -------
    DataSource
    """
    return _Batches(batches)


class StreamData(DenseRows):
    """A :class:`DataSource` read chunk by chunk onto ``device`` (see the module docstring).

    Construction makes two passes: one for the row count, the column means (the
    shift, as in-memory data) and a finite check naming the bad row, one for the
    squared norms of the shifted rows. Each chunk is shifted (and, for cosine,
    normalised) as it is read; the next chunk is read by a background thread while
    the current one is computed on.

    Parameters
    ----------
    source : DataSource
    sample_weight : Tensor or None
        ``(n_samples,)`` weights on ``device``; None for ones.
    device : torch.device
        Where chunks are computed on.
    dtype : torch.dtype, optional
        Compute dtype (default: the accumulation dtype of the source's rows).
    offset : Tensor, optional
        The shift (``predict`` passes the training mean); default: the column means.
    normalize : bool
        Scale each row to unit norm first (``metric='cosine'``).
    """

    chunks_are_views = False
    streamed = True

    def __init__(self, source: DataSource, sample_weight: Tensor | None, device: torch.device,
                 *, dtype: torch.dtype | None = None, offset: Tensor | None = None,
                 normalize: bool = False, collective: Any = None) -> None:
        self.source, self.device, self.normalize = source, device, normalize
        self.n_features = source.n_features
        self.dense_rows, self.dense_width = True, self.n_features
        first = next(iter(source.blocks()), None)
        if first is None and not collective:
            raise ValueError(f"{source.describe()}: no rows")
        self.dtype = dtype or getattr(source, "compute_dtype", None) or (
            _torch_dtype(first) if first is not None else torch.float32)
        whole = None
        if not (collective or normalize) and device.type == "cpu" and first is not None:
            whole = source.whole()
        self._whole = whole
        if whole is not None:
            # One array: its column means are computed as for the same rows in memory
            # (the same torch reduction over the same bytes), so the shift, and the whole
            # fit, are bit for bit the in-memory ones. Finite means (or sums) prove every
            # value finite; otherwise the checking pass below names the first bad one.
            n_samples = int(whole.shape[0])
            if offset is None:
                offset = whole.mean(dim=0, dtype=self.acc_dtype)
                finite = bool(torch.isfinite(offset).all())
            else:
                finite = bool(torch.isfinite(whole.sum(dtype=self.acc_dtype)))
            if not finite:
                for _ in self._raw_blocks(check=True):
                    pass
        else:
            wide = torch.float64 if supports_float64(device) else self.acc_dtype
            total = torch.zeros(self.n_features, dtype=wide, device=device)
            n_samples = 0
            for start, block in self._raw_blocks(check=True):
                total += _wait_ready(block).sum(dim=0, dtype=wide)
                n_samples = start + len(block)
        self.n_samples = n_samples
        if isinstance(source, _Batches):
            source._n_samples = n_samples  # counted: later fits and predicts can check early
        if collective:  # the shift is the mean of every rank's rows
            both = collective.sum(torch.cat([total, torch.tensor([n_samples], dtype=wide,
                                                                  device=device)]))
            total, n_mean = both[:-1], max(int(both[-1].item()), 1)
        else:
            if n_samples == 0:
                raise ValueError(f"{source.describe()}: no rows")
            n_mean = n_samples
        self.offset = (total / n_mean if offset is None else offset).to(
            device=device, dtype=self.acc_dtype)
        self.set_sample_weight(sample_weight)
        norms = torch.empty(n_samples, dtype=self.acc_dtype, device=device)
        sums = torch.zeros(self.n_features, dtype=self.acc_dtype, device=device)
        for start, block in self._raw_blocks():
            x = _wait_ready(block) - self.offset
            norms[start : start + len(x)] = x.square().sum(dim=1)
            sums += x.sum(dim=0)
        self.sq_norms, self._column_sums = norms, sums

    def set_sample_weight(self, sample_weight: Tensor | None) -> None:
        """Set the ``(n_samples,)`` weights (None: ones), once the rows are counted."""
        if sample_weight is None:
            sample_weight = torch.ones(self.n_samples, dtype=self.acc_dtype, device=self.device)
        if sample_weight.shape[0] != self.n_samples:
            raise ValueError(f"sample_weight has {sample_weight.shape[0]} entries, the data "
                             f"{self.n_samples} rows.")
        self._set_sample_weight(sample_weight.to(device=self.device, dtype=self.acc_dtype))

    def _raw_blocks(self, check: bool = False) -> Iterator[tuple[int, Tensor]]:
        """Yield ``(first row, block)`` on the device in the accumulation dtype (unshifted).

        On CUDA a block is prepared on the side stream: its consumer calls
        :func:`_wait_ready` before using it.
        """
        start = 0
        for block in self.source.blocks():
            if block.ndim != 2 or block.shape[1] != self.n_features:
                raise ValueError(f"{self.source.describe()}: a block at row {start} has shape "
                                 f"{tuple(block.shape)}, expected (rows, {self.n_features})")
            with _copy_stream(self.device, block):  # CUDA: prepare beside the compute
                rows = _mark_ready(self._prepared(block, start, check))
            yield start, rows
            start += len(rows)

    def _prepared(self, block: np.ndarray | Tensor, start: int, check: bool) -> Tensor:
        """One block on the device: cast, checked when asked, normalised for cosine."""
        rows = _to_tensor(block, self.device, self.acc_dtype)
        if check:
            bad = ~torch.isfinite(rows)
            if bool(bad.any()):
                row, column = (int(v) for v in torch.nonzero(bad)[0])
                raise ValueError(self.source.non_finite_message(
                    float(rows[row, column]), start + row, column, self.acc_dtype))
        if self.normalize:
            norms = safe_row_norms(rows)
            if bool((norms == 0).any()):
                row = start + int(torch.nonzero(norms == 0)[0])
                raise ValueError(f"{self.source.describe()}: row {row} has zero norm; "
                                 "cosine distance is undefined for it")
            rows = rows / norms[:, None]
        return rows

    def chunks(self, rows: int) -> Iterator[Chunk]:  # noqa: D102
        check = getattr(self.source, "check_unchanged", None)
        if check is not None:
            check()
        if self._whole is not None:
            # One array in memory or mapped: each chunk is shifted straight from its rows
            # (no blocks to gather; the kernel pages a memory map in as they are read).
            for start, stop in row_ranges(self.n_samples, rows):
                x = self._whole[start:stop]
                yield self._chunk(start, (x if x.dtype == self.acc_dtype else
                                          x.to(self.acc_dtype)) - self.offset)
            return
        pending: list[Tensor] = []
        count = start = 0
        for block in _read_ahead(self._raw_blocks()):
            block = _wait_ready(block)
            if start + count + len(block) > self.n_samples:
                raise RuntimeError(f"{self.source.describe()} changed length during the fit "
                                   f"(more than {self.n_samples} rows)")
            pending.append(block - self.offset)
            count += len(block)
            while count >= rows:
                x = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield self._chunk(start, x[:rows])
                start += rows
                pending, count = ([x[rows:]], count - rows) if count > rows else ([], 0)
        if count:
            yield self._chunk(start, torch.cat(pending) if len(pending) > 1 else pending[0])
            start += count
        if start != self.n_samples:
            raise RuntimeError(f"{self.source.describe()} changed length during the fit "
                               f"({self.n_samples} -> {start} rows)")

    def _chunk(self, start: int, x: Tensor) -> Chunk:
        return Chunk(start, start + len(x), x, self._chunk_weight(start, start + len(x)), self)

    def take(self, indices: Tensor) -> Tensor:  # noqa: D102
        if self.source.random_access:
            order = torch.argsort(indices)
            sorted_rows = self.source.read_rows(indices[order].cpu().numpy())
            with _copy_stream(self.device, sorted_rows):
                rows = _mark_ready(_to_tensor(sorted_rows, self.device, self.acc_dtype))
            rows = _wait_ready(rows)
            if self.normalize:
                rows = rows / safe_row_norms(rows)[:, None]
            out = torch.empty_like(rows)
            out[order.to(self.device)] = rows
            return out - self.offset
        # Sequential source: one pass collects the rows.
        wanted = indices.to(self.device)
        out = torch.empty(len(wanted), self.n_features, dtype=self.acc_dtype,
                          device=self.device)
        for chunk in self.chunks(1 << 16):
            inside = (wanted >= chunk.start) & (wanted < chunk.stop)
            if bool(inside.any()):
                out[inside] = chunk.x[wanted[inside] - chunk.start]
        return out

    def subset(self, indices: Tensor) -> DenseData:  # noqa: D102
        return DenseData(self.take(indices), self.sample_weight[indices.to(self.device)],
                         torch.zeros_like(self.offset), shifted=True)


def _read_ahead(blocks: Iterator[Tensor]) -> Iterator[Tensor]:
    """Yield from ``blocks`` while a background thread already reads the next one.

    The reading (page faults of a memory map, a ``DataLoader``'s work, the copy to
    the device) overlaps the computation on the block before.
    """
    with ThreadPoolExecutor(max_workers=1) as reader:
        future = reader.submit(next, blocks, None)
        while (item := future.result()) is not None:
            future = reader.submit(next, blocks, None)
            yield item[1]


def _torch_dtype(block: np.ndarray | Tensor) -> torch.dtype:
    if isinstance(block, Tensor):
        dtype = block.dtype
    else:
        kind, itemsize = block.dtype.kind, block.dtype.itemsize
        dtype = (torch.float32 if kind != "f" else torch.float64 if itemsize > 8  # long double
                 else torch.from_numpy(np.empty(0, dtype=block.dtype)).dtype)
    return dtype if dtype.is_floating_point else torch.float32


def _to_tensor(block: np.ndarray | Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    if not isinstance(block, Tensor):
        block = np.ascontiguousarray(block)
        if block.dtype.kind not in "fiub":
            raise ValueError(f"rows must be numeric, got dtype {block.dtype}")
        if block.dtype.itemsize > 8:  # long double: torch has no such dtype
            block = block.astype(np.float64)
        with warnings.catch_warnings():  # read-only memory maps: the rows are only read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            block = torch.from_numpy(block)
    if device.type == "cuda" and block.device.type == "cpu":
        # Pinned, so that the copy is asynchronous (on the side stream: _copy_stream).
        return block.pin_memory().to(device, non_blocking=True).to(dtype)
    return block.to(device=device, dtype=dtype)


# CUDA double buffering. The reader thread prepares block i + 1 (pinned copy, cast,
# checks, normalisation) on a side stream while the compute stream works on block i,
# and records an event when it is done; the consumer makes its own current stream wait
# for that event (an enqueued wait, not a host sync) and tells the allocator the block
# is used there (record_stream). torch's pinned-memory allocator keeps each pinned
# buffer until its copy has finished.

@functools.cache
def _side_stream(index: int) -> Any:
    return torch.cuda.Stream(device=index)


@contextlib.contextmanager
def _copy_stream(device: torch.device, block: Any) -> Iterator[None]:
    """Run the block's preparation on the device's side stream (CUDA only).

    A block that is already a CUDA tensor was made on the producer's (this thread's
    default) stream: the side stream waits for it and the allocator is told that the
    side stream uses it.
    """
    if device.type != "cuda":
        yield
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    side = _side_stream(index)
    if isinstance(block, Tensor) and block.device.type == "cuda":
        side.wait_stream(torch.cuda.current_stream(block.device))
        block.record_stream(side)
    with torch.cuda.stream(side):
        yield


def _mark_ready(rows: Tensor) -> Tensor:
    """Record, on the current (side) stream, the event marking the block as prepared.

    Called inside :func:`_copy_stream`; a new tensor is marked, never the caller's own.
    """
    if rows.device.type == "cuda":
        rows = rows.view_as(rows)  # a new tensor object: the caller's stays unmarked
        event = torch.cuda.Event()
        event.record()  # on the current stream: the side stream that prepared the rows
        rows._torchmeans_ready = event  # type: ignore[attr-defined]
    return rows


def _wait_ready(rows: Tensor) -> Tensor:
    """Make the consumer's current stream wait for the block (CUDA; no host sync)."""
    event = getattr(rows, "_torchmeans_ready", None)
    if event is not None:
        compute = torch.cuda.current_stream(rows.device)
        compute.wait_event(event)
        rows.record_stream(compute)
    return rows


def is_source(X: Any) -> bool:
    """Return True for the sources of this module (accepted by fit, predict and kmeans)."""
    return isinstance(X, DataSource)
