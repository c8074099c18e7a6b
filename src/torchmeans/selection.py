"""Choosing k: fit a range of cluster counts and score each fit.

:func:`sweep` fits :class:`~torchmeans.KMeans` for each k and reports the inertia and
three quality scores (silhouette, sampled for large data; Calinski-Harabasz;
Davies-Bouldin), with two suggestions: the k of the best silhouette, and the elbow of
the inertia curve (the point farthest from the chord joining its ends, in normalised
coordinates, as the "kneedle" method).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from torchmeans import metrics
from torchmeans.core.validation import as_tensor, normalize_rows, resolve_device
from torchmeans.estimators.kmeans import KMeans

__all__ = ["SweepPoint", "SweepResult", "elbow", "sweep"]

SILHOUETTE_SAMPLE = 10_000
"""Silhouette is scored on at most this many samples (it costs ``O(n^2)``)."""


@dataclass(frozen=True)
class SweepPoint:
    """The scores of one fit."""

    n_clusters: int
    inertia: float
    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    n_iter: int
    seconds: float


@dataclass
class SweepResult:
    """All fits of a sweep, and the suggested k."""

    points: list[SweepPoint] = field(default_factory=list)

    @property
    def suggested(self) -> int:
        """Return the k with the highest silhouette (ties: the smallest k)."""
        return max(self.points, key=lambda p: (p.silhouette, -p.n_clusters)).n_clusters

    @property
    def elbow(self) -> int:
        """Return the k at the elbow of the inertia curve (see :func:`elbow`)."""
        return elbow([p.n_clusters for p in self.points], [p.inertia for p in self.points])

    def to_dict(self) -> dict[str, Any]:
        """Return the sweep as plain data (for JSON)."""
        return {"points": [asdict(p) for p in self.points], "suggested_k": self.suggested,
                "elbow_k": self.elbow}


def elbow(n_clusters: list[int], inertia: list[float]) -> int:
    """Return the k farthest below the chord of the (normalised) inertia curve.

    Parameters
    ----------
    n_clusters, inertia : lists
        The curve, in increasing k.

    Returns
    -------
    int
        The elbow's k (the first k when the curve has fewer than three points).
    """
    if len(n_clusters) < 3:
        return n_clusters[0]
    k = np.asarray(n_clusters, dtype=float)
    y = np.asarray(inertia, dtype=float)
    x_norm = (k - k[0]) / (k[-1] - k[0])
    span = y[0] - y[-1]
    y_norm = (y - y[-1]) / span if span > 0 else np.zeros_like(y)
    # Decreasing convex curve: the elbow is where it falls farthest below the chord.
    gap = (1 - x_norm) - y_norm
    return int(k[int(np.argmax(gap))])


def sweep(
    X: Any,
    n_clusters: Iterable[int],
    *,
    sample_weight: Any = None,
    silhouette_sample: int | None = SILHOUETTE_SAMPLE,
    random_state: int | None = 0,
    callback: Callable[[SweepPoint], None] | None = None,
    **params: Any,
) -> SweepResult:
    """Fit ``KMeans(k, **params)`` for each ``k`` and score it.

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_features)
        Samples.
    n_clusters : iterable of int
        The k to try (each at least 2 and below ``n_samples``).
    sample_weight : array-like, optional
        Passed to each fit.
    silhouette_sample : int or None
        Score the silhouette on this many samples drawn with ``random_state``
        (None: all samples; it costs ``O(n_samples^2)``).
    random_state : int or None
        Seeds each fit and the silhouette sample.
    callback : callable, optional
        Called with each :class:`SweepPoint` as soon as it is scored (progress).
    **params
        Other :class:`~torchmeans.KMeans` parameters (``init``, ``n_init``, ``device``,
        ``metric``...). With ``metric='cosine'`` the silhouette uses cosine distances,
        and Calinski-Harabasz and Davies-Bouldin score the unit-normalised rows.

    Returns
    -------
    SweepResult
    """
    result = SweepResult()
    n_samples = len(X)
    metric = params.get("metric", "euclidean")
    # Cosine: the silhouette uses cosine distances; Calinski-Harabasz and Davies-Bouldin
    # (Euclidean by definition) score the unit-normalised rows the fit clustered.
    rows = X
    if metric == "cosine":
        rows = normalize_rows(as_tensor(X, resolve_device(params.get("device"), X)))
    sample = None if silhouette_sample is None or silhouette_sample >= n_samples else int(
        silhouette_sample)
    for k in n_clusters:
        if not 2 <= k < n_samples:
            raise ValueError(f"each k must be in [2, n_samples - 1 = {n_samples - 1}], got {k}.")
        start = time.perf_counter()
        km = KMeans(k, random_state=random_state, **params).fit(X, sample_weight=sample_weight)
        seconds = time.perf_counter() - start
        labels = km.labels_
        n_labels = len(np.unique(np.asarray(labels if not hasattr(labels, "cpu")
                                            else labels.cpu())))
        if n_labels < 2:  # all samples in one cluster (duplicates): scores are undefined
            scores = (float("nan"),) * 3
        else:
            scores = (
                metrics.silhouette_score(X, labels, sample_size=sample, random_state=random_state,
                                         metric=metric),
                metrics.calinski_harabasz_score(rows, labels),
                metrics.davies_bouldin_score(rows, labels),
            )
        point = SweepPoint(int(k), float(km.inertia_), *map(float, scores), int(km.n_iter_),
                           seconds)
        result.points.append(point)
        if callback is not None:
            callback(point)
    if not result.points:
        raise ValueError("n_clusters is empty: pass at least one k.")
    return result
