"""Elkan's pass in the native kernel (``_native.elkan_pass``) gives a native Lloyd fit exactly.

With the native backend, Lloyd's labels come from the kernel's own scores (one FMA chain
per dot product, ``lloyd_direct``), and ``algorithm='elkan'`` takes every label from those
same scores: its first bounded pass from ``lloyd_direct``, the later ones from the scores
of the rows and centers whose bounds fail, computed alike. So from the same init the two
fits have the same labels, iterations and history, and centers equal to float rounding
(the sums are added in another order), near-ties included. The kernel is also checked on
its own: first-minimum labels against ``lloyd_direct`` and bounds that stay valid, from
bounds that are valid but loose by random amounts, on data with exact ties.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _helpers import EXACT_TIES, blob_data, exact_lloyd, to_numpy
from test_algorithms import CASES, assert_same_as_lloyd, fit, problems
from torchmeans import KMeans
from torchmeans.backends.native import NativeBackend
from torchmeans.backends.native import backend as native_backend_module
from torchmeans.backends.native import kernel as _native
from torchmeans.core import lloyd as _lloyd
from torchmeans.core.assign import chunk_rows_for
from torchmeans.core.bounds import BoundedPass, center_groups
from torchmeans.core.lloyd import lloyd
from torchmeans.core.validation import make_data

pytestmark = pytest.mark.skipif(not _native.direct_applies(1),
                                reason="no native kernel with hardware FMA here")


def native_fit(X, init, algorithm, weight=None, **params):
    return fit(X, init, algorithm, "cpu", weight, backend="auto", **params)


@pytest.fixture(autouse=True)
def passes_one_call_each(monkeypatch):
    """Every fit here runs the engine's loop of passes: small problems would otherwise run
    all their iterations in one native call whatever the algorithm (tests/test_small_fits.py),
    and these tests are about the bounded passes."""
    monkeypatch.setattr(native_backend_module, "SMALL_RUN_MAX_WORK", 0)


@pytest.fixture
def bounds_at_once(monkeypatch):
    """Bounded passes from the second iteration on (not only once few labels move)."""
    monkeypatch.setattr(_lloyd, "BOUNDS_AFTER_ROWS", 10**9)


@pytest.fixture
def elkan_calls(monkeypatch):
    """Count the calls of the native Elkan pass (so the fits below are not vacuous)."""
    calls = []
    original = _native.elkan_pass

    def counted(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(_native, "elkan_pass", counted)
    return calls


# -- the kernel on its own ------------------------------------------------------------------


def _chain_labels(x, centers):
    """First-minimum labels of the kernel's own scores (``lloyd_direct``, labels only)."""
    labels = torch.full((x.shape[0],), -1, dtype=torch.int64)
    if _native.direct_applies(x.shape[1]):
        _native.lloyd_direct(x, centers, centers.square().sum(dim=1), None, labels, None,
                             incremental=False)
    return labels


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 300),
    n_features=st.sampled_from([1, 2, 3, 7, 16, 17, 40, 130]),
    n_clusters=st.integers(1, 40),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    integer=st.booleans(),
    looseness=st.sampled_from([0.0, 0.05, 1.0]),
)
def test_elkan_pass_labels_and_bounds(seed, n_rows, n_features, n_clusters, dtype, integer,
                                      looseness):
    check_elkan_pass(seed, n_rows, n_features, n_clusters, dtype, integer, looseness)


@pytest.mark.parametrize("n_clusters", [70, 2100])  # blocks of 234 and of 8 rows (the floor)
@pytest.mark.parametrize("integer", [False, True])
def test_elkan_pass_with_many_centers(n_clusters, integer):
    check_elkan_pass(3, 600, 5, n_clusters, torch.float32, integer, 0.05)


