"""What a training run's folder holds and how run folders are named: the one place that says so.

A run folder (``<out_dir>``) holds :data:`CONFIG_FILE` (the config it ran with),
:data:`METRICS_FILE` (per-evaluation history, final metrics, training time; :data:`METRICS_CSV`
beside it), :data:`RANKS_FILE` (each test query's rank, for paired statistics) and
:data:`CHECKPOINT_FILE`; a MOF run also its frame bank. Every run of a grid lives in
:func:`seed_folder` of its setting, so two seeds of one setting never share a folder (a resumed
run refuses a checkpoint of another seed). No imports: every room may read these names.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
METRICS_CSV = "metrics.csv"
RANKS_FILE = "ranks.npz"
CHECKPOINT_FILE = "checkpoint.pt"


def seed_folder(setting: str, seed: int) -> str:
    """The folder of one seed's run of a setting, relative to its study or results folder:
    ``<setting>/seed<s>``."""
    return f"{setting}/seed{int(seed)}"


def config_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def metrics_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / METRICS_FILE


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE
