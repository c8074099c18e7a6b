"""Where the time of one torchmeans Lloyd pass goes, op by op, and what the alternatives cost.

Scratch profiling for issue 2 (not a test, not part of the library). Each number is the
best of ``--repeats`` full passes over the data in one process, in milliseconds.

``ops``: the ops of the torch backend's Lloyd pass timed one by one over a pass (chunked
as the library chunks for each ``--budgets`` value), next to the real ``accumulate()``.

``alternatives``: candidate replacements for each step at one budget: scores (fresh
``addmm`` / into a reused buffer / transposed), nearest center (``min`` / ``argmin`` /
``amin`` and transposed variants), per-cluster sums (``index_add_`` / ``scatter_add_``
with a materialized index / ``bincount`` per feature / sort + ``segment_reduce`` / sparse
CSR one-hot @ dense / dense one-hot GEMM for small k), weights (``index_add_`` /
``bincount``).

``compile``: ``torch.compile`` (inductor, CPU) of the per-chunk step, with its compile time.

Run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python benchmarks/profile_lloyd_step.py ops alternatives
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lloyd import DEFAULT_SHAPES, make_data, parse_shape
from torchmeans.backends.torch import TorchBackend, center_terms
from torchmeans.core.assign import chunk_rows_for
from torchmeans.data import DenseData

accumulate = TorchBackend().lloyd_pass

BUDGETS = ("256K", "1M", "4M", "16M", "64M")


def parse_bytes(text: str) -> int:
    """``256K``, ``4M`` or a plain number of bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs (after one warm-up), in ms."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def each(chunks: list[tuple[int, int]]) -> Callable[[Callable[[int, int], object]],
                                                   Callable[[], None]]:
    """``each(chunks)(lambda a, b: ...)``: a pass running the op per chunk, dropping each result.

    Keeping the results (a list comprehension) would grow the heap to ``N x k`` and time
    page faults instead of the op.
    """

    def wrap(op: Callable[[int, int], object]) -> Callable[[], None]:
        def run() -> None:
            for a, b in chunks:
                op(a, b)
        return run

    return wrap


