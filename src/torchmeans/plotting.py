"""Matplotlib figures for k-means results (matplotlib is imported only here).

Install the extra: ``pip install "torchmeans[plot]"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["plot_clusters"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "torchmeans.plotting needs matplotlib: pip install 'torchmeans[plot]'"
        ) from error
    return plt


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().float().numpy()
    return np.asarray(values)


def _project_2d(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points and centers in 2-D: as they are, padded, or on the first two principal axes."""
    if X.shape[1] == 2:
        return X, centers
    if X.shape[1] == 1:
        return np.c_[X, np.zeros(len(X))], np.c_[centers, np.zeros(len(centers))]
    mean = X.mean(axis=0)
    _, _, components = torch.linalg.svd(torch.from_numpy(X - mean).double(), full_matrices=False)
    axes = components[:2].T.numpy()
    return (X - mean) @ axes, (centers - mean) @ axes


def plot_clusters(
    X: Any,
    labels: Any,
    centers: Any,
    *,
    ax: Any = None,
    title: str | None = None,
    cmap: str = "viridis",
    point_size: float = 30,
) -> Any:
    """Scatter the samples coloured by cluster, with the centers as large red X marks.

    Data with more than two features are drawn on their first two principal axes.

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_features)
        Samples.
    labels : array-like or Tensor of shape (n_samples,)
        Cluster of each sample.
    centers : array-like or Tensor of shape (n_clusters, n_features)
        Cluster centers.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when omitted.
    title : str, optional
        Axes title.
    cmap : str, default='viridis'
        Colormap for the clusters.
    point_size : float, default=30
        Marker size of the samples.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
    """
    plt = _pyplot()
    points, center_points = _project_2d(
        _as_numpy(X).astype(float), _as_numpy(centers).astype(float)
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(points[:, 0], points[:, 1], c=_as_numpy(labels), s=point_size, cmap=cmap)
    ax.scatter(center_points[:, 0], center_points[:, 1], c="red", s=250, marker="X",
               edgecolors="black", linewidths=1, label="centers")
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    return ax.figure
