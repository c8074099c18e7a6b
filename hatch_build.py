"""Hatchling build hook: compile the native kernel's variants when a wheel is built.

The compiling is ``src/torchmeans/backends/native/build.py`` (standard library only,
loaded here by path; ``make native`` runs the same code). Editable installs build the
libraries in place, next to ``kernel.py``; other wheels build them in a scratch folder and
include them. When something compiled, the wheel is tagged ``py3-none-<platform>``: the
libraries are loaded with ctypes and have no Python ABI. With no compiler, or a failed
compile, the build still succeeds with a warning: the wheel holds only the record of why
(``_build_info.json``), and torchmeans runs its torch path. ``TORCHMEANS_NATIVE_BUILD``:
``auto`` (default), ``require`` (fail instead: release wheels) or ``0`` (compile nothing).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE_DIR = "torchmeans/backends/native"


def _load_build_module(root: Path) -> Any:
    path = root / "src" / PACKAGE_DIR / "build.py"
    spec = importlib.util.spec_from_file_location("_torchmeans_native_build", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def _platform_tag(macos_max_compat: bool) -> str:
    """Return the platform part of the tag that hatchling's ``infer_tag`` gives."""
    from packaging.tags import sys_tags

    tag = next(t for t in sys_tags()
               if "manylinux" not in t.platform and "musllinux" not in t.platform)
    if sys.platform == "darwin":
        from hatchling.builders.macos import process_macos_plat_tag

        return process_macos_plat_tag(tag.platform, compat=macos_max_compat)
    return tag.platform


class NativeKernelHook(BuildHookInterface):
    """Compile ``lloyd_kernel.c`` into the wheel (or in place for editable installs)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Build the variants; include them, and tag the wheel, if any was built."""
        root = Path(self.root)
        build = _load_build_module(root)
        self._scratch = None
        if version == "editable":
            out_dir = root / "src" / PACKAGE_DIR  # found there through the editable path
        else:
            self._scratch = tempfile.mkdtemp(prefix="torchmeans-wheel-")
            out_dir = Path(self._scratch)
        result = build.build(out_dir, source=root / "src" / PACKAGE_DIR / "lloyd_kernel.c",
                             log=sys.stderr)
        if version != "editable":  # gitignored in the tree: include them explicitly
            for path in result.files:
                build_data["force_include"][str(path)] = f"{PACKAGE_DIR}/{path.name}"
        if result.variants:
            build_data["pure_python"] = False
            compat = getattr(self.build_config, "macos_max_compat", False)
            build_data["tag"] = f"py3-none-{_platform_tag(compat)}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the scratch folder."""
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
