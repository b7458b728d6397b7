"""What a training run tells the outside while it runs: TensorBoard scalars and progress events.

* **TensorBoard.** Every run writes event files to ``<out_dir>/tensorboard`` (rank 0):
  ``train/loss`` and ``train/lr`` per optimiser step; per epoch the test metrics
  (``t2v/R1`` ... ``v2t_dsl/MnR``), the meta losses (``meta/loss_compressed``,
  ``meta/loss_whole``), the frame change and frame learning rate (``frames/...``) and timings
  (``time/...``), all on the step axis. A resumed run purges the events a killed session wrote
  after its checkpoint, so curves never fold back. ``tensorboard --logdir runs/cpu`` compares
  every run of a profile.
* **Progress events.** When the environment variable ``MOFKIT_PROGRESS`` names a file, the run
  appends one JSON object per line to it: ``start``, ``step`` (at most one per second),
  ``epoch`` and ``end``. The main job's runner sets it and shows the events in its terminal, so a
  notebook's long training cell is not a silent progress bar there.

Both are best effort: a missing ``tensorboard`` package or an unwritable progress file costs a
warning, never the run.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from mofkit.eval.metrics import DIRECTIONS

PROGRESS_ENV = "MOFKIT_PROGRESS"
_STEP_INTERVAL_S = 1.0  # least time between two step events
# metrics keys of a history row are "<direction>_<metric>"; the longest prefix must match first
_DIRECTIONS = sorted(DIRECTIONS, key=len, reverse=True)


def scalar_tags(row: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tags of one epoch's history row (numeric values only).

    Args:
        row: an epoch's entry of ``TrainResult.history``.

    Returns:
        tag -> value, e.g. ``{"t2v/R1": 20.4, "meta/loss_whole": 2.71, "frames/mean_abs_change": ...}``.
    """
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "epoch":
            continue
        if not math.isfinite(float(value)):
            continue
        tag = None
        for d in _DIRECTIONS:
            if key.startswith(d + "_"):
                tag = f"{d}/{key[len(d) + 1:]}"
                break
        if tag is None:
            if key.startswith("meta_"):
                tag = f"meta/{key[len('meta_'):]}"
            elif key.startswith("frames_"):
                tag = f"frames/{key[len('frames_'):]}"
            elif key.endswith("_seconds"):
                tag = f"time/{key[:-len('_seconds')]}_s"
            else:
                tag = f"epoch/{key}"
        out[tag] = float(value)
    return out


