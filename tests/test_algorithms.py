"""``algorithm='elkan' | 'hamerly' | 'yinyang' | 'auto'`` give Lloyd's fit exactly.

The bound-based algorithms (``torchmeans.core.bounds``) only skip samples that provably
keep their label, so from the same explicit init they must reproduce
``algorithm='lloyd'``: the same labels, centers (to float rounding), ``n_iter_`` and
per-iteration history (labels changed, clusters relocated). One difference is by
design: without ``verbose`` they do not compute each iteration's inertia (that
would cost a full pass), so ``history[i].inertia`` is NaN there; with
``verbose=True`` it equals Lloyd's to float rounding.

The data of the property tests is drawn from a continuous distribution: exact ties
in the original coordinates become rounding-level near-ties once the engine
subtracts the mean, and those are decided by the rounding of the distance GEMM
(see ``test_rounding_level_ties_follow_lloyd``). Exact ties are tested on data
whose arithmetic is exact in every layout (integer rows with a zero mean, dyadic
centers), against an exact rational oracle.
"""

import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans as SKKMeans
from sklearn.exceptions import ConvergenceWarning

from _helpers import EXACT_TIES, blob_data, exact_lloyd, random_row_data, to_numpy
from torchmeans import KMeans, kmeans
from torchmeans.backends.native import backend as native_backend_module
from torchmeans.backends.native import kernel as _native
from torchmeans.backends.torch import TorchBackend
from torchmeans.core.assign import center_terms, chunk_rows_for
from torchmeans.core.bounds import BoundedPass, center_groups
from torchmeans.core.lloyd import lloyd
from torchmeans.core.validation import make_data
from torchmeans.data import DenseData, SparseData, csr_tensor


@pytest.fixture(autouse=True)
def passes_one_call_each(monkeypatch):
    """Every fit here runs the engine's loop of passes: small problems would otherwise run
    all their iterations in one native call whatever the algorithm (tests/test_small_fits.py),
    and these tests are about the bounded passes."""
    monkeypatch.setattr(native_backend_module, "SMALL_RUN_MAX_WORK", 0)


BOUNDED = ["elkan", "hamerly", "yinyang", "auto"]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}

# -- helpers ---------------------------------------------------------------------------


def fit(X, init, algorithm, device, sample_weight=None, **params):
    # backend="torch": the bounded passes add sums with the torch ops, so they match its
    # Lloyd to the bit (the native kernel adds in float64: same labels, other rounding).
    params.setdefault("backend", "torch")
    km = KMeans(len(init), init=init, n_init=1, algorithm=algorithm, device=device, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points, k = N
        return km.fit(X, sample_weight=sample_weight)


def history(km):
    return [(s.iteration, s.n_changed, s.n_empty) for s in km.n_iter_history_]


def scale_of(X):
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    return float(np.abs(X - X.mean(axis=0)).max()) + float(np.abs(X).max()) * 1e-3 + 1.0


def assert_same_as_lloyd(ours, ref, X, dtype=np.float64, verbose=False):
    """``ours`` (a bound-based fit) reproduces ``ref`` (Lloyd's) from the same init."""
    rtol = RTOL[dtype]
    np.testing.assert_array_equal(to_numpy(ours.labels_), to_numpy(ref.labels_))
    np.testing.assert_allclose(
        to_numpy(ours.cluster_centers_),
        to_numpy(ref.cluster_centers_),
        rtol=rtol,
        atol=rtol * scale_of(X),
    )
    assert ours.n_iter_ == ref.n_iter_
    assert history(ours) == history(ref)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol * 10, abs=rtol * 10)
    ref_inertia = [s.inertia for s in ref.n_iter_history_]
    assert np.isfinite(ref_inertia).all()
    inertia = np.array([s.inertia for s in ours.n_iter_history_])
    if verbose:
        np.testing.assert_allclose(inertia, ref_inertia, rtol=rtol * 100, atol=rtol * 100)
    else:
        # Lloyd passes (all of 'auto' with few clusters, and the first passes of the
        # bounded algorithms, until few labels move) report it; by design the bounded
        # passes skip the full pass an inertia needs: NaN from the switch on.
        known = ~np.isnan(inertia)
        np.testing.assert_allclose(inertia[known], np.array(ref_inertia)[known],
                                   rtol=rtol * 100, atol=rtol * 100)
        assert known.all() or not known[int(np.argmin(known)):].any()
    np.testing.assert_allclose(
        [s.center_shift for s in ours.n_iter_history_],
        [s.center_shift for s in ref.n_iter_history_],
        rtol=rtol * 100,
        atol=rtol * 100 * scale_of(X) ** 2,
    )


