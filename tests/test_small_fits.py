"""Small fits in one call each: the native whole Lloyd run and the greedy k-means++ seeding.

A fit of a few hundred rows runs its Lloyd iterations in one call of the native kernel
(``NativeBackend.lloyd_run``) and seeds with greedy k-means++ on all rows
(``greedy_kmeans_plusplus_centers``, one call of the kernel where it runs). These tests hold
them to the engine's own loop (the native backend's passes, one per call), to a float64 NumPy
oracle of greedy k-means++ on the same uniform numbers, and to the kernel's argument checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

import torchmeans
from torchmeans.backends import REGISTRY
from torchmeans.backends.base import Backend
from torchmeans.backends.native import NativeBackend, kernel
from torchmeans.backends.native import backend as native_backend_module
from torchmeans.backends.native.backend import SMALL_RUN_MAX_FEATURES
from torchmeans.core.lloyd import lloyd
from torchmeans.core.seeding import (
    GREEDY_SEEDING_MAX_WORK,
    greedy_kmeans_plusplus_centers,
    kmeans_plusplus_centers,
)
from torchmeans.core.validation import make_data

pytestmark = pytest.mark.skipif(not kernel.available(), reason="the native kernel is not built")

NATIVE = REGISTRY["native"]


def dense(x: np.ndarray, weight: np.ndarray | None = None):
    X = torch.from_numpy(np.ascontiguousarray(x))
    w = torch.ones(len(x), dtype=X.dtype) if weight is None else torch.from_numpy(weight)
    return make_data(X, w.to(X.dtype))


def engine_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the native backend run one pass per call (the engine's own loop)."""
    monkeypatch.setattr(NativeBackend, "lloyd_run", Backend.lloyd_run)


def problem(seed: int, n: int, d: int, k: int, dtype: type, weighted: bool):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) + rng.integers(0, 4, size=(n, 1)) * 3).astype(dtype)
    weight = rng.uniform(0.1, 3.0, size=n) if weighted else None
    centers = x[rng.choice(n, k, replace=False)]
    return x, weight, centers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_whole_run_equals_the_engine_loop(monkeypatch, dtype, weighted, d):
    """Same labels, iterations and (up to the sums' last bits) centers as pass-by-pass."""
    for seed in range(6):
        x, weight, init = problem(seed, 257, d, 1 + seed % 6, dtype, weighted)
        data = dense(x, weight)
        start = torch.from_numpy(init) - data.offset
        assert NATIVE.lloyd_run(data, start, max_iter=300, tol=0.0,
                                inertia_offset=0.0) is not None
        fast = lloyd(data, start, backend=NATIVE, max_iter=300, tol=0.0)
        with monkeypatch.context() as patch:
            engine_loop(patch)
            slow = lloyd(data, start, backend=NATIVE, max_iter=300, tol=0.0)
        assert fast.n_iter == slow.n_iter
        assert torch.equal(fast.labels, slow.labels)
        rtol = 1e-6 if dtype == np.float32 else 1e-12
        torch.testing.assert_close(fast.centers, slow.centers, rtol=rtol, atol=rtol)
        for a, b in zip(fast.history, slow.history, strict=True):
            assert (a.iteration, a.n_changed, a.n_empty) == (b.iteration, b.n_changed,
                                                                  b.n_empty)
            assert a.inertia == pytest.approx(b.inertia, rel=10 * rtol)
            assert a.center_shift == pytest.approx(b.center_shift, rel=1e-5, abs=1e-12)


def test_the_kernel_norms_are_torchs_up_to_the_widest_small_run():
    """The run's scores use the center norms nearest() computes (torch sums in order)."""
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for d in range(1, SMALL_RUN_MAX_FEATURES + 1):
            centers = torch.randn(4096, d, generator=generator, dtype=dtype) * torch.rand(
                4096, d, generator=generator, dtype=dtype).pow(4) * 100
            squares = centers * centers
            in_order = squares[:, 0].clone()
            for f in range(1, d):
                in_order = in_order + squares[:, f]
            assert torch.equal(centers.square().sum(dim=1), in_order), (dtype, d)
    X, _ = make_blobs(n_samples=100, n_features=SMALL_RUN_MAX_FEATURES + 1, random_state=0)
    data = dense(X)
    assert NATIVE.lloyd_run(data, data.take(torch.arange(3)), max_iter=5, tol=0.0,
                            inertia_offset=0.0) is None


