"""Lloyd's algorithm: assign -> accumulate -> reduce -> update -> repair empty clusters.

Each iteration makes one pass over the data (:class:`~torchmeans.data.KMeansData`)
and fills one flat accumulator per pass: the weighted per-cluster sums, the
per-cluster weights, the partial inertia and the number of changed labels. The
accumulator is handed to ``reduce`` once per iteration; that single call is
where a distributed fit sums the accumulators of all ranks. The host reads the
few scalars it needs to decide on convergence in one synchronisation per
iteration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from torchmeans.backends.native import kernel as _native
from torchmeans.backends.triton import kernels as _triton
from torchmeans.core.assign import (
    center_terms,
    certified_nearest,
    chunk_budget,
    chunk_rows_for,
    chunk_scores_into,
    direct_pass_rows,
    nearest_centers,
    score_buffer,
    transposed_layout,
    update_nearest,
)
from torchmeans.core.bounds import BoundedPass, center_groups
from torchmeans.core.warning import warn
from torchmeans.data.base import KMeansData, supports_float64, weighted_sum, wide_dot

__all__ = ["ALGORITHMS", "BACKENDS", "IterationStats", "LloydResult", "lloyd"]

ALGORITHMS = ("lloyd", "elkan", "hamerly", "yinyang", "auto")
"""``algorithm`` values: Lloyd, the bound-based variants (``torchmeans.core.bounds``), or auto."""

BACKENDS = ("auto", "torch", "native", "triton")
"""``backend`` values: how a Lloyd pass runs. ``'torch'``: a score GEMM and torch ops
(the reference, every device). ``'native'``: the GEMM, then the compiled CPU kernel
of :mod:`torchmeans.backends.native.kernel` (dense float32/float64 rows on the CPU).
``'triton'``: the fused Triton kernels of :mod:`torchmeans.backends.triton.kernels` (distances
and argmin in registers, deterministic sort-based sums; dense float32/float16/
bfloat16 rows on CUDA, or anywhere under ``TRITON_INTERPRET=1``). ``'auto'``: native
on the CPU and Triton on CUDA where they apply, torch otherwise."""


Reducer = Callable[[Tensor], Tensor]


def resolve_algorithm(algorithm: str, data: KMeansData, n_clusters: int, *,
                      direct: bool = False) -> str:
    """Return the algorithm that runs for ``algorithm='auto'`` (others are returned as given).

    All algorithms give the same result; ``'auto'`` picks the fastest measured in
    benchmarks/RESULTS.md ("converged fits"): the bound-based passes pay once
    iterations move few samples, which is most of a converging fit. Where the native
    kernel computes the scores itself (``direct``) with few features
    (``AUTO_DIRECT_LLOYD_MAX_FEATURES``), a Lloyd pass costs less than the bounds'
    bookkeeping at every k measured; with more, Elkan's native pass (center by center)
    wins wherever its ``N x k`` bounds are no larger than the data (``k <= d``; from
    ``AUTO_BOUNDS_MIN_CLUSTERS`` clusters, as every bound-based choice).
    """
    if algorithm != "auto":
        return algorithm
    if n_clusters < AUTO_BOUNDS_MIN_CLUSTERS or (
            direct and data.n_features <= AUTO_DIRECT_LLOYD_MAX_FEATURES):
        return "lloyd"
    if (data.dense_rows and not data.streamed and n_clusters <= data.n_features
            and (direct or data.n_features >= AUTO_ELKAN_MIN_FEATURES)):
        return "elkan"
    return "hamerly"


AUTO_DIRECT_LLOYD_MAX_FEATURES = 16
"""Up to this many features, Lloyd with the native kernel's own scores beats the bounds at
any k (200,000 x 16, k=256: 0.35 against Hamerly's 0.46 of scikit-learn's converged fit;
1,000,000 x 4, k=64: 0.16 against 0.47). Above, the bounds skip enough of the tiled
kernel's work to pay (200,000 x 32, k=256: Hamerly 0.35, Lloyd 0.44; benchmarks/RESULTS.md)."""

