"""The fused Triton kernels (``torchmeans/backends/triton/kernels.py``) against torch references.

Without CUDA the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set
below before any kernel is defined), on CPU tensors through numpy. The interpreter
is slow, so the sizes stay small; they are odd on purpose, to exercise the masks of
partial row, center and feature tiles (``d < 16`` and ``d > 1024`` included) and
center loops longer than one tile.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from torchmeans.backends.triton import kernels as _triton

pytestmark = pytest.mark.triton

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if _triton.unavailable_reason(DEVICE) is not None:  # e.g. TRITON_INTERPRET=0 set by hand
    pytest.skip(f"triton kernels: {_triton.unavailable_reason(DEVICE)}", allow_module_level=True)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed)).to(dtype).to(DEVICE)


def _terms(centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(centers_t, sq_norms)`` as the caller passes them."""
    return centers.T.contiguous(), centers.float().square().sum(dim=1)


def _scores64(x: torch.Tensor, centers: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Exact-ish float64 scores of the (already rounded) inputs."""
    return norms.double()[None, :] - 2 * x.double() @ centers.double().T


def _first_argmin(scores: torch.Tensor) -> torch.Tensor:
    """Smallest index attaining each row's minimum (explicitly, not relying on torch.min)."""
    k = scores.shape[1]
    index = torch.arange(k, device=scores.device).expand_as(scores)
    minimum = scores.min(dim=1, keepdim=True).values
    return torch.where(scores == minimum, index, k).min(dim=1).values


def _second64(scores: torch.Tensor) -> torch.Tensor:
    if scores.shape[1] == 1:
        return torch.full((scores.shape[0],), float("inf"), dtype=torch.float64,
                          device=scores.device)
    return scores.sort(dim=1).values[:, 1]


def _scale(x: torch.Tensor, centers: torch.Tensor, norms: torch.Tensor) -> float:
    """Magnitude of the terms of the scores: the yardstick of rounding errors."""
    return float(norms.double().max() + 2 * (x.double().abs() @ centers.double().abs().T).max())


SHAPES = [  # (n, d, k)
    (1, 1, 1),
    (7, 3, 5),
    (129, 17, 64),
    (300, 3, 200),
    (129, 130, 200),
    (300, 17, 1),
    (7, 1030, 5),
    (20, 1030, 200),
]


# -- nearest ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d", "k"), SHAPES)
def test_nearest_float32_matches_torch(n, d, k):
    x = _randn(n, d, seed=n * 1000 + d)
    centers = _randn(k, d, seed=k * 1000 + d + 1)
    centers_t, norms = _terms(centers)
    values, labels, second = _triton.nearest(x, centers_t, norms, second=True)
    assert values.dtype == torch.float32
    assert values.shape == (n,)
    assert labels.dtype == torch.int64
    assert labels.shape == (n,)
    assert second.dtype == torch.float32
    assert second.shape == (n,)

    # The float32 torch path gives the same labels on random data.
    ref_values, ref_labels = (norms[None, :] - 2 * x @ centers.T).min(dim=1)
    assert torch.equal(labels, ref_labels)
    scale = _scale(x, centers, norms)
    torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-6 * scale)

    # And values close to the float64 scores of the same inputs.
    scores = _scores64(x, centers, norms)
    torch.testing.assert_close(values.double(), scores.min(dim=1).values, rtol=1e-5,
                               atol=1e-6 * scale)
    torch.testing.assert_close(second.double(), _second64(scores), rtol=1e-5, atol=1e-6 * scale)
    assert (second >= values).all()


def test_nearest_without_second_returns_a_pair():
    x = _randn(9, 4, seed=1)
    centers = _randn(3, 4, seed=2)
    result = _triton.nearest(x, *_terms(centers))
    assert len(result) == 2
    values, labels, _ = _triton.nearest(x, *_terms(centers), second=True)
    assert torch.equal(result[0], values)
    assert torch.equal(result[1], labels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("n", "d", "k"), [(7, 3, 5), (129, 17, 64), (129, 130, 200),
                                           (7, 1030, 5)])
