"""Each bad input raises the right error type with a message that names the problem."""

import re

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import torchmeans
from torchmeans import KMeans, kmeans, kmeans_plusplus, sources
from torchmeans.backends.native import kernel as _native
from torchmeans.core.validation import all_finite

GOOD = np.array([[0.0, 1.0], [1.0, 0.0], [10.0, 10.0], [11.0, 10.0], [5.0, 5.0]])


def as_kind(array, kind, device):
    return torch.tensor(array, device=device) if kind == "torch" else np.asarray(array)


def entry_points(device):
    """Every public way to fit: estimator fit, fit_predict, fit_transform, kmeans, kmeans++."""
    return [
        lambda X, **kw: KMeans(2, device=device, **kw).fit(X),
        lambda X, **kw: KMeans(2, device=device, **kw).fit_predict(X),
        lambda X, **kw: KMeans(2, device=device, **kw).fit_transform(X),
        lambda X, **kw: kmeans(X, 2, device=device, **kw),
        lambda X, **kw: kmeans_plusplus(X, 2, device=device, **kw),
    ]


KINDS = ["numpy", "torch"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", range(5))
def test_nan(kind, entry, device):
    X = GOOD.copy()
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        entry_points(device)[entry](as_kind(X, kind, device))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("entry", range(5))
def test_inf(kind, value, entry, device):
    X = GOOD.copy()
    X[0, 0] = value
    with pytest.raises(ValueError, match="infinity"):
        entry_points(device)[entry](as_kind(X, kind, device))


def test_finite_values_whose_sum_overflows_are_accepted():
    """The finite check sums first; a sum that overflows falls back to the exact test."""
    X = np.array([[3e38, 1.0], [3e38, 2.0], [-1.0, 3e38]], dtype=np.float32)
    assert not np.isfinite(X.sum(dtype=np.float32))
    assert all_finite(torch.from_numpy(X))
    for bad in (np.inf, np.nan):
        Y = X.copy()
        Y[2, 0] = bad
        assert not all_finite(torch.from_numpy(Y))
    Y = np.array([[np.inf], [-np.inf]])  # sums to NaN
    assert not all_finite(torch.from_numpy(Y))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("shape", "match"), [((0, 3), "0 sample"), ((4, 0), "0 feature"), ((0, 0), "0 sample")]
)
@pytest.mark.parametrize("entry", range(5))
def test_empty(kind, shape, match, entry, device):
    with pytest.raises(ValueError, match=match):
        entry_points(device)[entry](as_kind(np.zeros(shape), kind, device))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", range(5))
def test_one_dimensional(kind, entry, device):
    with pytest.raises(ValueError, match=r"(?i)2-?D.*\n?.*reshape|reshape"):
        entry_points(device)[entry](as_kind(np.arange(6.0), kind, device))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", range(5))
def test_three_dimensional(kind, entry, device):
    with pytest.raises(ValueError, match=r"dim 3|3-D"):
        entry_points(device)[entry](as_kind(np.zeros((4, 2, 2)), kind, device))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex(kind, dtype, device):
    X = as_kind(GOOD.astype(dtype), kind, device)
    for fit in entry_points(device):
        with pytest.raises(ValueError, match=r"(?i)complex"):
            fit(X)


@pytest.mark.parametrize("kind", KINDS)
def test_strings_rejected(kind, device):
    with pytest.raises(ValueError, match=r"(?i)string|could not convert|dtype"):
        KMeans(2, device=device).fit(np.array([["a", "b"], ["c", "d"], ["e", "f"]]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_clusters", [0, -1, 2.0, "3", None, True])
def test_bad_n_clusters(kind, n_clusters, device):
    X = as_kind(GOOD, kind, device)
    with pytest.raises(ValueError, match="n_clusters"):
        KMeans(n_clusters, device=device).fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(X, n_clusters, device=device)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_plusplus(X, n_clusters, device=device)


@pytest.mark.parametrize("kind", KINDS)
def test_more_clusters_than_samples(kind, device):
    X = as_kind(GOOD, kind, device)
    for call in (
        lambda: KMeans(6, device=device).fit(X),
        lambda: kmeans(X, 6, device=device),
        lambda: kmeans_plusplus(X, 6, device=device),
    ):
        with pytest.raises(ValueError, match=r"n_samples=5 should be >= n_clusters=6"):
            call()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(3, 2), (2, 3), (2,), (1, 2, 2)])
