"""Reference implementations and data makers shared by the tests (not a test module)."""

import contextlib
from fractions import Fraction

import numpy as np
import torch
from sklearn.datasets import make_blobs


def to_numpy(value):
    """A tensor (any device) or array as a NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def sq_distances(X, centers):
    """Naive float64 squared distances, ``(n_samples, n_clusters)``, by broadcasting."""
    X = np.asarray(X, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)


def naive_assign(X, centers, sample_weight=None):
    """Brute-force nearest center (first on ties) and the weighted inertia."""
    d = sq_distances(X, centers)
    labels = d.argmin(axis=1)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return labels, float((d[np.arange(len(X)), labels] * w).sum())


def naive_lloyd_step(X, centers, sample_weight=None):
    """One Lloyd iteration in float64: assign, then weighted means (no cluster may be empty)."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    labels, inertia = naive_assign(X, centers, w)
    new = np.empty_like(np.asarray(centers, dtype=np.float64))
    for j in range(len(new)):
        members = labels == j
        assert w[members].sum() > 0, "the oracle does not handle empty clusters"
        new[j] = (X[members] * w[members, None]).sum(axis=0) / w[members].sum()
    return labels, inertia, new


def blob_data(n_samples, n_features, n_clusters, *, dtype=np.float64, seed=0):
    """Blobs with one well separated blob per cluster, and one sample of each blob as init.

    Every initial center lies in its own blob, so all decision boundaries run
    through empty space: no sample is near a tie, and float32 runs from
    different libraries must give identical labels.
    """
    rng = np.random.default_rng(seed)
    if n_features == 1:
        centers = np.linspace(-10.0 * n_clusters, 10.0 * n_clusters, n_clusters)[:, None]
    else:
        centers = rng.uniform(-20, 20, size=(n_clusters, n_features))
    X, y = make_blobs(n_samples=n_samples, centers=centers, cluster_std=1.0, random_state=seed)
    init_rows = np.array([np.flatnonzero(y == j)[0] for j in range(n_clusters)])
    return X.astype(dtype), X[init_rows].astype(dtype)


def random_row_data(n_samples, n_features, n_blobs, n_clusters, *, seed=0):
    """float64 blobs and ``n_clusters`` random distinct rows as init (several per blob).

    Lloyd then runs several iterations and moves centers between blobs; in
    float64 near-ties are too rare to matter for these sizes.
    """
    rng = np.random.default_rng(seed)
    X, _ = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=n_blobs,
        cluster_std=1.0,
        center_box=(-20, 20),
        random_state=seed,
    )
    init = X[rng.choice(n_samples, n_clusters, replace=False)]
    return X, init


def exact_lloyd(X, init, max_iter=50):
    """Lloyd in rational arithmetic, first center on ties: labels per iteration, centers."""
    X = [[Fraction(int(v)) for v in row] for row in X]
    centers = [[Fraction(v) for v in row] for row in init]
    labels, changed = [-1] * len(X), []
    for _ in range(max_iter):
        new = []
        for x in X:
            d = [sum((a - b) ** 2 for a, b in zip(x, c, strict=True)) for c in centers]
            new.append(d.index(min(d)))
        changed.append(sum(a != b for a, b in zip(labels, new, strict=True)))
        labels = new
        members = [[x for x, label in zip(X, labels, strict=True) if label == j]
                   for j in range(len(centers))]
        assert all(members), "the oracle does not relocate empty clusters"
        new_centers = [[sum(col) / len(m) for col in zip(*m, strict=True)] for m in members]
        moved = new_centers != centers
        centers = new_centers
        if changed[-1] == 0 or not moved:
            break
    return np.array(labels), np.array(centers, dtype=np.float64), changed


# Integer rows with an exactly zero mean (the engine's shift is then exact) whose Lloyd
# centers stay dyadic: every score is exact in every layout, and later iterations have
# exact ties (found by search with `exact_lloyd`).
EXACT_TIES = {
    "16x2-k4": (
        [[-1, 0], [3, -2], [4, -2], [-4, -2], [2, 3], [-4, 2], [-3, -1], [-3, 4], [1, 0],
         [-3, 2], [-4, 2], [4, 2], [-2, -3], [4, -2], [3, 1], [3, -4]],
        [[2, 3], [4, 2], [-4, -2], [3, 1]],
    ),
    "12x2-k3": (
        [[2, -4], [4, -2], [1, 0], [-2, 1], [0, -1], [4, 1], [-2, 4], [-4, 2], [-1, 0],
         [2, -1], [0, 1], [-4, -1]],
        [[-2, 4], [2, -4], [0, -1]],
    ),
    "4x1-k2": ([[-1], [3], [1], [-3]], [[-3], [-1]]),
}


@contextlib.contextmanager
def tiled_kernel(on: bool):
    """Run the native paths above 16 features with the tiled kernel, or without it.

    Without it: torch's GEMM and the kernel's step (``lloyd_step``) for Lloyd, and the
    windows of products for the blocked seeding.
    """
    from torchmeans.backends.native import kernel as _native

    if _native.unavailable_reason() is not None:
        yield
        return
    kernel = _native._kernel()
    saved = kernel.tiled_vector_bytes
    kernel.tiled_vector_bytes = saved if on else 0
    try:
        yield
    finally:
        kernel.tiled_vector_bytes = saved


def write_blobs_memmap(path, n_rows, n_features, n_centers, *, scale=5.0, block=1 << 15):
    """Write a float32 ``.npy`` of blobs block by block (never all rows in memory)."""
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                     shape=(n_rows, n_features))
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=scale, size=(n_centers, n_features)).astype(np.float32)
    for start in range(0, n_rows, block):
        stop = min(n_rows, start + block)
        rows[start:stop] = centers[rng.integers(n_centers, size=stop - start)] + rng.normal(
            size=(stop - start, n_features)).astype(np.float32)
    rows.flush()
    del rows
