"""Memory maps, h5py and zarr datasets passed straight to fit/predict/kmeans are streamed.

They are read chunk by chunk (``data.stream.as_stream``), not copied, with scikit-learn's
input rules, and give the in-memory fit of the same rows bit for bit.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from _helpers import write_blobs_memmap
from torchmeans import KMeans, MiniBatchKMeans, kmeans, sources
from torchmeans.data.stream import as_stream, is_source


@pytest.fixture(scope="module")
def rows():
    X, _ = make_blobs(n_samples=6000, centers=12, n_features=7, random_state=0)
    return (X + 40).astype(np.float32)  # far from the origin: the shift matters


def memmap_of(array, directory, name="X.npy"):
    path = directory / name
    np.save(path, array)
    return np.load(path, mmap_mode="r")


@pytest.fixture
def mapped(rows, tmp_path):
    return memmap_of(rows, tmp_path)


def assert_same_fit(streamed, in_memory):
    """Bit for bit: centers, labels, inertia, iterations."""
    np.testing.assert_array_equal(streamed.cluster_centers_, in_memory.cluster_centers_)
    np.testing.assert_array_equal(streamed.labels_, in_memory.labels_)
    assert streamed.inertia_ == in_memory.inertia_
    assert streamed.n_iter_ == in_memory.n_iter_


def test_which_inputs_are_streamed(mapped, tmp_path):
    for streamed in (mapped, mapped[100:900], mapped[:, 2:5], mapped[::2],
                     np.memmap(tmp_path / "raw.bin", dtype=np.int16, mode="w+", shape=(9, 3))):
        assert isinstance(streamed, np.memmap)
        assert is_source(as_stream(streamed))
    array = np.asarray(mapped)
    complex_map = np.memmap(tmp_path / "c.bin", dtype=np.complex64, mode="w+", shape=(9, 3))
    for kept in (array, torch.from_numpy(array.copy()), array.tolist(), mapped[0],
                 mapped[:0], complex_map, mapped[np.array([1, 2])]):
        assert as_stream(kept) is kept  # checked (and refused) as before


@pytest.mark.parametrize("params", [
    {}, {"backend": "torch"}, {"algorithm": "elkan"}, {"chunk_bytes": 20_000},
    {"init": "random", "n_init": 3}, {"init": "k-means||"}, {"copy_x": False},
])
def test_kmeans_on_a_memmap_is_the_in_memory_fit(rows, mapped, params):
    params = {"n_clusters": 12, "random_state": 0, "n_init": 1, **params}
    reference = KMeans(**params).fit(rows)
    km = KMeans(**params).fit(mapped)
    assert_same_fit(km, reference)  # k-means++ / random / k-means|| draw the same seeds
    assert isinstance(km.labels_, np.ndarray)
    assert km.labels_.dtype == np.int32
    assert km.cluster_centers_.dtype == np.float32
    assert km.n_features_in_ == 7
    assert not hasattr(km, "feature_names_in_")
    labels = km.predict(mapped)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, reference.predict(rows))
    distances = km.transform(mapped)
    assert isinstance(distances, np.ndarray)
    assert distances.dtype == np.float32
    np.testing.assert_array_equal(distances, reference.transform(rows))
    assert km.score(mapped) == reference.score(rows)


def test_fit_predict_transform_weights_and_slices(rows, mapped):
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(rows))
    reference = KMeans(12, random_state=0, n_init=1).fit(rows, sample_weight=weight)
    km = KMeans(12, random_state=0, n_init=1)
    np.testing.assert_array_equal(km.fit_predict(mapped, sample_weight=weight),
                                  reference.labels_)
    assert_same_fit(km, reference)
    assert km.score(mapped, sample_weight=weight) == reference.score(rows, sample_weight=weight)
    np.testing.assert_array_equal(
        KMeans(12, random_state=0, n_init=1).fit_transform(mapped),
        KMeans(12, random_state=0, n_init=1).fit_transform(rows))
    part = mapped[1000:5000]  # a slice of a memory map is one too
    assert_same_fit(KMeans(12, random_state=0, n_init=1).fit(part),
                    KMeans(12, random_state=0, n_init=1).fit(rows[1000:5000]))
    with pytest.raises(ValueError, match="sample_weight"):
        KMeans(12, n_init=1).fit(mapped, sample_weight=weight[:-1])


def test_functional_kmeans_on_a_memmap(rows, mapped):
    reference = kmeans(rows, 12, random_state=0)
    result = kmeans(mapped, 12, random_state=0)
    assert torch.equal(result.centers, reference.centers)
    assert torch.equal(result.labels, reference.labels)
    assert (result.inertia, result.n_iter) == (reference.inertia, reference.n_iter)


def test_dtypes_follow_scikit_learn(rows, tmp_path):
    # Integers (and float16) are clustered in float64, as scikit-learn converts them.
    for values, name in (((rows * 10).astype(np.int32), "i.npy"),
                         (rows.astype(np.float16), "h.npy")):
        mapped = memmap_of(values, tmp_path, name)
        km = KMeans(12, random_state=0, n_init=1).fit(mapped)
        assert km.cluster_centers_.dtype == np.float64
        assert_same_fit(km, KMeans(12, random_state=0, n_init=1).fit(values))
        assert kmeans(mapped, 12, random_state=0).centers.dtype == torch.float64
    # float64 rows stay float64: the fit equals the in-memory one computed in the same
    # chunks (copy_x=False) bit for bit, and the default one to rounding (in memory, the
    # native kernel takes larger chunks of a held copy: float64 sums in another order).
    wide = rows.astype(np.float64)
    mapped = memmap_of(wide, tmp_path, "d.npy")
    km = KMeans(12, random_state=0, n_init=1).fit(mapped)
    assert km.cluster_centers_.dtype == np.float64
    assert_same_fit(km, KMeans(12, random_state=0, n_init=1, copy_x=False).fit(wide))
    reference = KMeans(12, random_state=0, n_init=1).fit(wide)
    np.testing.assert_array_equal(km.labels_, reference.labels_)
    np.testing.assert_allclose(km.cluster_centers_, reference.cluster_centers_, rtol=1e-12)


def test_non_finite_values_raise_scikit_learns_errors(rows, tmp_path):
    bad = rows.copy()
    bad[4321, 5] = np.nan
    mapped = memmap_of(bad, tmp_path, "nan.npy")
    with pytest.raises(ValueError, match="Input X contains NaN.\nKMeans does not accept missing"
                       r"(.|\n)*row 4321, column 5"):
        KMeans(3).fit(mapped)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        kmeans(mapped, 3)
    bad[4321, 5] = np.inf
    mapped = memmap_of(bad, tmp_path, "inf.npy")
    with pytest.raises(ValueError, match=r"Input X contains infinity or a value too large for "
                       r"dtype\('float32'\)"):
        MiniBatchKMeans(3).fit(mapped)
    km = KMeans(3, random_state=0, n_init=1).fit(rows)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        km.predict(mapped)
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 7"):
        km.predict(memmap_of(rows[:, :3], tmp_path, "narrow.npy"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_messages_are_scikit_learns_own(rows, tmp_path, dtype, value):
    # The streamed check words its error as scikit-learn's check on the same array in memory.
    bad = rows.astype(dtype)
    bad[17, 3] = value
    with pytest.raises(ValueError, match="Input X contains") as in_memory:
        KMeans(3).fit(bad)
    with pytest.raises(ValueError, match="Input X contains") as streamed:
        KMeans(3).fit(memmap_of(bad, tmp_path, "bad.npy"))
    assert str(streamed.value) == f"{in_memory.value}\n(The first is at row 17, column 3.)"
    assert str(in_memory.value).startswith(
        "Input X contains NaN." if np.isnan(value)
        else f"Input X contains infinity or a value too large for {np.dtype(dtype)!r}.")


def test_feature_names_and_callable_init(rows, mapped):
    pd = pytest.importorskip("pandas")
    km = KMeans(3, random_state=0, n_init=1).fit(pd.DataFrame(rows, columns=list("abcdefg")))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        km.predict(mapped)
    km.fit(mapped)
    assert not hasattr(km, "feature_names_in_")
    seen = []

    def init(X, n_clusters, random_state):
        seen.append(X)
        return np.asarray(X[:n_clusters])

    KMeans(3, init=init, n_init=1).fit(mapped)
    kmeans(mapped, 3, init=init, n_init=1)
    assert seen == [mapped, mapped]
    assert all(X is mapped for X in seen)  # the user's object, as in memory


def test_minibatch_kmeans_on_a_memmap(rows, mapped):
    params = {"n_clusters": 12, "random_state": 0, "batch_size": 256, "max_iter": 5}
    km = MiniBatchKMeans(**params).fit(mapped)  # random rows read from the map per step
    assert_same_fit(km, MiniBatchKMeans(**params).fit(rows))
    assert km.labels_.dtype == np.int32
    # partial_fit: each batch (a slice of the map) is read into memory, as any batch.
    streamed, in_memory = MiniBatchKMeans(12, random_state=0), MiniBatchKMeans(12, random_state=0)
    for start in range(0, len(rows), 2000):
        streamed.partial_fit(mapped[start : start + 2000])
        in_memory.partial_fit(rows[start : start + 2000])
    np.testing.assert_array_equal(streamed.cluster_centers_, in_memory.cluster_centers_)


def datasets(rows, tmp_path):
    """h5py and zarr datasets of ``rows`` (those installed)."""
    found = {}
    try:
        import h5py
    except ImportError:
        pass
    else:
        handle = h5py.File(tmp_path / "rows.h5", "w")
        found["h5py"] = handle.create_dataset("rows", data=rows, chunks=(500, 7))
    try:
        import zarr
    except ImportError:
        pass
    else:
        array = zarr.open_array(str(tmp_path / "rows.zarr"), mode="w", shape=rows.shape,
                                chunks=(500, 7), dtype="f4")
        array[:] = rows
        found["zarr"] = array
    return found


def test_h5py_and_zarr_datasets_are_streamed(rows, tmp_path):
    found = datasets(rows, tmp_path)
    if not found:
        pytest.skip("neither h5py nor zarr is installed")
    reference = KMeans(12, random_state=0, n_init=1).fit(rows)
    mini_reference = MiniBatchKMeans(12, random_state=0, batch_size=256, max_iter=3).fit(rows)
    for name, dataset in found.items():
        assert is_source(as_stream(dataset)), name
        km = KMeans(12, random_state=0, n_init=1).fit(dataset)
        # Read in blocks, their shift is summed block by block (in float64): it can differ
        # from the in-memory mean in the last bit, so the centers may too.
        np.testing.assert_array_equal(km.labels_, reference.labels_, err_msg=name)
        np.testing.assert_allclose(km.cluster_centers_, reference.cluster_centers_,
                                   rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal(km.predict(dataset), reference.labels_, err_msg=name)
        result = kmeans(dataset, 12, random_state=0)
        np.testing.assert_array_equal(result.labels.numpy(), reference.labels_, err_msg=name)
        # Batches drawn with replacement (repeated, unsorted rows: h5py takes neither).
        mini = MiniBatchKMeans(12, random_state=0, batch_size=256, max_iter=3).fit(dataset)
        np.testing.assert_array_equal(mini.labels_, mini_reference.labels_, err_msg=name)
        np.testing.assert_allclose(mini.cluster_centers_, mini_reference.cluster_centers_,
                                   rtol=1e-5, err_msg=name)
    bad = rows.copy()
    bad[17, 3] = np.nan
    (tmp_path / "bad").mkdir()
    for dataset in datasets(bad, tmp_path / "bad").values():
        with pytest.raises(ValueError, match=r"Input X contains NaN(.|\n)*row 17, column 3"):
            KMeans(3).fit(dataset)


def test_explicit_sources_keep_their_messages(rows, tmp_path):
    bad = rows.copy()
    bad[10, 1] = np.nan
    with pytest.raises(ValueError, match=r"array: row 10, column 1 is nan"):
        KMeans(3).fit(sources.from_array(bad))


def test_memory_grows_far_less_than_the_memmap(tmp_path):
    """A 320 MiB memory map fits within a data cap of half its size (anonymous memory).

    (Above 256 MiB: below, k-means++ holds a copy of the rows it judges its candidates on,
    ``core.seeding.EVALUATION_MAX_BYTES``, streamed or not.)
    """
    n_features = 256
    n_rows = (320 << 20) // (4 * n_features)
    path = tmp_path / "big.npy"
    write_blobs_memmap(path, n_rows, n_features, 8)
    size = path.stat().st_size
    code = textwrap.dedent(f"""
        import resource, threading, time
        import numpy as np, torchmeans

        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) << 10

        X = np.load({str(path)!r}, mmap_mode="r")
        torchmeans.KMeans(8, n_init=1, max_iter=2).fit(np.ascontiguousarray(X[:2000]))  # warm
        allowed = {size} // 2
        # RLIMIT_DATA counts private writable memory (what a copy needs), not mapped files.
        cap = status("VmData") + allowed
        resource.setrlimit(resource.RLIMIT_DATA, (cap, resource.RLIM_INFINITY))
        try:
            X + 0  # the cap is real: a copy of the rows does not fit under it
        except MemoryError:
            pass
        else:
            raise SystemExit("a copy fit under the cap")
        base, peak, done = status("RssAnon"), [0], False

        def sample():
            while not done:
                peak[0] = max(peak[0], status("RssAnon"))
                time.sleep(0.002)

        threading.Thread(target=sample, daemon=True).start()
        km = torchmeans.KMeans(8, random_state=0, n_init=1, max_iter=3,
                               chunk_bytes=8 << 20).fit(X)
        done = True
        print(max(peak[0], status("RssAnon")) - base, km.labels_.shape[0], km.n_iter_)
    """)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    growth, n_labels, n_iter = map(int, done.stdout.split())
    assert n_labels == n_rows
    assert 1 <= n_iter <= 3
    assert growth < size // 2, f"anonymous memory grew {growth >> 20} MiB"


@pytest.mark.slow
def test_the_benchmark_runs(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_memmap.py")
    done = subprocess.run([sys.executable, script, "--quick", "--markdown"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "anonymous peak" in done.stdout


def test_no_warning_for_read_only_maps(mapped):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(3, random_state=0, n_init=1).fit(mapped).predict(mapped)


def test_long_double_maps_fit_as_their_float64_copy(rows, tmp_path):
    # torch has no long double: such a map goes through check_array (a float64 copy), and an
    # explicit source reads its blocks as float64.
    wide = rows[:500].astype(np.longdouble)
    mapped = memmap_of(wide, tmp_path, "wide.npy")
    assert as_stream(mapped) is mapped
    in_memory = KMeans(3, random_state=0, n_init=1).fit(wide)
    assert_same_fit(KMeans(3, random_state=0, n_init=1).fit(mapped), in_memory)
    explicit = KMeans(3, random_state=0, n_init=1).fit(sources.from_array(mapped))
    assert explicit.cluster_centers_.dtype == np.float64
    assert explicit.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-12)


def test_a_callable_init_gets_scikit_learns_array(rows, tmp_path):
    h5py = pytest.importorskip("h5py")
    integers = (rows[:400] * 10).astype(np.int32)
    seen = []

    def init(X, k, random_state):
        seen.append((type(X), X.dtype))
        return X[np.array([5, 1, 3])]

    with h5py.File(tmp_path / "rows.h5", "w") as file:
        file["X"] = integers
    with h5py.File(tmp_path / "rows.h5", "r") as file:
        streamed = KMeans(3, n_init=1, init=init).fit(file["X"])
    in_memory = KMeans(3, n_init=1, init=init).fit(integers)
    assert seen == [(np.ndarray, np.dtype(np.float64))] * 2
    assert_same_fit(streamed, in_memory)
