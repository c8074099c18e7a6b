"""``backend='native'``: the compiled CPU Lloyd kernel equals the torch path.

The kernel (``torchmeans/backends/native/lloyd_kernel.c``) reads the same score GEMM as the torch
path, so one pass must give *identical* labels and the same sums, weights, inertia and
changed count (the kernel adds in float64, so only to rounding). Whole fits from the
same init must then give identical labels and ``n_iter_`` on data without near-ties.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from _helpers import EXACT_TIES, exact_lloyd, random_row_data, tiled_kernel, to_numpy
from torchmeans import KMeans, kmeans
from torchmeans.backends.native import NativeBackend
from torchmeans.backends.native import backend as native_backend_module
from torchmeans.backends.native import build as _build
from torchmeans.backends.native import kernel as _native
from torchmeans.backends.torch import SMALL_K, TorchBackend
from torchmeans.core.assign import assign
from torchmeans.data import DenseData

REASON = _native.unavailable_reason()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=f"native kernel: {REASON}")
needs_direct = pytest.mark.skipif(not _native.direct_applies(1),
                                  reason="no native kernel, or no hardware FMA")
TILED = REASON is None and _native._kernel().tiled_vector_bytes > 0
needs_tiled = pytest.mark.skipif(not TILED, reason="no native kernel, or no AVX2/AVX-512")


@pytest.fixture(autouse=True, scope="module")
def small_direct_chunks():
    """Direct passes in chunks as small as the tests ask for (not 65,536-row minimum)."""
    saved = native_backend_module.DIRECT_VIEW_CHUNK_ROWS
    native_backend_module.DIRECT_VIEW_CHUNK_ROWS = 1
    yield
    native_backend_module.DIRECT_VIEW_CHUNK_ROWS = saved


@pytest.fixture(params=[pytest.param(True, marks=needs_tiled, id="tiled"),
                        pytest.param(False, id="gemm")])
def tiled(request):
    """Both native paths above 16 features: the tiled kernel and GEMM + ``lloyd_step``."""
    with tiled_kernel(request.param):
        yield request.param


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


@needs_kernel
def test_kernel_links_torchs_openmp_runtime_and_loads_no_other():
    done = _run("""
        from pathlib import Path
        import torch, sklearn.cluster
        def runtimes():
            return {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                    if "gomp" in line or "libomp" in line or "iomp" in line}
        before = runtimes()
        from torchmeans.backends.native import kernel as _native
        assert _native.available()
        runtime = _native._openmp_runtime()
        assert runtime.resolve().is_relative_to(Path(torch.__file__).resolve().parent), runtime
        assert runtimes() == before, (before, runtimes())
        print("ok")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@needs_kernel
def test_kernel_threads_follow_threadpoolctl():
    kernel = _native._kernel()
    with threadpool_limits(limits=1):
        assert kernel.max_threads() == 1
        assert _native.new_accumulators(3, 2).shape[0] == 1
    assert kernel.max_threads() == torch.get_num_threads()


def _pass_pair(X, weight, centers, rows, labels, incremental):
    data = DenseData(X, weight)
    shifted = centers - data.offset
    torch_labels, native_labels = labels.clone(), labels.clone()
    expected = TorchBackend().lloyd_pass(data, shifted, torch_labels, rows,
                                         incremental=incremental)
    got = NativeBackend().lloyd_pass(data, shifted, native_labels, rows,
                                     incremental=incremental)
    return expected, got, torch_labels, native_labels


@needs_kernel
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(1, 700),
    n_features=st.integers(1, 40) | st.sampled_from([63, 64, 65, 130, 300]),
    n_clusters=st.sampled_from([1, 2, 5, 6, SMALL_K, SMALL_K + 1, 70]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    weighted=st.booleans(),
    incremental=st.booleans(),
    rows=st.sampled_from([1, 7, 256, 257, 10_000]),
    tiled=st.booleans() if TILED else st.just(False),
)
def test_one_pass_equals_the_torch_pass(seed, n_samples, n_features, n_clusters, dtype,
                                        weighted, incremental, rows, tiled):
    """Both native paths (tiled kernel or GEMM + step) against the torch pass."""
    with tiled_kernel(tiled):
        _check_one_pass(seed, n_samples, n_features, n_clusters, dtype, weighted,
                        incremental, rows)


