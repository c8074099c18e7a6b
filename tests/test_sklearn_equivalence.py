"""Same initial centers -> scikit-learn's labels, centers, inertia and n_iter."""


import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics.pairwise import euclidean_distances

from _helpers import blob_data, random_row_data, to_numpy
from torchmeans import KMeans, kmeans, kmeans_plusplus
from torchmeans.core.validation import scipy_to_csr_tensor
from torchmeans.data import SparseData

RTOL = {np.float64: 1e-5, np.float32: 1e-4}


def fit_both(X, init, sample_weight=None, device=None, **params):
    ours = KMeans(len(init), init=init, n_init=1, device=device, **params)
    ours.fit(X, sample_weight=sample_weight)
    ref = SKKMeans(len(init), init=init, n_init=1, algorithm="lloyd", **params)
    ref.fit(X, sample_weight=sample_weight)
    return ours, ref


def assert_same_fit(ours, ref, X, dtype=np.float64):
    rtol = RTOL[dtype]
    scale = float(np.abs(X).max()) if not sp.issparse(X) else float(abs(X).max())
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(
        ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=rtol * scale
    )
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.cluster_centers_.dtype == ref.cluster_centers_.dtype


def assert_same_outputs(labels, centers, inertia, n_iter, ref):
    """Tensor or array outputs equal a float64 scikit-learn fit ``ref``."""
    np.testing.assert_array_equal(to_numpy(labels), ref.labels_)
    np.testing.assert_allclose(to_numpy(centers), ref.cluster_centers_, rtol=1e-10)
    assert inertia == pytest.approx(ref.inertia_, rel=1e-10)
    assert n_iter == ref.n_iter_