def make_problem(seed, n_samples, n_features, n_clusters, dtype, weighted, init_kind="rows"):
    """Continuous blobs (no exact ties), an init drawn from the rows, optional weights."""
    rng = np.random.default_rng(seed)
    n_blobs = int(rng.integers(1, n_clusters + 3))
    means = rng.normal(scale=5.0, size=(n_blobs, n_features))
    X = means[rng.integers(n_blobs, size=n_samples)] + rng.normal(size=(n_samples, n_features))
    init = X[rng.choice(n_samples, n_clusters, replace=False)]
    if init_kind == "duplicated":  # duplicated centers: empty clusters at once
        init = X[rng.choice(n_samples, n_clusters, replace=True)]
    weight = None
    if weighted:
        weight = rng.uniform(0.0, 3.0, n_samples)
        weight[rng.random(n_samples) < 0.15] = 0.0
        weight[0] = 1.0  # positive total
        weight = weight.astype(dtype)
    return X.astype(dtype), init.astype(dtype), weight


@st.composite
def problems(draw, max_samples=300, max_features=20, max_clusters=30):
    n_samples = draw(st.integers(1, max_samples))
    n_features = draw(st.integers(1, max_features))
    n_clusters = draw(st.integers(1, min(n_samples, max_clusters)))
    return make_problem(
        draw(st.integers(0, 2**32 - 1)),
        n_samples,
        n_features,
        n_clusters,
        draw(st.sampled_from([np.float64, np.float32])),
        draw(st.booleans()),
        draw(st.sampled_from(["rows", "rows", "duplicated"])),
    )


# -- every algorithm equals Lloyd: random shapes ------------------------------------------


@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_random_problems_match_lloyd(problem, device):
    X, init, weight = problem
    ref = fit(X, init, "lloyd", device, weight, tol=0.0)
    for algorithm in BOUNDED:
        ours = fit(X, init, algorithm, device, weight, tol=0.0)
        assert_same_as_lloyd(ours, ref, X, X.dtype.type)


@settings(max_examples=40, deadline=None)
@given(
    problem=problems(max_samples=150, max_features=8, max_clusters=12),
    max_iter=st.sampled_from([1, 2, 3, 300]),
    tol=st.sampled_from([0.0, 1e-4, 1e-2]),
)
def test_truncated_and_tolerant_runs_match_lloyd(problem, max_iter, tol, device):
    X, init, weight = problem
    params = dict(max_iter=max_iter, tol=tol)
    ref = fit(X, init, "lloyd", device, weight, **params)
    for algorithm in BOUNDED:
        ours = fit(X, init, algorithm, device, weight, **params)
        assert_same_as_lloyd(ours, ref, X, X.dtype.type)  # incl. the stopping iteration


# Five points on a line, all three initial centers on the same sample: two clusters are
# empty and relocated, the centers jump, the lower bounds go negative. Actual (bug):
# labels [0, 0, 1, 2, 0] after 3 iterations, history n_empty (2, 1, 0) instead of (2, 0, 0, 0).
NEGATIVE_LOWER_X = np.array([[2.22], [2.2], [4.09], [0.64], [1.78]])
NEGATIVE_LOWER_INIT = np.array([[0.64], [0.64], [0.64]])


def test_negative_lower_bound_reproducer_lloyd_is_sklearn():
    X, init = NEGATIVE_LOWER_X, NEGATIVE_LOWER_INIT
    ref = fit(X, init, "lloyd", "cpu", tol=0.0)
    sk = SKKMeans(3, init=init, n_init=1, tol=0.0).fit(X)
    np.testing.assert_array_equal(ref.labels_, sk.labels_)  # [2, 2, 1, 0, 2]
    assert ref.n_iter_ == sk.n_iter_ == 4


@pytest.mark.parametrize("algorithm", ["hamerly", "elkan", "yinyang"])
def test_negative_lower_bound_reproducer(algorithm):
    X, init = NEGATIVE_LOWER_X, NEGATIVE_LOWER_INIT
    ref = fit(X, init, "lloyd", "cpu", tol=0.0)
    ours = fit(X, init, algorithm, "cpu", tol=0.0)
    assert_same_as_lloyd(ours, ref, X)


