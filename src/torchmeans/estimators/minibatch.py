"""``MiniBatchKMeans``: scikit-learn's mini-batch k-means on any torch device.

The algorithm is scikit-learn's (Sculley 2010 with scikit-learn's details), step for step:

- seeding: ``n_init`` seedings on ``init_size`` rows; the one of lowest inertia on a
  validation sample of ``init_size`` rows (drawn with replacement) is kept;
- each step of ``fit`` draws ``batch_size`` rows with replacement, with probability
  proportional to their weight (so the step itself weighs them alike), assigns them to
  the nearest centers and moves each center to the weighted mean of everything it has
  been assigned so far (``c <- (c * n + sum) / (n + w)``, per-center learning rate
  ``1 / n``); ``partial_fit`` steps on the batch it is given, with its weights;
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

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from torchmeans.core.accumulate import segment_sums
from torchmeans.core.assign import assign
from torchmeans.core.functional import resolve_init
from torchmeans.core.lloyd import project_to_sphere
from torchmeans.core.precision import with_full_float32_matmul
from torchmeans.core.seeding import WeightedRows
from torchmeans.core.validation import constraints, make_generator, prepare_data, resolve_device
from torchmeans.core.warning import warn
from torchmeans.data.base import KMeansData, supports_float64
from torchmeans.data.stream import is_source
from torchmeans.estimators.base import BaseKMeans, OutputFn

__all__ = ["MiniBatchKMeans"]


def _batch_assign(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest center of each row of ``x`` and the squared distance to it."""
    scores = torch.addmm(centers.square().sum(dim=1), x, centers.T, alpha=-2)
    best, labels = scores.min(dim=1)
    return labels, (best + x.square().sum(dim=1)).clamp_(min=0)


