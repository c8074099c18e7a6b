"""Optional fused Triton kernels: nearest center, and deterministic per-cluster sums.

:func:`nearest`
    Fused distance + argmin (as in flash-kmeans): a program owns ``BLOCK_N`` rows and walks
    the centers ``BLOCK_K`` at a time, forming ``x.c`` with ``tl.dot`` (float32
    accumulation, ``d`` in masked ``BLOCK_D`` slices) and folding ``||c||^2 - 2 x.c`` into a
    running minimum, its index and, on request, the second-smallest score; no ``N x K``
    block reaches memory. Ties go to the smallest index, as ``torch.min`` (smallest within
    a tile, strictly smaller to move across tiles). float32 uses ``input_precision="ieee"``
    (no TF32); float16/bfloat16 products are exact and accumulated in float32.

:func:`segment_sums`
    Weighted per-cluster sums without atomics: rows sorted stably by label (negative
    labels first, skipped), one program per ``(cluster, BLOCK_D columns)`` summing its
    segment ``BLOCK_R`` rows at a time (``tl.sum`` in float32, float64 for float64 data)
    into a float64 accumulator. The order of every addition depends on the data alone, so
    repeated calls are bit-identical, unlike ``index_add_`` on CUDA.

Triton is imported lazily and the kernels are defined on first use (:func:`_kernels`);
whether they compile or run in the interpreter (``TRITON_INTERPRET=1``: CPU tensors, what
the CPU test-suite uses) is decided then, so set that variable before the first call.
:func:`unavailable_reason` says whether the kernels can run on a device.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import torch
from torch import Tensor

__all__ = ["nearest", "segment_sums", "self_check", "unavailable_reason"]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Input dtypes of :func:`nearest`. float64 is not supported (``tl.dot`` has no
exact float64 path on most GPUs); the caller uses the torch path for it."""

SEGMENT_DTYPES = (*SUPPORTED_DTYPES, torch.float64)
"""Input dtypes of :func:`segment_sums` (float64 blocks are summed in float64)."""


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def unavailable_reason(device: torch.device | str) -> str | None:
    """Say why the Triton kernels cannot run on tensors of ``device``.

    Parameters
    ----------
    device : torch.device or str
        Device of the data.

    Returns
    -------
    str or None
        ``None`` when Triton is installed and the device is a CUDA device (or
        ``TRITON_INTERPRET=1`` is set, which runs the kernels on CPU tensors),
        else a short reason.
    """
    device = torch.device(device)
    problem = _import_problem()
    if problem is not None:
        return problem
    if device.type != "cuda" and not _interpreting():
        return f"it runs on CUDA devices, the data is on {device.type}"
    return None


@cache
def self_check(device: torch.device, dtype: torch.dtype) -> str | None:
    """Run both kernels once on a small input of ``dtype`` and compare with torch.

    ``backend='auto'`` calls this (once per device and dtype in a process) before
    choosing Triton: a kernel that fails to compile on an untested GPU, driver or
    Triton release, or that gives a wrong answer, then costs a warning and the torch
    path, never a failed or wrong fit. Returns ``None`` when both kernels agree with
    torch, else the reason.
    """
    reason = unavailable_reason(device)
    if reason is not None:
        return reason
    try:
        generator = torch.Generator().manual_seed(0)
        for n_features in (37, 100):  # one feature tile, and the loop over feature tiles
            x = (torch.randn(300, n_features, generator=generator) * 4).to(device=device,
                                                                            dtype=dtype)
            centers = x[:70].float() + 0.5
            centers_t = centers.T.contiguous()
            sq_norms = centers.square().sum(dim=1)
            values, labels, second = nearest(x, centers_t.to(dtype), sq_norms, second=True)
            reference = torch.addmm(sq_norms, x.float(), centers_t, alpha=-2)
            picked = reference.gather(1, labels[:, None]).squeeze(1)
            scale = float(reference.abs().max())
            # The chosen center must be a nearest one within rounding (ties may differ).
            if not bool((picked <= reference.min(dim=1).values + 1e-3 * scale).all()):
                return "its nearest-center kernel disagreed with torch"
            if not bool(torch.allclose(values, picked, rtol=1e-3, atol=1e-3 * scale)):
                return "its distances disagreed with torch"
            if not bool((second >= values).all()):
                return "its second-nearest distances disagreed with torch"
            # The fit sums its chunks in the accumulation dtype (float32 for half data).
            rows, weight = x.float(), torch.rand(300, generator=generator).to(device)
            sums, weights = segment_sums(rows, labels, weight, 70)
            expected = torch.zeros(70, n_features, dtype=torch.float64, device=device)
            expected.index_add_(0, labels, (rows * weight[:, None]).double())
            if not bool(torch.allclose(sums, expected, rtol=1e-4, atol=1e-3)) or not bool(
                    torch.isclose(weights.sum(), weight.double().sum())):
                return "its cluster sums disagreed with torch"
    except Exception as error:  # compile errors, launch failures, missing features
        return f"its kernels failed a self-check: {type(error).__name__}: {error}"
    return None


