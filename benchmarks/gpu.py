r"""GPU check: every backend against float64, and timed side by side with the GPU peers.

One run, one process, on one device:

1. **Ceilings.** A large float32 GEMM (full float32, no TF32), the same in TF32, a
   bfloat16 and a float16 GEMM (TFLOP/s), and a large device-to-device copy (GB/s,
   read + write counted).
2. **Shapes** ``(N, D, k)`` = ``(10^6, 128, 1024)``, ``(10^6, 1024, 4096)``,
   ``(8 * 10^6, 128, 1024)``, in float32 and bfloat16. Blobs-like data made on the
   device (fixed seed); the same initial centers for every method: ``k`` random rows
   (``torch.manual_seed(0); torch.randperm(N)[:k]``, which is also the init fastkmeans
   draws with seed 0, so it starts from the same rows).

   - *Labels*: one Lloyd assignment of the first ``--check-rows`` rows to the initial
     centers, by every torchmeans backend (``'torch'``, ``'triton'``; ``precision=
     'exact'`` and, for float32 rows, ``'fast'``) and by every peer (its 1-iteration
     fit from the same init), against a float64 reference (same rows, same centers,
     computed in chunks on the device). torchmeans' modes promise the labels of its
     float32 torch path, except Triton float32 at near-ties (its own summation order):
     the mismatches against it are counted too (expected 0 or a handful).
   - *Time*: ``--iters`` Lloyd iterations from the same init, tolerance off, after a
     warm-up fit (Triton compilation); ms per iteration = fit time / iterations. The
     torchmeans fit is the public ``torchmeans.kmeans`` end to end (its set-up and
     final exact assignment included).
   - *Quality*: the inertia of each method's final centers, computed by torchmeans'
     exact assignment, relative to that of torchmeans' torch path.

3. **Batched**: ``B=32`` problems of ``N=65,536`` rows, ``D=128``, ``k=1024``:
   ``torchmeans.batched_kmeans`` against a Python loop of ``torchmeans.kmeans`` (a few
   problems timed, extrapolated to ``B``), flash-kmeans' ``batch_kmeans_Euclid`` and
   fast_pytorch_kmeans' ``MultiKMeans``.

4. **Determinism**: two fits with the same seed per backend (torch, Triton) and dtype,
   with ``deterministic=True`` (must be bit-identical) and ``False`` (for comparison).

Peers, when importable: fastkmeans (its internal ``_kmeans_torch_double_chunked`` with
the rows already on the device; float16 Triton kernel), flash-kmeans
(``batch_kmeans_Euclid``: Triton, TF32 products for float32 rows), FAISS-GPU
(``faiss.Kmeans(gpu=True)``, rows on the host as its API takes them) and
fast_pytorch_kmeans. A peer that fails records its error in the JSON; the run goes on.
Without CUDA, the CPU versions of fastkmeans, flash-kmeans (torch fallback) and FAISS
stand in, so that ``--quick --device cpu`` exercises every code path.

Table columns: ms per iteration; ``x best peer`` = time / the fastest peer's time (< 1:
faster than every peer); effective TFLOP/s (``2 N D k`` per iteration) and its share of
the GEMM ceiling of the precision the method multiplies in; GB/s (``N D`` elements of
the rows read once per iteration) and its share of the copy ceiling; labels equal to
float64 (%); labels differing from torchmeans' torch path (rows); inertia / torchmeans
torch. Full results go to the JSON file, rewritten after every shape.

Command on a CUDA machine (from the repository root; ~3-5 minutes on an H200)::

    python benchmarks/gpu.py --json "${OUT:-.}/gpu_results.json"

Smoke test on the CPU (tiny shapes, Triton kernels interpreted)::

    TRITON_INTERPRET=1 .venv/bin/python benchmarks/gpu.py --quick --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import torch

try:
    import torchmeans
except ImportError:  # a checkout that is not installed (e.g. a bare GPU machine): its src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import torchmeans
from torchmeans.backends import resolve_backend
from torchmeans.backends.triton import kernels as _triton
from torchmeans.core.assign import assign, chunk_budget
from torchmeans.core.lloyd import lloyd
from torchmeans.core.precision import full_float32_matmul
from torchmeans.core.validation import prepare_data

SEED = 0
DEFAULT_SHAPES = ((1_000_000, 128, 1024), (1_000_000, 1024, 4096), (8_000_000, 128, 1024))
QUICK_SHAPES = ((2000, 8, 16), (2000, 130, 40))
DEFAULT_BATCHED = (32, 65_536, 128, 1024)
QUICK_BATCHED = (3, 300, 16, 8)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
LOOP_PROBLEMS = 4
"""Problems of the batched section's Python loop that are timed (extrapolated to B)."""

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - START


# -- device helpers -------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` (device synchronised before and after), and its value."""
    sync(device)
    start = time.perf_counter()
    value = fn()
    sync(device)
    return time.perf_counter() - start, value


def best_time(device: torch.device, fn: Callable[[], Any], repeats: int) -> float:
    """Best of ``repeats`` calls after two warm-ups (CUDA events on CUDA)."""
    fn()
    fn()
    sync(device)
    if device.type == "cuda":
        times = []
        for _ in range(repeats):
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        return min(times)
    return min(timed(device, fn)[0] for _ in range(repeats))


