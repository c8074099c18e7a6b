"""One Lloyd iteration, and the final assignment, against a naive float64 NumPy oracle."""

import numpy as np
import pytest
import torch

from _helpers import naive_assign, naive_lloyd_step, sq_distances, to_numpy
from torchmeans import KMeans, kmeans


def make_problem(seed, n_samples=300, n_features=4, n_clusters=5, weighted=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 3.0, n_features)
    # Distinct rows as init: each initial center owns at least its own row.
    init = X[rng.choice(n_samples, n_clusters, replace=False)]
    weight = rng.uniform(0.1, 5.0, n_samples) if weighted else None
    return X, init, weight


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_one_iteration_matches_oracle(seed, weighted, kind, device):
    X, init, weight = make_problem(seed, weighted=weighted)
    _, inertia0, centers1 = naive_lloyd_step(X, init, weight)
    final_labels, final_inertia = naive_assign(X, centers1, weight)

    if kind == "torch":
        fit_X = torch.tensor(X, device=device)
        fit_init = torch.tensor(init, device=device)
        fit_w = None if weight is None else torch.tensor(weight, device=device)
    else:
        fit_X, fit_init, fit_w = X, init, weight
    km = KMeans(len(init), init=fit_init, n_init=1, max_iter=1, device=device)
    km.fit(fit_X, sample_weight=fit_w)

    np.testing.assert_allclose(to_numpy(km.cluster_centers_), centers1, rtol=1e-10, atol=1e-12)
    assert km.n_iter_ == 1
    # Final-assignment contract: labels_ and inertia_ are against cluster_centers_.
    np.testing.assert_array_equal(to_numpy(km.labels_), final_labels)
    assert km.inertia_ == pytest.approx(final_inertia, rel=1e-10)
    (stats,) = km.n_iter_history_
    assert stats.iteration == 0
    assert stats.inertia == pytest.approx(inertia0, rel=1e-10)
    assert stats.n_changed == len(X)  # every label is new
    assert stats.n_empty == 0
    assert stats.center_shift == pytest.approx(((centers1 - init) ** 2).sum(), rel=1e-9)


@pytest.mark.parametrize("seed", [3, 4])
def test_functional_one_iteration_matches_oracle(seed, device):
    X, init, weight = make_problem(seed, n_samples=200, n_features=7, n_clusters=6, weighted=True)
    _, _, centers1 = naive_lloyd_step(X, init, weight)
    result = kmeans(X, 6, init=init, n_init=1, max_iter=1, sample_weight=weight, device=device)
    np.testing.assert_allclose(to_numpy(result.centers), centers1, rtol=1e-10, atol=1e-12)
    labels, inertia = naive_assign(X, centers1, weight)
    np.testing.assert_array_equal(to_numpy(result.labels), labels)
    assert result.inertia == pytest.approx(inertia, rel=1e-10)


@pytest.mark.parametrize("n_iter", [1, 2, 3, 5])
def test_several_iterations_match_iterated_oracle(n_iter, device):
    X, init, weight = make_problem(7, n_samples=400, n_features=3, n_clusters=8, weighted=True)
    centers = init
    for _ in range(n_iter):
        _, _, centers = naive_lloyd_step(X, centers, weight)
    km = KMeans(8, init=init, n_init=1, max_iter=n_iter, tol=0.0, device=device)
    km.fit(X, sample_weight=weight)
    assert km.n_iter_ == n_iter
    np.testing.assert_allclose(km.cluster_centers_, centers, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_iter", [1, 300])
def test_labels_are_argmin_against_final_centers(dtype, max_iter, device):
    X, init, weight = make_problem(11, n_samples=500, n_features=6, n_clusters=9, weighted=True)
    X, init = X.astype(dtype), init.astype(dtype)
    km = KMeans(9, init=init, n_init=1, max_iter=max_iter, device=device)
    km.fit(X, sample_weight=weight)
    labels, inertia = naive_assign(X, km.cluster_centers_, weight)
    np.testing.assert_array_equal(km.labels_, labels)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert km.inertia_ == pytest.approx(inertia, rel=rtol)
    np.testing.assert_array_equal(km.predict(X), labels)
    assert -km.score(X, sample_weight=weight) == pytest.approx(inertia, rel=rtol)


def test_transform_matches_oracle(device):
    X, init, _ = make_problem(5, n_samples=120, n_features=5, n_clusters=4)
    km = KMeans(4, init=init, n_init=1, device=device).fit(X)
    new = np.random.default_rng(1).normal(size=(50, 5)) * 4
    expected = np.sqrt(sq_distances(new, km.cluster_centers_))
    np.testing.assert_allclose(km.transform(new), expected, rtol=1e-9, atol=1e-9)
    t = km.transform(torch.tensor(new, device=device))
    np.testing.assert_allclose(to_numpy(t), expected, rtol=1e-9, atol=1e-9)


def test_score_matches_oracle_on_new_data(device):
    X, init, _ = make_problem(6, n_samples=150, n_features=3, n_clusters=4)
    km = KMeans(4, init=init, n_init=1, device=device).fit(X)
    rng = np.random.default_rng(2)
    new, weight = rng.normal(size=(80, 3)) * 3, rng.uniform(0, 2, 80)
    _, inertia = naive_assign(new, km.cluster_centers_, weight)
    assert km.score(new, sample_weight=weight) == pytest.approx(-inertia, rel=1e-10)
