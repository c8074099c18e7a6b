"""``metric='cosine'``: spherical k-means equals a float64 NumPy oracle from the same init."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

import torchmeans
from _helpers import to_numpy
from torchmeans import KMeans, kmeans


def spherical_oracle(X, init, max_iter=100):
    """Spherical k-means in float64: argmax of cosine similarity, normalised sums."""
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    centers = init / np.linalg.norm(init, axis=1, keepdims=True)
    labels = None
    for iteration in range(max_iter):
        new = np.argmax(X @ centers.T, axis=1)
        if labels is not None and np.array_equal(new, labels):
            return labels, centers, iteration
        labels = new
        sums = np.stack([X[labels == j].sum(axis=0) for j in range(len(centers))])
        assert (np.bincount(labels, minlength=len(centers)) > 0).all(), "oracle: empty cluster"
        centers = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return labels, centers, max_iter


def directions(seed, n_samples, n_features, n_clusters):
    """Rows around a few random directions, with random lengths (cosine ignores them)."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n_clusters, n_features))
    X = axes[rng.integers(n_clusters, size=n_samples)] + 0.3 * rng.normal(
        size=(n_samples, n_features))
    X *= rng.uniform(0.1, 50, size=(n_samples, 1))
    X[:n_clusters] = axes * rng.uniform(0.5, 2, size=(n_clusters, 1))
    return X, X[:n_clusters].copy()


@given(seed=st.integers(0, 2**31 - 1), n_samples=st.integers(20, 300),
       n_features=st.integers(2, 12), n_clusters=st.integers(2, 6),
       algorithm=st.sampled_from(["lloyd", "hamerly", "elkan"]))
def test_equals_the_oracle(seed, n_samples, n_features, n_clusters, algorithm):
    X, init = directions(seed, n_samples, n_features, n_clusters)
    labels, centers, _ = spherical_oracle(X, init)
    km = KMeans(n_clusters, init=init, n_init=1, tol=0.0, metric="cosine",
                algorithm=algorithm).fit(X)
    np.testing.assert_array_equal(km.labels_, labels)
    np.testing.assert_allclose(km.cluster_centers_, centers, atol=1e-12)
    X_unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cosine_inertia = (1 - (X_unit * centers[labels]).sum(axis=1)).sum()
    assert km.inertia_ == pytest.approx(cosine_inertia, rel=1e-9, abs=1e-12)


def test_estimator_methods_use_cosine_distance(device):
    X, init = directions(0, 400, 8, 4)
    Xt = torch.from_numpy(X).to(device)
    km = KMeans(4, init=init, n_init=1, metric="cosine").fit(Xt)
    centers = to_numpy(km.cluster_centers_)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1, rtol=1e-12)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    expected = 1 - unit @ centers.T
    np.testing.assert_allclose(to_numpy(km.transform(Xt)), expected, atol=1e-10)
    np.testing.assert_array_equal(to_numpy(km.predict(Xt)), expected.argmin(axis=1))
    assert torch.equal(km.predict(Xt * 7.5), km.predict(Xt))  # scale-free
    assert km.score(Xt) == pytest.approx(-expected.min(axis=1).sum(), rel=1e-9)
    assert km.inertia_ == pytest.approx(-km.score(Xt), rel=1e-9)


def test_float32_sparse_and_functional_agree():
    X, init = directions(1, 500, 10, 3)
    dense = KMeans(3, init=init, n_init=1, metric="cosine").fit(X.astype(np.float32))
    keep = np.abs(X) >= 0.3 * np.abs(X).max(axis=1, keepdims=True)  # no empty row
    X_sparse = sp.csr_matrix(np.where(keep, X, 0.0))
    sparse = KMeans(3, init=init, n_init=1, metric="cosine").fit(X_sparse)
    dense_of_sparse = KMeans(3, init=init, n_init=1, metric="cosine").fit(X_sparse.toarray())
    np.testing.assert_array_equal(sparse.labels_, dense_of_sparse.labels_)
    np.testing.assert_allclose(sparse.cluster_centers_, dense_of_sparse.cluster_centers_,
                               atol=1e-10)
    result = kmeans(torch.from_numpy(X.astype(np.float32)), 3, init=torch.from_numpy(init),
                    metric="cosine")
    np.testing.assert_array_equal(result.labels.numpy(), dense.labels_)


