"""Lloyd's algorithm: assign -> accumulate -> reduce -> update -> repair empty clusters.

Each iteration makes one pass over the data (:class:`~torchmeans.data.KMeansData`)
and fills one flat accumulator per pass: the weighted per-cluster sums, the
per-cluster weights, the partial inertia and the number of changed labels. The
accumulator is handed to ``reduce`` once per iteration; that single call is
where a distributed fit sums the accumulators of all ranks. The host reads the
few scalars it needs to decide on convergence in one synchronisation per
iteration.

The update itself (:func:`update_centers`, :func:`relocate_empty_clusters`,
:func:`center_shift`, :func:`converged`) is written over leading batch dimensions: the
single loop (:func:`lloyd`) and the loop over many independent problems
(:func:`batched_lloyd`, the backend's ``batched_pass``) run the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchmeans.backends import get_backend
from torchmeans.backends.base import Backend
from torchmeans.core.accumulate import Accumulator
from torchmeans.core.assign import chunk_rows_for
from torchmeans.core.bounds import BoundedPass, center_groups
from torchmeans.data.base import KMeansData, supports_float64, wide_dot
from torchmeans.data.batched import ProblemBatch
from torchmeans.data.dense import DenseData

__all__ = [
    "ALGORITHMS",
    "IterationStats",
    "LloydResult",
    "average",
    "batched_lloyd",
    "center_shift",
    "converged",
    "farthest_rows",
    "lloyd",
    "project_to_sphere",
    "relocate_empty_clusters",
    "resolve_algorithm",
    "update_centers",
]

ALGORITHMS = ("lloyd", "elkan", "hamerly", "yinyang", "auto")
"""``algorithm`` values: Lloyd, the bound-based variants (``torchmeans.core.bounds``), or auto."""


def resolve_algorithm(algorithm: str, data: KMeansData, n_clusters: int,
                      backend: Backend | None = None) -> str:
    """Return the algorithm that runs for ``algorithm='auto'`` (others are returned as given).

    All algorithms give the same result; ``'auto'`` picks the fastest measured in
    benchmarks/RESULTS.md ("converged fits"): the bound-based passes pay once
    iterations move few samples, which is most of a converging fit. Where the backend
    computes the scores itself (the native kernel: ``backend.own_scores``) with few features
    (``AUTO_DIRECT_LLOYD_MAX_FEATURES``), a Lloyd pass costs less than the bounds'
    bookkeeping at every k measured; with more, Elkan's native pass (center by center)
    wins wherever its ``N x k`` bounds are no larger than the data (``k <= d``; from
    ``AUTO_BOUNDS_MIN_CLUSTERS`` clusters, as every bound-based choice).
    """
    if algorithm != "auto":
        return algorithm
    direct = backend is not None and backend.own_scores(data)
    if n_clusters < AUTO_BOUNDS_MIN_CLUSTERS or (
            direct and data.n_features <= AUTO_DIRECT_LLOYD_MAX_FEATURES):
        return "lloyd"
    if (data.dense_rows and not data.streamed and n_clusters <= data.n_features
            and (direct or data.n_features >= AUTO_ELKAN_MIN_FEATURES)):
        return "elkan"
    return "hamerly"


AUTO_DIRECT_LLOYD_MAX_FEATURES = 16
"""Up to this many features, Lloyd with the native kernel's own scores beats the bounds at
every k measured: its pass costs less than their bookkeeping. Above, the bounds skip enough
of the tiled kernel's work to pay (benchmarks/RESULTS.md, "Converged fits from the same
init" and "Figures moved from docstrings")."""

BOUNDS_AFTER_CHANGED = 0.01
"""Bound-based passes start once at most this fraction of the labels (or
``BOUNDS_AFTER_ROWS`` rows, whichever is more) changed in the last iteration; before, Lloyd
passes run (with the resolved backend: the native kernel on the CPU). Early on, centers move
far, the bounds loosen at once and most rows fail them, so a bounded pass costs more than a
Lloyd pass and whole fits are slower with bounds from the start (benchmarks/RESULTS.md,
"Figures moved from docstrings"). A resumed fit starts with bounds."""

