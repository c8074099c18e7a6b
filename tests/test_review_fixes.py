"""Regressions for the findings of the code review of the native kernel, sources, metrics,
checkpoints, model files, cosine, CSV reading and the command line."""


import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from sklearn.datasets import make_blobs

import torchmeans
from torchmeans import KMeans, sources
from torchmeans.backends import resolve_backend
from torchmeans.backends.native import kernel as _native
from torchmeans.core.assign import chunk_budget
from torchmeans.core.validation import make_data


class Growing:
    """Batches that gain rows once the fit has counted them."""

    def __init__(self, X):
        self.X, self.passes = X, 0

    def __iter__(self):
        self.passes += 1
        extra = [self.X[:200]] if self.passes > 5 else []
        return iter([self.X[i : i + 500] for i in range(0, len(self.X), 500)] + extra)


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_a_growing_source_is_an_error_never_a_crash(backend):
    if backend == "native" and not _native.available():
        pytest.skip(f"native kernel: {_native.unavailable_reason()}")
    X = np.random.default_rng(0).normal(size=(3000, 4)).astype(np.float32)
    with pytest.raises(RuntimeError, match="changed length during the fit"):
        KMeans(3, init=X[:3], n_init=1, max_iter=5, chunk_bytes=10_000,
               backend=backend).fit(sources.from_batches(Growing(X)))


def test_native_step_refuses_inconsistent_sizes():
    if not _native.available():
        pytest.skip(f"native kernel: {_native.unavailable_reason()}")
    x = torch.randn(10, 3)
    scores = torch.randn(10, 4)
    accumulators = _native.new_accumulators(4, 3)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _native.lloyd_step(scores, x, None, torch.zeros(9, dtype=torch.int64), accumulators,
                           transposed=False, incremental=False)


def test_davies_bouldin_with_many_clusters_equals_sklearn():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(40, 8)) + 10
    labels = np.repeat(np.arange(40), 5)
    X = centers[labels] + rng.normal(scale=0.01, size=(200, 8))
    assert torchmeans.metrics.davies_bouldin_score(X, labels) == pytest.approx(
        skm.davies_bouldin_score(X, labels), rel=1e-6)


def test_checkpoint_of_an_unweighted_fit_is_refused_for_a_weighted_one(tmp_path):
    X, _ = make_blobs(n_samples=2000, centers=5, random_state=0)
    path = tmp_path / "state.safetensors"
    KMeans(5, random_state=0, n_init=1, max_iter=3, tol=0).fit(X, checkpoint=path,
                                                          checkpoint_every=1)
    weight = np.random.default_rng(0).uniform(0.5, 2, len(X))
    with pytest.raises(ValueError, match=r"another fit \(different \['weights'\]"):
        KMeans(5, random_state=0, n_init=1, max_iter=3, tol=0).fit(
            X, checkpoint=path, sample_weight=weight, resume=True)
    with pytest.raises(ValueError, match="init"):
        KMeans(5, init=X[:5], n_init=1, max_iter=3, tol=0).fit(X, checkpoint=path, resume=True)


def test_auto_backend_keeps_accumulators_within_the_budget():
    data = make_data(torch.randn(100, 64), torch.ones(100))
    if _native.available():
        assert resolve_backend("auto", data, 8, chunk_budget(data, None)).name == "native"
    assert resolve_backend("auto", data, 4096, 1 << 16).name == "torch"  # 2 MiB+ of accumulators


def test_native_backend_with_a_bounded_algorithm_is_an_error():
    X = np.random.default_rng(0).normal(size=(200, 3))
    if _native.available():
        with pytest.raises(ValueError, match="backend='native' runs Lloyd passes"):
            KMeans(3, algorithm="hamerly", backend="native").fit(X)
        assert KMeans(3, algorithm="auto", backend="native", random_state=0).fit(X).n_iter_ >= 1


def test_numpy_scalar_parameters_save(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 2))
    km = KMeans(np.int64(3), tol=np.float32(1e-4), random_state=0).fit(X)
    loaded = torchmeans.load(km.save(tmp_path / "m.safetensors"))
    assert loaded.n_clusters == 3
    np.testing.assert_array_equal(loaded.predict(X), km.predict(X))


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


def test_csv_first_row_with_a_missing_value_is_data_not_a_header(tmp_path):
    from torchmeans.io.data_files import DataFileError, read_matrix

    path = tmp_path / "na.csv"
    path.write_text("1.0,NA\n2.0,3.0\n4.0,5.0\n")
    with pytest.raises(DataFileError, match="row 1, column 1: 'NA' is not a number"):
        read_matrix(str(path))


def test_inertia_checks_weights_and_labels():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="sample_weight has shape"):
        torchmeans.metrics.inertia(X, np.zeros(10, int), X[:1], sample_weight=[2.0])
    with pytest.raises(ValueError, match="labels must be >= 0"):
        torchmeans.metrics.inertia(X, -np.ones(10, int))


def test_batches_source_counts_its_rows():
    X = np.ones((30, 2))
    source = sources.from_batches([X[:10], X[10:]])
    assert source.n_samples is None
    KMeans(1, n_init=1).fit(source)
    assert source.n_samples == 30


def test_weighted_draws_never_return_a_zero_weight_row():
    from torchmeans.core.seeding import _search_weights

    weight = torch.tensor([0.0, 0.0, 1.0, 2.0, 0.0])
    targets = torch.tensor([0.0, 0.5, 1.0, 2.999, 3.0, 3.5])  # 0, inside, edges, past total
    assert _search_weights(weight, targets).tolist() == [2, 2, 3, 3, 3, 3]
    batched = torch.stack([weight, weight.flip(0)])
    assert _search_weights(batched, torch.zeros(2, 1)).tolist() == [[2], [1]]
