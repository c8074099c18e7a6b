"""Checkpoints: an interrupted fit (even by SIGKILL) resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.datasets import make_blobs

import torchmeans
from torchmeans import KMeans
from torchmeans.data import DenseData
from torchmeans.io.checkpoint import CheckpointError, data_fingerprint

PARAMS = {"n_clusters": 30, "n_init": 3, "init": "random", "random_state": 5, "tol": 0.0,
          "max_iter": 60}


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(n_samples=4000, centers=40, n_features=4, cluster_std=2.0,
                      random_state=0)
    return X.astype(np.float32)


def checkpoint_run(path):
    with safe_open(str(path), framework="np") as handle:
        meta = handle.metadata()
    return int(meta["run"]), int(meta["iteration"])


@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly"])
def test_resume_from_every_checkpoint_gives_the_uninterrupted_fit(data, tmp_path, algorithm):
    reference = KMeans(**PARAMS, algorithm=algorithm).fit(data)
    path = tmp_path / "state.safetensors"
    snapshots = []
    # Keep a copy of each checkpoint as it is written, then resume from each one.
    original = torchmeans.io.checkpoint.Checkpointer.save

    def save_and_copy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        snapshots.append(self.path.read_bytes())

    torchmeans.io.checkpoint.Checkpointer.save = save_and_copy
    try:
        full = KMeans(**PARAMS, algorithm=algorithm).fit(data, checkpoint=path, checkpoint_every=4)
    finally:
        torchmeans.io.checkpoint.Checkpointer.save = original
    np.testing.assert_array_equal(full.labels_, reference.labels_)
    assert len(snapshots) >= 3
    runs = set()
    for snapshot in snapshots[:: max(1, len(snapshots) // 5)]:
        path.write_bytes(snapshot)
        runs.add(checkpoint_run(path)[0])
        resumed = KMeans(**PARAMS, algorithm=algorithm).fit(
            data, checkpoint=path, checkpoint_every=4, resume=True)
        np.testing.assert_array_equal(resumed.labels_, reference.labels_)
        np.testing.assert_array_equal(resumed.cluster_centers_, reference.cluster_centers_)
        assert resumed.n_iter_ == reference.n_iter_
        assert resumed.inertia_ == reference.inertia_
        assert [s.n_changed for s in resumed.n_iter_history_] == [
            s.n_changed for s in reference.n_iter_history_]
    assert len(runs) >= 2  # checkpoints from more than one of the n_init runs
    assert not list(tmp_path.glob(".*.tmp"))


def test_sigkill_mid_fit_then_resume(data, tmp_path):
    np.save(tmp_path / "X.npy", data)
    path = tmp_path / "state.safetensors"
    code = textwrap.dedent(f"""
        import time, numpy as np, torchmeans
        from torchmeans.backends.native import NativeBackend
        from torchmeans.backends.torch import TorchBackend
        def slowed(function):
            def run(*args, **kwargs):
                time.sleep(0.05)
                return function(*args, **kwargs)
            return run
        for backend in (NativeBackend, TorchBackend):
            backend.lloyd_pass = slowed(backend.__dict__["lloyd_pass"])
        X = np.load({str(tmp_path / "X.npy")!r})
        torchmeans.KMeans(**{PARAMS!r}).fit(X, checkpoint={str(path)!r}, checkpoint_every=2)
        print("finished")
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if path.exists() and checkpoint_run(path) >= (1, 4):
            break
        time.sleep(0.02)
    else:
        process.kill()
        pytest.fail("no checkpoint of the second run appeared")
    os.kill(process.pid, signal.SIGKILL)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert b"finished" not in out
    resumed = KMeans(**PARAMS).fit(data, checkpoint=path, checkpoint_every=2, resume=True)
    reference = KMeans(**PARAMS).fit(data)
    np.testing.assert_array_equal(resumed.labels_, reference.labels_)
    np.testing.assert_array_equal(resumed.cluster_centers_, reference.cluster_centers_)
    assert resumed.n_iter_ == reference.n_iter_


