r"""precision='fast' against 'exact': time, equal labels, and where the certificate sends rows.

Same data, same initial centers, a fixed number of Lloyd iterations (``algorithm='lloyd'``,
``backend='torch'`` for both, so that only the precision differs). Reports the time of
'fast' over 'exact', whether the labels are equal, and for one assignment pass the share of
rows the bound leaves uncertain (level 1), of those the share float64 cannot decide (level
3, which costs the chunk's full-precision product), and the share of chunks that needed it.

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_precision.py --markdown
"""

from __future__ import annotations

import argparse
import time

import torch

import torchmeans
from torchmeans.backends import torch as assign_module
from torchmeans.backends.torch import center_terms, certified_nearest
from torchmeans.core.assign import chunk_rows_for
from torchmeans.core.validation import prepare_data


def make_data(n: int, d: int, k: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=generator) * 2
    picks = torch.randint(0, k, (n,), generator=generator)
    return centers[picks] + torch.randn(n, d, generator=generator)


def certificate_shares(X: torch.Tensor, centers: torch.Tensor) -> dict[str, float]:
    """One certified pass: uncertain rows, rows for level 3, chunks that needed level 3."""
    data = prepare_data(X, None, precision="fast")
    terms = center_terms(centers.to(data.acc_dtype) - data.offset)
    level3_chunks, uncertain, chunks = 0, 0, 0
    original = assign_module.chunk_scores_into

    def counting(data_, chunk, terms_, buffer):
        nonlocal level3_chunks
        level3_chunks += buffer is None and chunk.index is None
        return original(data_, chunk, terms_, buffer)

    assign_module.chunk_scores_into = counting
    try:
        for chunk in data.chunks(chunk_rows_for(data, centers.shape[0], None)):
            result = certified_nearest(data, chunk, terms)
            uncertain += result.recomputed.numel()
            chunks += 1
    finally:
        assign_module.chunk_scores_into = original
    return {"uncertain rows": uncertain / X.shape[0],
            "chunks needing their float32 product": level3_chunks / chunks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["200000x128x100", "100000x768x256"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = ["4000x16x8"] if args.quick else args.shapes
    print("| N x D x k | fast / exact time | labels equal | uncertain rows | chunks needing "
          "their float32 product |")
    print("|---|---:|---:|---:|---:|")
    for shape in shapes:
        n, d, k = (int(v) for v in shape.split("x"))
        X = make_data(n, d, k)
        init = X[:k].clone()
        times, labels = {}, {}
        for precision in ("exact", "fast"):
            start = time.perf_counter()
            result = torchmeans.kmeans(X, k, init=init, max_iter=args.iters, tol=0,
                                       backend="torch", precision=precision)
            times[precision] = time.perf_counter() - start
            labels[precision] = result.labels
        shares = certificate_shares(X, init)
        print(f"| {n:_} x {d} x {k} | {times['fast'] / times['exact']:.2f} | "
              f"{bool(torch.equal(labels['fast'], labels['exact']))} | "
              f"{shares['uncertain rows']:.2%} | "
              f"{shares['chunks needing their float32 product']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
