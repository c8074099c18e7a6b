"""k-means++ skips rows by the triangle inequality: same seeds as evaluating every row.

Where the fused kernel runs, greedy k-means++ compares candidates with it instead
(``_init._fused_greedy_applies``); these tests turn it off to test the pruned path, which
serves the other CPUs and data too large to hold a copy of.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from _helpers import tiled_kernel
from torchmeans._init import _weighted_choice, kmeans_plusplus_centers
from torchmeans._validation import make_data, make_generator


@pytest.fixture(autouse=True)
def pruned_path():
    """The pruned greedy seeding (not the fused kernel's comparison)."""
    with tiled_kernel(False):
        yield


def reference_indices(X, weight, k, trials, seed):
    """Greedy k-means++ evaluating every row for every candidate (float64, direct)."""
    generator = make_generator(seed, torch.device("cpu"))
    x = torch.as_tensor(X)
    w = torch.as_tensor(weight)
    first = _weighted_choice(w, 1, generator)
    chosen = [int(first)]
    closest = (x - x[first]).square().sum(dim=1)
    for _ in range(1, k):
        ids = _weighted_choice(w * closest, trials, generator)
        distances = (x[None] - x[ids][:, None]).square().sum(dim=-1)
        best = int((torch.minimum(distances, closest) @ w).argmin())
        closest = torch.minimum(closest, distances[best])
        chosen.append(int(ids[best]))
    return chosen


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n", "d", "k"), [(600, 2, 40), (400, 16, 25), (300, 5, 150)])
def test_pruned_seeding_equals_full_evaluation(n, d, k, seed):
    X, _ = make_blobs(n, n_features=d, centers=max(3, k // 4), random_state=seed)
    weight = np.random.default_rng(seed).uniform(0.5, 2.0, n)
    trials = 2 + int(np.log(k))
    data = make_data(torch.as_tensor(X), torch.as_tensor(weight), copy=True)
    _, indices = kmeans_plusplus_centers(data, k, make_generator(seed, data.device))
    assert indices.tolist() == reference_indices(X, weight, k, trials, seed)


def test_pruning_with_duplicates_and_zero_weights():
    X = np.repeat(np.random.default_rng(0).normal(size=(30, 3)), 5, axis=0)
    weight = np.ones(len(X))
    weight[::3] = 0.0
    data = make_data(torch.as_tensor(X), torch.as_tensor(weight), copy=True)
    centers, indices = kmeans_plusplus_centers(data, 30, make_generator(1, data.device))
    assert (weight[indices.numpy()] > 0).all()
    assert len(np.unique(np.asarray(centers), axis=0)) == 30
    # Duplicated rows tie exactly: which copy wins is rounding (BLAS- and CPU-dependent),
    # and either copy gives the same center and the same later draws.
    expected = reference_indices(X, weight, 30, 2 + int(np.log(30)), 1)
    np.testing.assert_array_equal(X[indices.numpy()], X[expected])


def test_late_steps_evaluate_a_fraction_of_the_rows(monkeypatch):
    from torchmeans.data import DenseData

    sizes = []
    original = DenseData.subset

    def counting_subset(self, indices):
        sizes.append(indices.numel())
        return original(self, indices)

    monkeypatch.setattr(DenseData, "subset", counting_subset)
    X, _ = make_blobs(2000, n_features=4, centers=50, random_state=0)
    data = make_data(torch.as_tensor(X), torch.ones(len(X), dtype=torch.float64), copy=True)
    kmeans_plusplus_centers(data, 100, make_generator(0, data.device))
    assert len(sizes) > 50
    assert np.median(sizes[-20:]) < 0.2 * len(X)
