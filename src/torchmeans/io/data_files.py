"""Data files for the command line: readers (.npy, .npz, .csv/.tsv or stdin, .parquet) and writers.

Each reader returns a 2-D float array and the column names when the file has them.
A file that cannot be clustered (damaged, not numeric, ragged, empty, NaN or infinity)
raises :class:`DataFileError` with a one-line message naming the file, the row and
column when known, and the fix.

The writers put labels and distances exactly at the path given, in the format its
extension names (:data:`ARRAY_OUTPUTS`), atomically: a temporary file beside the target
is renamed over it, so a failure leaves the old file or none, never half of one.
:func:`check_output` refuses, before any work is done, a path that could not be written
that way (unknown extension, missing or read-only directory, the same file as an input).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARRAY_OUTPUTS", "DataFileError", "OutputPathError", "check_output", "read_matrix",
           "read_vector", "replace_atomically", "select_columns", "write_array"]

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".txt", ".parquet")
ARRAY_OUTPUTS = (".npy", ".csv", ".parquet")
"""Extensions :func:`write_array` writes (labels, distances): each names its format."""


class DataFileError(ValueError):
    """A data file that cannot be read as a numeric matrix."""


class OutputPathError(ValueError):
    """An output path the command refuses: it could not be written exactly as asked."""


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
    if path != "-" and Path(path).is_dir():
        raise _fail(name, "is a directory, not a data file", "pass a file")
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
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise _not_readable(path, b"\x93NUMPY", ".npy array", error) from error


def _read_npz(path: str, array: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if array is None:
                if len(names) == 1:
                    array = names[0]
                elif "X" in names:
                    array = "X"
                else:
                    raise _fail(path, f"holds several arrays {names}",
                                "pick one with --array NAME")
            if array not in names:
                raise _fail(path, f"has no array {array!r} (it has {names})",
                            "pick one with --array")
            return archive[array]
    except DataFileError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise _not_readable(path, b"PK", ".npz archive", error) from error


def _not_readable(path: str, magic: bytes, what: str, error: Exception) -> DataFileError:
    """Say why NumPy could not load ``path``: empty, another format, objects or damaged."""
    with open(path, "rb") as handle:
        head = handle.read(len(magic))
    if not head:
        return _fail(path, "is empty (0 bytes)", "pass a file with one sample per row")
    if head != magic:
        return _fail(path, f"is not a {what} (corrupt, or another format under this name)",
                     f"save it with numpy ({'np.save' if what.startswith('.npy') else 'np.savez'})")
    if "pickle" in str(error) or _holds_objects(path, what):  # these need pickle: refused
        return _fail(path, f"not a numeric {what} (it holds Python objects)",
                     "save a float array")
    return _fail(path, f"is a damaged or truncated {what} ({_first_line(error)})",
                 "write the file again")


def _holds_objects(path: str, what: str) -> bool:
    """Tell whether a ``.npy`` header declares Python objects (memory maps refuse them)."""
    if not what.startswith(".npy"):
        return False
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            return bool(read(handle)[2].hasobject)
    except (ValueError, OSError, EOFError):
        return False


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _read_text(path: str, name: str, delimiter: str | None,
               columns: str | None) -> tuple[np.ndarray, list[str] | None]:
    """CSV/TSV: the header is detected; ``columns`` are picked before parsing numbers."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise _fail(name, f"is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
                    f"{error.start})", "save it as UTF-8 CSV") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise _fail(name, "is empty", "pass a file with one sample per row")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(lines[0], delimiters=",;\t ").delimiter
        except csv.Error:
            delimiter = ","
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter,
                               skipinitialspace=True))
    except csv.Error as error:  # a NUL byte, an oversized field
        raise _fail(name, f"is not readable CSV ({error})", "save it as plain text CSV") from None
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
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise _fail(path, f"is not a readable parquet file ({_first_line(error)})",
                    "write it again with pyarrow or pandas") from error
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


