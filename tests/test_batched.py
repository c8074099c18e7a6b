"""batched_kmeans / BatchedKMeans: each problem equals its own single fit from the same init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import torchmeans
from torchmeans.backends.torch import TorchBackend
from torchmeans.estimators.batched import BatchedKMeans, batched_kmeans


def _problems(n_problems: int, n_samples: int, n_features: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_problems, 4, n_features, generator=generator, dtype=torch.float64) * 4
    picks = torch.randint(0, 4, (n_problems, n_samples), generator=generator)
    noise = torch.randn(n_problems, n_samples, n_features, generator=generator,
                        dtype=torch.float64)
    return torch.gather(centers, 1, picks[..., None].expand(-1, -1, n_features)) + noise + 10


def _assert_equals_single_fits(X, init, result, **single):
    for b in range(X.shape[0]):
        alone = torchmeans.kmeans(X[b], init.shape[1], init=init[b], n_init=1, backend="torch",
                                  **single)
        assert torch.equal(alone.labels, result.labels[b])
        torch.testing.assert_close(alone.centers, result.centers[b], rtol=1e-9, atol=1e-9)
        assert result.inertia[b].item() == pytest.approx(alone.inertia, rel=1e-9)
        assert int(result.n_iter[b]) == alone.n_iter


@settings(max_examples=25, deadline=None)
@given(n_problems=st.integers(1, 5), n_samples=st.integers(1, 60), n_features=st.integers(1, 6),
       k=st.integers(1, 8), seed=st.integers(0, 2**16), tiny_chunks=st.booleans())
def test_each_problem_equals_its_single_fit(n_problems, n_samples, n_features, k, seed,
                                            tiny_chunks):
    k = min(k, n_samples)
    X = _problems(n_problems, n_samples, n_features, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    rows = torch.stack([torch.randperm(n_samples, generator=generator)[:k]
                        for _ in range(n_problems)])
    init = torch.gather(X, 1, rows[..., None].expand(-1, -1, n_features))
    # Tiny chunks: one problem per group and a few rows per chunk.
    result = batched_kmeans(X, k, init=init, chunk_bytes=64 if tiny_chunks else None)
    _assert_equals_single_fits(X, init, result)


def test_equals_scikit_learn_from_the_same_init():
    X = _problems(4, 200, 3, seed=3)
    init = X[:, :5].clone()
    result = batched_kmeans(X, 5, init=init, tol=0)
    for b in range(4):
        reference = SKKMeans(5, init=init[b].numpy(), n_init=1, tol=0).fit(X[b].numpy())
        assert np.array_equal(result.labels[b].numpy(), reference.labels_)
        np.testing.assert_allclose(result.centers[b].numpy(), reference.cluster_centers_,
                                   rtol=1e-9, atol=1e-9)
        assert result.inertia[b].item() == pytest.approx(reference.inertia_, rel=1e-9)


def test_mask_and_weights_equal_the_single_fit_of_the_valid_rows():
    X = _problems(3, 120, 4, seed=5)
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 120, generator=generator) > 0.4
    weight = torch.rand(3, 120, generator=generator, dtype=torch.float64) * 3
    X[~mask] = torch.nan  # padding may hold anything: it is never read
    init = torch.stack([X[b][mask[b]][:4] for b in range(3)])
    result = batched_kmeans(X, 4, init=init, mask=mask, sample_weight=weight)
    assert bool((result.labels[~mask] == -1).all())
    for b in range(3):
        alone = torchmeans.kmeans(X[b][mask[b]], 4, init=init[b], n_init=1, backend="torch",
                                  sample_weight=weight[b][mask[b]])
        assert torch.equal(alone.labels, result.labels[b][mask[b]])
        torch.testing.assert_close(alone.centers, result.centers[b], rtol=1e-9, atol=1e-9)
        assert result.inertia[b].item() == pytest.approx(alone.inertia, rel=1e-9)


def test_cosine_equals_the_single_spherical_fit():
    X = _problems(3, 90, 5, seed=8)
    init = X[:, :3].clone()
    result = batched_kmeans(X, 3, init=init, metric="cosine")
    _assert_equals_single_fits(X, init, result, metric="cosine")
    torch.testing.assert_close(result.centers.norm(dim=2), torch.ones(3, 3, dtype=X.dtype))


def test_empty_clusters_are_relocated_as_in_a_single_fit():
    X = _problems(2, 50, 2, seed=11)
    init = X[:, :1].repeat(1, 3, 1)  # three identical centers: two start empty
    result = batched_kmeans(X, 3, init=init)
    _assert_equals_single_fits(X, init, result)
    assert bool((torch.stack([torch.bincount(lab, minlength=3) for lab in result.labels])
                 > 0).all())


def test_k_equal_one_and_k_equal_n():
    X = _problems(2, 6, 3, seed=2)
    one = batched_kmeans(X, 1, random_state=0)
    torch.testing.assert_close(one.centers[:, 0], X.mean(dim=1))
    every = batched_kmeans(X, 6, random_state=0)
    assert every.inertia.abs().max().item() < 1e-9
    assert all(sorted(lab.tolist()) == list(range(6)) for lab in every.labels)


def test_kmeans_plusplus_finds_the_blobs_of_every_problem():
    # The demo's blobs (and seeds whose four blobs do not overlap; seed 5's do).
    data = [make_blobs(300, centers=4, cluster_std=0.6, random_state=seed)
            for seed in (0, 1, 2, 3, 4, 6, 7, 8)]
    X = torch.tensor(np.stack([x for x, _ in data]))
    result = batched_kmeans(X, 4, random_state=0, n_init=3)
    for (_, truth), labels in zip(data, result.labels, strict=True):
        assert adjusted_rand_score(truth, labels.numpy()) == 1.0


def test_n_init_keeps_the_best_restart_and_matches_scikit_learn_quality():
    data = [make_blobs(200, centers=6, cluster_std=2.0, random_state=seed)[0] for seed in range(6)]
    X = torch.tensor(np.stack(data))
    single = batched_kmeans(X, 6, init="random", n_init=1, random_state=0)
    best = batched_kmeans(X, 6, init="random", n_init=10, random_state=0)
    reference = [SKKMeans(6, init="random", n_init=10, random_state=0).fit(x).inertia_
                 for x in data]
    assert bool((best.inertia <= single.inertia * (1 + 1e-12)).all()) or \
        float(best.inertia.sum()) < float(single.inertia.sum())
    np.testing.assert_allclose(best.inertia.numpy(), reference, rtol=0.02)


def test_finished_problems_stop_costing_work(monkeypatch):
    X = torch.cat([_problems(1, 300, 2, seed=0),
                   torch.randn(1, 300, 2, dtype=torch.float64)])  # blobs settle fast
    sizes = []
    original = TorchBackend.batched_pass

    def counting(self, pb, source, centers, labels, deterministic):
        sizes.append(source.numel())
        return original(self, pb, source, centers, labels, deterministic)

    monkeypatch.setattr(TorchBackend, "batched_pass", counting)  # Lloyd's and the final pass
    result = batched_kmeans(X, 4, init=X[:, :4].clone(), tol=0)
    assert int(result.n_iter[0]) != int(result.n_iter[1])
    lloyd_passes = sizes[:-1]  # the last pass is the final assignment of every problem
    assert len(lloyd_passes) == int(result.n_iter.max())
    assert lloyd_passes.count(2) == int(result.n_iter.min())
    assert lloyd_passes[-1] == 1


def test_repeated_fits_are_bit_identical():
    X = _problems(4, 100, 3, seed=4).float()
    first = batched_kmeans(X, 5, random_state=7, n_init=3)
    second = batched_kmeans(X, 5, random_state=7, n_init=3)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_float32_and_numpy_input():
    X = _problems(2, 80, 3, seed=1)
    as_numpy = batched_kmeans(X.float().numpy(), 4, random_state=0)
    as_tensor = batched_kmeans(X.float(), 4, random_state=0)
    assert as_numpy.centers.dtype == torch.float32
    assert torch.equal(as_numpy.labels, as_tensor.labels)


def test_estimator_fit_predict_and_params():
    X = _problems(3, 100, 2, seed=6)
    model = BatchedKMeans(4, random_state=0).fit(X)
    assert model.cluster_centers_.shape == (3, 4, 2)
    assert torch.equal(model.predict(X), model.labels_)
    assert clone(model).get_params() == model.get_params()
    mask = torch.ones(3, 100, dtype=torch.bool)
    mask[:, :10] = False
    labels = model.predict(X, mask=mask)
    assert bool((labels[:, :10] == -1).all())
    assert torch.equal(labels[:, 10:], model.labels_[:, 10:])
    with pytest.raises(ValueError, match="expected"):
        model.predict(X[:, :, :1])
    with pytest.raises(AttributeError, match="not fitted"):
        BatchedKMeans(2).predict(X)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"X": torch.randn(10, 2)}, "3-D"),
    ({"X": torch.tensor([[[0.0, 1.0], [float("nan"), 1.0]]])}, r"X\[0, 1\]"),
    ({"n_clusters": 5}, "Problem 0 has 4 valid samples"),
    ({"mask": torch.ones(2, 3, dtype=torch.bool)}, "mask.shape"),
    ({"init": torch.zeros(2, 3, 2)}, "shape of the initial centers"),
    ({"init": "k-means||"}, "init must be"),
    ({"metric": "cosine", "X": torch.zeros(1, 4, 2)}, "zero norm"),
    ({"sample_weight": -torch.ones(1, 4)}, "sample_weight"),
    ({"deterministic": "no"}, "'deterministic' parameter of batched_kmeans must be an instance"),
    ({"chunk_bytes": "abc"}, "'chunk_bytes' parameter of batched_kmeans must be an int"),
])
def test_bad_input_gets_a_clear_error(kwargs, message):
    arguments = {"X": torch.randn(1, 4, 2), "n_clusters": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        batched_kmeans(arguments.pop("X"), arguments.pop("n_clusters"), **arguments)


def test_masked_out_nan_is_ignored():
    X = torch.randn(1, 6, 2)
    X[0, 5] = torch.nan
    mask = torch.tensor([[True] * 5 + [False]])
    result = batched_kmeans(X, 2, mask=mask, random_state=0)
    assert bool(torch.isfinite(result.centers).all())
    assert int(result.labels[0, 5]) == -1


def test_float32_problems_match_single_fits_to_float32_rounding():
    X = _problems(4, 2000, 5, seed=12).float()
    init = X[:, :20].clone()
    result = batched_kmeans(X, 20, init=init, tol=0)
    for b in range(4):
        alone = torchmeans.kmeans(X[b], 20, init=init[b], n_init=1, tol=0, backend="torch")
        assert torch.equal(alone.labels, result.labels[b])
        assert int(result.n_iter[b]) == alone.n_iter
        torch.testing.assert_close(alone.centers, result.centers[b], rtol=1e-5, atol=1e-5)


def test_predict_on_the_training_rows_gives_labels_exactly():
    X = _problems(3, 500, 6, seed=13).float()
    mask = torch.rand(3, 500, generator=torch.Generator().manual_seed(1)) > 0.2
    model = BatchedKMeans(7, random_state=0, chunk_bytes=4096).fit(X, mask=mask)
    assert torch.equal(model.predict(X, mask=mask), model.labels_)
    cosine = BatchedKMeans(5, random_state=0, metric="cosine").fit(X)
    assert torch.equal(cosine.predict(X), cosine.labels_)


def test_predict_equals_labels_far_from_the_origin():
    """Shifting the returned centers back would round: predict uses the fit's own."""
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        X = torch.randn(4, 3000, 3, generator=generator) * 0.01 + 1000
        for n_init in (1, 3):
            model = BatchedKMeans(8, n_init=n_init, max_iter=5, random_state=seed).fit(X)
            assert torch.equal(model.predict(X), model.labels_)


