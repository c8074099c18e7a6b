"""Model files: a fitted ``KMeans`` or ``MiniBatchKMeans`` as safetensors plus JSON metadata.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file holding
``cluster_centers`` ``(k, d)`` and ``offset`` ``(d,)`` (the training mean ``predict``
subtracts, so predictions survive a round trip bit for bit), optionally ``init`` (an array
init) and, for ``MiniBatchKMeans``, ``center_weights`` and ``generator_state`` (with the
step counts in ``online_state``: a loaded model steps on as the saved one would), and string
metadata: format name and version, torchmeans version, parameters and training summary as
JSON, and a ``checksum`` (sha256 over the other metadata and every tensor's name, dtype,
shape and bytes).

A file is untrusted input. Loading only parses it (no pickle, no code run), verifies the
checksum, and checks every tensor (dtype, shape, finite values) and every field (type,
range, agreement with the tensors, the estimator's own parameter validation) before any of
it is used: a tampered, truncated or foreign file raises :class:`ModelFileError` naming the
file and the field. Execution settings (:data:`EXECUTION_SETTINGS`) are neither written nor
restored, so a model fitted on a GPU predicts on a machine without one.

Versions: format 2 added the checksum and requires it (so no damage can pass a file off as
one without); format 1 files still load with every other check; newer formats are refused
with a message to upgrade.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from torchmeans._version import __version__
from torchmeans.backends import REGISTRY

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save"]

FORMAT = "torchmeans.KMeans"
FORMAT_VERSION = 2
"""Bumped when a field changes meaning; files of a newer version are refused."""

CHECKSUM_REQUIRED_FROM = 2
"""The first format version whose files must carry a checksum."""

EXECUTION_SETTINGS = ("device", "checkpoint", "distributed")
"""Parameters that say where and how a fit ran, not what the model is: not stored."""

LARGEST_INT = 2**63 - 1
"""Integers in metadata beyond int64 are refused (they would overflow torch and C)."""

_CENTER_DTYPES = (torch.float32, torch.float64)
_INIT_DTYPES = (torch.float16, torch.float32, torch.float64, torch.int8, torch.int16,
                torch.int32, torch.int64, torch.uint8)


class ModelFileError(ValueError):
    """A file is not a valid torchmeans model (corrupt, truncated, foreign or too new)."""


def import_safetensors() -> Any:
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


def content_checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """Return ``'sha256:<hex>'`` of the metadata (but ``checksum``) and the tensors.

    Covers each tensor's name, dtype, shape and bytes, so any change to a stored value,
    the header or the metadata changes it.
    """
    digest = hashlib.sha256()
    header = {"metadata": {key: value for key, value in metadata.items() if key != "checksum"},
              "tensors": {name: [str(t.dtype), list(t.shape)] for name, t in tensors.items()}}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name in sorted(tensors):
        flat = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy())
    return f"sha256:{digest.hexdigest()}"


class Fields:
    """Typed reads of one file's metadata and tensors, each failure naming file and field.

    Parameters
    ----------
    path : Path
        The file (named in every error).
    metadata : dict
        Its string metadata.
    error : type
        The error raised (:class:`ModelFileError` or a subclass).
    """

    def __init__(self, path: Path, metadata: Mapping[str, str],
                 error: type[ModelFileError] = ModelFileError) -> None:
        self.path, self.metadata, self.error = path, metadata, error

    def fail(self, field: str, problem: str) -> ModelFileError:
        """Return the error for ``field`` (to raise)."""
        return self.error(f"{self.path}: {field}: {problem}")

    def check(self, ok: bool, field: str, problem: str) -> None:
        """Raise the error for ``field`` unless ``ok``."""
        if not ok:
            raise self.fail(field, problem)

    def text(self, field: str) -> str:
        """Return the metadata string ``field`` (required)."""
        value = self.metadata.get(field)
        self.check(isinstance(value, str), field, "missing from the metadata")
        return value

    def integer(self, field: str, low: int, high: int = LARGEST_INT) -> int:
        """Return the metadata string ``field`` as a decimal integer in ``[low, high]``."""
        text = self.text(field)
        self.check(re.fullmatch(r"-?[0-9]{1,19}", text) is not None, field,
                   f"{text[:40]!r} is not an integer")
        return self.int_value(int(text), field, low, high)

    def json(self, field: str) -> Any:
        """Return the metadata string ``field`` parsed as JSON."""
        text = self.text(field)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as error:  # RecursionError: deep nesting
            raise self.fail(field, f"damaged metadata, not JSON ({type(error).__name__}: "
                                   f"{str(error)[:80]})") from None

    def int_value(self, value: Any, field: str, low: int, high: int = LARGEST_INT) -> int:
        """``value`` if it is an integer (not a bool) in ``[low, high]``."""
        self.check(isinstance(value, int) and not isinstance(value, bool), field,
                   f"must be an integer, got {_describe(value)}")
        self.check(value >= low, field, f"must be >= {low}, got {value}")
        self.check(value <= high, field, f"must be <= {high}, got {str(value)[:40]}")
        return value

    def real_value(self, value: Any, field: str, *, low: float | None = None,
                   finite: bool = True, nan: bool = False) -> float:
        """``value`` as a float if it is a number (not a bool): finite, or as told."""
        self.check(isinstance(value, int | float) and not isinstance(value, bool), field,
                   f"must be a number, got {_describe(value)}")
        self.check(not isinstance(value, int) or abs(value) <= LARGEST_INT, field,
                   f"{_describe(value)} is too large")
        number = float(value)
        if math.isnan(number):
            self.check(nan, field, f"must be a number, got {number}")
            return number
        self.check(not finite or math.isfinite(number), field,
                   f"must be a finite number, got {number}")
        self.check(low is None or number >= low, field, f"{number} is below {low}")
        return number

    def object_value(self, value: Any, field: str, keys: Collection[str]) -> dict[str, Any]:
        """``value`` if it is a JSON object holding (at least) ``keys``."""
        self.check(isinstance(value, dict), field, f"must be a JSON object, got "
                                                  f"{_describe(value)}")
        missing = sorted(set(keys) - set(value))
        self.check(not missing, field, f"missing keys {missing}")
        return value

    def tensor(self, tensors: Mapping[str, torch.Tensor], name: str,
               dtypes: Collection[torch.dtype], shape: tuple[int, ...], *,
               finite: bool = False) -> torch.Tensor:
        """Return tensor ``name``, checked: one of ``dtypes``, exactly ``shape``, finite if told."""
        field = f"tensor {name!r}"
        tensor = tensors.get(name)
        self.check(tensor is not None, field, "missing")
        self.check(tensor.dtype in dtypes, field, f"dtype {tensor.dtype}, expected one of "
                                                  f"{[str(d) for d in dtypes]}")
        self.check(tuple(tensor.shape) == shape, field,
                   f"shape mismatch: {tuple(tensor.shape)}, expected {shape}")
        if finite:
            self.check(bool(torch.isfinite(tensor).all()), field, "holds NaN or infinity")
        return tensor

    def only_tensors(self, tensors: Mapping[str, torch.Tensor], names: Collection[str]) -> None:
        """Refuse tensors other than ``names``."""
        unexpected = sorted(set(tensors) - set(names))
        self.check(not unexpected, "tensors", f"unexpected tensors {unexpected}")

    def verify_checksum(self, tensors: Mapping[str, torch.Tensor], *, required: bool) -> None:
        """Compare the stored checksum with the content's (a missing one: unless ``required``)."""
        stored = self.metadata.get("checksum")
        if stored is None:
            self.check(not required, "checksum", "missing (the file is damaged or was not "
                                                 "written by torchmeans)")
            return
        self.check(stored == content_checksum(tensors, self.metadata), "checksum",
                   "mismatch: the file was damaged or modified after it was written")


