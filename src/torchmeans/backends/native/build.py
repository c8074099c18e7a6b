"""Compile the native kernel's variants: at install (``hatch_build.py``) or by hand.

``lloyd_kernel.c`` is compiled once per CPU level into its own shared library next to
this file; :mod:`torchmeans.backends.native.kernel` loads the best one the CPU runs:

- x86-64: ``avx512`` (``-march=x86-64-v4``), ``avx2`` (``-march=x86-64-v3``) and
  ``portable`` (``-march=x86-64``, which also holds ``tm_cpu_level``, the CPU probe);
- other machines (aarch64, arm64): ``portable`` only, the compiler's baseline.

No ``-march=native``: what is built runs on any CPU of its level. The libraries use
OpenMP (``-fopenmp`` when compiling) but link no OpenMP runtime: their ``GOMP_*`` /
``__kmpc_*`` and ``omp_*`` symbols stay undefined (macOS: ``-undefined dynamic_lookup``)
and bind, when loaded, to the runtime torch has loaded. ``_build_info.json`` records what
was built, the compiler, the source's digest, and why nothing was built if so.

This module imports neither torch nor anything outside the standard library, so the
build hook can load it by path. By hand, to rebuild after editing the C file
(``make native`` does the same)::

    python -m torchmeans.backends.native.build          # in place, next to this file
    python src/torchmeans/backends/native/build.py --out DIR

Environment: ``CC`` (the compiler, may hold arguments), ``CFLAGS`` and ``CPPFLAGS`` (put
before the variant's flags), ``LDFLAGS``, ``ARCHFLAGS`` (macOS: one ``-arch``) and
``TORCHMEANS_NATIVE_BUILD``: ``auto`` (default: build what compiles, warn otherwise),
``require`` (fail on any error: release wheels) or ``0`` (build nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "lloyd_kernel.c"
INFO_NAME = "_build_info.json"
LEVELS = {"avx512": 4, "avx2": 3, "portable": 0}
"""Variant names and the ``tm_cpu_level()`` each needs (x86-64 psABI levels)."""
COMMON_FLAGS = ("-O3", "-fPIC", "-std=c99", "-ffp-contract=off",
                "-Werror=implicit-function-declaration")
X86_FLAGS = {  # -march=x86-64-vN needs GCC 11 / clang 12; the explicit lists otherwise
    "avx512": (("-march=x86-64-v4", "-mtune=generic"),
               ("-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx512cd",
                "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe",
                "-msse4.2", "-mpopcnt")),
    "avx2": (("-march=x86-64-v3", "-mtune=generic"),
             ("-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe",
              "-msse4.2", "-mpopcnt")),
    "portable": (("-march=x86-64", "-mtune=generic"),),
}
MODES = ("auto", "require", "0")


def library_name(variant: str) -> str:
    """File name of a variant's shared library (``.so`` on macOS too: ctypes takes it)."""
    return f"_lloyd_kernel_{variant}.so"


def source_digest(source: Path = SOURCE) -> str:
    """SHA-256 of the C source: the loader refuses libraries built from another one."""
    return hashlib.sha256(source.read_bytes()).hexdigest()


def target_machine() -> str:
    """Return the machine to build for (macOS: the one ``-arch`` of ``ARCHFLAGS``)."""
    archs = re.findall(r"-arch\s+(\S+)", os.environ.get("ARCHFLAGS", ""))
    if sys.platform == "darwin" and archs:
        if len(set(archs)) > 1:
            raise OSError(f"ARCHFLAGS={os.environ['ARCHFLAGS']!r} asks for a universal build; "
                          "build one wheel per architecture")
        return archs[0]
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64" if sys.platform != "darwin"
            else "arm64"}.get(machine, machine)


def variants_for(machine: str) -> tuple[str, ...]:
    """Variant names built for ``machine``, best first."""
    return ("avx512", "avx2", "portable") if machine == "x86_64" else ("portable",)