def test_nearest_half_precision_matches_float64_of_rounded_inputs(dtype, n, d, k):
    x = _randn(n, d, seed=n + d, dtype=dtype)
    centers = _randn(k, d, seed=k + d + 7, dtype=dtype)
    centers_t, norms = _terms(centers)
    values, labels, second = _triton.nearest(x, centers_t, norms, second=True)
    scores = _scores64(x, centers, norms)
    scale = _scale(x, centers, norms)
    tolerance = 1e-5 * scale  # products are exact; only the float32 accumulation rounds
    best = scores.min(dim=1).values
    assert ((values.double() - best).abs() <= tolerance).all()
    chosen = scores.gather(1, labels[:, None])[:, 0]
    assert ((chosen - best) <= 2 * tolerance).all()  # a near-tie may pick the other center
    finite = torch.isfinite(_second64(scores))
    assert ((second.double() - _second64(scores))[finite].abs() <= tolerance).all()
    assert torch.isinf(second[~finite]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("n", "d", "k"), [(50, 3, 64), (129, 2, 200), (33, 20, 7)])
def test_nearest_exact_ties_go_to_the_first_center(dtype, n, d, k):
    # Small integers: every product and score is exact in every dtype, so rows that
    # are equidistant from several centers (and duplicated centers) tie exactly.
    g = _generator(n + d + k)
    x = torch.randint(-2, 3, (n, d), generator=g).to(dtype).to(DEVICE)
    distinct = torch.randint(-2, 3, (5, d), generator=g)
    centers = distinct[torch.arange(k) % 5].to(dtype).to(DEVICE)  # copies in every tile
    centers_t, norms = _terms(centers)
    values, labels, second = _triton.nearest(x, centers_t, norms, second=True)
    scores = _scores64(x, centers, norms)
    assert torch.equal(labels, _first_argmin(scores))
    assert (labels < 5).all()
    assert torch.equal(values.double(), scores.min(dim=1).values)
    assert torch.equal(second.double(), _second64(scores))
    if k >= 10:  # every distinct center has a copy: each minimum is attained twice
        assert torch.equal(second, values)


def test_nearest_all_rows_equidistant_from_all_centers():
    # x = 0: every score is ||c||^2 = 1, across four center tiles.
    k, d = 200, 3
    eye = torch.eye(d)
    centers = torch.cat([eye, -eye])[torch.arange(k) % (2 * d)].to(DEVICE)
    x = torch.zeros(70, d, device=DEVICE)
    values, labels, second = _triton.nearest(x, *_terms(centers), second=True)
    assert (labels == 0).all()
    assert (values == 1).all()
    assert (second == 1).all()


def test_nearest_later_tile_must_be_strictly_smaller():
    # The best center is copied in the first and in the last (partial) tile.
    d, k = 4, 150
    centers = 5 + _randn(k, d, seed=3)
    x = _randn(11, d, seed=4)
    centers[0] = 0
    centers[k - 1] = 0
    values, labels, second = _triton.nearest(x, *_terms(centers), second=True)
    assert (labels == 0).all()
    assert torch.equal(second, values)


def test_nearest_accepts_strided_inputs():
    x_wide = _randn(40, 30, seed=5)
    centers = _randn(70, 19, seed=6)
    x = x_wide[:, 3:22]  # row stride 30
    norms = centers.square().sum(dim=1)
    got = _triton.nearest(x, centers.T, norms, second=True)  # a (d, k) view of (k, d) rows
    want = _triton.nearest(x.contiguous(), centers.T.contiguous(), norms, second=True)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-5)


def test_nearest_empty_rows():
    centers = _randn(3, 5, seed=7)
    values, labels = _triton.nearest(torch.empty(0, 5, device=DEVICE), *_terms(centers))
    assert values.shape == labels.shape == (0,)


def test_nearest_rejects_float64_and_mismatches():
    x = _randn(5, 3, seed=8)
    centers = _randn(4, 3, seed=9)
    centers_t, norms = _terms(centers)
    with pytest.raises(TypeError, match="float64"):
        _triton.nearest(x.double(), centers_t.double(), norms)
    with pytest.raises(TypeError, match="dtype of x"):
        _triton.nearest(x, centers_t.half(), norms)
    with pytest.raises(TypeError, match="float32"):
        _triton.nearest(x, centers_t, norms.double())
    with pytest.raises(ValueError, match="centers_t"):
        _triton.nearest(x, centers_t[:2], norms)
    with pytest.raises(ValueError, match="center_sq_norms"):
        _triton.nearest(x, centers_t, norms[:2])


# -- segment_sums ----------------------------------------------------------------------


