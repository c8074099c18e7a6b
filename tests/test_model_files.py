"""Model files (``KMeans.save`` / ``torchmeans.load``), pickling, and ``to_module``."""

import json
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

import torchmeans
from _helpers import to_numpy
from torchmeans import KMeans, ModelFileError


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 6)) + rng.integers(0, 4, size=(500, 1)) * 5 + 1000.0
    return X, KMeans(40, random_state=0, n_init=1).fit(X)


def test_round_trip_keeps_predictions_identical(fitted, tmp_path):
    X, km = fitted
    path = km.save(tmp_path / "model.safetensors")
    loaded = torchmeans.load(path)
    X_new = X[::3] + np.random.default_rng(1).normal(size=X[::3].shape)
    np.testing.assert_array_equal(loaded.predict(X_new), km.predict(X_new))
    np.testing.assert_array_equal(loaded.transform(X_new), km.transform(X_new))
    assert loaded.score(X_new) == km.score(X_new)
    np.testing.assert_array_equal(loaded.cluster_centers_, km.cluster_centers_)
    assert loaded.get_params() == km.get_params()
    assert loaded.inertia_ == km.inertia_
    assert loaded.n_iter_ == km.n_iter_
    assert loaded.training_summary_["cluster_sizes"] == np.bincount(km.labels_, minlength=40
                                                                   ).tolist()
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_round_trip_in_a_new_process(fitted, tmp_path):
    X, km = fitted
    km.save(tmp_path / "m.safetensors")
    np.save(tmp_path / "x.npy", X)
    code = textwrap.dedent(f"""
        import numpy as np, torchmeans
        km = torchmeans.load({str(tmp_path / "m.safetensors")!r})
        np.save({str(tmp_path / "labels.npy")!r}, km.predict(np.load({str(tmp_path / "x.npy")!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), km.labels_)


def test_feature_names_array_init_and_tensor_fit(tmp_path):
    frame = pd.DataFrame({"a": [0.0, 0.1, 5, 5.1], "b": [1.0, 1.1, 7, 7.2]})
    init = np.array([[0.0, 1.0], [5.0, 7.0]])
    km = KMeans(2, init=init, n_init=1).fit(frame)
    loaded = torchmeans.load(km.save(tmp_path / "m.safetensors"))
    assert list(loaded.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(loaded.init, init)
    tensor_fit = KMeans(2, random_state=0, n_init=1).fit(torch.tensor(frame.values))
    loaded = torchmeans.load(tensor_fit.save(tmp_path / "t.safetensors"))
    x = torch.tensor(frame.values)
    assert torch.equal(loaded.predict(x), tensor_fit.predict(x))


def _tamper(path, tensors=None, **metadata):
    stored = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    meta.update(metadata)
    stored.update(tensors or {})
    save_file(stored, path, metadata=meta)


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "something.else"}, "not a torchmeans model"),
    ({"format_version": "99"}, "format version 99"),
    ({"params": "{not json"}, "damaged metadata"),
    ({"n_features_in": "7"}, "shape mismatch"),
    ({"params": json.dumps({"n_clusters": 40, "no_such_param": 1})}, "unknown parameters"),
])
def test_tampered_metadata_is_refused(fitted, tmp_path, change, message):
    path = fitted[1].save(tmp_path / "m.safetensors")
    _tamper(path, **change)
    with pytest.raises(ModelFileError, match=message):
        torchmeans.load(path)


def test_tampered_tensors_are_refused(fitted, tmp_path):
    path = fitted[1].save(tmp_path / "m.safetensors")
    centers = load_file(path)["cluster_centers"]
    _tamper(path, {"cluster_centers": centers[:5]})
    with pytest.raises(ModelFileError, match="shape mismatch"):
        torchmeans.load(path)
    bad = centers.clone()
    bad[0, 0] = float("nan")
    _tamper(path, {"cluster_centers": bad})
    with pytest.raises(ModelFileError, match="NaN"):
        torchmeans.load(path)


def test_truncated_and_foreign_files_are_refused(fitted, tmp_path):
    path = fitted[1].save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        torchmeans.load(path)
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")  # header length past the end
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        torchmeans.load(path)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(fitted[1]))
    with pytest.raises(ModelFileError):
        torchmeans.load(pickled)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        torchmeans.load(tmp_path / "missing.safetensors")


def test_unfitted_estimator_cannot_be_saved(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        KMeans(2).save(tmp_path / "m.safetensors")


def test_pickle_round_trip(fitted):
    X, km = fitted
    clone = pickle.loads(pickle.dumps(km))
    np.testing.assert_array_equal(clone.predict(X), km.predict(X))


# -- to_module --------------------------------------------------------------------------


@pytest.mark.parametrize("n_clusters", [3, 40])  # both score layouts
def test_module_gives_predicts_labels(n_clusters, device):
    rng = np.random.default_rng(n_clusters)
    X = torch.from_numpy(rng.normal(size=(2000, 5)).astype(np.float32) + 300).to(device)
    km = KMeans(n_clusters, random_state=0, n_init=1).fit(X)
    module = km.to_module(return_distances=True)
    labels, distances = module(X)
    assert torch.equal(labels, km.predict(X))
    best = km.transform(X).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(distances, best, rtol=1e-4, atol=1e-3)
    batched = km.to_module()(X.reshape(20, 100, 5))
    assert batched.shape == (20, 100)
    assert torch.equal(batched.reshape(-1), labels)
    assert set(module.state_dict()) >= {"centers", "offset"}


def test_module_exports():
    X = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32))
    km = KMeans(5, random_state=0, n_init=1).fit(X)
    exported = torch.export.export(km.to_module(), (X[:7],),
                                   dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert torch.equal(exported.module()(X), km.predict(X))


@pytest.mark.slow
def test_module_compiles():
    X = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32))
    km = KMeans(5, random_state=0, n_init=1).fit(X)
    compiled = torch.compile(km.to_module(), fullgraph=True)
    assert torch.equal(compiled(X), km.predict(X))
    assert to_numpy(compiled(X[:10])).shape == (10,)


def test_joblib_round_trip(fitted, tmp_path):
    import joblib

    X, km = fitted
    joblib.dump(km, tmp_path / "km.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "km.joblib").predict(X), km.predict(X))
