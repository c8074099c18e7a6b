"""Checkpoints of a running fit: written atomically, resumed to the same result.

A checkpoint holds all the next Lloyd iteration depends on, so a resumed fit continues
exactly where the interrupted one stood: the ``n_init`` run in progress, its iteration,
centers, labels, float64 running sums and weights (and whether the next pass is
incremental), the history, the generator state after that run's seeding, the best finished
run, and a fingerprint of data and parameters (another fit's checkpoint is refused). It is
a safetensors file with JSON metadata and a content checksum, as model files
(:mod:`torchmeans.io.model_files`), written to a temporary file and renamed over the old
one, so a crash (even ``SIGKILL``) never leaves half a checkpoint.

A checkpoint is untrusted input: its checksum is verified and every tensor and field is
checked against the resuming fit (shapes, dtypes, label range, iteration counts, generator
state) before it reaches the Lloyd loop or the native kernel (which indexes the sums by the
stored labels); failures raise :class:`CheckpointError` naming the file and the field.
Checkpoints without a checksum (older torchmeans) are refused: at most a restart is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmeans.core.lloyd import IterationStats, RunState
from torchmeans.data.base import accumulation_dtype, supports_float64
from torchmeans.io.model_files import (
    Fields,
    ModelFileError,
    content_checksum,
    import_safetensors,
    read_safetensors,
    write_atomically,
)

__all__ = ["BestRun", "CheckpointError", "Checkpointer", "Resumed", "data_fingerprint"]

FORMAT = "torchmeans.checkpoint"

_DATA_KEYS = {
    "rows": "the rows, their values or their order",
    "weights": "the sample weights, their values or their order",
    "dtype": "the data's dtype",
    "n_samples": "the number of samples",
    "n_features": "the number of features",
    "device": "the device type",
}
"""What each data entry of a fingerprint stands for (named when a checkpoint is refused)."""


class CheckpointError(ModelFileError):
    """A checkpoint is damaged, or was written by another fit: nothing of it is used."""


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
        What the fit is (:func:`data_fingerprint`: parameters, data shape, dtype and
        checksums): a checkpoint whose fingerprint differs is refused on resume. Its
        ``n_clusters``, ``n_init``, ``max_iter``, ``n_samples`` (``lloyd_rows`` when
        Lloyd runs on a subsample: ``max_samples_per_cluster``), ``n_features`` and
        ``dtype`` bound what a checkpoint may hold.
    """

    def __init__(self, path: str | os.PathLike, every: int, fingerprint: dict[str, Any]) -> None:
        import_safetensors()  # fail now, not after the first iterations, without the io extra
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
        metadata["checksum"] = content_checksum(tensors, metadata)
        write_atomically(self.path, tensors, metadata)
        self.writes += 1

    def load(self, device: torch.device) -> Resumed | None:
        """Read the checkpoint (None when there is none), checked field by field.

        Raises
        ------
        CheckpointError
            The file is damaged (checksum, format, any field), or was written by
            another fit (the fields of the fingerprint that differ are named).
        """
        if not self.path.exists():
            return None
        tensors, metadata = read_safetensors(self.path, "checkpoint", CheckpointError)
        fields = Fields(self.path, metadata, CheckpointError)
        fields.check(metadata.get("format") == FORMAT, "format", "not a torchmeans checkpoint")
        fields.verify_checksum(tensors, required=True)
        self._check_fingerprint(fields)
        return _checked_state(fields, tensors, self.fingerprint, device)

    def _check_fingerprint(self, fields: Fields) -> None:
        saved = fields.json("fingerprint")
        fields.check(isinstance(saved, dict), "fingerprint", "must be a JSON object")
        ours = json.loads(json.dumps(self.fingerprint, sort_keys=True))
        changed = sorted(key for key in set(saved) | set(ours) if saved.get(key) != ours.get(key))
        if changed:
            what = "; ".join(_DATA_KEYS[key] for key in changed if key in _DATA_KEYS)
            names = [key[:40] for key in changed[:10]]  # the file's keys may be anything
            raise CheckpointError(f"{self.path} was written by another fit (different "
                                  f"{names}{f': {what}' if what else ''}); delete it or "
                                  "fit without resume=True")


