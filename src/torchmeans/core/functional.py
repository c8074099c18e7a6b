"""The functional core: ``kmeans(X, n_clusters) -> KMeansResult``; the estimators wrap it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from torchmeans.core.assign import Assignment, assign, inertia_of
from torchmeans.core.lloyd import (
    IterationStats,
    Reducer,
    RunState,
    _no_reduce,
    lloyd,
    native_elkan_applies,
    project_to_sphere,
    resolve_algorithm,
    resolve_backend,
    uses_direct_labels,
)
from torchmeans.core.precision import with_full_float32_matmul
from torchmeans.core.seeding import kmeans_parallel_centers, kmeans_plusplus_centers, random_centers
from torchmeans.core.validation import (
    as_tensor,
    check_init_array,
    check_n_samples,
    check_params,
    check_sample_weight,
    make_data,
    make_generator,
    normalize_rows,
    prepare_data,
    resolve_device,
    resolve_n_init,
    validate_parameters,
)
from torchmeans.core.warning import warn
from torchmeans.data.base import KMeansData
from torchmeans.data.dense import DenseData
from torchmeans.data.distributed import Collective, global_mean_variance
from torchmeans.data.stream import as_stream, is_source
from torchmeans.io.checkpoint import BestRun, Checkpointer

__all__ = ["KMeansResult", "kmeans", "kmeans_plusplus"]

InitFunction = Callable[[KMeansData, int, torch.Generator], Tensor]
"""An init resolved for the core: returns centers in the data's shifted space."""


class KMeansResult(NamedTuple):
    """Result of :func:`kmeans`.

    Attributes
    ----------
    centers : Tensor
        ``(n_clusters, n_features)`` cluster centers (float32 for half-precision data).
    labels : Tensor
        ``(n_samples,)`` int64 index of each sample's cluster, consistent with ``centers``.
    inertia : float
        Weighted sum of squared distances of samples to their center.
    n_iter : int
        Lloyd iterations run by the best initialization.
    history : list of IterationStats
        Per-iteration inertia, center shift, changed labels and relocated clusters
        of the best initialization.
    """

    centers: Tensor
    labels: Tensor
    inertia: float
    n_iter: int
    history: list[IterationStats]


def resolve_init(init: Any, n_clusters: int, n_features: int, dtype: torch.dtype,
                 device: torch.device, callable_input: Any = None,
                 init_size: int | None = None, metric: str = "euclidean",
                 oversampling_factor: float = 2.0,
                 init_rounds: int | None = None,
                 collective: Collective | None = None) -> InitFunction:
    """Turn a user ``init`` into a function of ``(data, n_clusters, generator)``.

    With ``init_size``, ``'k-means++'`` and ``'random'`` seed on that many rows
    drawn uniformly without replacement (their weights kept), as scikit-learn's
    ``MiniBatchKMeans`` does: the seeding then costs ``init_size / n_samples`` of
    a full one.

    A user callable is called as ``init(X, n_clusters, random_state=RandomState)``
    with ``callable_input`` (the data as the user passed it, not shifted) and
    must return centers in that same (unshifted) space. With ``metric='cosine'``
    given centers are scaled to unit norm (k-means++ on the unit rows already is
    cosine k-means++: ``1 - x.c = ||x - c||^2 / 2``).
    """
    if collective and callable(init):
        raise ValueError("a callable init sees one rank's rows only: pass an array of centers "
                         "(the same on every rank) or 'k-means++' in a distributed fit.")

    def unit(centers: Tensor) -> Tensor:
        return normalize_rows(centers, name="init") if metric == "cosine" else centers

    if isinstance(init, str) and init in ("k-means++", "k-means||", "random"):
        sampler = {
            "k-means++": kmeans_plusplus_centers,
            "k-means||": partial(kmeans_parallel_centers, oversampling_factor=oversampling_factor,
                                 rounds=init_rounds),
            "random": random_centers,
        }[init]

        def seed(data: KMeansData, k: int, generator: torch.Generator) -> Tensor:
            if collective and init == "k-means||" and init_size is None:
                # k-means|| passes over every rank's rows (its rounds are collectives).
                centers = sampler(data, k, generator, collective=collective)[0]
                if metric == "cosine":
                    centers = project_to_sphere(centers, data.offset)
                return centers
            if collective:
                data = _gathered_sample(data, k, init_size, generator, collective)
            elif init_size is not None and init_size < data.n_samples:
                rows = torch.randperm(data.n_samples, generator=generator,
                                      device=data.device)[: max(init_size, k)]
                data = data.subset(rows)
            centers = sampler(data, k, generator)[0]
            if metric == "cosine" and init == "k-means||":  # means of rows: back on the sphere
                centers = project_to_sphere(centers, data.offset)
            return centers
        return seed
    if callable(init):
        def call_user_init(data: KMeansData, k: int, generator: torch.Generator) -> Tensor:
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=device))
            centers = init(callable_input, k, random_state=np.random.RandomState(seed))
            centers = unit(check_init_array(centers, k, n_features, dtype, device))
            return centers - data.offset
        return call_user_init
    centers = unit(check_init_array(init, n_clusters, n_features, dtype, device))
    return lambda data, k, g: centers - data.offset


