"""Hostile files: damaged or forged model files and checkpoints, and bad native-kernel calls.

Whatever a file holds, loading it gives a clean :class:`ModelFileError` (checkpoints: a
:class:`CheckpointError`) or a valid result: never another exception, a crash or a hang.
Loading (parsing and checking, no native code) runs in this process under hypothesis;
whatever reaches the native kernel (resuming a fit from a checkpoint, the kernel's own
boundary checks) runs in a subprocess, so that a crash (SIGSEGV, SIGABRT) fails the test
instead of killing pytest.

"Forged" files carry a valid checksum (recomputed after the edit): they test the field
checks behind the checksum, which a damaged file never reaches.
"""

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

import torchmeans
from torchmeans import KMeans, ModelFileError
from torchmeans.backends.native import backend as native_backend_module
from torchmeans.backends.native import kernel as _native
from torchmeans.io.checkpoint import Checkpointer, CheckpointError
from torchmeans.io.model_files import content_checksum

FIT = {"n_clusters": 3, "n_init": 2, "init": "random", "random_state": 0, "max_iter": 50,
       "tol": 0.0}
"""A small fit whose last checkpoint is mid-run 1 (a best run, incremental passes)."""

SUBPROCESS_TIMEOUT = 300
"""Seconds a subprocess may take before the test fails as a hang (generous: shared CPUs)."""



@dataclass
class Files:
    root: Path
    X: np.ndarray
    model: bytes
    checkpoint: bytes
    fingerprint: dict


def parts(path):
    """The tensors and metadata of a safetensors file."""
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}, handle.metadata()  # noqa: SIM118


def forge(path, tensors, metadata):
    """Write a file with a valid checksum for what it now holds."""
    metadata = dict(metadata)
    metadata["checksum"] = content_checksum(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    X = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    X[:100] += 6
    checkpoint = root / "checkpoint.safetensors"
    with pytest.MonkeyPatch.context() as patch:  # mid-run checkpoints: the loop of passes
        patch.setattr(native_backend_module, "SMALL_RUN_MAX_WORK", 0)
        km = KMeans(**FIT).fit(X, checkpoint=checkpoint, checkpoint_every=1)
    model = km.save(root / "model.safetensors")
    np.save(root / "X.npy", X)
    _, metadata = parts(checkpoint)
    assert metadata["run"] == "1"
    assert metadata["incremental"] == "true"
    assert int(metadata["iteration"]) < FIT["max_iter"]  # a resume runs native passes
    return Files(root, X, model.read_bytes(), checkpoint.read_bytes(),
                 json.loads(metadata["fingerprint"]))


def load_checkpoint(files, path):
    return Checkpointer(path, 1, files.fingerprint).load(torch.device("cpu"))


def attempt(load, path, refusal):
    """Return ``(result, None)``, or ``(None, error)`` when ``load(path)`` raises ``refusal``.

    Any other exception propagates (and fails the test).
    """
    try:
        return load(path), None
    except refusal as error:
        return None, error


def run_script(code, *args):
    """Run ``code`` in a fresh interpreter; fail on a crash, a hang or a non-zero exit."""
    try:
        done = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                              capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the subprocess hung (no result after {SUBPROCESS_TIMEOUT} s): "
                    f"{error.stdout!r}")
    assert done.returncode == 0, (f"the subprocess died with return code {done.returncode} "
                                  f"(negative: a signal)\nstdout:\n{done.stdout[-3000:]}\n"
                                  f"stderr:\n{done.stderr[-3000:]}")
    return done.stdout


# -- damaged files: truncations and byte flips --------------------------------------------


def damaged(data, original):
    """Strategy: ``original`` truncated, or with a few bytes flipped (mostly in the header)."""
    header = 8 + int.from_bytes(original[:8], "little")
    position = st.one_of(st.integers(0, header - 1), st.integers(0, len(original) - 1))
    if data.draw(st.booleans(), label="truncate"):
        return original[: data.draw(st.integers(0, len(original) - 1), label="length")]
    changed = bytearray(original)
    for at, mask in data.draw(st.lists(st.tuples(position, st.integers(1, 255)), min_size=1,
                                       max_size=4), label="flips"):
        changed[at] ^= mask
    return bytes(changed)