def check_elkan_pass(seed, n_rows, n_features, n_clusters, dtype, integer, looseness):
    """One pass from valid, randomly loosened bounds: Lloyd's labels, bounds still valid."""
    if not _native.direct_applies(n_features):
        pytest.skip("this width is not scored natively on this CPU")
    gen = torch.Generator().manual_seed(seed)
    if integer:  # exact ties: small integers, duplicated rows and centers
        x = torch.randint(-3, 4, (n_rows, n_features), generator=gen).to(dtype)
        old = torch.randint(-3, 4, (n_clusters, n_features), generator=gen).to(dtype)
        new = old + torch.randint(-1, 2, old.shape, generator=gen).to(dtype)
    else:
        x = torch.randn(n_rows, n_features, generator=gen, dtype=dtype)
        old = torch.randn(n_clusters, n_features, generator=gen, dtype=dtype)
        new = old + 0.3 * torch.randn(old.shape, generator=gen, dtype=dtype)
    # Valid bounds for the old centers, loosened at random; labels: the old nearest.
    exact_old = torch.cdist(x.double(), old.double())
    labels = _chain_labels(x, old)
    loosen = 1 + looseness * torch.rand(exact_old.shape, generator=gen, dtype=torch.float64)
    upper = (exact_old.gather(1, labels[:, None]).squeeze(1) * loosen[:, 0]).to(dtype)
    lower = (exact_old / loosen).to(dtype)
    lower.scatter_(1, labels[:, None], torch.inf)
    norms = x.double().square().sum(dim=1).sqrt()
    largest = float(new.double().square().sum(dim=1).sqrt().max())
    eps = torch.finfo(dtype).eps
    margin = (4 * (n_features + 8) * eps * (norms + largest).square()).to(dtype)
    # Drift rounded up, half gaps rounded down (as BoundedPass sets them).
    drift = ((new.double() - old.double()).norm(dim=1) * (1 + 1e-6) + 1e-6).to(dtype)
    gaps = torch.cdist(new.double(), new.double()).fill_diagonal_(torch.inf)
    half_gaps = (0.5 * gaps.amin(dim=1) * (1 - 1e-6)).to(dtype) if n_clusters > 1 else (
        torch.full((1,), torch.inf, dtype=dtype))
    sq_norms = x.square().sum(dim=1)
    tightened, recomputed = _native.elkan_pass(
        x, sq_norms, margin, new, new.square().sum(dim=1), drift, half_gaps, upper, lower,
        labels)
    assert 0 <= recomputed <= tightened <= n_rows
    torch.testing.assert_close(labels, _chain_labels(x, new), rtol=0, atol=0)
    exact_new = torch.cdist(x.double(), new.double())
    slack = 1e-9 + 8 * eps * (norms + largest)
    own = exact_new.gather(1, labels[:, None]).squeeze(1)
    assert (upper.double() >= own - slack).all()
    others = lower.double().scatter(1, labels[:, None], 0.0)
    assert (others <= exact_new + slack[:, None]).all()
    assert torch.isinf(lower.gather(1, labels[:, None])).all()


def test_elkan_pass_skips_rows_whose_bounds_hold():
    # Tight bounds against the same centers (no drift): no row is tightened.
    X, init = blob_data(500, 20, 6, seed=2)
    x, centers = torch.tensor(X), torch.tensor(init)
    labels = _chain_labels(x, centers)
    exact = torch.cdist(x, centers)
    upper = exact.gather(1, labels[:, None]).squeeze(1).clone()
    lower = exact.clone().scatter_(1, labels[:, None], torch.inf)
    zeros = torch.zeros(6, dtype=torch.float64)
    gaps = torch.cdist(centers, centers).fill_diagonal_(torch.inf).amin(dim=1) / 2
    counts = _native.elkan_pass(x, x.square().sum(dim=1), torch.zeros(500, dtype=torch.float64),
                                centers, centers.square().sum(dim=1), zeros, gaps, upper,
                                lower, labels.clone())
    assert counts == (0, 0)


