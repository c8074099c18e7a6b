"""The optional compiled CPU kernel of a Lloyd pass (``backend='native'``): ctypes bindings.

``lloyd_kernel.c`` fuses what follows torch's score GEMM (first minimum, label update,
weighted sums, inertia, changed count) into one pass over a chunk: at small ``k`` those
separate torch ops cost more than the GEMM (RESULTS.md, "The native Lloyd step"). It can
also score the rows itself (:func:`lloyd_direct`, no score block written): up to 16
features in registers, beyond as a tiled GEMM whose epilogue is the first minimum (AVX2 or
AVX-512). Plain C99 + OpenMP, compiled when torchmeans is installed (``hatch_build.py``,
:mod:`.build`, docs/native_build.md), never at run time:

- One variant per CPU level beside this file (x86-64: ``avx512``, ``avx2``, ``portable``;
  elsewhere ``portable``); the portable one's ``tm_cpu_level()`` picks the best this CPU
  runs, ``TORCHMEANS_NATIVE_ISA`` asks for a lower one, :func:`variant` names the loaded one.
- No OpenMP runtime is linked: the symbols bind to the one torch loaded, so both share one
  thread pool and ``torch.set_num_threads``/``threadpoolctl`` limits apply to both.
- No torch ABI: raw pointers through :mod:`ctypes` (the GIL is released); nothing to
  rebuild when torch is upgraded.
- The C code trusts its arguments, so every entry point here checks its buffers first and
  raises ``ValueError`` naming the call: no argument makes it read or write out of bounds.

When it cannot run (not built, built from another ``lloyd_kernel.c``, not Linux or macOS,
no OpenMP runtime in the process) ``backend='auto'`` uses torch and
:func:`unavailable_reason` says why. ``TORCHMEANS_NATIVE=0`` turns it off;
``TORCHMEANS_NATIVE_TILED=0`` keeps torch's GEMM (then the kernel's step) above 16 features.
"""

from __future__ import annotations

import ctypes
import json
import logging
import operator
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmeans.backends.base import LloydRun
from torchmeans.backends.native import build as _build

__all__ = ["TiledRows", "available", "build_info", "direct_applies", "elkan_pass",
           "greedy_seeding", "lloyd_direct", "lloyd_run", "lloyd_step", "serial_run_applies",
           "sq_distances_to",
           "tiled_available", "unavailable_reason", "variant"]

logger = logging.getLogger("torchmeans")

LIBRARY_DIR = Path(__file__).resolve().parent
"""Where the built variants and their ``_build_info.json`` are looked for."""
SOURCE = LIBRARY_DIR / "lloyd_kernel.c"
OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp5")
VARIANT_LEVELS = _build.LEVELS
"""Variant names, best first, and the ``tm_cpu_level()`` each needs."""
REBUILD = ("rebuild it: `make native` or `python -m torchmeans.backends.native.build` in a "
           "source tree, else reinstall torchmeans with a C compiler")


