"""Reading data files for the command line: .npy, .npz, .csv/.tsv (or stdin), .parquet.

Each reader returns a 2-D float array and the column names when the file has them.
A file that cannot be clustered (not numeric, ragged, empty, NaN or infinity) raises
:class:`DataFileError` with a one-line message naming the file, the row and column
when known, and the fix.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataFileError", "read_matrix", "read_vector", "select_columns"]

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".txt", ".parquet")


class DataFileError(ValueError):
    """A data file that cannot be read as a numeric matrix."""


def _fail(name: str, problem: str, fix: str) -> DataFileError:
    return DataFileError(f"{name}: {problem}; {fix}")


def read_matrix(path: str, *, columns: str | None = None, array: str | None = None,
                mmap: bool = True) -> tuple[np.ndarray, list[str] | None]:
    """Read ``path`` (``-`` for CSV on stdin) as an ``(n_samples, n_features)`` float array.

    Parameters
    ----------
    path : str
        A ``.npy`` (memory-mapped, never read whole unless needed), ``.npz``, ``.csv``,
        ``.tsv``, ``.txt`` or ``.parquet`` file, or ``-`` for CSV on standard input.
    columns : str, optional
        Comma-separated column names or 0-based indices to keep (CSV and parquet).
    array : str, optional
        Name of the array inside an ``.npz`` file (default: its only array, or ``X``).
    mmap : bool
        Memory-map ``.npy`` files.

    Returns
    -------
    X : ndarray
        The stored dtype for ``.npy``/``.npz`` (a memory map for ``.npy``), float64 for
        text and parquet.
    names : list of str or None
        Column names, when the file has them.
    """
    name = "<stdin>" if path == "-" else path
    suffix = ".csv" if path == "-" else Path(path).suffix.lower()
    if path != "-" and not Path(path).is_file():
        raise _fail(name, "no such file", "check the path")
    if suffix == ".npy":
        X, names = _read_npy(path, mmap), None
    elif suffix == ".npz":
        X, names = _read_npz(path, array), None
    elif suffix in (".csv", ".tsv", ".txt"):
        X, names = _read_text(path, name, "\t" if suffix == ".tsv" else None, columns)
        columns = None  # already picked
    elif suffix == ".parquet":
        X, names = _read_parquet(path)
    else:
        raise _fail(name, f"unknown file type {suffix!r}",
                    f"use one of {', '.join(SUFFIXES)} (or - for CSV on stdin)")
    if columns is not None:
        X, names = select_columns(X, names, columns, name)
    return _check(X, name), names


def read_vector(path: str, n_samples: int) -> np.ndarray:
    """Read a 1-D weight file (.npy, .npz, .csv/.txt with one column) of ``n_samples`` values."""
    X, _ = read_matrix(path, mmap=False)
    values = np.asarray(X).reshape(-1) if X.ndim == 2 and 1 in X.shape else None
    if values is None or len(values) != n_samples:
        raise _fail(path, f"expected {n_samples} weights in one column, got shape {X.shape}",
                    "write one weight per sample")
    return values


def _read_npy(path: str, mmap: bool) -> np.ndarray:
    try:
        X = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as error:  # object arrays need pickle: refused
        raise _fail(path, f"not a numeric .npy array ({error})", "save a float array") from error
    return X


def _read_npz(path: str, array: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if array is None:
            if len(names) == 1:
                array = names[0]
            elif "X" in names:
                array = "X"
            else:
                raise _fail(path, f"holds several arrays {names}", "pick one with --array NAME")
        if array not in names:
            raise _fail(path, f"has no array {array!r} (it has {names})", "pick one with --array")
        return archive[array]


def _read_text(path: str, name: str, delimiter: str | None,
               columns: str | None) -> tuple[np.ndarray, list[str] | None]:
    """CSV/TSV: the header is detected; ``columns`` are picked before parsing numbers."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise _fail(name, "is empty", "pass a file with one sample per row")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(lines[0], delimiters=",;\t ").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter,
                           skipinitialspace=True))
    names = None
    # A header has no numeric cell (a first data row with a missing value is data, and
    # gets its "not a number" error below).
    if _numeric_cells(rows[0]) == 0:
        names, rows = [cell.strip() for cell in rows[0]], rows[1:]
    if not rows:
        raise _fail(name, "has a header but no rows", "add one sample per row")
    width = len(names) if names is not None else len(rows[0])
    picked = list(range(width)) if columns is None else _column_indices(columns, names, width,
                                                                         name)
    X = np.empty((len(rows), len(picked)), dtype=np.float64)
    first_data_line = 2 if names is not None else 1
    for index, row in enumerate(rows):
        line = index + first_data_line
        if len(row) != width:
            raise _fail(name, f"row {line} has {len(row)} fields, expected {width}",
                        "every row needs the same number of columns")
        for out, column in enumerate(picked):
            try:
                X[index, out] = float(row[column])
            except ValueError:
                label = names[column] if names else str(column)
                raise _fail(name, f"row {line}, column {label}: {row[column]!r} is not a number",
                            "keep numeric columns only (--columns)") from None
    return X, None if names is None else [names[i] for i in picked]


