"""What the notebooks call besides the library rooms: parameters -> config, shared result files.

Notebooks hold no logic of their own. Their first cell holds papermill parameters (PROFILE, DEVICE,
DATA_ROOT, OUT_DIR, SEED, OVERRIDES, ...); the second calls :func:`setup`. Results travel between
notebooks through files under OUT_DIR only: :func:`save_json` / :func:`load_json`,
:func:`save_table`, :func:`figure_path`; :func:`require` tells the reader which notebook to run
when an earlier one's output is missing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mofkit.config import Config, get_config

# Which notebook writes which result (for the "run this first" message).
PRODUCERS = {
    "data/summary.json": "00_data",
    "baseline/metrics.json": "01_baseline",
    "mof/metrics.json": "02_mof",
    "ablations/results.csv": "03_ablations",
    "sweep/results.csv": "05_efficiency",
}


class MissingResult(FileNotFoundError):
    """An earlier notebook's output is missing; the message names the notebook to run."""


def setup(profile: str, overrides: dict[str, Any] | None = None, *, out_dir: str | None = None,
          data_root: str | None = None, device: str = "auto", seed: int = 0,
          section: str | None = None) -> Config:
    """Build the run config from a notebook's parameters and create its output folder.

    Args:
        profile: config profile (``smoke``, ``cpu``, ``paper``).
        overrides: dotted config keys.
        out_dir: the notebooks' shared results folder (OUT_DIR); default ``runs/<profile>``.
        data_root: corpus folder (DATA_ROOT); None keeps the profile's.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: training seed.
        section: sub-folder of OUT_DIR for this notebook's training run (e.g. ``baseline``); the
            config's ``out_dir`` points there.

    Returns:
        The :class:`~mofkit.config.Config`.
    """
    cfg = get_config(profile, overrides)
    root = Path(out_dir or f"runs/{profile}")
    cfg.out_dir = str(root / section) if section else str(root)
    cfg.device = device
    cfg.train.seed = int(seed)
    if data_root:
        cfg.data.root = str(data_root)
    (root / "figures").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MOFKIT_RESULTS", str(root))
    return cfg


def results_root(cfg: Config) -> Path:
    """OUT_DIR of the notebooks (the parent of a section's run folder)."""
    return Path(os.environ.get("MOFKIT_RESULTS", cfg.out_dir))


def figure_path(cfg: Config, name: str) -> Path:
    """``OUT_DIR/figures/<name>.png``."""
    return results_root(cfg) / "figures" / f"{name}.png"


def save_json(cfg: Config, rel: str, obj: Any) -> Path:
    path = results_root(cfg) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=float))
    return path


def require(cfg: Config, rel: str) -> Path:
    """Path of an earlier notebook's result, or :class:`MissingResult` naming that notebook."""
    path = results_root(cfg) / rel
    if not path.exists():
        who = PRODUCERS.get(rel, "the earlier notebooks")
        raise MissingResult(f"{path} is missing: run notebook {who} first (same PROFILE and OUT_DIR)")
    return path


def load_json(cfg: Config, rel: str) -> Any:
    return json.loads(require(cfg, rel).read_text())


def save_table(cfg: Config, rel: str, df) -> Path:
    """Write a DataFrame as CSV under OUT_DIR."""
    path = results_root(cfg) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path
