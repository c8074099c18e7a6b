"""``MiniBatchKMeans``: scikit-learn's contract and quality, on any device."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import MiniBatchKMeans as SKLearnMiniBatchKMeans
from sklearn.datasets import load_digits, make_blobs

import torchmeans
from _helpers import to_numpy
from torchmeans import MiniBatchKMeans, sources


def mean_inertia(estimator, X, seeds=5, **params):
    return np.mean([estimator(random_state=s, **params).fit(X).inertia_ for s in range(seeds)])


@pytest.mark.parametrize("dataset", ["blobs", "digits"])
def test_quality_matches_scikit_learn(dataset):
    if dataset == "blobs":
        X, _ = make_blobs(n_samples=20_000, centers=10, n_features=8, random_state=0)
    else:
        X = load_digits().data
    params = {"n_clusters": 10, "n_init": 3}
    ours = mean_inertia(MiniBatchKMeans, X, **params)
    theirs = mean_inertia(SKLearnMiniBatchKMeans, X, **params)
    assert ours <= 1.02 * theirs


def test_attributes_and_consistency(device):
    X, _ = make_blobs(n_samples=5000, centers=6, n_features=5, random_state=1)
    Xt = torch.from_numpy(X).to(device)
    km = MiniBatchKMeans(6, batch_size=256, random_state=0).fit(Xt)
    assert km.cluster_centers_.shape == (6, 5)
    assert km.n_steps_ >= 1
    assert km.n_iter_ == int(np.ceil(km.n_steps_ * 256 / 5000))
    assert torch.equal(km.labels_, km.predict(Xt))
    assert km.inertia_ == pytest.approx(-km.score(Xt), rel=1e-6)
    assert km.n_features_in_ == 5
    again = MiniBatchKMeans(6, batch_size=256, random_state=0).fit(Xt)
    assert torch.equal(again.cluster_centers_, km.cluster_centers_)  # same seed, same result


def test_stopping_rules():
    X, _ = make_blobs(n_samples=10_000, centers=5, n_features=4, random_state=2)
    capped = MiniBatchKMeans(5, batch_size=500, max_iter=1, max_no_improvement=None,
                             random_state=0).fit(X)
    assert capped.n_steps_ == 10_000 // 500
    early = MiniBatchKMeans(5, batch_size=500, max_iter=50, max_no_improvement=2,
                            random_state=0).fit(X)
    assert early.n_steps_ < 50 * 10_000 // 500
    by_tol = MiniBatchKMeans(5, batch_size=500, max_iter=50, max_no_improvement=None, tol=1e-3,
                             random_state=0).fit(X)
    assert by_tol.n_steps_ < 50 * 10_000 // 500


def test_partial_fit_over_batches_and_sources():
    X, _ = make_blobs(n_samples=9000, centers=4, n_features=3, random_state=3)
    streaming = MiniBatchKMeans(4, random_state=0)
    for start in range(0, len(X), 1000):
        streaming.partial_fit(X[start : start + 1000])
    assert streaming.n_steps_ == 9
    full = MiniBatchKMeans(4, random_state=0, n_init=3).fit(X)
    assert torchmeans.metrics.inertia(X, streaming.predict(X), streaming.cluster_centers_) <= (
        1.05 * full.inertia_)
    from_source = MiniBatchKMeans(4, random_state=0).fit(sources.from_array(X))
    assert from_source.inertia_ <= 1.05 * full.inertia_
    with pytest.raises(ValueError, match="random-access source"):
        MiniBatchKMeans(4).fit(sources.from_batches([X[:4000], X[4000:]]))


def test_reassignment_moves_starved_centers():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2)) + 20])
    init = np.array([[0.0, 0.0], [20.0, 20.0], [500.0, 500.0]])  # one center far from all
    km = MiniBatchKMeans(3, init=init, batch_size=300, reassignment_ratio=0.05,
                         random_state=0).fit(X)
    assert np.abs(km.cluster_centers_).max() < 50  # the far center was reassigned
    assert len(np.unique(km.labels_)) == 3
    stuck = MiniBatchKMeans(3, init=init, batch_size=300, reassignment_ratio=0.0,
                            random_state=0).fit(X)
    assert np.abs(stuck.cluster_centers_).max() >= 500


def test_weights_sparse_cosine_and_model_files(tmp_path):
    X, _ = make_blobs(n_samples=4000, centers=4, n_features=6, random_state=4)
    weight = np.random.default_rng(0).uniform(0.5, 2, len(X))
    weighted = MiniBatchKMeans(4, random_state=0).fit(X, sample_weight=weight)
    assert weighted.inertia_ == pytest.approx(
        torchmeans.metrics.inertia(X, weighted.labels_, weighted.cluster_centers_,
                                   sample_weight=weight), rel=1e-6)
    sparse = MiniBatchKMeans(4, random_state=0).fit(sp.csr_matrix(X))
    assert sparse.cluster_centers_.shape == (4, 6)
    cosine = MiniBatchKMeans(4, metric="cosine", random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(cosine.cluster_centers_, axis=1), 1, rtol=1e-6)
    loaded = torchmeans.load(weighted.save(tmp_path / "mb.safetensors"))
    assert isinstance(loaded, MiniBatchKMeans)
    np.testing.assert_array_equal(loaded.predict(X), weighted.predict(X))


@pytest.mark.parametrize(("params", "message"), [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"max_no_improvement": -1}, "max_no_improvement must be None or an integer >= 0"),
    ({"reassignment_ratio": -0.1}, "reassignment_ratio must be a number >= 0"),
    ({"n_clusters": 50}, "n_samples=20 should be >= n_clusters=50"),
])
def test_parameter_errors(params, message):
    X = np.random.default_rng(0).random((20, 2))
    with pytest.raises(ValueError, match=message):
        MiniBatchKMeans(**{"n_clusters": 2, **params}).fit(X)


def test_tensor_outputs_stay_tensors():
    X = torch.randn(500, 3)
    km = MiniBatchKMeans(3, random_state=0).fit(X)
    assert isinstance(km.cluster_centers_, torch.Tensor)
    assert to_numpy(km.labels_).shape == (500,)
