"""benchmarks/gpu.py runs end to end in its quick mode on the CPU (Triton interpreted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
EXACT_MODES = ("torchmeans torch", "torchmeans triton", "torchmeans torch fast",
               "torchmeans triton fast")


@pytest.mark.slow
def test_gpu_script_quick_mode_on_cpu(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("OUT", None)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| method | dtype | ms/iter | x best peer |" in done.stdout
    assert "## Summary" in done.stdout

    report = json.loads(out.read_text())
    assert report["ceilings"]["gemm_fp32_tflops"] > 0
    assert report["ceilings"]["copy_gbps"] > 0
    assert {(e["dtype"], e["status"]) for e in report["shapes"]} == {
        ("float32", "done"), ("bfloat16", "done")}
    assert len(report["shapes"]) == 4
    for entry in report["shapes"]:
        methods = {m["name"]: m for m in entry["methods"]}
        expected = EXACT_MODES if entry["dtype"] == "float32" else EXACT_MODES[:2]
        for name in expected:
            m = methods[name]
            assert m["status"] == "ok", (entry["N"], entry["D"], entry["dtype"], m)
            # Every torchmeans mode promises the labels of the float32 torch path, and on
            # these small blobs those are the float64 labels.
            assert m["labels_equal_f64"] == 1.0, (entry["D"], entry["dtype"], name)
            assert m["labels_differ_f64_rows"] == 0
            if name != "torchmeans torch":
                assert m["labels_differ_torch_rows"] == 0, (entry["D"], entry["dtype"], name)
            assert m["n_iter"] >= 1
            assert m["ms_per_iter"] > 0
            assert m["inertia_ratio"] == pytest.approx(1.0, rel=1e-5)
        # Peers that need CUDA are recorded as unavailable, not run and not fatal.
        for name in ("flash-kmeans", "faiss-gpu"):
            assert methods[name]["status"].startswith("unavailable:"), methods[name]
        # fastkmeans draws the shared init itself (seed 0): its labels match exactly.
        if "fastkmeans" in methods and methods["fastkmeans"]["status"] == "ok":
            assert methods["fastkmeans"]["labels_differ_torch_rows"] == 0

    batched = {m["name"]: m for m in report["batched"]["methods"]}
    assert batched["torchmeans batched"]["status"] == "ok"
    assert batched["loop of torchmeans.kmeans"]["status"] == "ok"
    # Same init, same iterations: the loop of single fits ends where the batched fit does.
    assert batched["loop of torchmeans.kmeans"]["inertia_ratio"] == pytest.approx(1.0, rel=1e-5)

    # Repeated fits with deterministic=True are bit-identical for every backend and dtype.
    determinism = [e for e in report["determinism"] if e["deterministic"]]
    assert {(e["backend"], e["dtype"]) for e in determinism} == {
        (b, t) for b in ("torch", "triton") for t in ("float32", "bfloat16")}
    assert all(e.get("identical") is True for e in determinism), determinism