@pytest.mark.parametrize("algorithm", ["hamerly", "yinyang", "elkan"])
def test_negative_lower_bound_direct(algorithm):
    # One sample at 0; pass 1 against centers (-50, 3, 60): label 1, u = 3, l = 50.
    # Pass 2 against (1.9, 2.0, 10000): center 2 drifted 9940, so l < 0 and the combined
    # bound is max(l, 2*0.05 - 4) = -3.9; tightening gives u = 2 and 2**2 < (-3.9)**2
    # skips the sample, although center 0 (at 1.9) is now nearest.
    X = torch.zeros(1, 1, dtype=torch.float64)
    data = DenseData(X, torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    first = torch.tensor([[-50.0], [3.0], [60.0]], dtype=torch.float64)
    second = torch.tensor([[1.9], [2.0], [10000.0]], dtype=torch.float64)
    bounded = BoundedPass(data, center_groups(first, algorithm, 1), 10)
    labels = torch.full((1,), -1)
    bounded(first, labels, False)
    assert labels.tolist() == [1]
    bounded(second, labels, False)
    assert labels.tolist() == [0]


# -- verbose: the per-iteration inertia is computed -----------------------------------------


@pytest.mark.parametrize("algorithm", BOUNDED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_verbose_history_inertia_equals_lloyd(algorithm, dtype, device, capsys):
    X, init = blob_data(800, 6, 7, dtype=dtype, seed=4)
    ref = fit(X, init, "lloyd", device, tol=0.0)
    capsys.readouterr()
    ours = fit(X, init, algorithm, device, tol=0.0, verbose=True)
    printed = capsys.readouterr().out
    assert f"Iteration 0, inertia {ours.n_iter_history_[0].inertia}" in printed
    assert_same_as_lloyd(ours, ref, X, dtype, verbose=True)
    quiet = fit(X, init, algorithm, device, tol=0.0)
    assert_same_as_lloyd(quiet, ref, X, dtype)  # NaN inertia without verbose


def test_functional_api_algorithm(device):
    X, init = blob_data(600, 4, 6, seed=21)
    ref = kmeans(X, 6, init=init, n_init=1, device=device)
    for algorithm in BOUNDED:
        ours = kmeans(X, 6, init=init, n_init=1, device=device, algorithm=algorithm)
        np.testing.assert_array_equal(to_numpy(ours.labels), to_numpy(ref.labels))
        np.testing.assert_allclose(to_numpy(ours.centers), to_numpy(ref.centers), rtol=1e-12)
        assert ours.n_iter == ref.n_iter
        assert ours.inertia == pytest.approx(ref.inertia, rel=1e-12)
        assert [(s.n_changed, s.n_empty) for s in ours.history] == [
            (s.n_changed, s.n_empty) for s in ref.history
        ]


@pytest.mark.parametrize("bad", ["Lloyd", "full", "elkan ", "", None, 1])
def test_unknown_algorithm_is_rejected(bad):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="algorithm"):
        KMeans(2, algorithm=bad).fit(X)
    with pytest.raises(ValueError, match="algorithm"):
        kmeans(X, 2, algorithm=bad)


# -- adversarial inputs ---------------------------------------------------------------------


def case_duplicated_points(dtype):
    X, init, _ = make_problem(1, 60, 3, 5, dtype, False)
    return np.vstack([X, X, X]), init, None, {}


def case_all_points_identical(dtype):
    X = np.full((40, 3), 7.5, dtype=dtype)
    return X, X[:3], None, {}


def case_one_cluster(dtype):
    X, init, weight = make_problem(2, 120, 4, 1, dtype, True)
    return X, init, weight, {}


def case_k_equals_n(dtype):
    X, _, _ = make_problem(3, 25, 3, 1, dtype, False)
    return X, X[::-1].copy(), None, {}


def case_one_feature(dtype):
    X, init, _ = make_problem(4, 300, 1, 12, dtype, False)
    return X, init, None, {}


def case_far_from_origin(dtype):
    X, init, _ = make_problem(5, 300, 5, 10, np.float64, False)
    return (X + 1e6).astype(dtype), (init + 1e6).astype(dtype), None, {}


def case_duplicated_centers(dtype):
    X, _, _ = make_problem(6, 200, 3, 1, dtype, False)
    return X, X[[0, 0, 0, 5, 5, 9]], None, {}


def case_centers_far_from_data(dtype):
    X, init, _ = make_problem(7, 200, 4, 8, dtype, False)
    init = init.copy()
    init[::2] += 1000.0  # every second center is far from all data: empty, relocated
    return X, init, None, {}


def case_zero_weights(dtype):
    X, init, weight = make_problem(8, 200, 5, 9, dtype, True)
    weight[1::3] = 0.0
    return X, init, weight, {}


def case_max_iter_one(dtype):
    X, init, _ = make_problem(9, 250, 6, 15, dtype, False)
    return X, init, None, {"max_iter": 1}


def case_tolerance(dtype):
    X, init = random_row_data(400, 5, 6, 12, seed=10)
    return X.astype(dtype), init.astype(dtype), None, {"tol": 1e-2}


def case_many_clusters(dtype):
    # k > 32 (Lloyd's (rows, k) score layout), yinyang with several groups, and
    # k >= 64: 'auto' runs a bound-based pass.
    X, init, _ = make_problem(11, 300, 12, 70, dtype, False)
    return X, init, None, {}


CASES = {
    "duplicated-points": case_duplicated_points,
    "all-points-identical": case_all_points_identical,
    "k=1": case_one_cluster,
    "k=N": case_k_equals_n,
    "D=1": case_one_feature,
    "offset-1e6": case_far_from_origin,
    "duplicated-centers": case_duplicated_centers,
    "centers-far-from-data": case_centers_far_from_data,
    "zero-weights": case_zero_weights,
    "max_iter=1": case_max_iter_one,
    "tol=1e-2": case_tolerance,
    "k=70": case_many_clusters,
}

def adversarial_params():
    for name, dtype, algorithm in itertools.product(CASES, ["float64", "float32"], BOUNDED):
        if name == "offset-1e6" and dtype == "float32":
            continue  # 1e6 + O(1) keeps only ~1e-1 resolution in float32
        yield pytest.param(name, dtype, algorithm, id=f"{name}-{dtype}-{algorithm}")


@pytest.mark.parametrize(("case", "dtype", "algorithm"), list(adversarial_params()))
def test_adversarial_inputs_match_lloyd(case, dtype, algorithm, device):
    dtype = np.dtype(dtype).type
    X, init, weight, params = CASES[case](dtype)
    params.setdefault("tol", 0.0)
    ref = fit(X, init, "lloyd", device, weight, **params)
    ours = fit(X, init, algorithm, device, weight, **params)
    assert_same_as_lloyd(ours, ref, X, dtype)


# -- exact ties -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(EXACT_TIES))
def test_exact_ties_follow_the_first_center(name, dtype, device):
    rows, centers = EXACT_TIES[name]
    X, init = np.array(rows, dtype=dtype), np.array(centers, dtype=dtype)
    labels, expected_centers, changed = exact_lloyd(rows, centers)
    assert X.mean(axis=0).tolist() == [0.0] * X.shape[1]
    for algorithm in ["lloyd", *BOUNDED]:
        for chunk_bytes in (None, 1, 64):
            km = fit(X, init, algorithm, device, tol=0.0, chunk_bytes=chunk_bytes)
            np.testing.assert_array_equal(to_numpy(km.labels_), labels)
            np.testing.assert_array_equal(to_numpy(km.cluster_centers_), expected_centers)
            assert [s.n_changed for s in km.n_iter_history_] == changed
    sk = SKKMeans(len(init), init=init, n_init=1, tol=0.0).fit(X)
    np.testing.assert_array_equal(sk.labels_, labels)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    half=st.integers(1, 40),
    n_features=st.integers(1, 4),
    n_clusters=st.integers(1, 8),
    duplicate=st.booleans(),
)
def test_first_pass_on_integer_grids(seed, half, n_features, n_clusters, duplicate, device):
    # Symmetric integer grids (zero mean): the first pass's scores are exact, so every
    # algorithm takes the first of tied centers, incl. duplicated ones (then empty and
    # relocated). One iteration: later centers are not exactly representable.
    rng = np.random.default_rng(seed)
    H = rng.integers(-2, 3, size=(half, n_features))
    X = np.vstack([H, -H]).astype(np.float64)
    n_clusters = min(n_clusters, len(X))
    init = X[rng.choice(len(X), n_clusters, replace=duplicate)]
    ref = fit(X, init, "lloyd", device, max_iter=1)
    for algorithm in BOUNDED:
        ours = fit(X, init, algorithm, device, max_iter=1)
        assert_same_as_lloyd(ours, ref, X)
    if len(np.unique(init, axis=0)) == n_clusters:  # no empty cluster to relocate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk = SKKMeans(n_clusters, init=init, n_init=1, max_iter=1).fit(X)
        np.testing.assert_allclose(
            to_numpy(ref.cluster_centers_), sk.cluster_centers_, rtol=1e-12, atol=1e-12
        )


