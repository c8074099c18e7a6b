"""Many independent k-means problems at once: :func:`batched_kmeans` and :class:`BatchedKMeans`.

``B`` problems of ``N`` rows each (``X`` of shape ``(B, N, D)``; a ``mask`` marks
the valid rows of ragged problems) are clustered together. Every pass is one
batched matrix product (``baddbmm``) over the problems still running, followed by
one ``min`` and one segmented sum over all of them, so many small fits run as one
large one rather than as a Python-level fit each.

This module checks the input and orchestrates the fit (restarts, the best restart,
``predict``). The engine is the core's, with the problems as a leading dimension: the
backend's ``batched_pass`` (the torch backend's: no other has its own yet), the Lloyd loop
:func:`torchmeans.core.lloyd.batched_lloyd` (the single fit's update, relocation and
stopping rule) and the seeding
:func:`torchmeans.core.seeding.batched_kmeans_plusplus_centers` (k-means++'s shared
candidate draw and choice).

- **Restarts** (``n_init``) are more problems: a problem ``p`` of the batch is a
  pair (problem of ``X``, restart), its rows read through an index, never copied
  ``n_init`` times up front.
- **Per-problem convergence**: a problem stops when its labels no longer change or
  its center shift falls within its own tolerance (scikit-learn's rule, with
  ``tol`` scaled by that problem's mean feature variance); the next passes run on
  the problems left, so finished problems cost nothing.
- **Memory** is bounded by ``chunk_bytes``: problems are taken in groups, and rows
  in chunks, so that the ``(problems, rows, k)`` score block stays within it.
- **The answers of separate fits, up to rounding**: given the same initial centers,
  each problem gets the labels and iteration count of :func:`torchmeans.kmeans` on
  that problem alone and its centers and inertia to rounding (tested); the batch
  reduces its means and center shifts in its own order and does not round-trip
  updates through the offset (``lloyd.as_returned``), so the last bits can differ.
  The empty-cluster relocation and the final exact inertia are the single fit's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import Tensor

from torchmeans.backends import get_backend
from torchmeans.core.assign import DEFAULT_CHUNK_BYTES, FALLBACK_CHUNK_BYTES
from torchmeans.core.batched import final_assignment
from torchmeans.core.lloyd import batched_lloyd
from torchmeans.core.precision import full_float32_matmul, with_full_float32_matmul
from torchmeans.core.seeding import batched_kmeans_plusplus_centers, batched_random_centers
from torchmeans.core.validation import (
    METRICS,
    check_params,
    is_integer,
    make_generator,
    resolve_device,
    target_float_dtype,
    to_device,
)
from torchmeans.data.base import accumulation_dtype
from torchmeans.data.batched import ProblemBatch

__all__ = ["BatchedKMeans", "BatchedKMeansResult", "batched_kmeans"]

BATCHED_INITS = ("k-means++", "random")


class BatchedKMeansResult(NamedTuple):
    """Result of :func:`batched_kmeans`.

    Attributes
    ----------
    centers : Tensor
        ``(B, n_clusters, n_features)`` centers of each problem.
    labels : Tensor
        ``(B, N)`` int64 cluster of each row; ``-1`` for rows outside the mask.
    inertia : Tensor
        ``(B,)`` weighted sum of squared distances of each problem's rows to their
        centers (cosine distances ``1 - cos`` for ``metric='cosine'``).
    n_iter : Tensor
        ``(B,)`` int64 Lloyd iterations of each problem's best restart.
    """

    centers: Tensor
    labels: Tensor
    inertia: Tensor
    n_iter: Tensor


def _as_batch(X: Any, device: torch.device) -> Tensor:
    if isinstance(X, Tensor):
        X = X.detach()
    else:
        array = np.asarray(X)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"X must be numeric, got an array of dtype {array.dtype}.")
        X = torch.from_numpy(np.ascontiguousarray(array))
    if X.ndim != 3:
        raise ValueError(
            f"Expected a 3-D X (n_problems, n_samples, n_features), got {X.ndim}-D with shape "
            f"{tuple(X.shape)}. For a single problem use torchmeans.kmeans or KMeans."
        )
    if min(X.shape) < 1:
        raise ValueError(f"X of shape {tuple(X.shape)} is empty: every dimension must be >= 1.")
    return to_device(X.to(target_float_dtype(X.dtype, "X")), device)


def _as_rows_like(value: Any, name: str, shape: tuple[int, int], dtype: torch.dtype,
                  device: torch.device) -> Tensor:
    tensor = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name}.shape == {tuple(tensor.shape)}, expected {shape} "
                         "(n_problems, n_samples): one value per row of X.")
    return tensor.to(device=device, dtype=dtype)


def _prepare(X: Any, mask: Any, sample_weight: Any, n_clusters: int, metric: str,
             device: torch.device, chunk_bytes: int | None,
             offset: Tensor | None = None) -> ProblemBatch:
    """Check and shift the batch; ``offset`` (predict) replaces each problem's mean."""
    x = _as_batch(X, device)
    n_problems, n_samples, _ = x.shape
    dtype = accumulation_dtype(x.dtype)
    valid = (torch.ones(n_problems, n_samples, dtype=torch.bool, device=device) if mask is None
             else _as_rows_like(mask, "mask", (n_problems, n_samples), torch.bool, device))
    x = x.to(dtype)
    bad = ~torch.isfinite(x).all(dim=2) & valid
    if bool(bad.any()):
        problem, row = (int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"X[{problem}, {row}] contains NaN or infinity. k-means needs finite "
                         "values: drop or impute them first, or leave the row out of the mask.")
    weight = (torch.ones(n_problems, n_samples, dtype=dtype, device=device) if sample_weight is None
              else _as_rows_like(sample_weight, "sample_weight", (n_problems, n_samples), dtype,
                                 device))
    if not bool(torch.isfinite(weight[valid]).all()) or bool((weight[valid] < 0).any()):
        raise ValueError("sample_weight must be finite and >= 0.")
    weight = torch.where(valid, weight, 0)
    counts = valid.sum(dim=1)
    few = torch.nonzero(counts < n_clusters).flatten()
    if few.numel():
        p = int(few[0])
        raise ValueError(f"Problem {p} has {int(counts[p])} valid samples, fewer than "
                         f"n_clusters={n_clusters}: ask for fewer clusters or mask in more rows.")
    weightless = torch.nonzero(weight.sum(dim=1) <= 0).flatten()
    if weightless.numel() and n_clusters:
        raise ValueError(f"The sample weights of problem {int(weightless[0])} sum to zero: "
                         "each problem needs a positive weight.")
    if mask is not None:  # padding may hold anything (NaN included): zero it
        x = torch.where(valid[..., None], x, 0)
    if metric == "cosine":
        norms = x.norm(dim=2)
        zero = torch.nonzero((norms == 0) & valid)
        if zero.numel():
            problem, row = (int(i) for i in zero[0])
            raise ValueError(f"X[{problem}, {row}] has zero norm: cosine k-means needs nonzero "
                             "rows (drop them or leave them out of the mask).")
        x = x / torch.where(valid, norms, 1)[..., None]
        offset = x.new_zeros(n_problems, x.shape[2])
    else:
        if offset is None:
            offset = x.sum(dim=1) / counts.clamp(min=1)[:, None].to(dtype)
        x = x - offset.to(device=device, dtype=dtype)[:, None]
        if mask is not None:
            x = torch.where(valid[..., None], x, 0)
    sq_norms = x.square().sum(dim=2)
    # scikit-learn's tol scale, the mean per-feature variance: E[x^2] - E[x]^2 of the
    # valid (shifted) rows, in float64 where the device has it.
    wide = torch.float64 if device.type != "mps" else dtype
    n = counts.clamp(min=1).to(wide)
    mean = x.sum(dim=1, dtype=wide) / n[:, None]
    variance = (sq_norms.sum(dim=1, dtype=wide) / (n * x.shape[2]) - mean.square().mean(dim=1))
    budget = int(chunk_bytes) if chunk_bytes is not None else DEFAULT_CHUNK_BYTES.get(
        device.type, FALLBACK_CHUNK_BYTES)
    return ProblemBatch(x, weight, valid, sq_norms, offset, variance.clamp(min=0), budget,
                     bool((weight == 1).all()))