@settings(max_examples=60)
@given(data=st.data())
def test_damaged_model_files_are_refused(files, data):
    path = files.root / "damaged_model.safetensors"
    path.write_bytes(damaged(data, files.model))
    loaded, error = attempt(torchmeans.load, path, ModelFileError)
    if error is not None:
        assert str(path) in str(error)
        return
    # Loaded: the damage was harmless (e.g. header padding turned into other whitespace).
    original = torchmeans.load(files.root / "model.safetensors")
    np.testing.assert_array_equal(loaded.cluster_centers_, original.cluster_centers_)
    assert torch.equal(loaded._offset, original._offset)
    assert loaded.get_params() == original.get_params()


@settings(max_examples=60)
@given(data=st.data())
def test_damaged_checkpoints_are_refused(files, data):
    path = files.root / "damaged_checkpoint.safetensors"
    path.write_bytes(damaged(data, files.checkpoint))
    resumed, error = attempt(lambda path: load_checkpoint(files, path), path, CheckpointError)
    if error is not None:
        assert str(path) in str(error)
        return
    original = load_checkpoint(files, files.root / "checkpoint.safetensors")
    assert torch.equal(resumed.state.labels, original.state.labels)
    assert torch.equal(resumed.state.sums, original.state.sums)
    assert resumed.state.history == original.state.history


# -- forged metadata: any JSON in any field -----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10)
raw_texts = st.sampled_from(["", "[" * 5000 + "]" * 5000, "{" * 3000, "1e400", "-1e400",
                             "NaN", "9" * 5000, "-0", "null", "true", "\x00", "3.0"])
field_texts = json_values.map(json.dumps) | raw_texts


def forged_metadata(data, metadata, nested):
    """Strategy: ``metadata`` with one field (or one key of a JSON field) replaced or removed."""
    metadata = dict(metadata)
    field = data.draw(st.sampled_from(sorted(set(metadata) - {"checksum"})), label="field")
    if field in nested and data.draw(st.booleans(), label="nested"):
        inner = json.loads(metadata[field])
        if isinstance(inner, dict) and inner:
            key = data.draw(st.sampled_from(sorted(inner)), label="key")
            if data.draw(st.booleans(), label="drop"):
                del inner[key]
            else:
                inner[key] = data.draw(json_values, label="value")
        elif isinstance(inner, list) and inner:
            index = data.draw(st.integers(0, len(inner) - 1), label="index")
            inner[index] = data.draw(json_values, label="value")
        metadata[field] = json.dumps(inner)
    elif data.draw(st.integers(0, 9), label="drop field") == 0:
        del metadata[field]
    else:
        metadata[field] = data.draw(field_texts, label="text")
    return metadata


@given(data=st.data())
def test_forged_model_metadata_gives_a_model_file_error(files, data):
    source = files.root / "model.safetensors"
    tensors, metadata = parts(source)
    path = forge(files.root / "forged_model.safetensors", tensors,
                 forged_metadata(data, metadata, nested={"params", "summary"}))
    loaded, error = attempt(torchmeans.load, path, ModelFileError)
    if error is not None:
        assert str(path) in str(error)
        return
    assert loaded.cluster_centers_.shape == (3, 3)
    assert loaded.n_clusters == 3
    assert loaded.metric == "euclidean"


@given(data=st.data())
def test_forged_checkpoint_metadata_gives_a_checkpoint_error(files, data):
    tensors, metadata = parts(files.root / "checkpoint.safetensors")
    path = forge(files.root / "forged_checkpoint.safetensors", tensors,
                 forged_metadata(data, metadata, nested={"best", "history", "fingerprint"}))
    resumed, error = attempt(lambda path: load_checkpoint(files, path), path, CheckpointError)
    if error is not None:
        assert str(path) in str(error)
        return
    assert 0 <= resumed.run < 2
    assert 1 <= resumed.state.iteration <= FIT["max_iter"]
    assert len(resumed.state.history) == resumed.state.iteration
    assert isinstance(resumed.state.incremental, bool)