def _layouts_round_alike(X, init):
    data = make_data(torch.tensor(X), torch.ones(len(X), dtype=torch.float64), copy=True)
    terms = center_terms(torch.tensor(init) - data.offset)
    rows = data.scores(data.take(torch.arange(len(X))), terms.transposed, terms.sq_norms)
    columns = data.scores(
        data.take(torch.arange(len(X))), terms.transposed, terms.sq_norms, transposed=True
    )
    return torch.equal(rows, columns.T)


@pytest.mark.parametrize("algorithm", ["hamerly", "elkan", "yinyang"])
def test_rounding_level_ties_follow_lloyd(algorithm):
    # Integer rows, nonzero mean: rows 0, 1 and 5 are exactly equidistant from both
    # centers, and after the shift their ties are decided by rounding. Lloyd computes
    # (k, rows) scores for k <= 32; the bounded passes must use the same layout (the two
    # layouts round differently here), or the centers differ after one iteration.
    X = np.array([[1, -1], [-3, 3], [-1, 0], [-3, 2], [-2, 3], [-2, 2], [0, -3]], np.float64)
    init = np.array([[-2.0, 3.0], [-3.0, 2.0]])
    if _layouts_round_alike(X, init):
        pytest.skip("this BLAS rounds both score layouts alike: the tie cannot differ")
    ref = fit(X, init, "lloyd", "cpu", max_iter=1)
    ours = fit(X, init, algorithm, "cpu", max_iter=1)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)


