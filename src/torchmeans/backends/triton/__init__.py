"""The fused Triton kernels (``backend='triton'``): their backend class and the kernels."""

from torchmeans.backends.triton.backend import TritonBackend

__all__ = ["TritonBackend"]