TENSOR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.int32,
                 torch.uint8, torch.bool]


@given(data=st.data())
def test_forged_checkpoint_tensors_give_a_checkpoint_error(files, data):
    tensors, metadata = parts(files.root / "checkpoint.safetensors")
    name = data.draw(st.sampled_from([*sorted(tensors), "extra"]), label="tensor")
    original = tensors.get(name, torch.zeros(1))
    action = data.draw(st.sampled_from(["values", "shape", "dtype", "drop"]), label="action")
    if action == "drop":
        tensors.pop(name, None)
    elif action == "dtype":
        tensors[name] = original.to(data.draw(st.sampled_from(TENSOR_DTYPES), label="dtype"))
    elif action == "shape":
        shape = data.draw(st.lists(st.integers(0, 5), max_size=3), label="shape")
        tensors[name] = torch.zeros(shape, dtype=original.dtype)
    elif original.dtype == torch.int64:  # labels: any values, out-of-range ones included
        values = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-1, 3),
                                    min_size=1, max_size=5), label="values")
        tensors[name] = original.clone()
        tensors[name][: len(values)] = torch.tensor(values)
    elif original.is_floating_point():
        value = data.draw(st.floats(), label="value")
        tensors[name] = original.clone().reshape(-1)
        tensors[name][0] = value
        tensors[name] = tensors[name].reshape(original.shape)
    else:  # the generator state's bytes
        at = data.draw(st.integers(0, original.numel() - 1), label="at")
        tensors[name] = original.clone()
        tensors[name][at] ^= 0xFF
    path = forge(files.root / "forged_tensors.safetensors", tensors, metadata)
    resumed, error = attempt(lambda path: load_checkpoint(files, path), path, CheckpointError)
    if error is not None:
        assert str(path) in str(error)
        return
    labels = resumed.state.labels
    assert labels.dtype == torch.int64
    assert labels.shape == (300,)
    assert int(labels.min()) >= 0
    assert int(labels.max()) < 3
    assert resumed.state.centers.shape == resumed.state.sums.shape == (3, 3)
    assert bool(torch.isfinite(resumed.state.centers).all())


# -- regressions ------------------------------------------------------------------------------


def test_damaged_metadata_types_give_model_file_errors(files):
    """Once a TypeError, an OverflowError and a RecursionError: now ModelFileErrors."""
    tensors, metadata = parts(files.root / "model.safetensors")
    summary = json.loads(metadata["summary"])
    params = json.loads(metadata["params"])
    cases = {
        "summary.n_iter": {"summary": json.dumps({**summary, "n_iter": 1e400})},
        "summary.inertia": {"summary": json.dumps({**summary, "inertia": [1.0]})},
        "params": {"params": "[" * 100_000},
        "params.n_clusters": {"params": json.dumps({**params, "n_clusters": [3]})},
        "feature_names_in": {"feature_names_in": "5"},
    }
    for field, change in cases.items():
        path = forge(files.root / "types.safetensors", tensors, {**metadata, **change})
        with pytest.raises(ModelFileError, match=re.escape(f"{path}: {field}:")):
            torchmeans.load(path)


