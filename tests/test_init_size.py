"""``init_size``: k-means++ / random seeding on a uniform subsample of the rows."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_blobs

import torchmeans
from torchmeans.core.functional import resolve_init
from torchmeans.core.validation import make_data, make_generator


def _seeds(X, weight, init, init_size, k=6, seed=0):
    X_tensor = torch.as_tensor(X)
    data = make_data(X_tensor, torch.as_tensor(weight, dtype=X_tensor.dtype), copy=True)
    seed_fn = resolve_init(init, k, X.shape[1], data.acc_dtype, data.device,
                           init_size=init_size)
    return (seed_fn(data, k, make_generator(seed, data.device)) + data.offset).numpy()


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_subsample_seeds_are_rows_with_positive_weight(init):
    X, _ = make_blobs(2000, n_features=3, centers=6, random_state=0)
    weight = np.ones(len(X))
    weight[::2] = 0.0
    centers = _seeds(X, weight, init, init_size=200)
    distances = ((centers[:, None, :] - X[None]) ** 2).sum(-1)
    nearest = distances.argmin(1)
    np.testing.assert_allclose(distances.min(1), 0.0, atol=1e-9)
    assert (weight[nearest] > 0).all()
    assert len(np.unique(nearest)) == len(centers)


def test_init_size_at_least_n_samples_is_the_full_seeding():
    X, _ = make_blobs(500, n_features=4, centers=5, random_state=1)
    full = torchmeans.KMeans(5, random_state=3).fit(X)
    same = torchmeans.KMeans(5, random_state=3, init_size=500).fit(X)
    np.testing.assert_array_equal(full.cluster_centers_, same.cluster_centers_)
    np.testing.assert_array_equal(full.labels_, same.labels_)


def test_subsample_changes_the_seeds_and_is_reproducible():
    X, _ = make_blobs(3000, n_features=2, centers=8, random_state=2)
    weight = np.ones(len(X))
    a = _seeds(X, weight, "k-means++", init_size=100, k=8, seed=5)
    b = _seeds(X, weight, "k-means++", init_size=100, k=8, seed=5)
    full = _seeds(X, weight, "k-means++", init_size=None, k=8, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, full)


def test_init_size_smaller_than_k_still_gives_k_distinct_seeds():
    X, _ = make_blobs(400, n_features=2, centers=10, random_state=3)
    centers = _seeds(X, np.ones(len(X)), "k-means++", init_size=3, k=10)
    assert len(np.unique(centers, axis=0)) == 10


def test_sparse_input_with_init_size():
    X = sp.random(1500, 40, density=0.1, format="csr", random_state=0)
    km = torchmeans.KMeans(4, init_size=200, random_state=0).fit(X)
    assert km.cluster_centers_.shape == (4, 40)
    np.testing.assert_array_equal(km.labels_, km.predict(X))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "100"])
def test_bad_init_size(bad):
    X, _ = make_blobs(100, centers=3, random_state=0)
    with pytest.raises(ValueError, match="init_size"):
        torchmeans.KMeans(3, init_size=bad).fit(X)