def find_compiler() -> list[str]:
    """Return the C compiler command: ``$CC``, else ``cc``, ``gcc`` or ``clang``."""
    if os.environ.get("CC", "").strip():
        command = shlex.split(os.environ["CC"])
        found = shutil.which(command[0])
        if found is None:
            raise OSError(f"no C compiler found (CC={os.environ['CC']!r} is not a program)")
        return [found, *command[1:]]
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    raise OSError("no C compiler found (CC unset, no cc, gcc or clang on PATH)")


def _describe(compiler: list[str]) -> str:
    try:
        done = subprocess.run([*compiler, "--version"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return f"{shlex.join(compiler)} (--version failed: {error})"
    first = (done.stdout or done.stderr).strip().splitlines()
    return f"{shlex.join(compiler)}: {first[0] if first else 'unknown version'}"


@dataclass
class Result:
    """What :func:`build` built (``files`` are in the output folder, the info file last)."""

    variants: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs."""
        if self.variants:
            text = f"native kernel built: {', '.join(self.variants)}"
            if self.failed:
                text += "; failed: " + "; ".join(f"{k}: {v}" for k, v in self.failed.items())
            return text
        return f"native kernel NOT built ({self.error}); torchmeans will use its torch path"


def _openmp_flags() -> list[str]:
    # Apple clang has no -fopenmp driver flag; -Xpreprocessor passes it to the compiler
    # proper (clang from LLVM takes it too). omp.h comes from CPPFLAGS (brew's libomp).
    return ["-Xpreprocessor", "-fopenmp"] if sys.platform == "darwin" else ["-fopenmp"]


def _link_flags() -> list[str]:
    if sys.platform == "darwin":  # the OpenMP symbols are looked up when loaded
        return ["-dynamiclib", "-undefined", "dynamic_lookup"]
    return ["-shared"]


def _run(command: list[str]) -> str | None:
    """Run a compiler command; the error (last lines of its output) or None."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        return f"{shlex.join(command)}: {error}"
    if done.returncode:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return f"{shlex.join(command)} failed ({done.returncode}): {tail}"
    return None


def environment_flags(*values: str) -> list[str]:
    """``$CPPFLAGS``/``$CFLAGS`` without what would change a variant's code or numerics.

    Instruction-set flags (``-m...``, ``-march``, ``-mcpu``) would put, say, AVX2 code
    into the portable library (which also holds the CPU probe), and fast-math flags would
    break the kernel's fixed FMA order (labels) and NaN handling; each variant sets its
    own. Everything else (include paths, ``-g``, warnings, ``-isystem``...) is kept.
    """
    dropped = ("-m", "-Ofast", "-ffast-math", "-funsafe-math-optimizations",
               "-fassociative-math", "-freciprocal-math", "-ffinite-math-only")
    kept = ("-mmacosx-version-min",)  # a deployment target, not an instruction set
    return [flag for value in values for flag in shlex.split(value)
            if flag.startswith(kept) or not flag.startswith(dropped)]


def _compile_variant(compiler: list[str], variant: str, machine: str, source: Path,
                     scratch: Path, out_dir: Path) -> str | None:
    """Build one variant into ``out_dir`` (atomically); the error or None."""
    env_flags = environment_flags(os.environ.get("CPPFLAGS", ""), os.environ.get("CFLAGS", ""))
    arch = shlex.split(os.environ.get("ARCHFLAGS", "")) if sys.platform == "darwin" else []
    choices = X86_FLAGS[variant] if machine == "x86_64" else ((),)
    obj, library = scratch / f"{variant}.o", scratch / library_name(variant)
    error = None
    for isa in choices:  # the first flag set the compiler takes
        error = _run([*compiler, *arch, *env_flags, *COMMON_FLAGS, *isa, *_openmp_flags(),
                      "-c", str(source), "-o", str(obj)])
        if error is None:
            break
    if error is None:
        libm = [] if sys.platform == "darwin" else ["-lm"]
        error = _run([*compiler, *arch, *_link_flags(), str(obj), "-o", str(library), *libm,
                      *shlex.split(os.environ.get("LDFLAGS", ""))])
    if error is None:
        os.replace(library, out_dir / library_name(variant))  # a loader never sees half
    return error


def build(out_dir: Path = HERE, *, mode: str | None = None, source: Path = SOURCE,
          compiler: list[str] | None = None, log=None) -> Result:
    """Compile the variants for this machine into ``out_dir`` and write the info file.

    Never raises for a missing compiler or a failed compile unless ``mode`` is
    ``'require'``: the result (and the info file) then says what failed, and the kernel
    is unavailable where nothing was built (torchmeans runs its torch path).

    Parameters
    ----------
    out_dir : Path
        Where the libraries and ``_build_info.json`` go (created if needed).
    mode : str, optional
        ``'auto'``, ``'require'`` or ``'0'``; default ``$TORCHMEANS_NATIVE_BUILD`` or auto.
    source : Path
        The C source.
    compiler : list of str, optional
        The compiler command; default :func:`find_compiler`.
    log : file, optional
        Where progress and warnings go (default ``sys.stderr``).
    """
    from concurrent.futures import ThreadPoolExecutor

    log = sys.stderr if log is None else log
    mode = (os.environ.get("TORCHMEANS_NATIVE_BUILD", "auto") if mode is None else mode)
    mode = mode.strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"TORCHMEANS_NATIVE_BUILD must be one of {', '.join(MODES)}, "
                         f"not {mode!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(library_name("*")):  # never load an older build's variant
        stale.unlink()
    result, description, machine = Result(), None, platform.machine()
    try:
        if mode == "0":
            raise OSError("skipped: TORCHMEANS_NATIVE_BUILD=0")
        if not (sys.platform.startswith("linux") or sys.platform == "darwin"):
            raise OSError(f"the native kernel is built on Linux and macOS only "
                          f"(this is {sys.platform})")
        machine = target_machine()
        compiler = find_compiler() if compiler is None else compiler
        description = _describe(compiler)
        variants = variants_for(machine)
        print(f"torchmeans: compiling the native kernel ({', '.join(variants)}) with "
              f"{description}", file=log)
        # (the scratch folder inside out_dir: os.replace cannot cross file systems)
        with tempfile.TemporaryDirectory(prefix=".torchmeans-native-", dir=out_dir) as scratch, \
                ThreadPoolExecutor(max_workers=len(variants)) as pool:
            errors = dict(zip(variants, pool.map(
                lambda v: _compile_variant(compiler, v, machine, source, Path(scratch), out_dir),
                variants), strict=True))
        result.variants = [v for v in variants if errors[v] is None]
        result.failed = {v: e for v, e in errors.items() if e is not None}
        if "portable" in result.failed:  # holds the CPU probe: nothing loads without it
            result.error = f"the portable variant failed: {result.failed['portable']}"
        elif not result.variants:
            result.error = "every variant failed to compile"
    except OSError as error:
        result.error = str(error)
    if result.error:
        for built in result.variants:
            (out_dir / library_name(built)).unlink(missing_ok=True)
        result.variants = []
    info = {"variants": result.variants, "failed": result.failed, "error": result.error,
            "machine": machine, "platform": sys.platform, "compiler": description,
            "source_sha256": source_digest(source)}
    info_path = out_dir / INFO_NAME
    scratch_info = info_path.with_suffix(".tmp")
    scratch_info.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(scratch_info, info_path)
    result.files = [out_dir / library_name(v) for v in result.variants] + [info_path]
    if result.error or result.failed:
        print(f"WARNING: torchmeans: {result.summary()}", file=log)
        if mode == "require":
            raise RuntimeError(f"TORCHMEANS_NATIVE_BUILD=require: {result.summary()}")
    else:
        print(f"torchmeans: {result.summary()}", file=log)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: build in place (or into ``--out``); status 1 if nothing was built."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: in place)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="auto, require or 0 (default: $TORCHMEANS_NATIVE_BUILD or auto)")
    args = parser.parse_args(argv)
    try:
        result = build(args.out, mode=args.mode)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if result.variants else 1


if __name__ == "__main__":
    sys.exit(main())
