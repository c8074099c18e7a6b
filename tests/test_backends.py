"""The backend registry: 'triton' fits (under the interpreter here) equal the torch reference."""

from __future__ import annotations

import os

import pytest
import scipy.sparse as sp
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")


import torchmeans
from torchmeans import KMeans
from torchmeans.backends import resolve_backend
from torchmeans.backends.native import kernel as _native
from torchmeans.backends.triton import kernels as _triton
from torchmeans.core.validation import prepare_data

pytestmark = pytest.mark.triton

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if _triton.unavailable_reason(DEVICE) is not None:
    pytest.skip(f"triton kernels: {_triton.unavailable_reason(DEVICE)}", allow_module_level=True)


def _blobs(n: int, n_features: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(0, 5, (n, 1), generator=generator).float() * 2
    return (torch.randn(n, n_features, generator=generator) + shift).to(DEVICE)


@pytest.mark.parametrize(("n", "n_features", "k"), [(300, 3, 5), (257, 20, 40), (120, 1, 3)])
def test_triton_fit_equals_the_torch_fit(n, n_features, k):
    X = _blobs(n, n_features, seed=n)
    init = X[:k].clone()
    reference = KMeans(k, init=init, n_init=1, backend="torch").fit(X)
    fused = KMeans(k, init=init, n_init=1, backend="triton").fit(X)
    assert torch.equal(fused.labels_, reference.labels_)
    torch.testing.assert_close(fused.cluster_centers_, reference.cluster_centers_)
    assert fused.n_iter_ == reference.n_iter_
    assert fused.inertia_ == pytest.approx(reference.inertia_, rel=1e-5)


def test_triton_with_weights_and_low_precision_equals_torch():
    X = _blobs(200, 6, seed=2)
    weight = torch.rand(200, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    init = X[:4].clone()
    for options in ({}, {"precision": "fast"}):
        reference = torchmeans.kmeans(X, 4, init=init, sample_weight=weight, backend="torch",
                                      **options)
        fused = torchmeans.kmeans(X, 4, init=init, sample_weight=weight, backend="triton",
                                  **options)
        assert torch.equal(fused.labels, reference.labels)
        torch.testing.assert_close(fused.centers, reference.centers)
    half = torchmeans.kmeans(X.half(), 4, init=init, backend="triton")
    single = torchmeans.kmeans(X.half().float(), 4, init=init, backend="torch")
    assert torch.equal(half.labels, single.labels)


def test_triton_fits_are_bit_identical():
    X = _blobs(300, 5, seed=9)
    first = KMeans(6, random_state=0, n_init=1, backend="triton").fit(X)
    second = KMeans(6, random_state=0, n_init=1, backend="triton").fit(X)
    assert torch.equal(first.cluster_centers_, second.cluster_centers_)
    assert torch.equal(first.labels_, second.labels_)


def test_explicit_triton_raises_when_it_cannot_run():
    with pytest.raises(ValueError, match=r"backend='triton' cannot run: .*float64"):
        KMeans(2, backend="triton").fit(torch.randn(20, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"backend='triton' cannot run: .*sparse"):
        KMeans(2, backend="triton").fit(sp.random(20, 5, density=0.5, format="csr",
                                                  dtype="float32"))


def test_auto_never_picks_the_interpreter_on_the_cpu():
    data = prepare_data(torch.randn(50, 3), None)
    assert resolve_backend("auto", data, 4, 1 << 24).name in ("native", "torch")
    assert resolve_backend("triton", data, 4, 1 << 24).name == "triton"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_self_check_passes_for_the_kernels(dtype):
    _triton.self_check.cache_clear()
    assert _triton.self_check(DEVICE, dtype) is None


def test_self_check_reports_a_failing_kernel(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("PassManager::run failed")

    _triton.self_check.cache_clear()
    monkeypatch.setattr(_triton, "nearest", broken)
    reason = _triton.self_check(DEVICE, torch.float32)
    assert reason is not None
    assert "PassManager::run failed" in reason
    _triton.self_check.cache_clear()

    def wrong(x, centers_t, sq_norms, **kwargs):  # every row labelled 0
        zeros = torch.zeros(x.shape[0], device=x.device)
        return zeros, torch.zeros(x.shape[0], dtype=torch.int64, device=x.device), zeros

    monkeypatch.setattr(_triton, "nearest", wrong)
    assert "disagreed" in _triton.self_check(DEVICE, torch.float32)
    _triton.self_check.cache_clear()


def test_native_step_refuses_inconsistent_sizes():
    if not _native.available():
        pytest.skip(f"native kernel: {_native.unavailable_reason()}")
    x = torch.randn(10, 3)
    scores = torch.randn(10, 4)
    accumulators = _native.new_accumulators(4, 3)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _native.lloyd_step(scores, x, None, torch.zeros(9, dtype=torch.int64), accumulators,
                           transposed=False, incremental=False)
