"""Bisecting k-means (scikit-learn's ``BisectingKMeans``) on the engine's 2-means fits.

The clusters form a binary tree (:class:`BisectingTree`, scikit-learn's ``_BisectingTree``):
starting from all rows, the leaf with the largest score (its inertia, or its row count) is
split by the best of ``n_init`` Lloyd runs with two centers on its rows, until there are
``n_clusters`` leaves. ``predict`` descends the tree (:func:`descend`): at each node a row
goes to the nearer of the two children's centers, so labels follow the hierarchy, not the
nearest leaf center. Everything happens in the data's shifted space (a subset of the rows
keeps the training mean as its origin), as scikit-learn centres ``X`` once before the splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from torchmeans.backends.base import Backend
from torchmeans.core.assign import chunk_rows_for
from torchmeans.core.functional import resolve_init
from torchmeans.core.lloyd import LloydResult, lloyd
from torchmeans.core.validation import check_init_array
from torchmeans.data.base import KMeansData, supports_float64

__all__ = ["STRATEGIES", "BisectingResult", "BisectingTree", "bisecting_kmeans", "descend",
           "split_init"]

STRATEGIES = ("biggest_inertia", "largest_cluster")
"""How the leaf to split is chosen: the largest weighted inertia, or the most rows."""

SplitInit = Callable[[KMeansData, Tensor, torch.Generator], Tensor]
"""Two initial centers for the rows ``indices`` of the node being split (``subset``)."""

RELATIVE_IMPROVEMENT = 1e-6
"""Another of a split's ``n_init`` runs replaces the best only when its inertia is lower by
this fraction (scikit-learn's allowance for rounding)."""


def split_init(init: Any, n_features: int, dtype: torch.dtype, device: torch.device, *,
               callable_rows: Callable[[KMeansData, Tensor], Any]) -> SplitInit:
    """Return the two initial centers of each split for a user's ``init``.

    ``'k-means++'`` and ``'random'`` seed on the node's rows (weighted). A callable is
    called as ``init(rows, 2, random_state=RandomState)`` with ``callable_rows(part,
    indices)``: as in scikit-learn, the node's rows shifted by the training mean (dense
    data; sparse rows are not shifted), and its centers are taken in that space.
    """
    if callable(init):
        def call_user_init(part: KMeansData, indices: Tensor, generator: torch.Generator
                           ) -> Tensor:
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=device))
            centers = init(callable_rows(part, indices), 2,
                           random_state=np.random.RandomState(seed))
            if sp.issparse(centers):  # (scikit-learn takes sparse centers from a callable)
                centers = centers.toarray()
            return check_init_array(centers, 2, n_features, dtype, device)
        return call_user_init
    seed = resolve_init(init, 2, n_features, dtype, device)
    return lambda part, indices, generator: seed(part, 2, generator)


class BisectingTree:
    """A node of the hierarchy: its center (shifted space), its rows while a leaf, its score.

    ``label`` is set on the leaves once the fit ends (their order in :meth:`iter_leaves`).
    """

    def __init__(self, center: Tensor, indices: Tensor | None, score: float) -> None:
        self.center = center
        self.indices = indices
        self.score = score
        self.left: BisectingTree | None = None
        self.right: BisectingTree | None = None
        self.label = -1

    def split(self, labels: Tensor, centers: Tensor, scores: list[float]) -> None:
        """Make the two children of this leaf from its rows' labels (0 left, 1 right)."""
        assert self.indices is not None  # a leaf
        self.left = BisectingTree(centers[0], self.indices[labels == 0], scores[0])
        self.right = BisectingTree(centers[1], self.indices[labels == 1], scores[1])
        self.indices = None  # (the children hold the rows)

    def iter_leaves(self) -> Iterator[BisectingTree]:
        """Yield the leaves, left before right (the order of the final labels)."""
        stack = [self]
        while stack:
            node = stack.pop()
            if node.left is None:
                yield node
            else:
                stack += [node.right, node.left]

    def leaf_to_bisect(self) -> BisectingTree:
        """Return the first leaf of largest score."""
        return max(self.iter_leaves(), key=lambda leaf: leaf.score)


class BisectingResult(NamedTuple):
    """Result of :func:`bisecting_kmeans`."""

    tree: BisectingTree
    centers: Tensor
    """``(n_clusters, n_features)`` leaf centers, in the data's shifted space."""
    labels: Tensor
    """``(n_samples,)`` int64 leaf of each row."""