# -- chunk size -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 64, 4096])
@pytest.mark.parametrize("algorithm", ["lloyd", *BOUNDED])
def test_chunk_size_does_not_change_the_fit(algorithm, chunk_bytes, device):
    X, init, weight = make_problem(12, 150, 5, 7, np.float64, True)
    whole = fit(X, init, algorithm, device, weight, tol=0.0)
    chunked = fit(X, init, algorithm, device, weight, tol=0.0, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(to_numpy(chunked.labels_), to_numpy(whole.labels_))
    np.testing.assert_allclose(
        to_numpy(chunked.cluster_centers_),
        to_numpy(whole.cluster_centers_),
        rtol=1e-12,
        atol=1e-12 * scale_of(X),
    )
    assert chunked.n_iter_ == whole.n_iter_
    assert history(chunked) == history(whole)
    # Unit weights take the incremental path.
    X, init = random_row_data(200, 3, 4, 9, seed=13)
    whole = fit(X, init, algorithm, device, tol=0.0)
    chunked = fit(X, init, algorithm, device, tol=0.0, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(to_numpy(chunked.labels_), to_numpy(whole.labels_))
    assert chunked.n_iter_ == whole.n_iter_
    assert history(chunked) == history(whole)


@settings(max_examples=30, deadline=None)
@given(
    problem=problems(max_samples=120, max_features=6, max_clusters=10),
    chunk_bytes=st.sampled_from([1, 64, 4096]),
)
def test_chunked_bounded_fits_match_lloyd(problem, chunk_bytes, device):
    X, init, weight = problem
    if X.dtype == np.float32:
        X, init = X.astype(np.float64), init.astype(np.float64)  # 1-row GEMVs round apart
    ref = fit(X, init, "lloyd", device, weight, tol=0.0)
    for algorithm in BOUNDED:
        ours = fit(X, init, algorithm, device, weight, tol=0.0, chunk_bytes=chunk_bytes)
        assert_same_as_lloyd(ours, ref, X)


# -- sparse input ----------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("algorithm", ["hamerly", "elkan", "yinyang"])
def test_sparse_input_matches_lloyd(algorithm, dtype, weighted, device):
    X = sp.random(300, 30, density=0.2, format="csr", random_state=1, dtype=dtype)
    rng = np.random.default_rng(0)
    init = X[rng.choice(300, 6, replace=False)].toarray()
    weight = rng.uniform(0.0, 2.0, 300).astype(dtype) if weighted else None
    ref = fit(X, init, "lloyd", device, weight, tol=0.0)
    ours = fit(X, init, algorithm, device, weight, tol=0.0)
    assert_same_as_lloyd(ours, ref, X, dtype)


def test_sparse_input_many_clusters_auto(device):
    # From 64 clusters 'auto' runs a bound-based pass: sparse input fails with it too.
    X = sp.random(400, 20, density=0.3, format="csr", random_state=3)
    init = X[np.random.default_rng(1).choice(400, 70, replace=False)].toarray()
    ref = fit(X, init, "lloyd", device, tol=0.0)
    ours = fit(X, init, "auto", device, tol=0.0)
    assert_same_as_lloyd(ours, ref, X)


# -- scikit-learn -----------------------------------------------------------------------------


def sklearn_params():
    for dtype, algorithm in itertools.product(["float64", "float32"], BOUNDED):
        yield pytest.param(dtype, algorithm, id=f"{dtype}-{algorithm}")


@pytest.mark.parametrize(("dtype", "algorithm"), list(sklearn_params()))
def test_blobs_match_sklearn(dtype, algorithm, device):
    dtype = np.dtype(dtype).type
    if dtype == np.float64:
        # Several initial centers per blob: many iterations, centers move between blobs.
        X, init = random_row_data(2000, 10, 20, 20, seed=31)
        rtol = 1e-10
    else:
        X, init = blob_data(2000, 10, 20, dtype=dtype, seed=31)  # no near-ties in float32
        rtol = 1e-5
    ref = SKKMeans(20, init=init, n_init=1, algorithm="lloyd").fit(X)
    ours = fit(X, init, algorithm, device)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(
        ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=rtol * scale_of(X)
    )
    assert ours.n_iter_ == ref.n_iter_
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol * 10)


# -- the bounds do skip work --------------------------------------------------------------------


def replay(X, init, algorithm, device):
    """Feed Lloyd's centers, iteration by iteration, to a BoundedPass.

    Returns Lloyd's labels and the pass's labels and ``n_recomputed`` at every pass,
    then ``n_recomputed`` of one more pass against the final centers.
    """
    n_samples, n_features = X.shape
    data = make_data(
        torch.tensor(X, device=device),
        torch.ones(n_samples, dtype=torch.float64, device=device),
        copy=True,
    )
    initial = torch.tensor(init, device=device) - data.offset
    bounded = BoundedPass(
        data, center_groups(initial, algorithm, n_features), chunk_rows_for(data, len(init), None)
    )
    labels = torch.full((n_samples,), -1, dtype=torch.int64, device=device)
    n_iter = lloyd(data, initial, max_iter=300).n_iter
    centers, passes = initial, []
    for n_passes in range(1, n_iter + 1):
        bounded(centers, labels, False)
        step = lloyd(data, initial, max_iter=n_passes)
        passes.append((step.labels, labels.clone(), bounded.n_recomputed))
        centers = step.centers
    bounded(centers, labels, False)
    return passes, bounded.n_recomputed


@pytest.mark.parametrize("algorithm", ["hamerly", "yinyang", "elkan"])
def test_bounds_skip_samples_that_cannot_move(algorithm, device):
    # One initial center per well separated blob, on one of its samples: the centers
    # drift to the blob means, every decision boundary runs through empty space, and
    # the second pass recomputes (almost) nothing.
    X, init = blob_data(3000, 8, 12, seed=5)
    passes, again = replay(X, init, algorithm, device)
    assert len(passes) >= 2
    for lloyd_labels, labels, _ in passes:
        assert torch.equal(labels, lloyd_labels)
    recomputed = [n for _, _, n in passes]
    assert recomputed[0] == 3000  # the first pass computes every distance
    assert max(recomputed[1:]) < 30, recomputed
    assert again < 30  # same centers again: nothing drifted, nothing is near a tie


@pytest.mark.parametrize("algorithm", ["hamerly", "yinyang", "elkan"])
def test_bounds_skip_work_while_centers_move(algorithm, device):
    # Two initial centers per blob on average: 25 iterations, boundaries inside blobs.
    X, _ = blob_data(3000, 8, 12, seed=5)
    init = X[np.random.default_rng(5).choice(3000, 24, replace=False)]
    passes, again = replay(X, init, algorithm, device)
    recomputed = [n for _, _, n in passes]
    assert len(recomputed) >= 10
    assert recomputed[0] == 3000
    # Measured: 27% (hamerly), 24% (yinyang), 9% (elkan) of all distances after pass 0.
    assert sum(recomputed[1:]) < 0.4 * 3000 * (len(recomputed) - 1), recomputed
    assert max(recomputed[-3:]) < 0.2 * 3000, recomputed
    assert again < 30


# -- KMeansData.select: the row subsets the bounded pass recomputes ------------------------------


def _dense_and_sparse(device, weighted):
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(37, 6))
    dense[rng.random(dense.shape) < 0.5] = 0.0
    weight = torch.tensor(rng.uniform(0.0, 2.0, 37) if weighted else np.ones(37), device=device)
    X = torch.tensor(dense, device=device)
    csr = sp.csr_matrix(dense)
    sparse = csr_tensor(
        torch.tensor(csr.indptr, dtype=torch.int64),
        torch.tensor(csr.indices, dtype=torch.int64),
        torch.tensor(csr.data),
        csr.shape,
    ).to(device)
    centers = torch.tensor(rng.normal(size=(5, 6)), device=device)
    return {"dense": DenseData(X, weight), "sparse": SparseData(sparse, weight)}, centers


