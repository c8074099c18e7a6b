"""The benchmark scripts still run (their ``--quick`` smoke mode) and print their tables."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("bench_lloyd.py", "tm/sk"),
        ("bench_converged.py", "torchmeans hamerly"),
        ("bench_init.py", "torchmeans kmeans_plusplus"),
        ("bench_suite.py", "torchmeans lloyd"),
        ("bench_metrics.py", "silhouette_score"),
        ("bench_parallel_init.py", "k-means||"),
        ("bench_streaming.py", "streamed peak"),
        ("bench_minibatch.py", "inertia torchmeans"),
        ("bench_batched.py", "loop of torchmeans.kmeans"),
        ("bench_precision.py", "fast / exact time"),
        ("bench_small.py", "scikit-learn KMeans(n_init=1)"),
        ("bench_bisecting.py", "inertia torchmeans / scikit-learn"),
        ("bench_subsample.py", "max_samples_per_cluster=256"),
    ],
)
def test_benchmark_quick_mode_runs(script, expected):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--markdown"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