BOUNDS_AFTER_ROWS = 64
"""Small data switch to bounds at once (so tests on small data exercise the bounds)."""

AUTO_ELKAN_MIN_FEATURES = 256
"""With torch's passes (GEMM-scored recomputation: GPUs, ``backend='torch'``), from this
many features (and no more clusters than features, so that Elkan's ``n_samples x k``
bounds are no larger than the data; dense rows in memory only: sparse or streamed data
would not bound them) ``'auto'`` runs Elkan: its per-center bounds hold where Hamerly's
single one fails in high dimensions; in fewer dimensions Hamerly is faster. With the native
kernel (``direct``) Elkan tests center by center and wins at any width above
``AUTO_DIRECT_LLOYD_MAX_FEATURES`` where ``k <= d``; where ``k > d`` Hamerly stays, and
Elkan's ``N x k`` bounds would outgrow the data (benchmarks/RESULTS.md, "Converged fits
from the same init" and "Figures moved from docstrings")."""

AUTO_BOUNDS_MIN_CLUSTERS = 64
"""Below this many clusters a Lloyd pass is cheap next to the bookkeeping of the bounds
(benchmarks/RESULTS.md, "Figures moved from docstrings")."""


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
    distances: Tensor | None = None
    """Where labels are final and the backend's run computed them: the rows' exact squared
    distances to their centers (the inertia's terms, :meth:`Backend.sq_distances`'s)."""


def as_returned(centers: Tensor, offset: Tensor) -> Tensor:
    """Return shifted centers as ``predict`` sees them: ``(centers + offset) - offset``.

    A fit returns ``centers + offset``, which ``predict`` shifts back; the round trip moves
    about a third of the coordinates by an ulp, and a second one moves none. Lloyd's
    updates pass through it, so the labels of the last pass are those ``predict`` gives
    against the returned centers (the fit's final assignment is then not needed), and
    the returned centers are the same as without it.
    """
    return (centers + offset) - offset


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


def average(sums: Tensor, weights: Tensor) -> Tensor:
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


def update_centers(sums: Tensor, weights: Tensor, dtype: torch.dtype, *,
                   offset: Tensor | None = None, spherical: bool = False,
                   every_weight_normal: bool = False) -> Tensor:
    """Lloyd's update: the accumulator's weighted means as centers in ``dtype``.

    ``sums`` ``(..., k, d)`` and ``weights`` ``(..., k)``: leading dimensions are
    independent problems (:func:`batched_lloyd`). Empty clusters follow :func:`average`
    until they are relocated; spherical k-means scales each center back to unit norm.
    With ``offset`` (the data's shift) the centers are round-tripped through it
    (:func:`as_returned`), so they are those ``predict`` sees; batched problems keep their
    shifted centers for ``predict`` and pass none. ``every_weight_normal`` (every weight at
    least ``tiny``: the caller knows it from host values) takes the plain quotient, which
    is then what :func:`average` computes, with fewer operations.
    """
    means = sums / weights[..., None] if every_weight_normal else average(sums, weights)
    means = means.to(dtype)
    if spherical:
        means = project_to_sphere(means, means.new_zeros(()) if offset is None else offset)
    return means if offset is None else as_returned(means, offset)


