"""Public surface: imports, parameters, cloning, pickling."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone

import torchmeans
from _helpers import random_row_data, to_numpy
from torchmeans import (
    IterationStats,
    KMeans,
    KMeansResult,
    MiniBatchKMeans,
    kmeans,
    kmeans_plusplus,
)

PARAMS = {
    "n_clusters": 8,
    "init": "k-means++",
    "n_init": "auto",
    "max_iter": 300,
    "tol": 1e-4,
    "verbose": 0,
    "random_state": None,
    "copy_x": True,
    "algorithm": "lloyd",
    "backend": "auto",
    "metric": "euclidean",
    "oversampling_factor": 2.0,
    "init_rounds": None,
    "checkpoint": None,
    "checkpoint_every": None,
    "distributed": None,
    "device": None,
    "chunk_bytes": None,
    "init_size": None,
    "precision": "exact",
    "deterministic": True,
    "max_samples_per_cluster": None,
}


def test_import_does_not_load_matplotlib():
    code = "import torchmeans, sys; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_fit_emits_no_warnings(layout):
    # A fresh interpreter: torch emits some warnings only once per process.
    make = {
        "dense": "np.random.default_rng(0).normal(size=(60, 5))",
        "sparse": "sp.random(60, 5, density=0.5, format='csr', random_state=0)",
    }[layout]
    code = (
        "import numpy as np, scipy.sparse as sp; from torchmeans import KMeans; "
        f"X = {make}; km = KMeans(3, random_state=0, device='cpu').fit(X); "
        "km.predict(X); km.transform(X); km.score(X)"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_all_is_small_and_exists():
    assert len(torchmeans.__all__) <= 13  # a small API: estimators, functions, load
    assert len(set(torchmeans.__all__)) == len(torchmeans.__all__)
    for name in torchmeans.__all__:
        assert hasattr(torchmeans, name), name
    for name in ("KMeans", "kmeans", "kmeans_plusplus", "KMeansResult", "IterationStats"):
        assert name in torchmeans.__all__
    assert isinstance(torchmeans.__version__, str)
    assert torchmeans.__version__


def test_default_params_match_signature():
    assert KMeans().get_params() == PARAMS


def test_get_set_params_round_trip():
    km = KMeans()
    new = dict(
        n_clusters=3,
        init="random",
        n_init=4,
        max_iter=50,
        tol=0.0,
        verbose=1,
        random_state=5,
        copy_x=False,
        algorithm="elkan",
        device="cpu",
        chunk_bytes=4096,
        init_size=100,
        backend="torch",
        metric="cosine",
        oversampling_factor=3.0,
        init_rounds=2,
        checkpoint="state.safetensors",
        checkpoint_every=3,
        distributed=False,
        precision="fast",
        deterministic=False,
        max_samples_per_cluster=64,
    )
    assert km.set_params(**new) is km
    assert km.get_params() == new
    assert KMeans(**new).get_params() == new
    with pytest.raises(ValueError, match="Invalid parameter"):
        km.set_params(n_cluster=3)
    other = clone(km)
    assert other is not km
    assert other.get_params() == new


def test_repr_shows_changed_params():
    assert repr(KMeans(n_clusters=3, random_state=0)) == "KMeans(n_clusters=3, random_state=0)"


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_pickle_round_trip(kind, device):
    X, _ = random_row_data(500, 4, 5, 5, seed=0)
    data = torch.tensor(X, device=device) if kind == "torch" else X
    km = KMeans(5, random_state=0, device=device).fit(data)
    again = pickle.loads(pickle.dumps(km))
    assert again.get_params() == km.get_params()
    new = np.random.default_rng(1).normal(scale=10, size=(200, 4))
    new_data = torch.tensor(new, device=device) if kind == "torch" else new
    np.testing.assert_array_equal(to_numpy(again.predict(new_data)), to_numpy(km.predict(new_data)))
    np.testing.assert_array_equal(
        to_numpy(again.transform(new_data)), to_numpy(km.transform(new_data))
    )
    np.testing.assert_array_equal(to_numpy(again.cluster_centers_), to_numpy(km.cluster_centers_))
    np.testing.assert_array_equal(to_numpy(again.labels_), to_numpy(km.labels_))
    assert again.inertia_ == km.inertia_
    assert again.n_iter_ == km.n_iter_
    assert again.n_iter_history_ == km.n_iter_history_
    assert again.score(new_data) == km.score(new_data)


def test_clone_of_fitted_is_unfitted():
    km = KMeans(2, random_state=0).fit(np.arange(10.0).reshape(5, 2))
    assert not hasattr(clone(km), "cluster_centers_")


def test_fitted_attributes(device):
    X, _ = random_row_data(300, 3, 4, 4, seed=2)
    km = KMeans(4, random_state=0, device=device).fit(X)
    assert km.cluster_centers_.shape == (4, 3)
    assert km.labels_.shape == (300,)
    assert km.n_features_in_ == 3
    assert not hasattr(km, "feature_names_in_")
    assert isinstance(km.n_iter_history_, list)
    assert len(km.n_iter_history_) == km.n_iter_
    assert all(isinstance(s, IterationStats) for s in km.n_iter_history_)
    assert [s.iteration for s in km.n_iter_history_] == list(range(km.n_iter_))
    np.testing.assert_array_equal(km.get_feature_names_out(), [f"kmeans{i}" for i in range(4)])


def test_kmeans_result_fields(device):
    X, _ = random_row_data(200, 2, 3, 3, seed=3)
    result = kmeans(X, 3, random_state=0, device=device)
    assert isinstance(result, KMeansResult)
    assert result._fields == ("centers", "labels", "inertia", "n_iter", "history")
    centers, labels, inertia, n_iter, history = result
    assert centers.shape == (3, 2)
    assert labels.shape == (200,)
    assert isinstance(inertia, float)
    assert n_iter == len(history)
    assert IterationStats._fields == (
        "iteration",
        "inertia",
        "center_shift",
        "n_changed",
        "n_empty",
    )


def test_compute_device_parameter(device):
    X = np.random.default_rng(4).normal(size=(100, 2))
    T = torch.tensor(X, device=device)
    # Outputs stay on the input tensor's device, whatever device computes.
    km = KMeans(3, random_state=0, device=device).fit(T.cpu())
    assert km.cluster_centers_.device.type == "cpu"
    assert km.labels_.device.type == "cpu"
    result = kmeans(X, 3, random_state=0, device=device)
    assert result.centers.device.type == device.type
    centers, indices = kmeans_plusplus(X, 3, random_state=0, device=device)
    assert centers.device.type == indices.device.type == device.type


def test_verbose_prints_scikit_learns_lines_on_stdout(capsys, device):
    X, _ = random_row_data(200, 2, 3, 3, seed=5)
    km = KMeans(3, verbose=1, random_state=0, device=device).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Initialization complete"
    iterations = [line for line in lines if line.startswith("Iteration ")]
    assert len(iterations) == km.n_iter_
    assert iterations[0].startswith("Iteration 0, inertia ")
    assert lines[-1].startswith("Converged at iteration ")
    KMeans(3, verbose=0, random_state=0, device=device).fit(X)
    assert capsys.readouterr().out == ""


def test_verbose_adds_no_logging_handler():
    import logging

    before = list(logging.getLogger("torchmeans").handlers)
    KMeans(2, verbose=1, random_state=0).fit(np.random.default_rng(0).random((20, 2)))
    assert logging.getLogger("torchmeans").handlers == before


def test_threadpoolctl_limits_reach_the_fit():
    # torchmeans computes with torch's intra-op pool and never sets thread counts itself:
    # a threadpoolctl limit around a fit is what the fit runs with.
    from threadpoolctl import threadpool_limits

    seen = []

    def init(X, n_clusters, random_state):
        seen.append(torch.get_num_threads())
        return X[:n_clusters]

    X = np.random.default_rng(0).normal(size=(200, 3))
    with threadpool_limits(limits=1):
        KMeans(3, init=init, n_init=1).fit(X)
        inside = torch.get_num_threads()
    assert seen == [1]
    assert inside == 1


def test_warnings_point_at_the_callers_line():
    import warnings

    X = np.random.default_rng(0).random((20, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        KMeans(1, algorithm="elkan").fit(X)
        KMeans(2, init=X[:2], n_init=3).fit(X)
        MiniBatchKMeans(10, init_size=5).fit(X)
        KMeans(3).fit(np.zeros((10, 2)))
    assert len(caught) == 4
    assert {w.filename for w in caught} == {__file__}


def test_tensor_requiring_grad_is_accepted(device):
    X = torch.randn(200, 3, device=device, requires_grad=True)
    km = KMeans(3, random_state=0).fit(X)
    assert not km.cluster_centers_.requires_grad
    assert torch.equal(km.predict(X), km.labels_)
    assert X.grad is None


def test_user_scipy_csr_arrays_are_not_modified():
    indptr = np.array([0, 3, 5, 7, 9], dtype=np.int32)
    indices = np.array([2, 0, 2, 1, 0, 2, 1, 0, 1], dtype=np.int32)  # unsorted, a duplicate
    data = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    matrix = sp.csr_matrix((data, indices, indptr), shape=(4, 3))
    saved = indptr.copy(), indices.copy(), data.copy()
    KMeans(2, random_state=0, n_init=1).fit(matrix)
    for now, before in zip((indptr, indices, data), saved, strict=True):
        np.testing.assert_array_equal(now, before)


def test_plain_arrays_skip_validate_data_with_the_same_result_and_errors():
    """A C-contiguous float array is taken as it is; anything else goes through check_array."""
    from sklearn import config_context

    X, _ = random_row_data(300, 3, 4, 4, seed=3)
    plain = KMeans(4, random_state=0).fit(X)
    checked = KMeans(4, random_state=0).fit(np.asfortranarray(X))  # validate_data's copy
    np.testing.assert_array_equal(plain.cluster_centers_, checked.cluster_centers_)
    np.testing.assert_array_equal(plain.labels_, checked.labels_)
    assert plain.inertia_ == checked.inertia_
    assert plain.n_features_in_ == 3
    for bad, what in ((np.nan, "NaN"), (np.inf, "infinity")):
        Y = X.copy()
        Y[7, 1] = bad
        with pytest.raises(ValueError, match=f"Input X contains {what}"):
            KMeans(4).fit(Y)
    huge = np.full((10, 2), 1e308)  # finite values whose sum overflows: check_array decides
    with pytest.raises(ValueError, match="too large"):
        KMeans(2).fit(huge)
    with config_context(assume_finite=True):
        assert KMeans(4, random_state=0).fit(X).inertia_ == plain.inertia_


def test_parameter_checks_remembered_only_for_values_that_passed():
    from sklearn.utils._param_validation import InvalidParameterError

    X = np.arange(20.0).reshape(10, 2)
    for _ in range(2):  # the second round meets the remembered values
        KMeans(2, random_state=0, tol=1e-4).fit(X)
        with pytest.raises(InvalidParameterError, match="must be an int, not a bool"):
            KMeans(True).fit(X)  # True == 1, hash(True) == hash(1): still refused
        with pytest.raises(InvalidParameterError, match="'tol' parameter"):
            KMeans(2, tol=-1.0).fit(X)
        with pytest.raises(InvalidParameterError, match="'tol' parameter"):
            kmeans(X, 2, tol=float("nan"))
