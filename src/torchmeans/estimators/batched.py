"""Many independent k-means problems at once: :func:`batched_kmeans` and :class:`BatchedKMeans`.

``B`` problems of ``N`` rows each (``X`` of shape ``(B, N, D)``; a ``mask`` marks
the valid rows of ragged problems) are clustered together. Every pass is one
batched matrix product (``baddbmm``) over the problems still running, followed by
one ``min`` and one segmented sum over all of them, so the cost of a thousand small
fits is that of one large fit, not of a thousand Python-level fits.

- **Restarts** (``n_init``) are more problems: a problem ``p`` of the batch is a
  pair (problem of ``X``, restart), its rows read through an index, never copied
  ``n_init`` times up front.
- **Per-problem convergence**: a problem stops when its labels no longer change or
  its center shift falls within its own tolerance (scikit-learn's rule, with
  ``tol`` scaled by that problem's mean feature variance); the next passes run on
  the problems left, so finished problems cost nothing.
- **Memory** is bounded by ``chunk_bytes``: problems are taken in groups, and rows
  in chunks, so that the ``(problems, rows, k)`` score block stays within it.
- **Same answers as separate fits**: given the same initial centers, each problem
  gets the labels, centers, inertia and iteration count of
  :func:`torchmeans.kmeans` on that problem alone (tested); the centering by each
  problem's mean, the empty-cluster relocation and the final exact inertia are the
  single fit's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import Tensor

from torchmeans.core.accumulate import segment_sums
from torchmeans.core.assign import DEFAULT_CHUNK_BYTES, FALLBACK_CHUNK_BYTES
from torchmeans.core.lloyd import _average, _relocate_empty_clusters, project_to_sphere
from torchmeans.core.precision import full_float32_matmul, with_full_float32_matmul
from torchmeans.core.seeding import _weighted_choice, default_local_trials, weighted_sample
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
from torchmeans.data.dense import DenseData

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


@dataclass
class _Problems:
    """The checked batch: shifted rows, weights and per-problem constants."""

    x: Tensor
    """``(B, N, D)`` rows minus their problem's offset, in the accumulation dtype; zero
    outside the mask."""
    weight: Tensor
    """``(B, N)`` sample weights, zero outside the mask."""
    valid: Tensor
    """``(B, N)`` bool mask."""
    sq_norms: Tensor
    """``(B, N)`` squared norms of the shifted rows."""
    offset: Tensor
    """``(B, D)`` each problem's offset (its mean; zero for cosine)."""
    variance: Tensor
    """``(B,)`` mean per-feature variance of each problem's valid rows (``tol``'s scale)."""
    budget: int
    """Working-memory budget in bytes for one block of scores."""
    unit_weights: bool
    """Every row is valid and weighs 1 (the sums skip the multiplication by weights)."""


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
             offset: Tensor | None = None) -> _Problems:
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
    return _Problems(x, weight, valid, sq_norms, offset, variance.clamp(min=0), budget,
                     bool((weight == 1).all()))