DISTRIBUTED_SEEDING_ROWS = 262_144
"""A distributed fit seeds on at most this many rows gathered from all ranks (all of them
when there are fewer, as a single process would), unless ``init_size`` says otherwise."""


def _gathered_sample(data: KMeansData, k: int, init_size: int | None,
                     generator: torch.Generator, collective: Collective) -> KMeansData:
    """Return the rows a single process would seed on, gathered from all ranks in order."""
    device = data.device
    first, n_global = collective.row_range(data.n_samples, device)
    size = DISTRIBUTED_SEEDING_ROWS if init_size is None else init_size
    if size >= n_global:
        draw = torch.arange(n_global, device=device)  # all rows, as one process uses them
    else:
        draw = torch.randperm(n_global, generator=generator, device=device)[: max(size, k)]
    mine = (draw >= first) & (draw < first + data.n_samples)
    local = draw[mine] - first
    dtype = data.acc_dtype
    packed = collective.gather(torch.cat([
        torch.nonzero(mine).to(dtype), data.take(local).to(dtype),
        data.sample_weight[local].to(dtype)[:, None]], dim=1))
    packed = packed[packed[:, 0].argsort()]
    return DenseData(packed[:, 1:-1].contiguous(), packed[:, -1].contiguous(),
                     torch.zeros_like(data.offset), shifted=True)


def _same_clustering(a: Tensor, b: Tensor, n_clusters: int) -> bool:
    """Return True if two labelings are equal up to a permutation of the labels."""
    mapping = torch.full((n_clusters,), -1, dtype=a.dtype, device=a.device)
    mapping.scatter_(0, a, b)
    return bool((mapping[a] == b).all())


