"""Hand-computed toy problems, for NumPy and torch inputs."""

import numpy as np
import pytest
import torch

from torchmeans import KMeans, kmeans

POINTS = [[0.0], [1.0], [10.0], [11.0]]
CORNERS = [[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]]


def as_input(data, kind, device, dtype=np.float64):
    array = np.asarray(data, dtype=dtype)
    return array if kind == "numpy" else torch.tensor(array, device=device)


def check_output_types(km, kind, device, dtype=np.float64):
    if kind == "numpy":
        assert isinstance(km.cluster_centers_, np.ndarray)
        assert isinstance(km.labels_, np.ndarray)
        assert km.labels_.dtype == np.int32
        assert km.cluster_centers_.dtype == dtype
    else:
        assert isinstance(km.cluster_centers_, torch.Tensor)
        assert isinstance(km.labels_, torch.Tensor)
        assert km.labels_.dtype == torch.int64
        assert km.cluster_centers_.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype
        assert km.cluster_centers_.device.type == device.type
        assert km.labels_.device.type == device.type
    assert isinstance(km.inertia_, float)
    assert isinstance(km.n_iter_, int)


def np_(value):
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_pairs(kind, dtype, device):
    X = as_input(POINTS, kind, device, dtype)
    km = KMeans(n_clusters=2, random_state=0, device=device).fit(X)
    check_output_types(km, kind, device, dtype)
    np.testing.assert_allclose(np.sort(np_(km.cluster_centers_).ravel()), [0.5, 10.5])
    labels = np_(km.labels_)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert km.inertia_ == pytest.approx(1.0)
    # Each center is the mean of its own cluster.
    centers = np_(km.cluster_centers_).ravel()
    assert centers[labels[0]] == pytest.approx(0.5)
    assert centers[labels[2]] == pytest.approx(10.5)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_two_pairs_from_given_init(kind, device):
    X = as_input(POINTS, kind, device)
    init = as_input([[0.0], [1.0]], kind, device)
    km = KMeans(n_clusters=2, init=init, n_init=1, device=device).fit(X)
    # 0 | 1, 10, 11 -> centers 0 and 22/3 -> 0, 1 | 10, 11 -> 0.5, 10.5 (then stable).
    np.testing.assert_allclose(np_(km.cluster_centers_).ravel(), [0.5, 10.5])
    np.testing.assert_array_equal(np_(km.labels_), [0, 0, 1, 1])
    assert km.inertia_ == pytest.approx(1.0)
    assert km.n_iter_ == 3
    assert [s.n_changed for s in km.n_iter_history_] == [4, 1, 0]
    # Inertia of each iteration's labels against the centers it started from.
    expected = [0 + 0 + 81 + 100, 1 + (10 - 22 / 3) ** 2 + (11 - 22 / 3) ** 2, 1.0]
    np.testing.assert_allclose([s.inertia for s in km.n_iter_history_], expected)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_corners(kind, device):
    X = as_input(CORNERS, kind, device)
    km = KMeans(n_clusters=2, random_state=0, device=device).fit(X)
    centers = np_(km.cluster_centers_)
    np.testing.assert_allclose(centers[np.argsort(centers[:, 0])], [[1, 2], [10, 2]])
    assert km.inertia_ == pytest.approx(16.0)
    labels = np_(km.labels_)
    assert len(set(labels[:3])) == 1
    assert len(set(labels[3:])) == 1
    assert labels[0] != labels[3]
    new = as_input([[0, 0], [12, 3]], kind, device)
    np.testing.assert_array_equal(np_(km.predict(new)), [labels[0], labels[3]])


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_one_cluster_is_the_mean(kind, device):
    data = [[0.0, 1.0], [2.0, 5.0], [7.0, -3.0], [3.0, 1.0], [-2.0, 6.0]]
    X = as_input(data, kind, device)
    km = KMeans(n_clusters=1, random_state=0, device=device).fit(X)
    mean = np.mean(data, axis=0)
    np.testing.assert_allclose(np_(km.cluster_centers_), [mean])
    np.testing.assert_array_equal(np_(km.labels_), np.zeros(5))
    assert km.inertia_ == pytest.approx(((np.asarray(data) - mean) ** 2).sum())


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_as_many_clusters_as_points(kind, init, device):
    data = [[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0], [-4.0, 2.0]]
    X = as_input(data, kind, device)
    km = KMeans(n_clusters=5, init=init, random_state=0, device=device).fit(X)
    labels = np_(km.labels_)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(np_(km.cluster_centers_)[labels], data)
    assert km.inertia_ == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_weighted_two_pairs(kind, device):
    X = as_input(POINTS, kind, device)
    weight = [3.0, 1.0, 1.0, 1.0]
    if kind == "torch":
        weight = torch.tensor(weight, device=device)
    km = KMeans(n_clusters=2, random_state=0, device=device).fit(X, sample_weight=weight)
    # Weighted means: (3*0 + 1) / 4 = 0.25 and 10.5.
    np.testing.assert_allclose(np.sort(np_(km.cluster_centers_).ravel()), [0.25, 10.5])
    # 3 * 0.25^2 + 0.75^2 + 2 * 0.5^2 = 1.25
    assert km.inertia_ == pytest.approx(1.25)
    assert -km.score(X, sample_weight=weight) == pytest.approx(1.25)
    assert -km.score(X) == pytest.approx(0.25**2 + 0.75**2 + 0.5)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_weighted_one_cluster_is_the_weighted_mean(kind, device):
    X = as_input(POINTS, kind, device)
    km = KMeans(n_clusters=1, random_state=0, device=device).fit(
        X, sample_weight=np.array([3.0, 1.0, 1.0, 1.0])
    )
    np.testing.assert_allclose(np_(km.cluster_centers_), [[22.0 / 6.0]])


