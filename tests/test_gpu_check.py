"""benchmarks/gpu_check.py, the one call a lent GPU gets: its dry run on the CPU covers every part."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_exercises_every_part_and_writes_json(tmp_path):
    out = tmp_path / "dry.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-dry-run",
                          "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["skipped"] == []
    assert set(doc["parts"]) == {"base", "meta", "compressor", "bank", "precision"}
    assert {"torch", "open_clip", "device", "driver", "mofkit_commit"} <= set(doc["versions"])
    assert [r["k"] for r in doc["parts"]["base"]] == [1, 2, 3]
    assert {(r["batch"], r["method"]) for r in doc["parts"]["meta"]} == {
        (2, "exact"), (2, "fd"), (4, "exact"), (4, "fd")}
    assert all(r["meta_to_base"] > 0 for r in doc["parts"]["meta"])
    assert 0 <= doc["parts"]["bank"]["wait_share"] <= 1
    for name in ("bf16", "fp16"):
        assert doc["parts"]["precision"][name]["finite"]
        assert doc["parts"]["precision"][name]["cosine"] > 0.99
    assert doc["config"]["mof"]["alpha"] == 1e-7  # the paper profile's
    for header in ("## base step", "## meta step", "## compressor", "## bank path", "share waiting"):
        assert header in res.stdout


def test_the_peak_is_the_one_of_that_exact_model():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_check import peak_bf16
    finally:
        sys.path.pop(0)
    assert peak_bf16("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16("NVIDIA H100 NVL") == 835.0
    assert peak_bf16("NVIDIA H200") == 989.0
    assert peak_bf16("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16("Some Future GPU") is None


def test_without_a_gpu_it_says_what_to_do():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "--cpu-dry-run" in res.stderr