def _check_one_pass(seed, n_samples, n_features, n_clusters, dtype, weighted, incremental,
                    rows):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n_samples, n_features, generator=generator, dtype=dtype)
    weight = torch.ones(n_samples, dtype=dtype)
    if weighted and not incremental:  # the incremental pass is for unit weights
        weight = torch.rand(n_samples, generator=generator, dtype=dtype) + 0.5
    centers = torch.randn(n_clusters, n_features, generator=generator, dtype=dtype)
    labels = torch.randint(n_clusters, (n_samples,), generator=generator)
    if not incremental:
        labels[: n_samples // 2] = -1  # no previous label
    expected, got, torch_labels, native_labels = _pass_pair(X, weight, centers, rows, labels,
                                                            incremental)
    assert torch.equal(native_labels, torch_labels)
    assert got.dtype == torch.float64
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    scale = float(expected.abs().max()) + 1.0
    np.testing.assert_allclose(got.numpy(), expected.double().numpy(), rtol=0,
                               atol=rtol * scale * (n_samples + 1))
    assert got[-1] == expected[-1] == int((torch_labels != labels).sum())


@needs_kernel
@pytest.mark.parametrize("name", list(EXACT_TIES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_exact_ties_take_the_first_center(name, dtype):
    rows, centers = EXACT_TIES[name]
    labels, expected_centers, changed = exact_lloyd(rows, centers)
    for chunk_bytes in (None, 1, 64):
        km = KMeans(len(centers), init=np.array(centers, dtype=dtype), n_init=1, tol=0.0,
                    backend="native", chunk_bytes=chunk_bytes).fit(np.array(rows, dtype=dtype))
        np.testing.assert_array_equal(km.labels_, labels)
        np.testing.assert_array_equal(km.cluster_centers_, expected_centers)
        assert [s.n_changed for s in km.n_iter_history_] == changed


@needs_kernel
@pytest.mark.parametrize("n_clusters", [3, SMALL_K, 50])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_features", [6, 48])
def test_fit_equals_the_torch_fit(n_clusters, weighted, n_features):
    X, init = random_row_data(3000, n_features, 8, n_clusters, seed=n_clusters)
    weight = np.random.default_rng(1).uniform(0.5, 2, len(X)) if weighted else None
    fits = {backend: KMeans(n_clusters, init=init, n_init=1, max_iter=100, tol=0.0,
                            backend=backend, chunk_bytes=1 << 14).fit(X, sample_weight=weight)
            for backend in ("torch", "native")}
    torch_fit, native_fit = fits["torch"], fits["native"]
    np.testing.assert_array_equal(native_fit.labels_, torch_fit.labels_)
    np.testing.assert_allclose(native_fit.cluster_centers_, torch_fit.cluster_centers_,
                               rtol=1e-12, atol=1e-12)
    assert native_fit.n_iter_ == torch_fit.n_iter_
    assert [s.n_changed for s in native_fit.n_iter_history_] == [
        s.n_changed for s in torch_fit.n_iter_history_]
    np.testing.assert_allclose(native_fit.inertia_, torch_fit.inertia_, rtol=1e-12)


@needs_kernel
def test_empty_clusters_are_relocated_as_with_torch():
    X, _ = random_row_data(500, 3, 4, 4, seed=3)
    init = np.repeat(X[:1], 6, axis=0) + np.arange(6)[:, None] * 1e-3  # most start empty
    fits = [KMeans(6, init=init, n_init=1, tol=0.0, backend=backend).fit(X)
            for backend in ("torch", "native")]
    assert min(s.n_empty for s in fits[0].n_iter_history_[:1]) > 0
    np.testing.assert_array_equal(fits[1].labels_, fits[0].labels_)
    np.testing.assert_allclose(fits[1].cluster_centers_, fits[0].cluster_centers_, rtol=1e-12)


@needs_kernel
def test_half_precision_and_lazy_shift_run_native():
    X, init = random_row_data(2000, 5, 4, 4, seed=5)
    ref = kmeans(torch.from_numpy(X).float(), 4, init=torch.from_numpy(init), backend="torch",
                 copy=False, tol=0.0)
    got = kmeans(torch.from_numpy(X).float(), 4, init=torch.from_numpy(init), backend="native",
                 copy=False, tol=0.0)
    assert torch.equal(got.labels, ref.labels)
    half = kmeans(torch.from_numpy(X).to(torch.bfloat16), 4, init=torch.from_numpy(init),
                  backend="native", tol=0.0)
    assert half.centers.dtype == torch.float32
    assert half.n_iter >= 1


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="'backend' parameter of KMeans must be a str among"):
        KMeans(2, backend="cuda").fit(np.random.default_rng(0).random((10, 2)))


def test_native_on_sparse_data_names_the_problem():
    X = sp.random(50, 8, density=0.3, format="csr", random_state=0)
    with pytest.raises(ValueError, match=r"backend=.native. cannot run: .*sparse"):
        KMeans(2, backend="native", n_init=1).fit(X)
    assert KMeans(2, backend="auto", n_init=1, random_state=0).fit(X).n_iter_ >= 1


def _with_library_dir(directory, code: str) -> str:
    """``code`` run with the kernel looked for in ``directory`` (before it is loaded)."""
    return (f"from pathlib import Path\nfrom torchmeans.backends.native import kernel as _native\n"
            f"_native.LIBRARY_DIR = Path({str(directory)!r})\n" + textwrap.dedent(code))


def test_without_a_compiler_auto_falls_back_and_native_raises(tmp_path, monkeypatch, capsys):
    """An install without a C compiler succeeds (the hook's build only warns) and records
    why; the kernel then names it, 'auto' runs torch and 'native' raises with it."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.delenv("TORCHMEANS_NATIVE_BUILD", raising=False)
    result = _build.build(tmp_path)
    assert result.variants == []
    assert "no C compiler" in result.error
    assert "WARNING" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.so"))
    with pytest.raises(RuntimeError, match="no C compiler"):
        _build.build(tmp_path, mode="require")
    done = _run(_with_library_dir(tmp_path, """
        import numpy as np, pytest
        from torchmeans import KMeans
        reason = _native.unavailable_reason()
        assert "not built at install" in reason, reason
        assert "no C compiler" in reason, reason
        assert "reinstall torchmeans with a C compiler" in reason, reason
        assert _native.variant() is None
        assert not _native.direct_applies(2)
        X = np.random.default_rng(0).normal(size=(200, 3))
        auto = KMeans(3, random_state=0, n_init=1).fit(X)
        torch_fit = KMeans(3, random_state=0, n_init=1, backend="torch").fit(X)
        np.testing.assert_array_equal(auto.labels_, torch_fit.labels_)
        with pytest.raises(ValueError, match="no C compiler"):
            KMeans(3, backend="native").fit(X)
        print("ok")
    """))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_build_can_be_skipped(tmp_path):
    result = _build.build(tmp_path, mode="0", log=open(os.devnull, "w"))  # noqa: SIM115
    assert result.variants == []
    assert "TORCHMEANS_NATIVE_BUILD=0" in result.error
    assert [p.name for p in tmp_path.iterdir()] == [_build.INFO_NAME]
    with pytest.raises(ValueError, match="TORCHMEANS_NATIVE_BUILD"):
        _build.build(tmp_path, mode="sometimes")


def test_a_tree_never_built_says_how_to_build(tmp_path):
    done = _run(_with_library_dir(tmp_path, "print(_native.unavailable_reason())"))
    assert done.returncode == 0, done.stderr
    assert "not built" in done.stdout
    assert "make native" in done.stdout


@needs_kernel
@pytest.mark.parametrize("damage", ["stale source", "missing library"])
def test_a_stale_or_incomplete_build_is_refused(tmp_path, damage):
    info = _native.build_info()
    for name in info["variants"]:
        shutil.copy(_native.LIBRARY_DIR / _build.library_name(name), tmp_path)
    if damage == "stale source":
        info["source_sha256"] = "0" * 64
        expected = "lloyd_kernel.c changed since the kernel was built"
    else:
        (tmp_path / _build.library_name(info["variants"][0])).unlink()
        expected = "missing from"
    (tmp_path / _build.INFO_NAME).write_text(json.dumps(info))
    done = _run(_with_library_dir(tmp_path, """
        import numpy as np
        from torchmeans import KMeans
        print(_native.unavailable_reason())
        KMeans(2, n_init=1, random_state=0).fit(np.random.default_rng(0).random((50, 2)))
    """))
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "make native" in done.stdout
    # a stale source is said once on stderr (logging's warning), a missing file only asked
    assert done.stderr.count(expected) == (damage == "stale source")


@pytest.mark.parametrize("info", ["[]", '{"variants": 1}', '{"variants": [3]}', "{"])
def test_a_malformed_build_record_falls_back_to_torch(tmp_path, info):
    (tmp_path / _build.INFO_NAME).write_text(info)
    done = _run(_with_library_dir(tmp_path, """
        import numpy as np
        from torchmeans import KMeans
        print(_native.available(), _native.unavailable_reason())
        KMeans(2, n_init=1, random_state=0).fit(np.random.default_rng(0).random((50, 2)))
    """))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("False ")
    assert "not built" in done.stdout or "malformed" in done.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_openmp_runtime_found_on_paths_with_spaces(monkeypatch):
    maps = ("7f00-7f01 r-xp 00000000 08:01 42   /opt/my envs/lib/torch/lib/libgomp.so.1\n"
            "7f02-7f03 r-xp 00000000 08:01 43   /usr/lib/libc.so.6 (deleted)\n"
            "7f04-7f05 rw-p 00000000 00:00 0 \n")
    monkeypatch.setattr(_native.Path, "read_text", lambda self, *a, **k: maps)
    monkeypatch.setattr(_native.Path, "exists", lambda self: True)
    assert _native._loaded_libraries() == {_native.Path("/opt/my envs/lib/torch/lib/libgomp.so.1"),
                                           _native.Path("/usr/lib/libc.so.6")}


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm (another file system)")
def test_the_build_does_not_move_files_across_file_systems(tmp_path, monkeypatch):
    """The scratch folder is inside the output folder: os.replace cannot cross devices."""
    try:
        _build.find_compiler()
    except OSError:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TMPDIR", "/dev/shm")
    monkeypatch.setattr(_build.tempfile, "tempdir", None)  # re-read TMPDIR
    result = _build.build(tmp_path, log=open(os.devnull, "w"))  # noqa: SIM115
    assert result.error is None, result.error
    assert "portable" in result.variants
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".torchmeans-native-")]


def test_user_flags_cannot_change_a_variants_code_or_numerics():
    flags = _build.environment_flags(
        "-I/opt/include -DNDEBUG", "-O2 -g -march=native -mavx2 -mfma -mtune=haswell "
        "-ffast-math -Ofast -funsafe-math-optimizations -mmacosx-version-min=11.0 -Wall")
    assert flags == ["-I/opt/include", "-DNDEBUG", "-O2", "-g",
                     "-mmacosx-version-min=11.0", "-Wall"]


def test_disabled_by_environment():
    done = _run("from torchmeans.backends.native import kernel as _native; "
                "print(_native.unavailable_reason())",
                TORCHMEANS_NATIVE="0")
    assert done.returncode == 0, done.stderr
    assert "TORCHMEANS_NATIVE=0" in done.stdout


@needs_kernel
def test_nothing_is_compiled_or_cached_at_run_time(tmp_path):
    """The first fit needs no compiler and writes nothing (no cache)."""
    done = _run("""
        import numpy as np
        from torchmeans import KMeans
        from torchmeans.backends.native import kernel as _native
        assert _native.available(), _native.unavailable_reason()
        KMeans(3, backend="native", n_init=1, random_state=0).fit(
            np.random.default_rng(0).random((500, 4)))
        print("ok")
    """, CC=str(tmp_path / "no-such-compiler"), PATH=str(tmp_path), HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path), TORCHMEANS_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert not list(tmp_path.iterdir())


@needs_kernel
def test_the_build_records_its_variants_and_links_no_openmp_runtime():
    info = _native.build_info()
    expected = ["avx512", "avx2", "portable"] if info["machine"] == "x86_64" else ["portable"]
    assert info["variants"] == expected, info
    assert info["failed"] == {}
    assert info["error"] is None
    assert _native.variant() == _native.cpu_variant()  # the best this CPU runs, by default
    assert _native.cpu_variant() in expected
    readelf = shutil.which("readelf")
    if sys.platform != "linux" or readelf is None:
        return
    for name in expected:
        dynamic = subprocess.run([readelf, "-d", str(_native.LIBRARY_DIR /
                                                     _build.library_name(name))],
                                 capture_output=True, text=True, check=True).stdout
        needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
        assert needed
        assert not [line for line in needed if "omp" in line], needed


def test_the_isa_knob_picks_a_variant_no_higher_than_the_cpu(monkeypatch):
    built = ["avx512", "avx2", "portable"]
    monkeypatch.delenv("TORCHMEANS_NATIVE_ISA", raising=False)
    assert _native._requested_variant(4, built) == built
    assert _native._requested_variant(3, built) == ["avx2", "portable"]
    assert _native._requested_variant(0, built) == ["portable"]
    assert _native._requested_variant(3, ["portable"]) == ["portable"]
    monkeypatch.setenv("TORCHMEANS_NATIVE_ISA", "AVX2")
    assert _native._requested_variant(4, built) == ["avx2"]
    with pytest.raises(OSError, match="runs at most the portable variant"):
        _native._requested_variant(0, built)
    with pytest.raises(OSError, match="was not built here"):
        _native._requested_variant(4, ["portable"])
    monkeypatch.setenv("TORCHMEANS_NATIVE_ISA", "sse9")
    with pytest.raises(OSError, match="not one of avx512, avx2, portable"):
        _native._requested_variant(4, built)


RUNNABLE = ([] if REASON is not None else
            [v for v in _native.build_info()["variants"]
             if _native.VARIANT_LEVELS[v] <= _native._kernel().cpu_level])
VARIANT_FITS = """
    import hashlib, json
    import numpy as np
    from torchmeans import KMeans
    from torchmeans.backends.native import kernel as _native
    kernel = _native._kernel()
    out = {"variant": _native.variant(), "tiled": kernel.tiled_vector_bytes,
           "direct": kernel.direct_max_features}
    rng = np.random.default_rng(0)
    for n, d, k, dtype in ((4000, 2, 5, np.float64), (4000, 8, 16, np.float32),
                           (3000, 40, 9, np.float32), (2000, 130, 70, np.float64)):
        centers = rng.normal(scale=8, size=(k, d))
        X = (centers[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
        km = KMeans(k, n_init=1, max_iter=30, tol=0.0, random_state=1, backend="native").fit(X)
        out[f"{n}x{d}"] = [hashlib.sha256(km.labels_.tobytes()).hexdigest(), km.n_iter_]
    print(json.dumps(out))
"""


@pytest.mark.skipif(len(RUNNABLE) < 2, reason="fewer than two variants run on this CPU")
def test_every_variant_loads_and_gives_the_same_labels():
    """Each variant this CPU runs, asked for by TORCHMEANS_NATIVE_ISA: its own code paths
    (portable x86-64: GEMM + step; AVX2: 2 x 4 tiles; AVX-512: 4 x 5), the same fits."""
    runs = {}
    for name in RUNNABLE:
        done = _run(VARIANT_FITS, TORCHMEANS_NATIVE_ISA=name)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout)
        assert runs[name].pop("variant") == name
    paths = {name: (run.pop("tiled"), run.pop("direct")) for name, run in runs.items()}
    expected_paths = {"avx512": (64, 16), "avx2": (32, 16),
                      "portable": (0, 0) if platform.machine() == "x86_64" else (0, 16)}
    assert paths == {name: expected_paths[name] for name in runs}
    first = runs[RUNNABLE[0]]
    for name in RUNNABLE[1:]:
        assert runs[name] == first, name


@needs_kernel
@pytest.mark.parametrize(("n_features", "entry"), [
    pytest.param(2, "lloyd_direct", marks=needs_direct), (20, "lloyd_step")])
def test_auto_uses_the_kernel_on_dense_cpu_data(monkeypatch, tiled, n_features, entry):
    if tiled and n_features > 16:
        entry = "lloyd_direct"
    calls = []
    original = getattr(_native, entry)

    def spy(*args, **kwargs):
        calls.append(kwargs.get("transposed"))
        return original(*args, **kwargs)

    monkeypatch.setattr(_native, entry, spy)
    # one call per pass (not the whole run of small problems: tests/test_small_fits.py)
    monkeypatch.setattr(native_backend_module, "SMALL_RUN_MAX_WORK", 0)
    X, init = random_row_data(300, n_features, 3, 3, seed=0)
    km = KMeans(3, init=init, n_init=1).fit(X)
    assert calls
    if entry == "lloyd_step":
        assert all(calls)  # k=3: the (k, rows) score layout
    calls.clear()
    KMeans(3, init=init, n_init=1, backend="torch").fit(X)
    assert not calls
    assert to_numpy(km.labels_).shape == (300,)


@needs_direct
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_features", range(1, 17))
def test_direct_kernel_equals_the_gemm_at_every_width(n_features, dtype):
    """Each compiled width: same labels as the GEMM, sums to rounding, odd row counts."""
    generator = torch.Generator().manual_seed(n_features)
    for n_samples, n_clusters in ((1, 1), (300, 1), (515, 7), (1000, 300)):
        X = torch.randn(n_samples, n_features, generator=generator, dtype=dtype) * 10
        centers = torch.randn(n_clusters, n_features, generator=generator, dtype=dtype) * 10
        weight = torch.rand(n_samples, generator=generator, dtype=dtype) + 0.5
        labels = torch.full((n_samples,), -1)
        expected, got, torch_labels, native_labels = _pass_pair(X, weight, centers, 256,
                                                                labels, False)
        assert torch.equal(native_labels, torch_labels)
        scale = float(expected.abs().max()) + 1.0
        np.testing.assert_allclose(got.numpy(), expected.double().numpy(), rtol=0,
                                   atol=2e-5 * scale * n_samples)
        data = DenseData(X, weight)
        shifted = centers - data.offset
        by_gemm = assign(data, shifted, chunk_bytes=4096)
        by_kernel = assign(data, shifted, chunk_bytes=4096, backend=NativeBackend())
        assert torch.equal(by_kernel.labels, by_gemm.labels)
        # (same distances; the kernel's larger chunks sum them in another order)
        torch.testing.assert_close(by_kernel.inertia, by_gemm.inertia, rtol=1e-6, atol=0)


@needs_direct
def test_direct_kernel_checks_its_inputs():
    X, centers = torch.randn(10, 17), torch.randn(3, 17)
    labels = torch.zeros(10, dtype=torch.int64)
    with tiled_kernel(False), pytest.raises(ValueError, match=r"1 to 16 features.* not 17"):
        _native.lloyd_direct(X, centers, centers.square().sum(1), None, labels, None,
                             incremental=False)
    X, centers = X[:, :4], centers[:, :4].contiguous()
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _native.lloyd_direct(X, centers, centers.square().sum(1), None, labels[:9], None,
                             incremental=False)
    with pytest.raises(ValueError, match="dtype"):
        _native.lloyd_direct(X, centers.double(), centers.square().sum(1).double(), None,
                             labels, None, incremental=False)
    with tiled_kernel(False):
        assert not _native.direct_applies(17)
    assert _native.direct_applies(17) == TILED
    assert _native.direct_applies(16)
    assert not _native.direct_applies(0)


@needs_direct
@pytest.mark.parametrize("n_features", [5, pytest.param(40, marks=needs_tiled)])
def test_predict_labels_with_the_fits_kernel(monkeypatch, n_features):
    """predict (and score) use the kernel where the fit did, so labels_ == predict(X)."""
    X, init = random_row_data(2000, n_features, 4, 4, seed=3)
    calls = []
    original = _native.lloyd_direct

    def spy(*args, **kwargs):
        calls.append(args[5] is None)  # labels only: accumulators None
        return original(*args, **kwargs)

    monkeypatch.setattr(_native, "lloyd_direct", spy)
    km = KMeans(4, init=init, n_init=1).fit(X)
    calls.clear()
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    assert calls
    assert all(calls)
    calls.clear()
    torch_fit = KMeans(4, init=init, n_init=1, backend="torch").fit(X)
    np.testing.assert_array_equal(torch_fit.predict(X), km.labels_)
    assert not calls


@needs_direct
def test_one_feature_in_any_layout():
    """A single column may come as a transposed view (pandas, ``a.reshape(1, -1).T``)."""
    X, init = random_row_data(500, 1, 3, 3, seed=4)
    km = KMeans(3, init=init, n_init=1).fit(X)
    for view in (np.ascontiguousarray(X.T).T, torch.from_numpy(np.ascontiguousarray(X.T)).T):
        np.testing.assert_array_equal(to_numpy(km.predict(view)), km.labels_)
        assert km.score(view) == pytest.approx(km.score(X))
    pandas = pytest.importorskip("pandas")
    np.testing.assert_array_equal(km.predict(pandas.DataFrame({"a": X[:, 0]})), km.labels_)
    fitted = KMeans(3, init=init, n_init=1).fit(np.ascontiguousarray(X.T).T)
    np.testing.assert_array_equal(fitted.labels_, km.labels_)


def _integer_rows(generator, n, d):
    """Small integers: every product and sum is exact in float32, whatever the order."""
    return torch.randint(-4, 5, (n, d), generator=generator)


@needs_tiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_features", [17, 23, 64, 100, 513])
@pytest.mark.parametrize("strided", [False, True])
def test_tiled_kernel_takes_the_exact_first_minimum(n_features, dtype, strided):
    """Exact scores (integer data): the label is the first center at the exact minimum.

    Integer rows tie often, also between duplicated centers placed across the kernel's
    groups of centers and row tiles of every size (full tiles are transposed in
    registers, by blocks of 8 or 16 features, the rest one value at a time); rows may be
    views with a longer row stride. The reference is integer arithmetic.
    """
    generator = torch.Generator().manual_seed(n_features)
    for n_samples, n_clusters in ((1, 1), (63, 4), (64, 5), (65, 6), (515, 11), (700, 70)):
        wide = _integer_rows(generator, n_samples, n_features + 3 * strided)
        X = wide[:, :n_features]
        centers = _integer_rows(generator, n_clusters, n_features)
        centers[n_clusters // 2 :: 3] = centers[0].clone()  # exact duplicates of center 0
        distances = (X[:, None, :] - centers[None]).square().sum(2)  # exact, int64
        expected = (distances == distances.min(1, keepdim=True).values).int().argmax(1)
        labels = torch.full((n_samples,), -1)
        x, c = wide.to(dtype)[:, :n_features], centers.to(dtype)
        assert x.stride(0) == n_features + 3 * strided
        _native.lloyd_direct(x, c, c.square().sum(1), None, labels, None, incremental=False)
        assert torch.equal(labels, expected), (n_samples, n_clusters)
        accumulators = _native.new_accumulators(n_clusters, n_features)
        labels = torch.full((n_samples,), -1)
        _native.lloyd_direct(x, c, c.square().sum(1), None, labels, accumulators,
                             incremental=False)
        total = accumulators.sum(0)
        sums = total[: n_clusters * n_features].view(n_clusters, n_features)
        expected_sums = torch.zeros(n_clusters, n_features, dtype=torch.int64).index_add_(
            0, expected, X)
        assert torch.equal(labels, expected)
        assert torch.equal(sums, expected_sums.double())
        assert torch.equal(total[n_clusters * n_features : -2],
                           torch.bincount(expected, minlength=n_clusters).double())
        # partial inertia: sum of ||c||^2 - 2 x.c at the minimum, exact here
        partial = (distances.min(1).values - X.square().sum(1)).sum()
        assert total[-2] == float(partial)
        assert total[-1] == n_samples


@needs_tiled
def test_tiled_labels_do_not_depend_on_threads_or_chunks():
    X, init = random_row_data(5000, 96, 8, 40, seed=7)
    fits = []
    for limit, chunk_bytes in ((1, None), (None, None), (None, 1 << 12)):
        with threadpool_limits(limits=limit):
            fits.append(KMeans(40, init=init, n_init=1, max_iter=20, tol=0.0, backend="native",
                               chunk_bytes=chunk_bytes).fit(X.astype(np.float32)))
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit.labels_, fits[0].labels_)
        np.testing.assert_allclose(fit.cluster_centers_, fits[0].cluster_centers_, rtol=1e-6)


def test_tiled_kernel_can_be_turned_off():
    done = _run("""
        from torchmeans.backends.native import kernel as _native
        print(_native.available(), _native.direct_applies(16), _native.direct_applies(17))
    """, TORCHMEANS_NATIVE_TILED="0")
    assert done.returncode == 0, done.stderr
    available, sixteen, seventeen = done.stdout.split()
    assert seventeen == "False"
    assert sixteen == available == "True" or REASON is not None


def _run_tests_with_variant(variant: str, selection: str) -> None:
    env = {**os.environ, "TORCHMEANS_NATIVE_ISA": variant}
    probe = subprocess.run([sys.executable, "-c",
                            "from torchmeans.backends.native import kernel as _native; "
                            "print(_native.variant())"], capture_output=True, text=True, env=env)
    assert probe.stdout.split() == [variant], probe.stderr
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           __file__, "-k", selection], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


@needs_tiled
@pytest.mark.skipif(RUNNABLE[:2] != ["avx512", "avx2"],
                    reason="the default variant is already the AVX2 one (or has no tiled kernel)")
def test_avx2_variant_passes_the_tiled_tests():
    """The AVX2 branches (2 x 4 tiles, transposition by permutes and blends, the seeding's
    steps) are in the avx2 variant only: run the exact tests of the tiled kernel and of the
    seeding's steps against it."""
    _run_tests_with_variant("avx2", "exact_first_minimum or seeding_steps_equal")


@pytest.mark.skipif("portable" not in RUNNABLE[1:], reason="the portable variant is the default")
def test_portable_variant_passes_the_pass_tests():
    """The portable variant (x86-64 baseline: no FMA, so GEMM + lloyd_step everywhere)."""
    _run_tests_with_variant("portable", "exact_ties or empty_clusters or sq_distances or "
                                        "threads_follow")  # fits: the test above


def _seeding_steps_reference(x, weight, closest, pool, pool_now, thresholds, n_trials,
                             max_steps):
    """The seeding's steps over one pool (TiledRows.seeding_steps), in float64 torch."""
    x, pool = x.double(), pool.double()
    closest, pool_now = closest.double().clone(), pool_now.double().clone()  # (not in place)
    weight = torch.ones(len(x), dtype=torch.float64) if weight is None else weight.double()
    winners, next_proposal = [], 0
    while len(winners) < max_steps:
        later = range(next_proposal, len(pool))
        trials = [p for p in later if not winners or thresholds[p] < pool_now[p]][:n_trials]
        if winners and len(trials) < n_trials:
            break
        distances = torch.minimum(torch.cdist(x, pool[trials]).square(), closest[:, None])
        best = int((weight @ distances).argmin())
        winners.append(trials[best])
        closest = distances[:, best]
        next_proposal = trials[-1] + 1
        gaps = torch.cdist(pool[next_proposal:], pool[trials[best]][None]).square()[:, 0]
        pool_now[next_proposal:] = torch.minimum(pool_now[next_proposal:], gaps)
    return winners, closest, pool_now


@needs_tiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n_rows", "n_features", "n_trials", "n_pool", "max_steps"),
                         [(1, 3, 1, 4, 3), (31, 17, 8, 60, 5), (100, 128, 9, 200, 12),
                          (257, 5, 20, 50, 4), (300, 40, 3, 12, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_seeding_steps_equal_float64(dtype, n_rows, n_features, n_trials, n_pool, max_steps,
                                     weighted):
    """The seeding's fused steps: candidates accepted in pool order, the least potential
    sum_i w_i min(D_i, ||x_i - c||^2) wins, D and the pool's D^2 drop to the winner's
    distances; fewer steps when the pool is used up (the last case)."""
    generator = torch.Generator().manual_seed(n_rows)
    x = torch.randn(n_rows, n_features, generator=generator, dtype=dtype)
    weight = torch.rand(n_rows, generator=generator, dtype=dtype) + 0.5 if weighted else None
    pool = torch.randn(n_pool, n_features, generator=generator, dtype=dtype)
    closest = torch.rand(n_rows, generator=generator, dtype=dtype) * 3 * n_features
    pool_now = torch.rand(n_pool, generator=generator, dtype=dtype) * 3 * n_features
    thresholds = torch.rand(n_pool, generator=generator, dtype=dtype) * pool_now
    expected = _seeding_steps_reference(x, weight, closest, pool, pool_now, thresholds,
                                        n_trials, max_steps)
    rows = _native.TiledRows(x, weight)
    padded = rows.padded(closest)
    winners = rows.seeding_steps(padded, pool, pool.square().sum(1), pool_now, thresholds,
                                 n_trials, max_steps)
    assert winners.tolist() == expected[0]
    tolerance = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(padded[:n_rows].double(), expected[1], rtol=tolerance,
                               atol=tolerance * 4 * n_features)
    assert not padded[n_rows:].any()  # padding rows: distance 0
    torch.testing.assert_close(pool_now.double(), expected[2], rtol=tolerance,
                               atol=tolerance * 4 * n_features)
    if (n_pool, max_steps) == (12, 10):
        assert 0 < len(winners) < max_steps  # the pool ran out
    with pytest.raises(ValueError, match="inconsistent"):
        rows.seeding_steps(closest, pool, pool.square().sum(1), pool_now, thresholds, 1, 1)


@needs_tiled
def test_in_memory_passes_take_large_chunks(monkeypatch):
    """Views cost nothing per chunk: a direct pass calls the kernel once per 65,536 rows."""
    monkeypatch.setattr(native_backend_module, "DIRECT_VIEW_CHUNK_ROWS", 1 << 16)
    calls = []
    original = _native.lloyd_direct

    def spy(x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(_native, "lloyd_direct", spy)
    X, init = random_row_data(70_000, 20, 4, 4, seed=2)
    data = DenseData(torch.from_numpy(X), torch.ones(len(X), dtype=torch.float64))
    labels = torch.full((len(X),), -1)
    NativeBackend().lloyd_pass(data, torch.from_numpy(init) - data.offset, labels, 100)
    assert calls == [1 << 16, 70_000 - (1 << 16)]


@needs_kernel
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 200),
       n_features=st.sampled_from([1, 3, 17, 130]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_sq_distances_equal_float64_differences(seed, n_rows, n_features, dtype):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, n_features, generator=gen, dtype=dtype) * 100
    centers = torch.randn(7, n_features, generator=gen, dtype=dtype)
    labels = torch.randint(7, (n_rows,), generator=gen)
    expected = (x.double() - centers.double()[labels]).square().sum(dim=1)
    got = _native.sq_distances_to(x, centers, labels)
    assert got.dtype == dtype
    # summed in float64 (in another order than torch's): within a float64 rounding, then
    # rounded once to the rows' dtype
    rtol = 1e-12 if dtype == torch.float64 else torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), expected, rtol=rtol, atol=0)


@needs_kernel
def test_sq_distances_reject_bad_labels():
    x, centers = torch.randn(5, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="labels outside"):
        _native.sq_distances_to(x, centers, torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="inconsistent"):
        _native.sq_distances_to(x, centers.double(), torch.zeros(5, dtype=torch.int64))


def test_inertia_distances_follow_the_backend(monkeypatch):
    # backend='auto' (native on the CPU): the inertia's exact distances come from the
    # kernel; backend='torch' stays with torch ops. Both equal the float64 inertia.
    calls = []
    original = _native.sq_distances_to
    monkeypatch.setattr(_native, "sq_distances_to",
                        lambda *args: calls.append(1) or original(*args))
    X, init = random_row_data(3000, 40, 12, 9, seed=4)
    X = X.astype(np.float32)
    X64 = X.astype(np.float64)
    for backend in ("auto", "torch"):
        calls.clear()
        km = KMeans(9, init=init, n_init=1, max_iter=5, backend=backend).fit(X)
        centers = km.cluster_centers_.astype(np.float64)
        expected = ((X64 - centers[km.labels_]) ** 2).sum()
        assert km.inertia_ == pytest.approx(expected, rel=1e-5)
        assert bool(calls) == (backend == "auto" and _native.direct_applies(40))
