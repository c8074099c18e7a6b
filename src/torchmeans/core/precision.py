"""Exact answers from low-precision products, and float32 products that stay float32.

**Low precision, exact labels.** With float16/bfloat16 data, or ``precision='fast'`` on
float32 data, ``x.c`` is computed in half precision (half the memory traffic, tensor cores
on GPUs), and the labels are still the float32 computation's:

1. scores ``s_j = ||c_j||^2 - 2 x.c_j`` come from the low-precision product, and each row
   keeps its best and second-best;
2. a row whose margin ``s_second - s_best`` exceeds twice a *proven* bound ``delta`` on
   the gap between its low-precision and float32 reference scores keeps its label;
3. the others (near-ties, possible overflow) are scored in float64, which decides every
   row whose margin exceeds twice the reference's own error bound; the rows left are ties
   of the float32 computation itself, labelled by the reference's own product on the
   whole chunk (same call, same shape: BLAS rounds a row differently in a smaller product).

The bound (:func:`score_error_bound`) covers rounding both inputs to the low precision
(relative ``u``, absolute underflow ``eta``), the float32 accumulation of ``d`` products
(``gamma_d`` with unit ``2 u32``: truncating tensor-core adders included), rounding the
output, and the reference's own error (:func:`reference_error_bound`: ``d + 1`` terms in
any order, as BLAS may round per K-panel). By Cauchy-Schwarz it needs only ``||x||`` and the
largest ``||c_j||``. Where an accelerator may reduce half-precision products in half
precision, the accumulation term uses the low precision's ``u`` (on CUDA,
:func:`full_float32_matmul` turns those reductions off). The Triton backend certifies its
low-precision scores this way; its float32 scores (the kernel's own summation order) are
not certified, so a near-tie may go another way in its Lloyd pass and a Triton fit's
labels come from a final torch pass.

**TF32.** Ampere and newer GPUs may run float32 products in TF32 (10-bit mantissa) when
``torch.backends.cuda.matmul.allow_tf32`` is set or the float32 matmul precision is
``'high'``/``'medium'`` (also bfloat16 on some CPUs). Every public entry point runs under
:func:`full_float32_matmul` (``'highest'``, CUDA's reduced-precision reductions off, the
caller's settings restored after), so that never changes an answer; speed from reduced
precision is asked for with ``precision='fast'``, exact by the certificate above.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

__all__ = [
    "PRECISIONS",
    "Certified",
    "certify",
    "full_float32_matmul",
    "largest_norm",
    "low_precision_dtype",
    "reference_error_bound",
    "resolve_in_float64",
    "score_error_bound",
    "top2",
    "with_full_float32_matmul",
]

PRECISIONS = ("exact", "fast")
"""``precision`` values: ``'exact'`` computes distances in the data's precision (float16/
bfloat16 data: low-precision products certified as above); ``'fast'`` also computes
float32 data's products in bfloat16, certified the same way. Both give the labels of
the float32 (or float64) computation."""

_LOW = (torch.float16, torch.bfloat16)


def low_precision_dtype(dtype: torch.dtype, precision: str,
                        device: torch.device) -> torch.dtype | None:
    """Return the dtype of the certified low-precision products for data of ``dtype``.

    ``precision='fast'``: float16/bfloat16 data use their own dtype and float32 data
    bfloat16 (float32's range: no overflow). ``'exact'``: never (half-precision chunks
    are cast to float32 for the products). float64 never. ``device`` is not used yet:
    the certificate's cost is known on the CPU only (RESULTS.md, "precision='fast' against
    'exact'").
    """
    del device
    if precision == "fast" and dtype in (*_LOW, torch.float32):
        return dtype if dtype in _LOW else torch.bfloat16
    return None


def _reduces_in_low_precision(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a ``dtype`` product on ``device`` may accumulate in ``dtype`` (not float32).

    The CPU accumulates in float32. On CUDA, :func:`full_float32_matmul` turns the
    reduced-precision reductions off during torchmeans' calls; the flags are read
    anyway. Other accelerators are not known: assumed to.
    """
    if device.type == "cpu":
        return False
    if device.type != "cuda":
        return True
    matmul = torch.backends.cuda.matmul
    if dtype == torch.float16 and bool(getattr(matmul, "allow_fp16_accumulation", False)):
        return True
    flag = ("allow_fp16_reduced_precision_reduction" if dtype == torch.float16
            else "allow_bf16_reduced_precision_reduction")
    return bool(getattr(matmul, flag, True))


