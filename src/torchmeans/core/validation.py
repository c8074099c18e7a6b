"""Input and parameter checks with messages that name the problem and the fix."""

from __future__ import annotations

import numbers
import os
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn import get_config
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)
from torch import Tensor

from torchmeans.backends import BACKENDS
from torchmeans.core.lloyd import ALGORITHMS
from torchmeans.core.precision import PRECISIONS, low_precision_dtype
from torchmeans.core.warning import warn
from torchmeans.data.base import (
    KMeansData,
    accumulation_dtype,
    check_magnitudes,
    csr_tensor,
    supports_float64,
)
from torchmeans.data.dense import DenseData
from torchmeans.data.sparse import SparseData

__all__ = [
    "as_tensor",
    "check_init_array",
    "check_params",
    "check_sample_weight",
    "check_tensor",
    "is_integer",
    "make_data",
    "make_generator",
    "numpy_to_tensor",
    "resolve_device",
    "scipy_to_csr_tensor",
    "target_float_dtype",
    "to_device",
]

FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
NUMPY_FLOAT_DTYPES = (np.float64, np.float32)
"""NumPy input dtypes kept as they are; others (float16, integers, bool) become float64,
as in scikit-learn (``check_array`` converts to the first of these)."""


def resolve_device(device: str | torch.device | None, X: Any = None) -> torch.device:
    """Return the device to compute on, checked to exist on this machine.

    An explicit ``device`` wins; otherwise a tensor's own device; otherwise CUDA
    when it is available; otherwise the CPU. A device this machine does not have
    raises ``ValueError`` naming it (not torch's bare assertion at the first copy).
    """
    if device is None:
        if isinstance(X, Tensor):
            return X.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r} is not a torch device: {error}") from None
    try:
        check_device_available(resolved)
    except ValueError as error:
        raise ValueError(f"device={str(resolved)!r}: {error}") from None
    return resolved


_ACCELERATORS = {"cuda": "CUDA", "mps": "MPS", "xpu": "XPU"}


def check_device_available(device: torch.device) -> None:
    """Raise ``ValueError`` if ``device`` (cuda, cuda:N, mps, xpu) is absent on this machine.

    The message says what is missing and what the machine has (the caller names the
    parameter): e.g. ``CUDA is not available on this machine (torch 2.13.0+cpu)``.
    """
    kind, index = device.type, device.index
    if kind not in _ACCELERATORS:
        return  # the CPU, and device types torch itself will check
    label = _ACCELERATORS[kind]
    with warnings.catch_warnings():  # an old driver warns here; the error below says it
        warnings.simplefilter("ignore")
        if kind == "mps":
            backend = getattr(torch.backends, "mps", None)
            count = int(backend is not None and backend.is_available())
        else:
            module = getattr(torch, kind, None)
            count = module.device_count() if module is not None and module.is_available() else 0
    if count == 0:
        raise ValueError(f"{label} is not available on this machine (torch {torch.__version__})")
    if index is not None and index >= count:
        have = ", ".join(f"{kind}:{i}" for i in range(count))
        raise ValueError(f"this machine has {count} {label} device{'s' if count != 1 else ''} "
                         f"({have})")