@with_full_float32_matmul
def batched_kmeans(
    X: Any,
    n_clusters: int,
    *,
    mask: Any = None,
    sample_weight: Any = None,
    init: Any = "k-means++",
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state: Any = None,
    device: str | torch.device | None = None,
    metric: str = "euclidean",
    chunk_bytes: int | None = None,
    deterministic: bool = True,
) -> BatchedKMeansResult:
    """Cluster ``B`` independent problems ``X[b]`` at once, each into ``n_clusters`` clusters.

    Parameters
    ----------
    X : Tensor or array-like of shape (B, N, D)
        ``B`` problems of ``N`` rows with ``D`` features (pad ragged problems and pass
        ``mask``).
    n_clusters : int
        Clusters per problem.
    mask : Tensor or array-like of shape (B, N), optional
        True for the rows that belong to each problem; the others are ignored (their
        label is ``-1``). Each problem needs at least ``n_clusters`` valid rows.
    sample_weight : Tensor or array-like of shape (B, N), optional
        Non-negative weight of each row.
    init : {'k-means++', 'random'} or array of shape (B, n_clusters, D)
        Greedy k-means++ (scikit-learn's, with ``2 + log k`` local trials), run for
        every problem at once; ``n_clusters`` rows drawn by weight; or the initial
        centers of each problem.
    n_init : 'auto' or int
        Restarts per problem, run together as more problems; the lowest inertia of
        each problem is kept. ``'auto'``: 1 for k-means++ and arrays, 10 for random.
    max_iter : int
        Maximum Lloyd iterations per problem.
    tol : float
        Per-problem tolerance on the total squared center shift, relative to that
        problem's mean feature variance (scikit-learn's meaning).
    random_state : int, numpy or torch generator, or None
        Seeds the initialisation of every problem.
    device : str or torch.device, optional
        Where to compute; default: the tensor's device, else CUDA if available, else CPU.
    metric : {'euclidean', 'cosine'}
        ``'cosine'``: spherical k-means (rows normalised, centers re-normalised each
        iteration; inertia is the sum of cosine distances).
    chunk_bytes : int, optional
        Budget in bytes for one ``(problems, rows, k)`` block of scores (default 16 MiB
        on the CPU, 256 MiB on accelerators).
    deterministic : bool
        Sum clusters in a fixed order on accelerators too (bit-identical repeated
        fits); False allows atomic additions (see :mod:`torchmeans.core.accumulate`).

    Returns
    -------
    BatchedKMeansResult
        ``centers`` ``(B, k, D)``, ``labels`` ``(B, N)``, ``inertia`` ``(B,)`` and
        ``n_iter`` ``(B,)``, on the compute device.

    Examples
    --------
    >>> import torch, torchmeans
    >>> X = torch.randn(8, 500, 16)  # 8 problems of 500 rows
    >>> result = torchmeans.batched_kmeans(X, n_clusters=4, random_state=0)
    >>> result.centers.shape, result.labels.shape, result.inertia.shape
    (torch.Size([8, 4, 16]), torch.Size([8, 500]), torch.Size([8]))
    """
    return _batched_fit(X, n_clusters, mask=mask, sample_weight=sample_weight, init=init,
                        n_init=n_init, max_iter=max_iter, tol=tol, random_state=random_state,
                        device=device, metric=metric, chunk_bytes=chunk_bytes,
                        deterministic=deterministic)[0]


