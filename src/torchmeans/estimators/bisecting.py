"""``BisectingKMeans``: scikit-learn's estimator over :mod:`torchmeans.core.bisecting`."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import scipy.sparse as sp
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from torchmeans.backends import resolve_backend
from torchmeans.core.assign import chunk_budget, inertia_of
from torchmeans.core.bisecting import STRATEGIES, bisecting_kmeans, descend, split_init
from torchmeans.core.lloyd import resolve_algorithm
from torchmeans.core.precision import with_full_float32_matmul
from torchmeans.core.validation import (
    constraints,
    make_generator,
    prepare_data,
    validate_parameters,
)
from torchmeans.data.base import KMeansData
from torchmeans.estimators.base import BaseKMeans

__all__ = ["BisectingKMeans"]

OWN_CONSTRAINTS: dict[str, list[Any]] = {
    # scikit-learn's (sklearn/cluster/_bisect_k_means.py), narrower than KMeans' for these.
    "init": [StrOptions({"k-means++", "random"}), callable],
    "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
    "algorithm": [StrOptions({"lloyd", "elkan"})],
    "bisecting_strategy": [StrOptions(set(STRATEGIES))],
}


class BisectingKMeans(BaseKMeans):
    """Bisecting k-means on any torch device: :class:`sklearn.cluster.BisectingKMeans`.

    Starting from one cluster of all samples, the cluster of largest inertia (or with the
    most samples) is split in two by a 2-means fit (torchmeans' Lloyd, best of ``n_init``),
    until there are ``n_clusters``. The splits form a tree; :meth:`predict` descends it,
    taking at each split the nearer of its two centers (scikit-learn's rule), so a new
    sample's label may differ from its nearest center in ``cluster_centers_``.
    :meth:`kneighbors`, :meth:`soft_assign` and :meth:`to_faiss` see the flat centers (the
    nearest ones, not the tree's descent: ``kneighbors``' first column may differ from
    ``predict``).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'random'} or callable, default='random'
        Initial centers of each split: ``'random'``: two distinct rows of the cluster drawn
        with probability proportional to ``sample_weight``; ``'k-means++'``: greedy
        k-means++; a callable ``init(X, 2, random_state)`` is called with the cluster's rows
        (shifted by the training mean for dense data, as in scikit-learn) and returns two
        centers in that space.
    n_init : int, default=1
        Number of 2-means runs per split; the one with the lowest inertia is kept.
    random_state : int, RandomState, numpy Generator, torch Generator or None, default=None
        Seeds a local ``torch.Generator``, drawn from by every split.
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    verbose : int, default=0
        Print progress to stdout, in scikit-learn's words.
    tol : float, default=1e-4
        A run stops when the total squared center shift is at most ``tol`` (absolute, as in
        scikit-learn's bisections, which do not scale it by the variance) or no label
        changes.
    copy_x : bool, default=True
        If True, one mean-shifted copy of ``X`` is kept during ``fit``; if False, rows are
        shifted chunk by chunk. ``X`` is never modified either way.
    algorithm : {'lloyd', 'elkan'}, default='lloyd'
        The 2-means passes: all distances, or Elkan's bounds (same result).
    bisecting_strategy : {'biggest_inertia', 'largest_cluster'}, default='biggest_inertia'
        Which cluster is split next: the one of largest (weighted) inertia, or the one
        with the most samples.
    device : str or torch.device, default=None
        Where to compute. None: the input tensor's device, else CUDA when available,
        else the CPU.
    chunk_bytes : int, default=None
        Working-memory budget of one chunk's temporaries (default 16 MiB on the CPU,
        256 MiB on accelerators).

    Attributes
    ----------
    cluster_centers_ : ndarray or Tensor of shape (n_clusters, n_features)
        The leaves' centers, in the order of the leaves (left before right).
    labels_ : ndarray of shape (n_samples,) (int32) or Tensor (int64)
        Leaf of each training sample.
    inertia_ : float
        Weighted sum of squared distances of samples to their leaf's center.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Notes
    -----
    Outputs follow the input as in :class:`~torchmeans.KMeans` (tensors in, tensors out).
    Random draws differ from scikit-learn's (torch generators): fits compare from the same
    callable init. ``transform`` and ``score`` use ``cluster_centers_`` (nearest center),
    as scikit-learn's.

    Examples
    --------
    >>> import numpy as np
    >>> from torchmeans import BisectingKMeans
    >>> X = np.array([[1, 1], [10, 1], [3, 1], [10, 0], [2, 1], [10, 2],
    ...               [10, 8], [10, 9], [10, 10]])
    >>> bkm = BisectingKMeans(n_clusters=3, random_state=0).fit(X)
    >>> sorted(bkm.cluster_centers_.tolist())
    [[2.0, 1.0], [10.0, 1.0], [10.0, 9.0]]
    """

    _parameter_constraints: ClassVar[dict] = {
        **constraints("n_clusters", "max_iter", "tol", "verbose", "random_state", "copy_x",
                      "device", "chunk_bytes"),
        **OWN_CONSTRAINTS,
    }
    _default_n_init = 1
    metric = "euclidean"
    """Not a parameter: what the shared predict/transform/score read."""

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "random",
        n_init: int = 1,
        random_state: Any = None,
        max_iter: int = 300,
        verbose: int = 0,
        tol: float = 1e-4,
        copy_x: bool = True,
        algorithm: str = "lloyd",
        bisecting_strategy: str = "biggest_inertia",
        device: str | torch.device | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.random_state = random_state
        self.max_iter = max_iter
        self.verbose = verbose
        self.tol = tol
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.bisecting_strategy = bisecting_strategy
        self.device = device
        self.chunk_bytes = chunk_bytes

    def _validate_params(self, params: dict[str, Any] | None = None) -> None:
        validate_parameters(self.get_params(deep=False) if params is None else params,
                            type(self).__name__, table=OWN_CONSTRAINTS)

    @with_full_float32_matmul
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> BisectingKMeans:
        """Compute bisecting k-means clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            Training samples.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample (used by ``'random'`` and ``'k-means++'``
            too).

        Returns
        -------
        self : BisectingKMeans
            Fitted estimator.
        """
        self._validate_params()
        X_tensor, validated, output = self._prepare(X, reset=True, stream=False)
        self._check_params_vs_input(X_tensor.shape[0])
        data = prepare_data(X_tensor, sample_weight, copy=self.copy_x)
        backend = resolve_backend("auto", data, 2, chunk_budget(data, self.chunk_bytes))
        self._n_threads = torch.get_num_threads()

        def callable_rows(part: KMeansData, indices: Tensor) -> Any:
            if sp.issparse(validated):  # scikit-learn's CSR rows, unshifted
                return validated[indices.cpu().numpy()]
            rows = part.all_rows()
            return rows if isinstance(validated, Tensor) else rows.cpu().numpy()

        result = bisecting_kmeans(
            data, self.n_clusters,
            init=split_init(self.init, data.n_features, data.acc_dtype, data.device,
                            callable_rows=callable_rows),
            n_init=self._n_init, max_iter=self.max_iter, tol=self.tol,
            generator=make_generator(self.random_state, data.device), backend=backend,
            strategy=self.bisecting_strategy,
            algorithm=resolve_algorithm(self.algorithm, data, 2, backend),
            chunk_bytes=self.chunk_bytes, verbose=bool(self.verbose))
        self._bisecting_tree = result.tree
        self._offset = data.offset
        self._fit_backend = backend.name
        self.inertia_ = float(inertia_of(data, result.centers, result.labels, backend=backend,
                                         chunk_bytes=self.chunk_bytes))
        self.cluster_centers_ = output(result.centers + data.offset)
        self.labels_ = output(result.labels, labels=True)
        self._n_features_out = self.n_clusters
        return self

    @with_full_float32_matmul
    def predict(self, X: Any) -> Any:
        """Return each sample's cluster, found by descending the tree of splits.

        At each split the sample goes to the nearer of the split's two centers
        (scikit-learn's rule), down to a leaf.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            New samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,) (int32) or Tensor (int64)
            Index of the cluster each sample belongs to.
        """
        check_is_fitted(self)
        X_tensor, _, output = self._prepare(X, reset=False, stream=False)
        data, _ = self._fitted_terms(X_tensor)
        labels = descend(self._bisecting_tree, data, backend=self._predict_backend(data),
                         chunk_bytes=self.chunk_bytes)
        return output(labels, labels=True)

    def save(self, path: Any) -> Any:
        """Not available: model files do not hold the tree of splits ``predict`` needs."""
        raise NotImplementedError("BisectingKMeans models cannot be saved to model files "
                                  "yet (they hold no tree of splits): pickle them instead.")

    def to_module(self, *, return_distances: bool = False) -> Any:
        """Not available: the module labels by nearest center, not by the tree of splits."""
        raise NotImplementedError("BisectingKMeans.to_module is not available: its predict "
                                  "descends a tree, the module labels by nearest center.")