SUBSETS = {
    "single": [3],
    "first-last": [0, 9],
    "scattered": [1, 2, 5, 8],
    "all": list(range(10)),
}


def select_params():
    for kind, subset in itertools.product(["dense", "sparse"], SUBSETS):
        yield pytest.param(kind, subset, id=f"{kind}-{subset}")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("kind", "subset"), list(select_params()))
def test_select_rows_of_a_chunk(kind, subset, weighted, device):
    datasets, centers = _dense_and_sparse(device, weighted)
    data = datasets[kind]
    chunk = list(data.chunks(10))[2]  # rows 20..29: the chunk's offset matters
    rows = torch.tensor(SUBSETS[subset], dtype=torch.int64, device=device)
    selected = data.select(chunk, rows)

    def dense_x(c):
        return c.x.to_dense() if c.x.layout == torch.sparse_csr else c.x

    assert torch.equal(dense_x(selected), dense_x(chunk)[rows])
    assert torch.equal(selected.sq_norms, chunk.sq_norms[rows])
    if weighted:
        assert torch.equal(selected.weight, chunk.weight[rows])
    else:
        assert selected.weight is None
    terms = center_terms(centers)
    full_scores = data.scores(chunk.x, terms.transposed, terms.sq_norms)
    scores = data.scores(selected.x, terms.transposed, terms.sq_norms)
    torch.testing.assert_close(scores, full_scores[rows], rtol=1e-12, atol=1e-12)
    labels = torch.arange(10, device=device) % 5
    full_distances = data.sq_distances_to(chunk, centers, labels)
    distances = data.sq_distances_to(selected, centers, labels[rows])
    torch.testing.assert_close(distances, full_distances[rows], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["hamerly", "yinyang", "elkan"])