def _blocks(n_problems: int, n_samples: int, width: int, itemsize: int,
            budget: int) -> tuple[int, int]:
    """Problems per group and rows per chunk so that a ``(group, rows, width)`` block fits."""
    per_problem = n_samples * width * itemsize
    group = max(1, min(n_problems, budget // max(1, per_problem)))
    rows = n_samples if group > 1 else max(1, min(n_samples, budget // max(1, width * itemsize)))
    return group, rows


def _select(tensor: Tensor, problems: Tensor) -> Tensor:
    """Return ``tensor[problems]``, as a view when ``problems`` are consecutive.

    Consecutive problems (every problem once) are the common case; restarts and
    finished problems need a copy.
    """
    first, count = int(problems[0]), problems.numel()
    if int(problems[-1]) - first + 1 == count and bool((problems.diff() == 1).all()):
        return tensor[first : first + count]
    return tensor[problems]


def _groups(ids: Tensor, group: int) -> Iterator[Tensor]:
    for start in range(0, ids.numel(), group):
        yield ids[start : start + group]


def _plusplus(pb: _Problems, source: Tensor, n_clusters: int, generator: torch.Generator,
              n_local_trials: int | None = None) -> Tensor:
    """Greedy k-means++ for every problem at once (scikit-learn's rule, one RNG stream).

    Each step samples ``n_local_trials`` candidates per problem with probability
    ``w D(x)^2`` (one batched ``searchsorted`` on the ``(problems, N)`` potentials), computes
    their distances to all rows as one batched product, and keeps the candidate
    leaving the lowest potential.
    """
    if n_local_trials is None:
        n_local_trials = default_local_trials(n_clusters)
    n_features = pb.x.shape[2]
    itemsize = pb.x.element_size()
    centers = pb.x.new_empty(source.numel(), n_clusters, n_features)
    group, _ = _blocks(source.numel(), pb.x.shape[1], n_local_trials + n_features, itemsize,
                       pb.budget)
    for ids in _groups(torch.arange(source.numel(), device=source.device), group):
        problems = source[ids]
        x, sq = _select(pb.x, problems), _select(pb.sq_norms, problems)
        weight = _select(pb.weight, problems)
        arange = torch.arange(ids.numel(), device=x.device)
        first = _weighted_choice(weight, 1, generator).squeeze(1)
        chosen = x[arange, first]
        closest = (x - chosen[:, None]).square().sum(dim=2)
        centers[ids, 0] = chosen
        for c in range(1, n_clusters):
            potential = weight * closest
            # All rows on chosen centers (fewer distinct points than clusters): any row.
            potential = torch.where(potential.sum(dim=1, keepdim=True) > 0, potential, weight)
            picks = _weighted_choice(potential, n_local_trials, generator)
            candidates = torch.gather(x, 1, picks[..., None].expand(-1, -1, n_features))
            distances = torch.baddbmm(sq[:, None, :] + candidates.square().sum(dim=2)[..., None],
                                      candidates, x.transpose(1, 2), alpha=-2).clamp_(min=0)
            distances = torch.minimum(distances, closest[:, None, :], out=distances)
            best = (distances * weight[:, None, :]).sum(dim=2).argmin(dim=1)
            closest = distances[arange, best]
            centers[ids, c] = candidates[arange, best]
    return centers


def _random(pb: _Problems, source: Tensor, n_clusters: int,
            generator: torch.Generator) -> Tensor:
    """``n_clusters`` distinct rows per problem, drawn with probability ``w`` (scikit-learn's)."""
    weight = pb.weight[source]
    short = torch.nonzero((weight > 0).sum(dim=1) < n_clusters).flatten()
    if short.numel():
        raise ValueError(f"init='random' needs n_clusters={n_clusters} rows of positive weight; "
                         f"problem {int(source[short[0]])} has fewer.")
    picks = weighted_sample(weight, n_clusters, generator)
    return torch.gather(pb.x[source], 1, picks[..., None].expand(-1, -1, pb.x.shape[2]))


class _Pass(NamedTuple):
    labels: Tensor
    sums: Tensor
    weights: Tensor
    n_changed: Tensor


def _assign_pass(pb: _Problems, source: Tensor, centers: Tensor, labels: Tensor,
                 deterministic: bool) -> _Pass:
    """Assign the rows of problems ``source`` to ``centers``; per-problem sums and weights.

    ``labels`` are the problems' previous labels (``-1`` before the first pass and
    outside the mask); the new ones are returned with the number that changed.
    """
    n_problems, n_clusters = centers.shape[:2]
    n_samples, n_features = pb.x.shape[1:]
    group, rows = _blocks(n_problems, n_samples, n_clusters, pb.x.element_size(), pb.budget)
    new_labels = torch.empty_like(labels)
    sums = centers.new_empty(n_problems, n_clusters, n_features)
    weights = centers.new_empty(n_problems, n_clusters)
    # One scores buffer for every block: allocating it per block costs more than the
    # product itself on the CPU (fresh pages).
    buffer = centers.new_empty(min(group, n_problems) * rows * n_clusters)
    for ids in _groups(torch.arange(n_problems, device=source.device), group):
        problems = source[ids]
        x, weight = _select(pb.x, problems), _select(pb.weight, problems)
        transposed = centers[ids].transpose(1, 2)
        sq_centers = centers[ids].square().sum(dim=2)[:, None, :]
        segment = (torch.arange(ids.numel(), device=x.device) * n_clusters)[:, None]
        n_segments = ids.numel() * n_clusters
        group_sums = centers.new_zeros(n_segments, n_features)
        group_weights = centers.new_zeros(n_segments)
        for start in range(0, n_samples, rows):
            stop = min(start + rows, n_samples)
            chunk, chunk_weight = x[:, start:stop], weight[:, start:stop]
            scores = torch.baddbmm(sq_centers, chunk, transposed, alpha=-2,
                                   out=buffer[: chunk.numel() // n_features * n_clusters].view(
                                       ids.numel(), stop - start, n_clusters))
            # ``min`` gives the first minimum on ties (as a single fit), and is faster than
            # ``argmin`` on the CPU.
            chunk_labels = scores.min(dim=2).indices
            index = (chunk_labels + segment).flatten()
            weighted = (chunk if pb.unit_weights else
                        chunk * chunk_weight[..., None]).reshape(-1, n_features)
            segment_sums(weighted, index, n_segments, deterministic=deterministic,
                         out=group_sums)
            segment_sums(chunk_weight.flatten(), index, n_segments, deterministic=deterministic,
                         out=group_weights)
            if not pb.unit_weights:  # rows outside the mask get -1
                valid = _select(pb.valid, problems)[:, start:stop]
                chunk_labels = torch.where(valid, chunk_labels, -1)
            new_labels[ids, start:stop] = chunk_labels
        sums[ids] = group_sums.view(-1, n_clusters, n_features)
        weights[ids] = group_weights.view(-1, n_clusters)
    return _Pass(new_labels, sums, weights, (new_labels != labels).sum(dim=1))


def _relocate(pb: _Problems, source: Tensor, centers: Tensor, labels: Tensor, sums: Tensor,
              weights: Tensor) -> None:
    """Refill the empty clusters of each problem, as a single fit would (in place).

    Rare, so problem by problem: each one's valid rows go through the single fit's
    relocation (the farthest rows from their centers become the empty clusters).
    """
    for p in torch.nonzero((weights == 0).any(dim=1)).flatten().tolist():
        valid = pb.valid[source[p]]
        rows = DenseData(pb.x[source[p]][valid], pb.weight[source[p]][valid],
                         torch.zeros_like(pb.offset[0]), shifted=True)
        _relocate_empty_clusters(rows, centers[p], labels[p][valid], sums[p], weights[p],
                                 rows.n_samples)


def _lloyd(pb: _Problems, source: Tensor, centers: Tensor, *, max_iter: int, tol: float,
           spherical: bool, deterministic: bool) -> tuple[Tensor, Tensor]:
    """Run Lloyd on every problem until each converges; return final centers and iterations."""
    n_problems = source.numel()
    labels = torch.full((n_problems, pb.x.shape[1]), -1, dtype=torch.int64, device=pb.x.device)
    n_iter = torch.zeros(n_problems, dtype=torch.int64, device=pb.x.device)
    tolerance = (tol * pb.variance)[source]
    active = torch.arange(n_problems, device=pb.x.device)
    wide = pb.variance.dtype
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        run_source, old_centers = source[active], centers[active]
        result = _assign_pass(pb, run_source, old_centers, labels[active], deterministic)
        sums, weights = result.sums.to(wide), result.weights.to(wide)
        if bool((weights == 0).any()):
            _relocate(pb, run_source, old_centers, result.labels, sums, weights)
        new_centers = _average(sums, weights).to(centers.dtype)
        if spherical:  # the rows are unit vectors about the origin (no offset)
            new_centers = project_to_sphere(new_centers, torch.zeros_like(new_centers[0, 0]))
        shift = (new_centers - old_centers).to(wide).square().sum(dim=(1, 2))
        labels[active] = result.labels
        centers[active] = new_centers
        n_iter[active] += 1
        done = (result.n_changed == 0) | (shift <= tolerance[active])
        active = active[~done]
    return centers, n_iter


def _final(pb: _Problems, source: Tensor, centers: Tensor,
           deterministic: bool) -> tuple[Tensor, Tensor]:
    """Labels of every row for the final centers, and the exact weighted inertia per problem."""
    labels = torch.full((source.numel(), pb.x.shape[1]), -1, dtype=torch.int64,
                        device=pb.x.device)
    labels = _assign_pass(pb, source, centers, labels, deterministic).labels
    inertia = centers.new_empty(source.numel())
    n_features = pb.x.shape[2]
    group, _ = _blocks(source.numel(), pb.x.shape[1], n_features, pb.x.element_size(),
                       pb.budget)
    for ids in _groups(torch.arange(source.numel(), device=source.device), group):
        assigned = torch.gather(centers[ids], 1,
                                labels[ids].clamp(min=0)[..., None].expand(-1, -1, n_features))
        distances = (_select(pb.x, source[ids]) - assigned).square_().sum(dim=2)
        inertia[ids] = (distances * _select(pb.weight, source[ids])).sum(dim=1)
    return labels, inertia


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
        seed = _plusplus if init == "k-means++" else _random
        centers = seed(pb, source, n_clusters, generator)
    else:
        centers = _init_array(init, pb, n_clusters, metric)
    centers, n_iter = _lloyd(pb, source, centers, max_iter=max_iter, tol=tol,
                             spherical=metric == "cosine", deterministic=deterministic)
    labels, inertia = _final(pb, source, centers, deterministic)
    best = inertia.view(n_problems, restarts).argmin(dim=1)
    chosen = torch.arange(n_problems, device=compute_device) * restarts + best
    centers, labels, inertia, n_iter = centers[chosen], labels[chosen], inertia[chosen], \
        n_iter[chosen]
    if restarts > 1:  # the final pass as predict runs it (one problem each), for equal labels
        labels, inertia = _final(pb, source[chosen], centers, deterministic)
    if metric == "cosine":
        inertia = inertia / 2  # cosine distance 1 - x.c is half the squared distance
    return BatchedKMeansResult(centers + pb.offset[:, None], labels, inertia, n_iter), \
        (pb.offset, centers)


def _init_array(init: Any, pb: _Problems, n_clusters: int, metric: str) -> Tensor:
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
        return _assign_pass(pb, problems, shifted, unlabelled, self.deterministic).labels
