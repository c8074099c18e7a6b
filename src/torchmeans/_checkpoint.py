"""Checkpoints of a running fit: written atomically, resumed to the same result.

A checkpoint holds everything the next Lloyd iteration depends on, so a resumed fit
continues exactly where the interrupted one stood: the ``n_init`` run in progress, its
iteration count, centers, labels, the float64 running sums and weights (and whether the
next pass adds only moved rows), the per-iteration history, the random generator's state
after that run's seeding, the best finished run so far, and a fingerprint of the data and
parameters (a checkpoint of another fit is refused). It is a safetensors file with JSON
metadata: loading never runs code. Writes go to a temporary file in the same directory and
are renamed over the old checkpoint, so a crash (even ``SIGKILL``) never leaves a
half-written one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmeans._io import ModelFileError, _safetensors, read_safetensors, write_atomically
from torchmeans._lloyd import IterationStats, RunState

__all__ = ["BestRun", "Checkpointer", "Resumed", "data_fingerprint"]

FORMAT = "torchmeans.checkpoint"


@dataclass
class BestRun:
    """The best finished ``n_init`` run so far (centers in the original space)."""

    centers: Tensor
    inertia: float
    n_iter: int
    history: list[IterationStats]


@dataclass
class Resumed:
    """A loaded checkpoint."""

    run: int
    state: RunState
    generator_state: Tensor
    best: BestRun | None


class Checkpointer:
    """Write the state of a fit to ``path`` every ``every`` iterations; read it back.

    Parameters
    ----------
    path : str or PathLike
        The checkpoint file.
    every : int
        Write after every ``every``-th iteration of a run (and never more often).
    fingerprint : dict
        What the fit is (parameters, data shape and a checksum): a checkpoint whose
        fingerprint differs is refused on resume.
    """

    def __init__(self, path: str | os.PathLike, every: int, fingerprint: dict[str, Any]) -> None:
        _safetensors()  # fail now, not after the first iterations, without the io extra
        self.path = Path(path)
        self.every = every
        self.fingerprint = fingerprint
        self.writes = 0

    def due(self, iteration: int) -> bool:
        """Whether the state after ``iteration`` (0-based) is to be written."""
        return (iteration + 1) % self.every == 0

    def save(self, run: int, state: RunState, generator_state: Tensor,
             best: BestRun | None) -> None:
        """Write the checkpoint atomically (temporary file, then rename)."""
        tensors = {
            "centers": state.centers.detach().cpu().contiguous(),
            "labels": state.labels.detach().cpu().contiguous(),
            "sums": state.sums.detach().cpu().contiguous(),
            "weights": state.weights.detach().cpu().contiguous(),
            "generator_state": generator_state.cpu().contiguous(),
        }
        if best is not None:
            tensors["best_centers"] = best.centers.detach().cpu().contiguous()
        metadata = {
            "format": FORMAT,
            "fingerprint": json.dumps(self.fingerprint, sort_keys=True),
            "run": str(run),
            "iteration": str(state.iteration),
            "incremental": json.dumps(state.incremental),
            "history": json.dumps([list(s) for s in state.history]),
            "best": json.dumps(None if best is None else {
                "inertia": best.inertia, "n_iter": best.n_iter,
                "history": [list(s) for s in best.history]}),
        }
        write_atomically(self.path, tensors, metadata)
        self.writes += 1

    def load(self, device: torch.device) -> Resumed | None:
        """Read the checkpoint (None when there is none); refuse one of another fit."""
        if not self.path.exists():
            return None
        tensors, metadata = read_safetensors(self.path, "checkpoint")
        if metadata.get("format") != FORMAT:
            raise ModelFileError(f"{self.path}: not a torchmeans checkpoint")
        saved = json.loads(metadata.get("fingerprint", "{}"))
        if saved != json.loads(json.dumps(self.fingerprint, sort_keys=True)):
            changed = sorted(k for k in set(saved) | set(self.fingerprint)
                             if saved.get(k) != self.fingerprint.get(k))
            raise ValueError(f"{self.path} was written by another fit (different {changed}); "
                             "delete it or fit without resume=True")
        try:
            best_meta = json.loads(metadata["best"])
            state = RunState(
                iteration=int(metadata["iteration"]),
                centers=tensors["centers"].to(device),
                labels=tensors["labels"].to(device),
                sums=tensors["sums"].to(device),
                weights=tensors["weights"].to(device),
                incremental=json.loads(metadata["incremental"]),
                history=[IterationStats(*s) for s in json.loads(metadata["history"])],
            )
            best = None if best_meta is None else BestRun(
                tensors["best_centers"].to(device), float(best_meta["inertia"]),
                int(best_meta["n_iter"]), [IterationStats(*s) for s in best_meta["history"]])
            return Resumed(int(metadata["run"]), state, tensors["generator_state"], best)
        except (KeyError, ValueError, TypeError) as error:
            raise ModelFileError(f"{self.path}: damaged checkpoint ({error})") from error


def data_fingerprint(data: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters plus the data's shape, device, and cheap checksums of rows and weights.

    The checksums are the sums of the offset, of the squared norms and of the weights and
    their squares (in float64): another data set or other weights fail to match.
    """
    def total(values: Tensor) -> float:
        wide = values.double() if values.device.type != "mps" else values
        return float(wide.sum())

    weight = data.sample_weight
    return {**params, "n_samples": data.n_samples, "n_features": data.n_features,
            "device": data.device.type,
            "rows": [round(total(data.offset), 6), round(total(data.sq_norms), 3)],
            "weights": [round(total(weight), 6), round(total(weight.square()), 6)]}
