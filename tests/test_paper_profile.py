"""The paper profile keeps running: ``mofkit train --profile paper`` on the CPU, random weights, a
tiny generated corpus at 224 px (the MSR-VTT layout), every method for a few steps at the profile's
shapes (ViT-B-32-quickgelu, K = 8, N = 32, alpha = 1e-7) with a batch of 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper224")
    _mofkit(["generate", "--profile", "smoke", "--root", str(root / "corpus"),
             "--set", "synthetic.size=224", "--set", "synthetic.frames=64",
             "--set", "synthetic.n_train=4", "--set", "synthetic.n_test=4"])
    return root


def _mofkit(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "mofkit", *args], env=env, capture_output=True,
                         text=True, timeout=1500, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


METHODS = {
    "uniform": {"mof.enabled": False},
    "mof": {},  # the profile's own: exact hypergradient, one frame update per meta epoch
    "mof-batch-fd": {"mof.update": "batch", "mof.hypergrad": "fd"},
    "slots": {"mof.enabled": False, "compress.name": "slots"},
}


@pytest.mark.parametrize("method", list(METHODS))
def test_paper_profile_trains_on_the_cpu(corpus, method):
    out_dir = corpus / method
    sets = {"data.root": corpus / "corpus", "data.cache_dir": corpus / "cache",
            "model.pretrained": None, "data.num_workers": 0, "train.batch_size": 2,
            "train.epochs": 2, "train.eval_batch_size": 4, "train.tensorboard": False,
            **METHODS[method]}
    args = ["train", "--profile", "paper", "--device", "cpu", "--out-dir", str(out_dir)]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    _mofkit(args)
    doc = json.loads((out_dir / "metrics.json").read_text())
    cfg = doc["config"]
    assert (cfg["model"]["arch"], cfg["data"]["decode_size"], cfg["data"]["num_frames"],
            cfg["mof"]["meta_frames"], cfg["mof"]["alpha"]) == ("ViT-B-32-quickgelu", 224, 8, 32, 1e-7)
    assert doc["final"] is not None and doc["final"]["n_videos"] == 4
    first = doc["history"][0]
    if method == "mof":
        # the frames move by about frame_lr at the paper's alpha (Adam's first step: lr per pixel)
        assert first["frames_rows_updated"] == 4
        assert first["frames_mean_abs_change"] > 0.9 * cfg["mof"]["frame_lr"]
    if method == "mof-batch-fd":
        assert all(row["meta_loss_whole"] == row["meta_loss_whole"] for row in doc["history"])
