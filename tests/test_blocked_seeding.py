"""Blocked greedy k-means++: exact D^2 sampling with few passes over the data."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

import torchmeans.core.seeding as init_module
from _helpers import tiled_kernel
from torchmeans import KMeans, sources
from torchmeans.backends.native import kernel as _native
from torchmeans.core.seeding import blocked_kmeans_plusplus_centers, kmeans_plusplus_centers
from torchmeans.core.validation import make_data, make_generator

needs_tiled = pytest.mark.skipif(
    _native.unavailable_reason() is not None or not _native.tiled_available(),
    reason="no native kernel, or no AVX2/AVX-512")
POINTS = np.array([0.0, 0.1, 5.0, 5.1, 10.0, 10.1, 20.0])
WEIGHTS = np.array([1.0, 2.0, 1.0, 0.5, 1.0, 1.0, 0.2])


def fourth_pick_distribution(stale: bool) -> np.ndarray:
    """Exact law of the 4th center of plain k-means++ (one trial) on POINTS.

    ``stale``: the law if the 4th center were drawn with the distances of the first
    two centers only (what a blocked draw without the rejection step would do).
    """
    law = np.zeros(len(POINTS))
    for order in itertools.permutations(range(len(POINTS)), 4):
        probability, chosen = WEIGHTS[order[0]] / WEIGHTS.sum(), [order[0]]
        for step, pick in enumerate(order[1:], start=1):
            basis = chosen[:2] if stale and step == 3 else chosen
            d2 = np.min((POINTS[:, None] - POINTS[basis][None]) ** 2, axis=1) * WEIGHTS
            probability *= d2[pick] / d2.sum()
            chosen.append(pick)
        law[order[3]] += probability
    return law


def test_rejection_step_draws_from_the_current_distances():
    data = make_data(torch.as_tensor(POINTS[:, None]), torch.as_tensor(WEIGHTS), copy=True)
    runs = 1500
    counts = np.zeros(len(POINTS))
    generator = make_generator(0, data.device)
    for _ in range(runs):
        # k=4: blocks of 1, then 2 centers; the 4th pick goes through the rejection step.
        _, indices = blocked_kmeans_plusplus_centers(data, 4, generator, n_local_trials=1,
                                                     evaluation_rows=len(POINTS))
        counts[int(indices[3])] += 1
    exact, stale = fourth_pick_distribution(False), fourth_pick_distribution(True)
    assert 0.5 * np.abs(exact - stale).sum() > 0.15  # the test can tell them apart
    assert 0.5 * np.abs(counts / runs - exact).sum() < 0.05


def test_exact_evaluation_matches_greedy_quality_and_subsample_stays_close():
    X, _ = make_blobs(3000, n_features=6, centers=30, random_state=1)
    data = make_data(torch.as_tensor(X), torch.ones(len(X), dtype=torch.float64), copy=True)
    rows = data.take(torch.arange(len(X)))

    def potential(centers):
        return float(torch.cdist(rows, centers).amin(dim=1).square().sum())

    plain, exact, sampled = [], [], []
    for seed in range(16):
        generator = make_generator(seed, data.device)
        plain.append(potential(kmeans_plusplus_centers(data, 60, generator)[0]))
        exact.append(potential(blocked_kmeans_plusplus_centers(
            data, 60, make_generator(seed, data.device), evaluation_rows=len(X))[0]))
        sampled.append(potential(blocked_kmeans_plusplus_centers(
            data, 60, make_generator(seed, data.device))[0]))
    spread = np.std(plain) / np.sqrt(len(plain))
    assert abs(np.mean(exact) - np.mean(plain)) < 4 * spread
    assert np.mean(sampled) < np.mean(plain) + 4 * spread + 0.02 * np.mean(plain)


def test_invariants_weights_duplicates_and_determinism():
    X = np.repeat(np.random.default_rng(0).normal(size=(40, 3)), 3, axis=0)
    weight = np.ones(len(X))
    weight[::4] = 0.0
    data = make_data(torch.as_tensor(X), torch.as_tensor(weight), copy=True)
    centers, indices = blocked_kmeans_plusplus_centers(data, 40, make_generator(3, data.device))
    assert (weight[indices.numpy()] > 0).all()
    np.testing.assert_allclose(centers.numpy() + data.offset.numpy(), X[indices.numpy()])
    assert len(np.unique(X[indices.numpy()], axis=0)) == 40  # 40 distinct points, 40 centers
    _, again_indices = blocked_kmeans_plusplus_centers(data, 40,
                                                           make_generator(3, data.device))
    assert torch.equal(again_indices, indices)
    # More centers than distinct points: the seeding ends (duplicates, zero potential).
    _, indices = blocked_kmeans_plusplus_centers(data, 100, make_generator(3, data.device))
    assert indices.numel() == 100
    assert (weight[indices.numpy()] > 0).all()


def test_large_problems_take_the_blocked_seeding(monkeypatch, tmp_path):
    X, _ = make_blobs(4000, n_features=5, centers=20, random_state=2)
    X = X.astype(np.float32)
    calls = []
    original = init_module.blocked_kmeans_plusplus_centers

    def spy(*args, **kwargs):
        calls.append((args[1], kwargs.get("evaluation_rows")))
        return original(*args, **kwargs)

    monkeypatch.setattr(init_module, "blocked_kmeans_plusplus_centers", spy)
    small = KMeans(20, random_state=0, n_init=1).fit(X)
    # small problems: greedy k-means++ on all rows (with the fused kernel where it runs)
    assert calls == ([(20, 4000)] if _native.tiled_available() else [])
    calls.clear()
    monkeypatch.setattr(init_module, "BLOCKED_SEEDING_MIN_WORK", 4000 * 20)
    blocked = KMeans(20, random_state=0, n_init=1).fit(X)
    assert calls == [(20, None)]
    assert blocked.inertia_ < 1.05 * small.inertia_
    np.save(tmp_path / "rows.npy", X)
    streamed = KMeans(20, random_state=0, n_init=1).fit(sources.from_npy([tmp_path / "rows.npy"]))
    np.testing.assert_array_equal(streamed.labels_, blocked.labels_)  # same draws


@pytest.mark.parametrize("k", [1, 2, 3, 130, 300])
def test_every_block_size(k):
    X = np.random.default_rng(k).normal(size=(500, 4))
    data = make_data(torch.as_tensor(X), torch.ones(500, dtype=torch.float64), copy=True)
    centers, indices = blocked_kmeans_plusplus_centers(data, k, make_generator(0, data.device))
    assert centers.shape == (k, 4)
    assert len(set(indices.tolist())) == k


@pytest.mark.parametrize(("chunk_bytes", "tiled"), [
    (1, False), (50_000, False), pytest.param(None, True, marks=needs_tiled)])
def test_windows_of_any_size_pick_the_same_centers(chunk_bytes, tiled):
    """Products per window, per step when the budget holds no window, or the fused
    kernel's potentials (TiledRows): same seeds. (The kernel sums the potentials in
    another order than torch: equal here because no two candidates nearly tie.)"""
    X, _ = make_blobs(3000, n_features=5, centers=40, random_state=3)
    weight = np.random.default_rng(3).uniform(0.5, 2.0, len(X))
    data = make_data(torch.as_tensor(X), torch.as_tensor(weight), copy=True)
    with tiled_kernel(False):
        _, expected = blocked_kmeans_plusplus_centers(data, 200, make_generator(5, data.device))
    with tiled_kernel(tiled):
        _, got = blocked_kmeans_plusplus_centers(data, 200, make_generator(5, data.device),
                                                 chunk_bytes=chunk_bytes)
    assert torch.equal(got, expected)