class Problem:
    """Shifted data, initial centers and the labels after one pass, as torchmeans sees them."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        n, d, k = shape
        X, init = make_data(n, d, k)
        self.shape = shape
        self.data = DenseData(torch.from_numpy(X), torch.ones(n))
        self.centers = torch.from_numpy(init) - self.data.offset
        self.terms = center_terms(self.centers)
        self.labels = torch.full((n,), -1, dtype=torch.int64)
        rows = chunk_rows_for(self.data, k, 1 << 22)
        accumulate(self.data, self.centers, self.labels, rows)

    def bounds(self, budget: int) -> tuple[int, list[tuple[int, int]]]:
        rows = chunk_rows_for(self.data, self.shape[2], budget)
        n = self.shape[0]
        return rows, [(a, min(a + rows, n)) for a in range(0, n, rows)]


def profile_ops(problem: Problem, budgets: list[int], repeats: int) -> None:
    """Each op of ``accumulate()`` over one pass, per chunk budget."""
    _, d, k = problem.shape
    X, w, labels = problem.data._rows, problem.data.sample_weight, problem.labels
    sqn, ct = problem.terms.sq_norms, problem.terms.transposed
    sums, weights = torch.zeros(k, d), torch.zeros(k)
    for budget in budgets:
        rows, chunks = problem.bounds(budget)
        # The first chunk's scores stand for every chunk of the min step (same size and cost).
        s = torch.addmm(sqn, X[:rows], ct, alpha=-2)
        p = s.min(dim=1).values
        per_chunk = each(chunks)
        results = {
            "addmm": per_chunk(lambda a, b: torch.addmm(sqn, X[a:b], ct, alpha=-2)),
            "min(dim=1)": per_chunk(lambda a, b, s=s: s[: b - a].min(dim=1)),
            "labels !=": per_chunk(lambda a, b: (labels[a:b] != labels[a:b]).sum()),
            "labels copy_": per_chunk(lambda a, b: labels[a:b].copy_(labels[a:b])),
            "weight * x": per_chunk(lambda a, b: X[a:b] * w[a:b, None]),
            "index_add_ sums": per_chunk(lambda a, b: sums.index_add_(0, labels[a:b], X[a:b])),
            "index_add_ weights": per_chunk(
                lambda a, b: weights.index_add_(0, labels[a:b], w[a:b])),
            "partial @ w": per_chunk(lambda a, b, p=p: p[: b - a] @ w[a:b]),
        }
        times = {name: best_ms(fn, repeats) for name, fn in results.items()}
        scratch = problem.labels.clone()
        times["accumulate()"] = best_ms(
            lambda rows=rows, scratch=scratch: accumulate(problem.data, problem.centers,
                                                          scratch, rows),
            repeats)
        ops_total = sum(v for name, v in times.items() if name != "accumulate()")
        print(f"  budget {budget >> 10:>6} KiB, {rows:>7} rows x {len(chunks):>5} chunks: "
              + ", ".join(f"{name} {ms:.1f}" for name, ms in times.items())
              + f" (ops sum {ops_total:.1f})", flush=True)


def _first_min_transposed(scores_t: torch.Tensor, descending: torch.Tensor) -> torch.Tensor:
    """First index of the minimum down each column, from ``amin`` (k < 256)."""
    best = scores_t.amin(dim=0)
    hits = (scores_t == best).to(torch.uint8).mul_(descending)
    return scores_t.shape[0] - hits.amax(dim=0).long()


def profile_alternatives(problem: Problem, budget: int, repeats: int) -> None:
    """Candidate replacements for each step of a pass, at one chunk budget."""
    _, d, k = problem.shape
    X, w, labels = problem.data._rows, problem.data.sample_weight, problem.labels
    terms = problem.terms
    rows, chunks = problem.bounds(budget)
    ct_m2 = (-2 * problem.centers).T.contiguous()
    c_m2 = -2 * problem.centers
    sqn = terms.sq_norms
    buf = torch.empty(rows, k)
    buf_t = torch.empty(k, rows)
    sums, weights = torch.zeros(k, d), torch.zeros(k)
    s = torch.addmm(sqn, X[:rows], ct_m2)
    s_t = s.T.contiguous()
    per_chunk = each(chunks)
    cands: dict[str, Callable[[], object]] = {
        "scores: addmm (fresh)": per_chunk(
            lambda a, b: torch.addmm(sqn, X[a:b], terms.transposed, alpha=-2)),
        "scores: addmm(out=buf)": per_chunk(
            lambda a, b: torch.addmm(sqn, X[a:b], ct_m2, out=buf[: b - a])),
        "scores: mm(out=buf).add_": per_chunk(
            lambda a, b: torch.mm(X[a:b], ct_m2, out=buf[: b - a]).add_(sqn)),
        "scores: transposed addmm(out)": per_chunk(
            lambda a, b: torch.addmm(sqn[:, None], c_m2, X[a:b].T, out=buf_t[:, : b - a])),
        "nearest: min(dim=1)": per_chunk(lambda a, b: s[: b - a].min(dim=1)),
        "nearest: argmin(dim=1)": per_chunk(lambda a, b: s[: b - a].argmin(dim=1)),
        "nearest: amin(dim=1) (values only)": per_chunk(lambda a, b: s[: b - a].amin(dim=1)),
        "nearest: transposed min(dim=0)": per_chunk(lambda a, b: s_t[:, : b - a].min(dim=0)),
        "nearest: transposed amin(dim=0) (values only)": per_chunk(
            lambda a, b: s_t[:, : b - a].amin(dim=0)),
        "sums: index_add_": per_chunk(lambda a, b: sums.index_add_(0, labels[a:b], X[a:b])),
        "sums: scatter_add_ (materialized index)": per_chunk(
            lambda a, b: sums.scatter_add_(0, labels[a:b, None].expand(-1, d).contiguous(),
                                           X[a:b])),
        "sums: sort + segment_reduce": per_chunk(
            lambda a, b: _sorted_segment_sums(X[a:b], labels[a:b], k)),
        "sums: sparse CSR one-hot @ x": per_chunk(
            lambda a, b: _sparse_sums(X[a:b], labels[a:b], w[a:b], k)),
        "weights: index_add_": per_chunk(
            lambda a, b: weights.index_add_(0, labels[a:b], w[a:b])),
        "weights: bincount(weights=w)": per_chunk(
            lambda a, b: torch.bincount(labels[a:b], weights=w[a:b], minlength=k)),
        "weights: bincount (unit weights)": per_chunk(
            lambda a, b: torch.bincount(labels[a:b], minlength=k)),
    }
    if d <= 128:
        cands["sums: bincount per feature"] = per_chunk(
            lambda a, b: [torch.bincount(labels[a:b], weights=X[a:b, j], minlength=k)
                          for j in range(d)])
    if k < 256:
        descending = torch.arange(k, 0, -1, dtype=torch.uint8)[:, None]
        cands["nearest: transposed amin + first-hit amax"] = per_chunk(
            lambda a, b: _first_min_transposed(s_t[:, : b - a], descending))
    if k <= 64:
        arange = torch.arange(k)
        cands["sums: dense one-hot GEMM"] = per_chunk(
            lambda a, b: sums.addmm_((labels[a:b, None] == arange).to(X.dtype).T, X[a:b]))
    print(f"  budget {budget >> 10} KiB ({rows} rows x {len(chunks)} chunks), ms per pass:",
          flush=True)
    for name, fn in cands.items():
        print(f"    {name:<46} {best_ms(fn, repeats):8.1f}", flush=True)


def _sorted_segment_sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    order = torch.argsort(labels, stable=True)
    lengths = torch.bincount(labels, minlength=k)
    return torch.segment_reduce(x.index_select(0, order), "sum", lengths=lengths)


def _sparse_sums(x: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    # (k x rows) CSR one-hot built from a stable sort of the labels, then sparse @ dense.
    order = torch.argsort(labels, stable=True)
    crow = torch.zeros(k + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(labels, minlength=k), 0, out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        onehot = torch.sparse_csr_tensor(crow, order, w.index_select(0, order),
                                         size=(k, x.shape[0]))
    return onehot @ x


def _chunk_step(x: torch.Tensor, ct_m2: torch.Tensor, sqn: torch.Tensor,
                old: torch.Tensor) -> tuple[torch.Tensor, ...]:
    partial, labels = torch.addmm(sqn, x, ct_m2).min(dim=1)
    k = ct_m2.shape[1]
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, labels, x)
    weights = torch.bincount(labels, minlength=k).to(x.dtype)
    return labels, sums, weights, partial.sum(), (old != labels).sum()


def profile_compile(problem: Problem, budget: int, repeats: int) -> None:
    """Eager vs ``torch.compile`` (inductor) of the per-chunk step, with compile time."""
    X, labels = problem.data._rows, problem.labels
    ct_m2 = (-2 * problem.centers).T.contiguous()
    sqn = problem.terms.sq_norms
    _, chunks = problem.bounds(budget)

    def run(step: Callable[..., tuple[torch.Tensor, ...]]) -> None:
        for a, b in chunks:
            step(X[a:b], ct_m2, sqn, labels[a:b])

    eager = best_ms(lambda: run(_chunk_step), repeats)
    torch._dynamo.reset()
    compiled = torch.compile(_chunk_step, dynamic=False)
    start = time.perf_counter()
    run(compiled)  # compiles (twice when the last chunk is shorter)
    compile_s = time.perf_counter() - start
    print(f"  budget {budget >> 10} KiB: eager {eager:.1f} ms/pass, compiled "
          f"{best_ms(lambda: run(compiled), repeats):.1f} ms/pass "
          f"(first pass incl. compilation {compile_s:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections on each shape."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", default=["ops", "alternatives"],
                        choices=["ops", "alternatives", "compile"])
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=list(DEFAULT_SHAPES))
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS),
                        help="chunk budgets for 'ops' (e.g. 256K 4M 64M)")
    parser.add_argument("--budget", default="4M", help="chunk budget for the other sections")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    budgets = [parse_bytes(b) for b in args.budgets]
    for shape in args.shapes:
        print(f"shape {shape[0]} x {shape[1]} x {shape[2]}", flush=True)
        problem = Problem(shape)
        if "ops" in args.sections:
            profile_ops(problem, budgets, args.repeats)
        if "alternatives" in args.sections:
            profile_alternatives(problem, parse_bytes(args.budget), args.repeats)
        if "compile" in args.sections:
            profile_compile(problem, parse_bytes(args.budget), args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
