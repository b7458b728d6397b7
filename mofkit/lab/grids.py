"""Studies as data: named grids of training runs, one runner, one command.

A study is a function of a config that returns a :class:`Study`: the folder its runs live in (under
the results folder, OUT_DIR), what every run starts from, the list of settings (dotted config
overrides, each with the labels its table rows get) and the seeds. :func:`run_study` trains every
(setting, seed), or reuses it when it has finished (an interrupted run resumes from its last
epoch), and rewrites ``<out>/<folder>/results.csv`` after each run, so a study is one resumable
command::

    python -m mofkit study k_sweep --profile cpu           # or: ablations, tradeoff, controls, regimes
    python -m mofkit study k_sweep --set study.seeds=[0,1,2,3,4]

The paired studies (``controls``, ``regimes``) test on a corpus of their own with
``study.test_videos`` test videos (2,000 at ``cpu``: one seed's R@1 then has a standard error under
a point), evaluate every ``study.eval_every`` epochs and at the end, and train ``study.paired_seeds``. Where ``study.keep_dir`` is
set (``cpu``: ``docs/results/runs/cpu``), every finished run's ``config.json``, ``metrics.json`` and
``ranks.npz`` are kept there, a few kB each, so that a clone resumes a study where another machine
left it and the paired statistics can be recomputed from committed files
(:mod:`mofkit.lab.paired`).

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

from mofkit.config import Config
from mofkit.data.datasets import dataset_spec
from mofkit.runfiles import CHECKPOINT_FILE, seed_folder
from mofkit.lab.experiments import run_name
from mofkit.lab.names import (COMPRESSORS, COMPRESSOR_CORPORA, CONTROLS, LABEL_KEYS, METHODS, OWN_RUNS, PAIRED_BASELINES, REGIMES, REGIME_METHODS, compressor_baselines, uniform_label)
from mofkit.lab.summaries import summarise_compressors, summarise_paired


@dataclass
class Study:
    """One study's runs."""

    name: str  # the study's name (a key of STUDIES)
    folder: str  # where its runs live, relative to the results folder
    settings: list[dict[str, Any]]  # dotted overrides per setting, plus LABEL_KEYS for the table
    seeds: tuple[int, ...]  # training seeds of every setting
    base: dict[str, Any] = field(default_factory=dict)  # overrides of every run (e.g. a start checkpoint)
    needs: tuple[str, ...] = ()  # own runs that must exist first (OWN_RUNS), or "pretrain"
    keep: bool = False  # keep finished runs' files under study.keep_dir (the paired studies)
    seed_major: bool = False  # every setting's seed 0 first, then seed 1...: partial results pair up
    # a paired study's summary table, (cfg, runs, measure=...) -> table, and the rows its paired
    # intervals compare against; None for the studies whose table is their results.csv
    summarise: Callable[..., pd.DataFrame] | None = None
    baselines: tuple[str, ...] = ()


def own_setting(cfg: Config, kind: str) -> dict[str, Any]:
    """The K sweep's setting of the config's own ``uniform`` or ``mof`` run."""
    if kind not in OWN_RUNS:
        raise ValueError(f"run kind must be one of {OWN_RUNS}, not {kind!r}")
    return {"data.num_frames": cfg.data.num_frames, "mof.enabled": kind == "mof"}


