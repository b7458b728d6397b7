"""Crash safety: runs killed with SIGKILL inside checkpoint writes and frame-bank updates resume to
the same end, bit for bit, as runs that were never interrupted.

The kills are deterministic: ``mofkit.faults.crash_point`` is called at named places in
``mofkit.train.checkpoint`` and ``mofkit.bilevel.bank`` and kills its own process on the hit that
``MOFKIT_CRASH_AT`` names, after writing ``<name> <hit>`` to ``MOFKIT_CRASH_LOG``. Each session of a
run is a child process forked from a forkserver that has already imported torch and mofkit, so a
session costs about a second instead of a fresh interpreter's five. Every session, the
uninterrupted references included, runs in such a child with one torch thread, so they all compute
alike.

What ends equal: every model and optimiser tensor, the final test metrics, the history (timings
and generation numbers aside), and the frames, Adam moments and step counts of the bank generation
that the last checkpoint names.
"""
import json
import multiprocessing
import os
import signal
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

_PRELOAD = ["torch", "numpy", "mofkit.config", "mofkit.faults", "mofkit.bilevel.bank",
            "mofkit.bilevel.meta", "mofkit.models", "mofkit.data.preprocess", "mofkit.data.loaders",
            "mofkit.data.cache", "mofkit.data.datasets", "mofkit.data.synthetic",
            "mofkit.eval.encode", "mofkit.train.checkpoint", "mofkit.train.data",
            "mofkit.train.loop", "mofkit.train.monitor", "torch.utils.tensorboard", "tqdm.auto",
            "pandas", "pytest"]  # a name that does not import is skipped
_TIMEOUT_S = 300

# Smoke-sized but with real structure: 2 base steps and 2 meta batches per epoch, 4 epochs.
_SMALL = {"synthetic.n_train": 16, "synthetic.n_test": 8, "train.batch_size": 8, "train.epochs": 4,
          "train.eval_every": 0}
_FRAME_ROW_BYTES = 4 * 3 * 32 * 32 * 4  # one bank row of mof-tiny-32 at K = 4, float32
_CHUNK_ROWS = 4  # rows per streamed chunk of step_accumulated: 4 chunks per frame update
_TINY = (2, 3, 4, 4)  # (K, 3, S, S) of the model-free bank runs
_TINY_ROW_BYTES = 2 * 3 * 4 * 4 * 4

BASELINE = {}
MOF_EPOCH = {"mof.enabled": True, "mof.frame_lr": 0.05}
MOF_BATCH = {"mof.enabled": True, "mof.frame_lr": 0.05, "mof.update": "batch",
             "mof.bank_dtype": "float16"}  # float16: the stochastic rounding must replay too


# -- child sessions ---------------------------------------------------------------------------------