def numpy_to_tensor(array: np.ndarray) -> Tensor:
    """Return a tensor sharing ``array``'s memory (read-only arrays too; never written)."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        # Read-only arrays (memory maps, broadcast views) are never written to.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def is_plain_float_array(X: Any, *, min_samples: int = 1) -> bool:
    """Whether ``X`` is an ndarray that scikit-learn's ``check_array`` would return as it is.

    Exactly ``numpy.ndarray`` (no subclass), 2-D, C-contiguous, native float64 or float32,
    at least ``min_samples`` rows and one column, and finite (one sum; ``assume_finite``
    skips it as in scikit-learn). Anything else, a sum that is not finite included, goes
    through ``check_array``, whose messages stay the errors.
    """
    if not (type(X) is np.ndarray and X.ndim == 2 and X.dtype in NUMPY_FLOAT_DTYPES
            and X.flags.c_contiguous and X.shape[0] >= min_samples and X.shape[1] >= 1):
        return False
    if get_config()["assume_finite"]:
        return True
    with np.errstate(over="ignore"):  # (an overflowing sum: check_array tells)
        return bool(np.isfinite(X.sum()))


def scipy_to_csr_tensor(matrix: sp.spmatrix | sp.sparray) -> Tensor:
    """Return a ``torch.sparse_csr`` tensor of ``matrix`` (canonical: sorted, summed)."""
    csr = sp.csr_array(matrix)
    if not csr.has_canonical_format:
        csr = csr.copy()  # sum_duplicates works in place: never on the user's arrays
        csr.sum_duplicates()
    return csr_tensor(
        torch.from_numpy(csr.indptr.astype(np.int64)),
        torch.from_numpy(csr.indices.astype(np.int64)),
        numpy_to_tensor(csr.data),
        csr.shape,
    )


def as_tensor(X: Any, device: torch.device, *, name: str = "X") -> Tensor:
    """Convert array-like, scipy sparse or tensor input to a checked tensor on ``device``.

    Non-tensor input goes through scikit-learn's ``check_array`` (lists, numpy,
    pandas, scipy sparse); integer and boolean data become float64, as scikit-learn's.
    """
    if isinstance(X, Tensor):
        return to_device(check_tensor(X, name=name), device)
    X = check_array(
        X,
        accept_sparse="csr",
        dtype=NUMPY_FLOAT_DTYPES,
        ensure_all_finite=True,
        input_name=name,
    )
    tensor = scipy_to_csr_tensor(X) if sp.issparse(X) else numpy_to_tensor(X)
    return to_device(tensor, device)


def to_device(X: Tensor, device: torch.device) -> Tensor:
    """Move checked samples to ``device``; float64 becomes float32 where it is not supported."""
    if X.dtype == torch.float64 and not supports_float64(device):
        warn(
            f"{device.type} has no float64: the data are cast to float32 (pass float32 "
            "data to silence this warning).",
            UserWarning)
        X = X.to(torch.float32)
    return X.to(device)


def target_float_dtype(dtype: torch.dtype, name: str) -> torch.dtype:
    """Return the float dtype samples of ``dtype`` are computed in (``name`` for the error).

    The four float dtypes are kept; integers and booleans become torch's default float
    dtype; complex values are refused.
    """
    if dtype.is_complex:
        raise ValueError(
            f"Complex data not supported: {name} has dtype {dtype}; "
            "pass real values (e.g. X.real or X.abs())."
        )
    return dtype if dtype in FLOAT_DTYPES else torch.get_default_dtype()


def check_tensor(X: Tensor, *, name: str = "X", allow_empty: bool = False) -> Tensor:
    """Check a tensor of samples: 2-D, non-empty, finite, and of a float dtype.

    Integer and boolean tensors are cast to torch's default float dtype (as
    ``torch.tensor`` of Python floats would be); float64, float32, float16 and
    bfloat16 are kept. Sparse COO tensors are converted to CSR.
    """
    X = X.detach()  # embeddings straight from a model: never track gradients
    if X.layout == torch.sparse_coo:
        X = X.coalesce().to_sparse_csr()
    if X.layout not in (torch.strided, torch.sparse_csr):
        raise TypeError(
            f"{name} has layout {X.layout}; pass a dense, sparse CSR or sparse COO tensor."
        )
    if X.ndim != 2:
        hint = (
            " Reshape your data with X.reshape(-1, 1) if it has a single feature "
            "or X.reshape(1, -1) if it is a single sample."
            if X.ndim == 1
            else " Flatten the extra dimensions into features, or use one fit per problem."
        )
        raise ValueError(f"Expected a 2-D {name} (n_samples, n_features), got {X.ndim}-D "
                         f"with shape {tuple(X.shape)}.{hint}")
    n_samples, n_features = X.shape
    if (n_samples < 1 and not allow_empty) or n_features < 1:
        raise ValueError(
            f"Found array with {n_samples} sample(s) and {n_features} feature(s) "
            f"(shape={tuple(X.shape)}) while a minimum of 1 is required: {name} is empty."
        )
    dtype = target_float_dtype(X.dtype, name)
    if X.layout == torch.sparse_csr and dtype not in (torch.float32, torch.float64):
        dtype = torch.float32  # torch's sparse products have no half-precision kernels
    if X.dtype != dtype:
        X = X.to(dtype)
    values = X.values() if X.layout == torch.sparse_csr else X
    if values.numel() and not all_finite(values):
        what = "NaN" if bool(torch.isnan(values).any()) else "infinity"
        raise ValueError(
            f"Input {name} contains {what}. k-means needs finite values: drop or impute them "
            "first (e.g. with sklearn.impute.SimpleImputer)."
        )
    return X


def all_finite(values: Tensor) -> bool:
    """Whether every entry of ``values`` is finite.

    A sum is finite only if every term is (NaN and infinities propagate), so one
    reduction decides for almost all data (far cheaper than ``isfinite(...).all()``); a sum
    that overflows falls back to the exact test.
    """
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def check_sample_weight(sample_weight: Any, n_samples: int, dtype: torch.dtype,
                        device: torch.device) -> Tensor:
    """Return ``(n_samples,)`` non-negative weights with a positive sum (ones when None).

    A scalar weighs every sample alike and is checked as an array would be.
    """
    acc = accumulation_dtype(dtype)
    if sample_weight is None:
        return torch.ones(n_samples, dtype=acc, device=device)
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        if isinstance(sample_weight, numbers.Complex) and not isinstance(sample_weight,
                                                                         numbers.Real):
            raise ValueError(f"sample_weight must be real, got {sample_weight!r}.")
        sample_weight = np.full(n_samples, float(sample_weight))
    if isinstance(sample_weight, Tensor):
        weight = sample_weight.detach().to(device=device, dtype=acc)
    else:
        array = np.asarray(sample_weight)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"sample_weight must be numeric, got an array of dtype {array.dtype}."
            )
        # Cast on the host first: some devices (MPS) have no float64.
        weight = torch.as_tensor(array.astype(np.float64)).to(acc).to(device)
    if weight.ndim != 1 or weight.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {tuple(weight.shape)}, expected ({n_samples},): "
            "one weight per sample."
        )
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("sample_weight contains NaN or infinity; weights must be finite.")
    if bool((weight < 0).any()):
        raise ValueError("Negative values in data passed to sample_weight: weights must be >= 0.")
    total = weight.sum()
    if not bool(total > 0):
        raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
    if not bool(torch.isfinite(total)):
        raise ValueError(f"sample_weight sums to more than {acc} holds: scale the weights down.")
    return weight


INITS = ("k-means++", "k-means||", "random")
"""Named ``init`` strategies (besides an array of centers or a callable)."""
METRICS = ("euclidean", "cosine")
"""``metric`` values: Euclidean k-means, or spherical k-means on unit-normalised rows."""


def normalize_rows(X: Tensor, *, name: str = "X") -> Tensor:
    """Return the rows of ``X`` scaled to unit Euclidean norm (a new tensor; float32 at least).

    Raises ``ValueError`` naming the first zero-norm row: cosine distance is
    undefined for it.
    """
    dtype = accumulation_dtype(X.dtype)
    if X.layout == torch.sparse_csr:
        crow, col, values = X.crow_indices(), X.col_indices(), X.values().to(dtype)
        rows = torch.repeat_interleave(torch.arange(X.shape[0], device=X.device), crow.diff())
        scale = torch.zeros(X.shape[0], dtype=dtype, device=X.device).scatter_reduce_(
            0, rows, values.abs(), "amax")
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        norms = torch.zeros(X.shape[0], dtype=dtype, device=X.device)
        norms.index_add_(0, rows, (values / safe[rows]).square()).sqrt_().mul_(scale)
        _check_nonzero_norms(norms, name)
        return csr_tensor(crow, col, values / norms[rows], tuple(X.shape))
    rows = X.to(dtype)
    norms = safe_row_norms(rows)
    _check_nonzero_norms(norms, name)
    return rows / norms[:, None]


def safe_row_norms(rows: Tensor) -> Tensor:
    """Euclidean norm of each row without overflow or underflow (rows scaled by their max).

    ``norm`` squares the values: past ~1.8e19 (float32) it is infinite, below ~1e-23 it
    is 0. Scaling each row by its largest absolute value first keeps it exact.
    """
    scale = rows.abs().amax(dim=1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (rows / safe[:, None]).norm(dim=1) * scale


def _check_nonzero_norms(norms: Tensor, name: str) -> None:
    zero = norms == 0
    if bool(zero.any()):
        first = int(torch.nonzero(zero)[0])
        raise ValueError(
            f"{name} has {int(zero.sum())} row(s) of zero norm (the first is row {first}): "
            "cosine distance is undefined for them; drop them or use metric='euclidean'."
        )


def prepare_data(X: Any, sample_weight: Any, *, copy: bool = True, metric: str = "euclidean",
                 offset: Tensor | None = None, device: torch.device | None = None,
                 collective: Any = None, precision: str = "exact",
                 deterministic: bool = True) -> KMeansData:
    """Return the engine's data for a checked tensor, or for a streamed source (``sources``).

    Sample weights are checked against the row count (for a source, known after its
    first pass). ``precision`` sets the certified low-precision products of dense
    rows (:func:`~torchmeans.core.precision.low_precision_dtype`); ``deterministic``
    the order of the per-cluster sums on accelerators (:mod:`torchmeans.core.accumulate`).
    """
    from torchmeans.data.stream import StreamData, is_source

    if is_source(X):
        data = StreamData(X, None, device or resolve_device(None), offset=offset,
                          normalize=metric == "cosine", collective=collective)
        data.set_sample_weight(check_sample_weight(sample_weight, data.n_samples, data.dtype,
                                                   data.device))
    else:
        weight = check_sample_weight(sample_weight, X.shape[0], X.dtype, X.device)
        data = make_data(X, weight, offset=offset, copy=copy, metric=metric)
    # Before anything uses the rows (data too large to take distances of are refused here,
    # once, not deep inside a pass).
    check_magnitudes(data.sq_norms, None if data.unit_weights else data.sample_weight)
    if data.dense_rows:
        data.low_dtype = low_precision_dtype(data.dtype, precision, data.device)
    data.deterministic = deterministic
    if collective is not None:  # a distributed fit's ranks (one process: the identity)
        data.collective = collective
    return data


def make_data(X: Tensor, sample_weight: Tensor, *, offset: Tensor | None = None,
              copy: bool = True, metric: str = "euclidean") -> KMeansData:
    """Wrap a checked tensor in the :class:`~torchmeans.data.KMeansData` that fits its layout.

    With ``metric='cosine'`` the rows are normalised first (a normalised copy is kept).
    """
    if metric == "cosine":
        X = normalize_rows(X)
    if X.layout == torch.sparse_csr:
        return SparseData(X, sample_weight)
    return DenseData(X, sample_weight, offset, precompute_shift=copy)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (any ``numbers.Integral``) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int() -> list[Any]:
    return [Interval(numbers.Integral, 1, None, closed="left")]


PARAMETER_CONSTRAINTS: dict[str, list[Any]] = {
    # scikit-learn's own constraints for its parameters (sklearn/cluster/_kmeans.py)...
    "n_clusters": _positive_int(),
    "init": [StrOptions(set(INITS)), callable, "array-like"],
    "n_init": [StrOptions({"auto"}), *_positive_int()],
    "max_iter": _positive_int(),
    "tol": [Interval(numbers.Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    # ... with numpy and torch generators besides seeds and RandomState
    "random_state": ["random_state", np.random.Generator, torch.Generator],
    "copy_x": ["boolean"],
    "batch_size": _positive_int(),
    "compute_labels": ["boolean"],
    "max_no_improvement": [Interval(numbers.Integral, 0, None, closed="left"), None],
    "init_size": [*_positive_int(), None],
    "reassignment_ratio": [Interval(numbers.Real, 0, None, closed="left")],
    # torchmeans' own
    "algorithm": [StrOptions(set(ALGORITHMS))],
    "device": [str, torch.device, None],
    "chunk_bytes": [*_positive_int(), None],
    "backend": [StrOptions(set(BACKENDS))],
    "metric": [StrOptions(set(METRICS))],
    "oversampling_factor": [Interval(numbers.Real, 0, None, closed="neither")],
    "init_rounds": [*_positive_int(), None],
    "checkpoint": [str, os.PathLike, None],
    "checkpoint_every": [*_positive_int(), None],
    "distributed": ["boolean", None],
    "precision": [StrOptions(set(PRECISIONS))],
    "deterministic": ["boolean"],
    "n_local_trials": [*_positive_int(), None],
    "max_samples_per_cluster": [*_positive_int(), None],
}
"""What every parameter of the estimators and of the functional API accepts: one table,
checked by scikit-learn's own validator, so a bad value raises its
``InvalidParameterError`` (a ``ValueError`` and ``TypeError``) with its message."""


def constraints(*names: str) -> dict[str, list[Any]]:
    """Return the entries of :data:`PARAMETER_CONSTRAINTS` for ``names``."""
    return {name: PARAMETER_CONSTRAINTS[name] for name in names}


def validate_parameters(params: dict[str, Any], caller: str, *, always: bool = False,
                        table: dict[str, list[Any]] | None = None) -> None:
    """Check ``params`` against :data:`PARAMETER_CONSTRAINTS` (``InvalidParameterError``).

    ``table`` gives an estimator's own constraints for some names (``BisectingKMeans``
    takes fewer inits than ``KMeans``); those are checked every time (the cache below
    holds values the shared table accepts).

    Counts are integers, not booleans (scikit-learn's ``Interval(Integral)`` takes
    ``True`` for 1): a boolean where an integer count is expected raises too. As in
    scikit-learn, nothing is checked under
    ``sklearn.config_context(skip_parameter_validation=True)``, unless ``always`` (values
    read from a file).
    """
    if get_config()["skip_parameter_validation"] and not always:
        return
    # Each parameter is checked on its own: plain values checked before pass at once.
    own = {} if table is None else {name: params[name] for name in table if name in params}
    unchecked = {name: value for name, value in params.items() if name not in own and (
                 type(value) not in _PLAIN_TYPES
                 or (name, type(value), value) not in _CHECKED_PLAIN_VALUES)}
    if not unchecked and not own:
        return
    checks = {**constraints(*unchecked), **{name: table[name] for name in own}}
    validate_parameter_constraints(checks, {**unchecked, **own}, caller_name=caller)
    for name, value in {**unchecked, **own}.items():
        counts = [c for c in checks[name] if isinstance(c, Interval) and c.type is numbers.Integral]
        if isinstance(value, bool | np.bool_) and counts:
            raise InvalidParameterError(
                f"The {name!r} parameter of {caller} must be an int, not a bool. Got {value!r} "
                "instead.")
    if len(_CHECKED_PLAIN_VALUES) > CHECKED_PLAIN_VALUES_KEPT:
        _CHECKED_PLAIN_VALUES.clear()
    _CHECKED_PLAIN_VALUES.update((name, type(value), value) for name, value in unchecked.items()
                                 if type(value) in _PLAIN_TYPES)


_PLAIN_TYPES = (str, int, float, bool, type(None))
_CHECKED_PLAIN_VALUES: set[tuple[str, type, Any]] = set()
"""``(name, type, value)`` of the plain parameter values that passed
:func:`validate_parameters` (the table is fixed, so they always will): scikit-learn's
validator costs ~5 us a parameter, a small fit's whole budget at twenty of them."""
CHECKED_PLAIN_VALUES_KEPT = 4096
"""At most this many are remembered (fits drawing a new ``random_state`` each time)."""