def _batched_fit(X: Any, n_clusters: int, *, mask: Any, sample_weight: Any, init: Any,
                 n_init: int | str, max_iter: int, tol: float, random_state: Any,
                 device: str | torch.device | None, metric: str, chunk_bytes: int | None,
                 deterministic: bool) -> tuple[BatchedKMeansResult, tuple[Tensor, Tensor]]:
    """:func:`batched_kmeans`, also returning each problem's offset and its shifted centers.

    ``BatchedKMeans.predict`` assigns to the shifted centers themselves: shifting the
    returned centers back would round, and near-ties could go another way.
    """
    compute_device = resolve_device(device, X)
    if isinstance(init, str) and init not in BATCHED_INITS:
        raise ValueError(f"init must be one of {BATCHED_INITS} or an array of shape "
                         f"(B, n_clusters, n_features), got {init!r}.")
    if callable(init):
        raise TypeError("batched_kmeans takes init='k-means++', 'random' or an array of shape "
                        "(B, n_clusters, n_features), not a callable.")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if not is_integer(n_clusters) or n_clusters < 1:
        raise ValueError(f"n_clusters must be an integer >= 1, got {n_clusters!r}.")
    # Parameters first (the row count does not matter here: each problem is checked).
    check_params(n_clusters=n_clusters, n_samples=n_clusters, init=init, n_init=1,
                 max_iter=max_iter, tol=tol, chunk_bytes=chunk_bytes,
                 deterministic=deterministic, random_state=random_state,
                 caller="batched_kmeans")
    pb = _prepare(X, mask, sample_weight, n_clusters, metric, compute_device, chunk_bytes)
    n_problems, n_samples, _ = pb.x.shape
    restarts = check_params(n_clusters=n_clusters, n_samples=n_samples, init=init,
                            n_init=n_init, caller="batched_kmeans")
    generator = make_generator(random_state, compute_device)
    source = torch.arange(n_problems, device=compute_device).repeat_interleave(restarts)
    if isinstance(init, str):
        seed = (batched_kmeans_plusplus_centers if init == "k-means++"
                else batched_random_centers)
        centers = seed(pb, source, n_clusters, generator)
    else:
        centers = _init_array(init, pb, n_clusters, metric)
    centers, n_iter = batched_lloyd(pb, source, centers, max_iter=max_iter, tol=tol,
                                    spherical=metric == "cosine", deterministic=deterministic)
    labels, inertia = final_assignment(pb, source, centers, deterministic)
    best = inertia.view(n_problems, restarts).argmin(dim=1)
    chosen = torch.arange(n_problems, device=compute_device) * restarts + best
    centers, labels, inertia, n_iter = centers[chosen], labels[chosen], inertia[chosen], \
        n_iter[chosen]
    if restarts > 1:  # the final pass as predict runs it (one problem each), for equal labels
        labels, inertia = final_assignment(pb, source[chosen], centers, deterministic)
    if metric == "cosine":
        inertia = inertia / 2  # cosine distance 1 - x.c is half the squared distance
    return BatchedKMeansResult(centers + pb.offset[:, None], labels, inertia, n_iter), \
        (pb.offset, centers)


