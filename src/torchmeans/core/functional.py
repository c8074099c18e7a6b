"""The functional core: ``kmeans(X, n_clusters) -> KMeansResult``; the estimators wrap it."""

from __future__ import annotations

import hashlib
import logging
import numbers
import os
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from torchmeans.backends import resolve_backend
from torchmeans.backends.base import Backend
from torchmeans.core.assign import Assignment, assign, chunk_budget, inertia_of
from torchmeans.core.lloyd import (
    IterationStats,
    RunState,
    lloyd,
    project_to_sphere,
    resolve_algorithm,
)
from torchmeans.core.options import ExecutionOptions
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
from torchmeans.data.base import KMeansData, accumulation_dtype
from torchmeans.data.dense import DenseData
from torchmeans.data.distributed import Collective, global_mean, global_mean_variance
from torchmeans.data.stream import as_stream, is_source
from torchmeans.io.checkpoint import BestRun, Checkpointer, data_fingerprint

__all__ = ["KMeansResult", "kmeans", "kmeans_plusplus"]

logger = logging.getLogger("torchmeans")

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
                 init_rounds: int | None = None) -> InitFunction:
    """Turn a user ``init`` into a function of ``(data, n_clusters, generator)``.

    With ``init_size``, ``'k-means++'`` and ``'random'`` seed on that many rows
    drawn uniformly without replacement (their weights kept), as scikit-learn's
    ``MiniBatchKMeans`` does: the seeding then costs ``init_size / n_samples`` of
    a full one.

    A user callable is called as ``init(X, n_clusters, random_state=RandomState)``
    with ``callable_input`` (the data as the user passed it, not shifted) and
    must return centers in that same (unshifted) space. With ``metric='cosine'``
    given centers are scaled to unit norm (k-means++ on the unit rows already is
    cosine k-means++: ``1 - x.c = ||x - c||^2 / 2``). Distributed data
    (``data.collective``) seed as one process would on the concatenated rows.
    """

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
            collective = data.collective
            if collective and init == "k-means||" and init_size is None:
                # k-means|| passes over every rank's rows (its rounds are collectives).
                centers = sampler(data, k, generator)[0]
                if metric == "cosine":
                    centers = project_to_sphere(centers, data.offset)
                return centers
            offset = data.offset  # (a sample's rows are in this space; its own offset is 0)
            if collective:
                data = _gathered_sample(data, k, init_size, generator)
            elif init_size is not None and init_size < data.n_samples:
                rows = torch.randperm(data.n_samples, generator=generator,
                                      device=data.device)[: max(init_size, k)]
                data = data.subset(rows)
            centers = sampler(data, k, generator)[0]
            if metric == "cosine" and init == "k-means||":  # means of rows: back on the sphere
                centers = project_to_sphere(centers, offset)
            return centers
        return seed
    if callable(init):
        streamed = as_stream(callable_input)
        if streamed is not callable_input:  # a memmap or h5py/zarr dataset: the callable
            # gets a float array, as from check_array (a float memmap: itself)
            wanted = torch.empty(0, dtype=streamed.compute_dtype).numpy().dtype
            if not (isinstance(callable_input, np.ndarray) and callable_input.dtype == wanted):
                callable_input = np.asarray(callable_input, dtype=wanted)

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
                     generator: torch.Generator) -> KMeansData:
    """Return the rows a single process would seed on, gathered from all ranks in order."""
    device, collective = data.device, data.collective
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


class Fitted(NamedTuple):
    """What a fit hands its estimator besides the result: how it ran and what it resolved."""

    result: KMeansResult
    backend: Backend
    """The resolved backend (``predict`` follows it)."""
    offset: Tensor
    """The shift of the data's rows (the training mean for dense data)."""
    n_init: int
    """The number of initializations run (``n_init='auto'`` resolved)."""


