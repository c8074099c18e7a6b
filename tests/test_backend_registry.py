"""The backend registry: one object per backend, 'auto' resolved once, predict follows the fit."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from torchmeans import KMeans, load
from torchmeans.backends import (
    BACKENDS,
    REGISTRY,
    get_backend,
    predict_backend,
    resolve_backend,
    seeding_backend,
)
from torchmeans.backends.base import Backend
from torchmeans.backends.native import kernel as _native
from torchmeans.core.assign import assign, chunk_budget
from torchmeans.core.validation import PARAMETER_CONSTRAINTS, make_data, prepare_data

NATIVE = REGISTRY["native"].unsupported(prepare_data(torch.zeros(4, 2), None)) is None


def test_every_backend_is_a_registered_object_named_as_its_key():
    assert set(REGISTRY) == {"torch", "native", "triton"}
    assert ("auto", *REGISTRY) == BACKENDS
    for name, backend in REGISTRY.items():
        assert isinstance(backend, Backend)
        assert backend.name == name
        assert get_backend(name) is backend
    assert list(REGISTRY)[-1] == "torch"  # 'auto' falls back to the reference last
    # the parameter table accepts exactly the registry's names
    options = PARAMETER_CONSTRAINTS["backend"][0].options
    assert set(options) == set(BACKENDS)


def test_the_reference_runs_everywhere_and_auto_always_finds_a_backend():
    sparse = make_data(torch.eye(6).to_sparse_csr(), torch.ones(6))
    dense = make_data(torch.randn(50, 3), torch.ones(50))
    for data in (sparse, dense):
        assert REGISTRY["torch"].unsupported(data) is None
        assert resolve_backend("auto", data, 3, 1 << 24).name in REGISTRY
    assert resolve_backend("auto", sparse, 3, 1 << 24).name == "torch"
    assert "sparse" in REGISTRY["native"].unsupported(sparse)


def test_an_explicit_backend_that_cannot_run_says_why():
    sparse = make_data(torch.eye(6).to_sparse_csr(), torch.ones(6))
    with pytest.raises(ValueError, match="backend='native' cannot run: it needs dense rows"):
        resolve_backend("native", sparse, 3, 1 << 24)


def test_a_stub_backend_plugs_in_by_registration(monkeypatch):
    """A new backend is a subclass and a registry entry: fits and predict then use it."""
    reference = REGISTRY["torch"]
    calls = []

    class Counting(type(reference)):
        name = "counting"

        def lloyd_pass(self, *args, **kwargs):
            calls.append("pass")
            return super().lloyd_pass(*args, **kwargs)

    monkeypatch.setitem(REGISTRY, "counting", Counting())
    X, _ = make_blobs(300, centers=4, random_state=0)
    data = prepare_data(torch.from_numpy(X), None)
    assert resolve_backend("counting", data, 4, 1 << 24).name == "counting"
    assert predict_backend("counting", data).name == "counting"
    from torchmeans.core.lloyd import lloyd

    result = lloyd(data, data.take(torch.arange(4)), backend="counting", max_iter=5)
    assert calls
    assert len(calls) == result.n_iter


@pytest.mark.skipif(not NATIVE, reason="no native kernel")
def test_predict_follows_the_fit_backend_also_after_a_model_file(tmp_path):
    X, _ = make_blobs(2000, centers=6, n_features=5, random_state=1)
    X = X.astype(np.float32)
    for backend in ("torch", "native", "auto"):
        km = KMeans(6, random_state=0, n_init=1, backend=backend).fit(X)
        assert km._fit_backend == ("native" if backend == "auto" else backend)
        np.testing.assert_array_equal(km.predict(X), km.labels_)
        km.save(tmp_path / f"{backend}.safetensors")
        loaded = load(tmp_path / f"{backend}.safetensors")
        assert loaded._fit_backend == km._fit_backend
        np.testing.assert_array_equal(loaded.predict(X), km.labels_)
        np.testing.assert_array_equal(loaded.transform(X), km.transform(X))


def test_predict_on_data_the_fit_backend_cannot_read_uses_the_reference():
    sparse = make_data(torch.eye(6).to_sparse_csr(), torch.ones(6))
    assert predict_backend("native", sparse).name == "torch"
    assert predict_backend(None, sparse).name == "torch"


@pytest.mark.skipif(not NATIVE, reason="no native kernel")
def test_seeding_uses_one_backend_whatever_the_fit_backend():
    X = torch.randn(500, 4, dtype=torch.float64)
    data = prepare_data(X, None)
    assert seeding_backend(data).name == "native"
    seeds = [KMeans(5, random_state=3, n_init=1, max_iter=1, backend=b)._init_centroids(
        X, None, "k-means++", 3, None) for b in ("torch", "native")]
    assert torch.equal(seeds[0], seeds[1])


def test_assign_equals_across_backends_on_this_machine():
    X, _ = make_blobs(3000, centers=8, n_features=12, random_state=2)
    data = prepare_data(torch.from_numpy(X), None)
    centers = data.take(torch.arange(8))
    torch_labels = assign(data, centers, backend=REGISTRY["torch"]).labels
    for name in ("native", "triton"):
        if REGISTRY[name].unsupported(data) is None:
            assert torch.equal(assign(data, centers, backend=REGISTRY[name]).labels,
                               torch_labels)


def test_auto_backend_keeps_accumulators_within_the_budget():
    data = make_data(torch.randn(100, 64), torch.ones(100))
    if _native.available():
        assert resolve_backend("auto", data, 8, chunk_budget(data, None)).name == "native"
    assert resolve_backend("auto", data, 4096, 1 << 16).name == "torch"  # 2 MiB+ of accumulators


def test_native_backend_with_a_bounded_algorithm_is_an_error():
    X = np.random.default_rng(0).normal(size=(200, 3))
    if _native.available():
        with pytest.raises(ValueError, match="backend='native' runs Lloyd passes"):
            KMeans(3, algorithm="hamerly", backend="native").fit(X)
        assert KMeans(3, algorithm="auto", backend="native", random_state=0).fit(X).n_iter_ >= 1