def _init_array(init: Any, pb: ProblemBatch, n_clusters: int, metric: str) -> Tensor:
    """Return the user's ``(B, k, D)`` initial centers in each problem's shifted space."""
    centers = init.detach() if isinstance(init, Tensor) else torch.as_tensor(np.asarray(init))
    expected = (pb.x.shape[0], n_clusters, pb.x.shape[2])
    if tuple(centers.shape) != expected:
        raise ValueError(f"The shape of the initial centers {tuple(centers.shape)} does not "
                         f"match (B, n_clusters, n_features) = {expected}.")
    centers = centers.to(device=pb.x.device, dtype=pb.x.dtype, copy=True)
    if not bool(torch.isfinite(centers).all()):
        raise ValueError("init contains NaN or infinity; initial centers must be finite.")
    if metric == "cosine":
        norms = centers.norm(dim=2, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("init has a zero-norm center: cosine k-means needs nonzero centers.")
        return centers / norms
    return centers - pb.offset[:, None]


class BatchedKMeans(ClusterMixin, BaseEstimator):
    """Estimator form of :func:`batched_kmeans`: ``B`` problems per ``fit``.

    Parameters are those of :func:`batched_kmeans`. ``fit(X, mask=None,
    sample_weight=None)`` takes ``(B, N, D)`` data and sets:

    Attributes
    ----------
    cluster_centers_ : Tensor
        ``(B, n_clusters, D)`` centers.
    labels_ : Tensor
        ``(B, N)`` labels (``-1`` outside the mask).
    inertia_ : Tensor
        ``(B,)`` inertia of each problem.
    n_iter_ : Tensor
        ``(B,)`` iterations of each problem.
    n_features_in_ : int
        ``D``.
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++",
                 n_init: int | str = "auto", max_iter: int = 300, tol: float = 1e-4,
                 random_state: Any = None, device: str | torch.device | None = None,
                 metric: str = "euclidean", chunk_bytes: int | None = None,
                 deterministic: bool = True) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.metric = metric
        self.chunk_bytes = chunk_bytes
        self.deterministic = deterministic

    def fit(self, X: Any, y: Any = None, *, mask: Any = None,
            sample_weight: Any = None) -> BatchedKMeans:
        """Cluster each problem of ``X`` (``(B, N, D)``); returns self."""
        params = self.get_params()
        with full_float32_matmul():
            result, (self._offset, self._shifted_centers) = _batched_fit(
                X, params.pop("n_clusters"), mask=mask, sample_weight=sample_weight, **params)
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = result
        self.n_features_in_ = int(result.centers.shape[2])
        return self

    def fit_predict(self, X: Any, y: Any = None, *, mask: Any = None,
                    sample_weight: Any = None) -> Tensor:
        """Fit and return ``labels_``."""
        return self.fit(X, mask=mask, sample_weight=sample_weight).labels_

    @with_full_float32_matmul
    def predict(self, X: Any, *, mask: Any = None) -> Tensor:
        """Nearest center of problem ``b`` for every row of ``X[b]`` (``(B, M, D)`` -> ``(B, M)``).

        Rows outside ``mask`` get ``-1``. The rows are shifted by the training means and
        assigned by the fit's own pass (chunked within ``chunk_bytes``), so
        ``predict(X) == labels_`` on the training data.
        """
        if not hasattr(self, "cluster_centers_"):
            raise AttributeError("This BatchedKMeans instance is not fitted yet: call fit first.")
        centers = self.cluster_centers_
        x = _as_batch(X, centers.device)
        expected = (centers.shape[0], centers.shape[2])
        if (x.shape[0], x.shape[2]) != expected:
            raise ValueError(f"X has shape {tuple(x.shape)}: expected (B, M, D) with "
                             f"(B, D) = {expected} as in fit.")
        offset = getattr(self, "_offset", None)
        if offset is None:  # centers set by hand: shift by their mean
            offset = centers.mean(dim=1) if self.metric != "cosine" else None
        pb = _prepare(x, mask, None, 0, self.metric, centers.device, self.chunk_bytes,
                      offset=offset)
        problems = torch.arange(x.shape[0], device=centers.device)
        unlabelled = torch.full(x.shape[:2], -1, dtype=torch.int64, device=centers.device)
        shifted = getattr(self, "_shifted_centers", None)
        if shifted is None or shifted.shape != centers.shape:  # centers set by hand
            shifted = centers.to(pb.x.dtype) - pb.offset[:, None]
        return get_backend("torch").batched_pass(pb, problems, shifted, unlabelled,
                                                 self.deterministic)[0]
