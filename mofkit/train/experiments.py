"""Grids of training runs (K sweeps, ablations, seeds) collected into one table.

Each run gets its own folder ``<root>/<name>/seed<s>``; a finished run is not trained again (its
checkpoint holds the final metrics), so a notebook or script can be re-run cheaply and an
interrupted sweep resumes where it stopped. The table has one row per (setting, seed): the
overrides, the final test metrics (t2v, v2t, and the DSL variants), training time, inference
GFLOPs per video and per caption.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from mofkit.config import Config, apply_overrides
from mofkit.eval.metrics import DIRECTIONS, METRIC_KEYS


def run_name(overrides: dict[str, Any]) -> str:
    """A folder name for a setting: ``{"mof.enabled": True, "data.num_frames": 4}`` ->
    ``mof.enabled-True_data.num_frames-4``.

    The whole dotted key is kept: two sections' fields of the same name (``train.seed`` and
    ``synthetic.seed``) are different settings and must not share a folder, where a study would
    reuse the other's finished run.
    """
    if not overrides:
        return "default"
    parts = [f"{k}-{v}" for k, v in overrides.items()]
    return "_".join(parts).replace("/", "-").replace(" ", "")


def expand_grid(grid: dict[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """``{"a": [1, 2], "b": [3]}`` -> ``[{"a": 1, "b": 3}, {"a": 2, "b": 3}]``."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


_FLOPS_CACHE: dict[tuple, tuple[float, float]] = {}


def inference_gflops(cfg: Config) -> tuple[float, float]:
    """(GFLOPs per test video at K frames, GFLOPs per caption) of ``cfg``'s model (2 FLOPs per MAC)."""
    from mofkit.eval.cost import text_flops, video_flops
    from mofkit.models import create_retrieval_model

    m = cfg.model
    key = (m.arch, m.temporal_head, m.temporal_layers, m.context_length, cfg.data.num_frames)
    if key not in _FLOPS_CACHE:
        bundle = create_retrieval_model(m.arch, None, temporal_head=m.temporal_head,
                                        temporal_layers=m.temporal_layers, max_frames=m.max_frames,
                                        context_length=m.context_length)
        v = video_flops(bundle.model, cfg.data.num_frames, bundle.image_size)["total"]
        t = text_flops(bundle.model, m.context_length)
        _FLOPS_CACHE[key] = (v / 1e9, t / 1e9)
    return _FLOPS_CACHE[key]


def result_row(cfg: Config, final: dict, train_seconds: float) -> dict[str, Any]:
    """Flatten a run's final metrics into one table row."""
    row: dict[str, Any] = {}
    for direction in DIRECTIONS:
        for k in METRIC_KEYS:
            row[f"{direction}_{k}"] = final[direction][k]
    gv, gt = inference_gflops(cfg)
    row.update(train_seconds=train_seconds, gflops=gv, text_gflops=gt,
               n_test_videos=final.get("n_videos"), dropped_test_videos=len(final.get("dropped", [])))
    return row


def run_grid(base: Config, grid: dict[str, Iterable[Any]] | list[dict[str, Any]], *,
             seeds: Iterable[int] = (0,), root: str | Path, progress: bool = True,
             label: str | None = None) -> pd.DataFrame:
    """Train every (setting, seed) of a grid, reusing finished runs; return the results table.

    Args:
        base: the config every run starts from (a profile, with its own overrides).
        grid: dotted key -> values (all combinations), or an explicit list of override dicts.
        seeds: training seeds (``train.seed``); the corpus and the test set do not change.
        root: folder of the runs; ``<root>/results.csv`` is (re)written after each run.
        progress: training progress bars and a line per run.
        label: a ``method`` column value for every row (e.g. ``"uniform"``); None derives it.

    Returns:
        DataFrame, one row per run: ``setting``, ``seed``, the overrides, metrics, cost.
    """
    from mofkit.train.loop import train

    settings = grid if isinstance(grid, list) else expand_grid(grid)
    root = Path(root)
    rows = []
    for setting in settings:
        for seed in seeds:
            cfg = Config.from_dict(base.to_dict())
            apply_overrides(cfg, setting)
            apply_overrides(cfg, {"train.seed": int(seed)})
            cfg.out_dir = str(root / run_name(setting) / f"seed{seed}")
            if progress:
                print(f"run {run_name(setting)} seed {seed} -> {cfg.out_dir}", flush=True)
            res = train(cfg, progress=progress)
            if not res.is_main:
                continue
            row = {"setting": run_name(setting), "seed": int(seed),
                   "method": label or ("MOF" if cfg.mof.enabled else "uniform"),
                   "K": cfg.data.num_frames, **setting}
            row.update(result_row(cfg, res.final, res.train_seconds))
            rows.append(row)
            df = pd.DataFrame(rows)
            root.mkdir(parents=True, exist_ok=True)
            df.to_csv(root / "results.csv", index=False)
    return pd.DataFrame(rows)


def load_run(out_dir: str | Path) -> dict:
    """A finished or running run's ``metrics.json`` (config, history, final metrics)."""
    path = Path(out_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.json in {out_dir}: has this run been trained?")
    return json.loads(path.read_text())