def test_bounds_take_over_from_lloyd_passes_mid_fit(algorithm):
    """Lloyd passes run until at most 1% of the labels move; the bounds then take over
    with valid labels and running sums (an incremental first bounded pass)."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(20_000, 6)) + rng.integers(0, 8, size=(20_000, 1)) * 1.5)
    init = X[:40].copy()
    ref = KMeans(40, init=init, n_init=1, algorithm="lloyd", backend="torch").fit(X)
    ours = KMeans(40, init=init, n_init=1, algorithm=algorithm).fit(X)
    inertia = np.array([s.inertia for s in ours.n_iter_history_])
    assert np.isfinite(inertia[0])
    assert np.isnan(inertia[-1])  # the switch happened
    assert_same_as_lloyd(ours, ref, X)


class _ScoresItself(TorchBackend):
    """A backend that scores rows itself (as the native kernel does), for 'auto'."""

    def own_scores(self, data):
        return True


SCORES_ITSELF = _ScoresItself()


def test_auto_picks_by_clusters_and_dimension():
    from torchmeans.core.lloyd import resolve_algorithm
    from torchmeans.core.validation import prepare_data

    def data(n_features):
        return prepare_data(torch.zeros(300, n_features), None)

    assert resolve_algorithm("auto", data(768), 16) == "lloyd"
    assert resolve_algorithm("auto", data(32), 256) == "hamerly"
    assert resolve_algorithm("auto", data(768), 256) == "elkan"
    assert resolve_algorithm("auto", data(300), 1024) == "hamerly"  # bounds larger than data
    assert resolve_algorithm("yinyang", data(768), 256) == "yinyang"
    # The native kernel's own scores (<= 16 features): Lloyd at any k.
    assert resolve_algorithm("auto", data(8), 256, backend=SCORES_ITSELF) == "lloyd"
    assert resolve_algorithm("auto", data(8), 256) == "hamerly"
    assert resolve_algorithm("elkan", data(8), 256, backend=SCORES_ITSELF) == "elkan"
    # Elkan's native pass: from 17 features wherever k <= d.
    assert resolve_algorithm("auto", data(64), 64, backend=SCORES_ITSELF) == "elkan"
    assert resolve_algorithm("auto", data(64), 64) == "hamerly"
    assert resolve_algorithm("auto", data(32), 256, backend=SCORES_ITSELF) == "hamerly"


@pytest.mark.skipif(not _native.direct_applies(8), reason="no native kernel")
def test_auto_runs_lloyd_where_the_kernel_computes_the_scores():
    X, init = random_row_data(3000, 8, 70, 70, seed=2)
    auto = KMeans(70, init=init, n_init=1).fit(X)
    # Bounded passes report NaN inertia (they skip the exact sums): none here.
    assert np.isfinite([s.inertia for s in auto.n_iter_history_]).all()
    hamerly = KMeans(70, init=init, n_init=1, algorithm="hamerly").fit(X)
    assert np.isnan(hamerly.n_iter_history_[-1].inertia)
    np.testing.assert_array_equal(auto.labels_, hamerly.labels_)


def test_auto_keeps_elkans_bounds_off_sparse_data():
    from torchmeans.core.lloyd import resolve_algorithm
    from torchmeans.core.validation import prepare_data

    sparse = prepare_data(torch.eye(300, 400).to_sparse_csr(), None)
    assert resolve_algorithm("auto", sparse, 256) == "hamerly"


def test_weighted_relocation_leaves_no_residual_cluster():
    # Found by a randomized comparison: relocating the farthest (weighted) points
    # emptied a weighted cluster up to a ~1e-16 weight residual, and its center
    # became residual / residual, far from any data. It must be treated as empty.
    rng = np.random.default_rng(1)
    for trial in range(83):
        n = int(rng.integers(5, 150))
        d = int(rng.integers(1, 12))
        k = int(rng.integers(1, min(n, 45) + 1))
        X = rng.normal(size=(n, d))
        init = rng.normal(size=(k, d)) * rng.choice([0.5, 3, 10])
        weight = None if trial % 2 else rng.uniform(0.5, 2, size=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty clusters may warn; the centers are the point
            km = KMeans(k, init=init, n_init=1, max_iter=1, tol=0).fit(X, sample_weight=weight)
        assert np.isfinite(km.cluster_centers_).all()
        low, high = X.min(axis=0) - 1e-9, X.max(axis=0) + 1e-9
        assert ((km.cluster_centers_ >= low) & (km.cluster_centers_ <= high)).all()


@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_converged_fit_reuses_the_last_labels(backend, dtype, monkeypatch):
    """Strict convergence: no final assignment pass, and still labels_ == predict(X)."""
    import torchmeans.core.functional as functional

    if backend == "native" and not _native.available():
        pytest.skip(_native.unavailable_reason())
    X, _ = blob_data(2000, 5, 6, seed=4)
    X = (X + 1e3).astype(dtype)  # far from the origin: the shift rounds every center
    final_passes = []
    assign = functional.assign
    monkeypatch.setattr(functional, "assign",
                        lambda *a, **k: (final_passes.append(1), assign(*a, **k))[1])
    for seed in range(5):
        km = KMeans(6, random_state=seed, tol=0, backend=backend).fit(X)
        assert km.n_iter_history_[-1].n_changed == 0
        np.testing.assert_array_equal(km.predict(X), km.labels_)
        assert km.inertia_ == -km.score(X)
    assert final_passes == []