def fit_data(
    data: KMeansData,
    n_clusters: int,
    *,
    init: InitFunction,
    n_init: int,
    max_iter: int,
    tol: float,
    generator: torch.Generator,
    chunk_bytes: int | None = None,
    reduce: Reducer = _no_reduce,
    verbose: bool = False,
    algorithm: str = "lloyd",
    backend: str = "auto",
    metric: str = "euclidean",
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    collective: Collective | None = None,
) -> KMeansResult:
    """Run ``n_init`` initializations of Lloyd on prepared data; keep the best.

    Returns centers in the original (unshifted) space, and labels and inertia
    computed against exactly those centers (as ``predict`` and ``score`` will).
    With a ``checkpointer`` the state is written every few iterations; with
    ``resume`` a fit continues from the checkpoint (when there is one) to the
    result the uninterrupted fit would have had.
    """
    collective = collective or Collective(False)
    if collective:
        reduce = collective.sum
    tol_abs = global_mean_variance(data, collective) * tol if tol > 0 else 0.0
    # Labels from the native kernel's own scores (direct/tiled): in the passes, the final
    # assignment and predict alike.
    direct = uses_direct_labels(backend, data, n_clusters, chunk_bytes)
    requested = algorithm
    algorithm = resolve_algorithm(algorithm, data, n_clusters, direct=direct)
    if backend == "native" and not (algorithm == "lloyd" or native_elkan_applies(
            algorithm, backend, data.n_features)):
        if requested != "auto":
            raise ValueError(
                f"backend='native' runs Lloyd passes (and Elkan's where the kernel scores "
                f"rows of this width); algorithm={algorithm!r} uses torch ops: pass "
                "algorithm='lloyd' or backend='auto'.")
        algorithm = "lloyd"
    # Bound-based algorithms run Lloyd passes until few labels move (_lloyd.lloyd): those
    # use the resolved backend too.
    backend = resolve_backend(backend, data, n_clusters, chunk_bytes)
    best: KMeansResult | None = None
    resumed = checkpointer.load(data.device) if checkpointer is not None and resume else None
    first_run = 0
    if resumed is not None:
        first_run = resumed.run
        generator.set_state(resumed.generator_state)
        if resumed.best is not None:
            labels = assign(data, resumed.best.centers - data.offset,
                            chunk_bytes=chunk_bytes, direct=direct).labels
            best = KMeansResult(resumed.best.centers, labels, resumed.best.inertia,
                                resumed.best.n_iter, resumed.best.history)
        if verbose:
            print(f"Resuming initialization {first_run + 1} at iteration "
                  f"{resumed.state.iteration} from {checkpointer.path}")
    for run in range(first_run, n_init):
        start = resumed.state if resumed is not None and run == resumed.run else None
        if start is None:
            initial = init(data, n_clusters, generator).to(data.acc_dtype)
            if verbose:
                print("Initialization complete")
        else:
            initial = start.centers
        on_iteration = None
        if checkpointer is not None:
            on_iteration = partial(_save_checkpoint, checkpointer, run, generator.get_state(),
                                   None if best is None else BestRun(
                                       best.centers, best.inertia, best.n_iter, best.history))
        result = lloyd(data, initial, max_iter=max_iter, tol=tol_abs,
                       chunk_bytes=chunk_bytes, reduce=reduce, verbose=verbose,
                       algorithm=algorithm, backend=backend, spherical=metric == "cosine",
                       start=start, on_iteration=on_iteration, gather=collective.gather)
        centers = result.centers + data.offset
        # predict() shifts the returned centers back; label against exactly those.
        shifted = centers - data.offset
        # Bounded passes label with the GEMM (Elkan's native passes excepted): with the
        # kernel's own scores for predict, the final labels come from it (they agree
        # wherever the BLAS sums alike).
        kernel_labels = algorithm == "lloyd" or native_elkan_applies(algorithm, backend,
                                                                     data.n_features)
        if (result.labels_are_final and torch.equal(shifted, result.centers)
                and not (direct and not kernel_labels)):
            # Converged with labels unchanged: the last pass already assigned against
            # these exact centers (scikit-learn skips this step then, too).
            final = Assignment(result.labels, inertia_of(data, shifted, result.labels,
                                                         chunk_bytes=chunk_bytes,
                                                         native=direct))
        else:
            final = assign(data, shifted, chunk_bytes=chunk_bytes,
                           labels_out=result.labels, previous=result.labels, direct=direct)
        # Cosine: the rows are unit vectors, 1 - x.c = ||x - c||^2 / 2.
        total = collective.sum(final.inertia.reshape(1))[0]
        inertia = float(total) * (0.5 if metric == "cosine" else 1.0)
        if best is None or (
            inertia < best.inertia and not collective.all(
                _same_clustering(final.labels, best.labels, n_clusters), data.device)
        ):
            best = KMeansResult(centers, final.labels, inertia, result.n_iter, result.history)
    assert best is not None  # n_init >= 1
    sizes = collective.sum(torch.bincount(best.labels, minlength=n_clusters))
    n_distinct = int((sizes > 0).sum())
    if n_distinct < n_clusters:
        warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters "
            f"({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning)
    return best


