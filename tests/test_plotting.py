"""``torchmeans.plotting``: each figure renders with Agg to a valid PNG, with the right artists."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from torchmeans import KMeans
from torchmeans.plotting import (
    plot_cluster_sizes,
    plot_clusters,
    plot_history,
    plot_sweep,
)
from torchmeans.selection import sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def saved_png(figure, tmp_path):
    path = tmp_path / "figure.png"
    figure.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return data


@pytest.mark.parametrize("n_features", [1, 2, 5])
def test_clusters_any_dimension(n_features, tmp_path):
    X, _ = make_blobs(n_samples=200, n_features=n_features, centers=3, random_state=0)
    km = KMeans(3, random_state=0).fit(X)
    figure = plot_clusters(torch.from_numpy(X), km.labels_, km.cluster_centers_, title="t")
    ax = figure.axes[0]
    points, centers = ax.collections
    assert len(points.get_offsets()) == 200
    assert len(centers.get_offsets()) == 3
    assert ax.get_title() == "t"
    saved_png(figure, tmp_path)


def test_clusters_projection_puts_centers_among_their_points():
    X, _ = make_blobs(n_samples=300, n_features=6, centers=3, cluster_std=0.5, random_state=1)
    km = KMeans(3, random_state=0).fit(X)
    points, centers = plot_clusters(X, km.labels_, km.cluster_centers_).axes[0].collections
    offsets, center_offsets = np.asarray(points.get_offsets()), np.asarray(centers.get_offsets())
    for j in range(3):  # a projected center is the mean of its projected points
        np.testing.assert_allclose(offsets[km.labels_ == j].mean(axis=0), center_offsets[j],
                                   atol=1e-6)


def test_clusters_subsamples_large_data_and_draws_on_given_axes():
    X = np.random.default_rng(0).normal(size=(5000, 2))
    labels = (X[:, 0] > 0).astype(int)
    figure, ax = plt.subplots()
    assert plot_clusters(X, labels, np.zeros((2, 2)), ax=ax, max_points=1000) is figure
    assert len(ax.collections[0].get_offsets()) == 1000


def test_sweep_curves(tmp_path):
    X, _ = make_blobs(n_samples=200, centers=3, random_state=0)
    result = sweep(X, range(2, 6))
    ks = [p.n_clusters for p in result.points]
    figure = plot_sweep(ks, [p.inertia for p in result.points],
                        silhouette=[p.silhouette for p in result.points],
                        suggested=result.suggested)
    left, right = figure.axes
    assert len(right.get_lines()) == 1  # silhouette
    assert len(left.get_lines()) == 2  # inertia + the suggested-k line
    assert len(left.get_legend().get_texts()) == 3
    saved_png(figure, tmp_path)


def test_cluster_sizes_one_bar_per_cluster(tmp_path):
    figure = plot_cluster_sizes(np.array([0, 0, 1, 3]), n_clusters=5)
    bars = figure.axes[0].patches
    assert [bar.get_height() for bar in bars] == [2, 1, 0, 1, 0]
    saved_png(figure, tmp_path)


def test_history_one_point_per_iteration(tmp_path):
    X, _ = make_blobs(n_samples=300, centers=4, random_state=0)
    km = KMeans(4, init="random", n_init=1, random_state=3, tol=0).fit(X)
    figure = plot_history(km)
    left, right = figure.axes
    assert len(left.get_lines()[0].get_xdata()) == km.n_iter_
    assert list(right.get_lines()[0].get_ydata()) == [s.n_changed for s in km.n_iter_history_]
    saved_png(figure, tmp_path)