def fit_data(
    data: KMeansData,
    n_clusters: int,
    *,
    init: InitFunction,
    n_init: int,
    max_iter: int,
    tol: float,
    generator: torch.Generator,
    options: ExecutionOptions,
    verbose: bool = False,
    algorithm: str = "lloyd",
    metric: str = "euclidean",
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    train: KMeansData | None = None,
) -> tuple[KMeansResult, Backend]:
    """Run ``n_init`` initializations of Lloyd on prepared data; keep the best.

    Returns centers in the original (unshifted) space, and labels and inertia
    computed against exactly those centers (as ``predict`` and ``score`` will), with the
    backend that ran. With ``train`` (a ``data.subset``: :func:`training_subset`) the
    seeding and the iterations run on those rows; the final assignment, labels and
    inertia are still of all of ``data``. ``options.backend`` is resolved here, once.
    With a ``checkpointer`` the state is written every few iterations; with ``resume`` a
    fit continues from the checkpoint (when there is one) to the result the uninterrupted
    fit would have had.
    Distributed data (``data.collective``) run the same iterations on every rank.
    """
    collective = data.collective
    subsampled = train is not None and train is not data
    train = data if train is None else train
    chunk_bytes = options.chunk_bytes
    tol_abs = global_mean_variance(train) * tol if tol > 0 else 0.0
    backend = resolve_backend(options.backend, data, n_clusters,
                              chunk_budget(data, chunk_bytes))
    requested = algorithm
    algorithm = resolve_algorithm(algorithm, train, n_clusters, backend)
    # An explicit backend that does not run the algorithm's passes itself refuses it; with
    # 'auto' the bounded passes use torch ops, the Lloyd passes the resolved backend.
    problem = None if options.backend == "auto" else backend.algorithm_unsupported(
        algorithm, train)
    if problem is not None:
        if requested != "auto":
            raise ValueError(problem)
        algorithm = "lloyd"
    best: KMeansResult | None = None
    resumed = checkpointer.load(data.device) if checkpointer is not None and resume else None
    first_run = 0
    if resumed is not None:
        first_run = resumed.run
        generator.set_state(resumed.generator_state)
        if resumed.best is not None:
            labels = assign(data, resumed.best.centers - data.offset, backend=backend,
                            chunk_bytes=chunk_bytes).labels
            best = KMeansResult(resumed.best.centers, labels, resumed.best.inertia,
                                resumed.best.n_iter, resumed.best.history)
        if verbose:
            print(f"Resuming initialization {first_run + 1} at iteration "
                  f"{resumed.state.iteration} from {checkpointer.path}")
    for run in range(first_run, n_init):
        start = resumed.state if resumed is not None and run == resumed.run else None
        if start is None:
            initial = init(train, n_clusters, generator).to(data.acc_dtype)
            if verbose:
                print("Initialization complete")
        else:
            initial = start.centers
        on_iteration = None
        if checkpointer is not None:
            on_iteration = partial(_save_checkpoint, checkpointer, run, generator.get_state(),
                                   None if best is None else BestRun(
                                       best.centers, best.inertia, best.n_iter, best.history))
        result = lloyd(train, initial, backend=backend, max_iter=max_iter, tol=tol_abs,
                       chunk_bytes=chunk_bytes, verbose=verbose, algorithm=algorithm,
                       spherical=metric == "cosine", start=start, on_iteration=on_iteration)
        centers = result.centers + data.offset
        # predict() shifts the returned centers back; label against exactly those.
        shifted = centers - data.offset
        if subsampled:  # Lloyd's labels are the subsample's: assign all rows
            final = assign(data, shifted, backend=backend, chunk_bytes=chunk_bytes)
        elif result.labels_are_final and torch.equal(shifted, result.centers):
            # Converged with labels unchanged: the last pass already assigned against
            # these exact centers (scikit-learn skips this step then, too; Lloyd's updates
            # are round-tripped through the offset, lloyd.as_returned, so they are equal).
            final = Assignment(result.labels, inertia_of(data, shifted, result.labels,
                                                         backend=backend,
                                                         chunk_bytes=chunk_bytes,
                                                         distances=result.distances))
        else:
            final = assign(data, shifted, backend=backend, chunk_bytes=chunk_bytes,
                           labels_out=result.labels, previous=result.labels)
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
    return best, backend


def training_subset(data: KMeansData, n_clusters: int, max_samples_per_cluster: int | None,
                    generator: torch.Generator, caller: str) -> KMeansData:
    """Return the rows Lloyd runs on: ``data``, or ``n_clusters * max_samples_per_cluster``.

    When ``data`` has more rows than that, as many are drawn uniformly without replacement
    from ``generator`` (their weights kept, so sums over them estimate the full sums
    without bias; FAISS's points-per-centroid), and the choice is logged on the
    ``torchmeans`` logger. Otherwise ``data`` itself and nothing drawn: the fit is the
    one without the parameter, to the bit.
    """
    if max_samples_per_cluster is None:
        return data
    if data.collective:
        raise ValueError(
            "max_samples_per_cluster is not supported in a distributed fit: each rank holds "
            "only its own rows, so a uniform sample of all rows is not drawn; pass "
            "max_samples_per_cluster=None, or subsample the rows before the fit.")
    size = n_clusters * max_samples_per_cluster
    if data.n_samples <= size:
        return data
    rows = torch.randperm(data.n_samples, generator=generator, device=data.device)[:size]
    train = data.subset(rows.sort().values)  # (in row order: reads stay sequential)
    # The rows are in data's shifted space; keeping its offset makes Lloyd's round trip
    # through the offset and the cosine projection those of a fit on all rows.
    train.offset = data.offset
    fitted = "labels and inertia" if caller == "kmeans" else "labels_ and inertia_"
    logger.info("%s: fitting on %s of %s rows (max_samples_per_cluster=%d); %s are of all rows",
                caller, f"{size:,}", f"{data.n_samples:,}", max_samples_per_cluster, fitted)
    return train


