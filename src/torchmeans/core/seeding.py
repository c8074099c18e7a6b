"""Initial centers: greedy k-means++, random rows, a given array, or a callable.

One k-means++ with three strategies, which share its two choices: the candidates are
drawn by ``w D^2`` with :func:`choose_candidates`, and the winner of a step is the
candidate leaving the least potential, :func:`best_candidate` (summed in the fixed order
of :func:`fixed_order_potentials`; where the native kernel judges the candidates, its
seeding steps apply the same rule in C, with their own fixed per-tile order).

- **greedy** (:func:`greedy_kmeans_plusplus_centers`, small problems, up to
  ``GREEDY_SEEDING_MAX_WORK``): scikit-learn's greedy k-means++ on all rows, every uniform
  drawn at once, potentials summed in row order (so the native one-call kernel and torch
  ops break exact ties alike); above that size, the blocked strategy with every row
  evaluated is greedy k-means++ too (below ``BLOCKED_SEEDING_MIN_WORK``);
- **blocked** (:func:`blocked_kmeans_plusplus_centers`): ``D^2`` over all rows brought up
  to date once per block of centers, candidates exact draws by rejection from a pool,
  compared on a fixed subsample for large problems;
- **batched** (:func:`batched_kmeans_plusplus_centers`): greedy k-means++ for many
  independent problems at once, the problems a leading dimension of every operation.

Every sampler draws from a local ``torch.Generator`` on the data's device, so the
same seed gives the same centers on the same device, and no global random state
is touched. The draws do not depend on the data's dtype, layout or the thread count:
uniform numbers are drawn in float64 (where the device has it) and compared with
float64 cumulative weights; k-means++ has one random stream whichever kernel judges
its candidates, and their potentials are summed in an order fixed by the shapes alone,
the block sums in float64 (:func:`fixed_order_potentials`). float32 and float64 copies of the same
data therefore draw the same seeds, unless a draw falls within rounding of a boundary
(probability of order ``1e-7 * sqrt(n_samples)`` per draw).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from torchmeans.backends import seeding_backend
from torchmeans.backends.torch import center_terms, chunk_scores
from torchmeans.core.assign import chunk_budget, chunk_rows_for
from torchmeans.data.base import KMeansData, supports_float64
from torchmeans.data.batched import ProblemBatch, block_sizes, groups, select

__all__ = [
    "WeightedRows",
    "batched_kmeans_plusplus_centers",
    "batched_random_centers",
    "best_candidate",
    "blocked_kmeans_plusplus_centers",
    "choose_candidates",
    "greedy_kmeans_plusplus_centers",
    "kmeans_parallel_centers",
    "kmeans_plusplus_centers",
    "random_centers",
    "weighted_sample",
]

PARALLEL_ROUNDS = 5
"""Default k-means|| rounds: Bahmani et al. (2012) found 5 rounds with ``l = 2k`` enough
for seeds as good as k-means++'s."""
PARALLEL_RECLUSTER_ITERATIONS = 30
"""Lloyd iterations on the weighted candidates after their k-means++ (as Spark MLlib)."""


def _sq_distances(data: KMeansData, points: Tensor, rows: int) -> Tensor:
    """Exact-enough squared distances from every row to each of ``points``: ``(p, n)``."""
    terms = center_terms(points)
    out = torch.empty(points.shape[0], data.n_samples, dtype=points.dtype, device=data.device)
    for chunk in data.chunks(rows):
        scores = chunk_scores(data, chunk, terms).add_(chunk.sq_norms[:, None]).clamp_(min=0)
        out[:, chunk.start : chunk.stop] = scores.T
    return out


def _candidate_potentials(
    data: KMeansData, candidates: Tensor, closest: Tensor, rows: int
) -> Tensor:
    """Return ``sum_i w_i min(closest_i, d(x_i, c))`` per candidate ``c``, chunk by chunk."""
    terms = center_terms(candidates)
    potentials = torch.zeros(candidates.shape[0], dtype=draw_dtype(data.device),
                             device=data.device)
    for chunk in data.chunks(rows):
        scores = chunk_scores(data, chunk, terms).add_(chunk.sq_norms[:, None]).clamp_(min=0)
        scores = torch.minimum(scores, closest[chunk.start : chunk.stop, None])
        potentials += fixed_order_potentials(scores.T, chunk.weight)
    return potentials


POTENTIAL_BLOCK = 4096
"""Rows summed together first by :func:`fixed_order_potentials`."""


def draw_dtype(device: torch.device) -> torch.dtype:
    """Return the dtype of the seeding's uniform draws and weight sums (float64 if supported).

    One dtype whatever the data's, so float32 and float64 data draw the same numbers.
    """
    return torch.float64 if supports_float64(device) else torch.float32