def check_output(path: str, option: str, suffixes: Iterable[str], *,
                 inputs: Iterable[tuple[str, str | None]] = ()) -> Path:
    """Refuse, before any work, an output that could not be written exactly at ``path``.

    Called for every output option before data is read or a model is fitted, so a typo
    costs nothing and nothing is ever written at another path (``np.save`` would append
    ``.npy``; a missing directory would fail after a long fit).

    Parameters
    ----------
    path : str
        The path the user gave.
    option : str
        The option it came from (``--labels``), named in the message.
    suffixes : iterable of str
        The extensions this output can be written as; the format is the extension's.
    inputs : iterable of (str, str or None)
        ``(what, path)`` of the files the command reads (and outputs already checked):
        an output may not be one of them. ``None`` and ``-`` (stdin) are skipped.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputPathError
        The extension is not one of ``suffixes``, the path is a directory, its directory
        does not exist or is not writable, it is the same file as an input, or it is
        ``.parquet`` and pyarrow is not installed.
    """
    suffixes = tuple(suffixes)
    target = Path(path)
    where = f"{option} {path}"
    suffix = target.suffix.lower()
    if suffix not in suffixes:
        kind = f"file type {suffix!r}" if suffix else "a path without an extension"
        raise OutputPathError(f"{where}: cannot write {kind}; use {_either(suffixes)}")
    if target.is_dir():
        raise OutputPathError(f"{where}: is a directory; name a file in it")
    parent = target.parent
    if not parent.exists():
        raise OutputPathError(f"{where}: directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputPathError(f"{where}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{where}: directory {parent} is not writable")
    for what, other in inputs:
        if other is not None and other != "-" and _same_file(target, Path(other)):
            raise OutputPathError(f"{where}: is the same file as {what}; write to another path")
    if suffix == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise OutputPathError(f"{where}: writing parquet needs pyarrow: "
                                  "pip install 'torchmeans[parquet]'") from None
    return target


def _either(suffixes: tuple[str, ...]) -> str:
    return suffixes[0] if len(suffixes) == 1 else (
        f"{', '.join(suffixes[:-1])} or {suffixes[-1]}")


def _same_file(a: Path, b: Path) -> bool:
    """Tell whether ``a`` and ``b`` name one file (also through links and ``..``)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def replace_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(scratch)`` on a temporary file beside ``path``, then rename it over ``path``.

    A failure (an exception, Ctrl-C, a full disk) leaves the old file or none, never a
    half-written one, and removes the scratch file. The scratch name ends with the
    target's extension, so writers that infer the format from it (matplotlib, pyarrow)
    write the right one; the file gets the permissions a new file would (the umask),
    not ``mkstemp``'s private ``0600``.
    """
    target = Path(path)
    while True:  # a fresh name, created here (O_EXCL) with mode 0o666 less the umask
        scratch = str(target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp{target.suffix}")
        try:
            os.close(os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(scratch)
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return target


def write_array(path: str | os.PathLike, values: Any, name: str) -> Path:
    """Write labels (1-D) or distances (2-D) atomically, in the format the extension names.

    Parameters
    ----------
    path : str or PathLike
        Ends with ``.npy`` (``np.save`` on the open file, so no ``.npy`` is appended),
        ``.csv`` (a header line, then one row per sample) or ``.parquet`` (pyarrow).
    values : array-like
        ``(n_samples,)`` or ``(n_samples, n_columns)``.
    name : str
        The column name: ``label`` for 1-D values; 2-D values get ``name_0``,
        ``name_1``, ... (``distance_0`` is the distance to center 0).

    Returns
    -------
    Path
        The path written.
    """
    values = np.asarray(values)
    suffix = Path(path).suffix.lower()
    if suffix not in ARRAY_OUTPUTS:
        raise OutputPathError(f"{path}: cannot write file type {suffix!r}; "
                              f"use {_either(ARRAY_OUTPUTS)}")
    if suffix == ".npy":
        def write(scratch: str) -> None:
            with open(scratch, "wb") as handle:
                np.save(handle, values, allow_pickle=False)
        return replace_atomically(path, write)
    table = values.reshape(len(values), -1)
    if table.dtype.kind == "f" and table.dtype.itemsize < 4:  # half: no CSV/parquet type
        table = table.astype(np.float32)
    names = [name] if values.ndim == 1 else [f"{name}_{j}" for j in range(table.shape[1])]
    if suffix == ".csv":
        # Round-trip precision: 9 significant digits for float32, 17 for float64.
        fmt = "%d" if table.dtype.kind in "iub" else (
            "%.9g" if table.dtype.itemsize == 4 else "%.17g")

        def write(scratch: str) -> None:
            np.savetxt(scratch, table, fmt=fmt, delimiter=",", header=",".join(names),
                       comments="")
        return replace_atomically(path, write)
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.table({column: table[:, j] for j, column in enumerate(names)})
    return replace_atomically(path, lambda scratch: pq.write_table(arrow, scratch))
