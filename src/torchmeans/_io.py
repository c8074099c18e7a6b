"""Model files: a fitted :class:`~torchmeans.KMeans` as safetensors plus JSON metadata.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
tensors ``cluster_centers`` ``(k, d)`` and ``offset`` ``(d,)`` (the training mean that
``predict`` subtracts, so predictions after a round trip are identical), optionally
``init`` (an array init), and string metadata: the format name and version, the
torchmeans version, the parameters and a training summary as JSON. Loading parses
only that: it never runs code (no pickle), and every field is checked, so a tampered,
truncated or foreign file raises :class:`ModelFileError` naming the file and the
problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from torchmeans._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save"]

FORMAT = "torchmeans.KMeans"
FORMAT_VERSION = 1
"""Bumped when a field changes meaning; files of a newer version are refused."""


class ModelFileError(ValueError):
    """A file is not a valid torchmeans model (corrupt, truncated, foreign or too new)."""


def _safetensors() -> Any:
    """Import ``safetensors`` (an optional extra), with a clear error without it."""
    try:
        import safetensors
        import safetensors.torch
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("model files need safetensors: pip install 'torchmeans[io]'") from error
    return safetensors


def _as_cpu_tensor(value: Any) -> torch.Tensor:
    tensor = value.detach() if isinstance(value, torch.Tensor) else torch.from_numpy(
        np.asarray(value))
    return tensor.to("cpu").contiguous().clone()


def _json_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Parameters as JSON values; an array ``init`` goes to the tensors."""
    out, tensors = {}, {}
    for name, value in params.items():
        if name == "init" and not isinstance(value, str) and not callable(value):
            tensors["init"] = _as_cpu_tensor(value)
            out[name] = "array"
        elif name == "init" and callable(value):
            out[name] = "k-means++"  # a callable cannot be stored; refitting re-seeds
        elif name == "random_state":
            out[name] = value if value is None or isinstance(value, int) else None
        elif name in ("device", "checkpoint"):
            out[name] = None if value is None else str(value)
        else:  # NumPy scalars (np.int64 from a parameter grid) as plain numbers
            out[name] = value.item() if isinstance(value, np.generic) else value
    return out, tensors


def save(estimator: Any, path: str | os.PathLike) -> Path:
    """Write a fitted estimator to ``path`` (atomically: a temporary file, then a rename).

    Parameters
    ----------
    estimator : KMeans
        A fitted estimator.
    path : str or PathLike
        Destination, conventionally ``*.safetensors``.

    Returns
    -------
    Path
        The path written.
    """
    check_is_fitted(estimator)
    params, tensors = _json_params(estimator.get_params())
    centers = _as_cpu_tensor(estimator.cluster_centers_)
    tensors.update(cluster_centers=centers, offset=_as_cpu_tensor(estimator._offset))
    labels = getattr(estimator, "labels_", None)
    sizes = None if labels is None else torch.bincount(
        _as_cpu_tensor(labels).long(), minlength=centers.shape[0]).tolist()
    summary = {
        "inertia": float(estimator.inertia_),
        "n_iter": int(estimator.n_iter_),
        "n_samples": None if labels is None else len(labels),
        "cluster_sizes": sizes,
    }
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "estimator": type(estimator).__name__,
        "torchmeans_version": __version__,
        "metric": estimator.metric,
        "n_features_in": str(estimator.n_features_in_),
        "params": json.dumps(params),
        "summary": json.dumps(summary),
    }
    if hasattr(estimator, "feature_names_in_"):
        metadata["feature_names_in"] = json.dumps([str(n) for n in estimator.feature_names_in_])
    return write_atomically(Path(path), tensors, metadata)


def write_atomically(path: Path, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str]) -> Path:
    """Write a safetensors file to a temporary file beside ``path``, then rename it over.

    A crash (even ``SIGKILL``) leaves the old file or the new one, never half of one.
    """
    safetensors = _safetensors()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        safetensors.torch.save_file(tensors, scratch, metadata=metadata)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return path


def _fail(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"{path}: {problem}")


