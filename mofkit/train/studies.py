"""Studies as data: named grids of training runs, one runner, one command.

A study is a function of a config that returns a :class:`Study`: the folder its runs live in (under
the results folder, OUT_DIR), what every run starts from, the list of settings (dotted config
overrides, each with the labels its table rows get) and the seeds. :func:`run_study` trains every
(setting, seed), or reuses it when it has finished (an interrupted run resumes from its last
epoch), and rewrites ``<out>/<folder>/results.csv`` after each run, so a study is one resumable
command::

    python -m mofkit study k_sweep --profile cpu           # or: ablations, tradeoff, controls
    python -m mofkit study k_sweep --set study.seeds=[0,1,2,3,4]

The notebooks (03_ablations, 05_efficiency) and ``benchmarks/tradeoff.py`` call the same runner, so
the grids (``cfg.study``: K values, seeds, ablation values) are written in one place and a run is
trained once whoever asks for it. The config's own runs (``uniform`` and ``mof`` at its K and seed,
which notebooks 01 and 02 train) are the K sweep's runs of that setting: :func:`own_run_dir`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mofkit.config import Config, apply_overrides
from mofkit.train.experiments import result_row, run_name

OWN_RUNS = ("uniform", "mof")  # the config's own runs, at its K and seed
LABEL_KEYS = ("label", "ablation", "value")  # setting keys that label table rows, not overrides


@dataclass
class Study:
    """One study's runs."""

    name: str  # the study's name (a key of STUDIES)
    folder: str  # where its runs live, relative to the results folder
    settings: list[dict[str, Any]]  # dotted overrides per setting, plus LABEL_KEYS for the table
    seeds: tuple[int, ...]  # training seeds of every setting
    base: dict[str, Any] = field(default_factory=dict)  # overrides of every run (e.g. a start checkpoint)
    needs: tuple[str, ...] = ()  # own runs that must exist first (OWN_RUNS)


def own_setting(cfg: Config, kind: str) -> dict[str, Any]:
    """The K sweep's setting of the config's own ``uniform`` or ``mof`` run."""
    if kind not in OWN_RUNS:
        raise ValueError(f"run kind must be one of {OWN_RUNS}, not {kind!r}")
    return {"data.num_frames": cfg.data.num_frames, "mof.enabled": kind == "mof"}


def own_run_dir(cfg: Config, kind: str) -> str:
    """Folder, under the results folder, of the config's own ``uniform`` or ``mof`` run."""
    return f"sweep/{run_name(own_setting(cfg, kind))}/seed{cfg.train.seed}"


# -- the studies -----------------------------------------------------------------------------------

def k_sweep(cfg: Config, out: Path) -> Study:
    """Uniform K over ``study.k_values`` and MOF at the config's K, for ``study.seeds``."""
    k = cfg.data.num_frames
    settings = [{"data.num_frames": kk, "mof.enabled": False, "label": "uniform"}
                for kk in cfg.study.k_values]
    settings.append({"data.num_frames": k, "mof.enabled": True, "label": "MOF"})
    return Study("k_sweep", "sweep", settings, tuple(cfg.study.seeds))


def tradeoff(cfg: Config, out: Path) -> Study:
    """The K sweep plus MOF with the first-order (finite-difference) hypergradient."""
    study = k_sweep(cfg, out)
    study.settings.append({"data.num_frames": cfg.data.num_frames, "mof.enabled": True,
                           "mof.hypergrad": "fd", "label": "MOF (first order)"})
    return Study("tradeoff", study.folder, study.settings, study.seeds)


def ablations(cfg: Config, out: Path) -> Study:
    """One axis at a time around the config's MOF settings, each run fine-tuning the config's own
    uniform run for ``study.ablation_epochs`` (all settings start from the same model, and a
    setting costs minutes, not a full training), for ``study.ablation_seeds``."""
    st, m = cfg.study, cfg.mof
    on = {"mof.enabled": True}
    settings = [{**on, "ablation": "MOF (config)"}]
    settings += [{**on, "ablation": "N", "mof.meta_frames": n} for n in st.meta_frames_values
                 if n != m.meta_frames and n <= cfg.data.dense_frames]
    settings += [{**on, "ablation": "alpha", "mof.alpha": a} for a in st.alpha_values if a != m.alpha]
    settings += [{**on, "ablation": "frame lr", "mof.frame_lr": lr} for lr in st.frame_lr_values
                 if lr != m.frame_lr]
    settings += [{**on, "ablation": "update", "mof.update": "batch" if m.update == "epoch" else "epoch"}]
    settings += [{**on, "ablation": "hypergradient",
                  "mof.hypergrad": "fd" if m.hypergrad == "exact" else "exact"}]
    settings += [{**on, "ablation": "temporal head",
                  "model.temporal_head": "seqTransf" if cfg.model.temporal_head == "meanP" else "meanP"}]
    settings += [{"mof.enabled": False, "ablation": "uniform (same budget)"}]
    for s in settings:  # the table's value column: what the setting changes
        shown = {k.split(".")[-1]: v for k, v in s.items() if k not in LABEL_KEYS and k != "mof.enabled"}
        s["value"] = ", ".join(f"{k}={v}" for k, v in shown.items()) or s["ablation"]
    base = {"model.pretrained": str(out / own_run_dir(cfg, "uniform") / "checkpoint.pt")}
    if st.ablation_epochs:
        base["train.epochs"] = st.ablation_epochs
    return Study("ablations", "ablations", settings, tuple(st.ablation_seeds), base, ("uniform",))