def _segment_reference(x, labels, weight, k):
    keep = labels >= 0
    w = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if weight is None \
        else weight.double()
    rows = x.double() * w[:, None]
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    sums.index_add_(0, labels[keep], rows[keep])
    magnitude = torch.zeros_like(sums).index_add_(0, labels[keep], rows[keep].abs())
    weights = torch.zeros(k, dtype=torch.float64, device=x.device)
    weights.index_add_(0, labels[keep], w[keep])
    return sums, weights, magnitude


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("n", "d", "k"), [(1, 1, 1), (7, 3, 5), (300, 17, 12),
                                           (129, 130, 9), (40, 1030, 3)])
def test_segment_sums_match_index_add(dtype, weighted, n, d, k):
    g = _generator(n + d + k)
    x = torch.randn(n, d, generator=g).to(dtype).to(DEVICE)
    # Labels skip cluster 1 (empty) and include ignored rows (-1, -3).
    labels = torch.randint(-1, k, (n,), generator=g)
    labels[labels == 1] = 0
    labels[::13] = -3
    labels = labels.to(DEVICE)
    weight = torch.rand(n, generator=g).to(DEVICE) + 0.5 if weighted else None
    sums, weights = _triton.segment_sums(x, labels, weight, k)
    assert sums.dtype == weights.dtype == torch.float64
    assert sums.shape == (k, d)
    assert weights.shape == (k,)
    ref_sums, ref_weights, magnitude = _segment_reference(x, labels, weight, k)
    assert ((sums - ref_sums).abs() <= 1e-6 * magnitude + 1e-12).all()
    torch.testing.assert_close(weights, ref_weights, rtol=1e-6, atol=1e-12)
    if k > 1:
        assert (sums[1] == 0).all()
        assert weights[1] == 0


def test_segment_sums_one_long_segment_is_bit_identical_across_calls():
    x = _randn(300, 130, seed=10)
    labels = torch.zeros(300, dtype=torch.int64, device=DEVICE)
    labels[5::7] = 2
    weight = torch.rand(300, generator=_generator(11)).to(DEVICE)
    first = _triton.segment_sums(x, labels, weight, 4)
    second = _triton.segment_sums(x, labels, weight, 4)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    ref_sums, ref_weights, magnitude = _segment_reference(x, labels, weight, 4)
    assert ((first[0] - ref_sums).abs() <= 1e-6 * magnitude + 1e-12).all()
    torch.testing.assert_close(first[1], ref_weights, rtol=1e-6, atol=0)


def test_segment_sums_all_ignored_and_int32_labels():
    x = _randn(20, 3, seed=12)
    labels = torch.full((20,), -1, dtype=torch.int32, device=DEVICE)
    sums, weights = _triton.segment_sums(x, labels, torch.ones(20, device=DEVICE), 3)
    assert (sums == 0).all()
    assert (weights == 0).all()
    labels[:4] = 2
    sums, weights = _triton.segment_sums(x, labels, None, 3)
    torch.testing.assert_close(sums[2], x[:4].double().sum(dim=0))
    assert weights.tolist() == [0.0, 0.0, 4.0]


def test_segment_sums_rejects_bad_inputs():
    x = _randn(6, 2, seed=13)
    labels = torch.tensor([0, 1, 2, 0, 1, 2], device=DEVICE)
    with pytest.raises(ValueError, match="below n_clusters"):
        _triton.segment_sums(x, labels, None, 2)
    with pytest.raises(TypeError, match="integers"):
        _triton.segment_sums(x, labels.float(), None, 3)
    with pytest.raises(TypeError, match="floating"):
        _triton.segment_sums(x.int(), labels, None, 3)
    with pytest.raises(ValueError, match="weight"):
        _triton.segment_sums(x, labels, torch.ones(5, device=DEVICE), 3)


# -- availability ----------------------------------------------------------------------


def test_unavailable_reason(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _triton.unavailable_reason(torch.device("cpu")) is None
    assert _triton.unavailable_reason(torch.device("cuda")) is None
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert _triton.unavailable_reason(torch.device("cpu")) == (
        "it runs on CUDA devices, the data is on cpu")
    assert _triton.unavailable_reason("cuda:0") is None
    if DEVICE.type == "cpu":
        with pytest.raises(RuntimeError, match="CUDA"):
            _triton.nearest(_randn(3, 2, seed=14), *_terms(_randn(2, 2, seed=15)))


def test_module_imports_without_triton():
    code = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # import triton now raises ImportError
        import torch
        from torchmeans.backends.triton import kernels as _triton
        print(_triton.unavailable_reason(torch.device("cuda")))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "triton is not installed"
