"""Matplotlib figures for k-means results (matplotlib is imported only here).

Install the extra: ``pip install "torchmeans[plot]"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["plot_cluster_sizes", "plot_clusters", "plot_history", "plot_sweep"]


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
    max_points: int | None = 20_000,
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
    max_points : int or None, default=20_000
        Draw at most this many samples (evenly spaced rows) so large data stays
        readable and fast; None draws all. The projection uses the drawn rows.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
    """
    plt = _pyplot()
    X, labels = _as_numpy(X), _as_numpy(labels)
    if max_points is not None and len(X) > max_points:
        keep = np.linspace(0, len(X) - 1, max_points).astype(np.int64)
        X, labels = X[keep], labels[keep]
    points, center_points = _project_2d(X.astype(float), _as_numpy(centers).astype(float))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(points[:, 0], points[:, 1], c=labels, s=point_size, cmap=cmap)
    ax.scatter(center_points[:, 0], center_points[:, 1], c="red", s=250, marker="X",
               edgecolors="black", linewidths=1, label="centers")
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    return ax.figure


def _axes(ax: Any, figsize: tuple[float, float] = (6, 4)) -> Any:
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def plot_sweep(
    n_clusters: Any,
    inertia: Any,
    *,
    silhouette: Any = None,
    suggested: int | None = None,
    ax: Any = None,
) -> Any:
    """Elbow curve (inertia against k), with the silhouette on a second axis.

    Parameters
    ----------
    n_clusters : sequence of int
        The k of each fit.
    inertia : sequence of float
        Inertia of each fit.
    silhouette : sequence of float, optional
        Silhouette score of each fit (drawn on a right-hand axis).
    suggested : int, optional
        A k to mark with a vertical line.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when omitted.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ax = _axes(ax)
    ax.plot(n_clusters, inertia, "o-", color="tab:blue", label="inertia")
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("inertia", color="tab:blue")
    handles = ax.get_lines()
    if silhouette is not None:
        right = ax.twinx()
        right.plot(n_clusters, silhouette, "s--", color="tab:orange", label="silhouette")
        right.set_ylabel("silhouette", color="tab:orange")
        handles = [*handles, *right.get_lines()]
    if suggested is not None:
        handles = [*handles, ax.axvline(suggested, color="red", linestyle=":",
                                        label=f"suggested k = {suggested}")]
    ax.legend(handles=handles, loc="upper right")
    ax.set_title("Choosing k")
    return ax.figure


def plot_cluster_sizes(labels: Any, *, n_clusters: int | None = None, ax: Any = None) -> Any:
    """Bar chart of the number of samples in each cluster.

    Parameters
    ----------
    labels : array-like or Tensor of shape (n_samples,)
        Cluster of each sample (integers from 0).
    n_clusters : int, optional
        Number of bars (default: the largest label + 1).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = _as_numpy(labels).astype(np.int64)
    sizes = np.bincount(labels, minlength=n_clusters or 0)
    ax = _axes(ax)
    ax.bar(np.arange(len(sizes)), sizes, color="tab:blue")
    ax.set_xlabel("cluster")
    ax.set_ylabel("samples")
    ax.set_title(f"Cluster sizes ({sizes.min()} to {sizes.max()})")
    return ax.figure


def plot_history(history: Any, *, ax: Any = None) -> Any:
    """Inertia (and labels changed) per iteration of a fit.

    Parameters
    ----------
    history : KMeans or sequence of IterationStats
        A fitted estimator (its ``n_iter_history_``) or the history itself.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    stats = list(getattr(history, "n_iter_history_", history))
    iterations = [s.iteration for s in stats]
    ax = _axes(ax)
    ax.plot(iterations, [s.inertia for s in stats], "o-", color="tab:blue", label="inertia")
    ax.set_xlabel("iteration")
    ax.set_ylabel("inertia", color="tab:blue")
    right = ax.twinx()
    right.plot(iterations, [s.n_changed for s in stats], "s--", color="tab:gray",
               label="labels changed")
    right.set_ylabel("labels changed", color="tab:gray")
    ax.set_title("Convergence")
    return ax.figure