SHAPES = [
    pytest.param(2000, 1, 3, id="n2000-d1-k3"),
    pytest.param(5000, 16, 8, id="n5000-d16-k8"),
    pytest.param(3000, 512, 20, id="n3000-d512-k20"),
    pytest.param(20000, 32, 1024, id="n20000-d32-k1024"),
    pytest.param(100_000, 64, 64, id="n100000-d64-k64", marks=pytest.mark.slow),
    pytest.param(100_000, 8, 512, id="n100000-d8-k512", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("n_samples", "n_features", "n_clusters"), SHAPES)
def test_blobs_match_sklearn(n_samples, n_features, n_clusters, dtype, weighted, device):
    X, init = blob_data(n_samples, n_features, n_clusters, dtype=dtype, seed=n_clusters)
    weight = None
    if weighted:
        weight = np.random.default_rng(1).uniform(0.2, 3.0, n_samples).astype(dtype)
    ours, ref = fit_both(X, init, weight, device=device)
    assert_same_fit(ours, ref, X, dtype)


RANDOM_ROW_SHAPES = [
    pytest.param(2000, 1, 5, 3, id="n2000-d1-k3"),
    pytest.param(5000, 16, 5, 8, id="n5000-d16-k8"),
    pytest.param(3000, 512, 10, 20, id="n3000-d512-k20"),
    pytest.param(20000, 32, 300, 256, id="n20000-d32-k256"),
    pytest.param(1000, 3, 4, 1, id="n1000-d3-k1"),
    pytest.param(100_000, 16, 30, 40, id="n100000-d16-k40", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("tol", [1e-4, 0.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("n_samples", "n_features", "n_blobs", "n_clusters"), RANDOM_ROW_SHAPES)
def test_many_iterations_match_sklearn_float64(
    n_samples, n_features, n_blobs, n_clusters, weighted, tol, device
):
    # Several initial centers per blob: centers move for several iterations.
    X, init = random_row_data(n_samples, n_features, n_blobs, n_clusters, seed=n_clusters)
    weight = None
    if weighted:
        weight = np.random.default_rng(2).uniform(0.2, 3.0, n_samples)
    ours, ref = fit_both(X, init, weight, device=device, tol=tol)
    assert_same_fit(ours, ref, X)


@pytest.mark.parametrize("max_iter", [1, 2, 4])
def test_truncated_runs_match_sklearn(max_iter, device):
    X, init = random_row_data(3000, 8, 12, 15, seed=3)
    ours, ref = fit_both(X, init, device=device, max_iter=max_iter)
    assert ref.n_iter_ == max_iter  # still moving: the cap is what stopped both
    assert_same_fit(ours, ref, X)


def test_kmeans_plusplus_init_matches_sklearn_from_same_seeds(device):
    X, _ = random_row_data(4000, 10, 12, 12, seed=5)
    ours = KMeans(12, random_state=0, device=device).fit(X)
    # Replay the same seeds through scikit-learn.

    seeds, _ = kmeans_plusplus(X, 12, random_state=0, device=device)
    ref = SKKMeans(12, init=to_numpy(seeds), n_init=1).fit(X)
    assert_same_fit(ours, ref, X)


def test_torch_input_matches_sklearn(device):
    X, init = random_row_data(3000, 6, 8, 10, seed=4)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    ref = SKKMeans(10, init=init, n_init=1).fit(X, sample_weight=weight)
    ours = KMeans(10, init=torch.tensor(init, device=device), n_init=1).fit(
        torch.tensor(X, device=device), sample_weight=torch.tensor(weight, device=device)
    )
    assert isinstance(ours.cluster_centers_, torch.Tensor)
    assert_same_outputs(ours.labels_, ours.cluster_centers_, ours.inertia_, ours.n_iter_, ref)


def test_functional_kmeans_matches_sklearn(device):
    X, init = random_row_data(2500, 5, 6, 9, seed=6)
    result = kmeans(X, 9, init=init, n_init=1, device=device)
    ref = SKKMeans(9, init=init, n_init=1).fit(X)
    assert_same_outputs(result.labels, result.centers, result.inertia, result.n_iter, ref)


def test_default_n_init_with_array_init_matches_sklearn(device):
    # Drop-in use: both estimators with their default n_init='auto' and an array init.
    X, init = random_row_data(1000, 4, 5, 5, seed=8)
    ours = KMeans(5, init=init, device=device).fit(X)
    ref = SKKMeans(5, init=init).fit(X)
    assert_same_fit(ours, ref, X)
    result = kmeans(X, 5, init=init, device=device)
    np.testing.assert_array_equal(to_numpy(result.labels), ref.labels_)


def test_predict_transform_score_match_sklearn(device):
    X, init = random_row_data(2000, 7, 6, 6, seed=9)
    ours, ref = fit_both(X, init, device=device)
    new = np.random.default_rng(3).normal(scale=15, size=(500, 7))
    np.testing.assert_array_equal(ours.predict(new), ref.predict(new))
    np.testing.assert_allclose(ours.transform(new), ref.transform(new), rtol=1e-10)
    np.testing.assert_allclose(ours.fit_transform(X), ref.fit_transform(X), rtol=1e-10, atol=1e-10)
    weight = np.random.default_rng(4).uniform(0, 2, 500)
    assert ours.score(new, sample_weight=weight) == pytest.approx(
        ref.score(new, sample_weight=weight), rel=1e-10
    )


# -- sparse input ---------------------------------------------------------------


def sparse_blobs(n_samples, n_features, n_clusters, density, seed):
    """Sparse non-negative data with a cluster structure (each cluster has its own support)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(n_clusters, size=n_samples)
    supports = rng.random((n_clusters, n_features)) < 3 * density
    mask = (rng.random((n_samples, n_features)) < 0.6) & supports[y]
    dense = np.where(mask, rng.uniform(0.5, 2.0, (n_samples, n_features)), 0.0)
    return sp.csr_matrix(dense), rng


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_sparse_csr_matches_sklearn(dtype, weighted, device):
    X, rng = sparse_blobs(1500, 200, 6, 0.05, seed=0)
    X = X.astype(dtype)
    init = X[rng.choice(X.shape[0], 6, replace=False)].toarray()
    weight = rng.uniform(0.5, 2.0, X.shape[0]).astype(dtype) if weighted else None
    ours, ref = fit_both(X, init, weight, device=device)
    assert isinstance(ours.cluster_centers_, np.ndarray)
    assert_same_fit(ours, ref, X, dtype)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(
        ours.transform(X[:50]), ref.transform(X[:50]), rtol=RTOL[dtype], atol=RTOL[dtype]
    )


def test_sparse_random_matrix_matches_sklearn(device):
    X = sp.random(800, 60, density=0.1, format="csr", random_state=1, dtype=np.float64)
    init = X[:7].toarray()
    ours, ref = fit_both(X, init, device=device, tol=0.0)
    assert_same_fit(ours, ref, X)


def test_sparse_and_dense_agree(device):
    X, rng = sparse_blobs(1000, 80, 5, 0.05, seed=2)
    init = X[rng.choice(1000, 5, replace=False)].toarray()
    sparse = KMeans(5, init=init, n_init=1, device=device).fit(X)
    dense = KMeans(5, init=init, n_init=1, device=device).fit(X.toarray())
    np.testing.assert_array_equal(sparse.labels_, dense.labels_)
    np.testing.assert_allclose(
        sparse.cluster_centers_, dense.cluster_centers_, rtol=1e-10, atol=1e-12
    )
    assert sparse.inertia_ == pytest.approx(dense.inertia_, rel=1e-10)
    # Fitted on sparse, predict dense (and the reverse) give the same labels.
    np.testing.assert_array_equal(sparse.predict(X.toarray()), dense.predict(X))


def test_torch_sparse_tensor_input(device):
    X, rng = sparse_blobs(600, 40, 4, 0.1, seed=3)
    init = X[rng.choice(600, 4, replace=False)].toarray()
    ref = SKKMeans(4, init=init, n_init=1).fit(X)
    coo = X.tocoo()
    indices = torch.tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
    tensor = torch.sparse_coo_tensor(indices, torch.tensor(coo.data), size=X.shape)
    for layout in (tensor.to(device), tensor.to_sparse_csr().to(device)):
        ours = KMeans(4, init=torch.tensor(init, device=device), n_init=1).fit(layout)
        np.testing.assert_array_equal(to_numpy(ours.labels_), ref.labels_)
        np.testing.assert_allclose(
            to_numpy(ours.cluster_centers_), ref.cluster_centers_, rtol=1e-10, atol=1e-12
        )


# -- pandas, far from the origin ---------------------------------------------------------


def test_dataframe_input_sets_feature_names(device):
    pd = pytest.importorskip("pandas")
    X, init = random_row_data(500, 3, 4, 4, seed=10)
    frame = pd.DataFrame(X, columns=["alpha", "beta", "gamma"])
    ours = KMeans(4, init=init, n_init=1, device=device).fit(frame)
    ref = SKKMeans(4, init=init, n_init=1).fit(frame)
    np.testing.assert_array_equal(ours.feature_names_in_, ["alpha", "beta", "gamma"])
    assert ours.n_features_in_ == 3
    assert_same_fit(ours, ref, X)
    np.testing.assert_array_equal(ours.predict(frame), ref.predict(frame))
    np.testing.assert_array_equal(ours.get_feature_names_out(), ref.get_feature_names_out())
    with pytest.raises(ValueError, match="feature names"):
        ours.predict(frame.rename(columns={"alpha": "delta"}))
    # A refit on unnamed data forgets the names.
    ours.fit(X)
    assert not hasattr(ours, "feature_names_in_")
    ours.fit(frame)
    ours.fit(torch.tensor(X, device=device))
    assert not hasattr(ours, "feature_names_in_")


@pytest.mark.parametrize("offset", [1e6, -1e6, 1e8])
def test_far_from_origin_matches_sklearn(offset, device):
    X, init = random_row_data(3000, 6, 8, 8, seed=11)
    ours, ref = fit_both(X + offset, init + offset, device=device)
    assert_same_fit(ours, ref, X + offset)
    # Translation invariance: same labels and centers as the fit near the origin.
    near = KMeans(8, init=init, n_init=1, device=device).fit(X)
    np.testing.assert_array_equal(ours.labels_, near.labels_)
    np.testing.assert_allclose(
        ours.cluster_centers_ - offset, near.cluster_centers_, atol=abs(offset) * 1e-13
    )
    assert ours.inertia_ == pytest.approx(near.inertia_, rel=1e-6)


def test_far_from_origin_torch_input(device):
    X, init = random_row_data(3000, 6, 8, 8, seed=12)
    X, init = X + 1e6, init + 1e6
    ref = SKKMeans(8, init=init, n_init=1).fit(X)
    ours = KMeans(8, init=torch.tensor(init, device=device), n_init=1).fit(
        torch.tensor(X, device=device)
    )
    np.testing.assert_array_equal(to_numpy(ours.labels_), ref.labels_)
    np.testing.assert_allclose(to_numpy(ours.cluster_centers_), ref.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(
        to_numpy(ours.predict(torch.tensor(X, device=device))), ref.labels_
    )


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-7), (np.float32, 1e-5)])
@pytest.mark.parametrize("kind", ["numpy", "sparse", "torch"])
def test_transform_is_exact_near_the_centers(kind, dtype, rtol):
    # The norm expansion cancels for rows on a center; transform recomputes those pairs.
    X, _ = make_blobs(n_samples=500, centers=4, n_features=5, random_state=2)
    X = (X + (1000.0 if dtype == np.float64 else 30.0)).astype(dtype)  # far from the origin
    as_kind = {"numpy": np.asarray, "sparse": sp.csr_matrix, "torch": torch.as_tensor}[kind]
    km = KMeans(4, random_state=0).fit(as_kind(X))
    centers = np.asarray(km.cluster_centers_)
    own = np.asarray(km.transform(as_kind(centers)))
    assert (np.diag(own) == 0).all()
    exact = euclidean_distances(centers.astype(np.float64))
    np.testing.assert_allclose(own, exact, rtol=rtol)
    np.testing.assert_allclose(np.asarray(km.transform(as_kind(X))),
                               euclidean_distances(X.astype(np.float64), centers), rtol=rtol)


def test_sparse_tolerance_scale_is_exact_for_large_values():
    rng = np.random.default_rng(0)
    dense = np.zeros((100_000, 4), dtype=np.float32)
    dense[:, 0] = 3e4 + rng.normal(size=100_000)
    data = SparseData(scipy_to_csr_tensor(sp.csr_array(dense)), torch.ones(100_000))
    expected = dense.astype(np.float64).var(axis=0).mean()
    assert float(data.mean_variance()) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("copy", [True, False])
def test_dense_tolerance_scale_matches_numpy(offset, copy):
    from torchmeans.data import DenseData

    X = np.random.default_rng(3).normal(size=(5000, 7)) * [1, 2, 3, 4, 5, 6, 7] + offset
    data = DenseData(torch.from_numpy(X), torch.ones(5000, dtype=torch.float64),
                     precompute_shift=copy)
    assert float(data.mean_variance()) == pytest.approx(X.var(axis=0).mean(), rel=1e-10)
