"""torchmeans: exact k-means on PyTorch, a scikit-learn drop-in for any torch device."""

from torchmeans import metrics, sources  # noqa: F401 - submodules: torchmeans.metrics, ...
from torchmeans._version import __version__
from torchmeans.core.functional import KMeansResult, kmeans, kmeans_plusplus
from torchmeans.core.lloyd import IterationStats
from torchmeans.estimators.batched import BatchedKMeans, batched_kmeans
from torchmeans.estimators.bisecting import BisectingKMeans
from torchmeans.estimators.kmeans import KMeans
from torchmeans.estimators.minibatch import MiniBatchKMeans
from torchmeans.io.model_files import ModelFileError, load
from torchmeans.module import KMeansModule

__all__ = [
    "BatchedKMeans",
    "BisectingKMeans",
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
