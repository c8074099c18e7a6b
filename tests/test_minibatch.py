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
from torchmeans.core.validation import make_generator as _make_generator


def make_generator(seed):
    return _make_generator(seed, torch.device("cpu"))


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
    ({"batch_size": 0}, "'batch_size' parameter of MiniBatchKMeans must be an int in the "
                        r"range \[1, inf\)"),
    ({"max_no_improvement": -1}, "'max_no_improvement' parameter of MiniBatchKMeans must be"),
    ({"reassignment_ratio": -0.1}, "'reassignment_ratio' parameter of MiniBatchKMeans must be"),
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


def test_is_not_a_kmeans_but_shares_the_base():
    from torchmeans import KMeans
    from torchmeans.estimators.base import BaseKMeans

    assert not isinstance(MiniBatchKMeans(), KMeans)
    assert not isinstance(KMeans(), MiniBatchKMeans)
    assert isinstance(MiniBatchKMeans(), BaseKMeans)
    assert isinstance(KMeans(), BaseKMeans)


def test_fit_then_partial_fit_continues_from_the_fit():
    X, _ = make_blobs(n_samples=3000, centers=5, n_features=4, random_state=2)
    km = MiniBatchKMeans(5, random_state=0, batch_size=256).fit(X)
    centers, steps = km.cluster_centers_.copy(), km.n_steps_
    counts = km._counts.clone()
    km.partial_fit(X[:300])
    assert km.n_steps_ == steps + 1
    moved = np.abs(km.cluster_centers_ - centers).max()
    assert 0 < moved < 0.5  # a small step from the fitted centers, not a re-seeding
    assert float(km._counts.sum()) == pytest.approx(float(counts.sum()) + 300)
    np.testing.assert_array_equal(km.labels_, km.predict(X[:300]))


def test_partial_fit_only_then_save_load_and_partial_fit(tmp_path):
    # Many clusters and a high reassignment ratio: the steps draw random rows, so a loaded
    # model must go on with the saved generator, not restart it.
    X, _ = make_blobs(n_samples=3000, centers=20, n_features=3, random_state=3)
    batches = np.array_split(X, 30)
    params = {"n_clusters": 20, "random_state": 0, "reassignment_ratio": 0.5}
    model = MiniBatchKMeans(**params)
    for batch in batches[:15]:
        model.partial_fit(batch)
    assert not hasattr(model, "n_iter_")  # as scikit-learn: partial_fit counts steps only
    path = model.save(tmp_path / "online.safetensors")
    loaded, restarted = torchmeans.load(path), torchmeans.load(path)
    assert isinstance(loaded, MiniBatchKMeans)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    del restarted._generator  # as if the file had no generator state: a fresh stream
    for batch in batches[15:]:  # the loaded model and the original go on alike
        for estimator in (model, loaded, restarted):
            estimator.partial_fit(batch)
    np.testing.assert_allclose(loaded.cluster_centers_, model.cluster_centers_, rtol=1e-12)
    assert loaded.n_steps_ == model.n_steps_ == 30
    assert np.abs(restarted.cluster_centers_ - model.cluster_centers_).max() > 1e-3


def test_fit_then_partial_fit_goes_on_with_the_fits_random_stream():
    X, _ = make_blobs(n_samples=2000, centers=20, n_features=3, random_state=4)
    params = {"n_clusters": 20, "random_state": 0, "reassignment_ratio": 0.5, "max_iter": 2}
    a, b = MiniBatchKMeans(**params).fit(X), MiniBatchKMeans(**params).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    for model in (a, b):
        model.partial_fit(X[:100])
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert not torch.equal(a._generator.get_state(), make_generator(0).get_state())


def test_a_failed_partial_fit_leaves_the_model_as_it_was():
    X, _ = make_blobs(n_samples=500, centers=3, n_features=2, random_state=5)
    model = MiniBatchKMeans(3, random_state=0).fit(X)
    before = (model.cluster_centers_.copy(), model._counts.clone(), model.n_steps_,
              model._generator.get_state())
    for bad in (np.full((10, 2), np.nan), np.full((10, 2), 1e160), X[:10, :1],
                np.array([["a", "b"]])):
        with pytest.raises(ValueError, match=r"NaN|too large|features|could not convert"):
            model.partial_fit(bad)
        np.testing.assert_array_equal(model.cluster_centers_, before[0])
        assert torch.equal(model._counts, before[1])
        assert model.n_steps_ == before[2]
        assert torch.equal(model._generator.get_state(), before[3])
    fresh = MiniBatchKMeans(3)
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        fresh.partial_fit(X[:2])
    assert not hasattr(fresh, "n_features_in_")
    assert not hasattr(fresh, "cluster_centers_")


def test_partial_fit_keeps_the_dtype_and_checks_features():
    X, _ = make_blobs(n_samples=500, centers=3, n_features=4, random_state=4)
    for dtype in (np.float32, np.float64):
        km = MiniBatchKMeans(3, random_state=0).fit(X.astype(dtype))
        km.partial_fit(X[:10].astype(dtype))
        assert km.cluster_centers_.dtype == dtype
    with pytest.raises(ValueError, match="X has 3 features, but MiniBatchKMeans is expecting 4"):
        km.partial_fit(X[:10, :3])


def test_batches_are_drawn_by_weight():
    # Rows of zero weight are never drawn (and weigh nothing in the steps).
    X, _ = make_blobs(n_samples=2000, centers=4, n_features=2, random_state=5)
    weight = np.ones(len(X))
    far = np.full((200, 2), 1e3)
    X = np.vstack([X, far])
    weight = np.concatenate([weight, np.zeros(200)])
    km = MiniBatchKMeans(4, random_state=0, compute_labels=False).fit(X, sample_weight=weight)
    assert np.abs(km.cluster_centers_).max() < 100


def test_dense_and_sparse_input_give_the_same_fit():
    X, _ = make_blobs(n_samples=400, centers=3, n_features=5, random_state=6)
    weight = np.random.default_rng(6).random(len(X))
    dense = MiniBatchKMeans(3, random_state=1, n_init=1).fit(X, sample_weight=weight)
    sparse = MiniBatchKMeans(3, random_state=1, n_init=1).fit(sp.csr_matrix(X),
                                                              sample_weight=weight)
    np.testing.assert_array_equal(dense.labels_, sparse.labels_)
    np.testing.assert_allclose(dense.cluster_centers_, sparse.cluster_centers_, rtol=1e-10)


@pytest.mark.parametrize(("tol", "max_no_improvement", "message"), [
    (1e-4, None, "Converged (small centers change) at step"),
    (0.0, 10, "Converged (lack of improvement in inertia) at step"),
])
def test_verbose_prints_scikit_learns_lines(capsys, tol, max_no_improvement, message):
    X, _, centers = make_blobs(centers=3, random_state=0, return_centers=True)
    MiniBatchKMeans(3, init=centers, batch_size=20, tol=tol, random_state=0, max_iter=10,
                    n_init=1, verbose=1, max_no_improvement=max_no_improvement).fit(X)
    out = capsys.readouterr().out
    assert "Init 1/1 with method array" in out
    assert "Minibatch step 1/" in out
    assert message in out


def test_init_size_below_n_clusters_warns_as_scikit_learn():
    X, _ = make_blobs(n_samples=300, centers=3, random_state=0)
    with pytest.warns(RuntimeWarning, match=r"init_size=10 should be larger than n_clusters=20"):
        km = MiniBatchKMeans(20, init_size=10, random_state=0).fit(X)
    assert km._init_size == 60
