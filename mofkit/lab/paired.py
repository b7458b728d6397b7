"""Kept runs: the few files of a finished run that paired statistics need, kept beside the results.

A paired study (``controls``, ``regimes``) copies each finished run's ``config.json``,
``metrics.json`` (final metrics and training time, with the device that made them) and
``ranks.npz`` (each test query's rank) to ``<keep_dir>/<study folder>/<regime>/<setting>/seed<s>``.
Committed under ``docs/results/runs/``, they let a fresh clone

- resume a study where another machine left it: a run whose kept config equals the one it would
  train (:func:`same_run`) is read, not trained again;
- recompute every mean, spread and paired confidence interval from files (``mofkit compare`` takes
  these folders as it takes run folders).

Checkpoints and the frame bank are not kept: they are megabytes to gigabytes, and nothing of a
table needs them.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mofkit.config import Config
from mofkit.data.datasets import DATASET_SPECS
from mofkit.models.factory import STILLS_TAG as PRETRAINED_TAG
from mofkit.runfiles import CONFIG_FILE, METRICS_FILE, RANKS_FILE
from mofkit.train.tasks import settings_not_read

KEPT_FILES = (CONFIG_FILE, METRICS_FILE, RANKS_FILE)
# what may differ between two runs that are the same run: where they write and read caches, on
# which device, with how many loader workers and how patient its processes are with each other,
# the study grids around them, and the pretraining settings (a run that starts from the towers of
# `mofkit pretrain` names their file in model.pretrained; a run that does not never reads them)
_PRETRAIN_NOT_THE_TOWERS = ("root", "dir", "gate")  # where the stills and towers live, the gate
_NOT_THE_RUN = ("out_dir", "device", "study", "pretrain", "data.num_workers", "data.cache_dir",
                "train.dist_timeout_minutes")


def run_identity(cfg: Config | dict) -> dict[str, Any]:
    """The settings that make a run what it is (``cfg`` without :data:`_NOT_THE_RUN`), JSON-like.

    A stored config is read through :meth:`Config.from_dict`, so a setting added to the kit since
    the run was kept counts at its default (new settings default to the behaviour before them, or
    are read at that behaviour: ``mofkit.config.BEFORE_ADDED``); a stored key the kit no longer
    knows leaves the dict as stored, which then matches no config. Settings the run's task never
    reads (:func:`mofkit.train.tasks.settings_not_read`) are left out.
    """
    if not isinstance(cfg, Config):
        try:
            cfg = Config.from_dict(cfg)
        except (KeyError, ValueError, TypeError, AttributeError):
            pass
    d = json.loads(json.dumps(cfg.to_dict() if isinstance(cfg, Config) else cfg, default=list))
    pretrained = d.get("pretrain", {}) if d.get("model", {}).get("pretrained") == PRETRAINED_TAG else None
    for key in _NOT_THE_RUN + (settings_not_read(cfg) if isinstance(cfg, Config) else ()):
        *parents, leaf = key.split(".")
        node = d
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    for section, leaf in _PATHS:
        node = d.get(section, {})
        if isinstance(node.get(leaf), str):
            node[leaf] = _repo_relative(node[leaf])
    if _decoded_at_native_size(d):  # either decoder gives these frames, pixel for pixel
        d.get("data", {}).pop("backend", None)
    if pretrained is not None:  # a run started from `mofkit pretrain`: its towers' settings count
        d["pretrain"] = {k: v for k, v in pretrained.items() if k not in _PRETRAIN_NOT_THE_TOWERS}
    return d


def _decoded_at_native_size(d: dict[str, Any]) -> bool:
    """Whether the run decodes the synthetic corpus at the size it was written at: no resize, where
    PyAV and decord give the same pixels (tests/test_synthetic.py), so which of the two decoded
    them does not make the run (runs kept with decord, the default before PyAV, stay the same
    runs). A resize uses each library's own scaler, and there the decoder counts."""
    data, synthetic = d.get("data", {}), d.get("synthetic", {})
    generated = data.get("dataset") in DATASET_SPECS and DATASET_SPECS[data["dataset"]].generated
    return (generated and data.get("decode_size") is not None
            and data.get("decode_size") == synthetic.get("size"))


# paths that name the same file whether written relative to the repository (the CLI) or absolute
# (the notebooks anchor them at the repository)
_PATHS = (("data", "root"), ("data", "video_dir"), ("model", "pretrained"))


def _repo_relative(value: str) -> str:
    path = Path(value)
    if not path.is_absolute():
        return path.as_posix()
    repo = Path(__file__).resolve().parents[2]
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return value


def same_run(a: Config | dict, b: Config | dict) -> bool:
    """Whether two configs train the same run (the same weights, metrics and ranks)."""
    return run_identity(a) == run_identity(b)


def finished(run_dir: str | os.PathLike) -> dict | None:
    """A run folder's ``metrics.json`` when the run finished (final metrics and ranks present)."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file() or not (run_dir / RANKS_FILE).is_file():
        return None
    doc = json.loads(path.read_text())
    return doc if doc.get("final") is not None else None


def find_kept(kept_dir: str | os.PathLike, cfg: Config) -> dict | None:
    """The kept run at ``kept_dir`` if it is ``cfg``'s run, finished; else None.

    A kept run of other settings (the study's grid or a default changed since) is not reused: it
    is trained again and its kept files replaced.
    """
    doc = finished(kept_dir)
    if doc is None or not same_run(doc["config"], cfg):
        return None
    return doc


def _compact_ranks(src: Path, dst: Path) -> None:
    """The ranks file compressed, counts as int32 (a 2,000-query run: about 30 kB, not 200)."""
    import numpy as np

    with np.load(src) as z:
        arrays = {k: (z[k].astype(np.int32) if z[k].dtype.kind == "i" else z[k]) for k in z.files}
    with open(dst, "wb") as f:
        np.savez_compressed(f, **arrays)


def keep_run(run_dir: str | os.PathLike, kept_dir: str | os.PathLike, *, device: str = "") -> Path:
    """Copy a finished run's :data:`KEPT_FILES` to ``kept_dir`` (the device into metrics.json);
    returns ``kept_dir``. The copy is made beside it and renamed in place, so a kill never leaves
    half a kept run."""
    run_dir, kept_dir = Path(run_dir), Path(kept_dir)
    doc = finished(run_dir)
    if doc is None:
        raise FileNotFoundError(f"{run_dir} holds no finished run (metrics.json with final metrics "
                                f"and {RANKS_FILE})")
    tmp = kept_dir.with_name(f".{kept_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(run_dir / CONFIG_FILE, tmp / CONFIG_FILE)
    _compact_ranks(run_dir / RANKS_FILE, tmp / RANKS_FILE)
    small = {k: doc[k] for k in ("config", "final", "train_seconds", "dataset") if k in doc}
    small["device"] = device
    (tmp / METRICS_FILE).write_text(json.dumps(small, indent=1, default=float))
    old = kept_dir.with_name(f".{kept_dir.name}.old")
    if kept_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(kept_dir, old)
    os.replace(tmp, kept_dir)
    shutil.rmtree(old, ignore_errors=True)
    return kept_dir