def _session(target, args, log: Path, crash: str | None) -> None:
    """Body of a child process: output to ``log``, the crash point armed, one torch thread."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ["MOFKIT_CRASH_AT"] = crash or ""
    os.environ["MOFKIT_CRASH_LOG"] = str(log.with_suffix(".hits"))
    os.environ.pop("MOFKIT_PROGRESS", None)
    torch.set_num_threads(1)
    code = 0
    try:
        target(*args)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no multiprocessing or atexit teardown in the child


def _train_session(overrides: dict) -> None:
    import mofkit.bilevel.bank_updates as updates
    from mofkit.config import get_config
    from mofkit.train.loop import train

    updates._CHUNK_BYTES = _CHUNK_ROWS * _FRAME_ROW_BYTES
    train(get_config("smoke", overrides), progress=False)


def _bank_session(root: Path) -> None:
    """A MOF run without a model, over a 10-row bank: resume from ``state.pt`` or start.

    4 epochs of 2 batches: even epochs accumulate and take the once-per-epoch step, odd ones step
    each batch's rows; each epoch ends with a checkpoint (bank commit, ``atomic_torch_save``) and a
    prune, as in the training loop. Gradients depend on the frames, so any state a crash left wrong
    changes every later step.
    """
    import mofkit.bilevel.bank_updates as bank_module
    from mofkit.bilevel.bank import FrameBank
    from mofkit.train.checkpoint import atomic_torch_save

    bank_module._CHUNK_BYTES = 2 * _TINY_ROW_BYTES  # 5 chunks per accumulated step
    ckpt = root / "state.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        bank, start = FrameBank.restore(state["bank"]), state["epoch"] + 1
    else:
        init = torch.randn((10, *_TINY), generator=torch.Generator().manual_seed(0))
        bank = FrameBank.create(root / "bank", [f"v{i}" for i in range(10)], _TINY[0], _TINY[2],
                                init=lambda rows: init[torch.from_numpy(rows)], overwrite=True)
        start = 0
    for epoch in range(start, 4):
        order = np.random.default_rng([0, epoch]).permutation(10)
        for rows in (order[:5], order[5:]):
            grads = torch.sin(bank.read(rows) * (epoch + 1)) * 1e-2  # (5, K, 3, S, S)
            if epoch % 2 == 0:
                bank.accumulate(rows, grads)
            else:
                bank.step_rows(rows, grads, lr=1e-2)
        if epoch % 2 == 0:
            bank.step_accumulated(lr=1e-2)
        atomic_torch_save({"epoch": epoch, "bank": bank.commit()}, ckpt)
        bank.prune(keep={bank.generation})


class Sessions:
    """Starts child sessions from one forkserver and checks how they ended."""

    def __init__(self, root: Path):
        self.root = root
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(_PRELOAD + [__name__])
        self._n = 0

    def run(self, target, args, crash: str | None = None) -> None:
        """One session; with ``crash`` ("name:N") it must die by SIGKILL on exactly that hit."""
        self._n += 1
        log = self.root / "logs" / f"session-{self._n:03d}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        p = self.ctx.Process(target=_session, args=(target, args, log, crash))
        p.start()
        p.join(_TIMEOUT_S)
        if p.exitcode is None:
            p.kill()
            p.join()
        out = log.read_text()[-4000:] if log.exists() else ""
        hits = log.with_suffix(".hits")
        fired = hits.read_text().split("\n")[-2] if hits.exists() else None
        if crash is None:
            assert p.exitcode == 0, f"session ended with {p.exitcode}:\n{out}"
            assert fired is None, f"a crash point fired unasked: {fired}"
        else:
            name, _, n = crash.partition(":")
            assert p.exitcode == -signal.SIGKILL, (
                f"{crash}: session ended with {p.exitcode}, not SIGKILL (point never reached?):\n{out}")
            assert fired == f"{name} {n or 1}", f"{crash}: the log says {fired!r}"

    def train(self, name: str, overrides: dict, crash: str | None = None) -> Path:
        out = self.root / name
        self.run(_train_session, (self._overrides(name, overrides),), crash)
        return out

    def _overrides(self, name: str, overrides: dict) -> dict:
        return {"data.root": str(self.root / "corpus"), "data.cache_dir": str(self.root / "cache"),
                "out_dir": str(self.root / name), **_SMALL, **overrides}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    return Sessions(tmp_path_factory.mktemp("crash"))


@pytest.fixture(scope="module")
def straight(sessions):
    """Uninterrupted reference runs, one per setup, trained once per module."""
    done = {}

    def get(name: str, overrides: dict) -> Path:
        if name not in done:
            done[name] = sessions.train(f"straight-{name}", overrides)
        return done[name]

    return get


# -- what a kill must have left, and what the end must be -------------------------------------------

def _ckpt(out: Path) -> dict:
    from mofkit.train.checkpoint import load_checkpoint

    return load_checkpoint(out / "checkpoint.pt")


def _temporaries(out: Path) -> list[Path]:
    return sorted(out.rglob(".*.tmp"))


def _bank_meta(out: Path) -> dict:
    return json.loads((out / "bank" / "bank.json").read_text())


def _check_left(point: str, out: Path) -> None:
    """The kill landed inside the write it names: look at what it left on disk."""
    ckpt = _ckpt(out)  # always loads: the last complete checkpoint is intact
    tmps = [p for p in _temporaries(out) if p.name.startswith(".checkpoint.pt.")]
    if point == "checkpoint.save.partial":
        newest = max(tmps, key=lambda p: p.stat().st_mtime_ns)
        assert 0 < newest.stat().st_size < (out / "checkpoint.pt").stat().st_size
        with pytest.raises(RuntimeError, match="zip archive"):  # cut short: torch cannot read it
            torch.load(newest, weights_only=False)
    elif point == "checkpoint.save.before_rename":
        newest = max(tmps, key=lambda p: p.stat().st_mtime_ns)
        assert torch.load(newest, weights_only=False)["epoch"] == ckpt["epoch"] + 1
    elif point == "bank.step_accumulated.chunk":
        listed = set(_bank_meta(out)["generations"])
        half = [p for p in (out / "bank").glob("gen-*") if str(int(p.name[4:])) not in listed]
        assert half, "no half-streamed generation on disk"
    elif point in ("bank.step_accumulated.switched", "bank.step_rows.mid",
                   "bank.begin_generation.copied"):
        if point == "bank.begin_generation.copied":
            assert _bank_meta(out)["current"] == ckpt["bank"]["generation"]
        else:  # bank.json already moved on; the checkpoint names the old generation
            assert _bank_meta(out)["current"] != ckpt["bank"]["generation"]
        if point == "bank.step_accumulated.switched":
            assert np.load(out / "bank" / "grad_count.npy").any()  # accumulator not yet zeroed


def _bank_arrays(out: Path, state: dict) -> dict[str, np.ndarray]:
    gdir = out / "bank" / f"gen-{state['generation']:06d}"
    return {name: np.load(gdir / name) for name in
            ("frames.npy", "exp_avg.npy", "exp_avg_sq.npy", "steps.npy")}


def _history(ckpt: dict) -> list[dict]:
    skip = {"frames_generation", "frames_parent"}  # crashed sessions leave numbers unused
    return [{k: v for k, v in row.items() if not k.endswith("_seconds") and k not in skip}
            for row in ckpt["history"]]


def _assert_same_end(a_dir: Path, b_dir: Path) -> None:
    a, b = _ckpt(a_dir), _ckpt(b_dir)
    assert a["epoch"] == b["epoch"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"model tensor {k}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for p in sa:
        for k in sa[p]:
            assert torch.equal(sa[p][k], sb[p][k]), f"optimizer state {p}.{k}"
    assert a["scheduler"] == b["scheduler"]
    assert _history(a) == _history(b)
    assert a["final"]["t2v"] == b["final"]["t2v"] and a["final"]["v2t"] == b["final"]["v2t"]
    assert a["frame_steps"] == b["frame_steps"]
    assert (a["bank"] is None) == (b["bank"] is None)
    if a["bank"] is not None:
        fa, fb = _bank_arrays(a_dir, a["bank"]), _bank_arrays(b_dir, b["bank"])
        for name in fa:
            assert fa[name].dtype == fb[name].dtype and np.array_equal(fa[name], fb[name]), name
        assert fa["steps.npy"].min() > 0  # every row was really updated
        # the crashed sessions' generations are pruned: one generation left, as in a clean run
        assert [p.name for p in (b_dir / "bank").glob("gen-*")] == [
            f"gen-{b['bank']['generation']:06d}"]
    assert _temporaries(b_dir) == [], "temporary files of killed writes are left behind"


def _kill_resume(sessions, straight, setup: str, overrides: dict,
                 kills: list[tuple[str, int]], name: str | None = None) -> None:
    """Train with one kill per session, in order, then resume to the end; compare.

    ``kills`` holds (crash point "name:N", the epoch of the last checkpoint after that kill; -1:
    none yet), so a kill that lands in another epoch than intended fails the test.
    """
    reference = straight(setup, overrides)
    name = name or f"killed-{setup}"
    for crash, epoch in kills:
        out = sessions.train(name, overrides, crash)
        have = _ckpt(out)["epoch"] if (out / "checkpoint.pt").exists() else -1
        assert have == epoch, f"{crash}: killed after the checkpoint of epoch {have}, not {epoch}"
        if have >= 0:
            _check_left(crash.partition(":")[0], out)
    out = sessions.train(name, overrides)
    _assert_same_end(reference, out)


# -- the tests ----------------------------------------------------------------------------------------
# 4 epochs (0-3); a session resumed after the checkpoint of epoch e starts at e + 1 and counts the
# hits of each point from 1 again.

def test_baseline_killed_inside_checkpoint_writes_resumes_bit_for_bit(sessions, straight):
    _kill_resume(sessions, straight, "baseline", BASELINE, [
        ("checkpoint.save.partial:2", 0),  # epoch 1's checkpoint half written
        ("checkpoint.save.before_rename:2", 1),  # epoch 2's complete, not renamed
        ("text.before_rename:2", 1),  # epoch 2's metrics.json (hit 1 is config.json), not renamed
        ("checkpoint.save.renamed:1", 2),  # epoch 2's checkpoint in place, stale files not removed
    ])


def test_mof_epoch_update_killed_inside_bank_updates_and_checkpoints(sessions, straight):
    _kill_resume(sessions, straight, "mof-epoch", MOF_EPOCH, [
        ("bank.create.before_meta:1", -1),  # the bank half created, before any checkpoint
        ("bank.accumulate.mid:4", 0),  # epoch 1's second meta batch half accumulated
        ("bank.prune.removed:1", 1),  # epoch 1 trained and checkpointed; killed while pruning
        ("bank.step_accumulated.chunk:2", 1),  # epoch 2's frame update half streamed
        ("bank.step_accumulated.written:1", 1),  # new generation complete, bank.json not switched
        ("bank.step_accumulated.switched:1", 1),  # bank.json switched, accumulator not zeroed
        ("bank.meta.before_replace:1", 1),  # restore pointing bank.json back, half done
        ("bank.commit.sealed:1", 1),  # generation sealed, no checkpoint names it
        ("checkpoint.save.partial:1", 1),  # epoch 2's checkpoint half written
        ("bank.prune.dropped:2", 2),  # epoch 2 checkpointed, bank.json pruned, folders not deleted
        # (hit 1 is the prune at resume, of what the killed sessions left)
        ("checkpoint.save.partial:1", 2),  # epoch 3's (the last, with no meta epoch) checkpoint half written
    ])


def test_a_finished_run_killed_while_pruning_is_cleaned_up_on_resume(sessions, straight):
    """Killed after its last checkpoint: the resume trains nothing, yet leaves one generation.

    Per-batch updates make a generation every epoch, so the last checkpoint has one to prune (the
    per-epoch schedule runs no meta epoch after the last evaluation, so its last prune is empty)."""
    _kill_resume(sessions, straight, "mof-batch", MOF_BATCH, [
        ("bank.prune.dropped:3", 3),  # epoch 3 (the last) checkpointed, old folders not deleted
    ], name="killed-last-prune")


def test_mof_batch_update_killed_inside_per_batch_bank_steps(sessions, straight):
    _kill_resume(sessions, straight, "mof-batch", MOF_BATCH, [
        ("bank.step_rows.mid:3", 0),  # epoch 1's first batch: new frames written, moments not
        ("bank.begin_generation.copying:2", 0),  # epoch 1's copy of the sealed generation half done
        ("bank.begin_generation.copied:1", 0),  # copy complete, bank.json not switched
        ("bank.step_rows.mid:2", 0),  # epoch 1's second batch torn
        ("bank.commit.before_seal:1", 0),  # epoch 1 trained, its generation not sealed
        ("checkpoint.save.before_rename:2", 1),  # epoch 2's checkpoint complete, not renamed
    ])


# Each point's hit in the middle of the model-free run (see _bank_session for what happens when).
_BANK_RUN_KILLS = {
    "bank.create.before_meta": 1, "bank.accumulate.mid": 3, "bank.step_accumulated.chunk": 7,
    "bank.step_accumulated.written": 2, "bank.step_accumulated.switched": 2,
    "bank.begin_generation.copying": 2, "bank.begin_generation.copied": 1,
    "bank.step_rows.mid": 3, "bank.commit.before_seal": 2, "bank.commit.sealed": 2,
    "bank.prune.dropped": 2, "bank.prune.removed": 2, "bank.meta.before_replace": 4,
    "checkpoint.save.partial": 2, "checkpoint.save.before_rename": 2, "checkpoint.save.renamed": 2,
}


def test_crash_points_are_named_and_all_covered():
    from mofkit import faults

    assert {p for p in faults.POINTS if not p.startswith("text.")} == set(_BANK_RUN_KILLS)
    assert faults._parse("bank.step_rows.mid") == ("bank.step_rows.mid", 1)
    assert faults._parse(" bank.step_rows.mid:3 ") == ("bank.step_rows.mid", 3)
    assert faults._parse("") is None
    with pytest.raises(ValueError, match=r"unknown crash point 'bank.nope'.*'bank.step_rows.mid'"):
        faults._parse("bank.nope:2")
    with pytest.raises(ValueError, match="integer >= 1"):
        faults._parse("bank.step_rows.mid:0")


@pytest.mark.parametrize("point", sorted(_BANK_RUN_KILLS))
def test_model_free_bank_run_killed_at_each_point_resumes_bit_for_bit(sessions, point):
    root = sessions.root / "bank-runs"
    reference = root / "straight"
    if not reference.exists():
        reference.mkdir(parents=True)
        sessions.run(_bank_session, (reference,))
    out = root / point
    out.mkdir(parents=True)
    sessions.run(_bank_session, (out,), f"{point}:{_BANK_RUN_KILLS[point]}")
    sessions.run(_bank_session, (out,))
    a, b = (torch.load(d / "state.pt", weights_only=False)["bank"] for d in (reference, out))
    fa, fb = _bank_arrays(reference, a), _bank_arrays(out, b)
    for name in fa:
        assert np.array_equal(fa[name], fb[name]), name
    assert fa["steps.npy"].tolist() == [4] * 10  # one Adam step per row and epoch
    assert [p.name for p in (out / "bank").glob("gen-*")] == [f"gen-{b['generation']:06d}"]
    assert _temporaries(out) == []