def _numeric_cells(row: list[str]) -> int:
    count = 0
    for cell in row:
        try:
            float(cell)
        except ValueError:
            continue
        count += 1
    return count


def _read_parquet(path: str) -> tuple[np.ndarray, list[str]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise _fail(path, "reading parquet needs pyarrow",
                    "pip install 'torchmeans[parquet]'") from error
    table = pq.read_table(path)
    lists = [f for f in table.schema if pa.types.is_fixed_size_list(f.type)
             or pa.types.is_list(f.type) or pa.types.is_large_list(f.type)]
    if len(lists) == 1 and table.num_columns == 1:
        column = table.column(0).combine_chunks()
        if column.null_count:
            raise _fail(path, f"column {lists[0].name!r} has missing rows", "drop them")
        flat = column.flatten().to_numpy(zero_copy_only=False)
        n = len(column)
        if n == 0 or flat.size % n:
            raise _fail(path, f"column {lists[0].name!r} holds vectors of different lengths",
                        "store one fixed-size embedding per row")
        offsets = column.offsets.to_numpy() if hasattr(column, "offsets") else None
        if offsets is not None and len(set(np.diff(offsets).tolist())) > 1:
            raise _fail(path, f"column {lists[0].name!r} holds vectors of different lengths",
                        "store one fixed-size embedding per row")
        return flat.reshape(n, -1), None
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type)
               or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type)]
    other = [f.name for f in table.schema if f.name not in numeric]
    if other:
        raise _fail(path, f"non-numeric columns {other}",
                    "keep numeric columns (--columns) or one embedding column")
    if not numeric:
        raise _fail(path, "has no columns", "pass a table of numbers")
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                            for c in numeric]), numeric


def select_columns(X: np.ndarray, names: list[str] | None, columns: str,
                   name: str) -> tuple[np.ndarray, list[str] | None]:
    """Keep the columns named (or 0-based indexed) in the comma-separated ``columns``."""
    picked = _column_indices(columns, names, X.shape[1], name)
    return X[:, picked], None if names is None else [names[i] for i in picked]


def _column_indices(columns: str, names: list[str] | None, width: int, name: str) -> list[int]:
    picked = []
    for token in (t.strip() for t in columns.split(",") if t.strip()):
        if names is not None and token in names:
            picked.append(names.index(token))
        elif token.lstrip("-").isdigit() and -width <= int(token) < width:
            picked.append(int(token) % width)
        else:
            known = f"columns {names}" if names else f"{width} columns (0-based indices)"
            raise _fail(name, f"no column {token!r}", f"the file has {known}")
    if not picked:
        raise _fail(name, "--columns names no column", "list names or indices, e.g. a,b or 0,2")
    return picked


def _check(X: Any, name: str) -> np.ndarray:
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise _fail(name, f"has shape {X.shape}", "pass a 2-D array (n_samples, n_features)")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise _fail(name, f"is empty (shape {X.shape})", "pass at least one sample and feature")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise _fail(name, f"holds {X.dtype} values, not numbers", "save a numeric array")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise _fail(name, "holds complex numbers", "pass real-valued features")
    if np.issubdtype(X.dtype, np.floating):
        step = max(1, (1 << 24) // X.shape[1])  # bounded temporaries on memory maps
        for start in range(0, X.shape[0], step):
            finite = np.isfinite(X[start : start + step])
            if not finite.all():
                row, column = np.argwhere(~finite)[0]
                value = X[start + row, column]
                raise _fail(name, f"row {start + row}, column {column} is {value}",
                            "drop or impute missing and infinite values")
    return X
