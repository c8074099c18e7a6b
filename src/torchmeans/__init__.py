"""torchmeans: exact k-means on PyTorch, a scikit-learn drop-in for any torch device."""

from torchmeans._functional import KMeansResult, kmeans, kmeans_plusplus
from torchmeans._kmeans import KMeans
from torchmeans._lloyd import IterationStats
from torchmeans._version import __version__

__all__ = [
    "IterationStats",
    "KMeans",
    "KMeansResult",
    "__version__",
    "kmeans",
    "kmeans_plusplus",
]
