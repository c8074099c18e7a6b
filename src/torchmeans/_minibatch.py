"""``MiniBatchKMeans``: scikit-learn's mini-batch k-means on any torch device.

The algorithm is scikit-learn's (Sculley 2010 with scikit-learn's details), step for step:

- seeding: ``n_init`` seedings on an ``init_size`` sample, the one of lowest inertia on a
  validation sample of the same size is kept;
- each step draws ``batch_size`` rows uniformly with replacement, assigns them to the
  nearest centers and moves each center to the weighted mean of everything it has been
  assigned so far (``c <- (c * n + sum) / (n + w)``, per-center learning rate ``1 / n``);
- every ``10 * n_clusters`` samples (or when a center has never been assigned) centers
  with a weight below ``reassignment_ratio`` times the largest are moved onto random
  rows of the batch, and their weight is set to the smallest remaining one;
- it stops after ``max_iter`` passes' worth of steps, when the exponentially weighted
  average of the batch inertia has not improved for ``max_no_improvement`` steps, or
  when the centers moved less than ``tol`` (scaled by the mean feature variance).

Random draws come from a local ``torch.Generator``, so results differ from scikit-learn's
draw for draw but are of the same quality (tested on blobs and the digits data). The
batch arithmetic (assignment GEMM, scatter sums) runs on the estimator's device.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from torchmeans._functional import resolve_init
from torchmeans._kmeans import KMeans
from torchmeans._validation import check_params, make_generator, prepare_data
from torchmeans.data import KMeansData, supports_float64
from torchmeans.ops.assign import assign
from torchmeans.ops.precision import with_full_float32_matmul
from torchmeans.ops.update import segment_sums

__all__ = ["MiniBatchKMeans"]

logger = logging.getLogger("torchmeans")


def _batch_assign(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest center of each row of ``x`` and the squared distance to it."""
    scores = torch.addmm(centers.square().sum(dim=1), x, centers.T, alpha=-2)
    best, labels = scores.min(dim=1)
    return labels, (best + x.square().sum(dim=1)).clamp_(min=0)