def test_elkan_pass_rejects_bad_operands():
    x = torch.randn(10, 4)
    centers = torch.randn(3, 4)
    vectors = dict(row_sq_norms=x.square().sum(dim=1), margin=torch.zeros(10),
                   center_sq_norms=centers.square().sum(dim=1), drift=torch.zeros(3),
                   half_gaps=torch.zeros(3), upper=torch.zeros(10))

    def call(**changes):
        args = dict(x=x, centers=centers, lower=torch.zeros(10, 3),
                    labels=torch.zeros(10, dtype=torch.int64), **vectors)
        args.update(changes)
        return _native.elkan_pass(**args)

    with pytest.raises(ValueError, match="labels outside"):
        call(labels=torch.full((10,), 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels outside"):
        call(labels=torch.full((10,), -1, dtype=torch.int64))
    with pytest.raises(ValueError, match="inconsistent"):
        call(lower=torch.zeros(10, 4))
    with pytest.raises(ValueError, match="inconsistent"):
        call(drift=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="inconsistent"):
        call(lower=torch.zeros(3, 10).T)
    data = make_data(x.double(), torch.ones(10, dtype=torch.float64), copy=True)
    with pytest.raises(ValueError, match="one group per center"):
        BoundedPass(data, torch.zeros(3, dtype=torch.int64), 10, NativeBackend(),
                    own_elkan=True)


# -- whole fits: Elkan (native pass) equals Lloyd (native kernel) ---------------------------


@settings(max_examples=40, deadline=None)
@given(problem=problems(max_features=40, max_clusters=40))
def test_random_problems_match_native_lloyd(problem):
    X, init, weight = problem
    with pytest.MonkeyPatch.context() as patch:  # bounded passes from the second iteration
        patch.setattr(_lloyd, "BOUNDS_AFTER_ROWS", 10**9)
        ref = native_fit(X, init, "lloyd", weight, tol=0.0)
        ours = native_fit(X, init, "elkan", weight, tol=0.0)
    assert_same_as_lloyd(ours, ref, X, X.dtype.type)


def _native_scores(n_features):
    if not _native.direct_applies(n_features):
        pytest.skip("this width is not scored natively on this CPU")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_features", [3, 24, 130, 300])
def test_near_ties_follow_native_lloyd(n_features, seed, elkan_calls):
    # Rows on a hyperplane, the two initial centers mirrored across it: every row is
    # within rounding of a tie, which the GEMM and the kernel's FMA chains can break
    # differently. Elkan's first bounded pass must take the kernel's labels too.
    _native_scores(n_features)
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(n_features, dtype=torch.float64, generator=gen)
    normal /= normal.norm()
    X = torch.randn(64, n_features, dtype=torch.float64, generator=gen)
    X -= (X @ normal)[:, None] * normal
    base = torch.randn(n_features, dtype=torch.float64, generator=gen)
    base -= (base @ normal) * normal
    init = torch.stack([base + 3 * normal, base - 3 * normal]).numpy().astype(np.float32)
    X = X.numpy().astype(np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_lloyd, "BOUNDS_AFTER_ROWS", 10**9)
        ref = native_fit(X, init, "lloyd", tol=0.0)
        ours = native_fit(X, init, "elkan", tol=0.0)
    assert_same_as_lloyd(ours, ref, X, np.float32)
    assert elkan_calls or ours.n_iter_ == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_adversarial_inputs_match_native_lloyd(case, dtype, bounds_at_once, elkan_calls):
    if case == "offset-1e6" and dtype == np.float32:
        pytest.skip("1e6 + O(1) keeps only ~1e-1 resolution in float32")
    X, init, weight, params = CASES[case](dtype)
    params.setdefault("tol", 0.0)
    ref = native_fit(X, init, "lloyd", weight, **params)
    if len(init) == 1:  # scikit-learn's rule: Elkan with one cluster is Lloyd, with a warning
        with pytest.warns(RuntimeWarning, match="doesn't make sense for a single cluster"):
            ours = native_fit(X, init, "elkan", weight, **params)
    else:
        ours = native_fit(X, init, "elkan", weight, **params)
    assert_same_as_lloyd(ours, ref, X, dtype)
    # Bounds from the first iteration on: the native pass runs from the second.
    assert bool(elkan_calls) == (ref.n_iter_ >= 2 and len(init) > 1)


@pytest.mark.parametrize("chunk_bytes", [None, 256, 4096])
@pytest.mark.parametrize("name", list(EXACT_TIES))
def test_exact_ties_follow_the_first_center(name, chunk_bytes, elkan_calls):
    rows, centers = EXACT_TIES[name]
    X, init = np.array(rows, dtype=np.float32), np.array(centers, dtype=np.float32)
    labels, expected_centers, changed = exact_lloyd(rows, centers)
    km = native_fit(X, init, "elkan", tol=0.0, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(to_numpy(km.labels_), labels)
    np.testing.assert_array_equal(to_numpy(km.cluster_centers_), expected_centers)
    assert [s.n_changed for s in km.n_iter_history_] == changed
    assert bool(elkan_calls) == (km.n_iter_ >= 2)  # small data: bounds at once


def test_explicit_native_backend_runs_elkan(elkan_calls):
    _native_scores(24)
    rng = np.random.default_rng(1)
    means = rng.normal(size=(40, 24))
    X = (means[rng.integers(40, size=2000)] + rng.normal(size=(2000, 24))).astype(np.float32)
    init = X[rng.choice(2000, 20, replace=False)]
    ref = KMeans(20, init=init, n_init=1, tol=0.0, backend="native").fit(X)
    ours = KMeans(20, init=init, n_init=1, tol=0.0, algorithm="elkan", backend="native").fit(X)
    assert_same_as_lloyd(ours, ref, X, np.float32)
    assert elkan_calls


@pytest.mark.parametrize(("n_features", "chunk_bytes", "chunked"), [
    (5, None, False), (24, None, False), (300, None, False),
    # small budgets (still room for the native accumulators): several chunks per pass
    (5, 32 * 1024, True), (24, 32 * 1024, True),
])
def test_native_elkan_fits_use_the_kernel_and_match_lloyd(n_features, chunk_bytes, chunked,
                                                         elkan_calls):
    rng = np.random.default_rng(n_features)
    # overlapping blobs at every width (as benchmarks/bench_lloyd.py), so labels keep moving
    centers = rng.normal(scale=2.0 * np.sqrt(8 / max(n_features, 8)), size=(80, n_features))
    X = (centers[rng.integers(80, size=3000)] + rng.normal(size=(3000, n_features)))
    X = X.astype(np.float32)
    init = X[rng.choice(3000, 80, replace=False)]
    ref = native_fit(X, init, "lloyd", tol=0.0, chunk_bytes=chunk_bytes)
    ours = native_fit(X, init, "elkan", tol=0.0, chunk_bytes=chunk_bytes)
    assert_same_as_lloyd(ours, ref, X, np.float32)
    assert ref.n_iter_ >= 10
    assert elkan_calls
    assert (max(elkan_calls) < 3000) == chunked
    # 'auto': Elkan's native pass where k <= d (80 clusters, 300 features), not below.
    calls = len(elkan_calls)
    auto = native_fit(X, init, "auto", tol=0.0, chunk_bytes=chunk_bytes)
    assert_same_as_lloyd(auto, ref, X, np.float32)
    assert (len(elkan_calls) > calls) == (n_features >= 80)


def test_native_pass_recomputes_few_rows_late():
    # Lloyd's centers fed to the native pass: its labels are Lloyd's at every step, and
    # once the centers settle few rows need any score beyond their own.
    X, _ = blob_data(3000, 24, 12, seed=5)
    init = X[np.random.default_rng(5).choice(3000, 24, replace=False)].astype(np.float32)
    X = X.astype(np.float32)
    data = make_data(torch.tensor(X), torch.ones(3000), copy=True)
    initial = torch.tensor(init) - data.offset
    bounded = BoundedPass(data, center_groups(initial, "elkan", 24),
                          chunk_rows_for(data, 24, None), NativeBackend(),
                          own_elkan=True)
    labels = torch.full((3000,), -1, dtype=torch.int64)
    n_iter = lloyd(data, initial, max_iter=300, backend="native").n_iter
    centers, recomputed = initial, []
    for n_passes in range(1, n_iter + 1):
        bounded(centers, labels, False)
        step = lloyd(data, initial, max_iter=n_passes, backend="native")
        if n_passes > 1:  # the first pass labels by the GEMM
            assert torch.equal(labels, step.labels)
        recomputed.append(bounded.n_recomputed)
        centers = step.centers
    assert n_iter >= 10
    assert recomputed[0] == 3000
    assert sum(recomputed[1:]) < 0.4 * 3000 * (n_iter - 1), recomputed
    assert max(recomputed[-3:]) < 0.2 * 3000, recomputed
