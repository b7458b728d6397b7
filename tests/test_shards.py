"""The sharded frame bank: global rows over per-shard banks, equal to one whole bank; the sampler
that draws each rank's own videos; training on shards (2 gloo processes, one folder per rank)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_frames_close
from mofkit.bilevel.bank import FrameBank
from mofkit.bilevel.shards import ShardedBank, shard_members, shard_sizes
from mofkit.config import get_config
from mofkit.train.banks import (bank_location, check_sharding, shard_batches,
                                sharded_batches_per_epoch, sharded_epoch_batches)

V, K, S = 11, 2, 8
IDS = [f"video{i}" for i in range(V)]


def _frames(seed=0):
    return torch.randn(V, K, 3, S, S, generator=torch.Generator().manual_seed(seed))


def _grads(rows, seed):
    return torch.randn(len(rows), K, 3, S, S, generator=torch.Generator().manual_seed(100 + seed)) * 1e-3


def _whole_and_sharded(tmp_path, shards=3):
    x = _frames()
    init = lambda rows: x[torch.from_numpy(rows)]  # noqa: E731
    whole = FrameBank.create(tmp_path / "whole", IDS, K, S, init=init)
    split = ShardedBank.create({s: tmp_path / f"shard{s}" for s in range(shards)}, IDS, shards, K, S,
                               init=init)
    return x, whole, split


def test_striped_partition():
    assert shard_sizes(11, 3) == [4, 4, 3]
    assert shard_members(11, 3, 1).tolist() == [1, 4, 7, 10]
    every = np.sort(np.concatenate([shard_members(11, 3, s) for s in range(3)]))
    assert every.tolist() == list(range(11))
    with pytest.raises(ValueError, match="cannot fill"):
        shard_members(2, 3, 0)


def test_sharded_bank_equals_one_bank(tmp_path):
    """Reads, per-batch steps, accumulated steps and commits in global rows: the same frames and
    statistics as one whole bank (Adam is per row, so the split changes nothing)."""
    x, whole, split = _whole_and_sharded(tmp_path)
    rows = np.array([7, 0, 5, 10, 2])
    assert torch.equal(split.read(rows), x[torch.from_numpy(rows)])
    for bank in (whole, split):
        bank.step_rows(rows, _grads(rows, 0), lr=0.01)
        bank.accumulate(np.arange(V), _grads(range(V), 1))
        bank.accumulate(rows, _grads(rows, 2))
    a = whole.step_accumulated(lr=0.02)
    b = split.step_accumulated(lr=0.02)
    assert torch.equal(whole.read(np.arange(V)), split.read(np.arange(V)))
    assert a["rows_updated"] == b["rows_updated"] == V
    assert b["mean_abs_change"] == pytest.approx(a["mean_abs_change"], rel=1e-6)
    assert b["max_abs_change"] == pytest.approx(a["max_abs_change"])
    assert sorted(b["generations"]) == [0, 1, 2]
    # each shard's folder holds only its own videos, in local-row order
    for s, bank in split.shards.items():
        assert bank.video_ids == [IDS[i] for i in shard_members(V, 3, s)]


def test_sharded_bank_skipped_rows_are_global(tmp_path):
    _, whole, split = _whole_and_sharded(tmp_path)
    rows = np.array([4, 5, 9])
    g = _grads(rows, 0)
    g[1, 0, 0, 0, 0] = float("nan")  # global row 5 (shard 2, local row 1)
    assert whole.accumulate(rows, g) == [5]
    assert split.accumulate(rows, g) == [5]
    assert split.step_accumulated(lr=0.01)["skipped_rows"] == []
    g[1, 0, 0, 0, 0] = float("inf")
    assert split.step_rows(rows, g, lr=0.01) == [5]


def test_a_process_touches_only_its_own_shards(tmp_path):
    x = _frames()
    own = ShardedBank.create({1: tmp_path / "s1"}, IDS, 2, K, S, init=lambda r: x[torch.from_numpy(r)])
    assert own.owned_rows.tolist() == [1, 3, 5, 7, 9]
    assert torch.equal(own.read([9, 1]), x[[9, 1]])
    with pytest.raises(ValueError, match=r"rows \[4\] are in shard 0, which this process does not own"):
        own.read([1, 4])
    with pytest.raises(IndexError, match="out of range"):
        own.read([11])


def test_sharded_commit_and_restore(tmp_path):
    """A checkpoint's shard states reopen exactly those generations; later writes are undone; a
    shard missing from its folder (it lives on another machine) is a clear error."""
    x, _, split = _whole_and_sharded(tmp_path, shards=2)
    split.accumulate(np.arange(V), _grads(range(V), 0))
    split.step_accumulated(lr=0.01)
    states = split.commit()
    kept = split.read(np.arange(V))
    split.accumulate(np.arange(V), _grads(range(V), 1))
    split.step_accumulated(lr=0.01)  # after the checkpoint: a killed session's work
    assert not torch.equal(split.read(np.arange(V)), kept)
    dirs = {s: tmp_path / f"shard{s}" for s in range(2)}
    back = ShardedBank.restore(states, dirs, 2, V)
    assert torch.equal(back.read(np.arange(V)), kept)
    assert {s: b.generation for s, b in back.shards.items()} == {s: st["generation"] for s, st in states.items()}
    with pytest.raises(FileNotFoundError, match="local disk of the process that wrote it"):
        ShardedBank.restore(states, {0: dirs[0], 1: tmp_path / "elsewhere"}, 2, V)
    with pytest.raises(ValueError, match="belongs to another split"):
        ShardedBank.restore(states, dirs, 2, V + 4)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_sharded_sampler_gives_the_same_global_batches_for_any_world_size(world):
    """Rank r draws only from its shards; the ranks' batches in rank order are one process's."""
    n, batch, shards = 103, 8, 4
    one = sharded_epoch_batches(n, batch, shards, range(shards), seed=3, epoch=2)
    per = shards // world
    ranks = [sharded_epoch_batches(n, batch, shards, range(r * per, (r + 1) * per), seed=3, epoch=2)
             for r in range(world)]
    assert len(one) == sharded_batches_per_epoch(n, batch, shards) == (n // shards) // (batch // shards)
    for b, full in enumerate(one):
        assert np.array_equal(np.concatenate([rk[b] for rk in ranks]), full)
        for r, rk in enumerate(ranks):
            assert set(rk[b] % shards) <= set(range(r * per, (r + 1) * per))
    seen = np.concatenate(one)
    assert len(np.unique(seen)) == len(seen)  # each video at most once per epoch
    other = sharded_epoch_batches(n, batch, shards, range(shards), seed=3, epoch=3)
    assert not np.array_equal(np.concatenate(other), seen)  # a new order every epoch


def test_meta_batches_of_a_shard_cover_it_once():
    got = np.concatenate(shard_batches(103, 8, 4, 1, seed=0, epoch=0, drop_last=False, salt=1))
    assert np.array_equal(np.sort(got), shard_members(103, 4, 1))


def test_sharding_settings_are_checked(tmp_path):
    cfg = get_config("smoke", {"out_dir": str(tmp_path / "run"), "mof.bank_shards": 3})
    with pytest.raises(ValueError, match="cannot be split evenly over 2 processes"):
        check_sharding(cfg, 2)
    with pytest.raises(ValueError, match="divisible by the number of bank shards"):
        check_sharding(cfg, 1)
    assert check_sharding(get_config("smoke", {"mof.bank_shards": -1}), 2) == 2
    cfg = get_config("smoke", {"out_dir": str(tmp_path / "run"), "mof.bank_dir": str(tmp_path / "n{rank}")})
    a, b = bank_location(cfg, 0), bank_location(cfg, 1)
    assert a.parent == tmp_path / "n0" and b.parent == tmp_path / "n1" and a.name == b.name
    assert a.name.startswith("run-")
    bad = get_config("smoke", {"mof.bank_dir": "/x/{node}"})
    with pytest.raises(ValueError, match="only placeholder"):
        bank_location(bad, 0)


# -- training on shards ------------------------------------------------------------------------

def _cfg(root: Path, name: str, **overrides):
    base = {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache"),
            "out_dir": str(root / name)}
    base.update(overrides)
    return get_config("smoke", base)


SHARDED = {"mof.enabled": True, "mof.bank_shards": 2, "mof.meta_batch_size": 8,
           "mof.frame_lr": 0.05, "train.epochs": 2}


@pytest.mark.slow
@pytest.mark.parametrize("update", ["epoch", "batch"])
def test_sharded_training_resumes_exactly(tmp_path, update):
    from mofkit.train.checkpoint import load_checkpoint
    from mofkit.train.loop import train

    over = {**SHARDED, "mof.update": update}
    straight = train(_cfg(tmp_path, "straight", **over), progress=False)
    cfg = _cfg(tmp_path, "resumed", **over)
    train(cfg, progress=False, stop_after_epoch=0)
    again = train(cfg, progress=False)
    assert again.resumed_from == 0
    a = load_checkpoint(straight.out_dir / "checkpoint.pt")
    b = load_checkpoint(again.out_dir / "checkpoint.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["bank"]["sharded"] and a["bank"]["world_size"] == 1 and len(a["bank"]["shards"]) == 2
    fa, fb = (_restore(ck["bank"]) for ck in (a, b))
    assert torch.equal(fa.read(np.arange(fa.num_videos)), fb.read(np.arange(fb.num_videos)))
    if update == "epoch":
        row = straight.history[0]
        assert row["frames_rows_updated"] == fa.num_videos and row["frames_mean_abs_change"] > 0
    else:  # every batch moved its own frames, in its own shard
        assert np.isfinite(straight.history[0]["meta_loss_whole"])
        moved = {int(k): v["generation"] for k, v in a["bank"]["shards"].items()}
        assert all(g > 0 for g in moved.values()), moved


def _restore(state):
    shards = {int(k): v for k, v in state["shards"].items()}
    n = sum(v["num_videos"] for v in shards.values())
    return ShardedBank.restore(shards, {s: v["directory"] for s, v in shards.items()},
                               state["num_shards"], n)


def _torchrun(args, env, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "mofkit", "train", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_on_their_own_shards_match_one(tmp_path):
    """2 processes, each with its shard in its own folder (its "node's disk"), stopped after the
    first epoch and resumed, end where one process holding both shards ends in one go; a resume
    with another world size is refused with a message, not a traceback."""
    from mofkit.train.checkpoint import load_checkpoint
    from mofkit.train.loop import train

    over = {**SHARDED, "train.epochs": 3}  # meta epochs after epochs 0 and 1, one on each side of the stop
    one = train(_cfg(tmp_path, "one", **over, **{"mof.bank_dir": str(tmp_path / "single")}),
                progress=False)
    two = tmp_path / "two"
    node = str(tmp_path / "node{rank}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--profile", "smoke", "--out-dir", str(two)]
    for k, v in {**over, "mof.bank_dir": node, "data.root": str(tmp_path / "corpus"),
                 "data.cache_dir": str(tmp_path / "cache")}.items():
        args += ["--set", f"{k}={v}"]
    _torchrun([*args, "--stop-after-epoch", "0"], env)
    assert load_checkpoint(two / "checkpoint.pt")["epoch"] == 0
    _torchrun(args, env)  # resumes
    # each "node" holds only its own shard
    for r in range(2):
        found = sorted(p.name for p in (tmp_path / f"node{r}").glob("*/shard-*"))
        assert found == [f"shard-000{r}-of-0002"], found
    a, b = load_checkpoint(one.out_dir / "checkpoint.pt"), load_checkpoint(two / "checkpoint.pt")
    assert b["bank"]["world_size"] == 2 and b["epoch"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    fa, fb = _restore(a["bank"]), _restore(b["bank"])
    rows = np.arange(fa.num_videos)
    assert_frames_close(fa.read(rows), fb.read(rows), over["mof.frame_lr"])
    ha = json.loads((one.out_dir / "metrics.json").read_text())["history"]
    hb = json.loads((two / "metrics.json").read_text())["history"]
    for e in (0, 1):
        assert ha[e]["frames_rows_updated"] == hb[e]["frames_rows_updated"] == fa.num_videos
        assert ha[e]["frames_mean_abs_change"] > 0  # the frames did move
        assert hb[e]["frames_mean_abs_change"] == pytest.approx(ha[e]["frames_mean_abs_change"], rel=1e-3)
    # another world size: a clear refusal, not a wrong bank
    out = subprocess.run([sys.executable, "-m", "mofkit", "train", *args, "--set", "train.epochs=4"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "over 2 processes" in out.stderr and "this job has 1 process" in out.stderr
    assert "Traceback" not in out.stderr


# -- several machines --------------------------------------------------------------------------

def test_a_job_on_several_machines_shards_its_bank_by_default():
    from mofkit.train.distributed import DistInfo, dist_info_from_env

    cfg = get_config("smoke", {"mof.enabled": True, "train.batch_size": 16})
    assert check_sharding(cfg, 4) == 0  # one machine: one shared bank
    assert check_sharding(cfg, 4, spans_machines=True) == 4  # several: a shard per process
    assert check_sharding(get_config("smoke", {"mof.bank_shards": 2}), 2, spans_machines=True) == 2
    assert bank_location(cfg, 1, sharded=True).name == "bank-shards"
    two = DistInfo(rank=1, world_size=4, local_rank=1, local_world_size=2)
    assert two.spans_machines and not DistInfo(world_size=4, local_world_size=4).spans_machines
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    old = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update(env)
        assert dist_info_from_env() == DistInfo(rank=3, world_size=4, local_rank=1, local_world_size=2)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_process_group_waits_as_long_as_the_config_says(monkeypatch):
    """NCCL's default timeout (10 minutes) is shorter than rank 0 stepping a shared bank of 9,000
    videos; the process group takes train.dist_timeout_minutes instead."""
    from datetime import timedelta

    import torch.distributed as dist

    from mofkit.train import distributed as D

    seen = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    cfg = get_config("paper")
    info = D.init_distributed("cpu", cfg.train.dist_timeout_minutes)
    assert info.world_size == 2 and seen == {"backend": "gloo", "timeout": timedelta(minutes=120)}
    assert cfg.train.dist_timeout_minutes * 60 > 16 * 60  # the shared bank's step at MSR-VTT scale
    with pytest.raises(ValueError, match="dist_timeout_minutes"):
        D.init_distributed("cpu", 0)


@pytest.mark.slow
def test_two_machines_shard_the_bank_and_match_one_process_with_two_shards(tmp_path):
    """torchrun --nnodes=2 (two "machines" of one process each, on this host) with the default
    mof.bank_shards=0 trains on one shard per process and ends where one process with
    mof.bank_shards=2 ends."""
    import socket

    from mofkit.train.checkpoint import load_checkpoint
    from mofkit.train.loop import train

    over = {**SHARDED, "mof.bank_shards": 0}
    one = train(_cfg(tmp_path, "one", **{**over, "mof.bank_shards": 2}), progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--profile", "smoke", "--out-dir", str(tmp_path / "two")]
    for k, v in {**over, "data.root": str(tmp_path / "corpus"),
                 "data.cache_dir": str(tmp_path / "cache")}.items():
        args += ["--set", f"{k}={v}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                               "--nproc_per_node=1", f"--node_rank={r}", "--master_addr=127.0.0.1",
                               f"--master_port={port}", "-m", "mofkit", "train", *args],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    assert "spans several machines" in outs[0]
    a, b = load_checkpoint(one.out_dir / "checkpoint.pt"), load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert b["bank"]["sharded"] and b["bank"]["world_size"] == 2 and b["bank"]["num_shards"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    fa, fb = _restore(a["bank"]), _restore(b["bank"])
    rows = np.arange(fa.num_videos)
    assert_frames_close(fa.read(rows), fb.read(rows), over["mof.frame_lr"])
