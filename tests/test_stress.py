"""Edge cases: empty clusters, duplicates, extreme k, dtypes, weights, inits, seeds."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from _helpers import naive_assign, random_row_data, to_numpy
from torchmeans import KMeans, kmeans, kmeans_plusplus


@pytest.fixture(scope="module")
def two_blobs():
    X, _, centers = make_blobs(
        300, 2, centers=2, cluster_std=0.5, random_state=0, return_centers=True
    )
    return X, centers


def min_row_distance(X, point):
    return float(np.sqrt(((np.asarray(X) - np.asarray(point)) ** 2).sum(axis=1)).min())


# -- empty clusters -------------------------------------------------------------------


def test_far_center_is_relocated_to_a_data_point(two_blobs, device):
    X, centers = two_blobs
    init = np.vstack([centers, [[1e3, 1e3]]])
    km = KMeans(3, init=init, n_init=1, max_iter=1, device=device).fit(X)
    assert np.isfinite(km.cluster_centers_).all()
    (stats,) = km.n_iter_history_
    assert stats.n_empty == 1
    # The empty cluster took the sample farthest from its assigned initial center.
    labels0, _ = naive_assign(X, init)
    far = np.argmax(((X - init[labels0]) ** 2).sum(axis=1))
    np.testing.assert_allclose(km.cluster_centers_[2], X[far], rtol=0, atol=1e-12)
    assert min_row_distance(X, km.cluster_centers_[2]) < 1e-12
    ref = SKKMeans(3, init=init, n_init=1, max_iter=1).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(km.labels_, ref.labels_)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_empty_clusters_match_sklearn_to_convergence(two_blobs, kind, device):
    X, centers = two_blobs
    init = np.vstack([centers, [[1e3, 1e3]], [[-1e3, 5e2]], [[2e3, 0.0]]])
    ref = SKKMeans(5, init=init, n_init=1).fit(X)
    if kind == "torch":
        km = KMeans(5, init=torch.tensor(init, device=device), n_init=1)
        km.fit(torch.tensor(X, device=device))
    else:
        km = KMeans(5, init=init, n_init=1, device=device).fit(X)
    centers_out = to_numpy(km.cluster_centers_)
    assert np.isfinite(centers_out).all()
    assert km.n_iter_history_[0].n_empty == 3
    # Several clusters relocated at once: compare as sets of centers and as partitions.
    order, ref_order = np.lexsort(centers_out.T), np.lexsort(ref.cluster_centers_.T)
    np.testing.assert_allclose(centers_out[order], ref.cluster_centers_[ref_order], rtol=1e-10)
    relabel = np.empty(5, dtype=int)
    relabel[order] = ref_order
    np.testing.assert_array_equal(relabel[to_numpy(km.labels_)], ref.labels_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert km.n_iter_ == ref.n_iter_
    assert len(np.unique(to_numpy(km.labels_))) == 5


def test_relocation_is_reproducible_and_never_at_origin(device):
    # Data far from the origin: an unrelocated empty center would sit at 0 (or NaN).
    X, init = random_row_data(500, 3, 4, 4, seed=1)
    X = X + 100.0
    init = np.vstack([init + 100.0, [[-1e4, -1e4, -1e4]] * 2])
    fits = [KMeans(6, init=init, n_init=1, device=device).fit(X) for _ in range(2)]
    for km in fits:
        assert np.isfinite(km.cluster_centers_).all()
        assert np.linalg.norm(km.cluster_centers_, axis=1).min() > 50
        assert km.n_iter_history_[0].n_empty == 2
    np.testing.assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)


def test_history_inertia_is_never_negative(device):
    # k = n: every inertia is 0; the norm expansion must not report it below 0.
    X = np.array(
        [
            [6.9411232434742125, -7.079593394811624],
            [-0.7714337664515497, -3.6803130754911626],
            [-0.20460611967359923, -5.820648429887361],
            [-3.912317229115601, -6.80429189519185],
            [-1.987768481920825, -6.90394061674337],
        ]
    )
    init = X[[2, 0, 3, 1, 4]]
    km = KMeans(5, init=init, n_init=1, device=device).fit(X)
    assert km.inertia_ >= 0
    assert all(s.inertia >= 0 for s in km.n_iter_history_), km.n_iter_history_
    result = kmeans(torch.tensor(X, device=device), 5, init=torch.tensor(init, device=device))
    assert all(s.inertia >= 0 for s in result.history), result.history


# -- duplicates, extreme k ---------------------------------------------------------------


@pytest.mark.parametrize("init", ["k-means++", "random", "array"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_fewer_distinct_points_than_clusters(init, kind, device):
    X = np.array([[0.0, 0.0]] * 6 + [[3.0, 1.0]] * 4)
    if init == "array":
        init = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 1.0]])
    data = torch.tensor(X, device=device) if kind == "torch" else X
    km = KMeans(3, init=init, n_init=1, random_state=0, device=device)
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(2\)"):
        km.fit(data)
    centers = to_numpy(km.cluster_centers_)
    assert np.isfinite(centers).all()
    assert km.inertia_ == pytest.approx(0.0, abs=1e-12)
    labels = to_numpy(km.labels_)
    np.testing.assert_allclose(centers[labels], X, atol=1e-12)
    # scikit-learn warns the same way from the same init.
    if isinstance(init, np.ndarray):
        with pytest.warns(ConvergenceWarning):
            ref = SKKMeans(3, init=init, n_init=1).fit(X)
        np.testing.assert_array_equal(labels, ref.labels_)


def test_all_points_identical(device):
    X = np.full((20, 3), 7.5)
    with pytest.warns(ConvergenceWarning):
        km = KMeans(4, random_state=0, device=device).fit(X)
    assert np.isfinite(km.cluster_centers_).all()
    np.testing.assert_allclose(km.cluster_centers_[km.labels_], X)
    assert km.inertia_ == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_one_cluster(kind, device):
    X = np.random.default_rng(0).normal(size=(200, 4)) * [1, 2, 3, 4] + 10
    w = np.random.default_rng(1).uniform(0, 2, 200)
    data = torch.tensor(X, device=device) if kind == "torch" else X
    km = KMeans(1, random_state=0, device=device).fit(data, sample_weight=w)
    mean = (X * w[:, None]).sum(axis=0) / w.sum()
    np.testing.assert_allclose(to_numpy(km.cluster_centers_), [mean], rtol=1e-10)
    assert (to_numpy(km.labels_) == 0).all()
    init = X[:1]
    ref = SKKMeans(1, init=init, n_init=1).fit(X, sample_weight=w)
    ours = KMeans(1, init=init, n_init=1, device=device).fit(X, sample_weight=w)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_as_many_clusters_as_samples(init, device):
    X = np.random.default_rng(2).normal(size=(40, 3))
    km = KMeans(40, init=init, random_state=0, n_init=1, device=device).fit(X)
    assert len(np.unique(km.labels_)) == 40
    np.testing.assert_allclose(km.cluster_centers_[km.labels_], X, atol=1e-12)
    assert km.inertia_ == pytest.approx(0.0, abs=1e-10)


def test_single_feature_matches_sklearn(device):
    X = np.random.default_rng(3).normal(size=(500, 1)) * 10
    init = X[:6]
    km = KMeans(6, init=init, n_init=1, device=device).fit(X)
    ref = SKKMeans(6, init=init, n_init=1).fit(X)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    # In one dimension clusters are intervals: sorted centers partition the sorted samples.
    order = np.argsort(X[:, 0])
    rank = np.argsort(np.argsort(km.cluster_centers_[:, 0]))
    assert (np.diff(rank[km.labels_[order]]) >= 0).all()


# -- dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_dtype_is_preserved(dtype, device):
    X = np.random.default_rng(4).normal(size=(100, 3)).astype(dtype)
    km = KMeans(3, random_state=0, device=device).fit(X)
    assert km.cluster_centers_.dtype == dtype
    assert km.transform(X).dtype == dtype
    assert km.fit_transform(X).dtype == dtype
    assert km.labels_.dtype == np.int32
    assert km.predict(X).dtype == np.int32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_dtype_is_preserved(dtype, device):
    X = torch.randn(100, 3, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(device)
    km = KMeans(3, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == dtype
    assert km.transform(X).dtype == dtype
    assert km.labels_.dtype == torch.int64
    assert km.predict(X).dtype == torch.int64
    result = kmeans(X, 3, random_state=0)
    assert result.centers.dtype == dtype
    assert result.labels.dtype == torch.int64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, bool, np.float16])
def test_integer_bool_and_half_numpy_become_float64(dtype, device):
    # As scikit-learn: check_array converts what is not float32/float64 to float64.
    X = np.random.default_rng(5).integers(0, 2, size=(60, 4)) * (1 if dtype is bool else 9)
    X = X.astype(dtype)
    km = KMeans(2, random_state=0, device=device).fit(X)
    assert km.cluster_centers_.dtype == np.float64
    ref = KMeans(2, init=km.cluster_centers_, n_init=1, device=device).fit(X.astype(np.float64))
    np.testing.assert_array_equal(km.predict(X), ref.predict(X.astype(np.float64)))
    assert kmeans(X, 2, random_state=0, device=device).centers.dtype == torch.float64


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_and_bool_tensors_become_the_default_float_dtype(dtype, default, device):
    X = torch.tensor(np.random.default_rng(6).integers(0, 2, size=(60, 4)), device=device)
    X = X.to(dtype)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        km = KMeans(2, random_state=0).fit(X)
        assert km.cluster_centers_.dtype == default
        assert km.transform(X).dtype == default
    finally:
        torch.set_default_dtype(saved)
    labels, _ = naive_assign(to_numpy(X).astype(float), to_numpy(km.cluster_centers_))
    np.testing.assert_array_equal(to_numpy(km.labels_), labels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors(dtype, device):
    X64, init = make_blobs(400, 4, centers=3, cluster_std=0.3, random_state=1)[0], None
    X = torch.tensor(X64, device=device).to(dtype)
    init = X[[0, 1, 2]].float()
    km = KMeans(3, init=X[[0, 1, 2]], n_init=1).fit(X)
    assert km.cluster_centers_.dtype == torch.float32
    assert km.labels_.dtype == torch.int64
    ref = KMeans(3, init=init, n_init=1).fit(X.float())
    np.testing.assert_array_equal(to_numpy(km.labels_), to_numpy(ref.labels_))
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    np.testing.assert_allclose(
        to_numpy(km.cluster_centers_), to_numpy(ref.cluster_centers_), rtol=tol, atol=tol
    )
    assert km.transform(X).dtype == torch.float32
    assert kmeans(X, 3, random_state=0).centers.dtype == torch.float32
    centers, indices = kmeans_plusplus(X, 3, random_state=0)
    # kmeans_plusplus returns rows of X exactly, in X's dtype (as scikit-learn).
    assert centers.dtype == dtype
    assert torch.equal(centers, X[indices])


def test_half_precision_numpy(device):
    X = make_blobs(300, 3, centers=3, cluster_std=0.3, random_state=2)[0].astype(np.float16)
    km = KMeans(3, random_state=0, device=device).fit(X)
    assert km.cluster_centers_.dtype == np.float64  # as scikit-learn
    assert np.isfinite(km.cluster_centers_).all()
    labels, _ = naive_assign(X.astype(np.float64), km.cluster_centers_)
    assert (km.labels_ == labels).mean() == 1.0


# -- sample weights --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_zero_weights_match_sklearn_and_the_subset(kind, device):
    X, init = random_row_data(1000, 4, 6, 6, seed=7)
    rng = np.random.default_rng(8)
    weight = rng.uniform(0.5, 2.0, len(X))
    weight[rng.random(len(X)) < 0.3] = 0.0
    keep = weight > 0
    init = X[keep][:6]
    ref = SKKMeans(6, init=init, n_init=1).fit(X, sample_weight=weight)
    if kind == "torch":
        km = KMeans(6, init=torch.tensor(init, device=device), n_init=1)
        km.fit(torch.tensor(X, device=device), sample_weight=torch.tensor(weight, device=device))
    else:
        km = KMeans(6, init=init, n_init=1, device=device).fit(X, sample_weight=weight)
    np.testing.assert_array_equal(to_numpy(km.labels_), ref.labels_)
    np.testing.assert_allclose(to_numpy(km.cluster_centers_), ref.cluster_centers_, rtol=1e-10)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    # Zero-weight rows do not pull the centers: same centers as fitting the rest alone.
    subset = KMeans(6, init=init, n_init=1, tol=0.0, device=device).fit(
        X[keep], sample_weight=weight[keep]
    )
    full = KMeans(6, init=init, n_init=1, tol=0.0, device=device).fit(X, sample_weight=weight)
    np.testing.assert_allclose(full.cluster_centers_, subset.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(full.labels_[keep], subset.labels_)


def test_zero_weight_rows_are_never_seeds(device):
    X = np.random.default_rng(9).normal(size=(200, 3))
    weight = np.zeros(200)
    weight[::10] = 1.0
    for seed in range(3):
        _, indices = kmeans_plusplus(X, 8, sample_weight=weight, random_state=seed, device=device)
        assert (to_numpy(indices) % 10 == 0).all()
        km = KMeans(8, init="random", n_init=1, random_state=seed, max_iter=1, device=device)
        km.fit(X, sample_weight=weight)
        centers = km.cluster_centers_
        assert np.isfinite(centers).all()


def test_scalar_sample_weight_changes_nothing_but_inertia_scale(device):
    X, init = random_row_data(300, 3, 4, 4, seed=10)
    a = KMeans(4, init=init, n_init=1, device=device).fit(X)
    b = KMeans(4, init=init, n_init=1, device=device).fit(X, sample_weight=2.5)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    assert b.inertia_ == pytest.approx(2.5 * a.inertia_, rel=1e-12)


# -- inits and n_init --------------------------------------------------------------------------


def count_inits(capsys):
    return capsys.readouterr().out.splitlines().count("Initialization complete")


@pytest.mark.parametrize(
    ("init", "expected"), [("k-means++", 1), ("random", 10), ("callable", 10), ("array", 1)]
)
def test_n_init_auto(init, expected, blobs, capsys, device):
    X = blobs[0]
    calls = []

    def my_init(data, n_clusters, random_state):
        calls.append(1)
        return data[:n_clusters]

    init_value = {"callable": my_init, "array": X[:6]}.get(init, init)
    km = KMeans(6, init=init_value, verbose=1, random_state=0, device=device).fit(X)
    assert count_inits(capsys) == expected == km._n_init
    if init == "callable":
        assert len(calls) == 10


@pytest.mark.parametrize("n_init", [1, 3])
def test_explicit_n_init_runs_that_many_inits(n_init, blobs, capsys, device):
    KMeans(6, init="random", n_init=n_init, verbose=True, random_state=0, device=device).fit(
        blobs[0]
    )
    assert count_inits(capsys) == n_init


def test_n_init_keeps_the_best_run(device):
    X, _ = random_row_data(600, 2, 10, 10, seed=11)
    best = KMeans(10, init="random", n_init=8, random_state=0, device=device).fit(X)
    singles = [
        KMeans(10, init=X[i * 10 : i * 10 + 10], n_init=1, device=device).fit(X).inertia_
        for i in range(8)
    ]
    assert best.inertia_ <= max(singles)
    labels, inertia = naive_assign(X, best.cluster_centers_)
    np.testing.assert_array_equal(best.labels_, labels)
    assert best.inertia_ == pytest.approx(inertia, rel=1e-10)
    # The kept run is the lowest of the runs it tried: more runs never do worse.
    more = KMeans(10, init="random", n_init=16, random_state=0, device=device).fit(X)
    few = KMeans(10, init="random", n_init=1, random_state=0, device=device).fit(X)
    assert more.inertia_ <= few.inertia_ * (1 + 1e-12)


@pytest.mark.parametrize("kind", ["numpy", "tensor", "list"])
def test_n_init_with_array_init_warns(kind, device):
    X = np.random.default_rng(12).normal(size=(50, 2))
    init = {"numpy": X[:3], "tensor": torch.tensor(X[:3], device=device), "list": X[:3].tolist()}[
        kind
    ]
    with pytest.warns(RuntimeWarning, match="Explicit initial center position passed"):
        km = KMeans(3, init=init, n_init=5, device=device).fit(X)
    one = KMeans(3, init=X[:3], n_init=1, device=device).fit(X)
    np.testing.assert_array_equal(km.labels_, one.labels_)


def test_callable_init_signature_and_result(blobs, device):
    X = blobs[0]
    seen = []

    def my_init(data, n_clusters, random_state):
        seen.append((data, n_clusters, random_state))
        return np.asarray(data)[-n_clusters:]

    km = KMeans(6, init=my_init, n_init=1, random_state=0, device=device).fit(X)
    ((data, n_clusters, random_state),) = seen
    np.testing.assert_array_equal(data, X)  # the data as passed, not shifted
    assert n_clusters == 6
    assert isinstance(random_state, np.random.RandomState)
    ref = KMeans(6, init=X[-6:], n_init=1, device=device).fit(X)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    # kmeans() passes the caller's tensor through unchanged.
    tensor_seen = []
    T = torch.tensor(X, device=device)

    def tensor_init(data, n_clusters, random_state):
        tensor_seen.append(data)
        return data[:n_clusters]

    kmeans(T, 6, init=tensor_init, n_init=2, random_state=0)
    assert len(tensor_seen) == 2
    assert all(d is T for d in tensor_seen)


def test_callable_init_random_state_is_seeded(blobs, device):
    X = blobs[0]

    def random_rows(data, n_clusters, random_state):
        return data[random_state.choice(len(data), n_clusters, replace=False)]

    a = KMeans(6, init=random_rows, n_init=3, random_state=4, device=device).fit(X)
    b = KMeans(6, init=random_rows, n_init=3, random_state=4, device=device).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_random_init_draws_distinct_rows(device):
    X = np.random.default_rng(13).normal(size=(30, 2))
    for seed in range(5):
        km = KMeans(30, init="random", n_init=1, max_iter=1, random_state=seed, device=device)
        km.fit(X)
        assert km.inertia_ == pytest.approx(0.0, abs=1e-12)


# -- kmeans_plusplus ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("n_local_trials", [None, 1, 5])
def test_kmeans_plusplus_returns_distinct_rows(kind, n_local_trials, blobs, device):
    X = blobs[0]
    data = torch.tensor(X, device=device) if kind == "torch" else X
    centers, indices = kmeans_plusplus(
        data, 12, random_state=0, n_local_trials=n_local_trials, device=device
    )
    assert centers.shape == (12, X.shape[1])
    indices = to_numpy(indices)
    assert indices.dtype == np.int64
    assert len(np.unique(indices)) == 12
    assert ((indices >= 0) & (indices < len(X))).all()
    np.testing.assert_allclose(to_numpy(centers), X[indices], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_kmeans_plusplus_rows_are_exact(dtype, device):
    # sklearn.cluster.kmeans_plusplus returns X[indices] exactly (not shifted and back).
    X = (np.random.default_rng(19).normal(size=(300, 4)) * 3 + 1.7).astype(np.float32)
    T = torch.tensor(X, device=device).to(dtype)
    centers, indices = kmeans_plusplus(T, 7, random_state=0)
    assert torch.equal(centers, T[indices].to(centers.dtype))
    if dtype != torch.float16:
        array = T.cpu().numpy()
        centers, indices = kmeans_plusplus(array, 7, random_state=0, device=device)
        np.testing.assert_array_equal(to_numpy(centers), array[to_numpy(indices)])


def test_kmeans_plusplus_covers_separated_blobs(blobs, device):
    X, y, _ = blobs
    _, indices = kmeans_plusplus(X, 6, random_state=1, device=device)
    # Six far-apart blobs: greedy k-means++ puts one seed in each.
    assert sorted(y[to_numpy(indices)].tolist()) == [0, 1, 2, 3, 4, 5]


# -- random_state -----------------------------------------------------------------------------


def seeded_fits(make_state, X, device):
    return [
        KMeans(5, n_init=2, init="random", random_state=make_state(), device=device).fit(X)
        for _ in range(2)
    ]


@pytest.mark.parametrize(
    "make_state",
    [
        lambda: 7,
        lambda: np.random.RandomState(7),
        lambda: np.random.default_rng(7),
        lambda: torch.Generator().manual_seed(7),
    ],
    ids=["int", "RandomState", "Generator", "torch.Generator"],
)
def test_random_state_kinds_are_reproducible(make_state, device):
    X, _ = random_row_data(400, 3, 8, 5, seed=14)
    a, b = seeded_fits(make_state, X, device)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    s1 = kmeans_plusplus(X, 5, random_state=make_state(), device=device)[1]
    s2 = kmeans_plusplus(X, 5, random_state=make_state(), device=device)[1]
    assert torch.equal(s1, s2)


def test_torch_generator_on_the_device(device):
    X = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)).to(device)
    gens = [torch.Generator(device=device).manual_seed(3) for _ in range(2)]
    a, b = (kmeans_plusplus(X, 4, random_state=g)[1] for g in gens)
    assert torch.equal(a, b)


def test_different_seeds_give_different_seeding(device):
    X = np.random.default_rng(15).normal(size=(1000, 2))
    picks = {
        tuple(to_numpy(kmeans_plusplus(X, 10, random_state=s, device=device)[1])) for s in range(4)
    }
    assert len(picks) == 4


def test_global_random_state_is_untouched(device):
    X = np.random.default_rng(16).normal(size=(200, 3))
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    KMeans(4, random_state=0, n_init=3, init="random", device=device).fit(X)
    kmeans(X, 4, random_state=1, device=device)
    kmeans_plusplus(X, 4, random_state=2, device=device)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


def test_random_state_none_follows_numpy_global_seed(device):
    X = np.random.default_rng(17).normal(size=(300, 2))
    results = []
    for _ in range(2):
        np.random.seed(123)  # noqa: NPY002
        results.append(to_numpy(kmeans_plusplus(X, 6, device=device)[1]))
    np.testing.assert_array_equal(results[0], results[1])


def test_no_warnings_on_a_plain_fit(device):
    X, _ = random_row_data(500, 3, 5, 5, seed=18)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(5, random_state=0, device=device).fit(X).predict(X)
        KMeans(5, random_state=0).fit(torch.tensor(X, device=device))