def test_damaged_checkpoint_fields_name_the_field(files):
    tensors, metadata = parts(files.root / "checkpoint.safetensors")
    history = json.loads(metadata["history"])
    cases = [
        ({"run": "2"}, {}, "run: must be <= 1"),
        ({"iteration": "51"}, {}, "iteration: must be <= 50"),
        ({"iteration": "0"}, {}, "iteration: must be >= 1"),
        ({"incremental": "1"}, {}, "incremental: must be true or false"),
        ({"history": json.dumps(history[:-1])}, {}, "history: must be a list of"),
        ({"history": json.dumps([[0, 1, 1, 1, 9], *history[1:]])}, {}, r"history\[0\].n_empty"),
        ({"best": "null"}, {}, "best: missing"),
        ({"format": "torchmeans.KMeans"}, {}, "format: not a torchmeans checkpoint"),
        ({}, {"labels": torch.full((300,), 3)}, "tensor 'labels': values outside 0..2"),
        ({}, {"labels": torch.zeros(300, dtype=torch.int32)}, "tensor 'labels': dtype"),
        ({}, {"centers": tensors["centers"].double()}, "tensor 'centers': dtype"),
        ({}, {"sums": tensors["sums"][:2]}, "tensor 'sums': shape mismatch"),
        ({}, {"weights": -tensors["weights"]}, "tensor 'weights': negative"),
        ({}, {"generator_state": tensors["generator_state"][:100]}, "generator_state"),
        ({}, {"best_centers": tensors["best_centers"] * np.inf}, "best_centers': holds NaN"),
    ]
    for change, tensor_change, message in cases:
        path = forge(files.root / "fields.safetensors", {**tensors, **tensor_change},
                     {**metadata, **change})
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(files, path)
    path = files.root / "unsigned.safetensors"
    save_file(tensors, str(path), metadata={k: v for k, v in metadata.items() if k != "checksum"})
    with pytest.raises(CheckpointError, match="checksum: missing"):
        load_checkpoint(files, path)