class _Kernel:
    """The loaded shared library, with typed entry points."""

    def __init__(self, path: Path, variant: str, cpu_level: int) -> None:
        library = ctypes.CDLL(str(path))
        self.path, self.variant, self.cpu_level = path, variant, cpu_level
        built_for = library.tm_build_level()
        if built_for != VARIANT_LEVELS[variant]:
            raise OSError(f"{path.name} was built for CPU level {built_for}, not "
                          f"{VARIANT_LEVELS[variant]} ({variant}): {REBUILD}")
        args = [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_int]
        direct_args = [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64] + [
            ctypes.c_void_p] * 4 + [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        elkan_args = [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64] + [
            ctypes.c_void_p] * 10
        self.steps, self.direct, self.tiled, self.seeding_steps, self.elkan = {}, {}, {}, {}, {}
        self.sq_distances, self.lloyd_run, self.greedy_seeding = {}, {}, {}
        self.potential_tile_rows: dict[torch.dtype, int] = {}
        seeding_args = [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 4 + [ctypes.c_int64] + [
            ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_void_p]
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            function = getattr(library, f"tm_lloyd_step_{suffix}")
            function.argtypes, function.restype = args, None
            self.steps[dtype] = function
            function = getattr(library, f"tm_lloyd_direct_{suffix}")
            function.argtypes, function.restype = direct_args, None
            self.direct[dtype] = function
            function = getattr(library, f"tm_lloyd_tiled_{suffix}")
            function.argtypes, function.restype = direct_args, ctypes.c_int
            self.tiled[dtype] = function
            function = getattr(library, f"tm_seeding_steps_{suffix}")
            function.argtypes, function.restype = seeding_args, ctypes.c_int64
            self.seeding_steps[dtype] = function
            function = getattr(library, f"tm_elkan_pass_{suffix}")
            function.argtypes, function.restype = elkan_args, ctypes.c_int
            self.elkan[dtype] = function
            function = getattr(library, f"tm_sq_distances_{suffix}")
            function.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int64] + [
                ctypes.c_void_p] * 3
            function.restype = None
            self.sq_distances[dtype] = function
            self.potential_tile_rows[dtype] = getattr(library, f"tm_potential_tile_rows_{suffix}")()
            function = getattr(library, f"tm_lloyd_run_{suffix}")
            function.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 9 + [
                ctypes.c_int64, ctypes.c_double, ctypes.c_double] + [ctypes.c_void_p] * 3
            function.restype = ctypes.c_int64
            self.lloyd_run[dtype] = function
            function = getattr(library, f"tm_greedy_seeding_{suffix}")
            function.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 2 + [
                ctypes.c_int64] * 2 + [ctypes.c_void_p] * 5
            function.restype = None
            self.greedy_seeding[dtype] = function
        self.max_threads = library.tm_max_threads
        self.max_threads.argtypes, self.max_threads.restype = [], ctypes.c_int
        self.direct_max_features = library.tm_direct_max_features()
        # TORCHMEANS_NATIVE_TILED=0: the GEMM + lloyd_step path above 16 features
        tiled = os.environ.get("TORCHMEANS_NATIVE_TILED", "1") != "0"
        self.tiled_vector_bytes = library.tm_tiled_vector_bytes() if tiled else 0


def _loaded_libraries() -> set[Path]:
    """Paths of the shared libraries loaded in this process (Linux and macOS)."""
    if sys.platform == "darwin":
        images = ctypes.CDLL(None)
        images._dyld_image_count.restype = ctypes.c_uint32
        images._dyld_get_image_name.argtypes = [ctypes.c_uint32]
        images._dyld_get_image_name.restype = ctypes.c_char_p
        names = (images._dyld_get_image_name(i) for i in range(images._dyld_image_count()))
        return {Path(os.fsdecode(name)) for name in names if name}
    maps = Path("/proc/self/maps")
    if not maps.exists():
        raise OSError("no /proc/self/maps: cannot find torch's OpenMP runtime")
    # address perms offset dev inode pathname: the path may hold spaces, and a file
    # replaced on disk since it was mapped ends in " (deleted)".
    paths = (fields[5].removesuffix(" (deleted)") for fields in
             (line.split(maxsplit=5) for line in maps.read_text().splitlines())
             if len(fields) == 6)
    return {Path(path) for path in paths if path.startswith("/")}


def _openmp_runtime() -> Path:
    """Path of torch's OpenMP runtime, among those loaded in this process.

    Other wheels load their own copies (scikit-learn vendors a ``libgomp`` under
    ``scikit_learn.libs``): prefer the one inside torch's package, else one that no
    other wheel vendors (a system or conda runtime).
    """
    loaded = {path for path in _loaded_libraries() if path.name.startswith(OPENMP_RUNTIMES)}
    torch_dir = Path(torch.__file__).resolve().parent

    def torchs(path: Path) -> bool:  # inside torch, or in the wheel's own torch.libs folder
        return path.resolve().is_relative_to(torch_dir) or path.parent.name == "torch.libs"

    def vendored(path: Path) -> bool:  # another wheel's copy (scikit_learn.libs, ...)
        return path.parent.name.endswith((".libs", ".dylibs")) and not torchs(path)

    ranked = sorted(loaded, key=lambda path: (not torchs(path), vendored(path), str(path)))
    if not ranked or vendored(ranked[0]):
        raise OSError("torch has no OpenMP runtime loaded (a torch built without OpenMP)")
    return ranked[0]


def build_info() -> dict[str, Any] | None:
    """Return what the install built (``_build_info.json``), or None if it is missing."""
    try:
        info = json.loads((LIBRARY_DIR / _build.INFO_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(info, dict) and isinstance(info.get("variants", []), list)
            and all(isinstance(name, str) for name in info.get("variants", []))):
        return {"variants": [], "error": f"{_build.INFO_NAME} is malformed: {REBUILD}"}
    return info


def _variant_name(level: int) -> str:
    return next(name for name, need in VARIANT_LEVELS.items() if need <= level)


def _requested_variant(cpu_level: int, built: list[str]) -> list[str]:
    """Return the variants to try, best first (or the one ``TORCHMEANS_NATIVE_ISA`` asks)."""
    runnable = [name for name in built if VARIANT_LEVELS[name] <= cpu_level]
    asked = os.environ.get("TORCHMEANS_NATIVE_ISA", "").strip().lower()
    if not asked:
        return runnable
    if asked not in VARIANT_LEVELS:
        raise OSError(f"TORCHMEANS_NATIVE_ISA={asked!r} is not one of "
                      f"{', '.join(VARIANT_LEVELS)}")
    if asked not in built:
        raise OSError(f"TORCHMEANS_NATIVE_ISA={asked}: that variant was not built here "
                      f"(built: {', '.join(built)})")
    if asked not in runnable:
        raise OSError(f"TORCHMEANS_NATIVE_ISA={asked}: this CPU runs at most the "
                      f"{_variant_name(cpu_level)} variant")
    return [asked]


def _open() -> _Kernel:
    info = build_info()
    if info is None:
        raise OSError(f"the native kernel is not built (no {_build.INFO_NAME} next to "
                      f"kernel.py: a source tree never built?): {REBUILD}")
    if not info.get("variants"):
        raise OSError(f"the native kernel was not built at install ({info.get('error')}): "
                      f"reinstall torchmeans with a C compiler (cc, gcc or clang on PATH, or "
                      f"$CC), or run `make native` in a source tree")
    if SOURCE.exists() and _build.source_digest(SOURCE) != info.get("source_sha256"):
        raise OSError(f"lloyd_kernel.c changed since the kernel was built: {REBUILD}")
    built = [name for name in VARIANT_LEVELS if name in info["variants"]]
    missing = [name for name in built if not (LIBRARY_DIR / _build.library_name(name)).exists()]
    if missing:
        raise OSError(f"built variant(s) {', '.join(missing)} missing from {LIBRARY_DIR}: "
                      f"{REBUILD}")
    runtime = _openmp_runtime()
    # Made global, so that the kernel's undefined OpenMP symbols bind to torch's runtime
    # (loaded already: this opens the same library, it loads no second one).
    ctypes.CDLL(str(runtime), mode=ctypes.RTLD_GLOBAL)
    try:
        probe = ctypes.CDLL(str(LIBRARY_DIR / _build.library_name("portable")))
    except OSError as error:
        raise OSError(f"cannot load the portable variant ({_hint(error)})") from error
    cpu_level = probe.tm_cpu_level()
    errors = []
    for name in _requested_variant(cpu_level, built):
        try:
            return _Kernel(LIBRARY_DIR / _build.library_name(name), name, cpu_level)
        except (OSError, AttributeError) as error:  # AttributeError: an entry point missing
            errors.append(f"{name}: {_hint(error)}")
            logger.debug("native kernel: variant %s failed to load: %s", name, error)
    raise OSError("no built variant loads: " + "; ".join(errors))


def _hint(error: Exception) -> str:
    text = str(error)
    if "__kmpc" in text or "GOMP_" in text:
        text += (" (built for another OpenMP runtime than torch's: build with the compiler "
                 "family torch was built with, gcc for libgomp, clang for libomp)")
    return text


@cache
def _load() -> _Kernel | str:
    """Return the kernel, or the reason it cannot be used (loaded at most once)."""
    if os.environ.get("TORCHMEANS_NATIVE", "1") == "0":
        return "disabled by TORCHMEANS_NATIVE=0"
    if not (sys.platform.startswith("linux") or sys.platform == "darwin"):
        return f"the native kernel is built on Linux and macOS only (this is {sys.platform})"
    try:
        return _open()
    except OSError as error:
        # A source tree whose C file changed since its build: say so once (the torch path
        # runs, slower), since nothing else would tell the developer.
        stale = "changed since the kernel was built" in str(error)
        (logger.warning if stale else logger.debug)("native kernel unavailable: %s", error)
        return str(error)


def variant() -> str | None:
    """Return the loaded variant (``'avx512'``, ``'avx2'`` or ``'portable'``), or None."""
    loaded = _load()
    return loaded.variant if isinstance(loaded, _Kernel) else None


def cpu_variant() -> str | None:
    """Return the best variant this CPU runs (whatever was built or asked), or None."""
    loaded = _load()
    return _variant_name(loaded.cpu_level) if isinstance(loaded, _Kernel) else None


def available() -> bool:
    """Return True when the compiled CPU kernel can run (loading it on first call)."""
    return isinstance(_load(), _Kernel)


def unavailable_reason() -> str | None:
    """Why the kernel cannot run, or None when it can."""
    loaded = _load()
    return None if isinstance(loaded, _Kernel) else loaded


def _kernel() -> _Kernel:
    loaded = _load()
    if not isinstance(loaded, _Kernel):
        raise RuntimeError(f"backend='native' cannot run: {loaded}")
    return loaded


# -- checks at the boundary -----------------------------------------------------------------
# The C kernel trusts every size, stride and index it is given. Each entry point below
# checks its buffers first (CPU, dense, dtype, shape, contiguity; labels that the kernel
# uses as indices in range; k >= 1 and the int32 limits), so that no argument makes it
# read or write out of bounds. All checks are O(rows) at most.

KERNEL_DTYPES = (torch.float32, torch.float64)
"""The dtypes the kernel is compiled for."""

INT32_LIMIT = 2**31
"""Labels and (in Elkan's pass) row indices are int32 inside the kernel."""


def _fail(call: str, problem: str) -> ValueError:
    return ValueError(f"{call}: {problem}")


def _inconsistent(call: str, problem: str) -> ValueError:
    return _fail(call, f"inconsistent sizes, layouts or dtypes: {problem}")


def _check_buffer(call: str, name: str, tensor: Any, *, dtype: torch.dtype | None = None,
                  shape: tuple[int, ...] | None = None, contiguous: bool = True) -> None:
    """Raise ``ValueError`` unless ``tensor`` is a dense CPU tensor of ``dtype`` and ``shape``."""
    if not isinstance(tensor, Tensor):
        raise _fail(call, f"{name} must be a tensor, got {type(tensor).__name__}")
    if not tensor.is_cpu:
        raise _fail(call, f"{name} is on {tensor.device}; the native kernel reads CPU memory")
    if tensor.layout is not torch.strided:
        raise _fail(call, f"{name} must be a dense tensor, not {tensor.layout}")
    if dtype is not None and tensor.dtype != dtype:
        raise _inconsistent(call, f"{name} has dtype {tensor.dtype}, expected {dtype}")
    if shape is not None and tuple(tensor.shape) != shape:
        raise _inconsistent(call, f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
    if contiguous and not tensor.is_contiguous():
        raise _inconsistent(call, f"{name} (shape {tuple(tensor.shape)}, stride "
                                  f"{tensor.stride()}) is not contiguous")


def _check_x(call: str, x: Tensor) -> tuple[int, int]:
    """Check the rows: 2-d float32/float64 on the CPU, unit stride along features."""
    _check_buffer(call, "x (the rows)", x, contiguous=False)
    if x.dim() != 2:
        raise _inconsistent(call, f"rows must be 2-d (rows, d), got shape {tuple(x.shape)}")
    if x.dtype not in KERNEL_DTYPES:
        raise _inconsistent(call, f"rows have dtype {x.dtype}, expected float32 or float64")
    if not _unit_feature_stride(x):
        raise _inconsistent(call, f"rows {tuple(x.shape)} have stride {x.stride()}; features "
                                  "must be adjacent (stride 1)")
    n_rows, n_features = x.shape
    if n_features < 1:
        raise _inconsistent(call, "rows have no features")
    return n_rows, n_features


def _check_k(call: str, k: int) -> None:
    if not 1 <= k < INT32_LIMIT:
        raise _fail(call, f"takes 1 to 2**31 - 1 centers, not {k}")


def _check_labels_range(call: str, labels: Tensor, k: int, why: str) -> None:
    """Raise unless every label is in ``0..k-1`` (one min/max pass over int64 labels)."""
    if labels.numel():
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= k:
            raise _fail(call, f"labels outside 0..{k - 1} (from {low} to {high}); {why}")


def _unit_feature_stride(x: Tensor) -> bool:
    """Whether row i, feature f of ``x`` is at ``i * x.stride(0) + f`` (one feature: any)."""
    return x.shape[1] == 1 or x.stride(1) == 1


def _check_rows(call: str, x: Tensor, k: int, weight: Tensor | None, labels: Tensor,
                accumulators: Tensor | None, incremental: bool) -> tuple[int, int]:
    """Check what :func:`lloyd_step` and :func:`lloyd_direct` share; return ``(rows, d)``.

    With ``incremental`` and accumulators, the kernel subtracts each moved row from
    ``sums[labels[i]]``: the previous labels must then be valid centers.
    """
    n_rows, n_features = _check_x(call, x)
    _check_k(call, k)
    _check_buffer(call, "labels", labels, dtype=torch.int64, shape=(n_rows,))
    if weight is not None:
        _check_buffer(call, "weight", weight, shape=(n_rows,), contiguous=False)
    if accumulators is not None:
        width = k * n_features + k + 2
        _check_buffer(call, "accumulators", accumulators, dtype=torch.float64)
        if accumulators.dim() != 2 or accumulators.shape[1] != width or not (
                1 <= accumulators.shape[0] < INT32_LIMIT):
            raise _inconsistent(call, f"accumulators have shape {tuple(accumulators.shape)}, "
                                      f"expected (threads >= 1, {width})")
        if incremental:
            _check_labels_range(call, labels, k, "incremental passes take valid previous labels")
    return n_rows, n_features


def _weight_buffer(weight: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if weight is None else weight.to(dtype).contiguous()


def new_accumulators(n_clusters: int, n_features: int) -> Tensor:
    """Zeroed per-thread float64 accumulators for :func:`lloyd_step`."""
    threads = _kernel().max_threads()
    return torch.zeros(threads, n_clusters * n_features + n_clusters + 2, dtype=torch.float64)


def lloyd_step(scores: Tensor, x: Tensor, weight: Tensor | None, labels: Tensor,
               accumulators: Tensor, *, transposed: bool, incremental: bool) -> None:
    """Label the rows of one chunk from its scores and add them to ``accumulators``.

    Parameters
    ----------
    scores : Tensor
        ``||c||^2 - 2 x.c``, ``(rows, k)``, or ``(k, rows)`` when ``transposed``;
        contiguous, float32 or float64, on the CPU.
    x : Tensor
        ``(rows, d)`` shifted rows (unit stride along features), same dtype.
    weight : Tensor, optional
        ``(rows,)`` weights; None for unit weights.
    labels : Tensor
        ``(rows,)`` int64 previous labels, overwritten with the nearest centers (with
        ``incremental``, valid labels in ``0..k-1``).
    accumulators : Tensor
        From :func:`new_accumulators`; each thread adds its sums, weights, partial
        inertia and changed count to its own row (sum the rows afterwards).
    transposed, incremental : bool
        Score layout; add only moved rows (old cluster minus, new cluster plus).

    Raises
    ------
    ValueError
        A buffer does not fit the others (device, dtype, shape, layout), or labels are
        out of range where the kernel indexes with them.
    """
    kernel = _kernel()
    call = "lloyd_step"
    _check_buffer(call, "scores", scores)
    if scores.dim() != 2:
        raise _inconsistent(call, f"scores must be 2-d, got shape {tuple(scores.shape)}")
    k = scores.shape[0] if transposed else scores.shape[1]
    if accumulators is None:
        raise _fail(call, "takes accumulators (from new_accumulators)")
    n_rows, n_features = _check_rows(call, x, k, weight, labels, accumulators, incremental)
    expected = (k, n_rows) if transposed else (n_rows, k)
    _check_buffer(call, "scores", scores, dtype=x.dtype, shape=expected)
    weight = _weight_buffer(weight, x.dtype)
    row_stride, center_stride = (1, n_rows) if transposed else (k, 1)
    kernel.steps[x.dtype](
        n_rows, k, n_features, scores.data_ptr(), row_stride, center_stride,
        x.data_ptr(), x.stride(0), None if weight is None else weight.data_ptr(),
        labels.data_ptr(), int(incremental), accumulators.data_ptr(), accumulators.shape[0],
    )


def tiled_available() -> bool:
    """Whether the tiled kernel runs here (AVX2 or AVX-512, not turned off)."""
    loaded = _load()
    return isinstance(loaded, _Kernel) and loaded.tiled_vector_bytes > 0


def direct_applies(n_features: int) -> bool:
    """Whether :func:`lloyd_direct` takes rows of ``n_features`` (the kernel is available).

    Up to 16 features wherever the CPU has hardware FMA; any number on AVX2 or AVX-512
    CPUs (the tiled kernel); elsewhere the GEMM + :func:`lloyd_step` path runs.
    """
    loaded = _load()
    if not isinstance(loaded, _Kernel) or n_features < 1:
        return False
    return n_features <= loaded.direct_max_features or loaded.tiled_vector_bytes > 0


def lloyd_direct(x: Tensor, centers: Tensor, sq_norms: Tensor, weight: Tensor | None,
                 labels: Tensor, accumulators: Tensor | None, *, incremental: bool,
                 best_out: Tensor | None = None) -> None:
    """:func:`lloyd_step` that computes the scores itself.

    The scores ``||c||^2 - 2 x.c`` of a block of rows live in registers only: no
    ``rows x k`` block is written (see ``lloyd_kernel.c``). Up to 16 features, each
    block of rows meets the centers one by one with its features in registers; beyond,
    tiles of rows meet groups of centers as in a GEMM micro-kernel. Each score is one
    FMA chain over the features in order, so the labels do not depend on the chunking
    or the threads. Without ``accumulators`` only the labels are written (predict).

    Parameters
    ----------
    x : Tensor
        ``(rows, d)`` shifted rows (unit stride along features), float32 or float64,
        with ``d`` accepted by :func:`direct_applies`.
    centers : Tensor
        ``(k, d)`` centers, same dtype.
    sq_norms : Tensor
        ``(k,)`` their squared norms (as :func:`~torchmeans.backends.torch.center_terms`
        computes them).
    weight, labels, accumulators, incremental
        As for :func:`lloyd_step`; ``accumulators`` may be None (labels only).
    best_out : Tensor, optional
        Without ``accumulators``: a contiguous ``(rows,)`` tensor of the rows' dtype
        that receives each row's minimum score ``||c||^2 - 2 x.c``.

    Raises
    ------
    ValueError
        As :func:`lloyd_step`, or rows of a width the kernel does not score.
    """
    kernel = _kernel()
    call = "lloyd_direct"
    n_rows, n_features = _check_x(call, x)
    if not direct_applies(n_features):
        most = ("any number of" if kernel.tiled_vector_bytes
                else f"1 to {kernel.direct_max_features}")
        raise ValueError(f"lloyd_direct takes {most} features on this CPU, not {n_features}")
    _check_buffer(call, "centers", centers, contiguous=False)
    _check_buffer(call, "sq_norms", sq_norms, contiguous=False)
    centers, sq_norms = centers.contiguous(), sq_norms.contiguous()
    k = centers.shape[0] if centers.dim() else 0
    _check_rows(call, x, k, weight, labels, accumulators, incremental)
    _check_buffer(call, "centers", centers, dtype=x.dtype, shape=(k, n_features))
    _check_buffer(call, "sq_norms", sq_norms, dtype=x.dtype, shape=(k,))
    if best_out is not None:
        if accumulators is not None:
            raise _fail(call, "best_out is written only without accumulators")
        _check_buffer(call, "best_out", best_out, dtype=x.dtype, shape=(n_rows,))
    weight = _weight_buffer(weight, x.dtype)
    n_acc = kernel.max_threads() if accumulators is None else accumulators.shape[0]
    tiled = n_features > kernel.direct_max_features
    failed = (kernel.tiled if tiled else kernel.direct)[x.dtype](
        n_rows, k, n_features, x.data_ptr(), x.stride(0), centers.data_ptr(),
        sq_norms.data_ptr(), None if weight is None else weight.data_ptr(), labels.data_ptr(),
        int(incremental), None if accumulators is None else accumulators.data_ptr(), n_acc,
        None if best_out is None else best_out.data_ptr(),
    )
    if tiled and failed:
        raise MemoryError(f"lloyd_direct: no memory for the packed centers ({k} x "
                          f"{n_features}) or a tile of rows")


def sq_distances_to(x: Tensor, centers: Tensor, labels: Tensor) -> Tensor:
    """Exact ``||x_i - centers[labels_i]||^2`` of a chunk's rows, summed in float64.

    The same quantity as :meth:`~torchmeans.data.KMeansData.sq_distances_to` (the
    difference of the vectors, not the expansion), in one pass over the rows and
    without a ``(rows, d)`` temporary.

    Parameters
    ----------
    x : Tensor
        ``(rows, d)`` shifted rows (unit stride along features), float32 or float64.
    centers : Tensor
        ``(k, d)`` centers, same dtype.
    labels : Tensor
        ``(rows,)`` int64 center of each row, in ``0..k-1``.

    Returns
    -------
    Tensor
        ``(rows,)`` squared distances in the rows' dtype.
    """
    kernel = _kernel()
    call = "sq_distances_to"
    n_rows, n_features = _check_x(call, x)
    _check_buffer(call, "centers", centers, contiguous=False)
    _check_buffer(call, "labels", labels, contiguous=False)
    centers, labels = centers.contiguous(), labels.contiguous()
    k = centers.shape[0] if centers.dim() else 0
    _check_buffer(call, "centers", centers, dtype=x.dtype, shape=(k, n_features))
    _check_buffer(call, "labels", labels, dtype=torch.int64, shape=(n_rows,))
    _check_labels_range(call, labels, k, "each row's center is read at its label")
    out = torch.empty(n_rows, dtype=x.dtype)
    kernel.sq_distances[x.dtype](n_rows, n_features, x.data_ptr(), x.stride(0),
                                 centers.data_ptr(), labels.data_ptr(), out.data_ptr())
    return out


def elkan_pass(x: Tensor, row_sq_norms: Tensor, margin: Tensor, centers: Tensor,
               center_sq_norms: Tensor, drift: Tensor, half_gaps: Tensor, upper: Tensor,
               lower: Tensor, labels: Tensor) -> tuple[int, int]:
    """One pass of Elkan's algorithm over a chunk, bounds and labels updated in place.

    Moves the bounds by the centers' drift, tests them, and computes scores only
    for the rows and centers whose bounds fail (``tm_elkan_pass`` in
    ``lloyd_kernel.c``), each as :func:`lloyd_direct` computes it, so the labels are
    the ones a native Lloyd pass would give.

    Parameters
    ----------
    x : Tensor
        ``(rows, d)`` shifted rows (unit stride along features), float32 or float64,
        with ``d`` accepted by :func:`direct_applies`.
    row_sq_norms, margin : Tensor
        ``(rows,)`` squared norms of the rows and the bound ``E`` on a score's rounding.
    centers, center_sq_norms : Tensor
        ``(k, d)`` centers and their squared norms (as for :func:`lloyd_direct`).
    drift, half_gaps : Tensor
        ``(k,)`` how far each center moved since the bounds were set (rounded up),
        and half the distance to its nearest other center (rounded down).
    upper, lower : Tensor
        ``(rows,)`` and contiguous ``(rows, k)`` bounds on the distances to the own
        and to every other center (``lower[i, labels[i]]`` is +inf).
    labels : Tensor
        ``(rows,)`` int64 labels in ``0..k-1``, updated.

    Returns
    -------
    tuple of int
        Rows whose upper bound was tightened, and rows whose other centers were tested.
    """
    kernel = _kernel()
    call = "elkan_pass"
    n_rows, n_features = _check_x(call, x)
    dtype = x.dtype
    if not direct_applies(n_features):
        raise ValueError(f"elkan_pass: rows of {n_features} features are not scored natively "
                         "on this CPU")
    _check_buffer(call, "centers", centers, contiguous=False)
    centers = centers.contiguous()
    k = centers.shape[0] if centers.dim() else 0
    _check_k(call, k)
    if n_rows >= INT32_LIMIT:
        raise _fail(call, f"takes fewer than 2**31 rows, not {n_rows}")
    _check_buffer(call, "centers", centers, dtype=dtype, shape=(k, n_features))
    for name, vector, size in (("row_sq_norms", row_sq_norms, n_rows), ("margin", margin, n_rows),
                               ("upper", upper, n_rows), ("center_sq_norms", center_sq_norms, k),
                               ("drift", drift, k), ("half_gaps", half_gaps, k),
                               ("lower", lower, None)):
        _check_buffer(call, name, vector, dtype=dtype, shape=(size,) if size is not None
                      else (n_rows, k))
    _check_buffer(call, "labels", labels, dtype=torch.int64, shape=(n_rows,))
    _check_labels_range(call, labels, k, "the bounds are read at each row's label")
    counts = torch.zeros(2, dtype=torch.int64)
    failed = kernel.elkan[dtype](
        n_rows, k, n_features, x.data_ptr(), x.stride(0), row_sq_norms.data_ptr(),
        margin.data_ptr(), centers.data_ptr(), center_sq_norms.data_ptr(), drift.data_ptr(),
        half_gaps.data_ptr(), upper.data_ptr(), lower.data_ptr(), labels.data_ptr(),
        counts.data_ptr())
    if failed:
        raise MemoryError(f"elkan_pass: no memory for the pair buffers ({k} centers)")
    tightened, recomputed = counts.tolist()
    return tightened, recomputed


class TiledRows:
    """Rows held once in the tiled kernel's layout, to compare candidate centers on them.

    The blocked k-means++ seeding compares each step's candidates by the potential they
    leave on the same sample of rows, thousands of times: transposed into tiles once
    (``(tiles, d, rows per tile)``, zero rows as padding). All steps over one pool of
    proposals are one call of ``tm_seeding_steps`` (:meth:`seeding_steps`): per step a GEMM
    against the few candidates whose epilogue adds the norms, takes the minimum with the
    rows' current distances and sums (no score block, only the candidates' distances, to
    keep the winner's).

    Parameters
    ----------
    x : Tensor
        ``(rows, d)`` float32 or float64 rows on the CPU (needs :func:`tiled_available`).
    weight : Tensor, optional
        ``(rows,)`` weights; None for unit weights.
    """

    def __init__(self, x: Tensor, weight: Tensor | None) -> None:
        kernel = _kernel()
        if not tiled_available():
            raise RuntimeError("TiledRows needs the tiled kernel (AVX2 or AVX-512)")
        call = "TiledRows"
        self.n_rows, n_features = _check_x(call, x)
        if weight is not None:
            _check_buffer(call, "weight", weight, shape=(self.n_rows,), contiguous=False)
        self.tile = kernel.potential_tile_rows[x.dtype]
        self.function = kernel.seeding_steps[x.dtype]
        n_tiles, full = -(-self.n_rows // self.tile), self.n_rows // self.tile
        # (tiles, d, rows per tile), zero padding rows: written from x without a padded copy
        self.tiles = x.new_zeros(n_tiles, n_features, self.tile)
        self.tiles[:full] = x[: full * self.tile].view(full, self.tile, n_features).transpose(1, 2)
        self.tiles[full:, :, : self.n_rows - full * self.tile] = x[full * self.tile :].T
        self.sq_norms = self.padded(torch.cat([part.square().sum(dim=1)  # a bounded temporary
                                               for part in x.split(1 << 14)]))
        # in the rows' dtype: the kernel reads it as such
        self.weight = None if weight is None else self.padded(weight.to(x.dtype))

    def padded(self, values: Tensor) -> Tensor:
        """Return a zero-padded copy of per-row ``values`` (for ``closest``)."""
        out = values.new_zeros(self.tiles.shape[0] * self.tile)
        out[: self.n_rows] = values
        return out

    def seeding_steps(self, closest: Tensor, pool: Tensor, pool_sq_norms: Tensor,
                      pool_now: Tensor, thresholds: Tensor, n_trials: int,
                      max_steps: int) -> Tensor:
        """Run the blocked k-means++ seeding's steps over one pool of proposals.

        Each step takes the next ``n_trials`` proposals (rows of ``pool``, in order) with
        ``thresholds < pool_now`` (all of them at the first step), keeps the one leaving the
        least potential ``sum_i w_i min(closest_i, ||x_i - c||^2)`` on these rows, lowers
        ``closest`` (padded, :meth:`padded`) to its distances and ``pool_now`` of the later
        proposals to their squared distances to it, both in place. Stops after
        ``max_steps`` steps or when fewer than ``n_trials`` proposals are left.

        Returns
        -------
        Tensor
            The winners' positions in the pool (int64), one per step run.
        """
        call = "TiledRows.seeding_steps"
        tiles = self.tiles
        dtype = tiles.dtype
        _check_buffer(call, "tiles", tiles)
        if tiles.dim() != 3 or tiles.shape[2] != self.tile or dtype not in KERNEL_DTYPES:
            raise _inconsistent(call, f"tiles {tuple(tiles.shape)} {dtype} are not "
                                      f"(tiles, d, {self.tile}) float32/float64")
        n_tiles, n_features, _ = tiles.shape
        n_padded = n_tiles * self.tile
        _check_buffer(call, "row norms", self.sq_norms, dtype=dtype, shape=(n_padded,))
        if self.weight is not None:
            _check_buffer(call, "weight", self.weight, dtype=dtype, shape=(n_padded,))
        _check_buffer(call, "closest", closest, dtype=dtype, shape=(n_padded,))
        _check_buffer(call, "pool", pool, dtype=dtype)
        if pool.dim() != 2 or pool.shape[1] != n_features:
            raise _inconsistent(call, f"pool has shape {tuple(pool.shape)}, expected "
                                      f"(proposals, {n_features})")
        n_pool = pool.shape[0]
        for name, vector in (("pool_sq_norms", pool_sq_norms), ("pool_now", pool_now),
                             ("thresholds", thresholds)):
            _check_buffer(call, name, vector, dtype=dtype, shape=(n_pool,))
        try:
            counts = operator.index(n_trials), operator.index(max_steps)
        except TypeError:
            counts = (-1, -1)
        if counts[0] < 1 or counts[1] < 0:
            raise ValueError(f"TiledRows.seeding_steps: n_trials={n_trials!r} (an integer, at "
                             f"least 1), max_steps={max_steps!r} (an integer, at least 0)")
        n_trials, max_steps = counts
        # The kernel's buffers hold n_trials candidates' distances to every row: their
        # sizes must not overflow (each step takes at least one proposal: at most n_pool).
        if (n_trials + 16) * (n_padded + n_features + n_tiles + 2) * 8 >= 2**62:
            raise MemoryError(f"{call}: {n_trials} candidates do not fit in memory")
        max_steps = min(max_steps, n_pool)
        winners = torch.empty(max_steps, dtype=torch.int64)
        steps = self.function(
            n_tiles, n_features, tiles.data_ptr(), self.sq_norms.data_ptr(),
            closest.data_ptr(), None if self.weight is None else self.weight.data_ptr(),
            n_pool, pool.data_ptr(), pool_sq_norms.data_ptr(), pool_now.data_ptr(),
            thresholds.data_ptr(), n_trials, max_steps, winners.data_ptr())
        if steps == -1:
            raise MemoryError(f"TiledRows.seeding_steps: no memory for {n_trials} candidates")
        if steps < 0:
            raise RuntimeError("TiledRows.seeding_steps: the kernel was built without it")
        return winners[:steps]


def lloyd_run(x: Tensor, weight: Tensor | None, offset: Tensor, centers: Tensor, *,
              max_iter: int, tol: float, inertia_offset: float) -> LloydRun:
    """Run Lloyd's iterations of a small problem in one call of ``tm_lloyd_run``.

    Each pass is :func:`lloyd_direct`'s (the same scores and labels) on one thread, the
    update and the stop those of :func:`torchmeans.core.lloyd.lloyd` (see
    ``lloyd_kernel.c``). A pass that leaves a cluster without weight is handed back
    uncounted (``outcome`` 2), with the centers and labels it started from, for the
    engine to relocate.

    Parameters
    ----------
    x : Tensor
        ``(n, d)`` contiguous shifted rows, float32 or float64, ``d`` at most the direct
        kernel's width (:func:`direct_applies` without the tiled kernel).
    weight : Tensor, optional
        ``(n,)`` weights; None for unit weights.
    offset : Tensor
        ``(d,)`` the rows' shift (the updates are round-tripped through it).
    centers : Tensor
        ``(k, d)`` initial centers (not modified).
    max_iter, tol, inertia_offset
        The most iterations, the absolute tolerance on the squared center shift, and
        ``sum_i w_i ||x_i||^2`` (added to each pass's partial inertia).
    """
    kernel = _kernel()
    call = "lloyd_run"
    n_rows, n_features = _check_x(call, x)
    _check_buffer(call, "x (the rows)", x)
    if not 1 <= n_features <= kernel.direct_max_features:
        raise ValueError(f"lloyd_run takes 1 to {kernel.direct_max_features} features on "
                         f"this CPU, not {n_features}")
    dtype = x.dtype
    _check_buffer(call, "centers", centers, contiguous=False)
    k = centers.shape[0] if centers.dim() == 2 else 0
    _check_k(call, k)
    _check_buffer(call, "centers", centers, dtype=dtype, shape=(k, n_features),
                  contiguous=False)
    _check_buffer(call, "offset", offset, dtype=dtype, shape=(n_features,), contiguous=False)
    weight = _weight_buffer(weight, dtype)
    if weight is not None:
        _check_buffer(call, "weight", weight, shape=(n_rows,))
    try:
        max_iter = operator.index(max_iter)
    except TypeError:
        max_iter = -1
    if max_iter < 0:
        raise ValueError(f"{call}: max_iter must be an integer >= 0, got {max_iter!r}")
    # Three buffers (one per dtype) hold every array of the call.
    integers = torch.full((2 * n_rows + 2,), -1, dtype=torch.int64)  # labels | previous | outcome
    wide = torch.empty(k * n_features + k + 2 + 4 * max_iter, dtype=torch.float64)
    # centers | new centers | sq_norms | distances
    narrow = torch.empty(2 * k * n_features + k + n_rows, dtype=dtype)
    run_centers = narrow[: k * n_features].view(k, n_features)
    run_centers.copy_(centers)
    sq_norms = narrow[2 * k * n_features : 2 * k * n_features + k]
    offset = offset.contiguous()
    int_size, item = 8, narrow.element_size()
    base = narrow.data_ptr()
    iterations = kernel.lloyd_run[dtype](
        n_rows, k, n_features, x.data_ptr(), None if weight is None else weight.data_ptr(),
        offset.data_ptr(), base, integers.data_ptr(), integers.data_ptr() + n_rows * int_size,
        wide.data_ptr(), base + k * n_features * item, base + 2 * k * n_features * item,
        max_iter, float(tol), float(inertia_offset),
        wide.data_ptr() + (k * n_features + k + 2) * 8,
        integers.data_ptr() + 2 * n_rows * int_size, base + (2 * k * n_features + k) * item)
    status, final = integers[2 * n_rows :].tolist()
    labels = integers[:n_rows]
    history = wide[k * n_features + k + 2 :].view(max_iter, 4)[:iterations]
    distances = narrow[2 * k * n_features + k :] if final else None
    sums = wide[: k * n_features].view(k, n_features)
    weights = wide[k * n_features : k * n_features + k]
    return LloydRun(run_centers, labels, history, status, bool(final), sq_norms, distances,
                    sums, weights)


def serial_run_applies(n_features: int) -> bool:
    """Whether :func:`lloyd_run` takes rows of ``n_features`` (the kernel is available)."""
    loaded = _load()
    return isinstance(loaded, _Kernel) and 1 <= n_features <= loaded.direct_max_features


def greedy_seeding(x: Tensor, weight: Tensor | None, uniforms: Tensor, n_trials: int) -> Tensor:
    """scikit-learn's greedy k-means++ on all rows in one call of ``tm_greedy_seeding``.

    The computation of :func:`torchmeans.core.seeding.greedy_kmeans_plusplus_centers`
    (distances and potentials in float64) on one thread, for small problems.

    Parameters
    ----------
    x : Tensor
        ``(n, d)`` contiguous rows, float32 or float64.
    weight : Tensor, optional
        ``(n,)`` weights; None for unit weights.
    uniforms : Tensor
        ``(1 + (k - 1) * n_trials,)`` float64 uniform draws in ``[0, 1)``: the first
        center's, then ``n_trials`` per later step.
    n_trials : int
        Candidates per step.

    Returns
    -------
    Tensor
        ``(k,)`` int64 row indices of the centers.
    """
    kernel = _kernel()
    call = "greedy_seeding"
    n_rows, n_features = _check_x(call, x)
    _check_buffer(call, "x (the rows)", x)
    _check_buffer(call, "uniforms", uniforms, dtype=torch.float64)
    try:
        n_trials = operator.index(n_trials)
    except TypeError:
        n_trials = 0
    if n_trials < 1 or uniforms.dim() != 1 or (uniforms.numel() - 1) % n_trials:
        raise _inconsistent(call, f"uniforms have shape {tuple(uniforms.shape)}, expected "
                                  f"(1 + (k - 1) * n_trials,) with n_trials={n_trials!r} >= 1")
    k = 1 + (uniforms.numel() - 1) // n_trials
    _check_k(call, k)
    weight = _weight_buffer(weight, x.dtype)
    if weight is not None:
        _check_buffer(call, "weight", weight, shape=(n_rows,))
    if n_trials * n_rows * 8 >= 2**62:
        raise MemoryError(f"{call}: {n_trials} candidates' distances do not fit in memory")
    indices = torch.empty(k, dtype=torch.int64)
    scratch = torch.empty((n_trials + 2) * n_rows, dtype=torch.float64)  # closest | cum | dist
    at = scratch.data_ptr()
    kernel.greedy_seeding[x.dtype](
        n_rows, n_features, x.data_ptr(), None if weight is None else weight.data_ptr(),
        k, n_trials, uniforms.data_ptr(), indices.data_ptr(), at, at + 8 * n_rows,
        at + 16 * n_rows)
    return indices
