"""``KMeans``: scikit-learn's estimator contract over the functional core."""

from __future__ import annotations

import hashlib
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from torchmeans._checkpoint import Checkpointer, data_fingerprint
from torchmeans._distributed import Collective, global_mean
from torchmeans._functional import fit_data, resolve_init, verbose_logging
from torchmeans._lloyd import native_unsupported, uses_direct_labels
from torchmeans._validation import (
    NUMPY_FLOAT_DTYPES,
    _from_numpy,
    _scipy_to_csr_tensor,
    check_params,
    check_tensor,
    make_generator,
    prepare_data,
    resolve_device,
    to_device,
)
from torchmeans.data import KMeansData, accumulation_dtype
from torchmeans.module import KMeansModule
from torchmeans.ops import _native
from torchmeans.ops.assign import assign, pairwise_distances
from torchmeans.ops.precision import with_full_float32_matmul
from torchmeans.sources import is_source

__all__ = ["KMeans"]


OutputFn = Callable[..., Any]


def _numpy_output(tensor: Tensor, *, labels: bool = False) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.astype(np.int32) if labels else array


def _torch_output(device: torch.device) -> OutputFn:
    def to_input_device(tensor: Tensor, *, labels: bool = False) -> Tensor:
        return tensor.to(device)
    return to_input_device