def checkpoint_fingerprint(params: dict[str, Any], n_init: int) -> dict[str, Any]:
    """Return the parameters a checkpoint must agree with to be resumed."""
    init = params["init"]
    if isinstance(init, str):
        pass
    elif callable(init):
        init = getattr(init, "__qualname__", type(init).__name__)
    else:  # an array: its values
        array = np.ascontiguousarray(np.asarray(init, dtype=np.float64))
        init = "array:" + hashlib.sha256(array.tobytes()).hexdigest()[:16]
    seed = params["random_state"]
    seed = int(seed) if isinstance(seed, numbers.Integral) else None
    init_size, init_rounds = params["init_size"], params["init_rounds"]
    per_cluster = params.get("max_samples_per_cluster")
    return {"n_clusters": int(params["n_clusters"]), "init": init, "n_init": int(n_init),
            "max_iter": int(params["max_iter"]), "tol": float(params["tol"]),
            "algorithm": params["algorithm"], "metric": params["metric"],
            "init_size": None if init_size is None else int(init_size),
            "oversampling_factor": float(params["oversampling_factor"]),
            "init_rounds": None if init_rounds is None else int(init_rounds),
            "random_state": seed,
            "max_samples_per_cluster": None if per_cluster is None else int(per_cluster)}


def fit(
    X: Any,
    n_clusters: int,
    *,
    sample_weight: Any = None,
    init: Any = "k-means++",
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state: Any = None,
    verbose: bool = False,
    algorithm: str = "lloyd",
    init_size: int | None = None,
    metric: str = "euclidean",
    oversampling_factor: float = 2.0,
    init_rounds: int | None = None,
    max_samples_per_cluster: int | None = None,
    copy: bool = True,
    options: ExecutionOptions,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    distributed: bool | None = None,
    callable_input: Any = None,
    caller: str = "kmeans",
    default_n_init: int = 10,
) -> Fitted:
    """Fit k-means: the one pipeline that :func:`kmeans` and ``KMeans.fit`` both call.

    ``X`` is a checked tensor on the compute device or a source (:mod:`torchmeans.
    sources`); the other arguments are :func:`kmeans`'s, already validated.
    ``callable_input`` is what a callable ``init`` receives; ``caller`` and
    ``default_n_init`` shape the messages and the meaning of ``n_init='auto'``.
    """
    collective = Collective(distributed)
    streamed = is_source(X)
    n_features = X.n_features if streamed else X.shape[1]
    known_rows = X.n_samples if streamed else X.shape[0]
    offset = None
    if collective:
        if callable(init):
            raise ValueError("a callable init sees one rank's rows only: pass an array of "
                             "centers (the same on every rank) or 'k-means++' in a "
                             "distributed fit.")
        # Every rank shifts by the global mean, so their sums add up in one space.
        if not streamed and X.layout != torch.strided:
            raise ValueError("distributed fits take dense rows (not sparse) for now.")
        known_rows = None
        if not streamed:
            offset, _ = global_mean(X.to(accumulation_dtype(X.dtype)), collective)
    # Checked against the row count before any pass over the data where it is known (a
    # streamed source's is known after its first pass; a distributed fit's after a
    # collective).
    if known_rows is not None:
        check_n_samples(known_rows, n_clusters)
        n_init = resolve_n_init(n_init, init, default=default_n_init, caller=caller)
    data = prepare_data(X, sample_weight, copy=copy, metric=metric,
                        device=options.compute_device() if streamed else X.device,
                        offset=offset, collective=collective, precision=options.precision,
                        deterministic=options.deterministic)
    if known_rows is None:
        n_samples = int(collective.sum(torch.tensor([data.n_samples], device=data.device))[0])
        check_n_samples(n_samples, n_clusters)
        n_init = resolve_n_init(n_init, init, default=default_n_init, caller=caller)
    if collective:
        data.unit_weights = collective.all(data.unit_weights, data.device)
        if random_state is None:  # one seed for all ranks
            random_state = collective.broadcast_int(
                int(np.random.default_rng().integers(2**31 - 1)), data.device)
    generator = make_generator(random_state, data.device)
    # Drawn before any run (and before a resumed fit restores the generator): a resumed
    # fit draws the same rows.
    train = training_subset(data, n_clusters, max_samples_per_cluster, generator, caller)
    checkpointer = None
    if checkpoint is not None:
        fingerprint = checkpoint_fingerprint(dict(
            n_clusters=n_clusters, init=init, max_iter=max_iter, tol=tol, algorithm=algorithm,
            metric=metric, init_size=init_size, oversampling_factor=oversampling_factor,
            init_rounds=init_rounds, random_state=random_state,
            max_samples_per_cluster=max_samples_per_cluster), n_init)
        if train is not data:  # the runs' states hold the subsample's labels
            fingerprint["lloyd_rows"] = train.n_samples
        checkpointer = Checkpointer(checkpoint, checkpoint_every,
                                    data_fingerprint(data, fingerprint))
    elif resume:
        raise ValueError("resume=True needs a checkpoint (the file to resume).")
    init_fn = resolve_init(init, n_clusters, n_features, data.acc_dtype, data.device,
                           callable_input=callable_input, init_size=init_size, metric=metric,
                           oversampling_factor=oversampling_factor, init_rounds=init_rounds)
    result, backend = fit_data(
        data, n_clusters, init=init_fn, n_init=n_init, max_iter=max_iter, tol=tol,
        generator=generator, options=options,
        verbose=bool(verbose), algorithm=warn_elkan_single_cluster(algorithm, n_clusters),
        metric=metric, checkpointer=checkpointer, resume=resume, train=train)
    return Fitted(result, backend, data.offset, n_init)


