"""Clustering quality metrics on any torch device, chunked so memory stays bounded.

Each function takes the same inputs as its scikit-learn namesake (numpy, pandas, lists or
torch tensors on any device; labels of any hashable kind) and returns the same value:
within 1e-6 relative in float64 (tested). Work that scikit-learn does row by row runs
here as matrix products over chunks of rows:

- ``silhouette_samples`` / ``silhouette_score``: the distances of a chunk of rows to all
  rows (one GEMM, ``(rows, n_samples)``, within ``chunk_bytes``), summed per cluster with
  one ``index_add_``; never an ``n_samples x n_samples`` matrix.
- ``calinski_harabasz_score``, ``davies_bouldin_score``, ``inertia``: per-cluster sums with
  ``index_add_`` and one pass over the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import Tensor

from torchmeans.core.validation import as_tensor, resolve_device
from torchmeans.data.base import accumulation_dtype, rows_per_chunk, supports_float64

__all__ = [
    "calinski_harabasz_score",
    "davies_bouldin_score",
    "inertia",
    "silhouette_samples",
    "silhouette_score",
]

METRICS = ("euclidean", "cosine")
DEFAULT_CHUNK_BYTES = 1 << 26
"""Working memory of one chunk of the silhouette's distance block (64 MiB)."""


def _dense(X: Any, device: str | torch.device | None) -> Tensor:
    tensor = as_tensor(X, resolve_device(device, X))
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    return tensor.to(accumulation_dtype(tensor.dtype))


def _encode_labels(labels: Any, n_samples: int, device: torch.device) -> tuple[Tensor, int]:
    """Labels as ``0..n_labels-1`` (int64 on ``device``) and the number of labels."""
    if isinstance(labels, Tensor):
        codes, inverse = torch.unique(labels.detach().reshape(-1), return_inverse=True)
        n_labels = codes.numel()
        inverse = inverse.to(device)
    else:
        values = np.asarray(labels).reshape(-1)
        codes, inverse = np.unique(values, return_inverse=True)
        n_labels = len(codes)
        inverse = torch.from_numpy(inverse.astype(np.int64)).to(device)
    if inverse.numel() != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, "
            f"{inverse.numel()}] (X and labels)."
        )
    return inverse, n_labels


def _check_n_labels(n_labels: int, n_samples: int) -> None:
    if not 1 < n_labels < n_samples:
        raise ValueError(
            f"Number of labels is {n_labels}. Valid values are 2 to n_samples - 1 (inclusive)"
        )


def _prepare(X: Any, labels: Any, device: str | torch.device | None) -> tuple[Tensor, Tensor, int]:
    tensor = _dense(X, device)
    if tensor.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {tuple(tensor.shape)}.")
    encoded, n_labels = _encode_labels(labels, tensor.shape[0], tensor.device)
    return tensor, encoded, n_labels


def _output(values: Tensor, like: Any) -> Any:
    return values if isinstance(like, Tensor) else values.cpu().numpy()