def test_init_array_wrong_shape(kind, shape, device):
    X = as_kind(GOOD, kind, device)
    init = as_kind(np.zeros(shape), kind, device)
    with pytest.raises(ValueError, match=r"(?i)shape.*initial centers|init"):
        KMeans(2, init=init, n_init=1, device=device).fit(X)
    with pytest.raises(ValueError, match=r"(?i)shape.*initial centers|init"):
        kmeans(X, 2, init=init, n_init=1, device=device)


@pytest.mark.parametrize("kind", KINDS)
def test_init_array_not_finite(kind, device):
    X = as_kind(GOOD, kind, device)
    init = as_kind(np.array([[0.0, np.nan], [1.0, 1.0]]), kind, device)
    with pytest.raises(ValueError, match=r"(?i)nan|finite"):
        KMeans(2, init=init, n_init=1, device=device).fit(X)


def test_callable_init_returning_wrong_shape(device):
    def bad_init(X, n_clusters, random_state):
        return np.zeros((n_clusters + 1, X.shape[1]))

    with pytest.raises(ValueError, match="shape of the initial centers"):
        KMeans(2, init=bad_init, n_init=1, device=device).fit(GOOD)


@pytest.mark.parametrize("init", ["kmeans++", "k-means", "Random", ""])
def test_invalid_init_string(init, device):
    with pytest.raises(ValueError, match="'init' parameter of KMeans must be a str among"):
        KMeans(2, init=init, device=device).fit(GOOD)
    with pytest.raises(ValueError, match="'init' parameter of kmeans must be a str among"):
        kmeans(GOOD, 2, init=init, device=device)


@pytest.mark.parametrize("init", [3, 2.5, object()])
def test_invalid_init_type(init, device):
    with pytest.raises(TypeError, match="'init' parameter of KMeans must be"):
        KMeans(2, init=init, device=device).fit(GOOD)


@pytest.mark.parametrize("n_init", [0, -2, 1.5, "all", None, True])
def test_bad_n_init(n_init, device):
    with pytest.raises(ValueError, match="n_init"):
        KMeans(2, n_init=n_init, device=device).fit(GOOD)
    with pytest.raises(ValueError, match="n_init"):
        kmeans(GOOD, 2, n_init=n_init, device=device)


@pytest.mark.parametrize("max_iter", [0, -1, 2.5, "10", None])
def test_bad_max_iter(max_iter, device):
    with pytest.raises(ValueError, match="max_iter"):
        KMeans(2, max_iter=max_iter, device=device).fit(GOOD)
    with pytest.raises(ValueError, match="max_iter"):
        kmeans(GOOD, 2, max_iter=max_iter, device=device)


@pytest.mark.parametrize("tol", [-1e-4, float("nan"), "small", None])
def test_bad_tol(tol, device):
    with pytest.raises(ValueError, match="tol"):
        KMeans(2, tol=tol, device=device).fit(GOOD)
    with pytest.raises(ValueError, match="tol"):
        kmeans(GOOD, 2, tol=tol, device=device)


@pytest.mark.parametrize("chunk_bytes", [0, -5, 1.5, "1MB"])
def test_bad_chunk_bytes(chunk_bytes, device):
    with pytest.raises(ValueError, match="chunk_bytes"):
        KMeans(2, chunk_bytes=chunk_bytes, device=device).fit(GOOD)
    with pytest.raises(ValueError, match="chunk_bytes"):
        kmeans_plusplus(GOOD, 2, chunk_bytes=chunk_bytes, device=device)


def test_bad_algorithm(device):
    with pytest.raises(ValueError, match="algorithm"):
        KMeans(2, algorithm="full", device=device).fit(GOOD)


def test_negative_random_state(device):
    with pytest.raises(ValueError, match="random_state"):
        KMeans(2, random_state=-1, device=device).fit(GOOD)


# -- sample weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_negative_sample_weight(kind, device):
    X = as_kind(GOOD, kind, device)
    w = as_kind(np.array([1.0, -0.5, 1.0, 1.0, 1.0]), kind, device)
    for call in (
        lambda: KMeans(2, device=device).fit(X, sample_weight=w),
        lambda: kmeans(X, 2, sample_weight=w, device=device),
        lambda: kmeans_plusplus(X, 2, sample_weight=w, device=device),
    ):
        with pytest.raises(ValueError, match=r"(?i)negative"):
            call()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("length", [4, 6])