NATIVE_CHECKS = r'''
import json, sys, traceback
import numpy as np, torch
from safetensors import safe_open
from safetensors.torch import save_file
import torchmeans
from torchmeans.io.model_files import content_checksum
from torchmeans.backends.native import kernel as _native

root = sys.argv[1]
X = np.load(f"{root}/X.npy")
results = {}

def check(name, function):
    print(name, flush=True)  # the last name printed before a crash names the culprit
    try:
        function()
        results[name] = "ok"
    except Exception as error:
        results[name] = f"{type(error).__name__}: {error}"

def forged_resume(labels):
    def resume():
        with safe_open(f"{root}/checkpoint.safetensors", framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            metadata = handle.metadata()
        tensors["labels"] = labels(tensors["labels"])
        metadata["checksum"] = content_checksum(tensors, metadata)
        path = f"{root}/resume.safetensors"
        save_file(tensors, path, metadata=metadata)
        km = torchmeans.KMeans(**FIT).fit(X, checkpoint=path, checkpoint_every=1, resume=True)
        assert 0 <= km.labels_.min() and km.labels_.max() < 3
    return resume

def at(index, value):
    def change(labels):
        labels = labels.clone()
        labels[index] = value
        return labels
    return change

check("resume, label 10**9", forged_resume(at(5, 10**9)))
check("resume, label -1", forged_resume(at(0, -1)))
check("resume, label k", forged_resume(at(-1, 3)))
check("resume, labels shuffled", forged_resume(lambda labels: labels.flip(0)))

x = torch.randn(40, 3)
centers = torch.randn(4, 3)
norms = centers.square().sum(1)
labels = torch.zeros(40, dtype=torch.int64)
accumulators = _native.new_accumulators(4, 3)

def bad(labels):
    labels = labels.clone()
    labels[7] = 4
    return labels

def direct(**changes):
    args = dict(x=x, centers=centers, sq_norms=norms, weight=None, labels=labels.clone(),
                accumulators=accumulators.clone(), incremental=True)
    args.update(changes)
    return lambda: _native.lloyd_direct(**args)

def step(**changes):
    scores = norms - 2 * x @ centers.T
    args = dict(scores=scores, x=x, weight=None, labels=labels.clone(),
                accumulators=accumulators.clone(), transposed=False, incremental=True)
    args.update(changes)
    return lambda: _native.lloyd_step(**args)

check("direct, valid", direct())
check("direct, incremental label k", direct(labels=bad(labels)))
check("direct, incremental label -1", direct(labels=torch.full((40,), -1)))
check("direct, labels only: any previous labels", direct(
    labels=torch.full((40,), 2**62), accumulators=None, incremental=False))
check("direct, no centers", direct(centers=centers[:0], sq_norms=norms[:0]))
check("direct, meta device", direct(x=x.to("meta")))
check("direct, int rows", direct(x=x.long()))
check("direct, short weight", direct(weight=torch.ones(39)))
check("direct, narrow accumulators", direct(accumulators=accumulators[:, :-1].contiguous()))
check("direct, no accumulator rows", direct(accumulators=accumulators[:0]))
check("step, valid", step())
check("step, incremental label k", step(labels=bad(labels)))
check("step, 1-d scores", step(scores=torch.zeros(160)))
check("step, scores of another k", step(scores=torch.zeros(40, 5)))
check("step, strided labels", step(labels=torch.zeros(80, dtype=torch.int64)[::2]))
check("distances, label k", lambda: _native.sq_distances_to(x, centers, bad(labels)))
check("distances, meta labels", lambda: _native.sq_distances_to(
    x, centers, labels.to("meta")))

def elkan(**changes):
    args = dict(x=x, row_sq_norms=x.square().sum(1), margin=torch.zeros(40), centers=centers,
                center_sq_norms=norms, drift=torch.zeros(4), half_gaps=torch.zeros(4),
                upper=torch.zeros(40), lower=torch.zeros(40, 4), labels=labels.clone())
    args.update(changes)
    return lambda: _native.elkan_pass(**args)

check("elkan, valid", elkan())
check("elkan, label k", elkan(labels=bad(labels)))
check("elkan, no centers", elkan(centers=centers[:0], center_sq_norms=norms[:0],
                                 drift=torch.zeros(0), half_gaps=torch.zeros(0),
                                 lower=torch.zeros(40, 0)))
if _native.tiled_available():
    rows64 = torch.randn(50, 20, dtype=torch.float64)
    pool = rows64[:10].contiguous()
    def seeding(weight, n_trials=2, max_steps=3):
        def run():
            tiled = _native.TiledRows(rows64, weight)
            closest = tiled.padded(torch.full((50,), 1e9, dtype=torch.float64))
            return tiled.seeding_steps(closest, pool, pool.square().sum(1),
                                       torch.full((10,), 1e9, dtype=torch.float64),
                                       torch.zeros(10, dtype=torch.float64), n_trials,
                                       max_steps).tolist()
        return run
    winners = {}
    def same_winners():
        winners["float32 weight"] = seeding(torch.ones(50))()  # float32 weights, float64 rows
        assert winners["float32 weight"] == seeding(torch.ones(50, dtype=torch.float64))()
    check("seeding, float32 weights of float64 rows", same_winners)
    check("seeding, huge n_trials", seeding(None, n_trials=2**61))
    check("seeding, huge max_steps", seeding(None, max_steps=2**62))
    check("seeding, short weight", seeding(torch.ones(49, dtype=torch.float64)))
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def native_report(files):
    """Run the native checks in one subprocess; return ``{check: 'ok' or 'Error: message'}``."""
    stdout = run_script(f"FIT = {FIT!r}\n" + NATIVE_CHECKS, files.root)
    return json.loads(stdout.splitlines()[-1])


@pytest.mark.skipif(not _native.available(), reason="the native kernel is unavailable")
def test_out_of_range_checkpoint_labels_raise_instead_of_crashing(native_report):
    """A forged label once corrupted the heap in an incremental pass (double free, SIGSEGV)."""
    for name in ("resume, label 10**9", "resume, label -1", "resume, label k"):
        assert native_report[name].startswith("CheckpointError: "), native_report[name]
        assert "tensor 'labels': values outside 0..2" in native_report[name]
    # in-range labels that disagree with the sums: a (meaningless) fit, not a crash
    assert native_report["resume, labels shuffled"] == "ok"


@pytest.mark.skipif(not _native.available(), reason="the native kernel is unavailable")
def test_native_calls_check_their_buffers(native_report):
    expected = {
        "direct, valid": "ok",
        "direct, incremental label k": "ValueError: lloyd_direct: labels outside 0..3",
        "direct, incremental label -1": "ValueError: lloyd_direct: labels outside 0..3",
        "direct, labels only: any previous labels": "ok",
        "direct, no centers": "ValueError: lloyd_direct: takes 1 to",
        "direct, meta device": "ValueError: lloyd_direct: x (the rows) is on meta",
        "direct, int rows": "ValueError: lloyd_direct: inconsistent",
        "direct, short weight": "ValueError: lloyd_direct: inconsistent",
        "direct, narrow accumulators": "ValueError: lloyd_direct: inconsistent",
        "direct, no accumulator rows": "ValueError: lloyd_direct: inconsistent",
        "step, valid": "ok",
        "step, incremental label k": "ValueError: lloyd_step: labels outside 0..3",
        "step, 1-d scores": "ValueError: lloyd_step: inconsistent",
        "step, scores of another k": "ValueError: lloyd_step: inconsistent",
        "step, strided labels": "ValueError: lloyd_step: inconsistent",
        "distances, label k": "ValueError: sq_distances_to: labels outside 0..3",
        "distances, meta labels": "ValueError: sq_distances_to: labels is on meta",
        "elkan, valid": "ok",
        "elkan, label k": "ValueError: elkan_pass: labels outside 0..3",
        "elkan, no centers": "ValueError: elkan_pass: takes 1 to",
    }
    if _native.tiled_available():
        expected.update({
            "seeding, float32 weights of float64 rows": "ok",
            "seeding, huge n_trials": "MemoryError: TiledRows.seeding_steps",
            "seeding, huge max_steps": "ok",
            "seeding, short weight": "ValueError: TiledRows: inconsistent",
        })
    for name, outcome in expected.items():
        assert native_report[name].startswith(outcome), (name, native_report[name])


RESUME_FUZZ = r'''
import sys
import numpy as np, torch
from hypothesis import given, settings, strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
import torchmeans
from torchmeans.io.checkpoint import CheckpointError
from torchmeans.io.model_files import content_checksum