def _save_checkpoint(checkpointer: Checkpointer, run: int, generator_state: Tensor,
                     best: BestRun | None, state: RunState) -> None:
    if checkpointer.due(state.iteration - 1):
        checkpointer.save(run, state, generator_state, best)


@with_full_float32_matmul
def kmeans(
    X: Any,
    n_clusters: int,
    *,
    sample_weight: Any = None,
    init: Any = "k-means++",
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state: Any = None,
    device: str | torch.device | None = None,
    chunk_bytes: int | None = None,
    copy: bool = True,
    verbose: bool = False,
    algorithm: str = "lloyd",
    init_size: int | None = None,
    backend: str = "auto",
    metric: str = "euclidean",
    oversampling_factor: float = 2.0,
    init_rounds: int | None = None,
    precision: str = "exact",
    deterministic: bool = True,
) -> KMeansResult:
    """Exact Lloyd k-means on any torch device.

    Parameters
    ----------
    X : Tensor, array-like of shape (n_samples, n_features), or a source
        Samples: a dense or sparse torch tensor, a numpy array, a scipy sparse
        matrix, a pandas DataFrame or a list. Integer and boolean data become float32.
        A source of :mod:`torchmeans.sources` (memory-mapped files, shards, batches)
        is streamed chunk by chunk.
    n_clusters : int
        Number of clusters.
    sample_weight : Tensor or array-like of shape (n_samples,), optional
        Non-negative weight of each sample.
    init : {'k-means++', 'random'}, array of shape (n_clusters, n_features) or callable
        Initial centers (see :class:`torchmeans.KMeans`).
    n_init : 'auto' or int
        Number of initializations; the best by inertia is kept.
    max_iter : int
        Maximum number of Lloyd iterations per initialization.
    tol : float
        Convergence tolerance on the total squared center shift, relative to
        the mean per-feature variance of ``X`` (scikit-learn's meaning).
    random_state : int, numpy or torch generator, or None
        Seeds a local generator; the same seed gives the same result on the same device.
    device : str or torch.device, optional
        Where to compute; default: the tensor's device, else CUDA if available, else CPU.
    chunk_bytes : int, optional
        Working-memory budget for one chunk's temporaries (default 16 MiB on the
        CPU, 256 MiB on accelerators).
    copy : bool
        If True, keep one mean-shifted copy of ``X`` for fast passes; if False,
        shift each chunk as it is read (no copy of ``X``).
    verbose : bool or int
        Print progress to stdout, in scikit-learn's words.
    algorithm : {'lloyd', 'elkan', 'hamerly', 'yinyang', 'auto'}
        Lloyd computes every distance each iteration; the others keep distance
        bounds per sample and skip the samples that cannot change cluster (same
        result, less work; see :class:`torchmeans.KMeans`).
    init_size : int, optional
        Seed ``'k-means++'`` / ``'random'`` on this many rows drawn uniformly
        (default: all rows, as scikit-learn's ``KMeans``).
    backend : {'auto', 'torch', 'native', 'triton'}
        How a Lloyd pass runs (see :class:`torchmeans.KMeans`).
    metric : {'euclidean', 'cosine'}
        ``'cosine'``: spherical k-means (see :class:`torchmeans.KMeans`).
    oversampling_factor, init_rounds
        k-means|| parameters (see :class:`torchmeans.KMeans`).
    precision : {'exact', 'fast'}
        Certified low-precision distance products (see :class:`torchmeans.KMeans`).
    deterministic : bool
        Bit-identical repeated fits on accelerators too (see :class:`torchmeans.KMeans`).

    Returns
    -------
    KMeansResult
        ``centers``, ``labels``, ``inertia``, ``n_iter`` (and ``history``), as
        tensors on the compute device.

    Examples
    --------
    >>> import torch, torchmeans
    >>> X = torch.cat([torch.randn(100, 2), torch.randn(100, 2) + 10])
    >>> result = torchmeans.kmeans(X, n_clusters=2, random_state=0)
    >>> result.centers.shape, result.labels.shape
    (torch.Size([2, 2]), torch.Size([200]))
    """
    validate_parameters(dict(
        n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
        chunk_bytes=chunk_bytes, algorithm=algorithm, init_size=init_size, backend=backend,
        metric=metric, oversampling_factor=oversampling_factor, init_rounds=init_rounds,
        precision=precision, deterministic=deterministic, random_state=random_state,
        device=device, verbose=verbose), "kmeans")
    compute_device = resolve_device(device, X)
    X_tensor = as_stream(X)  # memory maps, h5py/zarr datasets: streamed, not copied
    streamed = is_source(X_tensor)
    if not streamed:
        X_tensor = as_tensor(X, compute_device)
    if not streamed or X_tensor.n_samples is not None:  # (a stream's: after its first pass)
        check_n_samples(X_tensor.n_samples if streamed else X_tensor.shape[0], n_clusters)
    data = prepare_data(X_tensor, sample_weight, copy=copy, metric=metric,
                        device=compute_device, precision=precision,
                        deterministic=deterministic)
    check_n_samples(data.n_samples, n_clusters)
    effective_n_init = resolve_n_init(n_init, init, default=10, caller="kmeans")
    n_features = data.n_features
    init_fn = resolve_init(init, n_clusters, n_features, data.acc_dtype, compute_device,
                           callable_input=X, init_size=init_size, metric=metric,
                           oversampling_factor=oversampling_factor, init_rounds=init_rounds)
    return fit_data(
        data,
        n_clusters,
        init=init_fn,
        n_init=effective_n_init,
        max_iter=max_iter,
        tol=tol,
        generator=make_generator(random_state, compute_device),
        chunk_bytes=chunk_bytes,
        verbose=bool(verbose),
        algorithm=algorithm,
        backend=backend,
        metric=metric,
    )


