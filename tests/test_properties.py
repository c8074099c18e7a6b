"""Property tests (hypothesis): monotone inertia, chunking, row order, seeds, no mutation.

Hypothesis draws shapes, seeds, weights and chunk sizes; the data itself is drawn
from a continuous distribution by NumPy from the drawn seed, so exact distance ties
(where two correct implementations may break a tie differently) do not occur.
"""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _helpers import naive_assign, to_numpy
from torchmeans import KMeans, kmeans, kmeans_plusplus


def problem(seed, n_samples, n_features, n_clusters, weighted, dtype=np.float64):
    rng = np.random.default_rng(seed)
    n_blobs = rng.integers(1, n_clusters + 3)
    means = rng.normal(scale=5.0, size=(n_blobs, n_features))
    X = means[rng.integers(n_blobs, size=n_samples)] + rng.normal(size=(n_samples, n_features))
    init = X[rng.choice(n_samples, n_clusters, replace=False)]
    weight = rng.uniform(0.0, 3.0, n_samples) if weighted else None
    if weight is not None:
        weight[rng.random(n_samples) < 0.1] = 0.0
        weight[0] = 1.0  # positive total
    return X.astype(dtype), init.astype(dtype), weight, rng


def problems_up_to(max_samples, max_features):
    return st.builds(
        problem,
        seed=st.integers(0, 2**32 - 1),
        n_samples=st.integers(5, max_samples),
        n_features=st.integers(1, max_features),
        n_clusters=st.integers(1, 5),
        weighted=st.booleans(),
    )


problems = problems_up_to(150, 12)


def cancellation_scale(X, weight):
    """Size of the terms the norm expansion cancels: rounding slack is relative to this."""
    w = np.ones(len(X)) if weight is None else weight
    return float(w @ ((X - X.mean(axis=0)) ** 2).sum(axis=1)) + 1.0


@given(p=problems)
def test_history_inertia_never_increases(p, device):
    X, init, weight, _ = p
    km = KMeans(len(init), init=init, n_init=1, tol=0.0, device=device).fit(X, sample_weight=weight)
    inertias = [s.inertia for s in km.n_iter_history_]
    assert len(inertias) == km.n_iter_ >= 1
    slack = 1e-10 * cancellation_scale(X, weight)
    for before, after in itertools.pairwise(inertias):
        assert after <= before + slack
    # The final assignment against the final centers is no worse either.
    assert km.inertia_ <= inertias[-1] + slack


@given(p=problems, dtype=st.sampled_from([np.float32, np.float64]))
def test_truncated_fits_never_increase_inertia(p, dtype, device):
    X, init, weight, _ = p
    X, init = X.astype(dtype), init.astype(dtype)
    inertias = [
        KMeans(len(init), init=init, n_init=1, max_iter=m, tol=0.0, device=device)
        .fit(X, sample_weight=weight)
        .inertia_
        for m in (1, 2, 3, 10)
    ]
    slack = (1e-10 if dtype == np.float64 else 1e-4) * cancellation_scale(X, weight)
    for before, after in itertools.pairwise(inertias):
        assert after <= before + slack


@given(p=problems, kind=st.sampled_from(["numpy", "torch"]), copy_x=st.booleans())
def test_labels_equal_predict(p, kind, copy_x, device):
    X, init, weight, _ = p
    if kind == "torch":
        X = torch.tensor(X, device=device)
    km = KMeans(len(init), init=init, n_init=1, copy_x=copy_x, device=device)
    km.fit(X, sample_weight=weight)
    labels = km.predict(X)
    assert type(labels) is type(km.labels_)
    np.testing.assert_array_equal(to_numpy(labels), to_numpy(km.labels_))
    np.testing.assert_array_equal(
        to_numpy(km.fit_predict(X, sample_weight=weight)), to_numpy(labels)
    )