def error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= 600 else text[:600] + " ..."


# -- ceilings -------------------------------------------------------------------------


def measure_ceilings(device: torch.device, quick: bool) -> dict[str, Any]:
    """GEMM TFLOP/s per precision and device-to-device copy GB/s (read + write)."""
    small = quick or device.type != "cuda"
    n = 384 if small else 8192
    ceilings: dict[str, Any] = {"gemm_size": n}
    gen = torch.Generator(device=device).manual_seed(SEED)
    for name, dtype, precision, repeats in (("fp32", torch.float32, "highest", 3),
                                            ("tf32", torch.float32, "high", 5),
                                            ("bf16", torch.bfloat16, "highest", 10),
                                            ("fp16", torch.float16, "highest", 10)):
        try:
            a = torch.randn(n, n, device=device, generator=gen).to(dtype)
            b = torch.randn(n, n, device=device, generator=gen).to(dtype)
            previous = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision(precision)
            try:
                seconds = best_time(device, lambda a=a, b=b: a @ b, repeats)
            finally:
                torch.set_float32_matmul_precision(previous)
            ceilings[f"gemm_{name}_tflops"] = 2 * n**3 / seconds / 1e12
            del a, b
        except Exception as error:
            ceilings[f"gemm_{name}_tflops"] = None
            ceilings[f"gemm_{name}_error"] = error_text(error)
    try:
        elements = (16 << 20) if small else (512 << 20)  # 64 MiB / 2 GiB of float32
        src = torch.empty(elements, device=device).fill_(1.0)
        dst = torch.empty_like(src)
        seconds = best_time(device, lambda src=src, dst=dst: dst.copy_(src), 5)
        ceilings["copy_gbps"] = 2 * src.numel() * src.element_size() / seconds / 1e9
        ceilings["copy_bytes"] = src.numel() * src.element_size()
        del src, dst
    except Exception as error:
        ceilings["copy_gbps"] = None
        ceilings["copy_error"] = error_text(error)
    free_memory(device)
    return ceilings


# -- data, reference, inertia ---------------------------------------------------------


