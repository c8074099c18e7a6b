"""``BaseKMeans``: what ``KMeans`` and ``MiniBatchKMeans`` share (scikit-learn's ``_BaseKMeans``).

Input handling (numpy, pandas, scipy.sparse, lists, torch tensors and streamed sources),
parameter validation against one table of constraints, seeding, and everything a fitted
model does without its training data: ``predict``, ``transform``, ``score``, model files
and ``to_module``. The two estimators differ only in how ``fit`` finds the centers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from torchmeans.backends import predict_backend
from torchmeans.backends.base import Backend
from torchmeans.core.assign import assign, pairwise_distances
from torchmeans.core.functional import resolve_init
from torchmeans.core.neighbors import check_temperature, nearest_k_centers, soft_assignments
from torchmeans.core.precision import with_full_float32_matmul
from torchmeans.core.validation import (
    NUMPY_FLOAT_DTYPES,
    as_tensor,
    check_n_samples,
    check_tensor,
    constraints,
    is_plain_float_array,
    make_generator,
    numpy_to_tensor,
    prepare_data,
    resolve_device,
    resolve_n_init,
    scipy_to_csr_tensor,
    to_device,
    validate_parameters,
)
from torchmeans.data.base import KMeansData, accumulation_dtype
from torchmeans.data.stream import as_stream, is_source
from torchmeans.module import KMeansModule

__all__ = ["BaseKMeans", "OutputFn"]

OutputFn = Callable[..., Any]


def _numpy_output(tensor: Tensor, *, labels: bool = False) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.astype(np.int32) if labels else array


def _torch_output(device: torch.device) -> OutputFn:
    def to_input_device(tensor: Tensor, *, labels: bool = False) -> Tensor:
        return tensor.to(device)
    return to_input_device


def _write_labels(labels: Tensor, out: Any, n_clusters: int, block: int = 1 << 20) -> Any:
    """Copy ``labels`` into the caller's integer array ``out`` (block by block) and return it.

    ``out`` must hold every label ``0 .. n_clusters - 1``: a narrower dtype would wrap.
    """
    if tuple(out.shape) != (labels.shape[0],):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected ({labels.shape[0]},).")
    if isinstance(out, Tensor):
        if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
            raise ValueError(f"out must hold integers, got {out.dtype}.")
        largest = torch.iinfo(out.dtype).max
    else:
        if np.dtype(out.dtype).kind not in "iu":
            raise ValueError(f"out must hold integers, got {out.dtype}.")
        largest = np.iinfo(out.dtype).max
    if n_clusters - 1 > largest:
        raise ValueError(f"out has dtype {out.dtype}, which holds labels up to {largest}; "
                         f"this model has {n_clusters} clusters: pass a wider integer dtype.")
    if isinstance(out, Tensor):
        out.copy_(labels)
        return out
    for start in range(0, labels.shape[0], block):
        out[start : start + block] = labels[start : start + block].cpu().numpy()
    return out


class BaseKMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """Base class of :class:`~torchmeans.KMeans` and :class:`~torchmeans.MiniBatchKMeans`."""

    _parameter_constraints: ClassVar[dict] = constraints(
        "n_clusters", "init", "n_init", "max_iter", "tol", "verbose", "random_state", "device",
        "chunk_bytes", "init_size", "metric")
    _default_n_init = 10
    """``n_init='auto'`` for ``'random'`` and callables (scikit-learn: 10, mini-batch 3)."""

    def _validate_params(self, params: dict[str, Any] | None = None) -> None:
        """Check the parameters (``params``: ``get_params()``'s, when the caller has them)."""
        validate_parameters(self.get_params(deep=False) if params is None else params,
                            type(self).__name__)

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """Return the constructor's parameter names, read from its signature once per class."""
        names = cls.__dict__.get("_parameter_names")
        if names is None:
            names = super()._get_param_names()
            cls._parameter_names = names
        return list(names)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- input handling -------------------------------------------------------------

    def _prepare(self, X: Any, *, reset: bool, allow_empty: bool = False,
                 stream: bool = True) -> tuple[Tensor, Any, OutputFn]:
        """Check ``X``: return it on the compute device, as validated, and a converter back.

        NumPy-like input is validated by scikit-learn (integers become float64); integer
        tensors become torch's default float dtype. A streamed source
        (:mod:`torchmeans.sources`) is returned as it is (read chunk by chunk later); its
        outputs are numpy arrays. So is a memory map or an h5py/zarr dataset (``stream``:
        :func:`~torchmeans.data.stream.as_stream`), with scikit-learn's rules.
        """
        source = as_stream(X, estimator_name=type(self).__name__) if stream else X
        if is_source(source):
            if source is not X:  # scikit-learn's feature-name checks, nothing read
                validate_data(self, X, reset=reset, skip_check_array=True)
            self._check_n_features(source.n_features, reset)
            return source, X, _numpy_output
        if isinstance(X, Tensor):
            X_tensor = check_tensor(X, allow_empty=allow_empty)
            self._check_n_features(X_tensor.shape[1], reset)
            device = resolve_device(self.device, X)
            return to_device(X_tensor, device), X, _torch_output(X.device)
        if reset and is_plain_float_array(X, min_samples=0 if allow_empty else 1):
            # What validate_data would return unchanged (its checks cost more than a small fit).
            self._check_n_features(X.shape[1], reset)
            return to_device(numpy_to_tensor(X), resolve_device(self.device)), X, _numpy_output
        validated = validate_data(
            self, X, accept_sparse="csr", dtype=NUMPY_FLOAT_DTYPES, order="C", reset=reset,
            ensure_min_samples=0 if allow_empty else 1,
        )
        tensor = scipy_to_csr_tensor(validated) if sp.issparse(validated) else numpy_to_tensor(
            validated
        )
        return to_device(tensor, resolve_device(self.device)), validated, _numpy_output

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

    def _check_params_vs_input(self, n_samples: int) -> None:
        """Check the parameters against the data; set ``_n_init`` (scikit-learn's attribute)."""
        check_n_samples(n_samples, self.n_clusters)
        self._n_init = resolve_n_init(self.n_init, self.init, default=self._default_n_init,
                                      caller=type(self).__name__)

    def _init_centroids(self, X: Any, x_squared_norms: Any, init: Any, random_state: Any,
                        sample_weight: Any, init_size: int | None = None,
                        n_centroids: int | None = None) -> np.ndarray:
        """Return initial centers for ``X`` as scikit-learn's ``_BaseKMeans`` does.

        ``x_squared_norms`` is accepted for scikit-learn's signature (the norms are
        computed on the shifted data here). ``random_state`` seeds the draws.
        """
        X_tensor = as_tensor(X, resolve_device(self.device, X))
        output = _torch_output(X.device) if isinstance(X, Tensor) else _numpy_output
        n_clusters = self.n_clusters if n_centroids is None else n_centroids
        data = prepare_data(X_tensor, sample_weight, metric=self.metric)
        seed = resolve_init(init, n_clusters, data.n_features, data.acc_dtype, data.device,
                            callable_input=X, init_size=init_size, metric=self.metric)
        centers = seed(data, n_clusters, make_generator(random_state, data.device))
        return output(centers.to(data.acc_dtype) + data.offset)

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
        return data, self._centers_tensor().to(data.acc_dtype).to(device) - data.offset

    def _centers_tensor(self) -> Tensor:
        """``cluster_centers_`` as a tensor (a view of a numpy array, never written to)."""
        centers = self.cluster_centers_
        return centers if isinstance(centers, Tensor) else numpy_to_tensor(
            np.ascontiguousarray(centers))

    def _predict_backend(self, data: KMeansData) -> Backend:
        """Return the backend labelling new rows: the fit's, where it runs on ``data``.

        Models without one (``MiniBatchKMeans``, model files older than ``summary.backend``)
        use the torch reference (:func:`torchmeans.backends.predict_backend`).
        """
        return predict_backend(getattr(self, "_fit_backend", None), data)

    # -- fitted-model API ---------------------------------------------------------------

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
            in blocks) for data larger than memory; it is returned. Its dtype must
            hold ``n_clusters - 1``.

        Returns
        -------
        labels : ndarray of shape (n_samples,) (int32) or Tensor (int64)
            Index of the cluster each sample belongs to.
        """
        check_is_fitted(self)
        X_tensor, _, output = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor)
        labels = assign(data, centers, backend=self._predict_backend(data),
                        chunk_bytes=self.chunk_bytes).labels
        if out is None:
            return output(labels, labels=True)
        return _write_labels(labels, out, centers.shape[0])

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
            Distances, computed chunk by chunk; distances small against the norms
            (where the norm expansion cancels) are recomputed from the differences,
            so a row equal to a center is at distance 0.
        """
        check_is_fitted(self)
        X_tensor, _, output = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor)
        distances = pairwise_distances(data, centers, backend=self._predict_backend(data),
                                       chunk_bytes=self.chunk_bytes)
        if self.metric == "cosine":  # 1 - x.c = ||x - c||^2 / 2 for unit vectors
            distances = distances.square_().mul_(0.5)
        return output(distances)

    @with_full_float32_matmul
    def kneighbors(self, X: Any, n_neighbors: int | None = None,
                   return_distance: bool = True) -> Any:
        """Return the ``n_neighbors`` nearest centers of each sample, nearest first.

        scikit-learn's ``NearestNeighbors.kneighbors`` convention with the centers as the
        indexed points: ``indices[:, 0]`` is ``predict(X)``; computed chunk by chunk
        (:func:`torchmeans.core.neighbors.nearest_k_centers`), never all ``n_samples x
        n_clusters`` distances at once.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor, source} of shape (n_samples, n_features)
            New samples (a :mod:`torchmeans.sources` source is streamed).
        n_neighbors : int, default=None
            How many centers per sample, in ``[1, n_clusters]``; None: all, sorted.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        distances : ndarray or Tensor of shape (n_samples, n_neighbors)
            Ascending; the distances ``transform`` reports (Euclidean, or ``1 - cos``
            for ``metric='cosine'``). Only when ``return_distance``.
        indices : ndarray or Tensor of shape (n_samples, n_neighbors)
            int64 center indices; on equal distances the lower index comes first.
        """
        check_is_fitted(self)
        X_tensor, _, output = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor)
        m = centers.shape[0] if n_neighbors is None else n_neighbors
        sq, indices = nearest_k_centers(data, centers, m, backend=self._predict_backend(data),
                                        chunk_bytes=self.chunk_bytes)
        if not return_distance:
            return output(indices)
        distances = sq.mul_(0.5) if self.metric == "cosine" else sq.sqrt_()
        return output(distances), output(indices)

    @with_full_float32_matmul
    def soft_assign(self, X: Any, *, temperature: float = 1.0,
                    n_neighbors: int | None = None) -> Any:
        """Return soft assignments: ``softmax(-cost / temperature)`` over the centers.

        The cost of a center is the sample's term of the inertia: the squared Euclidean
        distance (``1 - cos`` for ``metric='cosine'``), so a small temperature tends to
        ``predict``'s one-hot rows and a large one to uniform rows. Not ``predict_proba``:
        scikit-learn's estimator checks and tools (scorers, calibration) read that as a
        classifier's class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor, source} of shape (n_samples, n_features)
            New samples.
        temperature : float, default=1.0
            Finite, above 0, in the units of the cost.
        n_neighbors : int, default=None
            Spread each row over its ``n_neighbors`` nearest centers only (the others get
            exactly 0; memory ``n_samples x n_neighbors`` beside the output); None: all.

        Returns
        -------
        proba : ndarray or Tensor of shape (n_samples, n_clusters)
            Rows summing to 1.
        """
        check_is_fitted(self)
        temperature = check_temperature(temperature)
        X_tensor, _, output = self._prepare(X, reset=False)
        data, centers = self._fitted_terms(X_tensor)
        backend = self._predict_backend(data)
        if n_neighbors is None:
            costs, indices = pairwise_distances(data, centers, backend=backend,
                                                chunk_bytes=self.chunk_bytes).square_(), None
        else:
            costs, indices = nearest_k_centers(data, centers, n_neighbors, backend=backend,
                                               chunk_bytes=self.chunk_bytes)
        if self.metric == "cosine":
            costs.mul_(0.5)
        return output(soft_assignments(costs, temperature, indices=indices,
                                       n_clusters=centers.shape[0]))

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
        inertia = float(assign(data, centers, backend=self._predict_backend(data),
                               chunk_bytes=self.chunk_bytes).inertia)
        return -inertia * (0.5 if self.metric == "cosine" else 1.0)

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
        from torchmeans.io.model_files import save

        return save(self, path)

    def to_faiss(self) -> Any:
        """Return a FAISS index holding the centers (float32), e.g. an IVF coarse quantizer.

        ``faiss.IndexFlatL2`` for Euclidean models, ``faiss.IndexFlatIP`` over unit-norm
        centers for cosine ones (:func:`torchmeans.io.faiss.centers_index`). Needs faiss:
        ``pip install "torchmeans[faiss]"``.
        """
        check_is_fitted(self)
        from torchmeans.io.faiss import centers_index

        return centers_index(self._centers_tensor(), self.metric)

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
        centers = self._centers_tensor()
        return KMeansModule(centers, self._offset.to(centers.device),
                            return_distances=return_distances,
                            normalize=self.metric == "cosine")