BOUNDS_AFTER_CHANGED = 0.01
"""Bound-based passes start once at most this fraction of the labels (or
``BOUNDS_AFTER_ROWS`` rows, whichever is more) changed in the last iteration; before, Lloyd
passes run (with the resolved backend: the native kernel on the CPU). Early on, centers move
far, the bounds loosen at once and most rows fail them: a bounded pass then cost up to 2.5x
a Lloyd pass (100,000 x 768, k=256: 0.50 s against 0.19 s). Whole fits there: median 19.0 s
against 21.5 s with bounds from the start (3 interleaved runs each; docs/design.md). A
resumed fit starts with bounds."""

BOUNDS_AFTER_ROWS = 64
"""Small data switch to bounds at once (so tests on small data exercise the bounds)."""

AUTO_ELKAN_MIN_FEATURES = 256
"""With torch's passes (GEMM-scored recomputation: GPUs, ``backend='torch'``), from this
many features (and no more clusters than features, so that Elkan's ``n_samples x k``
bounds are no larger than the data; dense rows in memory only: sparse or streamed data
would not bound them) ``'auto'`` runs Elkan: its per-center bounds hold where Hamerly's
single one fails in high dimensions (100,000 x 768, k=256: median of 3 fits 14.0 s against
Hamerly's 17.1 s and Yinyang's 15.5 s; at 200,000 x 32, k=256 Hamerly is faster: 0.39
against 0.65 of scikit-learn's time). With the native kernel (``direct``) Elkan tests
center by center and wins at any width above 16 where ``k <= d`` (converged fits, time
relative to scikit-learn's best, Elkan / Hamerly / Lloyd: 200,000 x 64, k=64: 0.50 / 0.52 /
0.55; 200,000 x 128, k=128: 0.34 / 0.40 / 0.79; 100,000 x 256, k=256: 0.31 / 0.46 / 0.91;
benchmarks/RESULTS.md); where ``k > d`` Hamerly stays (200,000 x 32, k=256: 0.36-0.39
against Elkan's 0.41-0.44), and Elkan's ``N x k`` bounds would outgrow the data."""

AUTO_BOUNDS_MIN_CLUSTERS = 64
"""Below this many clusters a Lloyd pass is cheap next to the bookkeeping of the bounds
(1,000,000 x 8, k=16: bounds 1.9x Lloyd's time per iteration; 200,000 x 32, k=256:
Hamerly 0.3x scikit-learn's converged fit; benchmarks/RESULTS.md)."""


def native_unsupported(data: KMeansData) -> str | None:
    """Why the native kernel cannot run on ``data`` (None when it can)."""
    if data.device.type != "cpu":
        return f"it runs on the CPU, the data is on {data.device}"
    if not data.dense_rows:
        return "it needs dense rows, the data is sparse"
    if data.acc_dtype not in (torch.float32, torch.float64):
        return f"it computes in float32 or float64, not {data.acc_dtype}"
    return _native.unavailable_reason()


def triton_unsupported(data: KMeansData) -> str | None:
    """Why the Triton kernels cannot run on ``data`` (None when they can)."""
    if not data.dense_rows:
        return "they need dense rows, the data is sparse"
    if data.acc_dtype == torch.float64:
        return "they compute in float32/float16/bfloat16, the data is float64"
    return _triton.unavailable_reason(data.device)


def resolve_backend(backend: str, data: KMeansData, n_clusters: int,
                    chunk_bytes: int | None) -> str:
    """Return the backend (``'torch'``, ``'native'`` or ``'triton'``) that runs on ``data``.

    ``'auto'`` takes the Triton kernels on CUDA when they can run, and on the CPU the
    native kernel whenever it can run and its per-thread float64 accumulators
    (``threads x (k d + k + 2)``) fit the chunk budget: it was faster at every shape
    measured (benchmarks/RESULTS.md). Otherwise torch, silently. An explicit
    ``'native'`` or ``'triton'`` that cannot run raises.
    """
    if backend == "torch":
        return backend
    checks = {"native": native_unsupported, "triton": triton_unsupported}
    if backend in checks:
        reason = checks[backend](data)
        if reason is not None:
            raise ValueError(f"backend={backend!r} cannot run: {reason}.")
        return backend
    if data.device.type == "cuda":
        if triton_unsupported(data) is not None:
            return "torch"
        problem = _triton.self_check(data.device, data.low_dtype or data.acc_dtype)
        if problem is not None:
            _warn_once(f"torchmeans: the Triton kernels are not used ({problem}); the torch "
                       "path runs instead (same results). Pass backend='torch' to silence.")
            return "torch"
        return "triton"
    if native_unsupported(data) is not None or data.low_dtype is not None:
        return "torch"
    accumulator_bytes = (torch.get_num_threads() * (n_clusters * data.n_features + n_clusters
                                                    + 2) * 8)
    return "native" if accumulator_bytes <= chunk_budget(data, chunk_bytes) else "torch"