def _clusters(X: Any, labels: Any,
              device: str | torch.device | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return the checked rows (float64 if possible), encoded labels, cluster means, sizes."""
    tensor, encoded, n_labels = _prepare(X, labels, device)
    _check_n_labels(n_labels, tensor.shape[0])
    tensor = _wide(tensor)
    counts = torch.bincount(encoded, minlength=n_labels).to(tensor.dtype)
    sums = torch.zeros(n_labels, tensor.shape[1], dtype=tensor.dtype, device=tensor.device)
    sums.index_add_(0, encoded, tensor)
    return tensor, encoded, sums / counts[:, None], counts


def silhouette_samples(
    X: Any,
    labels: Any,
    *,
    metric: str = "euclidean",
    device: str | torch.device | None = None,
    chunk_bytes: int | None = None,
) -> Any:
    """Silhouette coefficient of each sample (scikit-learn's ``silhouette_samples``).

    ``s = (b - a) / max(a, b)``, where ``a`` is the mean distance to the other
    members of the sample's cluster and ``b`` the smallest mean distance to the
    members of another cluster; 0 for samples alone in their cluster.

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_features)
        Samples (dense or sparse; sparse rows are densified chunk-free, so keep them small).
    labels : array-like or Tensor of shape (n_samples,)
        Cluster of each sample (any values; 2 to ``n_samples - 1`` distinct ones).
    metric : {'euclidean', 'cosine'}
        Distance between samples.
    device : str or torch.device, optional
        Where to compute (default: the tensor's device, else CUDA when available).
    chunk_bytes : int, optional
        Memory budget of one block of distances (default 64 MiB).

    Returns
    -------
    ndarray or Tensor of shape (n_samples,)
        A tensor when ``X`` is a tensor, else a numpy array.
    """
    tensor, encoded, n_labels = _prepare(X, labels, device)
    _check_n_labels(n_labels, tensor.shape[0])
    return _output(_silhouette(tensor, encoded, n_labels, metric, chunk_bytes), X)


def _silhouette(X: Tensor, labels: Tensor, n_labels: int, metric: str,
                chunk_bytes: int | None) -> Tensor:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    n_samples = X.shape[0]
    if metric == "cosine":
        norms = X.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("cosine distance is undefined for rows of zero norm; drop them.")
        X = X / norms
    else:
        # Distances do not change under a shift; centring keeps the expansion precise.
        X = X - X.mean(dim=0)
    sq_norms = X.square().sum(dim=1)
    ones = torch.ones_like(sq_norms)
    counts = torch.bincount(labels, minlength=n_labels).to(X.dtype)
    itemsize = torch.finfo(X.dtype).bits // 8
    rows = rows_per_chunk(chunk_bytes or DEFAULT_CHUNK_BYTES, 2 * n_samples, 0, itemsize)
    a = torch.empty(n_samples, dtype=X.dtype, device=X.device)
    b = torch.empty_like(a)
    for start in range(0, n_samples, rows):
        stop = min(start + rows, n_samples)
        if metric == "cosine":  # 1 - x.y for unit rows, clipped to [0, 2] as scikit-learn
            block = torch.addmm(ones, X[start:stop], X.T, alpha=-1).clamp_(0, 2)
        else:
            block = torch.addmm(sq_norms, X[start:stop], X.T, alpha=-2)
            block.add_(sq_norms[start:stop, None]).clamp_(min=0).sqrt_()
        # A sample's distance to itself is exactly 0 (as scikit-learn sets it).
        index = torch.arange(start, stop, device=X.device)
        block[index - start, index] = 0
        sums = torch.zeros(stop - start, n_labels, dtype=X.dtype, device=X.device)
        sums.index_add_(1, labels, block)
        own = labels[start:stop]
        own_count = counts[own]
        a[start:stop] = sums.gather(1, own[:, None]).squeeze(1) / (own_count - 1).clamp(min=1)
        means = sums / counts
        means.scatter_(1, own[:, None], torch.inf)
        b[start:stop] = means.amin(dim=1)
    scores = (b - a) / torch.maximum(a, b)
    # Alone in its cluster, or a == b == 0 (duplicates): 0, as scikit-learn.
    return torch.nan_to_num(torch.where(counts[labels] > 1, scores, 0.0), nan=0.0)


def silhouette_score(
    X: Any,
    labels: Any,
    *,
    metric: str = "euclidean",
    sample_size: int | None = None,
    random_state: Any = None,
    device: str | torch.device | None = None,
    chunk_bytes: int | None = None,
) -> float:
    """Mean silhouette coefficient over all samples (scikit-learn's ``silhouette_score``).

    Parameters
    ----------
    X, labels, metric, device, chunk_bytes
        As :func:`silhouette_samples`.
    sample_size : int, optional
        Score a random subset of this many samples (for large data). Drawn as
        scikit-learn draws it, so the same ``random_state`` scores the same subset.
    random_state : int, RandomState or None
        Seeds the subset.

    Returns
    -------
    float
    """
    tensor, encoded, n_labels = _prepare(X, labels, device)
    if sample_size is not None:
        if not isinstance(sample_size, int | np.integer) or not 0 < sample_size <= len(tensor):
            raise ValueError(
                f"sample_size must be an integer in [1, n_samples={len(tensor)}], "
                f"got {sample_size!r}."
            )
        indices = check_random_state(random_state).permutation(len(tensor))[:sample_size]
        index = torch.from_numpy(indices).to(tensor.device)
        tensor, encoded = tensor[index], encoded[index]
        _, encoded = torch.unique(encoded, return_inverse=True)
        n_labels = int(encoded.max()) + 1
    _check_n_labels(n_labels, tensor.shape[0])
    return float(_silhouette(tensor, encoded, n_labels, metric, chunk_bytes).mean())


def calinski_harabasz_score(X: Any, labels: Any, *,
                            device: str | torch.device | None = None) -> float:
    """Ratio of between- to within-cluster dispersion (scikit-learn's namesake).

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_features)
    labels : array-like or Tensor of shape (n_samples,)
    device : str or torch.device, optional

    Returns
    -------
    float
        Higher is better; 1.0 when every cluster is a single point.
    """
    tensor, encoded, means, counts = _clusters(X, labels, device)
    n_samples, n_labels = tensor.shape[0], counts.numel()
    mean = tensor.mean(dim=0)
    between = float((counts * (means - mean).square().sum(dim=1)).sum())
    within = float((tensor - means[encoded]).square().sum())
    if within == 0.0:
        return 1.0
    return between * (n_samples - n_labels) / (within * (n_labels - 1))


def davies_bouldin_score(X: Any, labels: Any, *,
                         device: str | torch.device | None = None) -> float:
    """Mean similarity of each cluster with its most similar one (scikit-learn's namesake).

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_features)
    labels : array-like or Tensor of shape (n_samples,)
    device : str or torch.device, optional

    Returns
    -------
    float
        Lower is better; 0 is the minimum.
    """
    tensor, encoded, means, counts = _clusters(X, labels, device)
    n_labels = counts.numel()
    distances = (tensor - means[encoded]).square().sum(dim=1).sqrt()
    spread = torch.zeros(n_labels, dtype=tensor.dtype, device=tensor.device)
    spread.index_add_(0, encoded, distances)
    spread /= counts
    between = torch.cdist(means, means)
    between.fill_diagonal_(0)  # cdist's matrix-product mode leaves rounding on the diagonal
    if bool(torch.allclose(spread, torch.zeros_like(spread))) or bool(
        torch.allclose(between, torch.zeros_like(between))
    ):
        return 0.0
    between[between == 0] = torch.inf
    ratios = (spread[:, None] + spread[None, :]) / between
    return float(ratios.amax(dim=1).mean())


def inertia(X: Any, labels: Any, centers: Any = None, *, sample_weight: Any = None,
            device: str | torch.device | None = None) -> float:
    """Weighted sum of squared distances of samples to their cluster's center.

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_features)
    labels : array-like or Tensor of shape (n_samples,)
        Integer cluster indices (rows of ``centers`` when it is given).
    centers : array-like or Tensor of shape (n_clusters, n_features), optional
        Default: the (weighted) mean of each cluster.
    sample_weight : array-like or Tensor of shape (n_samples,), optional
    device : str or torch.device, optional

    Returns
    -------
    float
    """
    tensor = _wide(_dense(X, device))
    encoded = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels,
                              device=tensor.device).long().reshape(-1)
    if encoded.numel() != tensor.shape[0]:
        raise ValueError(f"labels has {encoded.numel()} entries, X has {tensor.shape[0]} rows.")
    if encoded.numel() and int(encoded.min()) < 0:
        raise ValueError("labels must be >= 0 (cluster indices).")
    weight = torch.ones(tensor.shape[0], dtype=tensor.dtype, device=tensor.device)
    if sample_weight is not None:
        weight = torch.as_tensor(np.asarray(sample_weight) if not isinstance(
            sample_weight, Tensor) else sample_weight, device=tensor.device).to(tensor.dtype)
        if tuple(weight.shape) != (tensor.shape[0],):
            raise ValueError(f"sample_weight has shape {tuple(weight.shape)}, expected "
                             f"({tensor.shape[0]},).")
    if centers is None:
        n_clusters = int(encoded.max()) + 1
        sums = torch.zeros(n_clusters, tensor.shape[1], dtype=tensor.dtype, device=tensor.device)
        sums.index_add_(0, encoded, tensor * weight[:, None])
        totals = torch.zeros(n_clusters, dtype=tensor.dtype, device=tensor.device)
        totals.index_add_(0, encoded, weight)
        center_rows = sums / totals.clamp(min=torch.finfo(tensor.dtype).tiny)[:, None]
    else:
        center_rows = _wide(_dense(centers, tensor.device)).to(tensor.device)
        if encoded.numel() and not 0 <= int(encoded.min()) <= int(encoded.max()) < len(
                center_rows):
            raise ValueError(f"labels must index the {len(center_rows)} rows of centers.")
    return float(((tensor - center_rows[encoded]).square().sum(dim=1) * weight).sum())


def _wide(tensor: Tensor) -> Tensor:
    """float64 where the device has it (the sums of these scores are long)."""
    return tensor.double() if supports_float64(tensor.device) else tensor