def fixed_order_potentials(distances: Tensor, weight: Tensor | None) -> Tensor:
    """``sum_i w_i distances[..., j, i]`` for each row ``j``, in an order fixed by the shapes.

    Blocks of ``POTENTIAL_BLOCK`` columns are summed first, then the blocks in order (in
    float64), so the result depends on the shapes only, not on the thread count (a BLAS
    GEMV or a parallel reduction splits its sums by thread): the same candidates get the
    same potentials, and k-means++ the same winner, with 1 thread or many. Leading
    dimensions are independent problems, ``weight`` ``(..., n)`` one row per problem.
    """
    dtype = draw_dtype(distances.device)
    if weight is not None:
        distances = distances * weight.to(distances.dtype).unsqueeze(-2)
    n_columns = distances.shape[-1]
    whole = n_columns - n_columns % POTENTIAL_BLOCK
    # Each block summed in the distances' dtype (one vectorised pass), the block sums in
    # float64 (a sequential scan): both orders are fixed by the shapes.
    total = distances[..., whole:].sum(dim=-1).to(dtype)  # the last, partial block
    if whole:  # (a view of the whole blocks: no copy)
        blocks = distances[..., :whole].reshape(*distances.shape[:-1], -1,
                                                POTENTIAL_BLOCK).sum(dim=-1)
        total = blocks.to(dtype).cumsum(dim=-1)[..., -1] + total
    return total


def best_candidate(distances: Tensor, closest: Tensor, weight: Tensor | None, *,
                   in_row_order: bool = False) -> Tensor:
    """Index of the candidate leaving the least potential: every strategy's choice of winner.

    ``distances`` ``(..., trials, n)`` holds each candidate's squared distances to the
    rows, ``closest`` ``(..., n)`` the rows' current ``D^2``; ``distances`` is lowered to
    ``closest`` in place (each candidate's ``D^2`` after it is chosen) and the potentials
    ``sum_i w_i min(D_i^2, d(x_i, c)^2)`` are summed by :func:`fixed_order_potentials`, or
    with ``in_row_order`` one row after the other (a scan, in :func:`draw_dtype`: the order
    of the greedy seeding's one-call kernel, so that the two break exact ties alike: two
    candidates that are each other's nearest rows leave the same potential). The first
    candidate wins ties. Leading dimensions are independent problems.
    """
    torch.minimum(distances, closest.unsqueeze(-2), out=distances)
    if in_row_order:
        terms = distances if weight is None else distances * weight.unsqueeze(-2)
        return terms.to(draw_dtype(distances.device)).cumsum(dim=-1)[..., -1].argmin(dim=-1)
    return fixed_order_potentials(distances, weight).argmin(dim=-1)


def default_local_trials(n_clusters: int) -> int:
    """scikit-learn's number of candidates per greedy k-means++ step: ``2 + ln k``."""
    return 2 + int(math.log(n_clusters))


BLOCKED_SEEDING_MIN_WORK = 1 << 27
"""From ``n_samples * n_clusters`` this large (e.g. 200,000 rows and k=1024; not 1,000,000
and k=64) :func:`kmeans_plusplus_centers` compares its candidates on a subsample: a step
of the exact greedy seeding reads every row for ``n_local_trials`` candidates, so the
whole seeding costs at least ``n_local_trials`` Lloyd iterations of arithmetic, and far
more of memory traffic (benchmarks/RESULTS.md, "k-means++ seeding: cost and quality" and
"Figures moved from docstrings")."""
BLOCKED_SEEDING_MAX_BLOCK = 128
"""Most centers chosen between two passes over all rows (blocks double up to this)."""
EVALUATION_MAX_ROWS = 1 << 20
"""Most rows on which the blocked seeding compares its candidates..."""
EVALUATION_MAX_BYTES = 1 << 28
"""... and most memory they take (a copy of them is held, dense)."""
EVALUATION_ROWS_PER_CLUSTER = 32
"""Fewest rows per cluster on which the blocked seeding compares its candidates: with fewer,
the seeds' potential drifts above greedy k-means++'s on all rows; from about this many it
stays within noise of it (benchmarks/RESULTS.md, "Figures moved from docstrings")."""


