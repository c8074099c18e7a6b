"""Execution settings: how and where a fit runs, apart from what it computes.

The estimators keep scikit-learn's parameters and torchmeans' own as constructor
arguments (``get_params``, ``clone`` and model files see them all); inside, the settings
that change only *how* a result is computed -- the device, the backend, the precision of
the distance products, the working-memory budget and the determinism of the sums -- travel
as one validated :class:`ExecutionOptions`, never as loose arguments. A checkpoint file is
not a setting of the model at all: it is an argument of ``fit`` (two fits, e.g. the parallel
fits of a ``GridSearchCV``, never share one by being clones of each other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from torchmeans.core.validation import resolve_device, validate_parameters

__all__ = ["EXECUTION_SETTINGS", "ExecutionOptions"]

EXECUTION_SETTINGS = ("device", "backend", "precision", "chunk_bytes", "deterministic")
"""The parameters gathered in :class:`ExecutionOptions`."""


@dataclass(frozen=True)
class ExecutionOptions:
    """How a fit or an assignment runs; the same result up to rounding whatever the values.

    Parameters
    ----------
    device : str, torch.device or None
        Where to compute (None: the input tensor's device, else CUDA when available,
        else the CPU).
    backend : {'auto', 'torch', 'native', 'triton'}
        How passes run (:mod:`torchmeans.backends`).
    precision : {'exact', 'fast'}
        Certified low-precision distance products (:mod:`torchmeans.core.precision`).
    chunk_bytes : int or None
        Working-memory budget of one chunk's temporaries (None: the device's default).
    deterministic : bool
        Bit-identical repeated fits on accelerators too (:mod:`torchmeans.core.accumulate`).
    """

    device: str | torch.device | None = None
    backend: str = "auto"
    precision: str = "exact"
    chunk_bytes: int | None = None
    deterministic: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, validated: bool = False
                    ) -> ExecutionOptions:
        """Return the options among ``params`` (an estimator's); absent ones take defaults.

        The values are checked against the parameter table
        (:data:`~torchmeans.core.validation.PARAMETER_CONSTRAINTS`) unless ``validated``
        says the caller has just done so.
        """
        options = cls(**{name: params[name] for name in EXECUTION_SETTINGS if name in params})
        if not validated:
            validate_parameters(asdict(options), "ExecutionOptions")
        return options

    def compute_device(self, X: Any = None) -> torch.device:
        """Return the device to compute on for input ``X`` (checked to exist here)."""
        return resolve_device(self.device, X)
