"""Hypothesis properties over hostile inputs: a clean exception or a valid result, nothing else.

Run by ``tests/test_hostile_inputs.py`` in a child process (``python _hostile_inputs.py
NAME``), so that a crash of the native kernel fails the test instead of killing pytest.
Each property draws data (shapes from empty to small, every dtype numpy and torch have,
NaN, infinities, huge and tiny values, C/Fortran/strided/sparse layouts), parameters,
weights and inits, and calls the public API. The call must either raise ``ValueError`` or
``TypeError`` (scikit-learn's ``InvalidParameterError`` is both) or return a result that
holds: finite centers of the right shape, labels in ``[0, k)``, a finite inertia, and
``labels_`` equal to ``predict(X)``.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchmeans

CLEAN = (ValueError, TypeError)
"""What a refused input may raise (``ModelFileError`` and ``InvalidParameterError`` included)."""

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 3e38, 1e-320, -0.0, 0.0, 1.0, 1e19]

NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_,
                np.complex128, object]
TORCH_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                torch.uint8, torch.bool, torch.complex64]


def refused(error):
    """Whether ``error`` is a clean refusal: raised by the checks, not by the kernel's guard.

    The native bindings' own checks (``ops/_native.py``) are the last line of defence:
    an input that reaches them slipped past validation, which is a failure here.
    """
    origin = traceback.extract_tb(error.__traceback__)[-1].filename
    assert not origin.endswith("_native.py"), f"caught only at the kernel's boundary: {error}"
    return True


@st.composite
def matrices(draw, hostile=True, n_features=None):
    """A 2-D (or, hostile, not) array-like of any dtype, layout and content.

    Not ``hostile``: 4 to 30 rows of 1 to 5 finite float features (any layout), data
    that a fit must accept. ``n_features`` fixes the width of benign data.
    """
    n = draw(st.integers(0, 30) if hostile else st.integers(4, 30))
    d = draw(st.integers(0, 5) if hostile else (
        st.just(n_features) if n_features else st.integers(1, 5)))
    ndim = draw(st.sampled_from([2] * 8 + [1, 3])) if hostile else 2
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.normal(scale=draw(st.sampled_from([1.0, 1e-3, 1e6, 1e15])), size=(n, d))
    for _ in range(draw(st.integers(0, 2)) if hostile else 0):  # a few special values
        if n and d:
            values[rng.integers(n), rng.integers(d)] = draw(st.sampled_from(SPECIAL))
    if draw(st.booleans()) and n > 1:  # duplicate rows
        values[n // 2:] = values[0]
    kind = draw(st.sampled_from(["numpy", "fortran", "strided", "torch", "csr", "list"]))
    if ndim != 2:
        values = values.reshape(-1) if ndim == 1 else values.reshape(n, d, 1)
    if kind == "torch":
        dtype = draw(st.sampled_from(TORCH_DTYPES if hostile else TORCH_DTYPES[:2]))
        tensor = torch.from_numpy(np.real(values).astype(np.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tensor.to(dtype) if not dtype.is_complex else tensor.to(dtype) * 1j
    dtype = draw(st.sampled_from(NUMPY_DTYPES if hostile else NUMPY_DTYPES[:2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casts of inf/nan to integers
        array = values.astype(dtype) if dtype is not object else values.astype(str)
    if kind == "fortran":
        return np.asfortranarray(array)
    if kind == "strided" and array.ndim == 2:
        return np.repeat(array, 2, axis=1)[:, ::2]
    if kind == "csr" and array.ndim == 2 and dtype is not object:
        try:
            return sp.csr_matrix(array)
        except (TypeError, ValueError):
            return array
    if kind == "list":
        return array.tolist()
    return array


def weights(n, hostile=True):
    good = st.lists(st.sampled_from([0.0, 1.0, 2.5, 1e-3]), min_size=n, max_size=n).map(
        lambda w: np.array([1.0, *w[1:]]) if w else np.array(w))
    if not hostile:
        return st.none() | good | st.just(2.0)
    return st.one_of(
        st.sampled_from([np.nan, np.inf, 0.0, -1.0, 2.0, 1e300, True]),
        st.lists(st.sampled_from([0.0, 1.0, 2.5, -1.0, np.nan, np.inf, 1e300, 1e-300]),
                 min_size=max(n - 1, 0), max_size=n + 1).map(np.array),
    )


def inits(k, d, hostile=True):
    def wrong_shape(X, n_clusters, random_state):
        return np.zeros((n_clusters + 1, d))

    if not hostile:
        return st.sampled_from(["k-means++", "random", "k-means||"])
    return st.one_of(
        st.sampled_from(["k-means++", "random", "k-means||", "bogus", wrong_shape]),
        st.builds(lambda r, c, bad: np.where(bad, np.nan, np.random.default_rng(0).normal(
            size=(r, c))), st.sampled_from([k, k + 1, max(k - 1, 0)]),
                  st.sampled_from([d, d + 1]), st.booleans()),
    )


def n_samples_of(X):
    try:
        return X.shape[0]
    except AttributeError:
        return len(X)


def n_features_of(X):
    shape = getattr(X, "shape", None)
    if shape is None:
        return len(X[0]) if len(X) and hasattr(X[0], "__len__") else 0
    return shape[1] if len(shape) > 1 else 0


def check_fitted(estimator, X, n_clusters):
    """A fit that succeeded must hold."""
    centers = np.asarray(torch.as_tensor(estimator.cluster_centers_).float().cpu())
    assert centers.shape == (n_clusters, n_features_of(X)), centers.shape
    assert np.isfinite(centers).all(), centers
    assert np.isfinite(estimator.inertia_), estimator.inertia_
    assert estimator.inertia_ >= 0, estimator.inertia_
    labels = np.asarray(torch.as_tensor(estimator.labels_).cpu())
    assert labels.shape == (n_samples_of(X),)
    assert labels.min() >= 0
    assert labels.max() < n_clusters
    predicted = np.asarray(torch.as_tensor(estimator.predict(X)).cpu())
    np.testing.assert_array_equal(predicted, labels)


@SETTINGS
@given(data=st.data())
def fits(data):
    # each part hostile one time in four: a third of the fits get valid input throughout
    hostile = {part: data.draw(st.sampled_from([False, False, False, True]))
               for part in ("X", "k", "init", "weight")}
    X = data.draw(matrices(hostile["X"]))
    n = n_samples_of(X)
    k = data.draw(st.sampled_from([5, 40, 0, -1, 2.5, True, None, "3", np.int64(2)])
                  if hostile["k"] else st.integers(1, 4))
    kk = k if isinstance(k, int | np.integer) and not isinstance(k, bool) and k > 0 else 2
    params = {
        "init": data.draw(inits(kk, max(n_features_of(X), 1), hostile["init"])),
        "sample_weight": data.draw(weights(n, hostile["weight"])),
    }
    which = data.draw(st.sampled_from(["lloyd", "elkan", "hamerly", "yinyang", "auto",
                                       "minibatch", "functional"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if which == "functional":
                result = torchmeans.kmeans(X, k, init=params["init"], max_iter=20,
                                           sample_weight=params["sample_weight"],
                                           random_state=0)
            elif which == "minibatch":
                estimator = torchmeans.MiniBatchKMeans(k, init=params["init"], random_state=0,
                                                       batch_size=8, max_iter=5)
                estimator.fit(X, sample_weight=params["sample_weight"])
            else:
                estimator = torchmeans.KMeans(k, init=params["init"], algorithm=which,
                                              random_state=0, max_iter=20)
                estimator.fit(X, sample_weight=params["sample_weight"])
        except CLEAN as error:
            refused(error)
            return
        if which == "functional":
            assert torch.isfinite(result.centers).all()
            assert np.isfinite(result.inertia)
            assert result.labels.min() >= 0
            assert result.labels.max() < k
            return
        check_fitted(estimator, X, k)


@SETTINGS
@given(data=st.data())
def predictions(data):
    """A fitted model meets hostile new data in predict, transform, score and out=."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    d = data.draw(st.integers(1, 4))
    train = rng.normal(size=(40, d))
    model = data.draw(st.sampled_from(["kmeans", "minibatch", "tensor", "cosine"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model == "minibatch":
            estimator = torchmeans.MiniBatchKMeans(3, random_state=0).fit(train)
        elif model == "tensor":
            estimator = torchmeans.KMeans(3, random_state=0).fit(torch.from_numpy(train))
        else:
            estimator = torchmeans.KMeans(3, random_state=0,
                                          metric="euclidean" if model == "kmeans" else
                                          "cosine").fit(train)
        X = data.draw(matrices(data.draw(st.booleans())))
        method = data.draw(st.sampled_from(["predict", "transform", "score", "out"]))
        try:
            if method == "out":
                out = np.zeros(n_samples_of(X), dtype=data.draw(st.sampled_from(
                    [np.int64, np.int8, np.uint8, np.float32])))
                result = estimator.predict(X, out=out)
            else:
                result = getattr(estimator, method)(X)
        except CLEAN as error:
            refused(error)
            return
    values = np.asarray(torch.as_tensor(result).double().cpu()) if not isinstance(
        result, float) else np.array(result)
    assert np.isfinite(values).all(), values
    if method in ("predict", "out"):
        assert values.shape == (n_samples_of(X),)
        assert ((values >= 0) & (values < 3)).all()
    if method == "transform":
        assert values.shape == (n_samples_of(X), 3)
        assert (values >= 0).all()


@SETTINGS
@given(data=st.data())
def partial_fits(data):
    """Batches of hostile data fed to partial_fit one after another."""
    estimator = torchmeans.MiniBatchKMeans(3, random_state=0)
    fitted = False
    for _ in range(data.draw(st.integers(1, 4))):
        hostile = data.draw(st.sampled_from([False, False, True]))
        # after the first batch, benign batches have the fitted width (hostile ones any)
        X = data.draw(matrices(hostile, getattr(estimator, "n_features_in_", None)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                estimator.partial_fit(X, sample_weight=data.draw(weights(n_samples_of(X),
                                                                         hostile)))
                fitted = True
            except CLEAN as error:
                refused(error)
                continue
        centers = np.asarray(torch.as_tensor(estimator.cluster_centers_).double().cpu())
        assert centers.shape[0] == 3
        assert np.isfinite(centers).all(), centers
    if fitted:
        assert estimator.n_steps_ >= 1


PROPERTIES = {"fits": fits, "predictions": predictions, "partial_fits": partial_fits}

if __name__ == "__main__":
    PROPERTIES[sys.argv[1]]()
