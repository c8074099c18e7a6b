"""``max_samples_per_cluster``: Lloyd on a uniform subsample, labels and inertia of all rows."""

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.utils._param_validation import InvalidParameterError

import torchmeans
from torchmeans import KMeans, sources
from torchmeans.backends.native import backend as native_backend_module
from torchmeans.core import functional
from torchmeans.core.functional import training_subset
from torchmeans.core.validation import make_data, make_generator

K, M = 8, 50  # the subsample: K * M = 400 rows


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(6000, n_features=5, centers=K, cluster_std=0.5, random_state=0)
    return X


def _records(caplog):
    return [r for r in caplog.records if r.name == "torchmeans" and "rows" in r.getMessage()]


def _spy_lloyd(monkeypatch):
    """Record the row count of the data each Lloyd run sees."""
    seen = []
    lloyd = functional.lloyd

    def spy(data, *args, **kwargs):
        seen.append(data.n_samples)
        return lloyd(data, *args, **kwargs)

    monkeypatch.setattr(functional, "lloyd", spy)
    return seen


def test_off_by_default(blobs):
    assert KMeans().max_samples_per_cluster is None
    default = KMeans(K, random_state=0).fit(blobs)
    off = KMeans(K, random_state=0, max_samples_per_cluster=None).fit(blobs)
    np.testing.assert_array_equal(default.cluster_centers_, off.cluster_centers_)
    np.testing.assert_array_equal(default.labels_, off.labels_)
    assert default.inertia_ == off.inertia_


@pytest.mark.parametrize("m", [750, 10_000])  # 8 * 750 == n_samples: nothing to draw
def test_large_value_is_the_full_fit_to_the_bit_and_not_logged(blobs, m, caplog):
    full = KMeans(K, random_state=0, n_init=2).fit(blobs)
    with caplog.at_level(logging.INFO, logger="torchmeans"):
        same = KMeans(K, random_state=0, n_init=2, max_samples_per_cluster=m).fit(blobs)
    np.testing.assert_array_equal(full.cluster_centers_, same.cluster_centers_)
    np.testing.assert_array_equal(full.labels_, same.labels_)
    assert full.inertia_ == same.inertia_
    assert full.n_iter_ == same.n_iter_
    assert _records(caplog) == []


def test_every_run_sees_k_times_m_rows(blobs, monkeypatch):
    seen = _spy_lloyd(monkeypatch)
    km = KMeans(K, random_state=0, n_init=3, max_samples_per_cluster=M).fit(blobs)
    assert seen == [K * M] * 3
    assert km.labels_.shape == (len(blobs),)


def test_labels_and_inertia_are_of_all_rows(blobs):
    km = KMeans(K, random_state=0, max_samples_per_cluster=M).fit(blobs)
    np.testing.assert_array_equal(km.labels_, km.predict(blobs))
    assert km.inertia_ == -km.score(blobs)


def test_the_functional_api(blobs):
    result = torchmeans.kmeans(blobs, K, random_state=0, max_samples_per_cluster=M)
    km = KMeans(K, random_state=0, max_samples_per_cluster=M).fit(blobs)
    np.testing.assert_array_equal(result.centers.numpy(), km.cluster_centers_)
    assert result.labels.shape == (len(blobs),)
    assert result.inertia == km.inertia_