@settings(max_examples=20)
@given(
    p=problems_up_to(80, 8),
    chunk_bytes=st.one_of(st.sampled_from([1, 100, 1000, 10**4]), st.integers(1, 10**8)),
    copy_x=st.booleans(),
)
def test_chunk_size_does_not_change_the_result(p, chunk_bytes, copy_x, device):
    X, init, weight, _ = p
    params = dict(init=init, n_init=1, max_iter=8, copy_x=copy_x, device=device)
    whole = KMeans(len(init), **params).fit(X, sample_weight=weight)
    chunked = KMeans(len(init), chunk_bytes=chunk_bytes, **params).fit(X, sample_weight=weight)
    np.testing.assert_array_equal(chunked.labels_, whole.labels_)
    np.testing.assert_allclose(
        chunked.cluster_centers_, whole.cluster_centers_, rtol=1e-12, atol=1e-12
    )
    assert chunked.n_iter_ == whole.n_iter_
    assert chunked.inertia_ == pytest.approx(whole.inertia_, rel=1e-10, abs=1e-12)
    new = X[::-1] + 0.25
    np.testing.assert_array_equal(chunked.predict(new), whole.predict(new))
    np.testing.assert_allclose(chunked.transform(new), whole.transform(new), rtol=1e-10, atol=1e-10)
    assert chunked.score(new) == pytest.approx(whole.score(new), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("chunk_bytes", [1, 100, 1000, 10**4, 10**6])
def test_chunk_size_sparse_and_seeding(chunk_bytes, device):
    rng = np.random.default_rng(chunk_bytes)
    X = sp.random(60, 20, density=0.2, format="csr", random_state=1)
    init = X[rng.choice(60, 4, replace=False)].toarray()
    whole = KMeans(4, init=init, n_init=1, device=device).fit(X)
    chunked = KMeans(4, init=init, n_init=1, chunk_bytes=chunk_bytes, device=device).fit(X)
    np.testing.assert_array_equal(chunked.labels_, whole.labels_)
    np.testing.assert_allclose(chunked.cluster_centers_, whole.cluster_centers_, rtol=1e-12)
    # k-means++ seeding and a full seeded fit do not depend on the chunk size either.
    dense = rng.normal(size=(100, 5)) + rng.integers(0, 4, size=(100, 1)) * 6
    seeds = kmeans_plusplus(dense, 6, random_state=3, device=device)
    small = kmeans_plusplus(dense, 6, random_state=3, device=device, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(to_numpy(small[1]), to_numpy(seeds[1]))
    a = kmeans(dense, 6, random_state=5, n_init=2, device=device)
    b = kmeans(dense, 6, random_state=5, n_init=2, device=device, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(to_numpy(a.labels), to_numpy(b.labels))
    np.testing.assert_allclose(to_numpy(a.centers), to_numpy(b.centers), rtol=1e-12)


@given(p=problems)
def test_row_order_does_not_matter_for_a_fixed_init(p, device):
    X, init, weight, rng = p
    perm = rng.permutation(len(X))
    a = KMeans(len(init), init=init, n_init=1, device=device).fit(X, sample_weight=weight)
    b = KMeans(len(init), init=init, n_init=1, device=device).fit(
        X[perm], sample_weight=None if weight is None else weight[perm]
    )
    np.testing.assert_array_equal(b.labels_, a.labels_[perm])
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, rtol=1e-9, atol=1e-9)
    assert b.n_iter_ == a.n_iter_
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-9, abs=1e-9)


@given(
    p=problems,
    init=st.sampled_from(["k-means++", "random"]),
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["numpy", "torch"]),
)
def test_same_seed_same_result(p, init, seed, kind, device):
    X, _, weight, _ = p
    if kind == "torch":
        X = torch.tensor(X, device=device)
    k = min(3, len(X))
    fits = [
        KMeans(k, init=init, n_init=2, random_state=seed, device=device).fit(
            X, sample_weight=weight
        )
        for _ in range(2)
    ]
    a, b = fits
    np.testing.assert_array_equal(to_numpy(a.labels_), to_numpy(b.labels_))
    np.testing.assert_array_equal(to_numpy(a.cluster_centers_), to_numpy(b.cluster_centers_))
    assert a.inertia_ == b.inertia_
    assert a.n_iter_ == b.n_iter_
    r1 = kmeans(X, k, init=init, random_state=seed, sample_weight=weight, device=device)
    r2 = kmeans(X, k, init=init, random_state=seed, sample_weight=weight, device=device)
    np.testing.assert_array_equal(to_numpy(r1.centers), to_numpy(r2.centers))
    s1 = kmeans_plusplus(X, k, random_state=seed, sample_weight=weight, device=device)
    s2 = kmeans_plusplus(X, k, random_state=seed, sample_weight=weight, device=device)
    np.testing.assert_array_equal(to_numpy(s1[1]), to_numpy(s2[1]))