def warn_elkan_single_cluster(algorithm: str, n_clusters: int) -> str:
    """Return the algorithm to run; Elkan with one cluster is Lloyd, with scikit-learn's warning."""
    if algorithm == "elkan" and n_clusters == 1:
        warn("algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' "
             "instead.", RuntimeWarning)
        return "lloyd"
    return algorithm


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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    distributed: bool | None = None,
    max_samples_per_cluster: int | None = None,
) -> KMeansResult:
    """Exact Lloyd k-means on any torch device.

    Parameters
    ----------
    X : Tensor, array-like of shape (n_samples, n_features), or a source
        Samples: a dense or sparse torch tensor, a numpy array, a scipy sparse
        matrix, a pandas DataFrame or a list. Integer and boolean arrays become float64
        (as in scikit-learn), integer and boolean tensors torch's default float dtype.
        A source of :mod:`torchmeans.sources` (memory-mapped files, shards, batches)
        is streamed chunk by chunk.
    n_clusters : int
        Number of clusters.
    sample_weight : Tensor or array-like of shape (n_samples,), optional
        Non-negative weight of each sample.
    init : {'k-means++', 'k-means||', 'random'}, array of shape (n_clusters, n_features) or callable
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
    checkpoint : str or PathLike, optional
        Write the fit's state to this file every ``checkpoint_every`` iterations
        (atomically); with ``resume=True`` an interrupted fit continues from it to the
        result the uninterrupted fit would have had (see :meth:`torchmeans.KMeans.fit`).
    checkpoint_every : int
        Iterations between checkpoints.
    resume : bool
        Continue from ``checkpoint`` when that file exists.
    distributed : bool, optional
        Fit across the ranks of the initialised ``torch.distributed`` process group, each
        passing its own rows (None: whenever a group of more than one process is
        initialised; see :class:`torchmeans.KMeans`).
    max_samples_per_cluster : int, optional
        Speed over exactness (FAISS's points per centroid): with more than
        ``n_clusters * max_samples_per_cluster`` rows, seed and iterate on that many
        drawn uniformly (weights kept) and assign all rows to the centers found; logged
        at INFO on the ``torchmeans`` logger. ``labels`` and ``inertia`` are of all rows
        (see :class:`torchmeans.KMeans`). None (default): every row.

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
    params = dict(
        n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
        algorithm=algorithm, init_size=init_size, metric=metric,
        oversampling_factor=oversampling_factor, init_rounds=init_rounds,
        random_state=random_state, verbose=verbose, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, distributed=distributed,
        max_samples_per_cluster=max_samples_per_cluster)
    validate_parameters({**params, **dict(device=device, backend=backend, precision=precision,
                                          chunk_bytes=chunk_bytes,
                                          deterministic=deterministic)}, "kmeans")
    options = ExecutionOptions(device=device, backend=backend, precision=precision,
                               chunk_bytes=chunk_bytes, deterministic=deterministic)
    X_tensor = as_stream(X)  # memory maps, h5py/zarr datasets: streamed, not copied
    if not is_source(X_tensor):
        X_tensor = as_tensor(X, options.compute_device(X))
    return fit(X_tensor, sample_weight=sample_weight, copy=copy, options=options,
               resume=resume, callable_input=X, caller="kmeans", **params).result


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