@cache
def _import_problem() -> str | None:
    """Why ``import triton`` fails, or ``None`` (tried once per process)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    except Exception as error:  # a broken install: CUDA libraries, version clashes
        return f"triton failed to import: {error}"
    return None


def _next_power_of_2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()


@cache
def _kernels() -> Any:
    """Import Triton and define the kernels (once; see the module docstring)."""
    import triton
    import triton.language as tl

    @triton.jit
    def nearest_kernel(
        x_ptr, c_ptr, norms_ptr, values_ptr, labels_ptr, second_ptr,
        n, d, k, stride_xn, stride_xd, stride_cd, stride_ck,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
        ONE_D_TILE: tl.constexpr, SECOND: tl.constexpr, IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_mask = rows < n
        x_rows = x_ptr + rows.to(tl.int64)[:, None] * stride_xn
        d_offsets = tl.arange(0, BLOCK_D)
        if ONE_D_TILE:  # all of d fits one tile: load the rows once, not per center tile
            x_tile = tl.load(x_rows + d_offsets[None, :] * stride_xd,
                             mask=row_mask[:, None] & (d_offsets < d)[None, :], other=0.0)
            if UPCAST:
                x_tile = x_tile.to(tl.float32)
        best = tl.full([BLOCK_N], float("inf"), tl.float32)
        best_index = tl.zeros([BLOCK_N], tl.int32)
        second = tl.full([BLOCK_N], float("inf"), tl.float32)
        for k_start in range(0, k, BLOCK_K):
            cols = k_start + tl.arange(0, BLOCK_K)
            col_mask = cols < k
            c_cols = c_ptr + cols.to(tl.int64)[None, :] * stride_ck
            dots = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
            if ONE_D_TILE:
                c_tile = tl.load(c_cols + d_offsets.to(tl.int64)[:, None] * stride_cd,
                                 mask=(d_offsets < d)[:, None] & col_mask[None, :], other=0.0)
                if UPCAST:
                    c_tile = c_tile.to(tl.float32)
                if IEEE:
                    dots = tl.dot(x_tile, c_tile, dots, input_precision="ieee")
                else:
                    dots = tl.dot(x_tile, c_tile, dots)
            else:
                for d_start in range(0, d, BLOCK_D):
                    dims = d_start + d_offsets
                    d_mask = dims < d
                    xs = tl.load(x_rows + dims[None, :] * stride_xd,
                                 mask=row_mask[:, None] & d_mask[None, :], other=0.0)
                    cs = tl.load(c_cols + dims.to(tl.int64)[:, None] * stride_cd,
                                 mask=d_mask[:, None] & col_mask[None, :], other=0.0)
                    if UPCAST:
                        xs = xs.to(tl.float32)
                        cs = cs.to(tl.float32)
                    if IEEE:
                        dots = tl.dot(xs, cs, dots, input_precision="ieee")
                    else:
                        dots = tl.dot(xs, cs, dots)
            norms = tl.load(norms_ptr + cols, mask=col_mask, other=0.0)
            scores = norms[None, :] - 2.0 * dots
            scores = tl.where(col_mask[None, :], scores, float("inf"))
            tile_min = tl.min(scores, axis=1)
            # Smallest index among the tile's equal minima (k stands in for "none").
            tile_index = tl.min(tl.where(scores == tile_min[:, None], cols[None, :], k), axis=1)
            better = tile_min < best  # strictly: earlier tiles win ties
            if SECOND:
                tile_second = tl.min(
                    tl.where(cols[None, :] == tile_index[:, None], float("inf"), scores), axis=1)
                second = tl.where(better, tl.minimum(best, tile_second),
                                  tl.minimum(second, tile_min))
            best_index = tl.where(better, tile_index, best_index)
            best = tl.where(better, tile_min, best)
        tl.store(values_ptr + rows, best, mask=row_mask)
        tl.store(labels_ptr + rows, best_index.to(tl.int64), mask=row_mask)
        if SECOND:
            tl.store(second_ptr + rows, second, mask=row_mask)

    @triton.jit
    def segment_kernel(
        x_ptr, w_ptr, order_ptr, bounds_ptr, sums_ptr, weights_ptr,
        d, stride_xn, stride_xd,
        BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, HAS_WEIGHT: tl.constexpr,
        FLOAT64: tl.constexpr,
    ):
        cluster = tl.program_id(0)
        column_block = tl.program_id(1)
        start = tl.load(bounds_ptr + cluster)
        end = tl.load(bounds_ptr + cluster + 1)
        cols = column_block * BLOCK_D + tl.arange(0, BLOCK_D)
        col_mask = cols < d
        offsets = tl.arange(0, BLOCK_R)
        total = tl.zeros([BLOCK_D], tl.float64)
        weight_total = tl.zeros([1], tl.float64)
        for row_start in range(start, end, BLOCK_R):
            positions = row_start + offsets
            row_mask = positions < end
            rows = tl.load(order_ptr + positions, mask=row_mask, other=0)
            block = tl.load(x_ptr + rows[:, None] * stride_xn + cols[None, :] * stride_xd,
                            mask=row_mask[:, None] & col_mask[None, :], other=0.0)
            block = block.to(tl.float64 if FLOAT64 else tl.float32)
            if HAS_WEIGHT:
                w = tl.load(w_ptr + rows, mask=row_mask, other=0.0)
                block = block * w[:, None]
                weight_total += tl.sum(w, axis=0).to(tl.float64)
            total += tl.sum(block, axis=0).to(tl.float64)
        tl.store(sums_ptr + cluster.to(tl.int64) * d + cols, total, mask=col_mask)
        if HAS_WEIGHT:  # the first column block stores the weight sum
            first = tl.arange(0, 1)
            tl.store(weights_ptr + cluster + first, weight_total, mask=first + column_block == 0)

    return triton, nearest_kernel, segment_kernel


def _check_runnable(*tensors: Tensor) -> None:
    device = tensors[0].device
    for tensor in tensors[1:]:
        if tensor.device != device:
            raise ValueError(f"all tensors must be on one device, got {device} and "
                             f"{tensor.device}")
    reason = unavailable_reason(device)
    if reason is not None:
        raise RuntimeError(f"the Triton kernels cannot run: {reason}")


def _nearest_blocks(n: int, d: int, k: int) -> tuple[int, int, int, int]:
    """Choose ``(BLOCK_N, BLOCK_K, BLOCK_D, num_warps)`` for :func:`nearest`.

    ``tl.dot`` needs every block dimension to be at least 16; smaller ``n``, ``k``
    or ``d`` are padded by masks. These are untuned starting points.
    """
    block_n = 64
    block_k = min(64, max(16, _next_power_of_2(k)))
    block_d = min(64, max(16, _next_power_of_2(d)))
    return block_n, block_k, block_d, 4


def nearest(
    x: Tensor, centers_t: Tensor, center_sq_norms: Tensor, *, second: bool = False
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Nearest center of every row by the norm expansion, fused in one kernel.

    The score of row ``i`` and center ``j`` is ``||c_j||^2 - 2 x_i.c_j`` (the
    squared distance less ``||x_i||^2``); the ``n x k`` scores are never stored.

    Parameters
    ----------
    x : Tensor of shape (n, d)
        Rows, float32, float16 or bfloat16 (unit stride along ``d`` is fastest).
    centers_t : Tensor of shape (d, k)
        Transposed centers, in the dtype of ``x``.
    center_sq_norms : Tensor of shape (k,)
        ``||c_j||^2`` in float32.
    second : bool, default=False
        Also return the second-smallest score of every row.

    Returns
    -------
    values : Tensor of shape (n,)
        Smallest score of each row, float32.
    labels : Tensor of shape (n,)
        int64 index of the first center attaining it (ties go to the smallest
        index, as with :func:`torch.min`).
    second_values : Tensor of shape (n,)
        Only with ``second=True``: the smallest score over the centers other than
        ``labels`` (float32; equals ``values`` when two centers tie, ``inf`` when
        ``k == 1``).

    Raises
    ------
    TypeError
        If ``x`` is not float32, float16 or bfloat16 (float64 is not supported),
        or ``centers_t`` or ``center_sq_norms`` have the wrong dtype.
    ValueError
        On mismatched shapes or devices.
    RuntimeError
        If the kernels cannot run on the data's device (:func:`unavailable_reason`).

    Notes
    -----
    The inputs are assumed finite: unlike :func:`torch.min`, a NaN score is not
    propagated (a row whose scores are all NaN or ``+inf`` gets label 0 and value
    ``inf``). The float32 products are exact, but the summation order over ``d``
    differs from a cuBLAS GEMM, so values match the torch path to rounding only.
    """
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"nearest() supports float32, float16 and bfloat16 rows, got {x.dtype}")
    if centers_t.dtype != x.dtype:
        raise TypeError(f"centers_t must have the dtype of x ({x.dtype}), got {centers_t.dtype}")
    if center_sq_norms.dtype != torch.float32:
        raise TypeError(f"center_sq_norms must be float32, got {center_sq_norms.dtype}")
    if x.ndim != 2 or centers_t.ndim != 2 or centers_t.shape[0] != x.shape[1]:
        raise ValueError(f"expected x (n, d) and centers_t (d, k), got {tuple(x.shape)} and "
                         f"{tuple(centers_t.shape)}")
    n, d = x.shape
    k = centers_t.shape[1]
    if center_sq_norms.shape != (k,):
        raise ValueError(f"center_sq_norms must have shape ({k},), got "
                         f"{tuple(center_sq_norms.shape)}")
    if k == 0 or d == 0:
        raise ValueError(f"need at least one center and one feature, got k={k}, d={d}")
    _check_runnable(x, centers_t, center_sq_norms)
    values = torch.empty(n, dtype=torch.float32, device=x.device)
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    second_values = torch.empty(n if second else 0, dtype=torch.float32, device=x.device)
    if n > 0:
        triton, kernel, _ = _kernels()
        norms = center_sq_norms.contiguous()
        block_n, block_k, block_d, num_warps = _nearest_blocks(n, d, k)
        # The interpreter multiplies bfloat16 tiles as their raw uint16 bits, so
        # there bfloat16 is widened first (exactly) and multiplied as float32.
        upcast = x.dtype == torch.bfloat16 and _interpreting()
        ieee = x.dtype == torch.float32 or upcast
        kernel[(triton.cdiv(n, block_n),)](
            x, centers_t, norms, values, labels, second_values if second else values,
            n, d, k, x.stride(0), x.stride(1), centers_t.stride(0), centers_t.stride(1),
            BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=block_d, ONE_D_TILE=d <= block_d,
            SECOND=second, IEEE=ieee, UPCAST=upcast, num_warps=num_warps,
        )
    if second:
        return values, labels, second_values
    return values, labels