@with_full_float32_matmul
def kmeans_plusplus(
    X: Any,
    n_clusters: int,
    *,
    sample_weight: Any = None,
    random_state: Any = None,
    n_local_trials: int | None = None,
    device: str | torch.device | None = None,
    chunk_bytes: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy k-means++ seeding, as :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : Tensor or array-like of shape (n_samples, n_features)
        Samples to pick seeds from.
    n_clusters : int
        Number of centers.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights.
    random_state : int, numpy or torch generator, or None
        Seeds a local generator.
    n_local_trials : int, optional
        Candidates tried per step (default ``2 + int(log(n_clusters))``).
    device : str or torch.device, optional
        Where to compute.
    chunk_bytes : int, optional
        Working-memory budget per chunk.

    Returns
    -------
    centers : Tensor
        ``(n_clusters, n_features)`` initial centers (rows of ``X``).
    indices : Tensor
        Row index in ``X`` of each center.
    """
    compute_device = resolve_device(device, X)
    X_tensor = as_tensor(X, compute_device)
    check_params(n_clusters=n_clusters, n_samples=X_tensor.shape[0], chunk_bytes=chunk_bytes,
                 n_local_trials=n_local_trials, random_state=random_state, device=device,
                 caller="kmeans_plusplus")
    weight = check_sample_weight(sample_weight, X_tensor.shape[0], X_tensor.dtype,
                                 compute_device)
    data = make_data(X_tensor, weight, copy=False)
    _, indices = kmeans_plusplus_centers(
        data, n_clusters, make_generator(random_state, compute_device),
        n_local_trials=n_local_trials, chunk_bytes=chunk_bytes,
    )
    rows = data.take(indices) if X_tensor.layout == torch.sparse_csr else X_tensor[indices]
    return rows, indices