def test_an_empty_cluster_is_handed_back_and_relocated(monkeypatch):
    """A pass that empties a cluster goes back to the engine, which relocates as sklearn."""
    x, _ = make_blobs(n_samples=200, centers=3, cluster_std=0.5, random_state=1)
    init = np.vstack([x[:2], [[1e3, 1e3]]])  # the far center gets no row
    data = dense(x)
    start = torch.from_numpy(init) - data.offset
    run = NATIVE.lloyd_run(data, start, max_iter=300, tol=1e-4, inertia_offset=0.0)
    assert run.outcome == 2
    assert run.history.shape[0] == 0
    assert torch.equal(run.centers, start)
    assert bool((run.labels == -1).all())
    fast = lloyd(data, start, backend=NATIVE, max_iter=300, tol=1e-4)
    with monkeypatch.context() as patch:
        engine_loop(patch)
        slow = lloyd(data, start, backend=NATIVE, max_iter=300, tol=1e-4)
    assert fast.history[0].n_empty == 1
    assert fast.n_iter == slow.n_iter
    assert torch.equal(fast.labels, slow.labels)
    torch.testing.assert_close(fast.centers, slow.centers, rtol=1e-12, atol=1e-12)


def test_a_run_longer_than_one_call_goes_on_in_the_engine_loop(monkeypatch):
    """More iterations than one call runs (or a huge max_iter): the loop takes over."""
    x, _, init = problem(5, 300, 2, 6, np.float64, False)
    data = dense(x)
    start = torch.from_numpy(init) - data.offset
    with monkeypatch.context() as patch:
        engine_loop(patch)
        slow = lloyd(data, start, backend=NATIVE, max_iter=300, tol=0.0)
    assert slow.n_iter > 3
    with monkeypatch.context() as patch:
        patch.setattr(native_backend_module, "SMALL_RUN_MAX_ITER", 2)
        handed = lloyd(data, start, backend=NATIVE, max_iter=300, tol=0.0)
    huge = lloyd(data, start, backend=NATIVE, max_iter=10**12, tol=0.0)  # no 10^12-row buffer
    for fast in (handed, huge):
        assert fast.n_iter == slow.n_iter
        assert torch.equal(fast.labels, slow.labels)
        assert [s.n_changed for s in fast.history] == [s.n_changed for s in slow.history]
        torch.testing.assert_close(fast.centers, slow.centers, rtol=1e-12, atol=1e-12)


def test_max_iter_and_tolerance_stop_as_the_engine_loop(monkeypatch):
    x, _, init = problem(3, 300, 2, 5, np.float64, False)
    data = dense(x)
    start = torch.from_numpy(init) - data.offset
    for max_iter, tol in ((1, 0.0), (2, 0.0), (300, 1e-2), (300, 1e3)):
        fast = lloyd(data, start, backend=NATIVE, max_iter=max_iter, tol=tol)
        with monkeypatch.context() as patch:
            engine_loop(patch)
            slow = lloyd(data, start, backend=NATIVE, max_iter=max_iter, tol=tol)
        assert fast.n_iter == slow.n_iter <= max_iter
        assert torch.equal(fast.labels, slow.labels)