def resolve_n_init(n_init: Any, init: Any, *, default: int, caller: str) -> int:
    """Return the number of initializations scikit-learn's rules give.

    ``n_init='auto'``: one for ``'k-means++'``, ``'k-means||'`` and an array of centers,
    ``default`` for ``'random'`` and callables (10 in ``KMeans``, 3 in
    ``MiniBatchKMeans``). An array of centers runs once, with scikit-learn's warning.
    """
    is_array = not isinstance(init, str) and not callable(init)
    if isinstance(n_init, str):  # 'auto'
        return default if (isinstance(init, str) and init == "random") or callable(init) else 1
    if is_array and n_init != 1:
        warn(
            "Explicit initial center position passed: performing only one init in "
            f"{caller} instead of n_init={n_init}.",
            RuntimeWarning)
        return 1
    return int(n_init)


def check_n_samples(n_samples: int, n_clusters: int) -> None:
    """Raise scikit-learn's ``ValueError`` when there are fewer samples than clusters."""
    if n_samples < n_clusters:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}: "
            "ask for fewer clusters or pass more samples."
        )


def check_params(*, n_samples: int, caller: str = "kmeans", default_n_init: int = 10,
                 **params: Any) -> int:
    """Check the functional API's parameters and the row count; return the effective ``n_init``.

    ``params`` are checked against :data:`PARAMETER_CONSTRAINTS`; ``n_init`` is resolved
    by :func:`resolve_n_init`.
    """
    validate_parameters(params, caller)
    check_n_samples(n_samples, params["n_clusters"])
    return resolve_n_init(params.get("n_init", "auto"), params.get("init", "k-means++"),
                          default=default_n_init, caller=caller)