def uses_direct_labels(backend: str, data: KMeansData, n_clusters: int,
                       chunk_bytes: int | None) -> bool:
    """Whether labels of ``data`` come from the native kernel's own scores.

    True where ``backend`` resolves to ``'native'`` (:func:`resolve_backend`) and
    :func:`~torchmeans.backends.native.kernel.lloyd_direct` takes rows of this width (up to 16
    features anywhere with FMA; any width on AVX2/AVX-512 CPUs).
    The fit's passes, its final assignment and predict follow this one rule.
    """
    if not _native.direct_applies(data.n_features):
        return False
    try:
        return resolve_backend(backend, data, n_clusters, chunk_bytes) == "native"
    except ValueError:  # predict with an explicit backend that cannot run on this data
        return False


def native_elkan_applies(algorithm: str, backend: str, n_features: int) -> bool:
    """Whether Elkan's passes run in the native kernel (:func:`_native.elkan_pass`).

    Where the (resolved) backend is native and the kernel scores rows of this width
    itself, i.e. where Lloyd's labels come from those scores: every pass of the fit,
    its first one included, then labels as a native Lloyd pass does.
    """
    return (algorithm == "elkan" and backend == "native"
            and _native.direct_applies(n_features))


@functools.cache
def _warn_once(message: str) -> None:
    warn(message, RuntimeWarning)


def _no_reduce(accumulator: Tensor) -> Tensor:
    return accumulator


def _no_gather(rows: Tensor) -> Tensor:
    return rows


Gather = Callable[[Tensor], Tensor]


class IterationStats(NamedTuple):
    """What one Lloyd iteration measured (returned as data, printed when verbose)."""

    iteration: int
    inertia: float
    """Inertia of the labels against the centers the iteration started from."""
    center_shift: float
    """Sum over clusters of the squared distance each center moved."""
    n_changed: int
    """Number of samples whose label changed."""
    n_empty: int
    """Number of clusters that were empty and relocated."""


class LloydResult(NamedTuple):
    """The outcome of one Lloyd run, with centers in the data's shifted space.

    ``labels`` are those of the last iteration (against the centers it started
    from); the caller makes the final assignment against ``centers``.
    """

    centers: Tensor
    labels: Tensor
    n_iter: int
    history: list[IterationStats]
    labels_are_final: bool = False
    """True when ``labels`` are already the nearest centers of ``centers``: the last
    iteration changed no label and left the centers bit-for-bit where they were."""


@dataclass
class RunState:
    """Where one Lloyd run stands after ``iteration`` iterations (shifted space).

    Everything the next iteration depends on: a run continued from it (``lloyd(...,
    start=state)``) goes on exactly as the uninterrupted one (checkpoints).
    """

    iteration: int
    centers: Tensor
    labels: Tensor
    sums: Tensor
    weights: Tensor
    incremental: bool
    history: list[IterationStats]


class _Accumulator(NamedTuple):
    sums: Tensor
    weights: Tensor
    partial_inertia: Tensor
    n_changed: Tensor


def _split(flat: Tensor, n_clusters: int, n_features: int) -> _Accumulator:
    sums, weights, scalars = flat.split([n_clusters * n_features, n_clusters, 2])
    return _Accumulator(sums.view(n_clusters, n_features), weights, scalars[0], scalars[1])