class MiniBatchKMeans(KMeans):
    """Mini-batch k-means on any torch device, a drop-in for scikit-learn's ``MiniBatchKMeans``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'k-means||', 'random'}, callable or array-like, default='k-means++'
        Seeding, run on an ``init_size`` sample (see :class:`torchmeans.KMeans`).
    max_iter : int, default=100
        Maximum number of passes over the data (in steps of ``batch_size`` rows).
    batch_size : int, default=1024
        Rows per step.
    verbose : int, default=0
        Log each step at INFO level on the ``torchmeans`` logger.
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` on the whole data after ``fit`` (and on the
        batch after ``partial_fit``).
    random_state : int, RandomState, numpy Generator, torch Generator or None
        Seeds a local generator.
    tol : float, default=0.0
        Stop when the centers move less than ``tol`` times the mean feature variance
        (squared, summed); 0 disables it.
    max_no_improvement : int or None, default=10
        Stop after this many steps without improvement of the smoothed batch inertia.
    init_size : int, default=None
        Rows the seeding uses (default ``3 * batch_size``, at least ``3 * n_clusters``).
    n_init : 'auto' or int, default='auto'
        Seedings tried; 'auto' is 1 for k-means++, k-means|| and arrays, 3 otherwise.
    reassignment_ratio : float, default=0.01
        Centers with a weight below this fraction of the largest are reassigned.
    device : str or torch.device, default=None
        Where to compute (default: the tensor's device, else CUDA if available).
    chunk_bytes : int, default=None
        Memory budget of the chunked passes (labels after ``fit``, ``predict``).
    metric : {'euclidean', 'cosine'}, default='euclidean'
        ``'cosine'``: rows are normalised and centers projected back to unit norm
        after each step (spherical mini-batch k-means).

    Attributes
    ----------
    cluster_centers_, labels_, inertia_, n_iter_, n_features_in_, feature_names_in_
        As :class:`torchmeans.KMeans`.
    n_steps_ : int
        Mini-batch steps run.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        max_iter: int = 100,
        batch_size: int = 1024,
        verbose: int = 0,
        compute_labels: bool = True,
        random_state: Any = None,
        tol: float = 0.0,
        max_no_improvement: int | None = 10,
        init_size: int | None = None,
        n_init: int | str = "auto",
        reassignment_ratio: float = 0.01,
        device: str | torch.device | None = None,
        chunk_bytes: int | None = None,
        metric: str = "euclidean",
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.device = device
        self.chunk_bytes = chunk_bytes
        self.metric = metric

    # -- checks and set-up --------------------------------------------------------------

    def _check_minibatch_params(self) -> None:
        if not isinstance(self.batch_size, int | np.integer) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}.")
        if self.max_no_improvement is not None and (
            not isinstance(self.max_no_improvement, int | np.integer)
            or self.max_no_improvement < 0
        ):
            raise ValueError("max_no_improvement must be None or an integer >= 0, got "
                             f"{self.max_no_improvement!r}.")
        if not isinstance(self.reassignment_ratio, int | float) or self.reassignment_ratio < 0:
            raise ValueError("reassignment_ratio must be a number >= 0, got "
                             f"{self.reassignment_ratio!r}.")

    def _n_init(self, n_samples: int) -> int:
        n_init = check_params(n_clusters=self.n_clusters, n_samples=n_samples, init=self.init,
                              n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                              chunk_bytes=self.chunk_bytes, init_size=self.init_size,
                              metric=self.metric)
        if self.n_init == "auto" and isinstance(self.init, str) and self.init == "random":
            return 3  # scikit-learn's MiniBatchKMeans: 3 for random (KMeans: 10)
        return n_init

    def _seed(self, data: KMeansData, n_samples: int, generator: torch.Generator,
              n_init: int, validated: Any) -> Tensor:
        """Centers (shifted space) of the best of ``n_init`` seedings, on samples."""
        init_size = self.init_size if self.init_size is not None else 3 * self.batch_size
        init_size = min(max(init_size, 3 * self.n_clusters), n_samples)
        validation = data.subset(torch.randint(n_samples, (init_size,), generator=generator,
                                               device=data.device))
        init = resolve_init(self.init, self.n_clusters, data.n_features, data.acc_dtype,
                            data.device, callable_input=validated, init_size=init_size,
                            metric=self.metric)
        best, best_inertia = None, float("inf")
        for _ in range(n_init):
            centers = init(data, self.n_clusters, generator).to(data.acc_dtype)
            inertia = float(_batch_assign(validation.take(
                torch.arange(validation.n_samples, device=data.device)), centers)[1]
                @ validation.sample_weight)
            if best is None or inertia < best_inertia:
                best, best_inertia = centers, inertia
        return best

    # -- the step ---------------------------------------------------------------------

    def _step(self, x: Tensor, weight: Tensor, offset: Tensor,
              generator: torch.Generator) -> float:
        """One mini-batch step on shifted rows ``x``; returns the batch inertia."""
        centers, counts = self._centers, self._counts
        labels, distances = _batch_assign(x, centers)
        inertia = float(distances @ weight)
        batch_weight = segment_sums(weight.to(counts.dtype), labels, self.n_clusters)
        sums = segment_sums((x * weight[:, None]).to(counts.dtype), labels, self.n_clusters)
        assigned = batch_weight > 0
        new_counts = counts + batch_weight
        moved = (centers.to(counts.dtype) * counts[:, None] + sums) / new_counts.clamp(
            min=torch.finfo(counts.dtype).tiny)[:, None]
        centers = torch.where(assigned[:, None], moved.to(centers.dtype), centers)
        counts = new_counts
        self._since_reassign += x.shape[0]
        if self.reassignment_ratio > 0 and (bool((counts == 0).any())
                                            or self._since_reassign >= 10 * self.n_clusters):
            self._since_reassign = 0
            centers, counts = self._reassign(x, centers, counts, generator)
        if self.metric == "cosine":
            from torchmeans._lloyd import project_to_sphere

            centers = project_to_sphere(centers, offset)
        self._centers, self._counts = centers, counts
        return inertia

    def _reassign(self, x: Tensor, centers: Tensor, counts: Tensor,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Move centers of low weight onto random rows of the batch (scikit-learn's rule)."""
        low = counts < self.reassignment_ratio * counts.max()
        limit = int(0.5 * x.shape[0])
        if int(low.sum()) > limit:  # at most half a batch: keep the heaviest of them
            low[torch.argsort(counts)[limit:]] = False
        n_low = int(low.sum())
        if n_low == 0:
            return centers, counts
        rows = torch.randperm(x.shape[0], generator=generator, device=x.device)[:n_low]
        centers = centers.clone()
        centers[low] = x[rows].to(centers.dtype)
        counts = counts.clone()
        counts[low] = counts[~low].min() if bool((~low).any()) else 0
        return centers, counts

    # -- fit ------------------------------------------------------------------------------

    @with_full_float32_matmul
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MiniBatchKMeans:
        """Compute the centers by mini-batch steps.

        Parameters
        ----------
        X : {array-like, Tensor, random-access source} of shape (n_samples, n_features)
            Training samples.
        y : Ignored
        sample_weight : array-like or Tensor of shape (n_samples,), default=None

        Returns
        -------
        self : MiniBatchKMeans
        """
        self._check_minibatch_params()
        X_tensor, validated, output = self._prepare(X, reset=True)
        streamed = not isinstance(X_tensor, Tensor)
        if streamed and not X_tensor.random_access:
            raise ValueError("MiniBatchKMeans.fit draws random rows: give it a random-access "
                             "source, or call partial_fit on each batch of a sequential one")
        data = prepare_data(X_tensor, sample_weight, copy=True, metric=self.metric,
                            device=None if not streamed else self._compute_device())
        n_samples = data.n_samples
        n_init = self._n_init(n_samples)
        generator = make_generator(self.random_state, data.device)
        self._start(data, generator, n_init, validated)
        tol = float(data.mean_variance()) * self.tol if self.tol > 0 else 0.0
        batch_size = min(self.batch_size, n_samples)
        n_steps = (self.max_iter * n_samples) // batch_size
        ewa = ewa_min = None
        no_improvement = 0
        step = -1
        for step in range(n_steps):
            indices = torch.randint(n_samples, (batch_size,), generator=generator,
                                    device=data.device)
            previous = self._centers
            batch_inertia = self._step(data.take(indices), data.sample_weight[indices],
                                       data.offset, generator) / batch_size
            if step == 0:
                continue  # the first step measures the seeding, not the steps
            alpha = min(1.0, batch_size * 2.0 / (n_samples + 1))
            ewa = batch_inertia if ewa is None else ewa * (1 - alpha) + batch_inertia * alpha
            if self.verbose:
                logger.info("step %d/%d: mean batch inertia %.6g, smoothed %.6g", step + 1,
                            n_steps, batch_inertia, ewa)
            if tol > 0 and float((self._centers - previous).square().sum()) <= tol:
                break
            if ewa_min is None or ewa < ewa_min:
                no_improvement, ewa_min = 0, ewa
            else:
                no_improvement += 1
            if self.max_no_improvement is not None and no_improvement >= self.max_no_improvement:
                break
        self.n_steps_ = step + 1
        self.n_iter_ = int(np.ceil(self.n_steps_ * batch_size / n_samples))
        self._finish(data, output)
        if not self.compute_labels:
            self.inertia_ = (ewa or 0.0) * n_samples
        return self

    def _start(self, data: KMeansData, generator: torch.Generator, n_init: int,
               validated: Any) -> None:
        """Seed the centers; zero the per-center weights (float64 where the device has it)."""
        self._centers = self._seed(data, data.n_samples, generator, n_init, validated)
        dtype = torch.float64 if supports_float64(data.device) else torch.float32
        self._counts = torch.zeros(self.n_clusters, dtype=dtype, device=data.device)
        self._since_reassign = 0
        self._offset = data.offset

    def _finish(self, data: KMeansData, output: Any) -> None:
        """Publish the centers; with ``compute_labels``, the labels and inertia of ``data``."""
        self.cluster_centers_ = output(self._centers + data.offset)
        self._n_features_out = self.n_clusters
        if self.compute_labels:
            result = assign(data, self._centers, chunk_bytes=self.chunk_bytes)
            self.labels_ = output(result.labels, labels=True)
            self.inertia_ = float(result.inertia) * (0.5 if self.metric == "cosine" else 1.0)

    def _compute_device(self) -> torch.device:
        from torchmeans._validation import resolve_device

        return resolve_device(self.device)

    @with_full_float32_matmul
    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MiniBatchKMeans:
        """Update the centers with one mini-batch step on ``X`` (seeding on the first call).

        Parameters
        ----------
        X : {array-like, Tensor} of shape (n_samples, n_features)
            One batch.
        y : Ignored
        sample_weight : array-like or Tensor of shape (n_samples,), default=None

        Returns
        -------
        self : MiniBatchKMeans
        """
        self._check_minibatch_params()
        first = not hasattr(self, "cluster_centers_")
        X_tensor, validated, output = self._prepare(X, reset=first)
        if not isinstance(X_tensor, Tensor):
            raise TypeError("partial_fit takes one batch as an array or a tensor.")
        if first:
            # The first batch fixes the shift (its mean) and seeds the centers.
            data = prepare_data(X_tensor, sample_weight, metric=self.metric)
            n_init = self._n_init(data.n_samples)
            self._generator = make_generator(self.random_state, data.device)
            self._start(data, self._generator, n_init, validated)
            self.n_steps_ = 0
        else:
            check_is_fitted(self)
            data = prepare_data(X_tensor, sample_weight, metric=self.metric,
                                offset=self._offset.to(X_tensor.device))
        rows = data.take(torch.arange(data.n_samples, device=data.device))
        self._step(rows, data.sample_weight, data.offset, self._generator)
        self.n_steps_ += 1
        self._finish(data, output)
        return self