root = sys.argv[1]
X = np.load(f"{root}/X.npy")
with safe_open(f"{root}/checkpoint.safetensors", framework="pt") as handle:
    TENSORS = {name: handle.get_tensor(name) for name in handle.keys()}
    METADATA = handle.metadata()

@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(labels=st.lists(st.integers(0, 2), min_size=300, max_size=300),
       bad=st.lists(st.tuples(st.integers(0, 299), st.integers(-(2**63), 2**63 - 1)),
                    max_size=3),
       iteration=st.none() | st.integers(0, 52), incremental=st.booleans(),
       sign=st.booleans(), truncate=st.none() | st.integers(0, 12000))
def resume(labels, bad, iteration, incremental, sign, truncate):
    labels = torch.tensor(labels)
    for at, value in bad:
        labels[at] = value
    metadata = dict(METADATA, incremental="true" if incremental else "false")
    if iteration is not None:
        metadata["iteration"] = str(iteration)
    tensors = dict(TENSORS, labels=labels)
    if sign:
        metadata["checksum"] = content_checksum(tensors, metadata)
    path = f"{root}/fuzz.safetensors"
    save_file(tensors, path, metadata=metadata)
    if truncate is not None:
        with open(path, "rb") as handle:
            data = handle.read()
        with open(path, "wb") as handle:
            handle.write(data[:truncate])
    try:
        km = torchmeans.KMeans(**FIT).fit(X, checkpoint=path, checkpoint_every=1, resume=True)
    except CheckpointError:
        return
    assert 0 <= km.labels_.min() and km.labels_.max() < 3

resume()
print("done")
'''


@pytest.mark.slow
@pytest.mark.skipif(not _native.available(), reason="the native kernel is unavailable")
def test_resuming_random_forged_checkpoints_never_crashes(files):
    """Random labels (mostly out of range), iterations and truncations, resumed natively."""
    stdout = run_script(f"FIT = {FIT!r}\n" + RESUME_FUZZ, files.root)
    assert stdout.strip().endswith("done")
