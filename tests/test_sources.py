"""Streamed data (``torchmeans.sources``): the same fit as in memory, within a memory cap."""

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

import torchmeans
from _helpers import write_blobs_memmap
from torchmeans import KMeans, kmeans, sources


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(n_samples=6000, centers=12, n_features=7, random_state=0)
    return X.astype(np.float32), X[:12].astype(np.float32)


@pytest.fixture
def shards(blobs, tmp_path):
    X, _ = blobs
    cuts = [0, 1000, 1001, 4500, 6000]  # uneven, one of a single row
    paths = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        paths.append(tmp_path / f"shard{i}.npy")
        np.save(paths[-1], X[a:b])
    return paths


def all_sources(X, shard_paths):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X)),
                                         batch_size=777)
    return {
        "array": sources.from_array(X),
        "memmap shards": sources.from_npy(shard_paths),
        "DataLoader": sources.from_batches(loader),
        "list of arrays": sources.from_batches([X[i : i + 500] for i in range(0, len(X), 500)]),
    }


@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly"])
@pytest.mark.parametrize("chunk_bytes", [None, 20_000])
def test_streamed_fit_equals_in_memory_fit(blobs, shards, algorithm, chunk_bytes):
    X, init = blobs
    params = {"init": init, "n_init": 1, "algorithm": algorithm, "chunk_bytes": chunk_bytes}
    reference = KMeans(12, **params).fit(X)
    for name, source in all_sources(X, shards).items():
        km = KMeans(12, **params).fit(source)
        np.testing.assert_array_equal(km.labels_, reference.labels_, err_msg=name)
        np.testing.assert_allclose(km.cluster_centers_, reference.cluster_centers_,
                                   rtol=1e-5, atol=1e-5, err_msg=name)
        assert km.n_iter_ == reference.n_iter_, name
        assert km.inertia_ == pytest.approx(reference.inertia_, rel=1e-5), name
        np.testing.assert_array_equal(km.predict(source), reference.labels_, err_msg=name)
        np.testing.assert_allclose(km.transform(source), reference.transform(X), rtol=1e-4,
                                   atol=1e-3, err_msg=name)
        assert km.score(source) == pytest.approx(reference.score(X), rel=1e-5), name


def test_weights_cosine_and_functional(blobs, shards):
    X, init = blobs
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    source = sources.from_npy(shards)
    reference = KMeans(12, init=init, n_init=1).fit(X, sample_weight=weight)
    km = KMeans(12, init=init, n_init=1).fit(source, sample_weight=weight)
    np.testing.assert_array_equal(km.labels_, reference.labels_)
    cosine_ref = KMeans(12, init=init, n_init=1, metric="cosine").fit(X)
    cosine = KMeans(12, init=init, n_init=1, metric="cosine").fit(source)
    np.testing.assert_array_equal(cosine.labels_, cosine_ref.labels_)
    result = kmeans(source, 12, init=torch.from_numpy(init))
    np.testing.assert_array_equal(result.labels.numpy(), KMeans(12, init=init, n_init=1)
                                  .fit(X).labels_)
    with pytest.raises(ValueError, match="sample_weight"):
        KMeans(12, init=init, n_init=1).fit(source, sample_weight=weight[:-1])


def test_seeding_random_access_and_sequential_sources(blobs, shards):
    X, _ = blobs
    array_fit = KMeans(12, random_state=0, n_init=1).fit(X)
    streamed = KMeans(12, random_state=0, n_init=1).fit(sources.from_npy(shards))
    np.testing.assert_array_equal(streamed.labels_, array_fit.labels_)  # same k-means++ draws
    batches = sources.from_batches([X[i : i + 1000] for i in range(0, len(X), 1000)])
    for params in ({"init": "k-means||"}, {"init_size": 2000}, {"init": "random"}):
        # A sequential source draws the same seeds as the array (one pass for the rows).
        km = KMeans(12, random_state=0, n_init=1, **params).fit(batches)
        in_memory = KMeans(12, random_state=0, n_init=1, **params).fit(X)
        np.testing.assert_array_equal(km.labels_, in_memory.labels_, err_msg=str(params))


def test_row_ranges_for_ranks(blobs):
    X, _ = blobs
    source = sources.from_array(X)
    parts = [source.shard(rank, 3) for rank in range(3)]
    assert [p.n_samples for p in parts] == [2000, 2000, 2000]
    np.testing.assert_array_equal(np.concatenate([p.read(0, p.n_samples) for p in parts]), X)
    with pytest.raises(TypeError, match="cannot be sharded"):
        sources.from_batches([X]).shard(0, 2)


