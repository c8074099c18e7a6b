"""A fitted k-means as a ``torch.nn.Module``: vectors in, nearest-center labels out.

For use inside a model (vector quantization, routing, deduplication at inference):
the module holds the centers and the training mean as buffers (they move with
``.to(device)`` and are saved in ``state_dict``), has no Python control flow that
depends on data, and runs under ``torch.compile`` and ``torch.export``.

Its arithmetic is the estimator's: rows are shifted by the training mean, scores are
``||c||^2 - 2 x.c`` from one ``addmm`` in the same layout ``predict`` uses, and ties go
to the first center, so its labels equal ``KMeans.predict``'s (tested). (Where the native
kernel scores the rows itself, :meth:`~torchmeans.backends.base.Backend.own_scores`,
``predict`` takes its scores from it, summed in a BLAS kernel's order; the labels then
agree wherever torch's BLAS sums alike, as it does on the machines the tests run on.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchmeans.backends.torch import transposed_layout
from torchmeans.core.validation import safe_row_norms
from torchmeans.data.base import accumulation_dtype

__all__ = ["KMeansModule"]


class KMeansModule(nn.Module):
    """Map a batch of vectors ``(..., n_features)`` to the index of the nearest center.

    Parameters
    ----------
    centers : Tensor
        ``(n_clusters, n_features)`` cluster centers.
    offset : Tensor
        ``(n_features,)`` training mean, subtracted from inputs before the products
        (as the estimator does; it keeps far-from-origin data precise).
    return_distances : bool
        If True, ``forward`` returns ``(labels, distances)``: the distance of each
        vector to its center too (Euclidean, or ``1 - cos`` when ``normalize``).
    normalize : bool
        Scale inputs to unit norm first (spherical k-means, ``metric='cosine'``;
        rows of zero norm give NaN distances, so keep them out).

    Attributes
    ----------
    centers : Tensor
        The centers (a buffer), e.g. to look up the codeword of each label.
    """

    def __init__(self, centers: Tensor, offset: Tensor, *, return_distances: bool = False,
                 normalize: bool = False) -> None:
        super().__init__()
        dtype = accumulation_dtype(centers.dtype)
        centers = centers.detach().to(dtype)
        offset = offset.detach().to(dtype=dtype, device=centers.device)
        shifted = centers - offset
        self.register_buffer("centers", centers.clone())
        self.register_buffer("offset", offset.clone())
        # predict's operands exactly: transposed centers, contiguous (as center_terms makes them)
        self.register_buffer("centers_t", shifted.T.contiguous())
        self.register_buffer("center_sq_norms", shifted.square().sum(dim=1))
        self.transposed = transposed_layout(centers.shape[0])
        self.return_distances = return_distances
        self.normalize = normalize

    @property
    def n_clusters(self) -> int:
        """Number of centers."""
        return self.centers.shape[0]

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Return the labels (int64, shape ``x.shape[:-1]``), and distances if asked."""
        batch_shape = x.shape[:-1]
        rows = x.reshape(-1, x.shape[-1]).to(self.centers_t.dtype)
        if self.normalize:
            rows = rows / safe_row_norms(rows)[:, None]
        rows = rows - self.offset
        if self.transposed:
            scores = torch.addmm(self.center_sq_norms[:, None], self.centers_t.T, rows.T,
                                 alpha=-2)
            best, labels = scores.min(dim=0)
        else:
            scores = torch.addmm(self.center_sq_norms, rows, self.centers_t, alpha=-2)
            best, labels = scores.min(dim=1)
        labels = labels.reshape(batch_shape)
        if not self.return_distances:
            return labels
        sq_distances = (best + rows.square().sum(dim=1)).clamp(min=0)
        distances = sq_distances * 0.5 if self.normalize else sq_distances.sqrt()
        return labels, distances.reshape(batch_shape)

    def extra_repr(self) -> str:  # noqa: D102
        return (f"n_clusters={self.n_clusters}, n_features={self.centers.shape[1]}, "
                f"return_distances={self.return_distances}, normalize={self.normalize}")