def _describe(value: Any) -> str:
    """Describe a JSON value in a few words for an error message.

    Containers by their size only: ``repr`` of a deeply nested one would overflow.
    """
    if isinstance(value, list | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _json_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return the parameters as JSON values, and an array ``init`` as a tensor.

    Execution settings (:data:`EXECUTION_SETTINGS`) are left out.
    """
    out, tensors = {}, {}
    for name, value in params.items():
        if name in EXECUTION_SETTINGS:
            continue
        if name == "init" and not isinstance(value, str) and not callable(value):
            tensors["init"] = _as_cpu_tensor(value)
            out[name] = "array"
        elif name == "init" and callable(value):
            out[name] = "k-means++"  # a callable cannot be stored; refitting re-seeds
        elif name == "random_state":
            out[name] = value if value is None or isinstance(value, int) else None
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
    inertia, n_iter = getattr(estimator, "inertia_", None), getattr(estimator, "n_iter_", None)
    summary = {  # (a model trained by partial_fit alone has no n_iter_, as in scikit-learn)
        "inertia": None if inertia is None else float(inertia),
        "n_iter": None if n_iter is None else int(n_iter),
        "n_samples": None if labels is None else len(labels),
        "cluster_sizes": sizes,
        # the backend the fit labelled with: predict after load labels as before save
        "backend": getattr(estimator, "_fit_backend", None),
    }
    online = None
    if hasattr(estimator, "_counts"):  # MiniBatchKMeans: what partial_fit goes on from
        tensors["center_weights"] = _as_cpu_tensor(estimator._counts)
        if hasattr(estimator, "_generator"):
            tensors["generator_state"] = _cpu_generator_state(estimator._generator)
        online = {"n_steps": int(estimator.n_steps_),
                  "n_since_last_reassign": int(estimator._n_since_last_reassign),
                  "batch_size": int(estimator._batch_size)}
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
    if online is not None:
        metadata["online_state"] = json.dumps(online)
    if hasattr(estimator, "feature_names_in_"):
        metadata["feature_names_in"] = json.dumps([str(n) for n in estimator.feature_names_in_])
    metadata["checksum"] = content_checksum(tensors, metadata)
    return write_atomically(Path(path), tensors, metadata)


def _cpu_generator_state(generator: torch.Generator) -> torch.Tensor:
    """Return the state of a CPU generator that goes on with ``generator``'s stream.

    A CPU generator's own state; for another device's (whose state a CPU generator cannot
    take), the state of a CPU generator seeded by a draw from a copy of it (the live
    generator is not advanced by saving).
    """
    if generator.device.type == "cpu":
        return generator.get_state()
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    seed = int(torch.randint(2**62, (1,), generator=twin, device=generator.device))
    return torch.Generator().manual_seed(seed).get_state()


def write_atomically(path: Path, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str]) -> Path:
    """Write a safetensors file to a temporary file beside ``path``, then rename it over.

    A crash (even ``SIGKILL``) leaves the old file or the new one, never half of one.
    """
    from torchmeans.io.data_files import replace_atomically

    safetensors = import_safetensors()
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(path, lambda scratch: safetensors.torch.save_file(
        tensors, scratch, metadata=metadata))


def read_safetensors(path: Path, what: str = "model",
                     error: type[ModelFileError] = ModelFileError
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return the tensors and metadata of a safetensors file (parsing only, never running code).

    safetensors checks the header against the file's size (a truncated file is refused
    before any tensor is read); what fails raises ``error`` naming the file.
    """
    safetensors = import_safetensors()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError, TypeError,
            OverflowError, MemoryError) as failure:
        raise error(f"{path}: not a readable safetensors file (corrupt or truncated): "
                    f"{str(failure)[:200]}") from failure
    return tensors, metadata