def _write_labels(labels: Tensor, out: Any, block: int = 1 << 20) -> Any:
    """Copy ``labels`` into the caller's integer array ``out`` (block by block) and return it."""
    if tuple(out.shape) != (labels.shape[0],):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected ({labels.shape[0]},).")
    if isinstance(out, Tensor):
        if out.is_floating_point() or out.is_complex():
            raise ValueError(f"out must hold integers, got {out.dtype}.")
        out.copy_(labels)
        return out
    if np.dtype(out.dtype).kind not in "iu":
        raise ValueError(f"out must hold integers, got {out.dtype}.")
    for start in range(0, labels.shape[0], block):
        out[start : start + block] = labels[start : start + block].cpu().numpy()
    return out


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
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
        Log progress at INFO level on the ``torchmeans`` logger.
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
        ``n_iter_``; ``'auto'`` picks the fastest measured for the shape.
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
        Write the state of the fit to this file every ``checkpoint_every``
        iterations (atomically: a crash never leaves a half-written file); ``fit(X,
        resume=True)`` then continues an interrupted fit from it to the result the
        uninterrupted fit would have had. Needs the ``io`` extra (safetensors).
    checkpoint_every : int, default=10
        Iterations between checkpoints.
    distributed : bool, default=None
        Fit across the processes of the initialised ``torch.distributed`` process
        group, each rank passing its own rows (None: whenever a group of more than
        one process is initialised; False: fit each rank's rows on their own). All
        ranks end with the same centers; ``labels_`` are each rank's own.
    backend : {'auto', 'torch', 'native', 'triton'}, default='auto'
        How a Lloyd pass runs. ``'torch'``: a distance GEMM and torch ops, on
        every device (the reference). ``'native'``: after the GEMM, a small C/OpenMP
        kernel that fuses the nearest-center search, label update and cluster sums
        on the CPU (dense float32/float64 data); it is compiled with the system C
        compiler on first use (well under a second) and cached. ``'triton'``: fused
        Triton kernels on CUDA (distances and argmin in registers, never a
        ``rows x k`` block; deterministic sort-based sums; float32/float16/bfloat16).
        ``'auto'``: native on the CPU, Triton on CUDA, where they apply; torch
        otherwise. An explicit ``'native'`` or ``'triton'`` that cannot run raises.
        Same labels either way, but for float32 near-ties under Triton (its own
        summation order; a Triton fit's ``labels_`` come from a final torch pass).
    precision : {'exact', 'fast'}, default='exact'
        ``'exact'``: distances in float32 (float16/bfloat16 chunks are cast) or
        float64; float32 products never use TF32 (the fit sets
        ``torch.set_float32_matmul_precision('highest')`` for its duration and
        restores it). ``'fast'``: distance products in bfloat16 (half-precision data:
        their own precision), keeping only the labels proven equal to the float32
        ones (a margin test against a proven error bound) and resolving the others
        exactly, so labels equal the float32 computation's (see
        :mod:`torchmeans.ops.precision`). Applies to Lloyd passes and ``predict``;
        the bound-based algorithms and ``backend='native'`` compute in float32. Not
        yet faster than ``'exact'`` where measured (benchmarks/RESULTS.md).
    deterministic : bool, default=True
        Repeated fits with the same ``random_state`` on the same device give
        bit-identical centers and labels: on accelerators the per-cluster sums are
        added in a fixed order (a sorted segmented sum, not atomics). False allows
        atomic additions on GPUs (faster when clusters are large; the CPU is
        deterministic either way).

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
    Integer and boolean data are clustered as float32.

    Examples
    --------
    >>> import numpy as np
    >>> from torchmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    """

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
        checkpoint_every: int = 10,
        distributed: bool | None = None,
        precision: str = "exact",
        deterministic: bool = True,
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- input handling -------------------------------------------------------------

    def _prepare(self, X: Any, *, reset: bool,
                 allow_empty: bool = False) -> tuple[Tensor, Any, OutputFn]:
        """Check ``X``: return it on the compute device, as validated, and a converter back.

        A streamed source (:mod:`torchmeans.sources`) is returned as it is (it is read
        chunk by chunk later); its outputs are numpy arrays.
        """
        if is_source(X):
            self._check_n_features(X.n_features, reset)
            return X, X, _numpy_output
        if isinstance(X, Tensor):
            X_tensor = check_tensor(X, allow_empty=allow_empty)
            self._check_n_features(X_tensor.shape[1], reset)
            device = resolve_device(self.device, X)
            return to_device(X_tensor, device), X, _torch_output(X.device)
        validated = validate_data(
            self, X, accept_sparse="csr", dtype=NUMPY_FLOAT_DTYPES, order="C", reset=reset,
            ensure_min_samples=0 if allow_empty else 1,
        )
        tensor = _scipy_to_csr_tensor(validated) if sp.issparse(validated) else _from_numpy(
            validated
        )
        return to_device(tensor, resolve_device(self.device)), validated, _numpy_output

    def _fingerprint(self, n_init: int) -> dict[str, Any]:
        """Return the parameters a checkpoint must agree with to be resumed."""
        if isinstance(self.init, str):
            init = self.init
        elif callable(self.init):
            init = getattr(self.init, "__qualname__", type(self.init).__name__)
        else:  # an array: its values
            array = np.ascontiguousarray(np.asarray(self.init, dtype=np.float64))
            init = "array:" + hashlib.sha256(array.tobytes()).hexdigest()[:16]
        seed = self.random_state
        seed = int(seed) if isinstance(seed, numbers.Integral) else None
        return {"n_clusters": int(self.n_clusters), "init": init, "n_init": int(n_init),
                "max_iter": int(self.max_iter), "tol": float(self.tol),
                "algorithm": self.algorithm, "metric": self.metric,
                "init_size": None if self.init_size is None else int(self.init_size),
                "oversampling_factor": float(self.oversampling_factor),
                "init_rounds": None if self.init_rounds is None else int(self.init_rounds),
                "random_state": seed}

    def _check_n_features(self, n_features: int, reset: bool) -> None:
        if reset:
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _direct_labels(self, data: KMeansData, centers: Tensor) -> bool:
        """Whether labels come from the native kernel's own scores, as in the fit.

        As the fit decided, where the kernel can run on ``data``. Estimators without
        a ``backend`` (``MiniBatchKMeans``) and models loaded from files label with the
        GEMM.
        """
        return (getattr(self, "_fit_direct_labels", False)
                and native_unsupported(data) is None
                and _native.direct_applies(centers.shape[1]))

    def _fitted_terms(self, X: Any, sample_weight: Any = None) -> tuple[KMeansData, Tensor]:
        """Return data and centers for predict/transform/score, shifted exactly as in ``fit``."""
        if is_source(X):
            device = resolve_device(self.device)
            offset = self._offset.to(device)
        else:
            device = X.device
            offset = self._offset.to(device, accumulation_dtype(X.dtype))
        data = prepare_data(X, sample_weight, copy=False, metric=self.metric, offset=offset,
                            device=device, precision=getattr(self, "precision", "exact"))
        centers = self.cluster_centers_
        if not isinstance(centers, Tensor):
            centers = torch.from_numpy(centers)
        return data, centers.to(data.acc_dtype).to(device) - data.offset

    # -- estimator API ------------------------------------------------------------

    @with_full_float32_matmul
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None, *,
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
        resume : bool, default=False
            Continue from ``checkpoint`` when that file exists (a checkpoint of a
            fit with other data or parameters is refused); start afresh otherwise.

        Returns
        -------
        self : KMeans
            Fitted estimator.
        """
        collective = Collective(self.distributed)
        X_tensor, validated, output = self._prepare(X, reset=True, allow_empty=bool(collective))
        streamed = is_source(X_tensor)
        n_features = X_tensor.n_features if streamed else X_tensor.shape[1]
        known_rows = X_tensor.n_samples if streamed else X_tensor.shape[0]
        offset = None
        if collective:
            # Every rank shifts by the global mean, so their sums add up in one space.
            if not streamed and X_tensor.layout != torch.strided:
                raise ValueError("distributed fits take dense rows (not sparse) for now.")
            known_rows = None
            if not streamed:
                offset, _ = global_mean(X_tensor.to(accumulation_dtype(X_tensor.dtype)),
                                        collective)

        def check(n_samples: int) -> int:
            return check_params(
                n_clusters=self.n_clusters, n_samples=n_samples, init=self.init,
                n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                chunk_bytes=self.chunk_bytes, algorithm=self.algorithm,
                init_size=self.init_size, backend=self.backend, metric=self.metric,
                oversampling_factor=self.oversampling_factor, init_rounds=self.init_rounds,
                precision=self.precision, deterministic=self.deterministic)

        # Parameters are checked before any pass over the data; a streamed source's row
        # count is known after its first pass.
        n_init = check(known_rows if known_rows is not None else self.n_clusters)
        data = prepare_data(X_tensor, sample_weight, copy=self.copy_x, metric=self.metric,
                            device=resolve_device(self.device) if streamed else None,
                            offset=offset, collective=collective, precision=self.precision,
                            deterministic=self.deterministic)
        device = data.device
        n_init = check(int(collective.sum(torch.tensor([data.n_samples], device=device))[0]))
        random_state = self.random_state
        if collective:
            data.unit_weights = collective.all(data.unit_weights, device)
            if random_state is None:  # one seed for all ranks
                random_state = collective.broadcast_int(
                    int(check_random_state(None).randint(2**31 - 1)), device)
        checkpointer = None
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
                raise ValueError(f"checkpoint_every must be an integer >= 1, got "
                                 f"{self.checkpoint_every!r}.")
            checkpointer = Checkpointer(self.checkpoint, self.checkpoint_every,
                                        data_fingerprint(data, self._fingerprint(n_init)))
        elif resume:
            raise ValueError("resume=True needs the checkpoint parameter (the file to resume).")
        init = resolve_init(self.init, self.n_clusters, n_features, data.acc_dtype, device,
                            callable_input=validated, init_size=self.init_size,
                            metric=self.metric, oversampling_factor=self.oversampling_factor,
                            init_rounds=self.init_rounds, collective=collective)
        result = fit_data(
            data,
            self.n_clusters,
            init=init,
            n_init=n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            generator=make_generator(random_state, device),
            chunk_bytes=self.chunk_bytes,
            verbose=verbose_logging(self.verbose),
            algorithm=self.algorithm,
            backend=self.backend,
            metric=self.metric,
            checkpointer=checkpointer,
            resume=resume,
            collective=collective,
        )
        self._offset = data.offset
        # Whether the fit labelled with the native kernel's own scores (decided with this
        # fit's threads and data): predict follows it, so labels_ equal predict(X).
        self._fit_direct_labels = uses_direct_labels(self.backend, data, self.n_clusters,
                                                 self.chunk_bytes)
        self.cluster_centers_ = output(result.centers)
        self.labels_ = output(result.labels, labels=True)
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.n_iter_history_ = result.history
        self._n_features_out = self.n_clusters
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to a safetensors file (read it with :func:`torchmeans.load`).

        Parameters
        ----------
        path : str or PathLike
            Destination, conventionally ``*.safetensors``; written atomically.

        Returns
        -------
        Path
            The path written.
        """
        from torchmeans._io import save

        return save(self, path)

    def to_module(self, *, return_distances: bool = False) -> KMeansModule:
        """Return a ``torch.nn.Module`` mapping vectors to their nearest center's index.

        The module works under ``torch.compile`` and ``torch.export`` and gives
        ``predict``'s labels (see :class:`torchmeans.module.KMeansModule`).

        Parameters
        ----------
        return_distances : bool, default=False
            Also return each vector's Euclidean distance to its center.

        Returns
        -------
        KMeansModule
            On the device the centers live on (move it with ``.to``).
        """
        check_is_fitted(self)
        centers = self.cluster_centers_
        if not isinstance(centers, Tensor):
            centers = torch.from_numpy(np.ascontiguousarray(centers))
        return KMeansModule(centers, self._offset.to(centers.device),
                            return_distances=return_distances,
                            normalize=self.metric == "cosine")

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit, then return the cluster of each sample (``labels_``).

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            Training samples.
        y : Ignored
            Not used.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        labels : ndarray or Tensor of shape (n_samples,)
            Index of the cluster each sample belongs to.
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    @with_full_float32_matmul
    def predict(self, X: Any, *, out: Any = None) -> Any:
        """Return the index of the closest center for each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor, source} of shape (n_samples, n_features)
            New samples (a :mod:`torchmeans.sources` source is streamed).
        out : ndarray or Tensor of shape (n_samples,), optional
            Integer array to write the labels into, e.g. a ``numpy.memmap`` (written
            in blocks) for data larger than memory; it is returned.

        Returns
        -------
        labels : ndarray of shape (n_samples,) (int32) or Tensor (int64)
            Index of the cluster each sample belongs to.
        """
        check_is_fitted(self)
        X_tensor, _, output = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor)
        labels = assign(data, centers, chunk_bytes=self.chunk_bytes,
                        direct=self._direct_labels(data, centers)).labels
        if out is None:
            return output(labels, labels=True)
        return _write_labels(labels, out)

    def fit_transform(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit, then return the distance of each sample to each center.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            Training samples.
        y : Ignored
            Not used.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        distances : ndarray or Tensor of shape (n_samples, n_clusters)
            Euclidean distance of each sample to each center.
        """
        return self.fit(X, sample_weight=sample_weight).transform(X)

    @with_full_float32_matmul
    def transform(self, X: Any) -> Any:
        """Return the Euclidean distance of each sample to each center.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            New samples.

        Returns
        -------
        distances : ndarray or Tensor of shape (n_samples, n_clusters)
            Distances, computed chunk by chunk.
        """
        check_is_fitted(self)
        X_tensor, _, output = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor)
        distances = pairwise_distances(data, centers, chunk_bytes=self.chunk_bytes)
        if self.metric == "cosine":  # 1 - x.c = ||x - c||^2 / 2 for unit vectors
            distances = distances.square_().mul_(0.5)
        return output(distances)

    @with_full_float32_matmul
    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Return the opposite of the (weighted) inertia of ``X`` against the centers.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            New samples.
        y : Ignored
            Not used.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        score : float
            ``-sum_i w_i ||x_i - c_label(i)||^2``.
        """
        check_is_fitted(self)
        X_tensor, _, _ = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor, sample_weight)
        inertia = float(assign(data, centers, chunk_bytes=self.chunk_bytes,
                               direct=self._direct_labels(data, centers)).inertia)
        return -inertia * (0.5 if self.metric == "cosine" else 1.0)
