"""BisectingKMeans: scikit-learn's results from the same (callable) init, and its contract."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import BisectingKMeans as SKBisectingKMeans
from sklearn.datasets import make_blobs
from sklearn.utils._param_validation import InvalidParameterError

from torchmeans import BisectingKMeans


def first_and_farthest(X, n_clusters, random_state):
    """A deterministic init: the node's first row and the row farthest from it.

    Both libraries call it with the same rows (the node's, shifted by the training mean
    for dense data), so their splits start alike.
    """
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    farthest = int(np.argmax(((dense - dense[0]) ** 2).sum(axis=1)))
    return dense[[0, farthest]]


def blobs(n_samples=600, n_features=3, centers=6, seed=0, dtype=np.float64):
    X, _ = make_blobs(n_samples=n_samples, n_features=n_features, centers=centers,
                      cluster_std=0.5, center_box=(-20, 20), random_state=seed)
    return X.astype(dtype)


def fit_both(X, n_clusters=6, sample_weight=None, **params):
    params = dict(n_clusters=n_clusters, init=first_and_farthest, **params)
    ours = BisectingKMeans(**params).fit(X, sample_weight=sample_weight)
    ref = SKBisectingKMeans(**params).fit(X, sample_weight=sample_weight)
    return ours, ref


def assert_same_fit(ours, ref, rtol=1e-6):
    # Same tree: the same leaves in the same order, so labels equal (not up to a permutation).
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol,
                               atol=rtol)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)


@pytest.mark.parametrize("strategy", ["biggest_inertia", "largest_cluster"])
@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_same_fit_and_predict_as_scikit_learn(strategy, algorithm):
    X = blobs()
    ours, ref = fit_both(X, bisecting_strategy=strategy, algorithm=algorithm)
    assert_same_fit(ours, ref)
    # New rows over a wider box: many sit between clusters, where the tree's rule (the
    # nearer child at each split) and the nearest leaf center disagree.
    new = np.random.default_rng(1).uniform(-30, 30, size=(2000, 3))
    np.testing.assert_array_equal(ours.predict(new), ref.predict(new))
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)
    flat = ((new[:, None, :] - ours.cluster_centers_[None]) ** 2).sum(-1).argmin(1)
    assert (ours.predict(new) != flat).any()  # the tree, not the flat nearest center
    np.testing.assert_allclose(ours.transform(new), ref.transform(new), rtol=1e-6)
    assert ours.score(new) == pytest.approx(ref.score(new), rel=1e-6)


def test_strategies_pick_different_leaves():
    # A wide sparse blob and a dense compact one: the largest cluster is not the one of
    # largest inertia.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 10, size=(50, 2)), rng.normal(40, 0.5, size=(400, 2))])
    inertia, _ = fit_both(X, n_clusters=3, bisecting_strategy="biggest_inertia")
    largest, _ = fit_both(X, n_clusters=3, bisecting_strategy="largest_cluster")
    assert not np.array_equal(inertia.labels_, largest.labels_)


def test_sample_weight():
    X = blobs(seed=2)
    weight = np.random.default_rng(0).uniform(0.1, 5, size=X.shape[0])
    ours, ref = fit_both(X, sample_weight=weight)
    assert_same_fit(ours, ref)


def test_sample_weight_with_random_init_changes_nothing_but_the_draws():
    X = blobs(seed=3)
    ours = BisectingKMeans(6, random_state=0).fit(X, sample_weight=np.full(X.shape[0], 2.0))
    unit = BisectingKMeans(6, random_state=0).fit(X)
    assert ours.inertia_ == pytest.approx(2 * unit.inertia_, rel=1e-9)


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
def test_sparse(container):
    X = blobs(seed=4)
    X[np.abs(X) < 5] = 0
    ours, ref = fit_both(container(X))
    assert_same_fit(ours, ref)
    dense = BisectingKMeans(6, random_state=0).fit(X)
    sparse = BisectingKMeans(6, random_state=0).fit(container(X))
    np.testing.assert_allclose(sparse.cluster_centers_, dense.cluster_centers_, atol=1e-8)
    np.testing.assert_array_equal(sparse.predict(container(X)), dense.predict(X))


def test_float32_preserved():
    X = blobs(seed=5, dtype=np.float32)
    ours, ref = fit_both(X)
    assert ours.cluster_centers_.dtype == np.float32
    assert ours.labels_.dtype == np.int32
    assert_same_fit(ours, ref, rtol=1e-4)
    assert ours.transform(X).dtype == np.float32


def test_tensors_in_tensors_out():
    X = blobs(seed=6)
    T = torch.from_numpy(X.astype(np.float32))
    ours = BisectingKMeans(6, random_state=0).fit(T)
    assert isinstance(ours.cluster_centers_, torch.Tensor)
    assert ours.cluster_centers_.dtype == torch.float32
    assert isinstance(ours.labels_, torch.Tensor)
    assert ours.labels_.dtype == torch.int64
    labels = ours.predict(T)
    assert isinstance(labels, torch.Tensor)
    assert torch.equal(labels, ours.labels_)
    assert isinstance(ours.transform(T), torch.Tensor)
    called = []

    def tensor_init(rows, n_clusters, random_state):
        called.append(type(rows))
        return rows[:2]

    BisectingKMeans(3, init=tensor_init).fit(T)
    assert called
    assert all(kind is torch.Tensor for kind in called)


def test_one_cluster_and_fit_methods():
    X = blobs(seed=7)
    one = BisectingKMeans(1).fit(X)
    np.testing.assert_allclose(one.cluster_centers_, X.mean(axis=0)[None])
    assert (one.predict(X) == 0).all()
    km = BisectingKMeans(4, random_state=0)
    np.testing.assert_array_equal(km.fit_predict(X), km.labels_)
    np.testing.assert_allclose(BisectingKMeans(4, random_state=0).fit_transform(X),
                               km.transform(X))
    assert km.get_feature_names_out().tolist() == [f"bisectingkmeans{i}" for i in range(4)]
    assert km._n_threads >= 1


def test_pickle_and_set_output():
    pd = pytest.importorskip("pandas")
    X = blobs(seed=8)
    km = BisectingKMeans(5, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(km))
    np.testing.assert_array_equal(again.predict(X), km.predict(X))
    frame = BisectingKMeans(5, random_state=0).set_output(transform="pandas").fit(
        pd.DataFrame(X, columns=["a", "b", "c"]))
    out = frame.transform(pd.DataFrame(X, columns=["a", "b", "c"]))
    assert isinstance(out, pd.DataFrame)
    assert out.shape == (X.shape[0], 5)
    assert frame.feature_names_in_.tolist() == ["a", "b", "c"]


def test_n_init_keeps_the_best_split():
    X = blobs(seed=9)
    single = BisectingKMeans(6, n_init=1, random_state=0).fit(X)
    several = BisectingKMeans(6, n_init=5, random_state=0).fit(X)
    assert several.inertia_ <= single.inertia_ * (1 + 1e-9)


@pytest.mark.parametrize("params", [
    dict(n_clusters=0), dict(n_clusters=1.5), dict(init="k-means||"), dict(init=np.zeros((2, 3))),
    dict(n_init="auto"), dict(n_init=0), dict(max_iter=0), dict(tol=-1.0), dict(copy_x="yes"),
    dict(algorithm="auto"), dict(algorithm="hamerly"), dict(bisecting_strategy="smallest"),
])
def test_bad_parameters_raise_scikit_learns_messages(params):
    X = blobs(n_samples=50)
    with pytest.raises(InvalidParameterError) as expected:
        SKBisectingKMeans(**params).fit(X)
    with pytest.raises(InvalidParameterError) as ours:
        BisectingKMeans(**params).fit(X)
    assert str(ours.value) == str(expected.value)


def test_too_few_samples_and_bad_callable():
    X = blobs(n_samples=50)
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        BisectingKMeans(4).fit(X[:3])
    with pytest.raises(ValueError, match="does not match the number of clusters 2"):
        BisectingKMeans(3, init=lambda X, k, random_state: X[:3]).fit(X)
    with pytest.raises(NotImplementedError, match="pickle"):
        BisectingKMeans(2).fit(X).save("model.safetensors")