def own_run_dir(cfg: Config, kind: str) -> str:
    """Folder, under the results folder, of the config's own ``uniform`` or ``mof`` run."""
    return seed_folder(f"sweep/{run_name(own_setting(cfg, kind))}", cfg.train.seed)


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
    if st.capped_frame_lr:  # frames that move: per-batch updates at a large frame lr, capped per step
        lr, cap = st.capped_frame_lr
        settings += [{**on, "ablation": "frames that move", "mof.update": "batch", "mof.frame_lr": lr,
                      "mof.frame_step_cap": cap}]
    settings += [{**on, "ablation": "hypergradient",
                  "mof.hypergrad": "fd" if m.hypergrad == "exact" else "exact"}]
    settings += [{**on, "ablation": "temporal head",
                  "model.temporal_head": "seqTransf" if cfg.model.temporal_head == "meanP" else "meanP"}]
    settings += [{"mof.enabled": False, "ablation": "uniform (same budget)"}]
    for s in settings:  # the table's value column: what the setting changes
        shown = {k.split(".")[-1]: v for k, v in s.items() if k not in LABEL_KEYS and k != "mof.enabled"}
        s["value"] = ", ".join(f"{k}={v}" for k, v in shown.items()) or s["ablation"]
    base = {"model.pretrained": str(out / own_run_dir(cfg, "uniform") / CHECKPOINT_FILE)}
    if st.ablation_epochs:
        base["train.epochs"] = st.ablation_epochs
    if st.ablation_lr is not None:  # fine-tune: a learning rate of its own, not re-warmed from scratch
        base.update({"train.lr": st.ablation_lr, "train.warmup_fraction": 0.0})
    return Study("ablations", "ablations", settings, tuple(st.ablation_seeds), base, ("uniform",))


def corpus_root(cfg: Config, corpus: dict[str, Any]) -> str:
    """Folder of a paired study's corpus: the profile's root, ``-t<test videos>``, and the corpus
    overrides (``data/synthetic-t2000``, ``data/synthetic-t2000_short_prob-0.25``); each corpus has
    its own folder, so that two regimes never regenerate each other's files."""
    n_test = cfg.study.test_videos or cfg.synthetic.n_test
    parts = [f"t{n_test}"] + [f"{k.split('.')[-1]}-{'-'.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"
                              for k, v in corpus.items()]
    return f"{cfg.data.root}-{'_'.join(parts)}"


