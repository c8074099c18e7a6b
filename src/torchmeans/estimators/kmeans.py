"""``KMeans``: scikit-learn's estimator contract over the functional core."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from torchmeans.core.functional import fit
from torchmeans.core.options import ExecutionOptions
from torchmeans.core.precision import with_full_float32_matmul
from torchmeans.core.validation import constraints, validate_parameters
from torchmeans.core.warning import warn
from torchmeans.data.distributed import Collective
from torchmeans.estimators.base import BaseKMeans

__all__ = ["KMeans"]


class KMeans(BaseKMeans):
    """K-means clustering on any torch device, a drop-in for :class:`sklearn.cluster.KMeans`.

    Exact Lloyd iterations: each assignment is a chunked matrix product
    (never an ``n_samples x n_clusters`` matrix), each update a weighted
    scatter-sum. From the same initial centers it gives scikit-learn's labels
    and centers.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'k-means||', 'random'}, callable or array-like of shape \
(n_clusters, n_features), default='k-means++'
        ``'k-means++'``: greedy k-means++ (``2 + log(k)`` local trials per center);
        ``'k-means||'``: k-means|| (Bahmani et al. 2012): a few sampling passes over
        the data instead of ``k`` sequential steps, then weighted k-means++ and Lloyd
        on the sampled candidates (see ``oversampling_factor``, ``init_rounds``);
        ``'random'``: distinct rows drawn with probability proportional to
        ``sample_weight``; an array: the initial centers (copied, never
        modified); a callable ``init(X, n_clusters, random_state)`` returning
        centers, called with ``X`` as passed to ``fit`` and a
        ``numpy.random.RandomState``.
    n_init : 'auto' or int, default='auto'
        Number of initializations; the one with the lowest inertia is kept.
        ``'auto'``: 1 for ``'k-means++'``, ``'k-means||'`` and arrays, 10 for
        ``'random'`` and callables.
    max_iter : int, default=300
        Maximum Lloyd iterations per initialization.
    tol : float, default=1e-4
        Convergence when the total squared center shift is at most ``tol``
        times the mean per-feature variance of ``X``. Iterations also stop when
        no label changes.
    verbose : int, default=0
        Print progress to stdout, in scikit-learn's words.
    random_state : int, RandomState, numpy Generator, torch Generator or None, default=None
        Seeds a local ``torch.Generator`` (global random state is never
        touched). The same seed gives the same result on the same device.
    copy_x : bool, default=True
        If True, one mean-shifted copy of ``X`` is kept during ``fit`` for fast
        passes. If False, each chunk is shifted when read and no copy of ``X``
        is made. ``X`` is never modified either way.
    algorithm : {'lloyd', 'elkan', 'hamerly', 'yinyang', 'auto'}, default='lloyd'
        ``'lloyd'`` computes every distance on every iteration. The others keep
        per-sample distance bounds and skip the samples that provably keep their
        cluster: ``'hamerly'`` (one bound), ``'yinyang'`` (one per group of about
        ten centers), ``'elkan'`` (one per center, ``n_samples x n_clusters``
        memory, as scikit-learn's). All give Lloyd's labels, centers and
        ``n_iter_``; ``'auto'`` picks by shape and backend (see docs/design.md).
    device : str or torch.device, default=None
        Where to compute. None: the input tensor's device, else CUDA when
        available, else the CPU.
    chunk_bytes : int, default=None
        Working-memory budget of one chunk's temporaries (default 16 MiB on the
        CPU, 256 MiB on accelerators).
    init_size : int, default=None
        Seed ``'k-means++'`` or ``'random'`` on this many rows drawn uniformly
        without replacement (their sample weights kept), as scikit-learn's
        ``MiniBatchKMeans``; None seeds on all rows. For very large data: the
        seeding then costs ``init_size / n_samples`` of a full one.
    metric : {'euclidean', 'cosine'}, default='euclidean'
        ``'cosine'`` runs spherical k-means: rows (and given initial centers) are
        scaled to unit norm, each sample goes to the center of largest cosine
        similarity, and each center is the normalised mean of its samples.
        ``inertia_`` and ``score`` then sum cosine distances ``1 - cos``, and
        ``transform`` returns them; ``cluster_centers_`` are unit vectors. Rows
        of zero norm raise ``ValueError``. A normalised copy of ``X`` is kept.
    oversampling_factor : float, default=2.0
        ``init='k-means||'`` only: each round samples about ``oversampling_factor *
        n_clusters`` candidate rows (Bahmani et al.'s ``l``).
    init_rounds : int, default=None
        ``init='k-means||'`` only: number of sampling rounds (passes over the data);
        None means 5.
    checkpoint : str or PathLike, default=None
        Deprecated: pass ``checkpoint`` to :meth:`fit` (a constructor parameter is copied
        by ``clone`` into parallel fits, which would then write one file).
    checkpoint_every : int, default=None
        Deprecated: pass ``checkpoint_every`` to :meth:`fit`.
    distributed : bool, default=None
        Fit across the processes of the initialised ``torch.distributed`` process
        group, each rank passing its own rows (None: whenever a group of more than
        one process is initialised; False: fit each rank's rows on their own). All
        ranks end with the same centers; ``labels_`` are each rank's own.
    backend : {'auto', 'torch', 'native', 'triton'}, default='auto'
        How a Lloyd pass runs. ``'torch'``: a distance GEMM and torch ops, on every
        device (the reference). ``'native'``: a C/OpenMP kernel fusing the nearest-center
        search, label update and cluster sums, on the CPU for dense float32/float64 data
        (compiled at install, docs/native_build.md). ``'triton'``: fused Triton kernels on
        CUDA (no ``rows x k`` block, deterministic sums; float32/float16/bfloat16).
        ``'auto'``: native on the CPU, Triton on CUDA, where they apply; torch otherwise.
        An explicit backend that cannot run raises. Same labels either way but for float32
        near-ties under Triton (a Triton fit's ``labels_`` come from a final torch pass).
    precision : {'exact', 'fast'}, default='exact'
        ``'exact'``: distances in float32 (float16/bfloat16 chunks are cast) or float64,
        never TF32 (the fit sets the float32 matmul precision to ``'highest'`` and
        restores it). ``'fast'``: distance products in bfloat16 (half-precision data:
        their own), keeping the labels a margin test proves equal to the float32 ones and
        resolving the others exactly (:mod:`torchmeans.core.precision`). Applies to Lloyd
        passes and ``predict``; the bound-based algorithms and ``backend='native'``
        compute in full precision. Not yet faster than ``'exact'`` (RESULTS.md,
        "precision='fast' against 'exact'").
    deterministic : bool, default=True
        Repeated fits with the same ``random_state`` on the same device give
        bit-identical centers and labels: on accelerators the per-cluster sums are
        added in a fixed order (a sorted segmented sum, not atomics). False allows
        atomic additions on GPUs (faster when clusters are large; the CPU is
        deterministic either way).
    max_samples_per_cluster : int, default=None
        Speed over exactness, FAISS's points per centroid. When ``X`` has more than
        ``n_clusters * max_samples_per_cluster`` rows, the seeding and the Lloyd
        iterations (of every ``n_init`` run) use that many rows drawn uniformly
        without replacement from the fit's generator, their sample weights kept (an
        unbiased estimate of the full sums); then all rows are assigned to the centers
        found, so ``labels_`` and ``inertia_`` are of all rows (``labels_ ==
        predict(X)``, ``inertia_ == -score(X)``). The centers are those of the sample:
        close to, not equal to, a full fit's; each iteration costs
        ``n_clusters * max_samples_per_cluster / n_samples`` of a full one (RESULTS.md,
        "max_samples_per_cluster"). Never silent: an INFO record on the ``torchmeans``
        logger says how many rows were used. None (default), or no more rows than
        that: every row, the same fit as without the parameter. A streamed source's
        sample is read into memory (one pass for a sequential source); distributed fits
        refuse it (``ValueError``).

    Attributes
    ----------
    cluster_centers_ : ndarray or Tensor of shape (n_clusters, n_features)
        Cluster centers; a tensor on the input's device when fitted on a
        tensor. float16/bfloat16 data give float32 centers.
    labels_ : ndarray of shape (n_samples,) (int32) or Tensor (int64)
        Cluster of each training sample, consistent with ``cluster_centers_``.
    inertia_ : float
        Weighted sum of squared distances of samples to their closest center.
    n_iter_ : int
        Iterations run by the kept initialization.
    n_iter_history_ : list of IterationStats
        Per-iteration inertia, center shift and label changes of the kept run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Notes
    -----
    Outputs follow the input: numpy (or pandas, lists, scipy sparse) in gives
    numpy out; a torch tensor in gives tensors out on that tensor's device.
    Integer and boolean arrays are clustered as float64 (as scikit-learn does),
    integer and boolean tensors in torch's default float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from torchmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseKMeans._parameter_constraints,
        **constraints("copy_x", "algorithm", "backend", "oversampling_factor", "init_rounds",
                      "checkpoint", "checkpoint_every", "distributed", "precision",
                      "deterministic", "max_samples_per_cluster"),
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        n_init: int | str = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        verbose: int = 0,
        random_state: Any = None,
        copy_x: bool = True,
        algorithm: str = "lloyd",
        device: str | torch.device | None = None,
        chunk_bytes: int | None = None,
        init_size: int | None = None,
        backend: str = "auto",
        metric: str = "euclidean",
        oversampling_factor: float = 2.0,
        init_rounds: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        distributed: bool | None = None,
        precision: str = "exact",
        deterministic: bool = True,
        max_samples_per_cluster: int | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.device = device
        self.chunk_bytes = chunk_bytes
        self.init_size = init_size
        self.backend = backend
        self.metric = metric
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.distributed = distributed
        self.precision = precision
        self.deterministic = deterministic
        self.max_samples_per_cluster = max_samples_per_cluster

    # -- estimator API ------------------------------------------------------------

    @with_full_float32_matmul
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None, *,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
            resume: bool = False) -> KMeans:
        """Compute k-means clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            Training samples.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample (used by the init too, except
            for arrays and callables).
        checkpoint : str or PathLike, default=None
            Write the state of the fit to this file every ``checkpoint_every``
            iterations (atomically: a crash never leaves a half-written file); ``fit(X,
            checkpoint=path, resume=True)`` then continues an interrupted fit from it to
            the result the uninterrupted fit would have had. Needs the ``io`` extra
            (safetensors). A fit-time argument, so that clones (``GridSearchCV``'s
            parallel fits) never share a file.
        checkpoint_every : int, default=None
            Iterations between checkpoints (None: 10).
        resume : bool, default=False
            Continue from ``checkpoint`` when that file exists (a checkpoint of a
            fit with other data or parameters is refused); start afresh otherwise.

        Returns
        -------
        self : KMeans
            Fitted estimator.
        """
        params = self.get_params(deep=False)
        self._validate_params(params)
        checkpoint, checkpoint_every = self._checkpoint_arguments(checkpoint, checkpoint_every)
        validate_parameters({"checkpoint": checkpoint, "checkpoint_every": checkpoint_every},
                            "KMeans.fit")
        distributed = Collective(self.distributed)
        X_tensor, validated, output = self._prepare(X, reset=True,
                                                    allow_empty=bool(distributed))
        fitted = fit(
            X_tensor, self.n_clusters, sample_weight=sample_weight, init=self.init,
            n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
            random_state=self.random_state, verbose=self.verbose, algorithm=self.algorithm,
            init_size=self.init_size, metric=self.metric,
            oversampling_factor=self.oversampling_factor, init_rounds=self.init_rounds,
            max_samples_per_cluster=self.max_samples_per_cluster, copy=self.copy_x,
            options=ExecutionOptions.from_params(params, validated=True),
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
            distributed=self.distributed, callable_input=validated,
            caller=type(self).__name__, default_n_init=self._default_n_init)
        result = fitted.result
        self._n_init = fitted.n_init
        self._offset = fitted.offset
        # predict follows the fit's backend (so labels_ equal predict(X)).
        self._fit_backend = fitted.backend.name
        self.cluster_centers_ = output(result.centers)
        self.labels_ = output(result.labels, labels=True)
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.n_iter_history_ = result.history
        self._n_features_out = self.n_clusters
        return self

    def _checkpoint_arguments(self, checkpoint: Any, every: Any) -> tuple[Any, int]:
        """Return the fit's checkpoint file and interval (the deprecated constructor's)."""
        if self.checkpoint is not None or self.checkpoint_every is not None:
            warn("KMeans(checkpoint=..., checkpoint_every=...) is deprecated and will be "
                 "removed: clone() and GridSearchCV copy it into parallel fits, which then "
                 "write one file. Pass them to fit(): fit(X, checkpoint=path, resume=True).",
                 FutureWarning)
        if checkpoint is None:
            checkpoint = self.checkpoint
        if every is None:
            every = 10 if self.checkpoint_every is None else self.checkpoint_every
        return checkpoint, every