def _checked_state(fields: Fields, tensors: dict[str, Tensor], fingerprint: dict[str, Any],
                   device: torch.device) -> Resumed:
    """Return the checkpoint's state, every tensor and field checked against the resuming fit."""
    k, d = int(fingerprint["n_clusters"]), int(fingerprint["n_features"])
    # The run's labels are of the rows Lloyd runs on (a subsample: lloyd_rows).
    n = int(fingerprint.get("lloyd_rows", fingerprint["n_samples"]))
    n_init = int(fingerprint["n_init"])
    max_iter = int(fingerprint["max_iter"])
    acc_dtype = accumulation_dtype(getattr(torch, fingerprint["dtype"]))
    # as core.lloyd.lloyd keeps its running totals
    total_dtype = torch.float64 if supports_float64(device) else acc_dtype
    run = fields.integer("run", 0, n_init - 1)
    iteration = fields.integer("iteration", 1, max_iter)
    incremental = fields.json("incremental")
    fields.check(isinstance(incremental, bool), "incremental", "must be true or false")
    history = _checked_history(fields, fields.json("history"), "history", iteration, k)
    centers = fields.tensor(tensors, "centers", [acc_dtype], (k, d), finite=True)
    labels = fields.tensor(tensors, "labels", [torch.int64], (n,))
    # The native kernel indexes the sums by these labels (incremental passes).
    fields.check(n == 0 or 0 <= int(labels.min()) <= int(labels.max()) < k, "tensor 'labels'",
                 f"values outside 0..{k - 1}")
    sums = fields.tensor(tensors, "sums", [total_dtype], (k, d), finite=True)
    weights = fields.tensor(tensors, "weights", [total_dtype], (k,), finite=True)
    fields.check(bool((weights >= 0).all()), "tensor 'weights'", "negative weights")
    generator_state = tensors.get("generator_state")
    fields.check(generator_state is not None, "tensor 'generator_state'", "missing")
    fields.check(generator_state.dtype == torch.uint8 and generator_state.dim() == 1,
                 "tensor 'generator_state'", f"must be a 1-d uint8 tensor, got "
                 f"{generator_state.dtype} of shape {tuple(generator_state.shape)}")
    try:  # on a scratch generator: the fit's own is set only once everything passed
        torch.Generator(device=device).set_state(generator_state)
    except (RuntimeError, TypeError, ValueError) as error:
        raise fields.fail("tensor 'generator_state'",
                          f"not a state of a {device.type} generator ({error})") from error
    best = _checked_best(fields, tensors, run, max_iter, k, d, acc_dtype)
    fields.only_tensors(tensors, ["centers", "labels", "sums", "weights", "generator_state",
                                  *(["best_centers"] if best is not None else [])])
    state = RunState(iteration=iteration, centers=centers.to(device), labels=labels.to(device),
                     sums=sums.to(device), weights=weights.to(device), incremental=incremental,
                     history=history)
    if best is not None:
        best.centers = best.centers.to(device)
    return Resumed(run, state, generator_state, best)


def _checked_best(fields: Fields, tensors: dict[str, Tensor], run: int, max_iter: int, k: int,
                  d: int, acc_dtype: torch.dtype) -> BestRun | None:
    """Return the best finished run: present exactly when the checkpoint's run is not the first."""
    best = fields.json("best")
    if best is None:
        fields.check(run == 0, "best", f"missing, but runs before run {run} have finished")
        return None
    fields.check(run > 0, "best", "present, but no run finished before run 0")
    best = fields.object_value(best, "best", ["inertia", "n_iter", "history"])
    inertia = fields.real_value(best["inertia"], "best.inertia", low=0.0, finite=False)
    n_iter = fields.int_value(best["n_iter"], "best.n_iter", 1, max_iter)
    history = _checked_history(fields, best["history"], "best.history", n_iter, k)
    centers = fields.tensor(tensors, "best_centers", [acc_dtype], (k, d), finite=True)
    return BestRun(centers, inertia, n_iter, history)


def _checked_history(fields: Fields, entries: Any, field: str, length: int,
                     k: int) -> list[IterationStats]:
    """Return ``length`` well-formed :class:`IterationStats`, numbered from 0."""
    fields.check(isinstance(entries, list) and len(entries) == length, field,
                 f"must be a list of {length} iterations")
    history = []
    for index, entry in enumerate(entries):
        where = f"{field}[{index}]"
        fields.check(isinstance(entry, list) and len(entry) == len(IterationStats._fields),
                     where, f"must be a list of {len(IterationStats._fields)} values "
                            f"{list(IterationStats._fields)}")
        history.append(IterationStats(
            fields.int_value(entry[0], f"{where}.iteration", index, index),
            # NaN: not computed (bounded passes compute the inertia only when verbose)
            fields.real_value(entry[1], f"{where}.inertia", low=0.0, finite=False, nan=True),
            fields.real_value(entry[2], f"{where}.center_shift", low=0.0, finite=False),
            fields.int_value(entry[3], f"{where}.n_changed", 0),
            fields.int_value(entry[4], f"{where}.n_empty", 0, k)))
    return history


def data_fingerprint(data: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters plus the data's shape, dtype, device, and checksums of rows and weights.

    ``rows`` is a sha256 of the offset and of the squared norms of the shifted rows in
    row order, ``weights`` one of the sample weights (as float64: the dtype has its own
    entry): other data, the same rows in another order, or other weights fail to match.
    One pass over ``n_samples`` values already in memory: every data kind holds its rows'
    squared norms (the Lloyd loop needs them; streamed data computes them in its
    constructor's pass), so the rows themselves are not read again.
    """
    return {**params, "n_samples": data.n_samples, "n_features": data.n_features,
            "device": data.device.type, "dtype": str(data.dtype).removeprefix("torch."),
            "rows": _digest(data.offset, data.sq_norms),
            "weights": _digest(data.sample_weight.detach().cpu().double())}


def _digest(*tensors: Tensor) -> str:
    """sha256 of the tensors' dtypes and bytes (copied to the CPU)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(str(flat.dtype).encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()[:32]
