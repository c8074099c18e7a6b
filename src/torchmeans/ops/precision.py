"""Exact answers from low-precision products, and float32 products that stay float32.

**Low precision, exact labels.** With float16/bfloat16 data, or ``precision='fast'``
on float32 data, the distance product ``x.c`` is computed in half precision (half
the memory traffic, tensor cores on GPUs), and the labels are still those of the
float32 computation:

1. scores ``s_j = ||c_j||^2 - 2 x.c_j`` come from the low-precision product;
2. each row keeps its best and second-best score;
3. a row whose margin ``s_second - s_best`` exceeds twice a *proven* bound ``delta``
   on the difference between its low-precision scores and the float32 reference
   scores cannot have another float32 nearest center: it keeps its label;
4. the other rows (near-ties, overflow, NaN) get their scores recomputed in float32
   by the very product the reference uses, and the exact first-minimum search.

The bound (:func:`score_error_bound`) covers the rounding of both inputs to the low
precision (relative ``u`` plus the absolute underflow ``eta``), the float32
accumulation of ``d`` products (``gamma_d``), the rounding of the product's output
to the low precision, and the rounding of the float32 reference itself. Through
Cauchy-Schwarz it needs only ``||x||`` and the largest ``||c_j||``. Where CUDA's
half-precision GEMMs may reduce in half precision
(``torch.backends.cuda.matmul.allow_{fp16,bf16}_reduced_precision_reduction``),
the accumulation term uses the low precision's ``u`` instead: still exact, but
more rows are recomputed (the Triton kernels always accumulate in float32).

**TF32.** Ampere and newer GPUs may run float32 products in TF32 (10-bit mantissa)
when ``torch.backends.cuda.matmul.allow_tf32`` is set or
``torch.set_float32_matmul_precision`` is ``'high'``/``'medium'`` (which may also
use bfloat16 on some CPUs). torchmeans never lets that change its answers: every
public entry point runs under :func:`full_float32_matmul`, which asks for
``'highest'`` and restores the caller's setting afterwards. Speed from reduced
precision is asked for explicitly, with ``precision='fast'``, and stays exact by
the recomputation above.
"""

from __future__ import annotations

import functools
import math
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
    "low_precision_dtype",
    "score_error_bound",
    "with_full_float32_matmul",
]

PRECISIONS = ("exact", "fast")
"""``precision`` values: ``'exact'`` computes distances in the data's precision (float16/
bfloat16 data: low-precision products certified as above); ``'fast'`` also computes
float32 data's products in bfloat16, certified the same way. Both give the labels of
the float32 (or float64) computation."""

_LOW = (torch.float16, torch.bfloat16)


def low_precision_dtype(dtype: torch.dtype, precision: str) -> torch.dtype | None:
    """Return the dtype of the certified low-precision products for data of ``dtype``.

    float16/bfloat16 data use their own dtype; float32 data use bfloat16 with
    ``precision='fast'`` (its range is float32's: no overflow); float64 never.
    """
    if dtype in _LOW:
        return dtype
    if dtype == torch.float32 and precision == "fast":
        return torch.bfloat16
    return None


def _reduces_in_low_precision(device: torch.device, dtype: torch.dtype) -> bool:
    if device.type != "cuda":
        return False
    matmul = torch.backends.cuda.matmul
    flag = ("allow_fp16_reduced_precision_reduction" if dtype == torch.float16
            else "allow_bf16_reduced_precision_reduction")
    return bool(getattr(matmul, flag, True))


