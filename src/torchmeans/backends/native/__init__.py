"""The compiled CPU kernel (``backend='native'``): its backend class and its ctypes bindings."""

from torchmeans.backends.native.backend import NativeBackend

__all__ = ["NativeBackend"]