def regime_overrides(cfg: Config, regime: str, out: Path) -> dict[str, Any]:
    """Overrides of every run of a regime: its corpus (synthetic settings and folder, the study's
    test split), evaluations every ``study.eval_every`` epochs, and for ``pretrained start`` the towers of
    ``mofkit pretrain`` with the fine-tuning learning rates ``study.finetune_lr`` (new modules) and
    ``study.finetune_tower_lr`` (towers)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; regimes: {', '.join(REGIMES)}")
    spec = dict(REGIMES[regime])
    pretrained = spec.pop("pretrain", False)
    corpus = {k: v for k, v in spec.items() if k.startswith("synthetic.")}
    over = {**_corpus_overrides(cfg, corpus), **{k: v for k, v in spec.items() if k not in corpus}}
    data = dataset_spec(cfg.data.dataset)
    if (corpus and not data.generated) or (over.get("train.family_batches") and not data.families):
        raise ValueError(f"regime {regime!r} needs the synthetic corpus (its settings or its "
                         f"families); profile {cfg.profile} reads {cfg.data.dataset}")
    if pretrained:
        from mofkit.train.pretrain import PRETRAINED_TAG

        over.update({"model.pretrained": PRETRAINED_TAG,
                     "train.lr": cfg.study.finetune_lr, "train.tower_lr": cfg.study.finetune_tower_lr})
    return over


def _paired_settings(cfg: Config, out: Path, regimes, methods) -> list[dict[str, Any]]:
    k = cfg.data.num_frames
    settings = []
    for regime in regimes:
        over = regime_overrides(cfg, regime, out)
        for method in methods:
            if method == "oracle" and not dataset_spec(cfg.data.dataset).timelines:
                continue  # event frames exist only where the corpus knows its events
            named = {"data.num_frames": k, **METHODS[method]}
            settings.append({**over, **named, "label": method, "regime": regime,
                             "folder": f"{_slug(regime)}/{run_name(named)}"})
    return settings


def _slug(text: str) -> str:
    return text.replace(" ", "_")


def controls(cfg: Config, out: Path) -> Study:
    """MOF against its controls at one inference cost (K frames) and one training budget, in the
    base regime (the study's corpus): ``uniform`` and ``rand`` (the baselines' frame sampling),
    ``frozen`` (MOF's bank, never updated), ``oracle`` (synthetic corpus: a bank of frames inside
    the captioned events, never updated), MOF with the exact and with the first-order
    hypergradient; ``study.paired_seeds`` each."""
    return Study("controls", "studies", _paired_settings(cfg, out, ["base"], CONTROLS),
                 tuple(cfg.study.paired_seeds), keep=True, seed_major=True,
                 summarise=summarise_paired, baselines=PAIRED_BASELINES)


def regimes(cfg: Config, out: Path) -> Study:
    """MOF, ``uniform`` and ``rand`` across regimes, one axis at a time (:data:`REGIMES`: the
    corpus, a small training set, a pretrained start); ``study.paired_seeds`` each. Its base regime
    shares its runs with the controls study."""
    # a real dataset has no corpus to vary and no families: the base and the pretrained start
    names = [r for r in (cfg.study.regimes or REGIMES)
             if dataset_spec(cfg.data.dataset).generated or set(REGIMES[r]) <= {"pretrain"}]
    needs = ("pretrain",) if any(REGIMES[r].get("pretrain") for r in names) else ()
    return Study("regimes", "studies", _paired_settings(cfg, out, names, REGIME_METHODS),
                 tuple(cfg.study.paired_seeds), needs=needs, keep=True, seed_major=True,
                 summarise=summarise_paired, baselines=PAIRED_BASELINES)


def compressors(cfg: Config, out: Path) -> Study:
    """Frame compressors against uniform sampling at matching and higher cost, on both corpora
    (:data:`COMPRESSOR_CORPORA`): uniform at the config's K, every compressor of
    ``study.compressors`` (:data:`COMPRESSORS`) at that K from ``compress.input_frames`` decoded
    frames, then uniform at each of ``study.compressor_k_values``; ``study.paired_seeds`` each. The
    static corpus's uniform run at the config's K is the controls study's ``uniform`` (one run)."""
    k = cfg.data.num_frames
    chosen = cfg.study.compressors or tuple(COMPRESSORS)
    names = [n for n in chosen if n in COMPRESSORS]
    unknown = set(chosen) - set(COMPRESSORS)
    if unknown:
        raise ValueError(f"study.compressors: unknown {sorted(unknown)}; known: {', '.join(COMPRESSORS)}")
    if not dataset_spec(cfg.data.dataset).generated:
        corpora = {"static": {}}  # a public dataset is the corpus it is
    else:
        corpora = {c: COMPRESSOR_CORPORA[c] for c in cfg.study.compressor_corpora}
    settings = []
    for corpus, spec in corpora.items():
        over = _corpus_overrides(cfg, spec)
        regime = "base" if not spec else corpus  # the static corpus's folders are the controls'
        named = [({"data.num_frames": k, **METHODS["uniform"]}, uniform_label(k))]
        named += [({"data.num_frames": k, **METHODS["uniform"], **COMPRESSORS[n]}, n) for n in names]
        named += [({"data.num_frames": kk, **METHODS["uniform"]}, uniform_label(kk))
                  for kk in cfg.study.compressor_k_values if kk != k]
        settings += [{**over, **o, "label": label, "regime": corpus,
                      "folder": f"{_slug(regime)}/{run_name(o)}"} for o, label in named]
    return Study("compressors", "studies", settings, tuple(cfg.study.paired_seeds), keep=True,
                 seed_major=True, summarise=summarise_compressors, baselines=compressor_baselines(cfg))


def _corpus_overrides(cfg: Config, corpus: dict[str, Any]) -> dict[str, Any]:
    """Overrides that put a run on a paired study's corpus: its synthetic settings and folder, the
    study's test split, evaluations every ``study.eval_every`` epochs and at the end."""
    over: dict[str, Any] = {"train.eval_every": cfg.study.eval_every}
    if dataset_spec(cfg.data.dataset).generated:
        over.update(corpus)
        if cfg.study.test_videos:
            over["synthetic.n_test"] = cfg.study.test_videos
        over["data.root"] = corpus_root(cfg, corpus)
    return over


STUDIES: dict[str, Callable[[Config, Path], Study]] = {
    "k_sweep": k_sweep, "tradeoff": tradeoff, "ablations": ablations, "controls": controls,
    "regimes": regimes, "compressors": compressors}


def get_study(cfg: Config, name: str, out: str | Path) -> Study:
    """The study ``name`` of a config, its runs under ``out``."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}")
    return STUDIES[name](cfg, Path(out))