def test_bad_sources_name_the_problem(blobs, tmp_path):
    X, _init = blobs
    bad = X.copy()
    bad[4321, 5] = np.nan
    np.save(tmp_path / "a.npy", X[:4000])
    np.save(tmp_path / "b.npy", bad[4000:])
    with pytest.raises(ValueError, match="row 4321, column 5 is nan"):
        KMeans(3).fit(sources.from_npy([tmp_path / "a.npy", tmp_path / "b.npy"]))
    np.save(tmp_path / "c.npy", X[:10, :3])
    with pytest.raises(ValueError, match=r"c\.npy: 3 features, but .*a\.npy has 7"):
        sources.from_npy([tmp_path / "a.npy", tmp_path / "c.npy"])
    with pytest.raises(FileNotFoundError, match=r"missing\.npy: no such shard file"):
        sources.from_npy([tmp_path / "a.npy", tmp_path / "missing.npy"])
    with pytest.raises(TypeError, match="re-iterable"):
        sources.from_batches(iter([X]))
    km = KMeans(3, random_state=0, n_init=1).fit(sources.from_array(X))
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 7"):
        km.predict(sources.from_npy(tmp_path / "c.npy"))
    with pytest.raises(ValueError, match="n_samples=10 should be >= n_clusters=12"):
        KMeans(12).fit(sources.from_npy(tmp_path / "c.npy"))


class Shrinking:
    """Batches that lose rows once the fit has counted them (a file changing under the fit).

    Setting up makes five passes: two to check the batches, one to read the first
    block, one for the counts and means, one for the norms.
    """

    def __init__(self, X):
        self.X, self.passes = X, 0

    def __iter__(self):
        self.passes += 1
        rows = self.X if self.passes <= 5 else self.X[:-100]
        return iter([rows[i : i + 1000] for i in range(0, len(rows), 1000)])


def test_data_changing_length_during_a_fit_is_an_error(blobs, tmp_path):
    X, init = blobs
    with pytest.raises(RuntimeError, match="changed length during the fit"):
        KMeans(12, init=init, n_init=1).fit(sources.from_batches(Shrinking(X)))
    path = tmp_path / "grow.npy"
    np.save(path, X)
    source = sources.from_npy(path)
    np.save(path, np.vstack([X, X[:5]]))
    with pytest.raises(RuntimeError, match="changed length during the fit"):
        KMeans(12, init=init, n_init=1).fit(source)


@pytest.mark.slow
def test_fits_a_memory_mapped_file_three_times_larger_than_a_memory_cap(tmp_path):
    # Per-row state (labels, norms, weights: ~40 bytes a row) stays small next to 2 KiB rows.
    cap_mib, n_features = 600, 512
    rows = 3 * (cap_mib << 20) // (4 * n_features) + 1  # the file is 3x the cap
    path = tmp_path / "big.npy"
    write_blobs_memmap(path, rows, n_features, 8, block=1 << 18)
    assert path.stat().st_size >= 3 * (cap_mib << 20)
    code = textwrap.dedent(f"""
        import resource
        cap = {cap_mib} << 20
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
        import numpy as np, torchmeans
        from torchmeans import sources
        try:
            np.load({str(path)!r})  # the cap is real: the file cannot be read into memory
        except MemoryError:
            pass
        else:
            raise SystemExit("the file fit in memory: the cap does not hold")
        km = torchmeans.KMeans(8, random_state=0, n_init=1, max_iter=5).fit(
            sources.from_npy({str(path)!r}))
        sizes = np.bincount(km.labels_, minlength=8)
        print(km.n_iter_, sizes.min(), sizes.sum())
    """)
    # glibc's dynamic mmap threshold keeps freed chunk-sized blocks in the heap, which
    # RLIMIT_DATA counts (reused, not leaked); a fixed threshold measures our own peak.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=1200, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    n_iter, smallest, total = map(int, done.stdout.split())
    assert total == rows
    assert smallest > rows // 20  # eight real clusters were found
    assert 1 <= n_iter <= 5


def test_sources_are_accepted_by_the_public_api():
    assert torchmeans.sources.from_npy is sources.from_npy


def test_predict_writes_labels_into_a_memory_map(blobs, tmp_path):
    X, init = blobs
    km = KMeans(12, init=init, n_init=1).fit(X)
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.int32,
                                    shape=(len(X),))
    assert km.predict(sources.from_array(X), out=out) is out
    out.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), km.labels_)
    tensor_out = torch.empty(len(X), dtype=torch.int64)
    km.predict(torch.from_numpy(X), out=tensor_out)
    np.testing.assert_array_equal(tensor_out.numpy(), km.labels_)
    with pytest.raises(ValueError, match="out has shape"):
        km.predict(X, out=np.empty(3, dtype=np.int32))
    with pytest.raises(ValueError, match="out must hold integers"):
        km.predict(X, out=np.empty(len(X)))
