"""End-to-end training on the synthetic corpus: learning, exact resume, MOF schedule, DDP."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_frames_close
from mofkit.config import get_config
from mofkit.train.checkpoint import load_checkpoint
from mofkit.train.loop import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory):
    """One smoke corpus and frame cache shared by the training tests."""
    root = tmp_path_factory.mktemp("smoke")
    return root


def _cfg(root: Path, name: str, **overrides):
    base = {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache"),
            "out_dir": str(root / name)}
    base.update(overrides)
    return get_config("smoke", base)


def _weights(out_dir):
    return load_checkpoint(Path(out_dir) / "checkpoint.pt")["model"]


def test_training_learns(smoke_root):
    """A CPU end-to-end run on a (small) synthetic corpus retrieves far above chance."""
    cfg = _cfg(smoke_root, "learn", **{
        "data.root": str(smoke_root / "learn-corpus"), "synthetic.n_train": 256, "synthetic.n_test": 64,
        "train.epochs": 15, "train.batch_size": 32, "train.eval_every": 5})
    res = train(cfg, progress=False)
    t2v, n = res.final["t2v"], res.final["n_videos"]
    assert n == 64 and res.final["dropped"] == []
    assert t2v["R1"] > 4 * 100 / n, t2v  # chance is 1/64
    assert t2v["MdR"] < n / 4, t2v  # chance is about n/2
    losses = [row["train_loss"] for row in res.history]
    assert losses[-1] < 0.7 * losses[0]
    doc = json.loads((res.out_dir / "metrics.json").read_text())
    assert doc["config"]["train"]["epochs"] == 15 and len(doc["history"]) == 15
    assert (res.out_dir / "metrics.csv").read_text().startswith("epoch,")


@pytest.mark.parametrize("mof", [False, True])
def test_resume_ends_with_the_same_weights(smoke_root, mof):
    over = {"train.epochs": 3, "mof.enabled": mof}
    straight = train(_cfg(smoke_root, f"straight{mof}", **over), progress=False)
    cfg = _cfg(smoke_root, f"resumed{mof}", **over)
    first = train(cfg, progress=False, stop_after_epoch=0)
    assert len(first.history) == 1 and first.final is None
    again = train(cfg, progress=False)
    assert again.resumed_from == 0 and len(again.history) == 3
    a, b = _weights(straight.out_dir), _weights(again.out_dir)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if mof:
        from mofkit.bilevel.bank import FrameBank

        fa = FrameBank.restore(load_checkpoint(straight.out_dir / "checkpoint.pt")["bank"])
        fb = FrameBank.restore(load_checkpoint(again.out_dir / "checkpoint.pt")["bank"])
        rows = np.arange(fa.num_videos)
        assert torch.equal(fa.read(rows), fb.read(rows))
    # a finished run is not trained again
    done = train(cfg, progress=False)
    assert done.final == again.final or done.final["t2v"] == again.final["t2v"]


def test_mof_moves_frames_and_logs_both_losses(smoke_root):
    from mofkit.train.loop import Trainer

    cfg = _cfg(smoke_root, "mof", **{"train.epochs": 2, "mof.enabled": True,
                                     "mof.frame_lr": 0.05})
    trainer = Trainer(cfg, progress=False)
    res = trainer.fit()
    # the loaders decode no K frames: the base step reads them from the bank (ahead of the step)
    assert set(trainer.data._clips) == {(False, False), (True, False)}
    assert all(c.num_frames == 0 for c in trainer.data._clips.values())
    first, last = res.history
    assert np.isfinite(first["meta_loss_compressed"]) and np.isfinite(first["meta_loss_whole"])
    assert first["frames_rows_updated"] == len(json.loads(
        (res.out_dir / "bank" / "bank.json").read_text())["video_ids"])
    assert first["frames_mean_abs_change"] > 0
    assert first["nonfinite_skipped"] == last["nonfinite_skipped"] == 0
    # no meta epoch after the last evaluation: frames it moved would never be trained on
    assert "meta_loss_whole" not in last and "frames_rows_updated" not in last


def test_resume_refuses_a_different_setup(smoke_root):
    cfg = _cfg(smoke_root, "refuse", **{"train.epochs": 1})
    train(cfg, progress=False)
    other = _cfg(smoke_root, "refuse", **{"train.epochs": 1, "train.lr": 0.1})
    with pytest.raises(RuntimeError, match="train.lr"):
        train(other, progress=False)


def _torchrun(args, env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mofkit", "train", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.parametrize("mof", [False, True])
def test_two_gloo_processes_match_one(smoke_root, mof):
    over = {"train.epochs": 2, "mof.enabled": mof, "mof.meta_batch_size": 8, "mof.frame_lr": 0.05}
    one = train(_cfg(smoke_root, f"one{mof}", **over), progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--profile", "smoke", "--out-dir", str(smoke_root / f"two{mof}")]
    for k, v in {**over, "data.root": str(smoke_root / "corpus"),
                 "data.cache_dir": str(smoke_root / "cache")}.items():
        args += ["--set", f"{k}={v}"]
    _torchrun(args, env)
    a, b = _weights(one.out_dir), _weights(smoke_root / f"two{mof}")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    if mof:
        from mofkit.bilevel.bank import FrameBank

        fa = FrameBank.restore(load_checkpoint(one.out_dir / "checkpoint.pt")["bank"])
        fb = FrameBank.restore(load_checkpoint(smoke_root / f"two{mof}" / "checkpoint.pt")["bank"])
        rows = np.arange(fa.num_videos)
        assert_frames_close(fa.read(rows), fb.read(rows), over["mof.frame_lr"])
        sa = json.loads((one.out_dir / "metrics.json").read_text())["history"][0]
        sb = json.loads((smoke_root / f"two{mof}" / "metrics.json").read_text())["history"][0]
        assert sa["frames_rows_updated"] == sb["frames_rows_updated"] == fa.num_videos


def test_nonfinite_hypergradients_are_named_skipped_and_counted(smoke_root, monkeypatch):
    import mofkit.bilevel.meta as meta

    real = meta.hypergradient
    poisoned = {"row": 0}

    def poisoning(*args, **kwargs):
        res = real(*args, **kwargs)
        res.grad[poisoned["row"]] = float("nan")  # the first video of every meta batch
        res.finite[poisoned["row"]] = False
        return res

    monkeypatch.setattr(meta, "hypergradient", poisoning)
    cfg = _cfg(smoke_root, "nan", **{"train.epochs": 2, "mof.enabled": True})
    with pytest.warns(RuntimeWarning, match=r"non-finite hypergradient for videos \['video"):
        res = train(cfg, progress=False)
    n_batches = -(-64 // 16)  # smoke: 64 training videos, meta batches of 16
    # one meta epoch: the last epoch runs none after its evaluation
    assert [row["nonfinite_skipped"] for row in res.history] == [n_batches, 0]
    assert res.history[0]["frames_rows_updated"] == 64 - n_batches
    assert all(np.isfinite(row["train_loss"]) for row in res.history)
    assert all(np.isfinite(v) for v in res.final["t2v"].values())


def test_prepare_builds_the_caches_before_a_run_that_then_only_opens_them(smoke_root, capsys):
    """``mofkit prepare`` decodes what a run reads before torchrun starts its processes (no rank
    waits on another's decoding); the run finds every cache finished."""
    from mofkit.cli import main

    cache = smoke_root / "prepared-cache"
    sets = {"data.root": str(smoke_root / "corpus"), "data.cache_dir": str(cache), "mof.enabled": True,
            "train.epochs": 1, "out_dir": str(smoke_root / "prepared")}
    argv = ["prepare", "--profile", "smoke"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "64 training and 32 test videos" in out
    built = {p: p.stat().st_mtime_ns for p in cache.rglob("frames.npy")}
    assert len(built) == 3 and all(name in out for name in ("train_k:", "test_k:", "grid:"))
    train(_cfg(smoke_root, "prepared", **{k: v for k, v in sets.items() if k != "out_dir"}),
          progress=False)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("frames.npy")} == built