class RunMonitor:
    """TensorBoard writer and progress-event sink of one run (a no-op on ranks other than 0).

    Args:
        out_dir: the run's folder (event files go to ``out_dir/tensorboard``).
        run: the run's name in progress events (e.g. ``sweep/data.num_frames-4_mof.enabled-False/seed0``).
        epochs: epochs of the whole run.
        steps_per_epoch: optimiser steps per epoch (the TensorBoard step axis).
        enabled: False on ranks other than 0.
        tensorboard: write TensorBoard event files.
    """

    def __init__(self, out_dir: str | os.PathLike, run: str, epochs: int, steps_per_epoch: int, *,
                 enabled: bool = True, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.run = run
        self.epochs = epochs
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.enabled = enabled
        self._want_tb = tensorboard and enabled
        self._writer = None
        self._progress = os.environ.get(PROGRESS_ENV) if enabled else None
        self._last_step_event = 0.0
        self._epoch_times: list[float] = []

    # -- TensorBoard ---------------------------------------------------------------------------

    def _tb(self, purge_step: int | None = None):
        if self._writer is None and self._want_tb:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # torch's writer needs the tensorboard package
                warnings.warn("TensorBoard scalars are not written: install the tensorboard package",
                              RuntimeWarning)
                self._want_tb = False
                return None
            wait_past_event_files(self.out_dir / "tensorboard")
            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge_step,
                                         flush_secs=30)
        return self._writer

    def start(self, start_epoch: int, resumed_from: int | None) -> None:
        """The run begins (or resumes after epoch ``resumed_from``)."""
        if not self.enabled:
            return
        # Events past the checkpoint (from a session killed after it) are dropped by TensorBoard:
        # the checkpoint's last step is start_epoch * steps_per_epoch (its epoch scalars too).
        self._tb(purge_step=start_epoch * self.steps_per_epoch + 1 if resumed_from is not None else None)
        self._emit({"event": "start", "epochs": self.epochs, "start_epoch": start_epoch,
                    "resumed_from": resumed_from})

    def step(self, epoch: int, step: int, steps: int, loss: float, lrs: dict[str, float]) -> None:
        """After an optimiser step: ``step`` of ``steps`` in 0-based ``epoch``."""
        if not self.enabled:
            return
        global_step = epoch * self.steps_per_epoch + step
        tb = self._tb()
        if tb is not None:
            tb.add_scalar("train/loss", loss, global_step)
            for name, lr in lrs.items():
                tb.add_scalar(f"train/{name}", lr, global_step)
        now = time.time()
        if now - self._last_step_event >= _STEP_INTERVAL_S:
            self._last_step_event = now
            self._emit({"event": "step", "epoch": epoch + 1, "epochs": self.epochs, "step": step,
                        "steps": steps, "loss": loss, "eta_s": self._eta(epoch, step / max(1, steps))})

    def epoch(self, row: dict[str, Any]) -> None:
        """After an epoch's history row is complete (``row["epoch"]`` is 1-based)."""
        if not self.enabled:
            return
        e = int(row["epoch"])
        self._epoch_times.append(float(row.get("epoch_seconds", 0.0)))
        tb = self._tb()
        if tb is not None:
            for tag, value in scalar_tags(row).items():
                tb.add_scalar(tag, value, e * self.steps_per_epoch)
            tb.flush()
        shown = {k: row[k] for k in ("train_loss", "t2v_R1", "t2v_R5", "meta_loss_compressed",
                                     "meta_loss_whole", "epoch_seconds") if k in row}
        self._emit({"event": "epoch", "epoch": e, "epochs": self.epochs, **shown,
                    "eta_s": self._eta(e - 1, 1.0)})

    def end(self, final: dict | None, reused: bool = False) -> None:
        """The run is finished (``reused``: it had finished before and nothing was trained)."""
        if not self.enabled:
            return
        r1 = final["t2v"]["R1"] if final and "t2v" in final else None
        self._emit({"event": "end", "reused": reused, "t2v_R1": r1})
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- progress events -----------------------------------------------------------------------

    def _eta(self, epoch: int, frac: float) -> float | None:
        """Seconds left in the run, from the mean time of the epochs finished in this session."""
        if not self._epoch_times:
            return None
        per_epoch = sum(self._epoch_times) / len(self._epoch_times)
        return max(0.0, (self.epochs - epoch - frac) * per_epoch)

    def _emit(self, event: dict) -> None:
        if not self._progress:
            return
        event = {"time": time.time(), "run": self.run, **event}
        try:
            with open(self._progress, "a") as f:
                f.write(json.dumps(event, default=float) + "\n")
        except OSError as e:
            warnings.warn(f"progress events are not written to {self._progress}: {e}", RuntimeWarning)
            self._progress = None


def wait_past_event_files(folder: Path) -> None:
    """Wait until the clock's second is past every TensorBoard event file's in ``folder``.

    TensorBoard reads a folder's event files in name order, and a name is
    ``events.out.tfevents.<second>.<host>.<pid>.<counter>`` with a per-process counter compared as
    text (``10`` sorts before ``9``): a writer opened in the same second as an earlier session's
    (a resume in the same notebook kernel) could be read before it, and its epochs would come out
    of order. Waiting (under a second, and only then) gives the new file a later second.
    """
    stamps = []
    for f in Path(folder).glob("events.out.tfevents.*"):
        part = f.name.split(".")[3] if f.name.count(".") >= 3 else ""
        if part.isdigit():
            stamps.append(int(part))
    if stamps:
        while int(time.time()) <= max(stamps):
            time.sleep(0.02)
