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
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import torchmeans
from _helpers import to_numpy
from torchmeans import KMeans, MiniBatchKMeans, ModelFileError
from torchmeans.io.model_files import FORMAT_VERSION, content_checksum


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


def _tamper(path, tensors=None, *, checksum=True, drop=(), **metadata):
    """Rewrite a model file with changed fields; by default with a valid checksum (a forgery:
    the field checks behind the checksum must catch it)."""
    stored = load_file(path)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    meta.update(metadata)
    for key in drop:
        meta.pop(key, None)
    stored.update(tensors or {})
    if checksum and "checksum" in meta:
        meta["checksum"] = content_checksum(stored, meta)
    save_file(stored, path, metadata=meta)


def _params(fitted, **changes):
    params = {k: v for k, v in fitted[1].get_params().items()
              if k not in ("device", "checkpoint", "distributed")}
    return json.dumps({**params, **changes})


def _summary(**changes):
    return json.dumps({"inertia": 1.0, "n_iter": 3, "n_samples": None, "cluster_sizes": None,
                       **changes})


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "something.else"}, "format: not a torchmeans model"),
    ({"format_version": "99"}, "format version 99"),
    ({"format_version": "0"}, "format_version: must be >= 1, got 0"),
    ({"format_version": "1e400"}, "format_version: '1e400' is not an integer"),
    ({"params": "{not json"}, "params: damaged metadata"),
    ({"params": "[" * 100_000}, "params: damaged metadata"),  # RecursionError in json
    ({"params": "[]"}, "params: must be a JSON object"),
    ({"n_features_in": "7"}, "tensor 'cluster_centers': shape mismatch"),
    ({"n_features_in": "-6"}, "n_features_in: must be >= 1, got -6"),
    ({"params": json.dumps({"n_clusters": 40, "no_such_param": 1})}, "unknown parameters"),
    ({"params": json.dumps({"n_clusters": "40"})}, "params.n_clusters: must be an integer"),
    ({"params": json.dumps({"n_clusters": 41})}, "tensor 'cluster_centers': shape mismatch"),
    ({"params": json.dumps({"n_clusters": 40, "tol": [1, [2]]})}, "params.tol: must be a JSON"),
    ({"params": json.dumps({"n_clusters": 40, "tol": 1e400})}, "params.tol: must be a finite"),
    ({"params": json.dumps({"n_clusters": 40, "max_iter": 10**30})}, "params.max_iter: .* too"),
    ({"params": json.dumps({"n_clusters": 40, "init": 3})}, "params.init: must be a string"),
    ({"params": json.dumps({"n_clusters": 40, "init": "array"})}, "tensor 'init': missing"),
    ({"params": json.dumps({"n_clusters": 40, "metric": "cosine"})}, "params.metric"),
    ({"metric": "manhattan"}, "metric: 'manhattan' is not one of"),
    ({"estimator": "Pickle"}, "estimator: unknown estimator"),
    ({"summary": _summary(n_iter=1e400)}, "summary.n_iter: must be an integer"),
    ({"summary": _summary(inertia="big")}, "summary.inertia: must be a number"),
    ({"summary": _summary(inertia=float("nan"))}, "summary.inertia: must be a number, got nan"),
    ({"summary": _summary(inertia=float("inf"))}, "summary.inertia: must be a finite"),
    ({"summary": _summary(n_samples=5)}, "summary.cluster_sizes: must be given"),
    ({"summary": _summary(n_samples=5, cluster_sizes=[1] * 40)}, "sum to 40"),
    ({"summary": json.dumps({"inertia": 1.0})}, "summary: missing keys"),
    ({"feature_names_in": json.dumps(list("abcdef"))}, None),  # valid
    ({"feature_names_in": json.dumps([1, 2, 3, 4, 5, 6])}, "feature_names_in: must be"),
    ({"feature_names_in": json.dumps(list("abc"))}, "3 feature names for 6 features"),
])
def test_tampered_metadata_is_refused(fitted, tmp_path, change, message):
    path = fitted[1].save(tmp_path / "m.safetensors")
    _tamper(path, **change)
    if message is None:
        assert list(torchmeans.load(path).feature_names_in_) == list("abcdef")
        return
    with pytest.raises(ModelFileError, match=message) as raised:
        torchmeans.load(path)
    assert str(path) in str(raised.value)


def test_parameters_are_validated_as_fit_validates_them(fitted, tmp_path):
    path = fitted[1].save(tmp_path / "m.safetensors")
    _tamper(path, params=_params(fitted, algorithm="no-such-algorithm"))
    if getattr(KMeans, "_parameter_constraints", None) is None:
        pytest.skip("KMeans has no _parameter_constraints yet")
    with pytest.raises(ModelFileError, match=r"params: invalid parameters.*algorithm"):
        torchmeans.load(path)