def score_error_bound(row_norms: Tensor, largest_center_norm: float, n_features: int,
                      low: torch.dtype, *, low_accumulation: bool = False) -> Tensor:
    """Bound on ``|s_low - s_ref|`` for every score of each row (float64, ``(rows,)``).

    ``s_low = ||c||^2 - 2 fl_low(fl_low(x) . fl_low(c))`` (product accumulated in
    float32, or in ``low`` when ``low_accumulation``) against the float32 reference
    ``s_ref = fl32(||c||^2 - 2 fl32(x . c))``, for rows of norm ``row_norms`` and any
    center of norm at most ``largest_center_norm``.
    """
    info = torch.finfo(low)
    u = info.eps / 2  # unit roundoff
    eta = info.smallest_normal * info.eps / 2  # half the subnormal spacing
    u32 = torch.finfo(torch.float32).eps / 2
    d = n_features
    acc_u = u if low_accumulation else u32
    gamma = d * acc_u / max(1e-300, 1 - d * acc_u) if d * acc_u < 1 else math.inf
    gamma_ref = (d + 1) * u32 / (1 - (d + 1) * u32)
    x = row_norms.double()
    c = float(largest_center_norm)
    root_d = math.sqrt(d)
    inputs = (2 * u + u * u) * x * c + (1 + u) * eta * root_d * (x + c) + d * eta * eta
    magnitude = (x * (1 + u) + eta * root_d) * (c * (1 + u) + eta * root_d)
    product = inputs + gamma * magnitude + u * (1 + gamma) * magnitude + eta
    reference = gamma_ref * x * c + u32 * (c * c + 2 * x * c)
    # Twice the product error (the factor 2 of -2 x.c), both float32 roundings of the
    # final subtraction (low and reference), and 0.1% for this computation's own rounding.
    return (2 * product + 2 * reference + u32 * (c * c + 2 * x * c)) * 1.001


class Certified(NamedTuple):
    """Labels certified equal to the float32 ones, and the rows that were recomputed."""

    labels: Tensor
    recomputed: Tensor
    """Indices of the rows whose margin was within the bound (recomputed in float32)."""


def certify(x: Tensor, best: Tensor, second: Tensor, labels: Tensor, largest_center_norm: float,
            low: torch.dtype, exact: Callable[[Tensor], Tensor], *,
            low_accumulation: bool | None = None) -> Certified:
    """Keep the low-precision labels whose margin beats the bound; recompute the rest.

    Parameters
    ----------
    x : Tensor
        ``(rows, d)`` float32 rows (their norms enter the bound).
    best, second : Tensor
        ``(rows,)`` best and second-best low-precision scores (``inf`` second for k=1).
    labels : Tensor
        ``(rows,)`` low-precision labels (best), int64.
    largest_center_norm : float
        ``max_j ||c_j||``.
    low : torch.dtype
        The low precision of the products.
    exact : callable
        Given row indices, returns their float32 reference labels.
    low_accumulation : bool, optional
        Whether the product may have reduced in ``low`` (default: CUDA's flags).

    Returns
    -------
    Certified
        The labels of the float32 computation, and the recomputed rows.
    """
    if low_accumulation is None:
        low_accumulation = _reduces_in_low_precision(x.device, low)
    row_norms = x.double().norm(dim=1)
    delta = score_error_bound(row_norms, largest_center_norm, x.shape[1], low,
                              low_accumulation=low_accumulation)
    margin = second.double() - best.double()
    # A NaN margin fails the comparison. Rows that may overflow the low precision
    # anywhere (|x_i| <= ||x||, |x.c| <= ||x|| ||c||, with 1% of slack) are recomputed
    # too: an infinite score among the others would not show in best and second.
    limit = torch.finfo(low).max / 1.01
    may_overflow = ((row_norms * max(largest_center_norm, 1.0) >= limit)
                    | (largest_center_norm >= limit))
    uncertain = torch.nonzero(~(margin > 2 * delta) | may_overflow).squeeze(1)
    labels = labels.clone()
    if uncertain.numel():
        labels[uncertain] = exact(uncertain)
    return Certified(labels, uncertain)


@contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Run float32 matrix products in full float32 (no TF32 or bfloat16), then restore.

    Sets ``torch.set_float32_matmul_precision('highest')`` for the duration. The
    setting is process-wide: concurrent threads that asked for ``'high'`` get full
    precision meanwhile (slower, never less accurate).
    """
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


F = TypeVar("F", bound=Callable[..., Any])


def with_full_float32_matmul(function: F) -> F:
    """Decorate a public entry point to run under :func:`full_float32_matmul`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with full_float32_matmul():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
