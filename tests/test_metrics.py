"""``torchmeans.metrics`` equals scikit-learn's metrics (1e-6 relative in float64)."""

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from hypothesis import given
from hypothesis import strategies as st

import torchmeans
from _helpers import to_numpy
from torchmeans import KMeans, metrics


def _problem(seed, n_samples, n_features, n_labels):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 10) + rng.normal() * 100
    labels = rng.integers(n_labels, size=n_samples)
    labels[:n_labels] = np.arange(n_labels)  # every label present
    return X, labels


problems = st.tuples(st.integers(0, 2**31 - 1), st.integers(4, 120), st.integers(1, 12),
                     st.integers(2, 6)).filter(lambda p: p[3] < p[1])


@given(problem=problems, metric=st.sampled_from(["euclidean", "cosine"]),
       chunk_bytes=st.sampled_from([None, 64, 4096]))
def test_silhouette_samples_equal_sklearn(problem, metric, chunk_bytes, device):
    X, labels = _problem(*problem)
    expected = skm.silhouette_samples(X, labels, metric=metric)
    got = metrics.silhouette_samples(torch.from_numpy(X).to(device), torch.from_numpy(labels),
                                     metric=metric, chunk_bytes=chunk_bytes)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-6, atol=1e-9)


@given(problem=problems)
def test_scores_equal_sklearn(problem):
    X, labels = _problem(*problem)
    assert metrics.silhouette_score(X, labels) == pytest.approx(
        skm.silhouette_score(X, labels), rel=1e-6, abs=1e-12)
    assert metrics.calinski_harabasz_score(X, labels) == pytest.approx(
        skm.calinski_harabasz_score(X, labels), rel=1e-6)
    assert metrics.davies_bouldin_score(X, labels) == pytest.approx(
        skm.davies_bouldin_score(X, labels), rel=1e-6)


def test_silhouette_sample_size_draws_sklearns_subset():
    X, labels = _problem(3, 400, 5, 4)
    for seed in range(3):
        assert metrics.silhouette_score(X, labels, sample_size=60, random_state=seed) == (
            pytest.approx(skm.silhouette_score(X, labels, sample_size=60, random_state=seed),
                          rel=1e-6))


def test_string_labels_and_singletons():
    X = np.array([[0.0, 0], [0, 1], [5, 5], [9, 9], [9, 8]])
    labels = np.array(["a", "a", "lonely", "b", "b"])
    got = metrics.silhouette_samples(X, labels)
    np.testing.assert_allclose(got, skm.silhouette_samples(X, labels), rtol=1e-6)
    assert got[2] == 0.0


def test_degenerate_cases_match_sklearn():
    X = np.array([[1.0, 1], [1, 1], [2, 2], [2, 2]])
    labels = np.array([0, 0, 1, 1])
    assert metrics.calinski_harabasz_score(X, labels) == skm.calinski_harabasz_score(X, labels)
    same = np.ones((4, 2))
    assert metrics.davies_bouldin_score(same, labels) == skm.davies_bouldin_score(same, labels)
    np.testing.assert_allclose(metrics.silhouette_samples(X, labels),
                               skm.silhouette_samples(X, labels), atol=1e-12)


@pytest.mark.parametrize("function", [metrics.silhouette_score, metrics.calinski_harabasz_score,
                                      metrics.davies_bouldin_score])
@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]])
def test_label_count_errors(function, labels):
    with pytest.raises(ValueError, match="Number of labels is"):
        function(np.arange(8.0).reshape(4, 2), labels)


def test_mismatched_lengths_and_zero_rows_for_cosine():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metrics.silhouette_score(np.ones((4, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="zero norm"):
        metrics.silhouette_score(np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]]), [0, 0, 1, 1],
                                 metric="cosine")
    with pytest.raises(ValueError, match="metric must be one of"):
        metrics.silhouette_score(np.ones((4, 2)), [0, 0, 1, 1], metric="manhattan")


def test_inertia_equals_kmeans_inertia():

    X, _ = _problem(5, 300, 4, 3)
    weight = np.random.default_rng(0).uniform(0.5, 2, len(X))
    km = KMeans(3, random_state=0, n_init=1).fit(X, sample_weight=weight)
    assert metrics.inertia(X, km.labels_, km.cluster_centers_, sample_weight=weight) == (
        pytest.approx(km.inertia_, rel=1e-9))
    # Without centers: the (weighted) cluster means, where the inertia is smallest.
    assert metrics.inertia(X, km.labels_, sample_weight=weight) <= km.inertia_ * (1 + 1e-9)
    with pytest.raises(ValueError, match="labels must index"):
        metrics.inertia(X, np.full(len(X), 7), km.cluster_centers_)


def test_davies_bouldin_with_many_clusters_equals_sklearn():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(40, 8)) + 10
    labels = np.repeat(np.arange(40), 5)
    X = centers[labels] + rng.normal(scale=0.01, size=(200, 8))
    assert torchmeans.metrics.davies_bouldin_score(X, labels) == pytest.approx(
        skm.davies_bouldin_score(X, labels), rel=1e-6)


def test_inertia_checks_weights_and_labels():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="sample_weight has shape"):
        torchmeans.metrics.inertia(X, np.zeros(10, int), X[:1], sample_weight=[2.0])
    with pytest.raises(ValueError, match="labels must be >= 0"):
        torchmeans.metrics.inertia(X, -np.ones(10, int))
