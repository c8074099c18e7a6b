"""Fitted centers as a FAISS index (``to_faiss``); faiss is imported here only, when asked for."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["centers_index", "import_faiss"]


def import_faiss() -> Any:
    """Return the ``faiss`` module, or raise ``ImportError`` naming the extra to install."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            'to_faiss() needs faiss, which is not installed: pip install "torchmeans[faiss]" '
            "(faiss-cpu; or install faiss-gpu / conda's faiss yourself)."
        ) from error
    return faiss


def centers_index(centers: Tensor, metric: str) -> Any:
    """Return a flat FAISS index holding ``centers`` (float32, in their order).

    ``IndexFlatL2`` for Euclidean models (its ``search`` reports squared distances);
    ``IndexFlatIP`` for cosine ones, the centers made unit-norm in float32, so a search
    with unit queries ranks by cosine similarity. Nearest-center labels are ``predict``'s
    up to float32 rounding of near-ties.
    """
    faiss = import_faiss()
    # A copy: normalize_L2 works in place and cluster_centers_ must not change.
    array = np.array(centers.detach().cpu().numpy(), dtype=np.float32, order="C", copy=True)
    if metric == "cosine":
        faiss.normalize_L2(array)
        index = faiss.IndexFlatIP(array.shape[1])
    else:
        index = faiss.IndexFlatL2(array.shape[1])
    index.add(array)
    return index