def test_kmeans_plusplus_and_bounds_give_lloyds_fit():
    X, _ = directions(2, 2000, 16, 70)
    fits = {algorithm: KMeans(70, metric="cosine", random_state=0, n_init=1,
                              algorithm=algorithm, backend="torch").fit(X)
            for algorithm in ("lloyd", "hamerly", "yinyang")}
    for algorithm in ("hamerly", "yinyang"):
        np.testing.assert_array_equal(fits[algorithm].labels_, fits["lloyd"].labels_)
        assert fits[algorithm].n_iter_ == fits["lloyd"].n_iter_
    assert np.allclose(np.linalg.norm(fits["lloyd"].cluster_centers_, axis=1), 1)


def test_zero_norm_rows_and_centers_are_refused():
    X = np.array([[1.0, 0], [0, 1], [0, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"1 row\(s\) of zero norm \(the first is row 2\)"):
        KMeans(2, metric="cosine").fit(X)
    with pytest.raises(ValueError, match="init has 1 row"):
        KMeans(2, metric="cosine", init=np.array([[1.0, 0], [0, 0]]), n_init=1).fit(X[[0, 1, 3]])
    km = KMeans(2, metric="cosine", random_state=0).fit(X[[0, 1, 3]])
    with pytest.raises(ValueError, match="zero norm"):
        km.predict(X)
    with pytest.raises(ValueError, match="'metric' parameter of KMeans must be a str among"):
        KMeans(2, metric="manhattan").fit(X)


def test_model_file_and_module_keep_cosine(tmp_path):
    X, init = directions(3, 300, 6, 5)
    km = KMeans(5, init=init, n_init=1, metric="cosine").fit(X)
    loaded = torchmeans.load(km.save(tmp_path / "m.safetensors"))
    assert loaded.metric == "cosine"
    np.testing.assert_array_equal(loaded.predict(X * 3), km.labels_)
    labels, distances = km.to_module(return_distances=True)(torch.from_numpy(X))
    np.testing.assert_array_equal(labels.numpy(), km.labels_)
    np.testing.assert_allclose(distances.numpy(), km.transform(X).min(axis=1), atol=1e-10)


def test_cosine_with_huge_and_tiny_rows():
    X = np.array([[3e19, 4e19], [1e-3, 0], [0, 1e-3], [5e19, 5e19], [1e-25, 1e-25]],
                 dtype=np.float32)
    km = KMeans(2, init=np.array([[1.0, 0], [0, 1]]), n_init=1, metric="cosine").fit(X)
    np.testing.assert_array_equal(km.labels_, [1, 0, 1, 0, 0])
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, rtol=1e-6)
    labels = km.to_module()(torch.from_numpy(X))
    np.testing.assert_array_equal(labels.numpy(), km.labels_)


def test_kmeans_parallel_cosine_seeds_are_unit_vectors():
    X = np.random.default_rng(0).normal(size=(3000, 5))
    km = KMeans(8, init="k-means||", metric="cosine", random_state=0, max_iter=1).fit(X)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, rtol=1e-6)


def test_kmeans_parallel_seeds_on_a_sample_lie_on_the_sphere():
    """init_size with k-means||: the seeds are projected in the data's space, not the sample's."""
    from torchmeans.core.functional import resolve_init
    from torchmeans.core.validation import make_data

    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(2000, 8)) + 3.0)
    data = make_data(X, torch.ones(2000, dtype=X.dtype), metric="cosine")
    seed = resolve_init("k-means||", 6, 8, X.dtype, X.device, init_size=300, metric="cosine")
    centers = seed(data, 6, torch.Generator().manual_seed(0)) + data.offset
    torch.testing.assert_close(centers.norm(dim=1), torch.ones(6, dtype=X.dtype))