def test_batched_relocation_equals_the_single_problem_one_on_each_problem():
    """relocate_empty_clusters over a batch moves, in each problem, what it moves alone."""
    from torchmeans.core.lloyd import farthest_rows, relocate_empty_clusters
    from torchmeans.data.dense import DenseData

    generator = torch.Generator().manual_seed(3)
    n_problems, n, d, k = 4, 40, 3, 6
    X = torch.randn(n_problems, n, d, generator=generator, dtype=torch.float64)
    weight = torch.rand(n_problems, n, generator=generator, dtype=torch.float64) + 0.5
    centers = torch.randn(n_problems, k, d, generator=generator, dtype=torch.float64)
    # Clusters 3-5 empty in problems 0 and 2, 2-5 in problem 1, none in problem 3.
    labels = torch.randint(0, 3, (n_problems, n), generator=generator)
    labels[1] = torch.randint(0, 2, (n,), generator=generator)
    labels[3] = torch.arange(n) % k
    sums = torch.zeros(n_problems, k, d, dtype=torch.float64)
    weights = torch.zeros(n_problems, k, dtype=torch.float64)
    for p in range(n_problems):
        sums[p].index_add_(0, labels[p], X[p] * weight[p][:, None])
        weights[p].index_add_(0, labels[p], weight[p])
    expected_sums, expected_weights, farthest = sums.clone(), weights.clone(), []
    for p in range(n_problems):
        rows = DenseData(X[p], weight[p], torch.zeros(d, dtype=torch.float64), shifted=True)
        n_empty = int((weights[p] == 0).sum())
        found = farthest_rows(rows, centers[p], labels[p], n_empty, n, torch.float64)
        assert found.shape[0] == n_empty
        if n_empty:  # the single problem alone (2-D shapes)
            relocate_empty_clusters(expected_sums[p], expected_weights[p], found)
        farthest.append(found)
    padded = torch.full((n_problems, max(f.shape[0] for f in farthest), d + 3), -1.0,
                        dtype=torch.float64)
    for p, found in enumerate(farthest):
        padded[p, : found.shape[0]] = found
    relocate_empty_clusters(sums, weights, padded)
    assert torch.equal(sums, expected_sums)
    assert torch.equal(weights, expected_weights)
    assert bool((weights > 0).all())
    # scikit-learn's rule on problem 0: the farthest rows, farthest first, fill clusters 3, 4, 5
    distances = (X[0] - centers[0][labels[0]]).square().sum(dim=1)
    order = distances.argsort(descending=True)[:3]
    torch.testing.assert_close(sums[0, 3:], X[0][order] * weight[0][order][:, None])