def test_repeatable_and_the_seed_picks_the_sample(blobs):
    a = KMeans(K, random_state=3, max_samples_per_cluster=M).fit(blobs)
    b = KMeans(K, random_state=3, max_samples_per_cluster=M).fit(blobs)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    data = make_data(torch.as_tensor(blobs), torch.ones(len(blobs), dtype=torch.float64))
    draws = [training_subset(data, K, M, make_generator(seed, data.device), "KMeans").take(
        torch.arange(K * M)) for seed in (0, 0, 1)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def test_sample_rows_keep_their_weights(blobs):
    weight = np.random.default_rng(0).uniform(0.5, 3.0, len(blobs))
    data = make_data(torch.as_tensor(blobs), torch.as_tensor(weight))
    train = training_subset(data, K, M, make_generator(0, data.device), "KMeans")
    rows = train.take(torch.arange(K * M)) + data.offset
    # each sampled row is a row of X (up to the shift's rounding), with that row's weight;
    # no row twice
    distances = torch.cdist(rows, torch.as_tensor(blobs))
    nearest = distances.min(dim=1)
    assert float(nearest.values.max()) < 1e-5
    picked = nearest.indices.numpy()
    assert len(set(picked.tolist())) == K * M
    np.testing.assert_array_equal(train.sample_weight.numpy(), weight[picked])
    km = KMeans(K, random_state=0, max_samples_per_cluster=M).fit(blobs, sample_weight=weight)
    np.testing.assert_array_equal(km.labels_, km.predict(blobs))
    assert km.inertia_ == -km.score(blobs, sample_weight=weight)


def test_one_log_record_with_the_numbers(blobs, caplog):
    with caplog.at_level(logging.INFO, logger="torchmeans"):
        KMeans(K, random_state=0, n_init=3, max_samples_per_cluster=M).fit(blobs)
    (record,) = _records(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "KMeans: fitting on 400 of 6,000 rows (max_samples_per_cluster=50); labels_ and "
        "inertia_ are of all rows")


def test_inertia_close_to_the_full_fit_on_separated_blobs():
    X, _ = make_blobs(40_000, n_features=8, centers=16, cluster_std=1.0, random_state=1)
    full = KMeans(16, random_state=0, n_init=3).fit(X)
    # The sample's centers are off by about sigma / sqrt(m) per feature: inertia ~ 1 + 1/m.
    sampled = KMeans(16, random_state=0, n_init=3, max_samples_per_cluster=256).fit(X)
    assert abs(sampled.inertia_ / full.inertia_ - 1) < 0.01


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_sparse_input(metric):
    X = sp.random(3000, 40, density=0.3, format="csr", random_state=0)  # no row all zero
    km = KMeans(4, random_state=0, metric=metric, max_samples_per_cluster=100).fit(X)
    np.testing.assert_array_equal(km.labels_, km.predict(X))
    assert km.inertia_ == pytest.approx(-km.score(X), rel=1e-12)


def test_cosine_centers_stay_unit_vectors(blobs):
    km = KMeans(K, random_state=0, metric="cosine", max_samples_per_cluster=M).fit(blobs + 5)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(km.labels_, km.predict(blobs + 5))


def test_given_centers_are_in_the_same_space(blobs):
    # the sample keeps the data's shift: initial centers (unshifted) start where they are
    X = blobs + 100.0
    start = KMeans(K, random_state=0).fit(X).cluster_centers_
    km = KMeans(K, init=start, n_init=1, random_state=0, max_samples_per_cluster=M).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, start, atol=0.5)  # (a lost shift: ~100)
    np.testing.assert_array_equal(km.labels_, km.predict(X))


@pytest.mark.parametrize("algorithm", ["elkan", "hamerly", "auto"])
def test_bounded_algorithms_give_lloyds_result(blobs, algorithm):
    lloyd = KMeans(K, random_state=0, max_samples_per_cluster=M).fit(blobs)
    other = KMeans(K, random_state=0, max_samples_per_cluster=M, algorithm=algorithm).fit(blobs)
    np.testing.assert_allclose(other.cluster_centers_, lloyd.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(other.labels_, lloyd.labels_)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "256"])
def test_bad_values(blobs, bad):
    with pytest.raises(InvalidParameterError, match="max_samples_per_cluster"):
        KMeans(K, max_samples_per_cluster=bad).fit(blobs)
    with pytest.raises(InvalidParameterError, match="max_samples_per_cluster"):
        torchmeans.kmeans(blobs, K, max_samples_per_cluster=bad)