class MiniBatchKMeans(BaseKMeans):
    """Mini-batch k-means on any torch device, a drop-in for scikit-learn's ``MiniBatchKMeans``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'k-means||', 'random'}, callable or array-like, default='k-means++'
        Seeding, run on ``init_size`` rows (see :class:`torchmeans.KMeans`).
    max_iter : int, default=100
        Maximum number of passes over the data (in steps of ``batch_size`` rows).
    batch_size : int, default=1024
        Rows per step.
    verbose : int, default=0
        Print each step to stdout, in scikit-learn's words.
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
        Rows the seeding uses (default ``3 * batch_size``, at least ``3 * n_clusters``,
        at most ``n_samples``).
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
    cluster_centers_, labels_, inertia_, n_features_in_, feature_names_in_
        As :class:`torchmeans.KMeans`.
    n_iter_ : int
        Passes over the data started by ``fit`` (``ceil(n_steps_ * batch_size /
        n_samples)``).
    n_steps_ : int
        Mini-batch steps run (``fit``'s, then one per ``partial_fit``).
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseKMeans._parameter_constraints,
        **constraints("batch_size", "compute_labels", "max_no_improvement",
                      "reassignment_ratio"),
    }
    _default_n_init = 3

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

    def _check_params_vs_input(self, n_samples: int) -> None:
        """scikit-learn's checks: ``_n_init``, ``_batch_size`` and ``_init_size``."""
        super()._check_params_vs_input(n_samples)
        self._batch_size = min(self.batch_size, n_samples)
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * self._batch_size
            if init_size < self.n_clusters:
                init_size = 3 * self.n_clusters
        elif init_size < self.n_clusters:
            warn(
                f"init_size={init_size} should be larger than n_clusters={self.n_clusters}. "
                "Setting it to min(3*n_clusters, n_samples)",
                RuntimeWarning)
            init_size = 3 * self.n_clusters
        self._init_size = min(init_size, n_samples)

    def _seed(self, data: KMeansData, generator: torch.Generator, validated: Any,
              n_init: int) -> Tensor:
        """Centers (shifted space) of the best of ``n_init`` seedings on ``_init_size`` rows.

        Each seeding is scored by its inertia on a validation sample of ``_init_size``
        rows drawn with replacement (scikit-learn's rule).
        """
        validation = data.subset(torch.randint(data.n_samples, (self._init_size,),
                                               generator=generator, device=data.device))
        rows = validation.take(torch.arange(validation.n_samples, device=data.device))
        init = resolve_init(self.init, self.n_clusters, data.n_features, data.acc_dtype,
                            data.device, callable_input=validated, init_size=self._init_size,
                            metric=self.metric)
        best, best_inertia = None, float("inf")
        for run in range(n_init):
            if self.verbose:
                print(f"Init {run + 1}/{n_init} with method {self._init_name()}")
            centers = init(data, self.n_clusters, generator).to(data.acc_dtype)
            inertia = float(_batch_assign(rows, centers)[1] @ validation.sample_weight)
            if self.verbose:
                print(f"Inertia for init {run + 1}/{n_init}: {inertia}")
            if best is None or inertia < best_inertia:
                best, best_inertia = centers, inertia
        return best

    def _init_name(self) -> str:
        return self.init if isinstance(self.init, str) else (
            "callable" if callable(self.init) else "array")

    def _start(self, data: KMeansData, generator: torch.Generator, validated: Any,
               n_init: int) -> None:
        """Seed the centers; zero the per-center weights (float64 where the device has it)."""
        self._centers = self._seed(data, generator, validated, n_init)
        dtype = torch.float64 if supports_float64(data.device) else torch.float32
        self._counts = torch.zeros(self.n_clusters, dtype=dtype, device=data.device)
        self._n_since_last_reassign = 0
        self._offset = data.offset

    # -- the step ---------------------------------------------------------------------

    def _random_reassign(self) -> bool:
        """Whether this step reassigns: every ``10 * n_clusters`` samples, or on empty centers."""
        self._n_since_last_reassign += self._batch_size
        if bool((self._counts == 0).any()) or self._n_since_last_reassign >= 10 * self.n_clusters:
            self._n_since_last_reassign = 0
            return True
        return False

    def _step(self, x: Tensor, weight: Tensor | None, offset: Tensor,
              generator: torch.Generator) -> float:
        """One mini-batch step on shifted rows ``x``; returns the batch's weighted inertia."""
        reassign = self._random_reassign()  # on the counts before the step, as scikit-learn
        centers, counts = self._centers, self._counts
        labels, distances = _batch_assign(x, centers)
        weight = torch.ones_like(distances) if weight is None else weight.to(distances.dtype)
        inertia = float(distances @ weight)
        batch_weight = segment_sums(weight.to(counts.dtype), labels, self.n_clusters)
        sums = segment_sums((x * weight[:, None]).to(counts.dtype), labels, self.n_clusters)
        assigned = batch_weight > 0
        new_counts = counts + batch_weight
        moved = (centers.to(counts.dtype) * counts[:, None] + sums) / new_counts.clamp(
            min=torch.finfo(counts.dtype).tiny)[:, None]
        centers = torch.where(assigned[:, None], moved.to(centers.dtype), centers)
        counts = new_counts
        if reassign and self.reassignment_ratio > 0:
            centers, counts = self._reassign(x, centers, counts, generator)
        if self.metric == "cosine":
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
        if self.verbose:
            print(f"[MiniBatchKMeans] Reassigning {n_low} cluster centers.")
        rows = torch.randperm(x.shape[0], generator=generator, device=x.device)[:n_low]
        centers = centers.clone()
        centers[low] = x[rows].to(centers.dtype)
        counts = counts.clone()
        counts[low] = counts[~low].min() if bool((~low).any()) else 0
        return centers, counts

    def _converged(self, step: int, n_steps: int, n_samples: int, shift: float,
                   batch_inertia: float) -> bool:
        """scikit-learn's early stopping: small center moves, or a flat smoothed inertia."""
        batch_inertia /= self._batch_size
        step += 1  # 1-based, as printed
        if step == 1:  # the first step's inertia measures the seeding
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        if self._ewa_inertia is None:
            self._ewa_inertia = batch_inertia
        else:
            alpha = min(1.0, self._batch_size * 2.0 / (n_samples + 1))
            self._ewa_inertia = self._ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if self.verbose:
            print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}, "
                  f"ewa inertia: {self._ewa_inertia}")
        if self._tol > 0.0 and shift <= self._tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self._ewa_inertia_min is None or self._ewa_inertia < self._ewa_inertia_min:
            self._no_improvement = 0
            self._ewa_inertia_min = self._ewa_inertia
        else:
            self._no_improvement += 1
        if self.max_no_improvement is not None and self._no_improvement >= self.max_no_improvement:
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False

    # -- fit ------------------------------------------------------------------------------

    @with_full_float32_matmul
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MiniBatchKMeans:
        """Compute the centers by mini-batch steps.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor, random-access source} of shape \
(n_samples, n_features)
            Training samples.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample: rows are drawn for the batches with
            probability proportional to it.

        Returns
        -------
        self : MiniBatchKMeans
            Fitted estimator.
        """
        self._validate_params()
        X_tensor, validated, output = self._prepare(X, reset=True)
        streamed = is_source(X_tensor)
        if streamed and not X_tensor.random_access:
            raise ValueError("MiniBatchKMeans.fit draws random rows: give it a random-access "
                             "source, or call partial_fit on each batch of a sequential one")
        if not streamed:
            self._check_params_vs_input(X_tensor.shape[0])
        data = prepare_data(X_tensor, sample_weight, copy=True, metric=self.metric,
                            device=resolve_device(self.device) if streamed else None)
        if streamed:
            self._check_params_vs_input(data.n_samples)
        n_samples = data.n_samples
        generator = make_generator(self.random_state, data.device)
        self._start(data, generator, validated, self._n_init)
        self._tol = float(data.mean_variance()) * self.tol if self.tol > 0 else 0.0
        self._ewa_inertia = self._ewa_inertia_min = None
        self._no_improvement = 0
        batch_size = self._batch_size
        sampler = None if data.unit_weights else WeightedRows(data.sample_weight)
        n_steps = (self.max_iter * n_samples) // batch_size
        step = -1
        for step in range(n_steps):
            indices = torch.randint(n_samples, (batch_size,), generator=generator,
                                    device=data.device) if sampler is None else sampler.draw(
                batch_size, generator)
            previous = self._centers
            batch_inertia = self._step(data.take(indices), None, data.offset, generator)
            shift = float((self._centers - previous).square().sum()) if self._tol > 0 else 0.0
            if self._converged(step, n_steps, n_samples, shift, batch_inertia):
                break
        self.n_steps_ = step + 1
        self.n_iter_ = int(np.ceil(self.n_steps_ * batch_size / n_samples))
        self._generator = generator  # partial_fit goes on with the same stream
        self._finish(data, output)
        if not self.compute_labels:
            self.inertia_ = (self._ewa_inertia or 0.0) * float(data.sample_weight.sum())
        return self

    @with_full_float32_matmul
    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MiniBatchKMeans:
        """Update the centers with one mini-batch step on ``X`` (seeding on the first call).

        After ``fit``, after earlier ``partial_fit`` calls, or on a model loaded with
        :func:`torchmeans.load`, the step continues from the model's centers and
        per-center weights.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
            One batch.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weight of each sample of the batch.

        Returns
        -------
        self : MiniBatchKMeans
            Updated estimator.
        """
        self._validate_params()
        with self._all_or_nothing():
            return self._partial_fit(X, sample_weight)

    _STATE = ("cluster_centers_", "labels_", "inertia_", "n_steps_", "n_features_in_",
              "feature_names_in_", "_centers", "_counts", "_offset", "_n_since_last_reassign",
              "_batch_size", "_init_size", "_n_init", "_generator", "_n_features_out")
    """What ``partial_fit`` changes."""

    @contextlib.contextmanager
    def _all_or_nothing(self) -> Iterator[None]:
        """Give the model its state back if the step fails: a bad batch never half-updates it."""
        saved = {name: getattr(self, name) for name in self._STATE if hasattr(self, name)}
        generator = saved.get("_generator")
        generator_state = None if generator is None else generator.get_state()
        try:
            yield
        except BaseException:
            for name in self._STATE:
                if name in saved:
                    setattr(self, name, saved[name])
                elif hasattr(self, name):
                    delattr(self, name)
            if generator is not None:
                generator.set_state(generator_state)
            raise

    def _partial_fit(self, X: Any, sample_weight: Any) -> MiniBatchKMeans:
        has_centers = hasattr(self, "cluster_centers_")
        # (one batch, in memory: a memory map too)
        X_tensor, validated, output = self._prepare(X, reset=not has_centers, stream=False)
        if not isinstance(X_tensor, Tensor):
            raise TypeError("partial_fit takes one batch as an array or a tensor.")
        if not hasattr(self, "_generator"):
            self._generator = make_generator(self.random_state, X_tensor.device)
        self.n_steps_ = getattr(self, "n_steps_", 0)
        if not has_centers:
            # The first batch fixes the shift (its mean) and seeds the centers.
            self._check_params_vs_input(X_tensor.shape[0])
            data = prepare_data(X_tensor, sample_weight, metric=self.metric)
            self._start(data, self._generator, validated, 1)  # (scikit-learn's seeds once)
        else:
            self._resume_state(X_tensor)
            data = prepare_data(X_tensor.to(self._centers.dtype), sample_weight,
                                metric=self.metric, offset=self._offset)
        rows = data.take(torch.arange(data.n_samples, device=data.device))
        weight = None if data.unit_weights else data.sample_weight
        self._step(rows, weight, data.offset, self._generator)
        self.n_steps_ += 1
        self._finish(data, output)
        return self

    def _resume_state(self, X: Tensor) -> None:
        """Bring a fitted model's state to ``X``'s device (and rebuild it after a load)."""
        device = X.device
        # (a generator of another device: one drawn from it, on this one)
        self._generator = make_generator(self._generator, device)
        if not hasattr(self, "_counts"):
            raise ValueError(
                "this MiniBatchKMeans has no per-center weights to continue from (a model "
                "file written without them): fit it again, or save it with this version.")
        self._offset = self._offset.to(device)
        self._counts = self._counts.to(device)
        shifted = getattr(self, "_centers", None)
        if shifted is None or shifted.device != device:
            shifted = self._centers_tensor().to(device=device, dtype=self._offset.dtype) - (
                self._offset)
        self._centers = shifted
        if not hasattr(self, "_batch_size"):
            self._batch_size = min(self.batch_size, X.shape[0])
        self._n_since_last_reassign = getattr(self, "_n_since_last_reassign", 0)

    def _finish(self, data: KMeansData, output: OutputFn) -> None:
        """Publish the centers; with ``compute_labels``, the labels and inertia of ``data``."""
        self.cluster_centers_ = output(self._centers + data.offset)
        self._n_features_out = self.n_clusters
        if self.compute_labels:
            result = assign(data, self._centers, chunk_bytes=self.chunk_bytes)
            self.labels_ = output(result.labels, labels=True)
            self.inertia_ = float(result.inertia) * (0.5 if self.metric == "cosine" else 1.0)