def read_safetensors(path: Path, what: str = "model"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return the tensors and metadata of a safetensors file (parsing only, never running code)."""
    safetensors = _safetensors()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise _fail(path, f"not a readable safetensors file (corrupt or truncated): {error}") \
            from error
    return tensors, metadata


def load(path: str | os.PathLike) -> Any:
    """Read a model written by :meth:`KMeans.save` and return the fitted estimator.

    Parameters
    ----------
    path : str or PathLike
        A ``.safetensors`` model file.

    Returns
    -------
    KMeans
        Fitted: ``predict``, ``transform`` and ``score`` give what the saved
        estimator gave. ``cluster_centers_`` is a numpy array; ``labels_`` is
        not stored (it has one entry per training sample).

    Raises
    ------
    ModelFileError
        The file is corrupt, truncated, not a torchmeans model, written by a newer
        format version, or its fields disagree (shapes, dtypes, non-finite values).
    """
    from torchmeans._kmeans import KMeans
    from torchmeans._minibatch import MiniBatchKMeans

    path = Path(path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise _fail(path, f"not a torchmeans model (format {metadata.get('format')!r}, "
                          f"expected {FORMAT!r})")
    try:
        version = int(metadata["format_version"])
        n_features = int(metadata["n_features_in"])
        params = json.loads(metadata["params"])
        summary = json.loads(metadata["summary"])
        names = json.loads(metadata["feature_names_in"]) if "feature_names_in" in metadata \
            else None
    except (KeyError, ValueError, TypeError) as error:
        raise _fail(path, f"damaged metadata ({type(error).__name__}: {error})") from error
    if version > FORMAT_VERSION:
        raise _fail(path, f"written with model format version {version} (torchmeans "
                          f"{metadata.get('torchmeans_version')}); this torchmeans "
                          f"{__version__} reads up to {FORMAT_VERSION}: upgrade torchmeans")
    if not isinstance(params, dict) or not isinstance(summary, dict):
        raise _fail(path, "damaged metadata (params and summary must be JSON objects)")
    centers, offset = tensors.get("cluster_centers"), tensors.get("offset")
    if centers is None or offset is None:
        raise _fail(path, "missing tensor 'cluster_centers' or 'offset'")
    n_clusters = params.get("n_clusters")
    if (centers.ndim != 2 or tuple(centers.shape) != (n_clusters, n_features)
            or tuple(offset.shape) != (n_features,)):
        raise _fail(path, f"shape mismatch: cluster_centers {tuple(centers.shape)}, offset "
                          f"{tuple(offset.shape)}, expected ({n_clusters}, {n_features}) and "
                          f"({n_features},)")
    if not (centers.is_floating_point() and offset.is_floating_point()):
        raise _fail(path, f"cluster_centers and offset must be floating point, got "
                          f"{centers.dtype} and {offset.dtype}")
    if not (torch.isfinite(centers).all() and torch.isfinite(offset).all()):
        raise _fail(path, "cluster_centers or offset holds NaN or infinity")
    if params.get("init") == "array":
        params["init"] = tensors["init"].numpy() if "init" in tensors else "k-means++"
    estimators = {"KMeans": KMeans, "MiniBatchKMeans": MiniBatchKMeans}
    kind = metadata.get("estimator", "KMeans")
    if kind not in estimators:
        raise _fail(path, f"unknown estimator {kind!r} (expected one of {sorted(estimators)})")
    try:
        estimator = estimators[kind](**params)
        estimator.get_params()
    except TypeError as error:
        raise _fail(path, f"unknown parameters: {error}") from error
    estimator.cluster_centers_ = centers.numpy()
    estimator._offset = offset
    estimator.n_features_in_ = n_features
    if names is not None:
        if len(names) != n_features:
            raise _fail(path, f"{len(names)} feature names for {n_features} features")
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    estimator.inertia_ = float(summary.get("inertia", float("nan")))
    estimator.n_iter_ = int(summary.get("n_iter", 0))
    estimator.n_iter_history_ = []
    estimator._n_features_out = n_clusters
    estimator.training_summary_ = summary
    return estimator