def check_init_array(init: Any, n_clusters: int, n_features: int, dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """Return initial centers as a new tensor (the user's array is never written to)."""
    if isinstance(init, Tensor):
        centers = init.detach()
    else:
        centers = torch.as_tensor(check_array(init, dtype=NUMPY_FLOAT_DTYPES, ensure_2d=False,
                                              allow_nd=True, ensure_min_samples=0,
                                              input_name="init", ensure_all_finite=True))
    shape = tuple(centers.shape)
    if centers.ndim != 2 or shape[0] != n_clusters:
        raise ValueError(f"The shape of the initial centers {shape} does not match the number "
                         f"of clusters {n_clusters}.")
    if shape[1] != n_features:
        raise ValueError(f"The shape of the initial centers {shape} does not match the number "
                         f"of features of the data {n_features}.")
    if not bool(torch.isfinite(centers).all()):
        raise ValueError("init contains NaN or infinity; initial centers must be finite.")
    return centers.to(dtype=dtype, copy=True).to(device)


def make_generator(random_state: Any, device: torch.device) -> torch.Generator:
    """Return a local ``torch.Generator`` on ``device`` seeded from ``random_state``.

    ``random_state`` may be an int, None (drawn from NumPy's global state, as
    scikit-learn does), a ``numpy.random.RandomState`` or ``Generator``, or a
    ``torch.Generator`` (used directly when it lives on ``device``).
    """
    if isinstance(random_state, torch.Generator):
        if random_state.device == device or (
            random_state.device.type == device.type == "cpu"
        ):
            return random_state
        seed = int(torch.randint(2**62, (1,), generator=random_state,
                                 device=random_state.device))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**62))
    elif is_integer(random_state):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}.")
    else:
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