def test_a_flipped_bit_fails_the_checksum(fitted, tmp_path):
    path = fitted[1].save(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the tensor bytes: safetensors itself cannot notice
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum: mismatch"):
        torchmeans.load(path)
    path = fitted[1].save(tmp_path / "m.safetensors")
    _tamper(path, checksum=False, n_features_in="7")  # an edit that kept the old checksum
    with pytest.raises(ModelFileError, match="checksum: mismatch"):
        torchmeans.load(path)
    _tamper(path, drop=["checksum"])
    with pytest.raises(ModelFileError, match="checksum: missing"):
        torchmeans.load(path)


def test_files_of_format_1_without_a_checksum_still_load(fitted, tmp_path):
    X, km = fitted
    path = km.save(tmp_path / "m.safetensors")
    params = json.dumps({**km.get_params(), "device": "cpu"})  # format 1 stored the device
    _tamper(path, drop=["checksum"], format_version="1", params=params)
    loaded = torchmeans.load(path)
    np.testing.assert_array_equal(loaded.predict(X), km.predict(X))
    assert loaded.device is None
    assert FORMAT_VERSION == 2


def test_execution_settings_are_not_stored(tmp_path):
    """A model fitted for CUDA loads with device=None and predicts on the CPU."""
    X = np.random.default_rng(0).normal(size=(60, 3))
    km = KMeans(3, random_state=0, n_init=1).fit(X, checkpoint=tmp_path / "c.safetensors")
    km.set_params(device="cuda")  # as if fitted on a GPU
    path = km.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        stored = json.loads(handle.metadata()["params"])
    assert "device" not in stored
    assert "checkpoint" not in stored
    loaded = torchmeans.load(path)
    assert loaded.device is None
    assert loaded.checkpoint is None
    np.testing.assert_array_equal(loaded.predict(X), km.labels_)
    # a file that does carry a device (hand-written, or format 1) does not restore it
    _tamper(path, params=json.dumps({**stored, "device": "cuda:7"}))
    loaded = torchmeans.load(path)
    assert loaded.device is None
    np.testing.assert_array_equal(loaded.predict(X), km.labels_)


def test_minibatch_round_trip(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 4))
    mbk = MiniBatchKMeans(4, random_state=0, batch_size=64).fit(X)
    loaded = torchmeans.load(mbk.save(tmp_path / "m.safetensors"))
    assert isinstance(loaded, MiniBatchKMeans)
    np.testing.assert_array_equal(loaded.predict(X), mbk.predict(X))


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
    for tensors, message in [
        ({"cluster_centers": centers.half()}, "tensor 'cluster_centers': dtype"),
        ({"cluster_centers": centers.long()}, "tensor 'cluster_centers': dtype"),
        ({"cluster_centers": centers[None]}, "tensor 'cluster_centers': shape"),
        ({"offset": torch.zeros(6, dtype=torch.float32)}, "tensor 'offset': dtype"),
        ({"offset": torch.zeros(5, dtype=centers.dtype)}, "tensor 'offset': shape"),
        ({"extra": torch.zeros(1)}, "unexpected tensors \\['extra'\\]"),
        ({"init": centers}, "tensor 'init': present"),
    ]:
        path = fitted[1].save(tmp_path / "m.safetensors")
        _tamper(path, tensors)
        with pytest.raises(ModelFileError, match=message):
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


@pytest.mark.parametrize(("tensors", "metadata", "message"), [
    ({"center_weights": torch.full((4,), -1.0, dtype=torch.float64)}, {},
     r"center_weights.*negative"),
    ({"center_weights": torch.ones(5, dtype=torch.float64)}, {}, r"center_weights.*shape"),
    ({"center_weights": torch.full((4,), float("nan"), dtype=torch.float64)}, {}, "NaN"),
    ({}, {"online_state": '{"n_steps": -3, "n_since_last_reassign": 0, "batch_size": 64}'},
     r"online_state\.n_steps"),
    ({}, {"online_state": "[1, 2]"}, "online_state"),
])
def test_minibatch_online_state_is_checked(tmp_path, tensors, metadata, message):
    X = np.random.default_rng(0).normal(size=(300, 2))
    path = MiniBatchKMeans(4, random_state=0, batch_size=64).fit(X).save(tmp_path / "m.st")
    _tamper(path, tensors, **metadata)
    with pytest.raises(ModelFileError, match=message):
        torchmeans.load(path)


def test_a_kmeans_file_may_not_carry_online_state(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 2))
    path = KMeans(3, random_state=0).fit(X).save(tmp_path / "k.st")
    _tamper(path, {"center_weights": torch.ones(3, dtype=torch.float64)})
    with pytest.raises(ModelFileError, match=r"center_weights.*KMeans model"):
        torchmeans.load(path)


def test_parameters_are_checked_even_when_scikit_learn_skips_validation(tmp_path):
    from sklearn import config_context

    X = np.random.default_rng(0).normal(size=(50, 2))
    fitted = KMeans(3, random_state=0).fit(X)
    path = fitted.save(tmp_path / "k.st")
    _tamper(path, params=_params((None, fitted), chunk_bytes=-4096))
    with config_context(skip_parameter_validation=True), pytest.raises(
            ModelFileError, match="chunk_bytes"):
        torchmeans.load(path)


def test_a_forged_generator_state_is_refused(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 2))
    path = MiniBatchKMeans(4, random_state=0, batch_size=64).fit(X).save(tmp_path / "m.st")
    _tamper(path, {"generator_state": torch.zeros(7, dtype=torch.uint8)})
    with pytest.raises(ModelFileError, match="generator_state"):
        torchmeans.load(path)


def test_numpy_scalar_parameters_save(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 2))
    km = KMeans(np.int64(3), tol=np.float32(1e-4), random_state=0).fit(X)
    loaded = torchmeans.load(km.save(tmp_path / "m.safetensors"))
    assert loaded.n_clusters == 3
    np.testing.assert_array_equal(loaded.predict(X), km.predict(X))