def make_blobs(n: int, d: int, k: int, device: torch.device, seed: int = SEED) -> torch.Tensor:
    """``(n, d)`` float32: unit gaussians around ``2k`` blob centers (built in slices).

    Blob centers are ``N(0, s^2)`` per feature with ``s = 4 sqrt(8 / d)`` (as
    bench_lloyd.py): overlapping blobs, so Lloyd keeps moving labels for every iteration.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    spread = 4.0 * math.sqrt(8.0 / d)
    blobs = torch.randn(2 * k, d, device=device, generator=gen) * spread
    X = torch.randn(n, d, device=device, generator=gen)
    step = 1 << 20
    for start in range(0, n, step):
        stop = min(n, start + step)
        members = torch.randint(0, 2 * k, (stop - start,), device=device, generator=gen)
        X[start:stop] += blobs[members]
    return X


def init_indices(n: int, k: int) -> torch.Tensor:
    """``k`` distinct rows: ``torch.manual_seed(0); torch.randperm(n)[:k]`` (fastkmeans' draw)."""
    torch.manual_seed(SEED)
    return torch.randperm(n)[:k]


def chunk_rows(width: int, itemsize: int, budget: int = 512 << 20) -> int:
    return max(1, budget // max(1, width * itemsize))


def reference_labels(X: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nearest center of every row in float64 (chunked; first minimum on ties)."""
    c = centers.double()
    c_sq = c.square().sum(1)
    labels = torch.empty(X.shape[0], dtype=torch.int64, device=X.device)
    step = chunk_rows(c.shape[0], 8)
    for start in range(0, X.shape[0], step):
        x = X[start:start + step].double()
        scores = torch.addmm(c_sq[None, :], x, c.T, alpha=-2)
        scores += x.square().sum(1, keepdim=True)
        labels[start:start + step] = scores.argmin(dim=1)
        del x, scores
    return labels


def exact_inertia(X: torch.Tensor, centers: torch.Tensor) -> float:
    """Inertia of ``centers`` on ``X`` by torchmeans' exact assignment (full float32)."""
    with full_float32_matmul():
        data = prepare_data(X, None, copy=False, device=X.device)
        shifted = centers.to(device=X.device, dtype=data.acc_dtype) - data.offset
        return float(assign(data, shifted).inertia)


def row_norms(X: torch.Tensor) -> torch.Tensor:
    out = torch.empty(X.shape[0], dtype=torch.float32, device=X.device)
    step = 1 << 20
    for start in range(0, X.shape[0], step):
        out[start:start + step] = X[start:start + step].float().square().sum(1)
    return out


# -- methods --------------------------------------------------------------------------


class Unavailable(Exception):
    """A method that cannot run here (not installed, needs CUDA, unsupported dtype)."""


def torchmeans_pass_labels(X: torch.Tensor, init: torch.Tensor, backend: str,
                           precision: str) -> torch.Tensor:
    """Labels of one Lloyd pass of ``backend`` (against ``init``) on rows ``X``."""
    with full_float32_matmul():
        data = prepare_data(X, None, device=X.device, precision=precision)
        resolved = resolve_backend(backend, data, init.shape[0], chunk_budget(data, None))
        centers = init.to(data.acc_dtype) - data.offset
        return lloyd(data, centers, max_iter=1, tol=0.0, backend=resolved).labels


class Method:
    """One way of fitting: ``fit(X, init, iters) -> (centers, labels or None, n_iter)``."""

    def __init__(self, name: str, kind: str, compute: str, fit: Callable[..., Any],
                 note: str = "", pass_labels: Callable[..., Any] | None = None,
                 warmup_iters: int = 1) -> None:
        self.name, self.kind, self.compute, self.fit = name, kind, compute, fit
        self.note = note
        self.pass_labels = pass_labels
        """Labels of one pass on the check rows (torchmeans); peers: their 1-iteration fit."""
        self.warmup_iters = warmup_iters


def torchmeans_methods(dtype: torch.dtype, device: torch.device) -> list[Method | dict]:
    modes = [("torch", "exact"), ("triton", "exact")]
    if dtype == torch.float32:
        modes += [("torch", "fast"), ("triton", "fast")]
    triton_reason = _triton.unavailable_reason(device)
    methods: list[Method | dict] = []
    for backend, precision in modes:
        name = f"torchmeans {backend}" + (" fast" if precision == "fast" else "")
        if backend == "triton" and triton_reason is not None:
            methods.append({"name": name, "kind": "torchmeans",
                            "status": f"unavailable: {triton_reason}"})
            continue
        compute = "fp32" if (dtype == torch.float32 and precision == "exact") else "bf16"

        def fit(X, init, iters, backend=backend, precision=precision):
            result = torchmeans.kmeans(X, init.shape[0], init=init, n_init=1, max_iter=iters,
                                       tol=0.0, backend=backend, precision=precision)
            return result.centers, None, int(result.n_iter)

        def pass_labels(X, init, backend=backend, precision=precision):
            return torchmeans_pass_labels(X, init, backend, precision)

        methods.append(Method(name, "torchmeans", compute, fit,
                              note=f"backend={backend!r}, precision={precision!r}",
                              pass_labels=pass_labels, warmup_iters=2))
    return methods


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as error:
        raise Unavailable(f"cannot import {name}: {error_text(error)}") from error


def peer_methods(dtype: torch.dtype, device: torch.device) -> list[Method | dict]:
    """The peers, or a dict recording why one cannot run."""
    cuda = device.type == "cuda"
    methods: list[Method | dict] = []

    def add(name: str, build: Callable[[], Method]) -> None:
        try:
            methods.append(build())
        except Unavailable as reason:
            methods.append({"name": name, "kind": "peer", "status": f"unavailable: {reason}"})

    # fastkmeans: its double-chunked loop on rows already on the device. Its init is
    # randperm(n)[:k] after torch.manual_seed(seed): the shared init.
    def fastkmeans() -> Method:
        module = _import("fastkmeans.kmeans")
        run = getattr(module, "_kmeans_torch_double_chunked", None)
        if run is None:
            raise Unavailable("fastkmeans.kmeans._kmeans_torch_double_chunked not found")
        use_triton = bool(cuda and getattr(module, "HAS_TRITON", False)
                          and torch.cuda.is_bf16_supported())

        def fit(X, init, iters):
            norms = row_norms(X)
            torch.manual_seed(SEED)
            centers, labels = run(X, norms, init.shape[0], X.device, dtype=None,
                                  max_iters=iters, tol=0.0, chunk_size_data=51_200,
                                  chunk_size_centroids=10_240, max_points_per_centroid=None,
                                  use_triton=use_triton)
            return centers, labels, iters

        compute = "fp16" if cuda else "fp32"
        note = ("float16 Triton kernel" if use_triton else "torch path") + \
            "; its own init = the shared rows (seed 0); labels copied to the host per chunk"
        return Method("fastkmeans", "peer", compute, fit, note=note)

    # flash-kmeans: batch_kmeans_Euclid on a batch of one (CUDA); torch fallback on CPU.
    def flash(label: str, triton: bool) -> Method:
        if triton:
            if not cuda:
                raise Unavailable("flash-kmeans' Triton kernels need CUDA")
            run = _import("flash_kmeans.kmeans_triton_impl").batch_kmeans_Euclid
        else:
            run = _import("flash_kmeans.torch_fallback").batch_kmeans_Euclid_torch_native

        def fit(X, init, iters):
            ids, centers, n_iter = run(X[None], init.shape[0], max_iters=iters, tol=0.0,
                                       init_centroids=init.to(X.dtype)[None].clone())
            return centers[0], ids[0], int(n_iter)

        compute = {torch.float32: "tf32" if triton else "fp32"}.get(dtype, "bf16")
        return Method(label, "peer", compute, fit,
                      note="Triton; float32 rows multiplied in TF32" if triton
                      else "torch fallback (CPU stand-in for the Triton path)")

    # FAISS: host rows (its API), GPU index; CPU FAISS stands in without CUDA.
    def faiss_kmeans(label: str, gpu: bool) -> Method:
        faiss = _import("faiss")
        if gpu and (not cuda or faiss.get_num_gpus() == 0):
            raise Unavailable("needs faiss with GPUs and a CUDA device "
                              f"(faiss.get_num_gpus() == {faiss.get_num_gpus()})")
        if dtype != torch.float32:
            raise Unavailable("float32 rows only")
        host: dict[int, Any] = {}

        def fit(X, init, iters):
            key = id(X)
            if key not in host:  # once per data set, outside the timed fits
                host.clear()
                host[key] = X.cpu().numpy()
            x = host[key]
            n, d = x.shape
            k = init.shape[0]
            km = faiss.Kmeans(d, k, niter=iters, gpu=gpu, seed=SEED, verbose=False,
                              max_points_per_centroid=n // k + 1, min_points_per_centroid=1)
            km.train(x, init_centroids=init.cpu().numpy())
            return torch.from_numpy(km.centroids.copy()), None, iters

        return Method(label, "peer", "fp32", fit,
                      note="rows on the host (faiss.Kmeans takes numpy)"
                      + ("" if gpu else "; CPU stand-in"))

    def fast_pytorch() -> Method:
        if dtype not in (torch.float32, torch.float16):
            raise Unavailable(f"{dtype} rows unsupported (it takes float16/32/64)")
        kmeans_class = _import("fast_pytorch_kmeans").KMeans

        def fit(X, init, iters):
            n, k = X.shape[0], init.shape[0]
            room = free_bytes(X.device)
            mask_bytes = n * k * (X.element_size() + 1)
            if room is not None and mask_bytes > 0.7 * room:
                raise Unavailable(f"its k x N mask needs {mask_bytes / 2**30:.1f} GiB, "
                                  f"{room / 2**30:.1f} GiB free")
            model = kmeans_class(k, max_iter=iters, tol=0.0)
            labels = model.fit_predict(X, centroids=init.to(X.dtype).clone())
            return model.centroids, labels, iters

        return Method("fast_pytorch_kmeans", "peer", "fp32" if dtype == torch.float32
                      else "fp16", fit, note="dense k x N one-hot mask per iteration")

    add("fastkmeans", fastkmeans)
    add("flash-kmeans", lambda: flash("flash-kmeans", True))
    if not cuda:
        add("flash-kmeans torch fallback", lambda: flash("flash-kmeans torch fallback", False))
    add("faiss-gpu", lambda: faiss_kmeans("faiss-gpu", True))
    if not cuda:
        add("faiss-cpu", lambda: faiss_kmeans("faiss-cpu", False))
    add("fast_pytorch_kmeans", fast_pytorch)
    return methods


# -- one shape ------------------------------------------------------------------------


@contextlib.contextmanager
def captured_warnings(record: dict) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            _keep_warnings(record, caught)


def _keep_warnings(record: dict, caught: list) -> None:
    if caught:
        record.setdefault("warnings", [])
        for item in caught[:3]:
            text = f"{item.category.__name__}: {item.message}"[:300]
            if text not in record["warnings"]:
                record["warnings"].append(text)


def run_method(method: Method, X: torch.Tensor, init: torch.Tensor, check_rows: int,
               ref: torch.Tensor, base_labels: torch.Tensor | None, iters: int,
               ceilings: dict, device: torch.device, max_fit_s: float) -> dict[str, Any]:
    n, d = X.shape
    k = init.shape[0]
    record: dict[str, Any] = {"name": method.name, "kind": method.kind,
                              "compute": method.compute, "note": method.note}
    stage = "labels"
    try:
        with captured_warnings(record):
            # Labels of one assignment of the check rows to the initial centers.
            if method.pass_labels is not None:
                labels = method.pass_labels(X[:check_rows], init)
                stage = "warm-up"
                warm_iters = method.warmup_iters
                warm_s, _ = timed(device, lambda: method.fit(X, init, warm_iters))
            else:  # a peer: its 1-iteration fit from the init doubles as the warm-up
                stage = "warm-up"
                warm_iters = 1
                warm_s, (_, labels, _) = timed(device, lambda: method.fit(X, init, 1))
            record["warmup_s"] = warm_s
            if labels is not None:
                labels = labels[:check_rows].to(device=device, dtype=torch.int64)
                record["labels_equal_f64"] = float((labels == ref).double().mean())
                record["labels_differ_f64_rows"] = int((labels != ref).sum())
                if base_labels is not None:
                    record["labels_differ_torch_rows"] = int((labels != base_labels).sum())
                record["_labels"] = labels
            del labels
            free_memory(device)
            # A slow method (the warm-up, compilation included, says so) runs fewer
            # timed iterations, so that one method cannot eat the run's time budget.
            timed_iters = iters
            estimate = warm_s / warm_iters * iters
            if estimate > max_fit_s:
                timed_iters = max(2, min(iters, int(iters * max_fit_s / estimate)))
                record["iters_reduced_from"] = iters
            stage = "timed fit"
            seconds, (centers, _, n_iter) = timed(
                device, lambda: method.fit(X, init, timed_iters))
            stage = "inertia"
            record.update(seconds=seconds, n_iter=n_iter)
            per_iter = seconds / max(1, n_iter)
            record["ms_per_iter"] = per_iter * 1e3
            record["tflops"] = 2 * n * d * k / per_iter / 1e12
            record["gbps"] = n * d * X.element_size() / per_iter / 1e9
            gemm = ceilings.get(f"gemm_{method.compute}_tflops")
            record["pct_gemm"] = 100 * record["tflops"] / gemm if gemm else None
            copy = ceilings.get("copy_gbps")
            record["pct_copy"] = 100 * record["gbps"] / copy if copy else None
            record["inertia"] = exact_inertia(X, centers.float())
            record["status"] = "ok"
            del centers
    except Unavailable as reason:
        record["status"] = f"unavailable: {reason}"
    except torch.cuda.OutOfMemoryError as error:
        record["status"] = "oom"
        record["error"] = f"{stage}: {error_text(error)}"
    except Exception as error:
        record["status"] = "error"
        record["error"] = f"{stage}: {error_text(error)}"
        record["traceback"] = traceback.format_exc(limit=6)[-3000:]
    free_memory(device)
    return record


def run_shape(n: int, d: int, k: int, dtypes: list[str], args: argparse.Namespace,
              ceilings: dict, device: torch.device, report: dict) -> None:
    log(f"shape N={n:,} D={d} k={k}: generating data")
    X32 = make_blobs(n, d, k, device)
    sync(device)
    idx = init_indices(n, k).to(device)
    for dtype_name in dtypes:
        entry: dict[str, Any] = {"N": n, "D": d, "k": k, "dtype": dtype_name,
                                 "iters": args.iters, "methods": []}
        report["shapes"].append(entry)
        if elapsed() > args.budget_s:
            entry["status"] = f"skipped: time budget of {args.budget_s:.0f} s spent"
            log(f"  {dtype_name}: skipped (time budget)")
            continue
        dtype = DTYPES[dtype_name]
        X = X32 if dtype == torch.float32 else X32.to(dtype)
        if dtype_name == dtypes[-1]:
            del X32  # the last dtype: only X is needed from here on
            X32 = None
            free_memory(device)
        init = X[idx].float()
        check_rows = min(n, args.check_rows)
        entry["check_rows"] = check_rows
        ref = reference_labels(X[:check_rows], init)
        methods = torchmeans_methods(dtype, device)
        if not args.skip_peers:
            methods += peer_methods(dtype, device)
        base_labels = None
        for method in methods:
            if isinstance(method, dict):
                entry["methods"].append(method)
                log(f"  {dtype_name} {method['name']}: {method['status']}")
                continue
            if elapsed() > args.budget_s:
                entry["methods"].append({"name": method.name, "kind": method.kind,
                                         "status": "skipped: time budget"})
                continue
            record = run_method(method, X, init, check_rows, ref, base_labels, args.iters,
                                ceilings, device, args.max_fit_s)
            labels = record.pop("_labels", None)
            if method.name == "torchmeans torch" and labels is not None:
                base_labels = labels
            entry["methods"].append(record)
            if record["status"] == "ok":
                log(f"  {dtype_name} {method.name}: {record['ms_per_iter']:.3f} ms/iter, "
                    f"labels = f64 {100 * record.get('labels_equal_f64', float('nan')):.4f}%")
            else:
                log(f"  {dtype_name} {method.name}: {record['status']} "
                    f"{record.get('error', '')}")
        finish_entry(entry)
        print(format_table([entry]), flush=True)
        write_json(args.json, report)
        del X, init, ref, base_labels
        free_memory(device)
    del X32
    free_memory(device)


def finish_entry(entry: dict) -> None:
    """Ratios to the best peer and to torchmeans torch's inertia."""
    ok = [m for m in entry["methods"] if m.get("status") == "ok"]
    peers = [m["ms_per_iter"] for m in ok if m["kind"] == "peer"]
    best = min(peers) if peers else None
    base = next((m["inertia"] for m in ok if m["name"] == "torchmeans torch"), None)
    for m in ok:
        m["x_best_peer"] = m["ms_per_iter"] / best if best else None
        m["inertia_ratio"] = m["inertia"] / base if base else None
    entry["best_peer_ms"] = best
    entry.setdefault("status", "done")


# -- batched ----------------------------------------------------------------------------


def make_problems(b: int, n: int, d: int, k: int, device: torch.device) -> torch.Tensor:
    """``(B, N, D)`` float32: each problem a mixture of ``k`` overlapping unit blobs."""
    gen = torch.Generator(device=device).manual_seed(SEED)
    centers = torch.randn(b, k, d, device=device, generator=gen) * 0.5
    picks = torch.randint(0, k, (b, n), device=device, generator=gen)
    X = torch.randn(b, n, d, device=device, generator=gen)
    X += torch.gather(centers, 1, picks[..., None].expand(-1, -1, d))
    return X


def run_batched(shape: tuple[int, int, int, int], args: argparse.Namespace, ceilings: dict,
                device: torch.device, report: dict) -> None:
    b, n, d, k = shape
    section: dict[str, Any] = {"B": b, "N": n, "D": d, "k": k, "iters": args.iters,
                               "methods": []}
    report["batched"] = section
    if elapsed() > args.budget_s:
        section["status"] = f"skipped: time budget of {args.budget_s:.0f} s spent"
        log("batched: skipped (time budget)")
        return
    log(f"batched B={b} N={n:,} D={d} k={k}")
    X = make_problems(b, n, d, k, device)
    gen = torch.Generator().manual_seed(SEED)
    picks = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(b)]).to(device)
    init = torch.gather(X, 1, picks[..., None].expand(-1, -1, d))
    iters = args.iters
    loop_count = min(b, LOOP_PROBLEMS)
    cuda = device.type == "cuda"

    def batched(X, init, iters):
        result = torchmeans.batched_kmeans(X, k, init=init, max_iter=iters, tol=0.0)
        return result.centers, int(result.n_iter.max())

    def loop(X, init, iters):
        centers = [torchmeans.kmeans(x, k, init=c, n_init=1, max_iter=iters, tol=0.0).centers
                   for x, c in zip(X, init, strict=True)]
        return torch.stack(centers), iters

    methods: list[tuple[str, str, Callable | str, str]] = [
        ("torchmeans batched", "torchmeans", batched, "batched_kmeans, deterministic sums"),
        ("loop of torchmeans.kmeans", "torchmeans", loop,
         f"{loop_count} of {b} problems timed, time scaled by {b}/{loop_count}; "
         "backend='auto'"),
    ]
    if not args.skip_peers:
        try:
            if cuda:
                flash = _import("flash_kmeans.kmeans_triton_impl").batch_kmeans_Euclid
                flash_name, flash_note = "flash-kmeans", "Triton, TF32 products"
            else:
                flash = _import("flash_kmeans.torch_fallback").batch_kmeans_Euclid_torch_native
                flash_name, flash_note = "flash-kmeans torch fallback", "CPU stand-in"

            def flash_fit(X, init, iters, flash=flash):
                _, centers, n_iter = flash(X, k, max_iters=iters, tol=0.0,
                                           init_centroids=init.clone())
                return centers, int(n_iter)
            methods.append((flash_name, "peer", flash_fit, flash_note))
        except Unavailable as reason:
            methods.append(("flash-kmeans", "peer", f"unavailable: {reason}", ""))
        try:
            multi = _import("fast_pytorch_kmeans").MultiKMeans

            def multi_fit(X, init, iters, multi=multi):
                room = free_bytes(X.device)
                mask_bytes = b * n * k * 5
                if room is not None and mask_bytes > 0.7 * room:
                    raise Unavailable(f"its B x k x N mask needs {mask_bytes / 2**30:.1f} GiB")
                model = multi(k, max_iter=iters, tol=0.0)
                model.fit_predict(X, centroids=init.clone())
                return model.centroids, iters
            methods.append(("fast_pytorch_kmeans MultiKMeans", "peer", multi_fit,
                            "dense B x k x N one-hot mask per iteration"))
        except Unavailable as reason:
            methods.append(("fast_pytorch_kmeans MultiKMeans", "peer",
                            f"unavailable: {reason}", ""))

    for name, kind, fit, note in methods:
        record: dict[str, Any] = {"name": name, "kind": kind, "note": note}
        section["methods"].append(record)
        if isinstance(fit, str):
            record["status"] = fit
            log(f"  batched {name}: {fit}")
            continue
        if elapsed() > args.budget_s:
            record["status"] = "skipped: time budget"
            continue
        is_loop = fit is loop
        Xt, It = (X[:loop_count], init[:loop_count]) if is_loop else (X, init)
        try:
            with captured_warnings(record):
                fit(Xt[:1] if is_loop else Xt, It[:1] if is_loop else It, 1)  # warm-up
                seconds, (centers, n_iter) = timed(device, lambda fit=fit, Xt=Xt, It=It:
                                                   fit(Xt, It, iters))
                if is_loop:
                    seconds *= b / loop_count
                per_iter = seconds / max(1, n_iter)
                record.update(seconds=seconds, n_iter=n_iter, ms_per_iter=per_iter * 1e3,
                              tflops=2 * b * n * d * k / per_iter / 1e12,
                              gbps=b * n * d * X.element_size() / per_iter / 1e9)
                gemm = ceilings.get("gemm_tf32_tflops" if name == "flash-kmeans"
                                    else "gemm_fp32_tflops")
                record["pct_gemm"] = 100 * record["tflops"] / gemm if gemm else None
                centers = centers.float()
                inertias = [exact_inertia(Xt[i], centers[i]) for i in range(Xt.shape[0])]
                record["inertias"] = inertias
                record["mean_inertia"] = sum(inertias) / len(inertias)
                record["status"] = "ok"
        except Unavailable as reason:
            record["status"] = f"unavailable: {reason}"
        except torch.cuda.OutOfMemoryError as error:
            record["status"] = "oom"
            record["error"] = error_text(error)
        except Exception as error:
            record["status"] = "error"
            record["error"] = error_text(error)
            record["traceback"] = traceback.format_exc(limit=6)[-3000:]
        free_memory(device)
        if record["status"] == "ok":
            log(f"  batched {name}: {record['ms_per_iter']:.3f} ms/iter")
        else:
            log(f"  batched {name}: {record['status']} {record.get('error', '')}")
    ok = [m for m in section["methods"] if m.get("status") == "ok"]
    peers = [m["ms_per_iter"] for m in ok if m["kind"] == "peer"]
    best = min(peers) if peers else None
    base = next((m for m in ok if m["name"] == "torchmeans batched"), None)
    for m in ok:
        m["x_best_peer"] = m["ms_per_iter"] / best if best else None
        # The loop's inertia covers its first problems only: compare like with like.
        if base is not None:
            count = len(m["inertias"])
            m["inertia_ratio"] = (sum(m["inertias"]) / sum(base["inertias"][:count]))
    section["status"] = "done"
    del X, init
    free_memory(device)


# -- output -----------------------------------------------------------------------------


HEADER = ("| method | dtype | ms/iter | x best peer | TFLOP/s | % GEMM | GB/s | % copy "
          "| labels = float64 (%) | labels != torch (rows) | inertia / torchmeans torch |")
BATCHED_HEADER = ("| method | ms/iter | x best peer | TFLOP/s | % GEMM | GB/s "
                  "| mean inertia / torchmeans batched | note |")


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(entries: list[dict]) -> str:
    lines = []
    for entry in entries:
        checked = (f"; labels of one assignment of {entry['check_rows']:,} rows"
                   if "check_rows" in entry else "")
        lines.append(f"\nN={entry['N']:,} D={entry['D']} k={entry['k']} {entry['dtype']}: "
                     f"{entry['iters']} iterations from the same init{checked}")
        if entry.get("status", "done") != "done":
            lines.append(f"({entry['status']})")
            continue
        lines += ["", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
        for m in entry["methods"]:
            if m.get("status") != "ok":
                detail = m.get("error", "")[:160]
                lines.append(f"| {m['name']} | - | {m['status'][:160]} "
                             f"{detail} |" + " |" * 8)
                continue
            equal = m.get("labels_equal_f64")
            lines.append(
                f"| {m['name']} | {m['compute']} | {m['ms_per_iter']:.3f}"
                + (f" ({m['n_iter']} it)" if "iters_reduced_from" in m else "") + " "
                f"| {_fmt(m.get('x_best_peer'), '.2f')} | {m['tflops']:.2f} "
                f"| {_fmt(m.get('pct_gemm'), '.0f')} | {m['gbps']:.0f} "
                f"| {_fmt(m.get('pct_copy'), '.0f')} "
                f"| {_fmt(None if equal is None else 100 * equal, '.4f')} "
                f"| {_fmt(m.get('labels_differ_torch_rows'), 'd')} "
                f"| {_fmt(m.get('inertia_ratio'), '.6f')} |")
    return "\n".join(lines)


def format_batched(section: dict | None) -> str:
    if not section:
        return ""
    lines = [f"\nbatched: B={section['B']} N={section['N']:,} D={section['D']} "
             f"k={section['k']}, {section['iters']} iterations from the same init"]
    if section.get("status", "done") != "done":
        return "\n".join([*lines, f"({section['status']})"])
    lines += ["", BATCHED_HEADER, "|" + "---|" * BATCHED_HEADER.count(" | ") + "---|"]
    for m in section["methods"]:
        if m.get("status") != "ok":
            lines.append(f"| {m['name']} | {m['status'][:160]} {m.get('error', '')[:160]} |"
                         + " |" * 6)
            continue
        lines.append(f"| {m['name']} | {m['ms_per_iter']:.3f} "
                     f"| {_fmt(m.get('x_best_peer'), '.2f')} | {m['tflops']:.2f} "
                     f"| {_fmt(m.get('pct_gemm'), '.0f')} | {m['gbps']:.0f} "
                     f"| {_fmt(m.get('inertia_ratio'), '.6f')} | {m['note']} |")
    return "\n".join(lines)


def format_ceilings(ceilings: dict) -> str:
    parts = [f"{name} {_fmt(ceilings.get(f'gemm_{name}_tflops'), '.1f')}"
             for name in ("fp32", "tf32", "bf16", "fp16")]
    return (f"ceilings: GEMM {ceilings['gemm_size']}^3 TFLOP/s: " + ", ".join(parts)
            + f"; copy {_fmt(ceilings.get('copy_gbps'), '.0f')} GB/s (read + write)")


def write_json(path: str, report: dict) -> None:
    report["elapsed_s"] = elapsed()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    os.replace(tmp, path)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("torch", "triton", "fastkmeans", "flash-kmeans", "faiss-gpu", "faiss-cpu",
                 "faiss", "fast-pytorch-kmeans", "torchmeans"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def parse_shapes(text: str, parts: int) -> list[tuple[int, ...]]:
    shapes = []
    for item in text.split(","):
        values = tuple(int(float(v)) for v in item.strip().lower().split("x"))
        if len(values) != parts:
            raise argparse.ArgumentTypeError(f"expected {parts} numbers joined by 'x': {item!r}")
        shapes.append(values)
    return shapes


def check_determinism(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """Fit twice with the same seed per backend and dtype: bit-identical centers and labels?

    ``deterministic=True`` (the default) promises it; ``deterministic=False`` (atomic sums on
    the torch path) is recorded for comparison. A few iterations of a modest shape.
    """
    n, d, k = (2000, 16, 8) if quick else (500_000, 128, 512)
    X = make_blobs(n, d, k, device)
    results = []
    for backend in ("torch", "triton"):
        for dtype in (torch.float32, torch.bfloat16):
            for deterministic in (True, False):
                entry = {"backend": backend, "dtype": str(dtype).removeprefix("torch."),
                         "deterministic": deterministic}
                try:
                    data = X.to(dtype)
                    fits = [torchmeans.kmeans(data, k, random_state=0, max_iter=5, tol=0,
                                              backend=backend, deterministic=deterministic)
                            for _ in range(2)]
                    entry["identical"] = bool(torch.equal(fits[0].centers, fits[1].centers)
                                              and torch.equal(fits[0].labels, fits[1].labels))
                except Exception as error:
                    entry["error"] = error_text(error)
                log(f"determinism {entry}")
                results.append(entry)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 2 iterations")
    parser.add_argument("--iters", type=int, default=None, help="Lloyd iterations (default 10)")
    parser.add_argument("--shapes", help="N x D x k list, e.g. 1e6x128x1024,8e6x128x1024")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batched", help="B x N x D x k of the batched section, or 'none'")
    parser.add_argument("--check-rows", type=int, default=200_000,
                        help="rows whose labels are checked against float64")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--max-fit-s", type=float, default=60.0,
                        help="time fewer iterations (at least 2) for a method whose warm-up "
                        "predicts a longer timed fit")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="skip what is left once this many seconds have passed")
    parser.add_argument("--json", default=os.path.join(os.environ.get("OUT") or ".",
                                                       "gpu_results.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: CUDA is not available (use --device cpu --quick)")
        if device.index is None:  # torch.cuda.set_device and friends want an index
            device = torch.device("cuda", torch.cuda.current_device())
    if args.iters is None:
        args.iters = 2 if args.quick else 10
    shapes = (parse_shapes(args.shapes, 3) if args.shapes
              else list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES))
    batched_shape = None
    if args.batched is None:
        batched_shape = QUICK_BATCHED if args.quick else DEFAULT_BATCHED
    elif args.batched.lower() != "none":
        batched_shape = parse_shapes(args.batched, 4)[0]
    dtypes = [t.strip() for t in args.dtypes.split(",") if t.strip()]
    for name in dtypes:
        if name not in DTYPES:
            parser.error(f"--dtypes: {name!r} is not one of {sorted(DTYPES)}")
    torch.set_float32_matmul_precision("highest")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    report: dict[str, Any] = {
        "meta": {
            "argv": sys.argv, "args": vars(args), "device": str(device),
            "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor() or platform.machine()),
            "cuda": torch.version.cuda, "python": platform.python_version(),
            "versions": versions(), "triton_interpret": os.environ.get("TRITON_INTERPRET"),
            "triton_unavailable": _triton.unavailable_reason(device),
            "bf16_reduced_precision_reduction": bool(getattr(
                torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False)),
            "threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "shapes": [],
        "batched": None,
    }
    log(f"device {report['meta']['device_name']} ({device}), torch {torch.__version__}, "
        f"json -> {args.json}")
    ceilings = measure_ceilings(device, args.quick)
    report["ceilings"] = ceilings
    log(format_ceilings(ceilings))
    write_json(args.json, report)
    for n, d, k in shapes:
        if elapsed() > args.budget_s:
            for name in dtypes:
                report["shapes"].append({"N": n, "D": d, "k": k, "dtype": name,
                                         "iters": args.iters, "methods": [],
                                         "status": "skipped: time budget"})
            log(f"shape N={n:,} D={d} k={k}: skipped (time budget)")
            continue
        try:
            run_shape(n, d, k, dtypes, args, ceilings, device, report)
        except Exception as error:  # data generation or the reference failed
            report["shapes"].append({"N": n, "D": d, "k": k, "dtype": "?", "iters": args.iters,
                                     "methods": [], "status": f"error: {error_text(error)}"})
            log(f"shape N={n:,} D={d} k={k}: error {error_text(error)}")
            free_memory(device)
        write_json(args.json, report)
    if batched_shape is not None:
        try:
            run_batched(batched_shape, args, ceilings, device, report)
        except Exception as error:
            report["batched"] = {"B": batched_shape[0], "N": batched_shape[1],
                                 "D": batched_shape[2], "k": batched_shape[3],
                                 "iters": args.iters, "methods": [],
                                 "status": f"error: {error_text(error)}"}
            log(f"batched: error {error_text(error)}")
        write_json(args.json, report)

    if elapsed() <= args.budget_s:
        report["determinism"] = check_determinism(device, args.quick)
        write_json(args.json, report)

    print("\n## Summary\n", flush=True)
    print(format_ceilings(ceilings))
    print("ratios: x best peer = ms/iter / fastest peer's ms/iter (< 1: faster than every "
          "peer); % GEMM against the ceiling of the precision the method multiplies in "
          "(dtype column); GB/s counts the rows read once per iteration.")
    print(format_table(report["shapes"]))
    print(format_batched(report["batched"]))
    for entry in report.get("determinism", []):
        print(f"determinism: {entry}")
    print(f"\nJSON: {args.json} ({elapsed():.1f} s in all)", flush=True)


if __name__ == "__main__":
    main()