def load(path: str | os.PathLike) -> Any:
    """Read a model written by :meth:`KMeans.save` and return the fitted estimator.

    Parameters
    ----------
    path : str or PathLike
        A ``.safetensors`` model file.

    Returns
    -------
    KMeans or MiniBatchKMeans
        Fitted: ``predict``, ``transform`` and ``score`` give what the saved
        estimator gave (and a ``MiniBatchKMeans``'s ``partial_fit`` goes on as it would
        have). ``cluster_centers_`` is a numpy array; ``labels_`` is not stored (it has
        one entry per training sample). Execution settings
        (:data:`EXECUTION_SETTINGS`) have their defaults.

    Raises
    ------
    ModelFileError
        The file is corrupt, truncated, not a torchmeans model, written by a newer
        format version, fails its checksum, or a field is invalid (type, range, shape,
        dtype, non-finite values, parameters the estimator refuses); the message
        names the file and the field.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    fields = Fields(path, metadata)
    if metadata.get("format") != FORMAT:
        raise fields.fail("format", f"not a torchmeans model (format "
                                    f"{str(metadata.get('format'))[:40]!r}, expected {FORMAT!r})")
    version = fields.integer("format_version", 1, LARGEST_INT)
    if version > FORMAT_VERSION:
        raise fields.fail("format_version", f"written with model format version {version} "
                          f"(torchmeans {str(metadata.get('torchmeans_version'))[:40]}); this "
                          f"torchmeans {__version__} reads up to {FORMAT_VERSION}: upgrade "
                          "torchmeans")
    fields.verify_checksum(tensors, required=version >= CHECKSUM_REQUIRED_FROM)
    return _build(fields, tensors)


def _build(fields: Fields, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Return the estimator of a file whose format and checksum passed, every field checked."""
    from torchmeans.core.validation import METRICS, validate_parameters
    from torchmeans.estimators.kmeans import KMeans
    from torchmeans.estimators.minibatch import MiniBatchKMeans

    estimators = {"KMeans": KMeans, "MiniBatchKMeans": MiniBatchKMeans}
    kind = fields.text("estimator")
    fields.check(kind in estimators, "estimator",
                 f"unknown estimator {kind[:40]!r} (expected one of {sorted(estimators)})")
    n_features = fields.integer("n_features_in", 1)
    metric = fields.text("metric")
    fields.check(metric in METRICS, "metric", f"{metric[:40]!r} is not one of {METRICS}")
    params = fields.object_value(fields.json("params"), "params", ["n_clusters"])
    n_clusters = fields.int_value(params["n_clusters"], "params.n_clusters", 1)
    centers = fields.tensor(tensors, "cluster_centers", _CENTER_DTYPES,
                            (n_clusters, n_features), finite=True)
    offset = fields.tensor(tensors, "offset", [centers.dtype], (n_features,), finite=True)
    fields.only_tensors(tensors, ["cluster_centers", "offset", "init", "center_weights",
                                  "generator_state"])
    params = _checked_params(fields, params, tensors, metric, n_clusters, n_features)
    summary = _checked_summary(fields, fields.json("summary"), n_clusters)
    names = None
    if "feature_names_in" in fields.metadata:
        names = fields.json("feature_names_in")
        fields.check(isinstance(names, list) and all(isinstance(n, str) for n in names),
                     "feature_names_in", "must be a JSON list of strings")
        fields.check(len(names) == n_features, "feature_names_in",
                     f"{len(names)} feature names for {n_features} features")
    try:
        estimator = estimators[kind](**params)
    except TypeError as error:
        raise fields.fail("params", f"unknown parameters: {error}") from error
    try:  # (whatever scikit-learn's skip_parameter_validation says: a file is untrusted)
        validate_parameters(estimator.get_params(deep=False), kind, always=True)
    except (ValueError, TypeError) as error:
        raise fields.fail("params", f"invalid parameters: {error}") from error
    estimator.cluster_centers_ = centers.numpy()
    estimator._offset = offset
    estimator.n_features_in_ = n_features
    if names is not None:
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    if summary["inertia"] is not None:
        estimator.inertia_ = summary["inertia"]
    if summary["n_iter"] is not None:
        estimator.n_iter_ = summary["n_iter"]
    estimator.n_iter_history_ = []
    if summary["backend"] is not None:
        estimator._fit_backend = summary["backend"]
    estimator._n_features_out = n_clusters
    estimator.training_summary_ = summary
    _restore_online_state(fields, tensors, estimator, kind, n_clusters)
    return estimator


