"""Data larger than memory, streamed chunk by chunk: see :mod:`torchmeans.data.stream`."""

from torchmeans.data.stream import DataSource, from_array, from_batches, from_npy, is_source

__all__ = ["DataSource", "from_array", "from_batches", "from_npy", "is_source"]