def segment_sums(
    x: Tensor, labels: Tensor, weight: Tensor | None, n_clusters: int
) -> tuple[Tensor, Tensor]:
    """Weighted sum of the rows of every cluster, deterministically.

    Parameters
    ----------
    x : Tensor of shape (n, d)
        Rows (float32, float16, bfloat16 or float64).
    labels : Tensor of shape (n,)
        Integer cluster of every row; rows with a negative label are ignored.
    weight : Tensor of shape (n,) or None
        Row weights (``None``: all 1).
    n_clusters : int
        Number of clusters ``k``; every label must be below it.

    Returns
    -------
    sums : Tensor of shape (k, d)
        float64 ``sum(w_i * x_i)`` over the rows of each cluster (0 for an empty
        cluster).
    weights : Tensor of shape (k,)
        float64 ``sum(w_i)`` over the rows of each cluster.

    Raises
    ------
    TypeError
        On an unsupported dtype of ``x``, or non-integer ``labels``.
    ValueError
        On mismatched shapes or devices, or a label ``>= n_clusters``.
    RuntimeError
        If the kernels cannot run on the data's device (:func:`unavailable_reason`).

    Notes
    -----
    Each block of ``BLOCK_R`` rows is summed in float32 (float64 for float64 rows),
    and the block partials in float64. The products ``w_i * x_i`` are formed in
    the same precision as the block sums. The summation order depends only on the
    labels, so repeated calls are bit-identical.
    """
    if x.dtype not in SEGMENT_DTYPES:
        raise TypeError(f"segment_sums() supports floating rows, got {x.dtype}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"expected x (n, d) and labels (n,), got {tuple(x.shape)} and "
                         f"{tuple(labels.shape)}")
    if weight is not None and weight.shape != labels.shape:
        raise ValueError(f"weight must have shape {tuple(labels.shape)}, got "
                         f"{tuple(weight.shape)}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be positive, got {n_clusters}")
    tensors = (x, labels) if weight is None else (x, labels, weight)
    _check_runnable(*tensors)
    n, d = x.shape
    device = x.device
    labels = labels.to(torch.int64)
    # Bin 0 counts the ignored rows (negative labels), bin j + 1 cluster j.
    counts = torch.bincount(labels.clamp_min(-1) + 1, minlength=n_clusters + 1)
    if counts.shape[0] > n_clusters + 1:
        raise ValueError(f"labels must be below n_clusters={n_clusters}")
    bounds = counts.cumsum(0)  # cluster j owns sorted positions [bounds[j], bounds[j + 1])
    sums = torch.zeros(n_clusters, d, dtype=torch.float64, device=device)
    if weight is None:
        weights = counts[1:].to(torch.float64)
    else:
        weights = torch.zeros(n_clusters, dtype=torch.float64, device=device)
    if n == 0 or (d == 0 and weight is None):
        return sums, weights
    order = torch.argsort(labels, stable=True)
    if weight is not None:  # products are formed in the precision of the block sums
        weight = weight.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        weight = weight.contiguous()
    triton, _, kernel = _kernels()
    block_d = min(128, _next_power_of_2(max(d, 1)))
    block_r = 64
    kernel[(n_clusters, max(1, triton.cdiv(d, block_d)))](
        x, weight if weight is not None else x, order, bounds, sums, weights,
        d, x.stride(0), x.stride(1),
        BLOCK_R=block_r, BLOCK_D=block_d, HAS_WEIGHT=weight is not None,
        FLOAT64=x.dtype == torch.float64, num_warps=4,
    )
    return sums, weights
