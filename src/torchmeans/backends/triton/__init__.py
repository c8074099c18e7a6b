"""The fused Triton kernels (``backend='triton'``)."""