def accumulate(data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
               incremental: bool = False) -> Tensor:
    """One pass: assign every row, update ``labels`` in place, return the flat accumulator.

    The flat accumulator is ``[sums (k*d) | weights (k) | partial inertia | n changed]``,
    where the partial inertia lacks the constant ``sum(w * ||x||^2)``. With
    ``incremental=True`` the sums and weights are the *change* from the previous
    labels: each row whose label changed is added to its new cluster and
    subtracted from its old one, and rows that stayed cost nothing (late
    iterations move few rows). ``labels`` must then hold valid previous labels.
    """
    n_clusters, n_features = centers.shape
    flat = torch.zeros(n_clusters * n_features + n_clusters + 2, dtype=centers.dtype,
                       device=centers.device)
    acc = _split(flat, n_clusters, n_features)
    terms = center_terms(centers)
    buffer = score_buffer(data, centers, rows)
    for chunk in data.chunks(rows):
        chunk_labels = labels[chunk.start : chunk.stop]
        if incremental:
            moves = update_nearest(data, chunk, terms, buffer, chunk_labels)
            acc.n_changed.add_(moves.rows.numel())
            acc.partial_inertia.add_(weighted_sum(moves.partial_sq_dist, chunk.weight))
            data.move_rows(chunk, moves.rows, moves.old, moves.new, acc.sums, acc.weights)
        else:
            partial, new_labels = nearest_centers(data, chunk, terms, buffer)
            acc.n_changed.add_((chunk_labels != new_labels).sum())
            acc.partial_inertia.add_(weighted_sum(partial, chunk.weight))
            data.add_weighted_sums(chunk, new_labels, acc.sums, acc.weights)
            chunk_labels.copy_(new_labels)
    return flat


def accumulate_native(data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
                      incremental: bool = False) -> Tensor:
    """:func:`accumulate` with the compiled kernel after each chunk's GEMM (float64 result).

    Same scores (:func:`~torchmeans.core.assign.chunk_scores_into`), so the same
    labels; the sums are added per thread in float64. Where it applies
    (:func:`~torchmeans.backends.native.kernel.direct_applies`) the kernel computes the scores
    itself, summed in a BLAS kernel's order; :func:`uses_direct_labels` then makes
    predict use it too, so a fit's labels equal predict's on any BLAS.
    """
    n_clusters, n_features = centers.shape
    accumulators = _native.new_accumulators(n_clusters, n_features)
    terms = center_terms(centers)
    # Few features: the kernel computes the scores itself (no score block in memory).
    direct = _native.direct_applies(n_features)
    buffer = None if direct else score_buffer(data, centers, rows)
    transposed = transposed_layout(n_clusters)
    for chunk in data.chunks(direct_pass_rows(data, rows, n_clusters) if direct else rows):
        x, chunk_labels = chunk.x.contiguous(), labels[chunk.start : chunk.stop]
        if direct:
            _native.lloyd_direct(x, centers, terms.sq_norms, chunk.weight, chunk_labels,
                                 accumulators, incremental=incremental)
            continue
        scores = chunk_scores_into(data, chunk, terms, buffer)
        _native.lloyd_step(scores, x, chunk.weight, chunk_labels, accumulators,
                           transposed=transposed, incremental=incremental)
    return accumulators.sum(dim=0)