_U32 = torch.finfo(torch.float32).eps / 2


def _gamma(terms: int, unit: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error of a sum of ``n`` products."""
    return terms * unit / (1 - terms * unit) if terms * unit < 1 else math.inf


def reference_error_bound(row_norms: Tensor, largest_center_norm: float,
                          n_features: int) -> Tensor:
    """Bound on ``|s_ref - s|`` for each row: the float32 reference against exact arithmetic.

    ``s_ref = addmm(||c||^2, x, c.T, alpha=-2)`` in float32 and ``s = ||c||^2 - 2 x.c``
    exactly (with the same float32 ``||c||^2``). BLAS may add the ``d`` products and
    the ``||c||^2`` term in any order and round into the output several times (per
    K-panel, split-K), so this is the bound of a sum of ``d + 1`` terms in any order
    (accumulation unit ``2 u32``: truncating tensor-core adders included).
    """
    x, c = row_norms, float(largest_center_norm)
    # Products and partial sums below float32's normal range lose up to its smallest
    # normal each (flushed to zero on some hardware): an absolute term.
    underflow = 2 * (n_features + 2) * torch.finfo(torch.float32).smallest_normal
    return _gamma(n_features + 2, 2 * _U32) * (c * c + 2 * x * c) + underflow


def score_error_bound(row_norms: Tensor, largest_center_norm: float, n_features: int,
                      low: torch.dtype, *, low_accumulation: bool = False) -> Tensor:
    """Bound on ``|s_low - s_ref|`` for every score of each row (``(rows,)``).

    ``s_low = ||c||^2 - 2 fl_low(fl_low(x) . fl_low(c))`` (product accumulated in
    float32, or in ``low`` when ``low_accumulation``) against the float32 reference
    ``s_ref`` (:func:`reference_error_bound`), for rows of norm ``row_norms`` and any
    center of norm at most ``largest_center_norm``. ``low=torch.float32`` bounds a
    float32 product in another summation order (no backend uses that today).
    """
    info = torch.finfo(low)
    u = info.eps / 2  # unit roundoff
    eta = info.smallest_normal * info.eps / 2  # half the subnormal spacing
    d = n_features
    # Accumulation: float32 (2 u32 covers truncating tensor-core adders) or ``low``.
    gamma = _gamma(d, u if low_accumulation else 2 * _U32)
    x = row_norms
    c = float(largest_center_norm)
    root_d = math.sqrt(d)
    inputs = (2 * u + u * u) * x * c + (1 + u) * eta * root_d * (x + c) + d * eta * eta
    magnitude = (x * (1 + u) + eta * root_d) * (c * (1 + u) + eta * root_d)
    product = (inputs + gamma * magnitude + u * (1 + gamma) * magnitude + eta
               + d * torch.finfo(torch.float32).smallest_normal)  # float32 underflow
    # Twice the product error (the factor 2 of -2 x.c), the float32 rounding of the final
    # subtraction, the reference's own error, and 0.1% for this computation's rounding.
    return (2 * product + _U32 * (c * c + 2 * x * c)
            + reference_error_bound(x, c, d)) * 1.001


def largest_norm(centers_t: Tensor) -> float:
    """``max_j ||c_j||`` of ``(d, k)`` transposed centers, rounded up (for the bounds)."""
    wide = torch.float64 if centers_t.device.type != "mps" else torch.float32
    norm = float(centers_t.to(wide).square().sum(dim=0).max().sqrt())
    return norm * (1 + 4 * torch.finfo(wide).eps * (centers_t.shape[0] + 2))


class Certified(NamedTuple):
    """Labels certified equal to the reference ones, and the rows that needed more work."""

    labels: Tensor
    recomputed: Tensor
    """Indices of the rows whose margin was within the bound (resolved by ``resolve``)."""


def top2(scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Best score, second-best score (``inf`` for one column) and best column of each row."""
    if scores.shape[1] == 1:
        best = scores[:, 0]
        return best, torch.full_like(best, torch.inf), torch.zeros_like(best, dtype=torch.int64)
    top = scores.topk(2, dim=1, largest=False, sorted=True)
    return top.values[:, 0], top.values[:, 1], top.indices[:, 0]


def certify(x: Tensor, best: Tensor, second: Tensor, labels: Tensor, largest_center_norm: float,
            low: torch.dtype, resolve: Callable[[Tensor], Tensor], *,
            low_accumulation: bool | None = None) -> Certified:
    """Keep the approximate labels whose margin beats the bound; ``resolve`` the rest.

    Parameters
    ----------
    x : Tensor
        ``(rows, d)`` rows in full precision (their norms enter the bound).
    best, second : Tensor
        ``(rows,)`` best and second-best approximate scores (``inf`` second for k=1).
    labels : Tensor
        ``(rows,)`` approximate labels (best), int64.
    largest_center_norm : float
        ``max_j ||c_j||``, rounded up (:func:`largest_norm`).
    low : torch.dtype
        Precision of the approximate products' inputs and output (float32 would cover
        a float32 kernel whose only difference is the summation order).
    resolve : callable
        Given row indices, returns their reference labels.
    low_accumulation : bool, optional
        Whether the product may have reduced in ``low`` (default: by device and flags).

    Returns
    -------
    Certified
        The reference labels, and the rows that went to ``resolve``.
    """
    if low_accumulation is None:
        low_accumulation = _reduces_in_low_precision(x.device, low)
    wide = torch.float64 if x.device.type != "mps" else torch.float32
    row_norms = x.to(wide).norm(dim=1)
    delta = score_error_bound(row_norms, largest_center_norm, x.shape[1], low,
                              low_accumulation=low_accumulation)
    margin = second.to(wide) - best.to(wide)
    # A NaN margin fails the comparison. Rows that may overflow the low precision
    # anywhere (|x_i| <= ||x||, |x.c| <= ||x|| ||c||, with 1% of slack) are resolved
    # too: an infinite score among the others would not show in best and second.
    limit = torch.finfo(low).max / 1.01
    may_overflow = ((row_norms * max(largest_center_norm, 1.0) >= limit)
                    | (largest_center_norm >= limit))
    uncertain = torch.nonzero(~(margin > 2 * delta) | may_overflow).squeeze(1)
    labels = labels.clone()
    if uncertain.numel():
        labels[uncertain] = resolve(uncertain)
    return Certified(labels, uncertain)


def resolve_in_float64(x: Tensor, centers_t: Tensor, center_sq_norms: Tensor,
                       largest_center_norm: float) -> tuple[Tensor, Tensor]:
    """Return the reference labels of rows ``x`` that float64 decides, and the rows it cannot.

    Scores in float64 (``||c||^2`` the reference's float32 values) are within
    ``reference_error_bound`` (plus float64's own, far smaller, rounding) of the
    float32 reference's, so where their margin exceeds twice that, the reference's
    first minimum is float64's best. The rows left are ties *of the float32
    reference itself*: only the reference's own product can label them.

    Returns
    -------
    labels : Tensor
        ``(rows,)`` labels (valid where decided).
    undecided : Tensor
        Indices of the rows float64 cannot decide.
    """
    wide = torch.float64
    scores = torch.addmm(center_sq_norms.to(wide), x.to(wide), centers_t.to(wide), alpha=-2)
    best, second, labels = top2(scores)
    row_norms = x.to(wide).norm(dim=1)
    c = largest_center_norm
    own = _gamma(x.shape[1] + 2, torch.finfo(wide).eps) * (c * c + 2 * row_norms * c)
    delta = (reference_error_bound(row_norms, c, x.shape[1]) + own) * 1.001
    # Where float32 may overflow (scores past its range), only its own product can tell.
    may_overflow = c * c + 2 * row_norms * c >= torch.finfo(torch.float32).max / 4
    undecided = torch.nonzero(~(second - best > 2 * delta) | may_overflow).squeeze(1)
    return labels, undecided


_matmul_lock = threading.Lock()
_matmul_users = 0
_matmul_saved: dict[str, Any] | None = None
_REDUCTION_FLAGS = ("allow_fp16_reduced_precision_reduction",
                    "allow_bf16_reduced_precision_reduction", "allow_fp16_accumulation")


@functools.cache
def _fp32_backends() -> tuple[Any, ...]:
    """Return the backends with the per-backend ``fp32_precision`` setting of newer torch."""
    found = []
    for backend in (torch.backends.cuda.matmul, getattr(torch.backends.mkldnn, "matmul", None)):
        if backend is not None and hasattr(backend, "fp32_precision"):
            found.append(backend)
    return tuple(found)


def _save_matmul_state() -> dict[str, Any]:
    matmul = torch.backends.cuda.matmul
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # the user set the per-backend API: the legacy getter refuses
        legacy = None
    return {
        "legacy": legacy,
        "backends": [(backend, backend.fp32_precision) for backend in _fp32_backends()],
        "flags": {flag: getattr(matmul, flag) for flag in _REDUCTION_FLAGS
                  if hasattr(matmul, flag)},
    }


def _apply_full_float32() -> None:
    matmul = torch.backends.cuda.matmul
    if torch_legacy_precision_usable():
        torch.set_float32_matmul_precision("highest")
    else:
        for backend in _fp32_backends():
            if backend.fp32_precision not in ("ieee", "none"):
                backend.fp32_precision = "ieee"
    for flag in _REDUCTION_FLAGS:
        if hasattr(matmul, flag):
            setattr(matmul, flag, False)


def _is_full_float32() -> bool:
    """Whether products already run as :func:`_apply_full_float32` makes them run.

    The reduction flags steer cuBLAS only: without CUDA they are left as they are.
    """
    try:
        if torch.get_float32_matmul_precision() != "highest":
            return False
    except RuntimeError:  # the per-backend settings
        if any(backend.fp32_precision not in ("ieee", "none") for backend in _fp32_backends()):
            return False
    if not torch.cuda.is_available():
        return True
    matmul = torch.backends.cuda.matmul
    return not any(getattr(matmul, flag, False) for flag in _REDUCTION_FLAGS)


def torch_legacy_precision_usable() -> bool:
    """Whether ``torch.get_float32_matmul_precision`` works (no per-backend setting made)."""
    try:
        torch.get_float32_matmul_precision()
    except RuntimeError:
        return False
    return True


def _restore_matmul_state(saved: dict[str, Any]) -> None:
    matmul = torch.backends.cuda.matmul
    if saved["legacy"] is not None:
        torch.set_float32_matmul_precision(saved["legacy"])
    else:
        for backend, value in saved["backends"]:
            backend.fp32_precision = value
    for flag, value in saved["flags"].items():
        setattr(matmul, flag, value)


@contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Run matrix products at full float32 accuracy (no TF32, float32 accumulation); restore.

    Sets ``torch.set_float32_matmul_precision('highest')`` (or, where the caller used
    torch's per-backend ``fp32_precision`` settings, those to ``'ieee'``) and turns
    CUDA's half-precision reduced-precision reductions and float16 accumulation off
    for the duration. The settings are process-wide: the first of concurrent users
    saves them and the last one out restores them (a lock and a count), and other
    threads' products meanwhile run at full accuracy (slower, never less accurate). Where
    nothing needs changing (torch's defaults without CUDA) nothing is saved or restored.
    """
    global _matmul_users, _matmul_saved
    with _matmul_lock:
        if _matmul_users == 0 and not _is_full_float32():
            saved = _save_matmul_state()
            try:
                _apply_full_float32()
            except Exception:
                _restore_matmul_state(saved)
                raise
            _matmul_saved = saved
        _matmul_users += 1
    try:
        yield
    finally:
        with _matmul_lock:
            _matmul_users -= 1
            if _matmul_users == 0 and _matmul_saved is not None:
                _restore_matmul_state(_matmul_saved)
                _matmul_saved = None


F = TypeVar("F", bound=Callable[..., Any])


def with_full_float32_matmul(function: F) -> F:
    """Decorate a public entry point to run under :func:`full_float32_matmul`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with full_float32_matmul():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