def controls(cfg: Config, out: Path) -> Study:
    """MOF against its controls at one inference cost (K frames) and one training budget.

    ``uniform`` and ``rand`` (the baselines' frame sampling), ``frozen`` (MOF's bank, never
    updated), ``oracle`` (synthetic corpus: a bank of frames inside the captioned events, never
    updated), MOF with the exact and with the first-order hypergradient; ``study.seeds`` each. The
    bank methods get the baseline's random crop on their frames (``mof.augment``), so every method
    sees the same augmentation.
    """
    k = cfg.data.num_frames
    bank = {"data.num_frames": k, "mof.enabled": True, "mof.augment": True}
    settings = [{"data.num_frames": k, "mof.enabled": False, "label": "uniform"},
                {"data.num_frames": k, "mof.enabled": False, "data.train_sampling": "rand", "label": "rand"},
                {**bank, "mof.update": "none", "label": "frozen"}]
    if cfg.data.dataset == "synthetic":
        settings.append({**bank, "mof.update": "none", "mof.init": "oracle", "label": "oracle"})
    settings += [{**bank, "label": "MOF"}, {**bank, "mof.hypergrad": "fd", "label": "MOF (first order)"}]
    return Study("controls", "controls", settings, tuple(cfg.study.seeds))


STUDIES: dict[str, Callable[[Config, Path], Study]] = {
    "k_sweep": k_sweep, "tradeoff": tradeoff, "ablations": ablations, "controls": controls}


def get_study(cfg: Config, name: str, out: str | Path) -> Study:
    """The study ``name`` of a config, its runs under ``out``."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}")
    return STUDIES[name](cfg, Path(out))


# -- running ---------------------------------------------------------------------------------------

def train_own_run(cfg: Config, out: str | Path, kind: str, *, progress: bool = True):
    """Train (or resume, or reuse) the config's own ``uniform`` or ``mof`` run under ``out``."""
    from mofkit.train.loop import train

    run = Config.from_dict(cfg.to_dict())
    apply_overrides(run, own_setting(cfg, kind))
    run.out_dir = str(Path(out) / own_run_dir(cfg, kind))
    return train(run, progress=progress)


def run_study(cfg: Config, name: str, out: str | Path, *, progress: bool = True) -> pd.DataFrame:
    """Train every (setting, seed) of a study, reusing finished runs; return its table.

    Args:
        cfg: the config every run starts from (a profile, with its own overrides).
        name: a key of :data:`STUDIES`.
        out: the results folder (OUT_DIR); the runs go to ``<out>/<study folder>/<setting>/seed<s>``.
        progress: training progress bars and a line per run.

    Returns:
        One row per (setting, seed): ``setting``, ``seed``, ``method``, ``K``, the overrides, the
        label columns, the final test metrics and cost (:func:`mofkit.train.experiments.result_row`);
        also written to ``<out>/<study folder>/results.csv`` after every run.
    """
    from mofkit.train.loop import train

    out = Path(out)
    study = get_study(cfg, name, out)
    for kind in study.needs:
        train_own_run(cfg, out, kind, progress=progress)
    root = out / study.folder
    rows = []
    for setting in study.settings:
        overrides = {k: v for k, v in setting.items() if k not in LABEL_KEYS}
        for seed in study.seeds:
            run = Config.from_dict(cfg.to_dict())
            apply_overrides(run, study.base)
            apply_overrides(run, overrides)
            apply_overrides(run, {"train.seed": int(seed)})
            run.out_dir = str(root / run_name(overrides) / f"seed{seed}")
            if progress:
                print(f"run {run_name(overrides)} seed {seed} -> {run.out_dir}", flush=True)
            res = train(run, progress=progress)
            if not res.is_main:
                continue
            row = {"setting": run_name(overrides), "seed": int(seed),
                   "method": setting.get("label") or ("MOF" if run.mof.enabled else "uniform"),
                   "K": run.data.num_frames, **overrides}
            row.update({k: setting[k] for k in ("ablation", "value") if k in setting})
            row.update(result_row(run, res.final, res.train_seconds))
            rows.append(row)
            root.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return pd.DataFrame(rows)