def test_integer_weights_equal_repeated_rows(device):
    # With an explicit init (no sampling) weights are equivalent to repetition.
    X = np.array([*POINTS, [4.0], [6.0]])
    weight = np.array([2, 1, 1, 3, 1, 2])
    repeated = np.repeat(X, weight, axis=0)
    init = np.array([[1.0], [11.0]])
    a = KMeans(2, init=init, n_init=1, device=device).fit(X, sample_weight=weight)
    b = KMeans(2, init=init, n_init=1, device=device).fit(repeated)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-12)
    np.testing.assert_array_equal(np.repeat(a.labels_, weight), b.labels_)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_transform_and_score_by_hand(kind, device):
    X = as_input(POINTS, kind, device)
    init = as_input([[0.5], [10.5]], kind, device)
    km = KMeans(n_clusters=2, init=init, n_init=1, device=device).fit(X)
    new = as_input([[0.5], [5.5], [20.0]], kind, device)
    np.testing.assert_allclose(np_(km.transform(new)), [[0.0, 10.0], [5.0, 5.0], [19.5, 9.5]])
    np.testing.assert_array_equal(np_(km.predict(new)), [0, 0, 1])  # tie -> first center
    assert km.score(new) == pytest.approx(-(0.0 + 25.0 + 9.5**2))
    out = km.transform(new)
    assert isinstance(out, np.ndarray if kind == "numpy" else torch.Tensor)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_functional_kmeans_toy(kind, device):
    X = as_input(POINTS, kind, device)
    result = kmeans(X, 2, init=as_input([[0.0], [11.0]], kind, device), n_init=1, device=device)
    assert isinstance(result.centers, torch.Tensor)
    assert result.labels.dtype == torch.int64
    assert result.centers.device.type == device.type
    np.testing.assert_allclose(result.centers.cpu().numpy().ravel(), [0.5, 10.5])
    np.testing.assert_array_equal(result.labels.cpu().numpy(), [0, 0, 1, 1])
    assert result.inertia == pytest.approx(1.0)
    assert result.n_iter == len(result.history) == 2
