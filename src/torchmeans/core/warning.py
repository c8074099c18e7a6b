"""Warnings attributed to the user's code, whatever depth inside torchmeans they come from."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent.parent)  # the torchmeans package


def warn(message: str, category: type[Warning]) -> None:
    """Emit ``message`` as the first caller outside torchmeans would, not the frame here.

    A fixed ``stacklevel`` breaks when a call goes through a decorator or another layer;
    this points at the user's line, so ``pytest.warns``, ``-W`` filters on modules and the
    printed location all name the caller.
    """
    frame, level = sys._getframe(1), 2  # stacklevel 2: the caller of this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