def test_the_update_over_a_batch_equals_the_update_of_each_problem():
    from torchmeans.core.lloyd import center_shift, converged, update_centers

    generator = torch.Generator().manual_seed(0)
    sums = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)
    weights = torch.rand(3, 5, generator=generator, dtype=torch.float64) * 4
    weights[1, 2] = 0  # an empty cluster: the heaviest cluster's mean
    old = torch.randn(3, 5, 4, generator=generator, dtype=torch.float32)
    for spherical in (False, True):
        batched = update_centers(sums, weights, torch.float32, spherical=spherical)
        shift = center_shift(batched, old, torch.float64)
        for p in range(3):
            alone = update_centers(sums[p], weights[p], torch.float32, spherical=spherical)
            assert torch.equal(alone, batched[p])
            assert torch.equal(center_shift(alone, old[p], torch.float64), shift[p])
        assert torch.equal(batched[1, 2], batched[1, int(weights[1].argmax())])
    n_changed = torch.tensor([0.0, 3.0, 5.0])
    shift = torch.tensor([1.0, 0.5, 2.0])
    assert converged(n_changed, shift, torch.tensor(1.0)).tolist() == [True, True, False]
    assert converged(0.0, 2.0, 1.0)
    assert converged(4.0, 1.0, 1.0)
    assert not converged(4.0, 2.0, 1.0)
