"""The data interface of the engine (:class:`KMeansData`) and its in-memory implementations.

Streamed sources (:mod:`torchmeans.data.stream`) and distributed collectives
(:mod:`torchmeans.data.distributed`) are further modules of this package.
"""

from torchmeans.data.base import (
    Chunk,
    DenseRows,
    KMeansData,
    accumulation_dtype,
    check_magnitudes,
    csr_tensor,
    supports_float64,
    weighted_sum,
    wide_dot,
)
from torchmeans.data.dense import DenseData
from torchmeans.data.sparse import SparseData

__all__ = [
    "Chunk",
    "DenseData",
    "DenseRows",
    "KMeansData",
    "SparseData",
    "accumulation_dtype",
    "check_magnitudes",
    "csr_tensor",
    "supports_float64",
    "weighted_sum",
    "wide_dot",
]
