"""The study runner: train every (setting, seed) of a study, reusing finished runs (kept under
``study.keep_dir`` or under the results folder), and summarise it with the study's own summariser.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mofkit.config import Config, apply_overrides
from mofkit.runfiles import seed_folder
from mofkit.lab.experiments import result_row, run_name
from mofkit.lab import paired
from mofkit.lab.grids import Study, get_study, own_run_dir, own_setting
from mofkit.lab.names import LABEL_KEYS, OWN_RUNS


# -- running ---------------------------------------------------------------------------------------

def train_own_run(cfg: Config, out: str | Path, kind: str, *, progress: bool = True):
    """Train (or resume, or reuse) the config's own ``uniform`` or ``mof`` run under ``out``."""
    from mofkit.train.loop import train

    run = Config.from_dict(cfg.to_dict())
    apply_overrides(run, own_setting(cfg, kind))
    run.out_dir = str(Path(out) / own_run_dir(cfg, kind))
    return train(run, progress=progress)


def _study_runs(cfg: Config, study: Study, out: Path):
    """``(setting, seed, run config, folder under the study root)`` of every run, in run order."""
    pairs = [(s, seed) for seed in study.seeds for s in study.settings] if study.seed_major else \
        [(s, seed) for s in study.settings for seed in study.seeds]
    for setting, seed in pairs:
        overrides = {k: v for k, v in setting.items() if k not in LABEL_KEYS}
        run = Config.from_dict(cfg.to_dict())
        apply_overrides(run, study.base)
        apply_overrides(run, overrides)
        apply_overrides(run, {"train.seed": int(seed)})
        rel = seed_folder(setting.get("folder") or run_name(overrides), seed)
        yield setting, overrides, run, rel


def run_study(cfg: Config, name: str, out: str | Path, *, progress: bool = True,
              keep: str | Path | None | bool = True, train_missing: bool = True,
              train_seeds=None, train_labels=None) -> pd.DataFrame:
    """Train every (setting, seed) of a study, reusing finished runs; return its table.

    Args:
        cfg: the config every run starts from (a profile, with its own overrides).
        name: a key of :data:`STUDIES`.
        out: the results folder (OUT_DIR); the runs go to ``<out>/<study folder>/<setting>/seed<s>``.
        progress: training progress bars and a line per run.
        keep: where a paired study keeps its finished runs' files (and finds those of other
            machines): True for ``study.keep_dir``, a folder, or None/False for nowhere.
        train_missing: False reads only what is finished (kept or under ``out``) and trains nothing.
        train_seeds: the seeds whose missing runs are trained (None: every seed of the study); the
            other seeds' runs are read where finished (the main job trains one seed of the
            controls and shows every seed a study command has kept).
        train_labels: the row labels whose missing runs are trained (None: every setting); the
            others are read where finished (e.g. the controls without the MOF rows).

    Returns:
        One row per (setting, seed): ``setting``, ``seed``, ``method``, ``K``, the overrides, the
        label columns, the final test metrics and cost (:func:`mofkit.lab.experiments.result_row`),
        ``run_dir`` (where its files are: kept or under ``out``) and ``device``; also written to
        ``<out>/<study folder>/results.csv`` after every run.
    """
    from mofkit.data.datasets import prepare_dataset
    from mofkit.device import describe_device
    from mofkit.train.loop import train

    out = Path(out)
    study = get_study(cfg, name, out)
    if keep is True:
        keep = cfg.study.keep_dir
    keep_root = Path(keep) / study.folder if (keep and study.keep) else None
    root = out / study.folder
    rows, prepared, needs_done = [], set(), False
    for setting, overrides, run, rel in _study_runs(cfg, study, out):
        run.out_dir = str(root / rel)
        kept = paired.find_kept(keep_root / rel, run) if keep_root is not None else None
        if kept is not None:
            final, seconds, run_dir, device = kept["final"], kept["train_seconds"], keep_root / rel, kept.get("device", "")
        else:
            may_train = train_missing and (train_seeds is None or run.train.seed in set(train_seeds)) \
                and (train_labels is None or setting.get("label") in set(train_labels))
            if not may_train and paired.finished(run.out_dir) is None:
                continue
            for need in study.needs if may_train and not needs_done else ():
                if need == "pretrain":
                    from mofkit.train.pretrain import run_pretrain

                    run_pretrain(cfg, progress=progress)
                elif need in OWN_RUNS:
                    train_own_run(cfg, out, need, progress=progress)
            needs_done = needs_done or may_train
            if run.data.root not in prepared:
                prepare_dataset(run, progress=progress)
                prepared.add(run.data.root)
            if progress:
                print(f"run {rel} -> {run.out_dir}", flush=True)
            res = train(run, progress=progress)
            if not res.is_main:
                continue
            final, seconds, run_dir = res.final, res.train_seconds, Path(run.out_dir)
            device = describe_device(run.device)
            if keep_root is not None:
                run_dir = paired.keep_run(run.out_dir, keep_root / rel, device=device)
        row = {"setting": run_name(overrides) if not setting.get("folder") else setting["folder"],
               "seed": int(run.train.seed),
               "method": setting.get("label") or ("MOF" if run.mof.enabled else "uniform"),
               "K": run.data.num_frames, **overrides}
        row.update({k: setting[k] for k in ("ablation", "value", "regime") if k in setting})
        row.update(result_row(run, final, seconds))
        row.update(run_dir=str(run_dir), device=device)
        rows.append(row)
        root.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(root / f"{name}.csv" if study.keep else root / "results.csv", index=False)
    return pd.DataFrame(rows)


def summarise_study(cfg: Config, name: str, runs: pd.DataFrame, *, measure: bool = True) -> pd.DataFrame:
    """A paired study's summary table, made by the study's own summariser (:attr:`Study.summarise`):
    :func:`summarise_paired` for the controls and regimes, :func:`summarise_compressors`."""
    study = get_study(cfg, name, ".")
    if study.summarise is None:
        raise ValueError(f"the {name} study has no paired summary: its table is its results.csv")
    return study.summarise(cfg, runs, measure=measure)
