"""The backends and their registry: how the engine's passes run.

``'torch'`` (:mod:`.torch`): score GEMMs and torch ops, the reference, on every device.
``'native'`` (:mod:`.native`): the compiled CPU kernel (dense float32/float64 rows).
``'triton'`` (:mod:`.triton`): fused Triton kernels on CUDA. ``'auto'`` takes the first
backend of :data:`REGISTRY` whose :meth:`~.base.Backend.auto_applies` holds; torch, last,
always does. :func:`resolve_backend` is the one place that turns a ``backend=`` value into
the object a fit uses; a new backend is one module with a :class:`~.base.Backend` subclass
and one entry here.
"""

from __future__ import annotations

from torchmeans.backends.base import Backend
from torchmeans.backends.native import NativeBackend
from torchmeans.backends.torch import TorchBackend
from torchmeans.backends.triton import TritonBackend
from torchmeans.data.base import KMeansData

__all__ = ["BACKENDS", "REGISTRY", "Backend", "get_backend", "predict_backend",
           "resolve_backend", "seeding_backend"]

REGISTRY: dict[str, Backend] = {
    backend.name: backend for backend in (TritonBackend(), NativeBackend(), TorchBackend())
}
"""Every backend by name, in the order ``'auto'`` tries them."""

BACKENDS = ("auto", *REGISTRY)
"""The values of the ``backend`` parameter."""


def get_backend(name: str) -> Backend:
    """Return the registered backend called ``name``."""
    return REGISTRY[name]


def resolve_backend(name: str, data: KMeansData, n_clusters: int, budget: int) -> Backend:
    """Return the backend a fit of ``data`` runs with, for ``backend=name``.

    An explicit backend that cannot run on ``data`` raises ``ValueError`` with the reason;
    ``'auto'`` takes the first of :data:`REGISTRY` that applies (silently).
    """
    if name != "auto":
        backend = REGISTRY[name]
        reason = backend.unsupported(data)
        if reason is not None:
            raise ValueError(f"backend={name!r} cannot run: {reason}.")
        return backend
    return next(backend for backend in REGISTRY.values()
                if backend.auto_applies(data, n_clusters, budget))


def predict_backend(name: str | None, data: KMeansData) -> Backend:
    """Return the backend that labels new rows of a model fitted with backend ``name``.

    The fit's own backend where it can run on ``data`` (so ``predict(X)`` equals the fit's
    ``labels_``), else the torch reference. Model files keep it (``summary.backend``);
    models without one (``MiniBatchKMeans``, files written before that field) use torch.
    """
    backend = REGISTRY.get(name or "torch", REGISTRY["torch"])
    return backend if backend.unsupported(data) is None else REGISTRY["torch"]


def seeding_backend(data: KMeansData) -> Backend:
    """Return the seeding's backend: native where it scores ``data``'s rows itself.

    Whatever the fit's ``backend``, so that a ``random_state`` gives the same seeds with
    every backend (and ``precision``).
    """
    native = REGISTRY["native"]
    return native if native.own_scores(data) else REGISTRY["torch"]
