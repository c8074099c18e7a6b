r"""A ``numpy.memmap`` passed straight to ``KMeans.fit``: peak memory and time, two trees.

One float32 ``.npy`` file is written once; for each source tree given with ``--src``
(e.g. the commit before memmaps streamed, and this one), fresh processes open it with
``np.load(mmap_mode='r')`` and fit ``KMeans(k, max_iter=3, n_init=1, random_state=0)``
on it. Each process reports, over its baseline after imports and the open:

- the peak growth of its anonymous memory (``RssAnon``, sampled every 2 ms): what it
  allocated; the mapped file's pages are page cache, shared and reclaimable;
- the growth of ``ru_maxrss`` (peak resident set: anonymous memory plus the file's pages
  it touched, which a pass over a memory map maps in);
- the fit's time and a digest of ``cluster_centers_``, ``labels_``, ``inertia_`` and
  ``n_iter_`` (equal digests: bit-identical results).

Each tree runs twice: once with ``MALLOC_MMAP_THRESHOLD_`` fixed, so that glibc returns
freed blocks at once (its dynamic threshold keeps them in the heap, reused, which blurs
the peak: the "exact" peak column), once with glibc's defaults, as users run (the other
columns, time included).

Command (from the repository root; ``before`` is an export of commit 5545f43)::

    mkdir -p /tmp/before && git archive 5545f43 src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_memmap.py --markdown \
        --src before=/tmp/before/src --src after=src
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
    import hashlib, json, resource, sys, time
    import numpy as np, torchmeans

    path, k = sys.argv[1], int(sys.argv[2])
    X = np.load(path, mmap_mode="r")
    base, base_max = anon_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stop = sample_peak()
    start = time.perf_counter()
    km = torchmeans.KMeans(k, max_iter=3, n_init=1, random_state=0).fit(X)
    seconds = time.perf_counter() - start
    peak = stop()
    digest = hashlib.sha256()
    for part in (km.cluster_centers_, km.labels_, np.float64(km.inertia_), np.int64(km.n_iter_)):
        digest.update(np.ascontiguousarray(part).tobytes())
    print(json.dumps({
        "anon_peak_mib": peak - base,
        "maxrss_growth_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_max,
        "seconds": seconds, "digest": digest.hexdigest()[:16],
        "labels_dtype": str(km.labels_.dtype), "centers_dtype": str(km.cluster_centers_.dtype),
        "module": torchmeans.__file__}))
""")


def run(path: Path, k: int, src: str, malloc_threshold: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    if malloc_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(k)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout)


def write(path: Path, n: int, d: int) -> None:
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4, size=(32, d)).astype(np.float32)
    for start in range(0, n, 1 << 15):
        stop = min(n, start + (1 << 15))
        data[start:stop] = centers[rng.integers(32, size=stop - start)] + rng.normal(
            size=(stop - start, d)).astype(np.float32)
    data.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--features", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--src", action="append", default=None, metavar="LABEL=PATH",
                        help="a source tree to time (repeat); default: this tree's src")
    parser.add_argument("--quick", action="store_true", help="one small file (smoke test)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1] / "src"
    trees = [item.split("=", 1) for item in (args.src or [f"this={here}"])]
    n, d = (20_000, 64) if args.quick else (args.rows, args.features)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "data.npy"
        write(path, n, d)
        mib = path.stat().st_size / (1 << 20)
        for label, src in trees:
            exact = run(path, args.clusters, src, malloc_threshold=True)
            results.append((label, exact, run(path, args.clusters, src, malloc_threshold=False)))
    print(f"float32 memmap {n:_} x {d} ({mib:.0f} MiB), KMeans({args.clusters}, max_iter=3, "
          "n_init=1, random_state=0).fit(np.load(path, mmap_mode='r'))\n")
    print("| tree | anonymous peak MiB (exact) | anonymous peak MiB | ru_maxrss growth MiB | "
          "fit s | time / first | result digest |")
    print("|---|---:|---:|---:|---:|---:|---|")
    first = results[0][2]["seconds"]
    for label, exact, r in results:
        print(f"| {label} | **{exact['anon_peak_mib']:.0f}** | {r['anon_peak_mib']:.0f} | "
              f"{r['maxrss_growth_mib']:.0f} | {r['seconds']:.2f} | {r['seconds'] / first:.2f} | "
              f"`{r['digest']}` |")

if __name__ == "__main__":
    main()
