"""Regressions for defects found in review: each test failed before its fix."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans as SKKMeans

from _helpers import to_numpy
from torchmeans import KMeans, kmeans_plusplus
from torchmeans.core.validation import _scipy_to_csr_tensor
from torchmeans.data import SparseData


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_products_do_not_overflow(dtype, device):
    # |x.c| > 65504 overflowed float16 products: centers tied at -inf.
    rng = np.random.default_rng(0)
    true_centers = np.array([[-300.0] * 4, [200.0] * 4, [300.0] * 4])
    X = np.concatenate([c + rng.normal(size=(300, 4)) * 5 for c in true_centers])
    init = true_centers.astype(np.float32)
    ours = KMeans(3, init=torch.tensor(init, device=device), n_init=1).fit(
        torch.tensor(X, device=device).to(dtype)
    )
    ref = SKKMeans(3, init=init.astype(np.float64), n_init=1).fit(
        torch.tensor(X).to(dtype).double().numpy()
    )
    np.testing.assert_array_equal(to_numpy(ours.labels_), ref.labels_)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_centers_are_member_means(dtype, device):
    # The offset used to shift rows and to move centers back must be the same value.
    g = torch.Generator().manual_seed(0)
    X32 = torch.cat([torch.randn(500, 3, generator=g) * 0.3 + 100.3,
                     torch.randn(500, 3, generator=g) * 0.3 + 103.3])
    X = X32.to(dtype).to(device)
    km = KMeans(2, random_state=0).fit(X)
    labels = km.labels_
    members = torch.stack([X[labels == j].double().mean(0) for j in range(2)])
    assert (km.cluster_centers_.double() - members).abs().max().item() < 1e-3


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


def test_half_precision_sparse_tensor_is_accepted():
    X = torch.tensor([[0.0, 1.0], [0.0, 1.1], [5.0, 0.0], [5.1, 0.0]]).to_sparse_csr()
    km = KMeans(2, random_state=0).fit(X.to(torch.float16))
    assert sorted(np.bincount(km.labels_.numpy()).tolist()) == [2, 2]


def test_sparse_tolerance_scale_is_exact_for_large_values():
    rng = np.random.default_rng(0)
    dense = np.zeros((100_000, 4), dtype=np.float32)
    dense[:, 0] = 3e4 + rng.normal(size=100_000)
    data = SparseData(_scipy_to_csr_tensor(sp.csr_array(dense)), torch.ones(100_000))
    expected = dense.astype(np.float64).var(axis=0).mean()
    assert float(data.mean_variance()) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("n_local_trials", [0, -1, 1.5])
def test_kmeans_plusplus_rejects_bad_trials(n_local_trials):
    with pytest.raises(ValueError, match="n_local_trials"):
        kmeans_plusplus(np.random.default_rng(0).normal(size=(20, 2)), 3,
                        n_local_trials=n_local_trials)


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



@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("copy", [True, False])
def test_dense_tolerance_scale_matches_numpy(offset, copy):
    from torchmeans.data import DenseData

    X = np.random.default_rng(3).normal(size=(5000, 7)) * [1, 2, 3, 4, 5, 6, 7] + offset
    data = DenseData(torch.from_numpy(X), torch.ones(5000, dtype=torch.float64),
                     precompute_shift=copy)
    assert float(data.mean_variance()) == pytest.approx(X.var(axis=0).mean(), rel=1e-10)