def bisecting_kmeans(data: KMeansData, n_clusters: int, *, init: SplitInit, n_init: int,
                     max_iter: int, tol: float, generator: torch.Generator, backend: Backend,
                     strategy: str = "biggest_inertia", algorithm: str = "lloyd",
                     chunk_bytes: int | None = None, verbose: bool = False) -> BisectingResult:
    """Split ``data`` into ``n_clusters`` leaves, one 2-means fit per split.

    ``tol`` is absolute (scikit-learn's bisections compare the center shift with ``tol``
    itself, not scaled by the data's variance). The root's center is the unweighted mean
    of the rows, as scikit-learn's.
    """
    root = BisectingTree(_mean(data), torch.arange(data.n_samples, device=data.device), 0.0)
    for _ in range(n_clusters - 1):
        leaf = root.leaf_to_bisect()
        rows = leaf.indices
        part = data if leaf is root else data.subset(rows)
        best = None
        for _ in range(n_init):
            initial = init(part, rows, generator).to(data.acc_dtype)
            run = lloyd(part, initial, backend=backend, max_iter=max_iter, tol=tol,
                        chunk_bytes=chunk_bytes, verbose=verbose, algorithm=algorithm)
            labels, inertias = _split_assignment(part, run.centers, backend, chunk_bytes,
                                                 run=run)
            inertia = float(inertias.sum())
            if best is None or inertia < best[0] * (1 - RELATIVE_IMPROVEMENT):
                best = (inertia, labels, run.centers, inertias)
        _, labels, centers, inertias = best
        if verbose:
            print(f"New centroids from bisection: {centers.cpu().numpy()}")
        if strategy == "biggest_inertia":
            scores = inertias.tolist()
        else:
            scores = torch.bincount(labels, minlength=2).tolist()
        leaf.split(labels, centers, scores)
    leaves = list(root.iter_leaves())
    labels = torch.empty(data.n_samples, dtype=torch.int64, device=data.device)
    labels[torch.cat([leaf.indices for leaf in leaves])] = torch.repeat_interleave(
        torch.arange(len(leaves), device=data.device),
        torch.tensor([leaf.indices.numel() for leaf in leaves], device=data.device))
    for i, leaf in enumerate(leaves):
        leaf.label = i
        leaf.indices = None
    return BisectingResult(root, torch.stack([leaf.center for leaf in leaves]), labels)


def descend(tree: BisectingTree, data: KMeansData, *, backend: Backend,
            chunk_bytes: int | None = None) -> Tensor:
    """Return each row's leaf, reached by the nearer child's center at every node.

    scikit-learn's ``_predict_recursive``: a node's rows are compared with its two
    children's centers only (ties go left), in the data's shifted space.
    """
    labels = torch.empty(data.n_samples, dtype=torch.int64, device=data.device)
    stack = [(tree, None)]
    while stack:
        node, rows = stack.pop()
        if node.left is None:
            labels[slice(None) if rows is None else rows] = node.label
            continue
        part = data if rows is None else data.subset(rows)
        side, _ = _split_assignment(part, torch.stack([node.left.center, node.right.center]),
                                    backend, chunk_bytes, inertia=False)
        everything = torch.arange(data.n_samples, device=data.device) if rows is None else rows
        for child, chosen in ((node.left, side == 0), (node.right, side == 1)):
            child_rows = everything[chosen]
            if child_rows.numel():
                stack.append((child, child_rows))
    return labels


def _split_assignment(data: KMeansData, centers: Tensor, backend: Backend,
                      chunk_bytes: int | None, *, run: LloydResult | None = None,
                      inertia: bool = True) -> tuple[Tensor, Tensor | None]:
    """Label the rows against two centers; return the labels and each side's inertia.

    The inertias are exact weighted sums of ``||x - c||^2`` (float64 where the device
    has it), scikit-learn's ``_inertia_per_cluster``; skipped when not ``inertia``. After
    a Lloyd ``run`` whose labels are final (as in ``fit_data``) no pass labels the rows
    again, and the run's distances are used where it has them.
    """
    rows = chunk_rows_for(data, centers.shape[0], chunk_bytes)
    final = run is not None and run.labels_are_final
    if final:
        labels = run.labels
        pairs = ((chunk, labels[chunk.start : chunk.stop])
                 for chunk in data.chunks(backend.nearest_chunk_rows(data, rows, 2)))
    else:
        labels = torch.empty(data.n_samples, dtype=torch.int64, device=data.device)
        pairs = backend.nearest(data, centers, rows,
                                previous=None if run is None else run.labels)
    wide = torch.float64 if supports_float64(data.device) else data.acc_dtype
    totals = torch.zeros(centers.shape[0], dtype=wide, device=data.device) if inertia else None
    for chunk, chunk_labels in pairs:
        if not final:
            labels[chunk.start : chunk.stop] = chunk_labels
        if totals is not None:
            distances = (run.distances[chunk.start : chunk.stop]
                         if final and run.distances is not None
                         else backend.sq_distances(data, chunk, centers, chunk_labels)).to(wide)
            if chunk.weight is not None:
                distances = distances * chunk.weight.to(wide)
            totals.index_add_(0, chunk_labels, distances)
    return labels, totals


def _mean(data: KMeansData) -> Tensor:
    """Return the unweighted mean of the (shifted) rows, from the data's own sums."""
    wide = torch.float64 if supports_float64(data.device) else data.acc_dtype
    sums = torch.zeros(1, data.n_features, dtype=wide, device=data.device)
    counts = torch.zeros(1, dtype=wide, device=data.device)
    rows = chunk_rows_for(data, 1, None)
    for chunk in data.chunks(rows):
        unit = dataclasses.replace(chunk, weight=None)
        data.add_weighted_sums(unit, torch.zeros(chunk.stop - chunk.start, dtype=torch.int64,
                                                 device=data.device), sums, counts)
    return (sums / counts.clamp(min=1)[:, None])[0].to(data.acc_dtype)