def center_shift(new_centers: Tensor, centers: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Sum over clusters of the squared distance each center moved: ``(...)`` per problem.

    ``dtype``: the differences are widened to it before squaring (batched problems sum
    their shifts in float64).
    """
    moved = new_centers - centers
    return (moved if dtype is None else moved.to(dtype)).square().sum(dim=(-2, -1))


def converged(n_changed: Tensor | float, shift: Tensor | float, tol: Tensor | float) -> Any:
    """scikit-learn's stopping rule: no label changed, or the center shift within ``tol``.

    ``tol`` is the absolute tolerance (``tol`` times the mean feature variance). Host
    numbers give a bool; tensors (one entry per problem) an elementwise bool tensor.
    """
    return (n_changed == 0) | (shift <= tol)


def farthest_rows(data: KMeansData, centers: Tensor, labels: Tensor, n_empty: int, rows: int,
                  dtype: torch.dtype, gather: Gather | None = None) -> Tensor:
    """Return the ``n_empty`` rows farthest from their assigned centers, farthest first.

    Returns ``(m, d + 3)`` rows ``[distance^2, row (d), weight, old label]`` in ``dtype``,
    ``m <= n_empty``: the candidates of :func:`relocate_empty_clusters`, as scikit-learn
    picks them. Ties keep the order of ``topk`` over the chunks, then of the ranks.
    ``gather`` concatenates each rank's candidates (distributed fits: every rank then
    holds the same ones).
    """
    gather = gather or data.collective.gather
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
    candidate_rows = data.take(best_index).to(dtype)
    candidate_weight = data.sample_weight[best_index].to(dtype)
    packed = gather(torch.cat([best_dist[:, None].to(dtype), candidate_rows,
                               candidate_weight[:, None], labels[best_index][:, None].to(dtype)],
                              dim=1))
    return packed[packed[:, 0].argsort(descending=True, stable=True)[:n_empty]]


def relocate_empty_clusters(sums: Tensor, weights: Tensor, farthest: Tensor) -> None:
    """Move each empty cluster to one of the rows farthest from their centers (in place).

    As scikit-learn: the ``i``-th empty cluster (in index order) takes the ``i``-th row of
    ``farthest`` (:func:`farthest_rows`), which leaves its old cluster's sum and weight.
    Nothing moves where every row sits exactly on its center (the farthest distance is 0:
    fewer distinct rows than clusters). A cluster whose every member left keeps a rounding
    residual of its weight (non-unit weights): it is made exactly empty.

    ``sums`` ``(..., k, d)`` and ``weights`` ``(..., k)`` are contiguous, leading
    dimensions independent problems, each with its ``(m, d + 3)`` rows in ``farthest``
    ``(..., m, d + 3)``; a problem with fewer candidates pads them with distance ``-1``.
    """
    n_clusters, n_features = sums.shape[-2:]
    all_sums, all_weights = sums.view(-1, n_features), weights.view(-1)
    farthest = farthest.reshape(-1, *farthest.shape[-2:])
    empty = weights.view(-1, n_clusters) == 0
    n_empty = empty.sum(dim=1)
    slots = torch.arange(farthest.shape[1], device=sums.device)
    moves = ((farthest[:, :, 0] >= 0) & (farthest[:, :1, 0] > 0)
             & (slots < n_empty[:, None]))
    problem, slot = torch.nonzero(moves, as_tuple=True)
    if problem.numel() == 0:
        return
    # The ``slot``-th empty cluster of each problem: the empty (problem, cluster) pairs
    # come in row-major order, each problem's from ``first[problem]`` on.
    empty_clusters = torch.nonzero(empty, as_tuple=True)[1]
    first = n_empty.cumsum(dim=0) - n_empty
    target = problem * n_clusters + empty_clusters[first[problem] + slot]
    moved = farthest[problem, slot]
    far_weight = moved[:, -2].to(weights.dtype)
    weighted_rows = moved[:, 1:-2] * far_weight[:, None]
    old = problem * n_clusters + moved[:, -1].long()
    before = all_weights[old]
    all_sums.index_add_(0, old, -weighted_rows)
    all_weights.index_add_(0, old, -far_weight)
    vanished = old[all_weights[old] <= before * 16 * torch.finfo(weights.dtype).eps]
    all_sums[vanished] = 0
    all_weights[vanished] = 0
    all_sums[target] = weighted_rows
    all_weights[target] = far_weight


def lloyd(
    data: KMeansData,
    centers: Tensor,
    *,
    max_iter: int = 300,
    tol: float = 0.0,
    backend: Backend | str = "torch",
    chunk_bytes: int | None = None,
    verbose: bool = False,
    algorithm: str = "lloyd",
    spherical: bool = False,
    start: RunState | None = None,
    on_iteration: Callable[[RunState], None] | None = None,
) -> LloydResult:
    """Run Lloyd iterations from ``centers`` until convergence.

    Parameters
    ----------
    data : KMeansData
        The rows. A distributed fit's data carries its collective (``data.collective``):
        each iteration's accumulator is summed over ranks in one ``all_reduce``, and the
        candidates of the empty-cluster relocation are gathered.
    centers : Tensor
        ``(k, n_features)`` initial centers in the data's shifted space, in the
        data's accumulation dtype. Not modified.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Absolute tolerance on the total squared center shift (scikit-learn's
        ``tol`` already multiplied by the mean feature variance).
    backend : Backend or str
        Runs the Lloyd passes (and Elkan's, where it has them; a name: that registered
        backend, which must run on ``data``; see :func:`torchmeans.backends.resolve_backend`).
    chunk_bytes : int, optional
        Working-memory budget per chunk.
    verbose : bool
        Print each iteration to stdout (scikit-learn's lines).
    algorithm : {'lloyd', 'hamerly', 'yinyang', 'elkan'}
        The assignment pass: all distances, or the bound-based pass of
        :mod:`torchmeans.core.bounds` (same labels, same iterations, less work).
    spherical : bool
        Spherical k-means (``metric='cosine'``; the rows are unit vectors): each
        new center is scaled back to unit norm, and the reported inertia is the sum
        of cosine distances ``1 - x.c`` (half the squared Euclidean one).
    start : RunState, optional
        Continue a run from this state (from a checkpoint) instead of ``centers``.
    on_iteration : callable, optional
        Called with the :class:`RunState` after each iteration (checkpoints).

    Returns
    -------
    LloydResult
        Final centers, the last iteration's labels, the number of iterations
        run and per-iteration statistics.
    """
    reduce, gather = data.collective.sum, data.collective.gather
    if isinstance(backend, str):
        backend = get_backend(backend)
    n_clusters, n_features = centers.shape
    first_iteration = 0
    # Running totals (sums, weights, inertia) in float64 where the device has it: they do
    # not drift as rows move in and out, and float32 inertias would overflow at 3e38.
    total_dtype = torch.float64 if supports_float64(data.device) else data.acc_dtype
    inertia_offset = reduce(wide_dot(data.sq_norms, None if data.unit_weights
                                     else data.sample_weight, total_dtype).reshape(1))[0]
    history: list[IterationStats] = []
    labels_are_final = False
    inertia_scale = 0.5 if spherical else 1.0
    # On the CPU the iteration's scalars are read as host floats (no device op per scalar:
    # the fixed cost of a small fit); elsewhere they come back in one stacked transfer.
    on_host = data.device.type == "cpu"
    host_inertia_offset = float(inertia_offset) if on_host else 0.0
    if start is None and on_host and not (spherical or verbose):
        # A small problem: the backend may run every iteration in one call; it hands back
        # a pass that leaves a cluster empty, which the loop below then relocates. Whatever
        # the algorithm: the bounded ones change the work, never the labels or iterations,
        # and at this size bounds save nothing (so every algorithm gives the same centers).
        # Checkpointed fits too (a run that reaches max_iter is saved once, at its end: the
        # call takes milliseconds), so that a fit with a checkpoint is the one without, to
        # the bit; a resumed state goes on in the loop (its first pass sums all rows).
        run = backend.lloyd_run(data, centers, max_iter=max_iter, tol=tol,
                                inertia_offset=host_inertia_offset)
        if run is not None:
            history = [IterationStats(i, inertia * inertia_scale, shift, int(changed), 0)
                       for i, (inertia, shift, changed, _) in enumerate(run.history.tolist())]
            if run.outcome == 1 or len(history) >= max_iter:  # converged, or max_iter run
                if run.outcome != 1 and on_iteration is not None:  # as the loop's last call
                    on_iteration(RunState(len(history), run.centers, run.labels, run.sums,
                                          run.weights, False, history))
                # Final only if the pass scored with the norms nearest() computes.
                final = run.labels_final and backend.exact_pass_labels and torch.equal(
                    run.sq_norms, run.centers.square().sum(dim=1))
                return LloydResult(run.centers, run.labels, len(history), history, final,
                                   run.distances if final else None)
            # Handed back (an empty cluster, or more iterations than one call runs): the
            # loop goes on from where the run stands, summing all rows at its first pass.
            start = RunState(len(history), run.centers, run.labels, torch.empty(0),
                             torch.empty(0), False, history)
    rows = chunk_rows_for(data, n_clusters, chunk_bytes)
    labels = torch.full((data.n_samples,), -1, dtype=torch.int64, device=data.device)
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
    # Bound-based algorithms start with Lloyd passes and switch to bounds once few labels
    # move (see BOUNDS_AFTER_CHANGED): same labels either way, less time.
    bounded: list[BoundedPass] = []
    last_changed = [data.n_samples if start is None else -1]
    # Whether the last pass's labels are the ones backend.nearest gives (the final
    # assignment's): a Lloyd pass's where exact_pass_labels; a bounded pass's where it
    # scores as nearest does (the GEMM, or the backend's own Elkan pass).
    bounded_labels_exact = (algorithm == "elkan" and backend.runs_elkan(data)) or (
        not backend.own_scores(data))
    pass_labels_exact = [backend.exact_pass_labels]

    def assignment_pass(centers: Tensor, labels: Tensor, incremental: bool) -> Tensor:
        if algorithm != "lloyd" and not bounded and last_changed[0] <= max(
                BOUNDS_AFTER_CHANGED * data.n_samples, BOUNDS_AFTER_ROWS):
            bounded.append(BoundedPass(
                data, center_groups(centers, algorithm, n_features), rows, backend,
                own_elkan=algorithm == "elkan" and backend.runs_elkan(data),
                exact_inertia=verbose))
            pass_labels_exact[0] = bounded_labels_exact
        if bounded:
            return bounded[0](centers, labels, incremental)
        return backend.lloyd_pass(data, centers, labels, rows, incremental=incremental)
    tiny = torch.finfo(total_dtype).tiny

    def update(sums: Tensor, weights: Tensor, every_weight_normal: bool = False) -> Tensor:
        return update_centers(sums, weights, centers.dtype, offset=data.offset,
                              spherical=spherical, every_weight_normal=every_weight_normal)

    for iteration in range(first_iteration, max_iter):
        flat = reduce(assignment_pass(centers, labels, incremental))
        pass_sums, pass_weights, scalars = Accumulator.parts(flat, n_clusters, n_features)
        if incremental:
            sums += pass_sums
            weights += pass_weights
        else:
            sums = pass_sums.to(total_dtype, copy=True)
            weights = pass_weights.to(total_dtype, copy=True)
        if on_host:
            partial_inertia, n_changed = scalars.tolist()
            host_weights = weights.tolist()
            n_empty = host_weights.count(0.0)
            new_centers = update(sums, weights, every_weight_normal=min(host_weights) >= tiny)
            shift_value = float(center_shift(new_centers, centers))
            inertia = max(partial_inertia + host_inertia_offset, 0.0)  # (NaN stays NaN)
        else:
            new_centers = update(sums, weights)
            shift = center_shift(new_centers, centers)
            n_changed, n_empty, shift_value, inertia = torch.stack(
                [scalars[1].to(total_dtype), (weights == 0).sum().to(total_dtype),
                 shift.to(total_dtype),
                 (scalars[0].to(total_dtype) + inertia_offset).clamp(min=0)]
            ).tolist()
        if n_empty:
            relocate_empty_clusters(sums, weights, farthest_rows(
                data, centers, labels, int(n_empty), rows, sums.dtype, gather))
            new_centers = update(sums, weights)
            shift_value = float(center_shift(new_centers, centers))
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
        if n_changed == 0:  # (else the caller's final assignment labels the rows)
            labels_are_final = pass_labels_exact[0] and bool(torch.equal(new_centers, centers))
        centers = new_centers
        if converged(n_changed, shift_value, tol):
            if verbose and n_changed == 0:
                print(f"Converged at iteration {iteration}: strict convergence.")
            elif verbose:
                print(f"Converged at iteration {iteration}: center shift {shift_value} within "
                      f"tolerance {tol}.")
            break
        if on_iteration is not None:  # a run that goes on: its state may be checkpointed
            on_iteration(RunState(iteration + 1, centers, labels, sums, weights, incremental,
                                  history))
    return LloydResult(centers, labels, len(history), history, labels_are_final)


def batched_lloyd(problems: ProblemBatch, source: Tensor, centers: Tensor, *, max_iter: int,
                  tol: float, spherical: bool, deterministic: bool,
                  backend: Backend | None = None) -> tuple[Tensor, Tensor]:
    """Run Lloyd on many independent problems at once, each until it converges.

    ``centers`` ``(P, k, d)`` are the initial centers of the problems ``source`` (each an
    index into ``problems``: restarts read the same rows), in their shifted space; they
    are updated in place and returned with each problem's iteration count. Every pass is
    :meth:`backend.batched_pass <torchmeans.backends.base.Backend.batched_pass>` (default: the
    torch backend's) over the problems still running; the
    update, the relocation of empty clusters and the stopping rule are the single fit's
    (:func:`update_centers`, :func:`relocate_empty_clusters`, :func:`converged`, with
    ``tol`` scaled by each problem's variance), so each problem ends as :func:`lloyd`
    would on it alone, up to rounding (no round trip through the offset, own reduction
    order). A problem that stops costs nothing in later passes.
    """
    backend = backend or get_backend("torch")
    n_problems, n_clusters, n_features = centers.shape
    labels = torch.full((n_problems, problems.x.shape[1]), -1, dtype=torch.int64,
                        device=problems.x.device)
    n_iter = torch.zeros(n_problems, dtype=torch.int64, device=problems.x.device)
    tolerance = (tol * problems.variance)[source]
    active = torch.arange(n_problems, device=problems.x.device)
    wide = problems.variance.dtype
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        run_source, old_centers = source[active], centers[active]
        new_labels, flat = backend.batched_pass(problems, run_source, old_centers,
                                                labels[active], deterministic)
        accumulator = Accumulator.split(flat, n_clusters, n_features)
        sums, weights = accumulator.sums.to(wide), accumulator.weights.to(wide)
        if bool((weights == 0).any()):
            _relocate_in_problems(problems, run_source, old_centers, new_labels, sums, weights)
        new_centers = update_centers(sums, weights, centers.dtype, spherical=spherical)
        shift = center_shift(new_centers, old_centers, wide)
        labels[active] = new_labels
        centers[active] = new_centers
        n_iter[active] += 1
        active = active[~converged(accumulator.n_changed, shift, tolerance[active])]
    return centers, n_iter


def _relocate_in_problems(problems: ProblemBatch, source: Tensor, centers: Tensor,
                          labels: Tensor, sums: Tensor, weights: Tensor) -> None:
    """:func:`relocate_empty_clusters` for the problems that have empty clusters (in place).

    Each one's farthest rows are found among its valid rows exactly as a single fit on
    those rows finds them (:func:`farthest_rows`; rare, so problem by problem); the moves
    are then made for all of them at once.
    """
    which = torch.nonzero((weights == 0).any(dim=1)).flatten()
    n_features = centers.shape[2]
    farthest = []
    for p in which.tolist():
        valid = problems.valid[source[p]]
        rows = DenseData(problems.x[source[p]][valid], problems.weight[source[p]][valid],
                         torch.zeros_like(problems.offset[0]), shifted=True)
        farthest.append(farthest_rows(rows, centers[p], labels[p][valid],
                                      int((weights[p] == 0).sum()), rows.n_samples, sums.dtype))
    padded = sums.new_full((which.numel(), max(f.shape[0] for f in farthest), n_features + 3),
                           -1.0)
    for i, rows_of_problem in enumerate(farthest):
        padded[i, : rows_of_problem.shape[0]] = rows_of_problem
    some_sums, some_weights = sums[which], weights[which]
    relocate_empty_clusters(some_sums, some_weights, padded)
    sums[which] = some_sums
    weights[which] = some_weights