@pytest.mark.parametrize("n_features", [2, 5, 9, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_labels_equal_predict(n_features, dtype):
    """The final labels are those predict gives, whether or not the run's norms are torch's."""
    for seed in range(4):
        X, _ = make_blobs(n_samples=300, n_features=n_features, centers=5, random_state=seed)
        X = X.astype(dtype)
        km = torchmeans.KMeans(5, random_state=seed).fit(X)
        np.testing.assert_array_equal(km.labels_, km.predict(X))
        assert km.inertia_ == -km.score(X)


@pytest.mark.parametrize("seed", range(40, 45))
def test_every_algorithm_gives_the_same_small_fit(seed):
    """scikit-learn's test_kmeans_elkan_results case: lloyd and elkan agree to the bit."""
    X, _ = make_blobs(random_state=np.random.RandomState(seed))
    X[X < 0] = 0  # whole clusters at 0 in a feature: centers there are 0 up to rounding
    fits = [torchmeans.KMeans(5, random_state=seed, n_init=1, tol=1e-8, algorithm=name).fit(X)
            for name in ("lloyd", "elkan", "hamerly", "yinyang")]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.cluster_centers_, fits[0].cluster_centers_)
        np.testing.assert_array_equal(other.labels_, fits[0].labels_)
        assert other.n_iter_ == fits[0].n_iter_


def test_verbose_runs_the_engine_loop_checkpoints_do_not(monkeypatch, tmp_path, capsys):
    """Each iteration printed: the loop; a checkpointed small fit runs in one call."""
    calls = []
    original = NativeBackend.lloyd_run

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NativeBackend, "lloyd_run", counted)
    X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.6, random_state=0)
    torchmeans.KMeans(4, random_state=0, verbose=1).fit(X)
    assert "Iteration 0" in capsys.readouterr().out
    assert calls == []
    torchmeans.kmeans(torch.from_numpy(X), 4, random_state=0,
                      checkpoint=tmp_path / "run.ckpt")
    assert calls == [1]
    torchmeans.KMeans(4, random_state=0).fit(X)
    assert calls == [1, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_checkpointed_small_fit_is_the_fit_without_one(tmp_path, dtype):
    """float64 sums summed another way would move the centers' last bits: none differ."""
    X, _ = make_blobs(n_samples=2000, centers=40, n_features=2, cluster_std=2.0, random_state=0)
    X = X.astype(dtype)
    params = {"n_clusters": 20, "n_init": 3, "init": "random", "random_state": 5, "tol": 0.0}
    plain = torchmeans.KMeans(**params).fit(X)
    for resume in (False, True):  # (the second resumes a finished fit's file, if any)
        saved = torchmeans.KMeans(**params).fit(X, checkpoint=tmp_path / "run.ckpt",
                                                checkpoint_every=1, resume=resume)
        np.testing.assert_array_equal(saved.cluster_centers_, plain.cluster_centers_)
        np.testing.assert_array_equal(saved.labels_, plain.labels_)
        assert saved.inertia_ == plain.inertia_


# -- greedy k-means++ ----------------------------------------------------------------------


def greedy_oracle(x: np.ndarray, weight: np.ndarray | None, first: int,
                  uniforms: np.ndarray) -> list[int]:
    """scikit-learn's greedy k-means++ in float64 NumPy, on given uniforms (row-order sums)."""
    x = x.astype(np.float64)
    w = np.ones(len(x)) if weight is None else weight.astype(np.float64)
    chosen = [first]
    closest = ((x - x[first]) ** 2).sum(axis=1)
    for row in uniforms:
        potential = closest * w
        cumulative = np.cumsum(potential)
        if not cumulative[-1] > 0:
            cumulative = np.cumsum(w)
        last_positive = np.searchsorted(cumulative, cumulative[-1], side="left")
        picks = np.minimum(np.searchsorted(cumulative, row * cumulative[-1], side="right"),
                           last_positive)
        distances = np.minimum(((x[None] - x[picks][:, None]) ** 2).sum(axis=2), closest)
        best = int(np.argmin(np.cumsum(distances * w, axis=1)[:, -1]))  # row order
        chosen.append(int(picks[best]))
        closest = distances[best]
    return chosen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_greedy_seeding_kernel_and_torch_match_the_oracle(monkeypatch, dtype, weighted):
    rng = np.random.default_rng(0)
    for trial in range(10):
        n, d, k = int(rng.integers(5, 200)), int(rng.integers(1, 12)), int(rng.integers(2, 9))
        x = rng.normal(size=(n, d)).astype(dtype)
        weight = rng.uniform(0.0, 2.0, size=n) if weighted else None
        if weighted:
            weight[rng.random(n) < 0.2] = 0.0  # rows of weight 0 are never drawn
            weight[0] = 1.0
        uniforms = rng.random((k - 1, 2 + trial % 3))
        first_uniform = rng.random()
        by_weight = np.cumsum(np.ones(n) if weight is None else weight)
        first = min(int(np.searchsorted(by_weight, first_uniform * by_weight[-1], side="right")),
                    int(np.searchsorted(by_weight, by_weight[-1], side="left")))
        expected = greedy_oracle(x, weight, first, uniforms)
        X = torch.from_numpy(x)
        W = None if weight is None else torch.from_numpy(weight).to(X.dtype)
        draws = torch.from_numpy(np.concatenate([[first_uniform], uniforms.ravel()]))
        native = kernel.greedy_seeding(X, W, draws, uniforms.shape[1])
        assert native.tolist() == expected
        if weighted:
            assert bool((torch.from_numpy(weight)[native] > 0).all())
        data = dense(x, weight)
        generator = torch.Generator().manual_seed(trial)
        centers, indices = greedy_kmeans_plusplus_centers(data, k, generator)
        with monkeypatch.context() as patch:
            patch.setattr(NativeBackend, "greedy_seeding", Backend.greedy_seeding)
            generator = torch.Generator().manual_seed(trial)
            torch_centers, torch_indices = greedy_kmeans_plusplus_centers(data, k, generator)
        assert torch.equal(indices, torch_indices)
        assert torch.equal(centers, torch_centers)
        torch.testing.assert_close(centers, data.take(indices))


def test_greedy_seeding_with_fewer_distinct_rows_than_clusters():
    """Where every row sits on a center the candidates are drawn by weight: no failure."""
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 5, axis=0)
    uniforms = np.random.default_rng(1).random((4, 3))
    expected = greedy_oracle(x, None, 0, uniforms)
    draws = torch.from_numpy(np.concatenate([[0.0], uniforms.ravel()]))  # the first: row 0
    native = kernel.greedy_seeding(torch.from_numpy(x), None, draws, 3)
    assert native.tolist() == expected
    assert {tuple(x[i]) for i in expected} == {(0.0, 0.0), (1.0, 1.0)}