def _restore_online_state(fields: Fields, tensors: Mapping[str, torch.Tensor], estimator: Any,
                          kind: str, n_clusters: int) -> None:
    """Give a ``MiniBatchKMeans`` its per-center weights and step counts back (for partial_fit).

    Files written before these were stored load without them (``partial_fit`` then says so).
    """
    has_weights = "center_weights" in tensors
    fields.check(not has_weights or kind == "MiniBatchKMeans", "tensor 'center_weights'",
                 f"present in a {kind} model")
    fields.check(has_weights or "generator_state" not in tensors, "tensor 'generator_state'",
                 "present without tensor 'center_weights'")
    fields.check(has_weights == ("online_state" in fields.metadata), "online_state",
                 "must be given exactly with tensor 'center_weights'")
    if not has_weights:
        return
    weights = fields.tensor(tensors, "center_weights", _CENTER_DTYPES, (n_clusters,),
                            finite=True)
    fields.check(bool((weights >= 0).all()), "tensor 'center_weights'", "holds negative values")
    state = fields.object_value(fields.json("online_state"), "online_state",
                                ["n_steps", "n_since_last_reassign", "batch_size"])
    estimator._counts = weights
    estimator.n_steps_ = fields.int_value(state["n_steps"], "online_state.n_steps", 0)
    estimator._n_since_last_reassign = fields.int_value(
        state["n_since_last_reassign"], "online_state.n_since_last_reassign", 0)
    estimator._batch_size = fields.int_value(state["batch_size"], "online_state.batch_size", 1)
    if "generator_state" in tensors:
        saved = tensors["generator_state"]
        generator = torch.Generator()
        try:
            fields.check(saved.dtype == torch.uint8 and saved.dim() == 1,
                         "tensor 'generator_state'", "must be a 1-d uint8 tensor")
            generator.set_state(saved.contiguous())
        except (RuntimeError, ValueError, TypeError) as error:
            if isinstance(error, ModelFileError):
                raise
            raise fields.fail("tensor 'generator_state'",
                              f"not a generator state: {str(error)[:100]}") from error
        estimator._generator = generator