def test_wrong_length_sample_weight(kind, length, device):
    X = as_kind(GOOD, kind, device)
    w = as_kind(np.ones(length), kind, device)
    for call in (
        lambda: KMeans(2, device=device).fit(X, sample_weight=w),
        lambda: kmeans(X, 2, sample_weight=w, device=device),
    ):
        with pytest.raises(ValueError, match=rf"sample_weight.*\({length},\).*expected \(5,\)"):
            call()
    km = KMeans(2, random_state=0, device=device).fit(X)
    with pytest.raises(ValueError, match="sample_weight"):
        km.score(X, sample_weight=w)


@pytest.mark.parametrize("kind", KINDS)
def test_two_dimensional_sample_weight(kind, device):
    with pytest.raises(ValueError, match="sample_weight"):
        KMeans(2, device=device).fit(
            as_kind(GOOD, kind, device), sample_weight=as_kind(np.ones((5, 1)), kind, device)
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("value", "match"), [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_sample_weight(kind, value, match, device):
    w = np.ones(5)
    w[1] = value
    with pytest.raises(ValueError, match=match):
        KMeans(2, device=device).fit(
            as_kind(GOOD, kind, device), sample_weight=as_kind(w, kind, device)
        )


@pytest.mark.parametrize("kind", KINDS)
def test_all_zero_sample_weight(kind, device):
    with pytest.raises(ValueError, match="sums to zero"):
        KMeans(2, device=device).fit(
            as_kind(GOOD, kind, device), sample_weight=as_kind(np.zeros(5), kind, device)
        )


def test_non_numeric_sample_weight(device):
    with pytest.raises(ValueError, match="sample_weight must be numeric"):
        KMeans(2, device=device).fit(GOOD, sample_weight=["a"] * 5)


# -- fitted-state errors ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_not_fitted(kind, method, device):
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(KMeans(2, device=device), method)(as_kind(GOOD, kind, device))


@pytest.mark.parametrize("fit_kind", KINDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_wrong_number_of_features_after_fit(fit_kind, kind, method, device):
    km = KMeans(2, random_state=0, device=device).fit(as_kind(GOOD, fit_kind, device))
    with pytest.raises(ValueError, match=r"X has 3 features, but KMeans is expecting 2"):
        getattr(km, method)(as_kind(np.zeros((4, 3)), kind, device))


@pytest.mark.parametrize("kind", KINDS)
def test_predict_with_nan_after_fit(kind, device):
    km = KMeans(2, random_state=0, device=device).fit(GOOD)
    X = GOOD.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        km.predict(as_kind(X, kind, device))


def test_unsupported_tensor_layout(device):
    X = torch.tensor(GOOD).to_sparse_csc()
    with pytest.raises(TypeError, match="layout"):
        KMeans(2).fit(X)


@pytest.mark.parametrize("weight", [np.nan, np.inf, 0.0, -1.0, 1e300])
def test_scalar_sample_weight_is_checked_as_an_array(weight):
    # A scalar used to skip the checks: NaN or 0 gave NaN centers.
    with pytest.raises(ValueError, match="sample_weight"):
        KMeans(2, random_state=0).fit(GOOD.astype(np.float32), sample_weight=weight)
    km = KMeans(2, random_state=0).fit(GOOD, sample_weight=2.5)
    assert np.isfinite(km.cluster_centers_).all()
    assert km.inertia_ == pytest.approx(2.5 * KMeans(2, random_state=0).fit(GOOD).inertia_)


@pytest.mark.parametrize(("dtype", "n_clusters", "ok"), [
    (np.int8, 128, True), (np.int8, 129, False), (np.uint8, 256, True), (np.uint8, 257, False),
    (np.int16, 300, True), (np.float32, 2, False), (np.bool_, 2, False),
])
def test_predict_out_must_hold_every_label(dtype, n_clusters, ok):
    X = np.random.default_rng(0).normal(size=(2 * n_clusters, 2))
    km = KMeans(n_clusters, init=X[:n_clusters], n_init=1, max_iter=1).fit(X)
    out = np.zeros(len(X), dtype=dtype)
    if ok:
        np.testing.assert_array_equal(km.predict(X, out=out), km.predict(X))
    else:
        with pytest.raises(ValueError, match="out"):
            km.predict(X, out=out)
        assert not out.any()  # nothing written, nothing wrapped


def test_predict_out_tensor_dtype_is_checked():
    X = torch.randn(300, 2)
    km = KMeans(200, random_state=0, max_iter=2).fit(X)
    with pytest.raises(ValueError, match="holds labels up to 127"):
        km.predict(X, out=torch.zeros(300, dtype=torch.int8))
    assert torch.equal(km.predict(X, out=torch.zeros(300, dtype=torch.int16)), km.predict(X))


@pytest.mark.parametrize(("params", "message"), [
    ({"random_state": 2**70}, "'random_state' parameter of KMeans must be an int in the range"),
    ({"random_state": -1}, "'random_state' parameter of KMeans must be an int in the range"),
    ({"tol": -1e-3}, "'tol' parameter of KMeans must be a float in the range"),
    ({"tol": float("nan")}, "'tol' parameter"),
    ({"copy_x": "yes"}, "'copy_x' parameter of KMeans must be an instance of 'bool'"),
    ({"verbose": -1}, "'verbose' parameter"),
    ({"n_clusters": 2.0}, "'n_clusters' parameter of KMeans must be an int"),
    ({"max_iter": np.int64(0)}, "'max_iter' parameter"),
    ({"algorithm": "fast"}, "'algorithm' parameter of KMeans must be a str among"),
    ({"checkpoint_every": 0}, "'checkpoint_every' parameter"),
])
def test_parameters_are_validated_as_scikit_learn_does(params, message):
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=message):
        KMeans(**{"n_clusters": 2, **params}).fit(GOOD)


def test_numpy_integers_are_accepted_as_counts():
    km = KMeans(np.int64(2), n_init=np.int32(2), max_iter=np.int16(50), random_state=np.int64(3))
    assert km.fit(GOOD).cluster_centers_.shape == (2, 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_absent_device_is_named():
    for estimator in (KMeans(2, device="cuda"), KMeans(2, device="cuda:3")):
        with pytest.raises(ValueError, match=r"device='cuda(:3)?': CUDA is not available"):
            estimator.fit(GOOD)
    with pytest.raises(ValueError, match="device='nope' is not a torch device"):
        kmeans(GOOD, 2, device="nope")


@pytest.mark.parametrize(("shape", "message"), [
    ((3, 2), "does not match the number of clusters 2"),
    ((2, 3), "does not match the number of features of the data 2"),
])
def test_init_shape_messages_are_scikit_learns(shape, message):
    for estimator in (KMeans, torchmeans.MiniBatchKMeans):
        expected = re.escape(f"The shape of the initial centers {shape} {message}.")
        with pytest.raises(ValueError, match=expected):
            estimator(2, init=np.zeros(shape), n_init=1).fit(GOOD)


@pytest.mark.parametrize(("dtype", "scale"), [(np.float64, 1e160), (np.float32, 1e19)])
def test_values_whose_distances_overflow_are_refused(dtype, scale):
    # They used to give one cluster holding every row and an infinite inertia.
    X = (np.random.default_rng(0).normal(size=(50, 3)) * scale).astype(dtype)
    for fit in (lambda: KMeans(3, random_state=0).fit(X),
                lambda: torchmeans.MiniBatchKMeans(3, random_state=0).fit(X),
                lambda: kmeans(X, 3, random_state=0)):
        with pytest.raises(ValueError, match="too large for float"):
            fit()
    model = KMeans(3, random_state=0).fit(X / scale)
    for method in (model.predict, model.transform, model.score):
        with pytest.raises(ValueError, match="too large for float"):
            method(X)


def test_weights_whose_inertia_overflows_are_refused():
    with pytest.raises(ValueError, match="sample_weight is too large"):
        KMeans(2, random_state=0).fit(GOOD * 1e150, sample_weight=np.full(len(GOOD), 1e300))


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


def test_batches_source_counts_its_rows():
    X = np.ones((30, 2))
    source = sources.from_batches([X[:10], X[10:]])
    assert source.n_samples is None
    KMeans(1, n_init=1).fit(source)
    assert source.n_samples == 30


@pytest.mark.parametrize("n_local_trials", [0, -1, 1.5])
def test_kmeans_plusplus_rejects_bad_trials(n_local_trials):
    with pytest.raises(ValueError, match="n_local_trials"):
        kmeans_plusplus(np.random.default_rng(0).normal(size=(20, 2)), 3,
                        n_local_trials=n_local_trials)