def accumulate_triton(data: KMeansData, centers: Tensor, labels: Tensor, rows: int, *,
                      incremental: bool = False) -> Tensor:
    """:func:`accumulate` with the fused Triton kernels (float64 result).

    Each chunk's nearest centers come from one fused distance + argmin kernel (no
    ``rows x k`` block in memory). float32 scores are summed in the kernel's own
    order, so a float32 near-tie can go the other way than in the torch path's GEMM
    (as between two BLAS libraries); low-precision scores are certified against the
    float32 torch path (:func:`~torchmeans.core.assign.certified_nearest`). The sums
    come from the deterministic sort-based reduction (incremental passes: the moved
    rows, added to their new clusters and removed from their old ones).
    """
    n_clusters, n_features = centers.shape
    flat = torch.zeros(n_clusters * n_features + n_clusters + 2, dtype=torch.float64,
                       device=centers.device)
    acc = _split(flat, n_clusters, n_features)
    terms = center_terms(centers)
    low = data.low_dtype
    centers_t = terms.transposed.to(low or centers.dtype)
    sq_norms = terms.sq_norms.float()
    for chunk in data.chunks(rows):
        x = chunk.x.contiguous()
        if low is None:  # float32, summed in the kernel's order (near-ties: see lloyd())
            partial, new_labels = _triton.nearest(x, centers_t, sq_norms)
        else:  # low-precision scores, certified: the float32 torch path's labels
            best, labels_fused, second = _triton.nearest(x.to(low), centers_t, sq_norms,
                                                         second=True)
            partial, new_labels = certified_nearest(
                data, chunk, terms, (best, second, labels_fused),
                product_dtype=low).values_and_labels
        chunk_labels = labels[chunk.start : chunk.stop]
        moved = chunk_labels != new_labels
        acc.n_changed.add_(moved.sum())
        acc.partial_inertia.add_(weighted_sum(partial, chunk.weight))
        if incremental:
            rows_moved = torch.nonzero(moved).squeeze(1)
            x_moved = x.index_select(0, rows_moved)
            weight = None if chunk.weight is None else chunk.weight.index_select(0, rows_moved)
            for cluster_of, sign in ((new_labels, 1), (chunk_labels, -1)):
                sums, weights = _triton.segment_sums(x_moved, cluster_of[rows_moved], weight,
                                                     n_clusters)
                acc.sums.add_(sums, alpha=sign)
                acc.weights.add_(weights, alpha=sign)
        else:
            sums, weights = _triton.segment_sums(x, new_labels, chunk.weight, n_clusters)
            acc.sums.add_(sums)
            acc.weights.add_(weights)
        chunk_labels.copy_(new_labels)
    return flat


LLOYD_PASSES = {"torch": accumulate, "native": accumulate_native, "triton": accumulate_triton}
"""The Lloyd pass of each resolved backend (same labels and sums, up to rounding)."""


def _average(sums: Tensor, weights: Tensor) -> Tensor:
    """Weighted means; an empty cluster sits on the heaviest cluster's mean (as scikit-learn).

    ``sums`` may carry leading batch dimensions (``(..., k, d)``, weights ``(..., k)``).
    """
    means = sums / weights.clamp(min=torch.finfo(weights.dtype).tiny)[..., None]
    heaviest = means.take_along_dim(weights.argmax(dim=-1, keepdim=True)[..., None], dim=-2)
    return torch.where((weights > 0)[..., None], means, heaviest)


def project_to_sphere(centers: Tensor, offset: Tensor) -> Tensor:
    """Spherical k-means' update: scale each center (unshifted) to unit norm, shift back.

    A center whose members sum to zero (opposite rows) stays at the origin.
    """
    unshifted = centers + offset
    norms = unshifted.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, unshifted / norms.clamp(min=torch.finfo(norms.dtype).tiny),
                       unshifted) - offset


def _relocate_empty_clusters(
    data: KMeansData, centers: Tensor, labels: Tensor, sums: Tensor, weights: Tensor, rows: int,
    gather: Gather = _no_gather,
) -> None:
    """Move each empty cluster to one of the samples farthest from their centers.

    As scikit-learn: the ``n_empty`` samples with the largest distance to their
    assigned (old) center are taken, farthest first, each removed from its
    cluster's sum and made the only member of an empty cluster. Nothing moves if
    every sample sits exactly on its center (fewer distinct points than
    clusters). Modifies ``sums`` and ``weights`` in place. ``gather`` concatenates
    each rank's candidates (distributed fits), which are then chosen identically.
    """
    empty = torch.nonzero(weights == 0).flatten()
    n_empty = empty.numel()
    best_dist = torch.empty(0, dtype=centers.dtype, device=centers.device)
    best_index = torch.empty(0, dtype=torch.int64, device=centers.device)
    for chunk in data.chunks(rows):
        chunk_labels = labels[chunk.start : chunk.stop]
        distances = data.sq_distances_to(chunk, centers, chunk_labels)
        candidates = torch.cat([best_dist, distances])
        indices = torch.cat([best_index, torch.arange(chunk.start, chunk.stop,
                                                      device=centers.device)])
        best_dist, order = candidates.topk(min(n_empty, candidates.numel()))
        best_index = indices[order]
    # Each rank's candidates: distance, row, weight and old label (one rank: its own).
    candidate_rows = data.take(best_index).to(sums.dtype)
    candidate_weight = data.sample_weight[best_index].to(weights.dtype)
    packed = gather(torch.cat([best_dist[:, None].to(sums.dtype), candidate_rows,
                               candidate_weight[:, None].to(sums.dtype),
                               labels[best_index][:, None].to(sums.dtype)], dim=1))
    if packed.shape[0] == 0:
        return
    order = packed[:, 0].argsort(descending=True, stable=True)[:n_empty]
    packed = packed[order]
    if not bool(packed[0, 0] > 0):
        return
    take = min(n_empty, packed.shape[0])
    empty = empty[:take]
    far_weight = packed[:take, -2].to(weights.dtype)
    weighted_rows = packed[:take, 1:-2] * far_weight[:, None]
    old = packed[:take, -1].long()
    before = weights[old]
    sums.index_add_(0, old, -weighted_rows)
    weights.index_add_(0, old, -far_weight)
    # A cluster whose every member left keeps a rounding residual of its weight
    # (non-unit weights): make it exactly empty instead of residual / residual.
    vanished = old[weights[old] <= before * 16 * torch.finfo(weights.dtype).eps]
    sums[vanished] = 0
    weights[vanished] = 0
    sums[empty] = weighted_rows
    weights[empty] = far_weight