def _checked_params(fields: Fields, params: dict[str, Any], tensors: Mapping[str, torch.Tensor],
                    metric: str, n_clusters: int, n_features: int) -> dict[str, Any]:
    """Return the constructor's parameters: JSON scalars that agree with tensors and metadata."""
    out = {}
    for name, value in params.items():
        field = f"params.{name}"
        fields.check(value is None or isinstance(value, bool | int | float | str), field,
                     f"must be a JSON scalar, got {_describe(value)}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            fields.real_value(value, field)
        if name not in EXECUTION_SETTINGS:  # where a fit ran is not restored
            out[name] = value
    fields.check(out.get("metric", metric) == metric, "params.metric",
                 f"{out.get('metric')!r} disagrees with the metadata's metric {metric!r}")
    init = out.get("init")
    if init == "array":
        out["init"] = fields.tensor(tensors, "init", _INIT_DTYPES, (n_clusters, n_features),
                                    finite=True).numpy()
    else:
        fields.check("init" not in tensors, "tensor 'init'",
                     f"present, but params.init is {init!r}, not 'array'")
        fields.check(init is None or isinstance(init, str), "params.init",
                     f"must be a string, got {_describe(init)}")
    return out


def _checked_summary(fields: Fields, summary: Any, n_clusters: int) -> dict[str, Any]:
    """Return the training summary: finite inertia, integer counts that agree."""
    summary = fields.object_value(summary, "summary",
                                  ["inertia", "n_iter", "n_samples", "cluster_sizes"])
    inertia, n_iter = summary["inertia"], summary["n_iter"]  # None after partial_fit alone
    if inertia is not None:
        inertia = fields.real_value(inertia, "summary.inertia", low=0.0)
    if n_iter is not None:
        n_iter = fields.int_value(n_iter, "summary.n_iter", 0)
    n_samples, sizes = summary["n_samples"], summary["cluster_sizes"]
    if n_samples is not None:
        n_samples = fields.int_value(n_samples, "summary.n_samples", 0)
    fields.check((sizes is None) == (n_samples is None), "summary.cluster_sizes",
                 "must be given exactly when summary.n_samples is")
    if sizes is not None:
        fields.check(isinstance(sizes, list) and len(sizes) == n_clusters,
                     "summary.cluster_sizes", f"must be a list of {n_clusters} counts")
        for index, size in enumerate(sizes):
            fields.int_value(size, f"summary.cluster_sizes[{index}]", 0)
        fields.check(sum(sizes) == n_samples, "summary.cluster_sizes",
                     f"sum to {sum(sizes)}, not summary.n_samples={n_samples}")
    backend = summary.get("backend")  # (absent in older files: torch)
    fields.check(backend is None or backend in REGISTRY, "summary.backend",
                 f"must be one of {sorted(REGISTRY)} or null, got {_describe(backend)}")
    return {"inertia": inertia, "n_iter": n_iter, "n_samples": n_samples,
            "cluster_sizes": sizes, "backend": backend}