def kmeans_plusplus_centers(
    data: KMeansData,
    n_clusters: int,
    generator: torch.Generator,
    *,
    n_local_trials: int | None = None,
    chunk_bytes: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy k-means++ seeding (scikit-learn's algorithm).

    Each new center is the best, by resulting potential, of ``n_local_trials`` rows
    sampled with probability proportional to ``w * D(x)^2``. Small problems (``n k d``
    up to ``GREEDY_SEEDING_MAX_WORK``, single-process data) run
    :func:`greedy_kmeans_plusplus_centers`; the others
    :func:`blocked_kmeans_plusplus_centers`: the candidates are exact draws by
    rejection from a pool drawn once per block of centers, so one random stream serves
    every data kind and kernel. Below ``BLOCKED_SEEDING_MIN_WORK`` the candidates are
    compared on all rows (the greedy seeding itself); above it, on a uniform subsample.
    The choice depends on the sizes only, never on the backend or the layout.

    Returns
    -------
    centers : Tensor
        ``(n_clusters, n_features)`` in the data's shifted space.
    indices : Tensor
        Row index of each center.
    """
    if not data.collective and (data.n_samples * n_clusters * data.n_features
                                <= GREEDY_SEEDING_MAX_WORK):
        return greedy_kmeans_plusplus_centers(data, n_clusters, generator,
                                              n_local_trials=n_local_trials)
    exact = data.n_samples * n_clusters < BLOCKED_SEEDING_MIN_WORK
    return blocked_kmeans_plusplus_centers(data, n_clusters, generator,
                                           n_local_trials=n_local_trials,
                                           chunk_bytes=chunk_bytes,
                                           evaluation_rows=data.n_samples if exact else None)


GREEDY_SEEDING_MAX_WORK = 1 << 18
"""Up to ``n_samples * n_clusters * n_features`` this small, :func:`kmeans_plusplus_centers`
runs :func:`greedy_kmeans_plusplus_centers`: a few hundred rows seed in microseconds, less
than the fixed costs of the blocked seeding's calls (benchmarks/RESULTS.md, "Small fits")."""


def greedy_kmeans_plusplus_centers(
    data: KMeansData,
    n_clusters: int,
    generator: torch.Generator,
    *,
    n_local_trials: int | None = None,
) -> tuple[Tensor, Tensor]:
    """scikit-learn's greedy k-means++ on all rows: the seeding of small problems.

    The uniform numbers of every draw are drawn at once (``1 + (n_clusters - 1) *
    n_local_trials``): the first center is drawn by weight (:func:`choose_candidates`), then
    each step draws its ``n_local_trials`` candidates by ``w D^2`` and keeps the one
    leaving the least potential (:func:`best_candidate`); where ``D`` is 0 on every row
    (fewer distinct rows than clusters) the candidates are drawn by weight alone.
    Distances and potentials are computed in :func:`draw_dtype`, so the seeding
    backend's one-call kernel (:meth:`~torchmeans.backends.base.Backend.greedy_seeding`)
    and these torch ops choose the same rows, unless a float64 rounding decides.

    Returns
    -------
    centers : Tensor
        ``(n_clusters, n_features)`` in the data's shifted space.
    indices : Tensor
        Row index of each center.
    """
    if n_local_trials is None:
        n_local_trials = default_local_trials(n_clusters)
    if n_local_trials < 1:
        raise ValueError(f"n_local_trials must be at least 1, got {n_local_trials}")
    device, wide = data.device, draw_dtype(data.device)
    x = data.all_rows()
    weight = None if data.unit_weights else data.sample_weight
    uniforms = torch.rand(1 + (n_clusters - 1) * n_local_trials, generator=generator,
                          device=device, dtype=wide)
    indices = seeding_backend(data).greedy_seeding(x, weight, uniforms, n_local_trials)
    if indices is None:
        first = choose_candidates(data.sample_weight, 1, None, unit_weights=data.unit_weights,
                                  draws=uniforms[:1])
        indices = _greedy_steps(x.to(wide), None if weight is None else weight.to(wide),
                                first, uniforms[1:].view(n_clusters - 1, n_local_trials))
    return data.take(indices), indices


def _greedy_steps(x: Tensor, weight: Tensor | None, first: Tensor, uniforms: Tensor) -> Tensor:
    """Run the steps of :func:`greedy_kmeans_plusplus_centers` with torch ops (in x's dtype)."""
    indices = [first.reshape(1)]
    closest = (x - x[first]).square().sum(dim=1)
    unit = weight is None
    weight = torch.ones_like(closest) if unit else weight
    for step_uniforms in uniforms:  # (the steps are sequential)
        # Every row on a center (no potential left): by weight alone.
        times = closest if bool((closest * weight).sum() > 0) else None
        picks = choose_candidates(weight, step_uniforms.numel(), None, times,
                                  unit_weights=unit, draws=step_uniforms)
        distances = (x[None] - x[picks][:, None]).square().sum(dim=2)
        best = best_candidate(distances, closest, None if unit else weight, in_row_order=True)
        closest = distances[best]
        indices.append(picks[best].reshape(1))
    return torch.cat(indices)


def blocked_kmeans_plusplus_centers(
    data: KMeansData,
    n_clusters: int,
    generator: torch.Generator,
    *,
    n_local_trials: int | None = None,
    chunk_bytes: int | None = None,
    evaluation_rows: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy k-means++ in blocks: exact ``D^2`` sampling, few passes over the data.

    The candidates of every step are drawn exactly as in greedy k-means++ (with
    probability ``w * D(x)^2`` for the current centers), but ``D`` over all rows is
    brought up to date only once per block of steps, by one GEMM against the block's
    new centers (blocks double up to ``BLOCKED_SEEDING_MAX_BLOCK`` centers, so all blocks
    together cost about one Lloyd iteration). Within a block, candidates come from a
    pool drawn with the block's starting ``D_0``, each accepted with probability
    ``D(c)^2 / D_0(c)^2`` (rejection sampling: distances only shrink, so the accepted
    ones are exact draws from the current distribution); ``D(c)`` of the pool is kept
    up to date against each new center. The ``n_local_trials`` candidates of a step are
    compared by the potential they leave on a fixed uniform subsample of
    ``evaluation_rows`` rows (default ``n_samples / n_local_trials`` but at least
    ``EVALUATION_ROWS_PER_CLUSTER * n_clusters``, at most ``EVALUATION_MAX_ROWS`` and
    ``EVALUATION_MAX_BYTES``: about one more Lloyd iteration in all) instead of on all rows. With
    ``evaluation_rows >= n_samples`` the comparison is exact and the seeding is greedy
    k-means++ itself (another random stream than :func:`kmeans_plusplus_centers`'s).

    Returns
    -------
    centers : Tensor
        ``(n_clusters, n_features)`` in the data's shifted space.
    indices : Tensor
        Row index of each center.
    """
    if n_local_trials is None:
        n_local_trials = default_local_trials(n_clusters)
    device, dtype = data.device, data.acc_dtype
    n, weight = data.n_samples, data.sample_weight
    itemsize = torch.finfo(dtype).bits // 8
    if evaluation_rows is None:
        evaluation_rows = min(max(-(-n // n_local_trials), EVALUATION_ROWS_PER_CLUSTER
                                  * n_clusters), EVALUATION_MAX_ROWS,
                              max(n_local_trials, EVALUATION_MAX_BYTES
                                  // (itemsize * data.n_features)))
    centers = torch.empty(n_clusters, data.n_features, dtype=dtype, device=device)
    indices = torch.empty(n_clusters, dtype=torch.int64, device=device)
    unit = data.unit_weights
    indices[:1] = choose_candidates(weight, 1, generator, unit_weights=unit)
    centers[:1] = data.take(indices[:1])
    closest = _sq_distances(data, centers[:1], chunk_rows_for(data, 1, chunk_bytes))[0]
    if evaluation_rows >= n:
        judge = _CandidateJudge(data, None, closest.clone(), itemsize, chunk_bytes)
    else:
        sample = torch.randperm(n, generator=generator, device=device)[:evaluation_rows]
        judge = _CandidateJudge(data, sample, closest[sample], itemsize, chunk_bytes)
    chosen = 1
    while chosen < n_clusters:
        block_start = chosen
        block = min(chosen, BLOCKED_SEEDING_MAX_BLOCK, n_clusters - chosen)
        pool_ids = choose_candidates(weight, 2 * n_local_trials * block, generator, closest,
                                    unit_weights=unit)
        pool = data.take(pool_ids)
        pool_sq = pool.square().sum(dim=1)
        # A proposal is accepted with probability D^2 / D_0^2 when its turn comes: with one
        # uniform u drawn per proposal, when u D_0^2 < D^2 (the stop of each step depends
        # only on the proposals before it, so one draw per proposal is exact).
        pool_now = closest[pool_ids]
        uniform = torch.rand(pool_ids.numel(), generator=generator, device=device,
                             dtype=draw_dtype(device))
        thresholds = uniform.mul_(pool_now).to(dtype)
        winners = judge.run_steps(pool, pool_sq, pool_now, thresholds, n_local_trials, block)
        steps = winners.numel()
        centers[chosen : chosen + steps] = pool[winners]
        indices[chosen : chosen + steps] = pool_ids[winners]
        chosen += steps
        if chosen < n_clusters:
            _lower_closest(data, centers[block_start:chosen], block_start, closest, None,
                           chunk_bytes)
    return centers, indices


class _CandidateJudge:
    """Runs the seeding's steps over a pool of proposals, judged on a fixed set of rows.

    A step's candidates are compared by the potential they leave on the rows; ``closest``
    (the rows' current ``D^2``) is lowered to the winner's distances (:meth:`run_steps`).
    Where the native tiled kernel runs (:func:`~torchmeans.backends.native.kernel.tiled_available`,
    dense float32/float64 rows on the CPU) the rows are held in its layout
    (:class:`~torchmeans.backends.native.kernel.TiledRows`) and all steps over a pool are one call:
    each step a fused GEMM against its own candidates only, no products of proposals that
    are rejected, no Python or thread-pool wake-up between steps. Elsewhere dense rows are
    held as one block, and their products with the pool are computed a window of
    proposals at a time, as many as fill the chunk budget (128 for 32,768 float32 rows
    and the 16 MiB CPU default: a GEMM per step against a step's few candidates runs far
    below the speed of one against many; benchmarks/RESULTS.md, "Figures moved from
    docstrings"); candidates spread wider than a window get their own products. Sparse
    rows, and dense rows too many to hold a copy of (``EVALUATION_MAX_BYTES``), are read
    chunk by chunk through :func:`_best_candidate_of_data`.
    """

    def __init__(self, data: KMeansData, rows: Tensor | None, closest: Tensor, itemsize: int,
                 chunk_bytes: int | None) -> None:
        self.closest, self.itemsize, self.chunk_bytes = closest, itemsize, chunk_bytes
        every_row = rows is None
        n_rows = data.n_samples if every_row else rows.numel()
        self.weight = None if data.unit_weights else (
            data.sample_weight if every_row else data.sample_weight[rows])
        held = data.dense_rows and n_rows * data.n_features * itemsize <= EVALUATION_MAX_BYTES
        self.chunked = not held
        self.tiled: Any = None
        if self.chunked:
            self.part = data if every_row else data.subset(rows)
            return
        x = data.all_rows() if every_row else data.take(rows)
        self.tiled = seeding_backend(data).seeding_rows(x, self.weight)
        if self.tiled is not None:
            self.closest = self.tiled.padded(closest)  # padding rows: distance 0
        else:
            self.x = x
            self.sq_norms = self.x.square().sum(dim=1)
            # Proposals per window: as many as fill the chunk budget.
            self.window_size = chunk_budget(data, chunk_bytes) // (n_rows * itemsize)

    def run_steps(self, pool: Tensor, pool_sq_norms: Tensor, pool_now: Tensor,
                  thresholds: Tensor, n_trials: int, max_steps: int) -> Tensor:
        """Run up to ``max_steps`` steps over a pool; return the winners' pool positions.

        A step takes the next ``n_trials`` proposals (in pool order) with
        ``thresholds < pool_now`` (every one at the first step: ``D == D_0``) and keeps
        the one leaving the least potential; ``pool_now`` (the proposals' ``D^2``) of the
        later proposals is lowered to their distance to it (a GEMV). Fewer steps are run
        when fewer than ``n_trials`` proposals are left.
        """
        if n_trials < 1:
            raise ValueError(f"n_local_trials must be at least 1, got {n_trials}")
        if self.tiled is not None:
            return self.tiled.seeding_steps(self.closest, pool.contiguous(), pool_sq_norms,
                                            pool_now, thresholds, n_trials, max_steps)
        self.window, self.window_start, self.window_stop = None, 0, 0
        winners, next_proposal = [], 0
        while len(winners) < max_steps:
            if not winners:
                accepted = torch.arange(min(n_trials, pool.shape[0]), device=pool.device)
            else:
                keep = thresholds[next_proposal:] < pool_now[next_proposal:]
                accepted = torch.nonzero(keep).squeeze(1)[:n_trials]
                if accepted.numel() < n_trials:
                    break  # the pool is used up
            trials = next_proposal + accepted
            positions = trials.tolist()  # (one host sync per step)
            next_proposal = positions[-1] + 1
            winner = positions[self._best_of(pool, pool_sq_norms, trials, positions[0],
                                             positions[-1])]
            winners.append(winner)
            # The proposals still unused, against the new center (a GEMV).
            unused = slice(next_proposal, None)
            gaps = torch.addmv(pool_sq_norms[unused], pool[unused], pool[winner], alpha=-2)
            gaps.add_(pool_sq_norms[winner]).clamp_(min=0)
            torch.minimum(pool_now[unused], gaps, out=pool_now[unused])
        self.window = None  # (its memory)
        return torch.tensor(winners, dtype=torch.int64, device=pool.device)

    def _best_of(self, pool: Tensor, pool_sq_norms: Tensor, trials: Tensor, first: int,
                 last: int) -> int:
        """Index in ``trials`` (pool positions, increasing, ``first`` to ``last``) of the best."""
        candidates = pool[trials]
        if self.chunked:
            distances, best = _best_candidate_of_data(self.part, candidates, self.closest,
                                              self.itemsize, self.chunk_bytes)
            torch.minimum(self.closest, distances, out=self.closest)
            return int(best)
        if last - first + 1 > self.window_size:
            # Spread-out candidates (many rejections): their own products only.
            distances = torch.addmm(self.sq_norms[None, :], candidates, self.x.T, alpha=-2)
        else:
            if self.window is None or last >= self.window_stop:
                self.window_start = first
                self.window_stop = min(pool.shape[0], first + self.window_size)
                # ||x||^2 - 2 p.x for the window's proposals p, one row per proposal
                self.window = torch.addmm(self.sq_norms[None, :],
                                          pool[self.window_start : self.window_stop],
                                          self.x.T, alpha=-2)
            distances = self.window.index_select(0, trials - self.window_start)
        distances.add_(pool_sq_norms[trials, None]).clamp_(min=0)
        best = int(best_candidate(distances, self.closest, self.weight))
        self.closest.copy_(distances[best])
        return best


def _best_candidate_of_data(data: KMeansData, candidates: Tensor, closest: Tensor,
                            itemsize: int, chunk_bytes: int | None) -> tuple[Tensor, Tensor]:
    """Return the candidate leaving the lowest potential on ``data``, and its distances."""
    trials = candidates.shape[0]
    rows = chunk_rows_for(data, trials, chunk_bytes)
    if trials * data.n_samples * itemsize <= chunk_budget(data, chunk_bytes):
        block = _sq_distances(data, candidates, rows)
        best = best_candidate(block, closest, None if data.unit_weights else data.sample_weight)
        return block[best], best
    best = _candidate_potentials(data, candidates, closest, rows).argmin()
    return _sq_distances(data, candidates[best][None], rows)[0], best


def _lower_closest(data: KMeansData, points: Tensor, first_id: int, closest: Tensor,
                   nearest: Tensor | None, chunk_bytes: int | None) -> None:
    """Lower ``closest`` to the rows' distances to ``points`` where nearer (in place).

    ``nearest``, if given, records for the rows that moved the id of their new nearest
    point (``first_id`` + its index in ``points``). The minima come from the
    seeding backend (:func:`torchmeans.backends.seeding_backend`: the native kernel where
    it scores the rows itself).
    """
    chunk_rows = chunk_rows_for(data, points.shape[0], chunk_bytes)
    for chunk, values, index in seeding_backend(data).minima(
            data, points, chunk_rows, with_labels=nearest is not None):
        rows = slice(chunk.start, chunk.stop)
        distances = values.add_(chunk.sq_norms).clamp_(min=0)
        if nearest is None:
            torch.minimum(closest[rows], distances, out=closest[rows])
            continue
        nearer = distances < closest[rows]
        closest[rows] = torch.where(nearer, distances, closest[rows])
        nearest[rows] = torch.where(nearer, index + first_id, nearest[rows])


def batched_kmeans_plusplus_centers(problems: ProblemBatch, source: Tensor, n_clusters: int,
                                    generator: torch.Generator, *,
                                    n_local_trials: int | None = None) -> Tensor:
    """Greedy k-means++ for many problems at once: the problems are a leading dimension.

    Each step draws ``n_local_trials`` candidates per problem by ``w D^2``
    (:func:`choose_candidates`, one batched draw over the ``(problems, N)`` potentials),
    computes their distances to all the problem's rows as one batched product, and keeps
    the one leaving the least potential (:func:`best_candidate`), scikit-learn's greedy
    rule. Where every row of a problem sits on a chosen center (fewer distinct rows than
    clusters) its candidates are drawn by weight alone. ``source`` maps each seeded
    problem to its rows in ``problems`` (restarts); returns ``(P, k, d)`` centers in the
    problems' shifted space.
    """
    if n_local_trials is None:
        n_local_trials = default_local_trials(n_clusters)
    n_features = problems.x.shape[2]
    centers = problems.x.new_empty(source.numel(), n_clusters, n_features)
    group, _ = block_sizes(source.numel(), problems.x.shape[1], n_local_trials + n_features,
                           problems.x.element_size(), problems.budget)
    for ids in groups(source.numel(), group, source.device):
        block = source[ids]
        x, sq = select(problems.x, block), select(problems.sq_norms, block)
        weight = select(problems.weight, block)
        arange = torch.arange(ids.numel(), device=x.device)
        first = choose_candidates(weight, 1, generator).squeeze(1)
        chosen = x[arange, first]
        closest = (x - chosen[:, None]).square().sum(dim=2)
        centers[ids, 0] = chosen
        for c in range(1, n_clusters):
            potential = weight * closest
            potential = torch.where(potential.sum(dim=1, keepdim=True) > 0, potential, weight)
            picks = choose_candidates(potential, n_local_trials, generator)
            candidates = torch.gather(x, 1, picks[..., None].expand(-1, -1, n_features))
            distances = torch.baddbmm(sq[:, None, :] + candidates.square().sum(dim=2)[..., None],
                                      candidates, x.transpose(1, 2), alpha=-2).clamp_(min=0)
            best = best_candidate(distances, closest, weight)
            closest = distances[arange, best]
            centers[ids, c] = candidates[arange, best]
    return centers


def batched_random_centers(problems: ProblemBatch, source: Tensor, n_clusters: int,
                           generator: torch.Generator) -> Tensor:
    """``n_clusters`` distinct rows per problem, drawn by weight (:func:`weighted_sample`).

    ``source`` as for :func:`batched_kmeans_plusplus_centers`; returns ``(P, k, d)``.
    """
    weight = problems.weight[source]
    short = torch.nonzero((weight > 0).sum(dim=1) < n_clusters).flatten()
    if short.numel():
        raise ValueError(f"init='random' needs n_clusters={n_clusters} rows of positive weight; "
                         f"problem {int(source[short[0]])} has fewer.")
    picks = weighted_sample(weight, n_clusters, generator)
    return torch.gather(problems.x[source], 1,
                        picks[..., None].expand(-1, -1, problems.x.shape[2]))


def kmeans_parallel_centers(
    data: KMeansData,
    n_clusters: int,
    generator: torch.Generator,
    *,
    oversampling_factor: float = 2.0,
    rounds: int | None = None,
    chunk_bytes: int | None = None,
) -> tuple[Tensor, Tensor]:
    """k-means|| seeding (Bahmani et al. 2012): a few passes instead of ``k`` sequential steps.

    One row is drawn by weight; then each of ``rounds`` passes keeps every row
    independently with probability ``min(1, l w D(x)^2 / phi)`` (``l =
    oversampling_factor * n_clusters``, ``phi`` the current weighted cost) and lowers
    the rows' distances to the new candidates. The ``~rounds * l`` candidates are
    weighted by the total weight of the rows nearest to them, and reclustered into
    ``n_clusters`` centers by weighted greedy k-means++ and a few weighted Lloyd
    iterations. The rows' nearest candidates are tracked during the passes, so the
    weights need no extra pass. Each pass over the data is chunked (memory bounded
    by the budget), which is what makes it fit streaming and distributed data (the
    rounds of a distributed fit's data are collectives of ``data.collective``).

    Returns
    -------
    centers : Tensor
        ``(n_clusters, n_features)`` in the data's shifted space (not rows of the data).
    candidates : Tensor
        Row indices of the candidates that were reclustered.
    """
    from torchmeans.core.assign import assign
    from torchmeans.core.lloyd import lloyd  # the engine reclusters the candidates
    from torchmeans.data.dense import DenseData

    rounds = PARALLEL_ROUNDS if rounds is None else rounds
    collective = data.collective
    weight = data.sample_weight
    device = data.device
    # Distributed: this rank holds global rows [first, first + n); every rank draws the
    # same numbers, so the picks are those of one process on the concatenated rows.
    first, n_global = collective.row_range(data.n_samples, device) if collective else (
        0, data.n_samples)
    mine = slice(first, first + data.n_samples)
    picked_rows = [_global_weighted_row(data, weight, first, generator, collective)]
    picked = [picked_rows[0][1]]
    closest = torch.full((data.n_samples,), torch.inf, dtype=data.acc_dtype, device=device)
    nearest = torch.zeros(data.n_samples, dtype=torch.int64, device=device)
    _lower_closest(data, picked_rows[0][0], 0, closest, nearest, chunk_bytes)
    n_picked = 1
    expected = oversampling_factor * n_clusters
    for _ in range(rounds):
        cost = _total(closest @ weight, collective)
        if not bool(cost > 0):
            break  # every row sits on a candidate
        probability = (expected * weight * closest / cost).clamp_(max=1)
        uniform = torch.rand(n_global, generator=generator, device=device,
                             dtype=draw_dtype(device))[mine]
        new = torch.nonzero(uniform < probability).squeeze(1)
        rows = data.take(new)
        if collective:  # every rank's picks, in global row order (ranks hold rows in order)
            rows = collective.gather(rows)
            new = collective.gather(new + first)
        if new.numel():
            picked.append(new)
            _lower_closest(data, rows, n_picked, closest, nearest, chunk_bytes)
            n_picked += new.numel()
            picked_rows.append((rows, new))
    indices = torch.cat(picked)  # a row re-picked (rounding) is a zero-weight duplicate
    candidates = torch.cat([rows for rows, _ in picked_rows])
    if indices.numel() < n_clusters:
        if collective:
            raise ValueError("k-means|| found fewer candidate rows than clusters (few distinct "
                             "rows): use init='k-means++' for this data.")
        # Few distinct rows: top up with random distinct rows, weighted by one more pass.
        indices = torch.unique(torch.cat([indices, random_centers(data, n_clusters,
                                                                  generator)[1]]))
        candidates = data.take(indices)
        nearest = assign(data, candidates, chunk_bytes=chunk_bytes).labels
    candidate_weight = torch.zeros(indices.numel(), dtype=weight.dtype, device=device)
    candidate_weight.index_add_(0, nearest, weight)
    candidate_weight = collective.sum(candidate_weight) if collective else candidate_weight
    reduced = DenseData(candidates, candidate_weight, torch.zeros_like(data.offset),
                        shifted=True)
    seeds, _ = kmeans_plusplus_centers(reduced, n_clusters, generator)
    centers = lloyd(reduced, seeds, max_iter=PARALLEL_RECLUSTER_ITERATIONS).centers
    return centers, indices


def _total(value: Tensor, collective: Any) -> Tensor:
    return collective.sum(value.reshape(1))[0] if collective else value


def _global_weighted_row(data: KMeansData, weight: Tensor, first: int,
                            generator: torch.Generator, collective: Any) -> tuple[Tensor, Tensor]:
    """One row drawn by weight over all ranks' rows: ``(row (1, d), global index (1,))``."""
    if not collective:
        index = choose_candidates(weight, 1, generator)
        return data.take(index), index
    dtype = draw_dtype(weight.device)
    totals = collective.gather(_cumulative_weights(weight.to(dtype))[-1:] if weight.numel()
                               else weight.new_zeros(1, dtype=dtype))
    target = torch.rand(1, generator=generator, device=weight.device, dtype=dtype) * totals.sum()
    before = totals[: collective.rank].sum()
    local = target - before
    holds = bool((local >= 0) & (local < totals[collective.rank])) or (
        collective.rank == collective.world_size - 1 and bool(local >= totals[-1]))
    if holds and data.n_samples:
        index = _search_weights(weight, local)
        row, global_index = data.take(index), index + first
    else:
        row = torch.empty(0, data.n_features, dtype=data.acc_dtype, device=weight.device)
        global_index = torch.empty(0, dtype=torch.int64, device=weight.device)
    return collective.gather(row)[:1], collective.gather(global_index)[:1]


def random_centers(
    data: KMeansData, n_clusters: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``n_clusters`` distinct rows drawn with probability proportional to their weight.

    Weighted sampling without replacement by the exponential-keys method
    (Efraimidis and Spirakis): the rows with the ``n_clusters`` largest
    ``log(u) / w`` are a successive weighted draw, for any number of rows.
    """
    indices = weighted_sample(data.sample_weight, n_clusters, generator)
    return data.take(indices), indices


def weighted_sample(weight: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """``size`` distinct indices along the last dimension, drawn by weight without replacement.

    The exponential-keys method: the largest ``log(u) / w``. Leading dimensions are
    independent draws (batched problems).
    """
    dtype = draw_dtype(weight.device)
    uniform = torch.rand(weight.shape, generator=generator, device=weight.device, dtype=dtype)
    keys = uniform.clamp_(min=torch.finfo(dtype).tiny).log_().div_(weight.to(dtype))
    return keys.topk(size).indices


class WeightedRows:
    """Row indices drawn with replacement by weight, the weights summed once for all draws.

    The draws of :func:`choose_candidates` (the same numbers from the same generator), for a
    sampler that draws many times from fixed weights (mini-batches).
    """

    def __init__(self, weight: Tensor) -> None:
        self.dtype = draw_dtype(weight.device)
        self.cumulative = _cumulative_weights(weight.to(self.dtype))

    def draw(self, size: int, generator: torch.Generator) -> Tensor:
        """Return ``size`` row indices."""
        draws = torch.rand(size, generator=generator, device=self.cumulative.device,
                           dtype=self.dtype)
        return _search_cumulative(self.cumulative, draws * self.cumulative[-1:])


def choose_candidates(weight: Tensor, size: int, generator: torch.Generator | None,
                      times: Tensor | None = None, *, unit_weights: bool = False,
                      draws: Tensor | None = None) -> Tensor:
    """``size`` indices along the last dimension drawn with replacement, by weight.

    The candidate draw of every k-means++ strategy: with ``times = D^2`` (the rows'
    squared distances to the chosen centers) it is k-means++'s ``w D^2`` sampling, and
    without it the first center's draw by weight.

    With ``times``, by ``weight * times`` (the product formed in the draws' dtype, in
    place: no copy of it in the data's dtype). ``unit_weights`` (every weight is 1) gives
    the same indices with fewer ops: ``times`` unmultiplied, and without ``times`` (in
    float64) the closed form of the search (the cumulative weights are ``1..n``, so the
    interval holding ``u n`` is ``floor(u n)``).

    ``draws``: the uniform numbers, drawn beforehand (``(..., size)`` in :func:`draw_dtype`;
    greedy k-means++ draws all of its steps' at once). Leading dimensions are independent
    draws (batched problems). Uniform draws scaled
    by the total weight, then ``searchsorted`` in the cumulative weights (any number of
    rows: ``torch.multinomial`` stops at 2^24); both in :func:`draw_dtype`, and the
    total is the cumulative sum's last entry (a sequential scan), so the draws depend
    neither on the weights' dtype nor on the thread count.
    """
    dtype = draw_dtype(weight.device)
    if draws is None:
        draws = torch.rand(*weight.shape[:-1], size, generator=generator, device=weight.device,
                           dtype=dtype)
    if unit_weights and times is None and dtype == torch.float64:
        n = weight.shape[-1]
        return draws.mul_(n).floor_().long().clamp_(max=n - 1)
    if unit_weights:
        values = times.to(dtype)
    else:
        values = weight.to(dtype) if times is None else times.to(dtype, copy=True).mul_(weight)
    cumulative = _cumulative_weights(values)
    return _search_cumulative(cumulative, draws * cumulative[..., -1:])


def _cumulative_weights(weight: Tensor) -> Tensor:
    """Non-decreasing cumulative weights in which rows of zero weight have empty intervals.

    On the CPU ``cumsum`` is a sequential scan: adding a zero repeats the previous entry
    exactly, and the sums never decrease. Elsewhere a parallel scan may round out of order,
    so a zero-weight row's entry is pinned to the previous one by ``cummax``.
    """
    cumulative = torch.cumsum(weight, dim=-1)
    if weight.device.type == "cpu":
        return cumulative
    return torch.where(weight > 0, cumulative, 0).cummax(dim=-1).values


def _search_cumulative(cumulative: Tensor, targets: Tensor) -> Tensor:
    """Index of the row whose interval ``[cum[i - 1], cum[i])`` holds each target.

    Rows of zero weight are never returned; targets at or past the total go to the last
    row of positive weight.
    """
    # (entries below the total: the rows up to the last of positive weight)
    last_positive = torch.searchsorted(cumulative, cumulative[..., -1:].contiguous())
    return torch.minimum(torch.searchsorted(cumulative, targets, right=True), last_positive)


def _search_weights(weight: Tensor, targets: Tensor) -> Tensor:
    """Index of the row whose weight interval holds each target (see :func:`_search_cumulative`)."""
    dtype = draw_dtype(weight.device)
    return _search_cumulative(_cumulative_weights(weight.to(dtype)), targets.to(dtype))
