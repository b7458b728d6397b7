"""Checkpoints: written atomically, holding everything a resume needs.

A checkpoint is one ``torch.save`` file with the model, optimiser, scheduler and grad-scaler
states, the RNG states of python, numpy and torch, the epoch just finished, the run's full config,
the metrics history and (for MOF) the state of the compressed-frame bank. It is written to a
temporary file in the same folder and renamed over the target, so a run killed while writing leaves
the previous checkpoint intact; the next write removes the temporary file it left.
``tests/test_crash.py`` kills runs inside these writes (:func:`mofkit.faults.crash_point`) and
checks that they resume to the same weights as runs never interrupted.
"""
from __future__ import annotations

import glob
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mofkit.faults import MidWriteCrash, armed, crash_point
from mofkit.runfiles import CHECKPOINT_FILE



class ResumeError(RuntimeError):
    """A checkpoint this job cannot resume (another setup, another world size, a missing bank
    shard); the message says what to do. ``mofkit train`` prints it instead of a traceback."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``.

    A process killed at any point leaves ``path`` either as it was or completely replaced. The
    temporary files of writes that were killed are removed by the next successful write (so one
    process at a time writes a given ``path``, as rank 0 does).

    Args:
        obj: what to save.
        path: the target file.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sink = f
            if armed("checkpoint.save.partial"):  # a test kills this write half way
                sink = MidWriteCrash(f, "checkpoint.save.partial",
                                     path.stat().st_size // 2 if path.is_file() else 1)
            torch.save(obj, sink)
            f.flush()
            os.fsync(f.fileno())
        crash_point("checkpoint.save.before_rename")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    crash_point("checkpoint.save.renamed")
    _remove_stale_temporaries(path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (temporary file + rename); see :func:`atomic_torch_save`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        crash_point("text.before_rename")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _remove_stale_temporaries(path)
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of earlier writes to ``path`` that a crash left behind (one writer per file)."""
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        p.unlink(missing_ok=True)


def rng_state() -> dict:
    """RNG states of python, numpy and torch (CPU and, if present, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / CHECKPOINT_FILE


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file written by :func:`atomic_torch_save`.

    Raises:
        FileNotFoundError: naming the file.
        RuntimeError: the file is not a mofkit checkpoint (says which keys are missing).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # Checkpoints hold numpy RNG state and plain dicts, so the full unpickler is needed; only load
    # files you wrote or trust.
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    missing = [k for k in ("model", "config", "epoch") if k not in ckpt]
    if missing:
        raise RuntimeError(f"{path} is not a mofkit checkpoint: missing keys {missing}")
    return ckpt
