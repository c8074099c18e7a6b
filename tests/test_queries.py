"""Queries of a fitted model: kneighbors, soft_assign and to_faiss, against float64 oracles."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax
from sklearn.exceptions import NotFittedError

from _helpers import blob_data, sq_distances, to_numpy
from torchmeans import KMeans, MiniBatchKMeans, sources

ROOT = Path(__file__).resolve().parents[1]
K = 7


def oracle(X, centers, m):
    """Brute-force float64 squared distances, and the ``m`` nearest (stable: lower index first)."""
    d = sq_distances(X, centers)
    order = np.argsort(d, axis=1, kind="stable")[:, :m]
    return np.take_along_axis(d, order, axis=1), order, d


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(400, 5)) * rng.uniform(0.5, 3.0, size=5)


@pytest.fixture(scope="module")
def model(data):
    return KMeans(K, random_state=0, n_init=1).fit(data)


def cosine_oracle(X, centers, m):
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    d = 1.0 - unit @ (centers / np.linalg.norm(centers, axis=1, keepdims=True)).T
    order = np.argsort(d, axis=1, kind="stable")[:, :m]
    return np.take_along_axis(d, order, axis=1), order, d


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("m", [1, 3, K])
def test_kneighbors_equals_the_oracle(data, backend, m):
    km = KMeans(K, random_state=0, n_init=1, backend=backend).fit(data)
    distances, indices = km.kneighbors(data, n_neighbors=m)
    sq, order, _ = oracle(data, km.cluster_centers_, m)
    assert distances.shape == indices.shape == (len(data), m)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(distances, np.sqrt(sq), rtol=1e-10, atol=1e-12)
    assert (np.diff(distances, axis=1) >= 0).all()
    np.testing.assert_array_equal(km.kneighbors(data, m, return_distance=False), indices)
    np.testing.assert_allclose(np.take_along_axis(km.transform(data), indices, 1), distances,
                               rtol=1e-12, atol=1e-12)


def test_default_is_every_center_sorted(model, data):
    indices = model.kneighbors(data, return_distance=False)
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.tile(np.arange(K), (len(data), 1)))
    np.testing.assert_array_equal(indices, oracle(data, model.cluster_centers_, K)[1])


def kinds(X, tmp_path):
    """The same rows as each input kind ``predict`` takes."""
    np.save(tmp_path / "rows.npy", X)
    return {
        "numpy": X,
        "tensor": torch.from_numpy(X),
        "sparse": sp.csr_matrix(X),
        "list": X.tolist(),
        "source": sources.from_array(X),
        "npy": sources.from_npy(tmp_path / "rows.npy"),
        "memmap": np.load(tmp_path / "rows.npy", mmap_mode="r"),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("estimator", [KMeans, MiniBatchKMeans])
def test_nearest_is_predict_on_every_input_kind(data, tmp_path, dtype, estimator):
    X = data.astype(dtype)
    km = estimator(K, random_state=0, n_init=1).fit(X)
    expected_d, expected_i = km.kneighbors(X, 4)
    for name, rows in kinds(X, tmp_path).items():
        distances, indices = km.kneighbors(rows, 4)
        labels = to_numpy(km.predict(rows))
        np.testing.assert_array_equal(to_numpy(indices)[:, 0], labels, err_msg=name)
        np.testing.assert_array_equal(to_numpy(indices), expected_i, err_msg=name)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(to_numpy(distances), expected_d, rtol=rtol, atol=rtol,
                                   err_msg=name)
        assert to_numpy(distances).dtype == (np.float64 if name == "list" else dtype), name
        if name == "tensor":
            assert isinstance(distances, torch.Tensor)
            assert indices.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensors_on_the_device_under_test(data, device, dtype):
    if dtype == torch.float64 and device.type == "mps":
        pytest.skip("MPS has no float64")
    X = torch.from_numpy(data).to(device, dtype)
    km = KMeans(K, random_state=0, n_init=1).fit(X)
    distances, indices = km.kneighbors(X, 3)
    assert distances.device == indices.device == X.device
    assert distances.dtype == dtype
    torch.testing.assert_close(indices[:, 0], km.predict(X), rtol=0, atol=0)
    proba = km.soft_assign(X, n_neighbors=3)
    assert proba.device == X.device
    torch.testing.assert_close(proba.sum(dim=1), torch.ones(len(X), dtype=dtype, device=device))
    sq, order, _ = oracle(data, to_numpy(km.cluster_centers_), 3)
    if dtype == torch.float64:
        np.testing.assert_array_equal(to_numpy(indices), order)
    np.testing.assert_allclose(to_numpy(distances), np.sqrt(sq), rtol=1e-4, atol=1e-4)


def test_ties_go_to_the_lower_index(data, model):
    km = KMeans(K, random_state=0, n_init=1).fit(data)
    centers = km.cluster_centers_.copy()
    centers[4] = centers[1]
    centers[6] = centers[1]
    centers[5] = centers[2]
    km.cluster_centers_ = centers
    for m in (1, 2, 3, 5, K):
        indices = km.kneighbors(data, m, return_distance=False)
        order = oracle(data, centers, m)[1]
        np.testing.assert_array_equal(indices, order)
        np.testing.assert_array_equal(indices[:, 0], km.predict(data))
    # An exact tie at the m-th place keeps the lower index (1, not 4 or 6).
    rows = centers[[1]] + 1e-3
    assert km.kneighbors(rows, 1, return_distance=False).tolist() == [[1]]
    assert km.kneighbors(rows, 2, return_distance=False).tolist() == [[1, 4]]


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_between_two_centers(data, backend, dtype):
    # Midpoints are ties in exact arithmetic that rounding splits either way: predict's label
    # still comes first and the distances stay ascending.
    km = KMeans(K, random_state=0, n_init=1, backend=backend).fit(data.astype(dtype))
    c = km.cluster_centers_
    first, second = np.triu_indices(K, 1)
    rows = ((c[first] + c[second]) / 2).astype(dtype)
    distances, indices = km.kneighbors(rows, 3)
    np.testing.assert_array_equal(indices[:, 0], km.predict(rows))
    assert (np.diff(distances, axis=1) >= 0).all()
    d = sq_distances(rows, c)
    pair = np.stack([first, second], axis=1)
    d[np.arange(len(rows))[:, None], pair] = np.inf
    alone = d.min(axis=1) > 1.01 * sq_distances(rows, c)[np.arange(len(rows)), first]
    assert alone.sum() > 5  # midpoints whose two centers are the nearest two
    np.testing.assert_array_equal(np.sort(indices[alone, :2], axis=1), pair[alone])


def test_tiny_chunks_give_identical_results(data):
    km = KMeans(K, random_state=0, n_init=1).fit(data)
    distances, indices = km.kneighbors(data, 3)
    proba = km.soft_assign(data, n_neighbors=3)
    km.set_params(chunk_bytes=1 << 10)
    small_d, small_i = km.kneighbors(data, 3)
    np.testing.assert_array_equal(small_i, indices)
    np.testing.assert_allclose(small_d, distances, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(km.soft_assign(data, n_neighbors=3), proba, rtol=1e-13,
                               atol=1e-15)


def test_rows_equal_to_centers_are_at_zero(model):
    distances, indices = model.kneighbors(model.cluster_centers_, 2)
    np.testing.assert_array_equal(indices[:, 0], np.arange(K))
    np.testing.assert_array_equal(distances[:, 0], 0.0)


def test_sparse_rows(rng):
    X = sp.random(300, 12, density=0.3, format="csr", random_state=0)
    km = KMeans(5, random_state=0, n_init=1).fit(X)
    distances, indices = km.kneighbors(X, 5)
    sq, order, _ = oracle(X.toarray(), km.cluster_centers_, 5)
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(distances, np.sqrt(sq), rtol=1e-10, atol=1e-12)


def test_cosine_distances_are_those_of_transform(data):
    km = KMeans(K, metric="cosine", random_state=0, n_init=1).fit(data)
    distances, indices = km.kneighbors(data, 3)
    d, order, full = cosine_oracle(data, km.cluster_centers_, 3)
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(distances, d, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(km.transform(data), indices, 1), distances,
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(km.soft_assign(data, temperature=0.1),
                               softmax(-full / 0.1, axis=1), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("temperature", [0.05, 1.0, 30.0])
def test_soft_assignments_equal_the_oracle_softmax(data, model, temperature):
    proba = model.soft_assign(data, temperature=temperature)
    full = oracle(data, model.cluster_centers_, K)[2]
    assert proba.shape == (len(data), K)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba, softmax(-full / temperature, axis=1), rtol=1e-9,
                               atol=1e-15)
    np.testing.assert_allclose(model.soft_assign(data, temperature=temperature, n_neighbors=K),
                               proba, rtol=1e-10, atol=1e-15)


def test_soft_assignments_on_the_nearest_centers_only(data, model):
    proba = model.soft_assign(data, temperature=2.0, n_neighbors=3)
    sq, order, _ = oracle(data, model.cluster_centers_, 3)
    expected = np.zeros((len(data), K))
    np.put_along_axis(expected, order, softmax(-sq / 2.0, axis=1), axis=1)
    np.testing.assert_allclose(proba, expected, rtol=1e-9, atol=1e-15)
    assert ((proba > 0).sum(axis=1) == 3).all()
    np.testing.assert_array_equal(model.soft_assign(data, n_neighbors=1),
                                  np.eye(K)[model.predict(data)])


def test_soft_assignments_are_stable_far_away(model):
    far = model.cluster_centers_[:3] * 1e6  # squared distances ~1e12: exp underflows unshifted
    proba = model.soft_assign(far, temperature=1e-3)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    tensor = model.soft_assign(torch.from_numpy(far).float())
    assert isinstance(tensor, torch.Tensor)
    assert tensor.dtype == torch.float32


def test_no_predict_proba():
    # scikit-learn's checks and tools take predict_proba for a classifier's (soft_assign instead)
    assert not hasattr(KMeans(), "predict_proba")
    assert not hasattr(MiniBatchKMeans(), "predict_proba")


@pytest.mark.parametrize("bad", [0, K + 1, -1, 2.5, True, "3", np.float64(2.0)])
def test_bad_n_neighbors(model, data, bad):
    with pytest.raises(ValueError, match=r"n_neighbors must be an integer in \[1, n_clusters=7\]"):
        model.kneighbors(data, bad)
    with pytest.raises(ValueError, match="n_neighbors"):
        model.soft_assign(data, n_neighbors=bad)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "1", True])
def test_bad_temperature(model, data, bad):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        model.soft_assign(data, temperature=bad)


@pytest.mark.parametrize("method", ["kneighbors", "soft_assign", "to_faiss"])
def test_not_fitted(data, method):
    args = () if method == "to_faiss" else (data,)
    with pytest.raises(NotFittedError):
        getattr(KMeans(3), method)(*args)


def test_wrong_feature_count(model, data):
    with pytest.raises(ValueError, match="X has 4 features"):
        model.kneighbors(data[:, :4], 2)


@given(seed=st.integers(0, 2**16), n=st.integers(1, 60), k=st.integers(1, 9),
       d=st.integers(1, 6), m_fraction=st.floats(0, 1), duplicates=st.booleans(),
       chunk_bytes=st.sampled_from([None, 256, 4096]))
def test_kneighbors_properties(seed, n, k, d, m_fraction, duplicates, chunk_bytes):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(max(n, k), d))
    km = KMeans(k, random_state=0, n_init=1, max_iter=5, chunk_bytes=chunk_bytes).fit(X)
    if duplicates and k > 1:
        centers = km.cluster_centers_.copy()
        centers[-1] = centers[0]
        km.cluster_centers_ = centers
    m = 1 + int(m_fraction * (k - 1))
    Q = np.concatenate([X, km.cluster_centers_, rng.normal(size=(n, d)) * 10])
    distances, indices = km.kneighbors(Q, m)
    np.testing.assert_array_equal(indices[:, 0], km.predict(Q))
    assert (np.diff(distances, axis=1) >= 0).all()
    assert all(len(set(row)) == m for row in indices.tolist())
    np.testing.assert_array_equal(indices, oracle(Q, km.cluster_centers_, m)[1])
    proba = km.soft_assign(Q, n_neighbors=m)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


# -- FAISS --------------------------------------------------------------------------------


def test_to_faiss_flat_l2_gives_predict():
    faiss = pytest.importorskip("faiss")
    X, _ = blob_data(2_000, 16, 12, dtype=np.float32)
    km = KMeans(12, random_state=0, n_init=1).fit(X)
    centers = km.cluster_centers_.copy()
    index = km.to_faiss()
    assert isinstance(index, faiss.IndexFlatL2)
    assert index.ntotal == 12
    assert index.d == 16
    distances, labels = index.search(X, 1)
    np.testing.assert_array_equal(labels[:, 0], km.predict(X))
    np.testing.assert_allclose(distances[:, 0], km.kneighbors(X, 1)[0][:, 0] ** 2, rtol=1e-3,
                               atol=1e-3)
    np.testing.assert_array_equal(km.cluster_centers_, centers)


def test_to_faiss_cosine_is_inner_product_on_unit_centers():
    faiss = pytest.importorskip("faiss")
    X, _ = blob_data(2_000, 16, 12, dtype=np.float32)
    km = KMeans(12, metric="cosine", random_state=0, n_init=1).fit(X)
    centers = km.cluster_centers_.copy()
    index = km.to_faiss()
    assert isinstance(index, faiss.IndexFlatIP)
    assert index.ntotal == 12
    stored = index.reconstruct_n(0, 12)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-6)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    similarity, labels = index.search(unit, 1)
    np.testing.assert_array_equal(labels[:, 0], km.predict(X))
    np.testing.assert_allclose(1 - similarity[:, 0], km.kneighbors(X, 1)[0][:, 0], atol=1e-5)
    np.testing.assert_array_equal(km.cluster_centers_, centers)  # normalised a copy


def test_to_faiss_without_faiss_names_the_extra(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r'pip install "torchmeans\[faiss\]"'):
        model.to_faiss()


def test_faiss_ivf_example_runs_quick():
    pytest.importorskip("faiss")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "faiss_ivf.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recall@10" in proc.stdout