def test_streamed_sources_fit_on_the_sample(blobs, monkeypatch):
    X = blobs.astype(np.float32)
    dense = KMeans(K, random_state=0, max_samples_per_cluster=M).fit(X)
    seen = _spy_lloyd(monkeypatch)
    batches = sources.from_batches([X[i : i + 1000] for i in range(0, len(X), 1000)])
    streamed = KMeans(K, random_state=0, max_samples_per_cluster=M).fit(batches)
    assert seen == [K * M]
    np.testing.assert_array_equal(streamed.labels_, streamed.predict(X))
    assert streamed.inertia_ == pytest.approx(-streamed.score(X), rel=1e-6)
    np.testing.assert_allclose(streamed.cluster_centers_, dense.cluster_centers_, atol=1e-4)


def test_distributed_fit_refuses_it_clearly(blobs):
    class Ranks:  # a collective of several processes, as a distributed fit's data has
        def __bool__(self):
            return True

    data = make_data(torch.as_tensor(blobs), torch.ones(len(blobs), dtype=torch.float64))
    data.collective = Ranks()
    with pytest.raises(ValueError, match="max_samples_per_cluster is not supported in a "
                                         "distributed fit"):
        training_subset(data, K, M, make_generator(0, data.device), "KMeans")


def test_clone_get_params_and_the_model_file(blobs, tmp_path):
    km = KMeans(K, random_state=0, max_samples_per_cluster=M)
    assert km.get_params()["max_samples_per_cluster"] == M
    assert clone(km).max_samples_per_cluster == M
    km.fit(blobs)
    loaded = torchmeans.load(km.save(tmp_path / "model.safetensors"))
    assert loaded.max_samples_per_cluster == M
    np.testing.assert_array_equal(loaded.predict(blobs), km.labels_)


def test_checkpoint_fingerprint_includes_it():
    params = dict(n_clusters=K, init="k-means++", max_iter=300, tol=1e-4, algorithm="lloyd",
                  metric="euclidean", init_size=None, oversampling_factor=2.0,
                  init_rounds=None, random_state=0)
    off = functional.checkpoint_fingerprint({**params, "max_samples_per_cluster": None}, 1)
    on = functional.checkpoint_fingerprint({**params, "max_samples_per_cluster": M}, 1)
    assert off["max_samples_per_cluster"] is None
    assert on["max_samples_per_cluster"] == M


def test_a_resumed_fit_draws_the_same_sample(monkeypatch, tmp_path):
    X, _ = make_blobs(4000, centers=12, n_features=4, cluster_std=2.0, random_state=0)
    X = X.astype(np.float32)  # (as test_checkpoint's fits)
    # checkpoints every few iterations: the loop of passes, not one call per run
    monkeypatch.setattr(native_backend_module, "SMALL_RUN_MAX_WORK", 0)
    params = dict(n_clusters=12, n_init=3, init="random", random_state=5, tol=0.0,
                  max_iter=40, max_samples_per_cluster=100)
    reference = KMeans(**params).fit(X)
    path, snapshots = tmp_path / "state.safetensors", []
    save = torchmeans.io.checkpoint.Checkpointer.save

    def save_and_copy(self, *args, **kwargs):
        save(self, *args, **kwargs)
        snapshots.append(self.path.read_bytes())

    with monkeypatch.context() as patch:
        patch.setattr(torchmeans.io.checkpoint.Checkpointer, "save", save_and_copy)
        KMeans(**params).fit(X, checkpoint=path, checkpoint_every=5)
    assert len(snapshots) >= 3
    for snapshot in snapshots[1::3]:
        path.write_bytes(snapshot)
        resumed = KMeans(**params).fit(X, checkpoint=path, checkpoint_every=5, resume=True)
        np.testing.assert_array_equal(resumed.cluster_centers_, reference.cluster_centers_)
        np.testing.assert_array_equal(resumed.labels_, reference.labels_)
        assert resumed.inertia_ == reference.inertia_
    path.write_bytes(snapshots[-1])  # another max_samples_per_cluster: refused
    with pytest.raises(ValueError, match="another fit"):
        KMeans(**{**params, "max_samples_per_cluster": 90}).fit(X, checkpoint=path, resume=True)