def test_small_problems_seed_greedily_on_every_backend():
    """The same seeds whichever backend fits: the choice of strategy depends on sizes only."""
    X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.6, random_state=0)
    data = dense(X)
    assert GREEDY_SEEDING_MAX_WORK >= 300 * 4 * 2
    _, indices = kmeans_plusplus_centers(data, 4, torch.Generator().manual_seed(0))
    _, greedy = greedy_kmeans_plusplus_centers(data, 4, torch.Generator().manual_seed(0))
    assert torch.equal(indices, greedy)
    fits = [torchmeans.KMeans(4, random_state=0, backend=name).fit(X) for name in
            ("native", "torch")]
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    np.testing.assert_allclose(fits[0].cluster_centers_, fits[1].cluster_centers_, rtol=1e-12)


# -- the kernel's checks -------------------------------------------------------------------


def test_lloyd_run_refuses_what_it_cannot_read():
    x = torch.randn(50, 3)
    centers, offset = x[:4].clone(), torch.zeros(3)
    run = kernel.lloyd_run
    with pytest.raises(ValueError, match="features"):
        run(torch.randn(10, 17), None, torch.zeros(17), torch.randn(2, 17), max_iter=5,
            tol=0.0, inertia_offset=0.0)
    with pytest.raises(ValueError, match="centers"):
        run(x, None, offset, torch.randn(4, 2), max_iter=5, tol=0.0, inertia_offset=0.0)
    with pytest.raises(ValueError, match="centers"):
        run(x, None, offset, centers.double(), max_iter=5, tol=0.0, inertia_offset=0.0)
    with pytest.raises(ValueError, match="offset"):
        run(x, None, torch.zeros(2), centers, max_iter=5, tol=0.0, inertia_offset=0.0)
    with pytest.raises(ValueError, match="weight"):
        run(x, torch.ones(49), offset, centers, max_iter=5, tol=0.0, inertia_offset=0.0)
    with pytest.raises(ValueError, match="contiguous"):
        run(torch.randn(50, 6)[:, :3], None, offset, centers, max_iter=5, tol=0.0,
            inertia_offset=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        run(x, None, offset, centers, max_iter=-1, tol=0.0, inertia_offset=0.0)
    with pytest.raises(ValueError, match="centers"):
        run(x, None, offset, centers[:0], max_iter=5, tol=0.0, inertia_offset=0.0)


def test_greedy_seeding_refuses_what_it_cannot_read():
    x = torch.randn(20, 3, dtype=torch.float64)
    uniforms = torch.rand(7, dtype=torch.float64)  # k = 4 with 2 trials
    assert kernel.greedy_seeding(x, None, uniforms, 2).shape == (4,)
    with pytest.raises(ValueError, match="uniforms"):
        kernel.greedy_seeding(x, None, uniforms.float(), 2)
    with pytest.raises(ValueError, match="uniforms"):
        kernel.greedy_seeding(x, None, uniforms, 4)  # 6 later draws are not steps of 4
    with pytest.raises(ValueError, match="uniforms"):
        kernel.greedy_seeding(x, None, uniforms, 0)
    with pytest.raises(ValueError, match="uniforms"):
        kernel.greedy_seeding(x, None, uniforms.view(7, 1), 1)
    with pytest.raises(ValueError, match="weight"):
        kernel.greedy_seeding(x, torch.ones(19, dtype=torch.float64), uniforms, 2)
    with pytest.raises(ValueError, match="contiguous"):
        kernel.greedy_seeding(torch.randn(20, 6, dtype=torch.float64)[:, :3], None, uniforms, 2)