@given(p=problems, copy_x=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_inputs_are_not_modified_numpy(p, copy_x, dtype, device):
    X, init, weight, _ = p
    X, init = X.astype(dtype), init.astype(dtype)
    X_before, init_before = X.copy(), init.copy()
    weight_before = None if weight is None else weight.copy()
    km = KMeans(len(init), init=init, n_init=1, copy_x=copy_x, device=device)
    km.fit(X, sample_weight=weight)
    km.predict(X)
    km.transform(X)
    km.score(X, sample_weight=weight)
    kmeans(X, len(init), init=init, n_init=1, copy=copy_x, sample_weight=weight, device=device)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(init, init_before)
    if weight is not None:
        np.testing.assert_array_equal(weight, weight_before)
    # The fitted centers are not a view of the user's init.
    assert not np.shares_memory(km.cluster_centers_, init)


@given(p=problems, copy_x=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_inputs_are_not_modified_torch(p, copy_x, dtype, device):
    X_np, init_np, weight_np, _ = p
    X = torch.tensor(X_np, dtype=dtype, device=device)
    init = torch.tensor(init_np, dtype=dtype, device=device)
    weight = None if weight_np is None else torch.tensor(weight_np, device=device)
    X_before, init_before = X.clone(), init.clone()
    weight_before = None if weight is None else weight.clone()
    km = KMeans(len(init), init=init, n_init=1, copy_x=copy_x).fit(X, sample_weight=weight)
    km.predict(X)
    km.transform(X)
    km.score(X, sample_weight=weight)
    result = kmeans(X, len(init), init=init, n_init=1, copy=copy_x, sample_weight=weight)
    assert torch.equal(X, X_before)
    assert torch.equal(init, init_before)
    if weight is not None:
        assert torch.equal(weight, weight_before)
    assert km.cluster_centers_.data_ptr() != init.data_ptr()
    # Later in-place edits of the results do not reach the inputs either.
    result.centers.add_(1.0)
    km.cluster_centers_.add_(1.0)
    assert torch.equal(X, X_before)
    assert torch.equal(init, init_before)


@given(p=problems)
def test_final_labels_are_nearest_centers(p, device):
    X, _, weight, _ = p
    k = min(4, len(X))
    km = KMeans(k, random_state=0, device=device).fit(X, sample_weight=weight)
    labels, inertia = naive_assign(X, km.cluster_centers_, weight)
    np.testing.assert_array_equal(km.labels_, labels)
    assert km.inertia_ == pytest.approx(inertia, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n_clusters", [1, 3, 32, 33, 200])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), duplicate=st.booleans(), integer=st.booleans())
def test_nearest_centers_with_previous_labels_equals_plain_argmin(
    n_clusters, seed, duplicate, integer
):
    # Both fast paths (first-hit labels on transposed scores; keeping the previous label
    # when it is still the strict minimum) must give exactly torch's first-minimum
    # `min` on the same scores, ties included.
    from torchmeans.backends.torch import (
        SMALL_K,
        center_terms,
        chunk_scores,
        nearest_centers,
        update_nearest,
    )
    from torchmeans.data import DenseData

    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(257, 3, generator=generator, dtype=torch.float64)
    centers = torch.randn(n_clusters, 3, generator=generator, dtype=torch.float64)
    if integer:  # exact ties between distances
        X, centers = X.round(), centers.round()
    if duplicate and n_clusters > 1:
        centers[-1] = centers[0]
    data = DenseData(X, torch.ones(257, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    chunk = next(data.chunks(257))
    terms = center_terms(centers)
    transposed = n_clusters <= SMALL_K
    scores = chunk_scores(data, chunk, terms, transposed=transposed)
    expected_values, expected = scores.min(dim=0 if transposed else 1)
    first_values, first = nearest_centers(data, chunk, terms)
    assert torch.equal(first, expected)
    assert torch.equal(first_values, expected_values)
    previous = torch.randint(0, n_clusters, (257,), generator=generator)
    values, labels = nearest_centers(data, chunk, terms, previous=previous)
    assert torch.equal(labels, expected)
    assert torch.equal(values, expected_values)
    # The in-place variant of the Lloyd loop reports exactly the rows that moved.
    updated = previous.clone()
    buffer = torch.empty(257 * n_clusters, dtype=torch.float64)
    moves = update_nearest(data, chunk, terms, buffer, updated)
    assert torch.equal(updated, expected)
    assert torch.equal(moves.partial_sq_dist, expected_values)
    assert torch.equal(moves.rows, torch.nonzero(previous != expected).squeeze(1))
    assert torch.equal(moves.old, previous[moves.rows])
    assert torch.equal(moves.new, expected[moves.rows])
