r"""Streamed fits of memory-mapped files: peak memory against file size, time against in-memory.

For each file size, two fresh processes fit the same ``.npy`` file (float32, 256
features, k=16, ``max_iter`` 5, same init): one streams it (``sources.from_npy``), one
loads it into memory first (``np.load``). Each samples its anonymous memory
(``RssAnon``: what the process allocated; the mapped file's pages are page cache, not
counted) every 2 ms and reports the peak growth over its baseline after imports, and
its time per iteration. ``MALLOC_MMAP_THRESHOLD_`` is fixed so that glibc returns freed
blocks (its dynamic threshold keeps them in the heap, reused, and would blur the peak).

Command (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/bench_streaming.py --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from peak_memory import PEAK_SAMPLER

CHILD = PEAK_SAMPLER + textwrap.dedent("""
    import json, sys, time
    import numpy as np, torchmeans
    from torchmeans import sources

    path, mode = sys.argv[1], sys.argv[2]
    init = np.load(path, mmap_mode="r")[:16].copy()
    base = anon_mib()
    stop = sample_peak()
    start = time.perf_counter()
    X = sources.from_npy(path) if mode == "streamed" else np.load(path)
    km = torchmeans.KMeans(16, init=init, n_init=1, max_iter=5, tol=0).fit(X)
    seconds = time.perf_counter() - start
    print(json.dumps({"peak_mib": stop() - base, "seconds_per_iter": seconds / km.n_iter_}))
""")


def run(path: Path, mode: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True,
                          text=True, check=True, env=env)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--n-features", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="one small file (smoke test)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    sizes = [32] if args.quick else args.sizes_mib
    rows_out = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            n = (size << 20) // (4 * args.n_features)
            path = Path(scratch) / f"data_{size}.npy"
            data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                             shape=(n, args.n_features))
            rng = np.random.default_rng(0)
            centers = rng.normal(scale=4, size=(16, args.n_features)).astype(np.float32)
            for start in range(0, n, 1 << 16):
                stop = min(n, start + (1 << 16))
                data[start:stop] = centers[rng.integers(16, size=stop - start)] + rng.normal(
                    size=(stop - start, args.n_features)).astype(np.float32)
            data.flush()
            del data
            streamed, in_memory = run(path, "streamed"), run(path, "in-memory")
            rows_out.append((size, n, streamed, in_memory))
            path.unlink()
    print(f"float32, {args.n_features} features, k=16, 5 iterations; peak = growth of anonymous"
          " memory over the process's baseline\n")
    print("| file MiB | rows | streamed peak MiB | in-memory peak MiB | streamed / in-memory "
          "time per iteration |")
    print("|---:|---:|---:|---:|---:|")
    for size, n, streamed, in_memory in rows_out:
        print(f"| {size} | {n:_} | **{streamed['peak_mib']:.0f}** | {in_memory['peak_mib']:.0f} | "
              f"{streamed['seconds_per_iter'] / in_memory['seconds_per_iter']:.2f} |")


if __name__ == "__main__":
    main()