def lloyd(
    data: KMeansData,
    centers: Tensor,
    *,
    max_iter: int = 300,
    tol: float = 0.0,
    chunk_bytes: int | None = None,
    reduce: Reducer = _no_reduce,
    verbose: bool = False,
    algorithm: str = "lloyd",
    backend: str = "torch",
    spherical: bool = False,
    start: RunState | None = None,
    on_iteration: Callable[[RunState], None] | None = None,
    gather: Gather = _no_gather,
) -> LloydResult:
    """Run Lloyd iterations from ``centers`` until convergence.

    Parameters
    ----------
    data : KMeansData
        The rows.
    centers : Tensor
        ``(k, n_features)`` initial centers in the data's shifted space, in the
        data's accumulation dtype. Not modified.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Absolute tolerance on the total squared center shift (scikit-learn's
        ``tol`` already multiplied by the mean feature variance).
    chunk_bytes : int, optional
        Working-memory budget per chunk.
    reduce : callable
        Applied once per iteration to the flat accumulator (identity here; an
        ``all_reduce`` for distributed data).
    verbose : bool
        Print each iteration to stdout (scikit-learn's lines).
    algorithm : {'lloyd', 'hamerly', 'yinyang', 'elkan'}
        The assignment pass: all distances, or the bound-based pass of
        :mod:`torchmeans.core.bounds` (same labels, same iterations, less work).
    backend : {'torch', 'native', 'triton'}
        How a Lloyd pass runs after its score GEMM (see :data:`BACKENDS`; resolved
        by :func:`resolve_backend`).
    spherical : bool
        Spherical k-means (``metric='cosine'``; the rows are unit vectors): each
        new center is scaled back to unit norm, and the reported inertia is the sum
        of cosine distances ``1 - x.c`` (half the squared Euclidean one).
    start : RunState, optional
        Continue a run from this state (from a checkpoint) instead of ``centers``.
    on_iteration : callable, optional
        Called with the :class:`RunState` after each iteration (checkpoints).
    gather : callable
        Concatenates a tensor over ranks (identity here): the candidates of the
        empty-cluster relocation in a distributed fit.

    Returns
    -------
    LloydResult
        Final centers, the last iteration's labels, the number of iterations
        run and per-iteration statistics.
    """
    n_clusters, n_features = centers.shape
    rows = chunk_rows_for(data, n_clusters, chunk_bytes)
    labels = torch.full((data.n_samples,), -1, dtype=torch.int64, device=data.device)
    first_iteration = 0
    # Running totals (sums, weights, inertia) in float64 where the device has it: they do
    # not drift as rows move in and out, and float32 inertias would overflow at 3e38.
    total_dtype = torch.float64 if supports_float64(data.device) else data.acc_dtype
    inertia_offset = reduce(wide_dot(data.sq_norms, None if data.unit_weights
                                     else data.sample_weight, total_dtype).reshape(1))[0]
    history: list[IterationStats] = []
    labels_are_final = False
    # Running per-cluster sums and weights. With unit weights, once few labels change,
    # a pass only adds the rows that moved (``incremental``); the totals are kept in
    # float64 so that adding and removing rows does not drift, and the weights stay
    # exact integer counts (so "empty" is exactly weight 0). After a relocation, or
    # with general weights, every pass recomputes the totals from all rows.
    sums = weights = torch.empty(0)
    incremental = False
    if start is not None:
        first_iteration, centers, incremental = start.iteration, start.centers, start.incremental
        labels, sums, weights = start.labels.clone(), start.sums.clone(), start.weights.clone()
        history = list(start.history)
    lloyd_pass = LLOYD_PASSES[backend]
    # Bound-based algorithms start with Lloyd passes and switch to bounds once few labels
    # move (see BOUNDS_AFTER_CHANGED): same labels either way, less time.
    bounded: list[BoundedPass] = []
    native_elkan = native_elkan_applies(algorithm, backend, n_features)
    last_changed = [data.n_samples if start is None else -1]

    def assignment_pass(centers: Tensor, labels: Tensor, incremental: bool) -> Tensor:
        if algorithm != "lloyd" and not bounded and last_changed[0] <= max(
                BOUNDS_AFTER_CHANGED * data.n_samples, BOUNDS_AFTER_ROWS):
            bounded.append(BoundedPass(data, center_groups(centers, algorithm, n_features),
                                       rows, exact_inertia=verbose, native=native_elkan))
        if bounded:
            return bounded[0](centers, labels, incremental)
        return lloyd_pass(data, centers, labels, rows, incremental=incremental)
    inertia_scale = 0.5 if spherical else 1.0

    def update(sums: Tensor, weights: Tensor) -> Tensor:
        means = _average(sums, weights).to(centers.dtype)
        return project_to_sphere(means, data.offset) if spherical else means

    for iteration in range(first_iteration, max_iter):
        flat = reduce(assignment_pass(centers, labels, incremental))
        acc = _split(flat, n_clusters, n_features)
        if incremental:
            sums += acc.sums
            weights += acc.weights
        else:
            sums = acc.sums.to(total_dtype, copy=True)
            weights = acc.weights.to(total_dtype, copy=True)
        new_centers = update(sums, weights)
        shift = (new_centers - centers).square().sum()
        n_changed, n_empty, shift_value, inertia = torch.stack(
            [acc.n_changed.to(total_dtype), (weights == 0).sum().to(total_dtype),
             shift.to(total_dtype),
             (acc.partial_inertia.to(total_dtype) + inertia_offset).clamp(min=0)]
        ).tolist()
        if n_empty:
            _relocate_empty_clusters(data, centers, labels, sums, weights, rows, gather)
            new_centers = update(sums, weights)
            shift_value = float((new_centers - centers).square().sum())
        # After the first pass (all labels new) the labels are valid; go incremental
        # unless more than half of them just moved (then a full pass is cheaper).
        incremental = data.unit_weights and not n_empty and (
            iteration == 0 or 2 * n_changed <= data.n_samples
        )
        last_changed[0] = int(n_changed)
        stats = IterationStats(iteration, inertia * inertia_scale, shift_value, int(n_changed),
                               int(n_empty))
        history.append(stats)
        if verbose:  # scikit-learn's words, on stdout as scikit-learn prints them
            print(f"Iteration {iteration}, inertia {stats.inertia}")
        if n_changed == 0:
            # Triton's float32 labels may differ from predict's (torch) on near-ties:
            # the fit's labels then come from a final torch assignment.
            labels_are_final = backend != "triton" and bool(torch.equal(new_centers, centers))
        centers = new_centers
        if n_changed == 0:
            if verbose:
                print(f"Converged at iteration {iteration}: strict convergence.")
            break
        if shift_value <= tol:
            if verbose:
                print(f"Converged at iteration {iteration}: center shift {shift_value} within "
                      f"tolerance {tol}.")
            break
        if on_iteration is not None:  # a run that goes on: its state may be checkpointed
            on_iteration(RunState(iteration + 1, centers, labels, sums, weights, incremental,
                                  history))
    return LloydResult(centers, labels, len(history), history, labels_are_final)
