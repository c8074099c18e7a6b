"""torchmeans: exact k-means on PyTorch, a scikit-learn drop-in for any torch device."""

from torchmeans import metrics, sources  # noqa: F401 - submodules: torchmeans.metrics, ...
from torchmeans._functional import KMeansResult, kmeans, kmeans_plusplus
from torchmeans._io import ModelFileError, load
from torchmeans._kmeans import KMeans
from torchmeans._lloyd import IterationStats
from torchmeans._minibatch import MiniBatchKMeans
from torchmeans._version import __version__
from torchmeans.batched import BatchedKMeans, batched_kmeans
from torchmeans.module import KMeansModule

__all__ = [
    "BatchedKMeans",
    "IterationStats",
    "KMeans",
    "KMeansModule",
    "KMeansResult",
    "MiniBatchKMeans",
    "ModelFileError",
    "__version__",
    "batched_kmeans",
    "kmeans",
    "kmeans_plusplus",
    "load",
]
