"""Which kernels run a pass: torch ops (every device, the reference) or fused ones.

``backend='auto'`` picks the fastest exact kernels available for the data and
device; an explicit backend raises if it cannot run. Every backend gives the
same labels: fused kernels take the first minimum of the same scores.
"""

from __future__ import annotations

from torchmeans.data import KMeansData
from torchmeans.ops import _numba

__all__ = ["BACKENDS", "NUMBA_MAX_CLUSTERS", "resolve_backend"]

BACKENDS = ("auto", "torch", "numba")

NUMBA_MAX_CLUSTERS = 64
"""``'auto'`` uses the numba kernels up to this many clusters: beyond it, torch's
vectorised minimum over long score rows is as fast as the kernel's scalar scan
(benchmarks/RESULTS.md, "fused CPU kernels")."""


def resolve_backend(backend: str, data: KMeansData, n_clusters: int) -> str:
    """Return the kernels to use, ``'torch'`` or ``'numba'``, for a fit or a prediction.

    Parameters
    ----------
    backend : {'auto', 'torch', 'numba'}
        The user's choice.
    data : KMeansData
        The rows (their device and storage decide what can run).
    n_clusters : int
        Number of centers.

    Raises
    ------
    ImportError
        ``'numba'`` without numba installed.
    ValueError
        ``'numba'`` for data it cannot run on (not dense rows on the CPU), or an
        unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "torch":
        return "torch"
    runs_here = data.device.type == "cpu" and data.dense_rows
    if backend == "numba":
        if not _numba.available():
            raise ImportError("backend='numba' needs numba: pip install 'torchmeans[numba]'.")
        if not runs_here:
            raise ValueError(
                "backend='numba' runs on dense data on the CPU; use backend='auto' or 'torch' "
                f"for {'sparse' if not data.dense_rows else data.device.type} data."
            )
        return "numba"
    if runs_here and _numba.available() and n_clusters <= NUMBA_MAX_CLUSTERS:
        return "numba"
    return "torch"