def test_checkpoint_of_another_fit_or_a_damaged_one_is_refused(data, tmp_path):
    path = tmp_path / "state.safetensors"
    KMeans(**{**PARAMS, "max_iter": 3}).fit(data, checkpoint=path, checkpoint_every=1)
    with pytest.raises(ValueError, match=r"written by another fit \(different \['n_clusters'\]"):
        KMeans(**{**PARAMS, "max_iter": 3, "n_clusters": 29}).fit(
            data, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="written by another fit"):
        KMeans(**PARAMS).fit(data * 2, checkpoint=path, resume=True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(torchmeans.ModelFileError, match="corrupt or truncated"):
        KMeans(**PARAMS).fit(data, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        KMeans(**PARAMS).fit(data, resume=True)
    with pytest.raises(ValueError, match=r"checkpoint_every.* must be"):
        KMeans(**PARAMS).fit(data, checkpoint=path, checkpoint_every=0)


def test_resume_without_a_checkpoint_starts_afresh(data, tmp_path):
    path = tmp_path / "none.safetensors"
    fit = KMeans(**PARAMS).fit(data, checkpoint=path, resume=True)
    np.testing.assert_array_equal(fit.labels_, KMeans(**PARAMS).fit(data).labels_)
    assert path.exists()
    with safe_open(str(path), framework="np") as handle:
        assert json.loads(handle.metadata()["fingerprint"])["n_clusters"] == 30


def test_a_checkpoint_of_reordered_rows_other_weights_or_dtype_is_refused(data, tmp_path):
    """The fingerprint covers row order, weights and dtype (it once summed norms only)."""
    params = {**PARAMS, "max_iter": 3}
    path = tmp_path / "state.safetensors"
    KMeans(**params).fit(data, checkpoint=path, checkpoint_every=1)
    permuted = data[np.random.default_rng(0).permutation(len(data))]
    weights = np.ones(len(data))
    weights[:2] = [2.0, 3.0]
    for X, sample_weight, changed in [
        (permuted, None, r"\['rows'\]: the rows, their values or their order"),
        (data[::-1], None, r"\['rows'\]"),
        (data, weights, r"\['weights'\]: the sample weights"),
        (data, weights[::-1].copy(), r"\['weights'\]"),
        (data.astype(np.float64), None, r"\['dtype', 'rows'\]: the data's dtype"),
    ]:
        with pytest.raises(CheckpointError, match=f"written by another fit .different {changed}"):
            KMeans(**params).fit(X, checkpoint=path, sample_weight=sample_weight, resume=True)
    # the same data and weights: accepted
    resumed = KMeans(**params).fit(data, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.labels_, KMeans(**params).fit(data).labels_)


def test_fingerprint_is_reproducible_and_order_sensitive(data):
    X = torch.from_numpy(data)
    ones = torch.ones(len(data), dtype=torch.float32)
    first = data_fingerprint(DenseData(X, ones), {})
    assert data_fingerprint(DenseData(X.clone(), ones.clone()), {}) == first
    swapped = X.clone()
    swapped[[0, 1]] = swapped[[1, 0]]  # two rows swapped: same offset, same norms' sum
    assert data_fingerprint(DenseData(swapped, ones), {})["rows"] != first["rows"]
    assert first["dtype"] == "float32"
    assert first["n_samples"] == len(data)


def test_the_functional_api_checkpoints_and_resumes(data, tmp_path):
    path = tmp_path / "functional.safetensors"
    params = {**PARAMS, "max_iter": 6}
    reference = torchmeans.kmeans(data, **params)
    first = torchmeans.kmeans(data, **params, checkpoint=path, checkpoint_every=2)
    assert path.exists()
    resumed = torchmeans.kmeans(data, **params, checkpoint=path, resume=True)
    for result in (first, resumed):
        assert torch.equal(result.centers, reference.centers)
        assert torch.equal(result.labels, reference.labels)
        assert result.inertia == reference.inertia
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        torchmeans.kmeans(data, **params, resume=True)


def test_a_constructor_checkpoint_still_works_with_a_deprecation_warning(data, tmp_path):
    path = tmp_path / "old.safetensors"
    params = {**PARAMS, "max_iter": 4}
    with pytest.warns(FutureWarning, match="Pass them to fit"):
        old = KMeans(**params, checkpoint=path, checkpoint_every=1).fit(data)
    assert path.exists()
    new = KMeans(**params).fit(data, checkpoint=tmp_path / "new.safetensors",
                               checkpoint_every=1)
    np.testing.assert_array_equal(old.cluster_centers_, new.cluster_centers_)


def test_clones_in_a_parallel_grid_search_share_no_checkpoint(data, tmp_path):
    """The checkpoint is a fit argument: clone() and GridSearchCV cannot copy it."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    km = KMeans(n_clusters=5, n_init=1, max_iter=5, random_state=0)
    assert "checkpoint" not in {k for k, v in clone(km).get_params().items() if v is not None}
    search = GridSearchCV(km, {"n_clusters": [3, 5]}, cv=2, n_jobs=2).fit(data[:400])
    assert search.best_params_["n_clusters"] in (3, 5)
    assert not list(tmp_path.iterdir())  # nothing was written anywhere near


def test_checkpoint_of_an_unweighted_fit_is_refused_for_a_weighted_one(tmp_path):
    X, _ = make_blobs(n_samples=2000, centers=5, random_state=0)
    path = tmp_path / "state.safetensors"
    KMeans(5, random_state=0, n_init=1, max_iter=3, tol=0).fit(X, checkpoint=path,
                                                          checkpoint_every=1)
    weight = np.random.default_rng(0).uniform(0.5, 2, len(X))
    with pytest.raises(ValueError, match=r"another fit \(different \['weights'\]"):
        KMeans(5, random_state=0, n_init=1, max_iter=3, tol=0).fit(
            X, checkpoint=path, sample_weight=weight, resume=True)
    with pytest.raises(ValueError, match="init"):
        KMeans(5, init=X[:5], n_init=1, max_iter=3, tol=0).fit(X, checkpoint=path, resume=True)
