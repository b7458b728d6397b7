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
(:mod:`mofkit.train.paired`).

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
from mofkit.data.datasets import dataset_spec
from mofkit.runfiles import CHECKPOINT_FILE, seed_folder
from mofkit.train.experiments import result_row, run_name

OWN_RUNS = ("uniform", "mof")  # the config's own runs, at its K and seed
# setting keys that label table rows (or name the run's folder), not overrides
LABEL_KEYS = ("label", "ablation", "value", "regime", "folder")
# what a paired study's runs differ by: the methods, at the config's K (the bank methods get the
# baseline's random crop on their frames, mof.augment, so that every method sees the same augmentation)
_BANK = {"mof.enabled": True, "mof.augment": True}
METHODS: dict[str, dict[str, Any]] = {
    "uniform": {"mof.enabled": False},  # segment mid-points, every epoch
    "rand": {"mof.enabled": False, "data.train_sampling": "rand"},  # a random frame per segment
    "frozen": {**_BANK, "mof.update": "none"},  # MOF's bank, initialised as MOF's, never updated
    "oracle": {**_BANK, "mof.update": "none", "mof.init": "oracle"},  # frames inside the captioned events
    "MOF": dict(_BANK),
    "MOF (first order)": {**_BANK, "mof.hypergrad": "fd"},
}
CONTROLS = tuple(METHODS)  # the controls study: every method, in the base regime
REGIME_METHODS = ("uniform", "rand", "MOF")  # the regime study: MOF against both baselines
PAIRED_BASELINES = ("uniform", "rand")  # what the controls' and regimes' intervals compare against
# one axis at a time away from the profile: the corpus (its own folder), or the model's start
REGIMES: dict[str, dict[str, Any]] = {
    "base": {},
    "fewer short events": {"synthetic.short_prob": 0.25},
    "longer short events": {"synthetic.short_frames": (4, 6)},
    "small training set": {"synthetic.n_train": 250},
    "pretrained start": {"pretrain": True},  # the towers of `mofkit pretrain`, CLIP4Clip-like lrs
    "family batches": {"train.family_batches": True},  # batches of whole hard-negative families
}


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


# the compressors study: every video compressed from N decoded frames to K (mofkit.compress), at
# train and test time; label -> overrides at the config's K. Ordered by what a partial table needs
# first (the study runs seed-major): the strongest fixed compressor, then the learned ones.
COMPRESSORS: dict[str, dict[str, Any]] = {
    "segment_deviation": {"compress.name": "segment_deviation"},
    "slots soft": {"compress.name": "slots", "compress.mode": "soft"},
    "slots hard": {"compress.name": "slots", "compress.mode": "hard"},
    "slots soft (MOF amortised)": {"compress.name": "slots", "compress.mode": "soft",
                                   "compress.training": "amortised"},
    "keyframes": {"compress.name": "keyframes"},
    "segment_max": {"compress.name": "segment_max"},
    "segment_mean": {"compress.name": "segment_mean"},
    "dynamic_image": {"compress.name": "dynamic_image"},
    "slots hard (MOF amortised)": {"compress.name": "slots", "compress.mode": "hard",
                                   "compress.training": "amortised"},
    "slots soft (distilled)": {"compress.name": "slots", "compress.mode": "soft", "compress.distill": 1.0},
}
# its corpora: the paired studies' base corpus, and the same with a moving camera and background
# clutter, where per-pixel pooling smears and events stay visible in single frames
COMPRESSOR_CORPORA: dict[str, dict[str, Any]] = {
    "static": {},
    "camera": {"synthetic.camera": "moving", "synthetic.clutter": 4},
}


def uniform_label(k: int) -> str:
    """The compressors study's label of uniform sampling at K frames: ``uniform K=4``."""
    return f"uniform K={k}"


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
        label columns, the final test metrics and cost (:func:`mofkit.train.experiments.result_row`),
        ``run_dir`` (where its files are: kept or under ``out``) and ``device``; also written to
        ``<out>/<study folder>/results.csv`` after every run.
    """
    from mofkit.data.datasets import prepare_dataset
    from mofkit.device import describe_device
    from mofkit.train import paired
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


def measured_throughput(cfg: Config, root: str | Path, k: int, videos: int = 64,
                        compress: dict[str, Any] | None = None) -> float:
    """End-to-end test videos per second (decode K uniform frames, preprocess, encode; decode
    workers overlapped with the encoder, :func:`mofkit.eval.cost.end_to_end_throughput`) of the
    config's model on ``videos`` test files of the corpus at ``root``, measured now. With
    ``compress`` (``compress.*`` overrides naming a compressor), N frames are decoded and
    compressed to K first; its weights do not change its speed, so a fresh one is timed."""
    import dataclasses

    from mofkit.data.datasets import load_dataset
    from mofkit.data.preprocess import Preprocessor
    from mofkit.device import get_device
    from mofkit.eval.cost import end_to_end_throughput
    from mofkit.models import create_from_config

    device = get_device(cfg.device)
    test = load_dataset(cfg.data.dataset, root, "test", video_dir=cfg.data.video_dir)
    paths = [r.path for r in list(test)[:videos]]
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None), device)
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    comp, n = None, None
    if compress and compress.get("compress.name"):
        from mofkit.compress import compressor_from_config

        run = apply_overrides(Config.from_dict(cfg.to_dict()), compress)
        comp, n = compressor_from_config(run.compress, k).to(device), run.compress.input_frames
    return end_to_end_throughput(bundle.model, paths, k, preprocess=pre.eval,
                                 decode_size=cfg.data.decode_size, backend=cfg.data.backend,
                                 device=device, compressor=comp, input_frames=n)["videos_per_s"]


def timing_root(cfg: Config, runs: pd.DataFrame) -> str:
    """The corpus whose test videos :func:`measured_throughput` times for a study's table: the runs'
    own corpus if this machine has it, else the config's. Any corpus of the config's video format
    will do, and kept runs (``docs/results/runs``) come from corpora a fresh clone has not generated."""
    roots = (list(dict.fromkeys(runs["data.root"].dropna())) if "data.root" in runs else []) + [cfg.data.root]
    have = [r for r in roots if (Path(r) / "splits").is_dir() or (Path(r) / "corpus.json").is_file()
            or any(Path(r).glob("*.csv")) or any(Path(r).glob("*.json"))]
    return str(have[0] if have else roots[0])


def regime_ceiling(root: str | Path, k: int) -> dict[str, float]:
    """The information and colour-only ceilings of t2v R@1 (:mod:`mofkit.eval.ceiling`) at K
    uniform frames on the test split of the synthetic corpus at ``root``, in percent
    (``ceiling_t2v_R1``, ``colour_ceiling_t2v_R1``); NaN where the corpus is absent."""
    from mofkit.data.datasets import load_dataset
    from mofkit.data.synthetic import load_timeline
    from mofkit.eval.ceiling import information_ceiling

    if not (Path(root) / "corpus.json").is_file():
        return {"ceiling_t2v_R1": float("nan"), "colour_ceiling_t2v_R1": float("nan")}
    ids = load_dataset("synthetic", root, "test").video_ids
    c = information_ceiling(load_timeline(root), ids, k)
    return {key: c[key] for key in ("ceiling_t2v_R1", "colour_ceiling_t2v_R1")}


def _add_ceilings(table: pd.DataFrame, runs: pd.DataFrame, frames) -> None:
    """Both ceilings per row, at the frames each row reads (``frames``: one count per row)."""
    roots = runs.groupby("regime")["data.root"].first()
    cache = {}
    for reg, n in {(reg, int(n)) for reg, n in zip(table["regime"], frames)}:
        cache[(reg, n)] = regime_ceiling(roots[reg], n)
    for col in ("ceiling_t2v_R1", "colour_ceiling_t2v_R1"):
        table[col] = [cache[(reg, int(n))][col] for reg, n in zip(table["regime"], frames)]


def summarise_study(cfg: Config, name: str, runs: pd.DataFrame, *, measure: bool = True) -> pd.DataFrame:
    """A paired study's summary table, made by the study's own summariser (:attr:`Study.summarise`):
    :func:`summarise_paired` for the controls and regimes, :func:`summarise_compressors`."""
    study = get_study(cfg, name, ".")
    if study.summarise is None:
        raise ValueError(f"the {name} study has no paired summary: its table is its results.csv")
    return study.summarise(cfg, runs, measure=measure)


def summarise_paired(cfg: Config, runs: pd.DataFrame, *, measure: bool = True) -> pd.DataFrame:
    """A paired study's table: per regime and method, seeds, R@1 mean and sd, the paired 95 %
    interval of the difference to ``uniform`` and to ``rand``
    (:func:`mofkit.eval.stats.paired_summary`), inference GFLOPs per video and, with ``measure``,
    end-to-end videos per second measured on this machine (the same for every method of a K:
    they differ in training only); ``profile`` and ``n_test_videos`` columns; on the synthetic
    corpus ``ceiling_t2v_R1``, the best t2v R@1 the K uniform test frames allow (:func:`regime_ceiling`)."""
    from mofkit.eval.cost import describe_throughput
    from mofkit.eval.stats import paired_summary

    if runs.empty:
        return pd.DataFrame()
    table = paired_summary(runs, baselines=PAIRED_BASELINES, by=("regime",))
    order = {m: i for i, m in enumerate(METHODS)}
    regimes = {r: i for i, r in enumerate(REGIMES)}
    table = table.sort_values(by=["regime", "method"], key=lambda c: c.map(
        regimes if c.name == "regime" else order)).reset_index(drop=True)
    tests = runs.groupby("regime")["n_test_videos"].first()
    table["n_test_videos"] = table["regime"].map(tests).astype(int)
    table["profile"] = cfg.profile
    if dataset_spec(cfg.data.dataset).timelines and "data.root" in runs:
        # the best t2v R@1 the K uniform test frames allow on each regime's test videos
        _add_ceilings(table, runs, table["K"])
    if measure:
        root = timing_root(cfg, runs)
        speed = {k: measured_throughput(cfg, root, int(k)) for k in table["K"].unique()}
        table["videos_per_s"] = table["K"].map(speed)
        table["videos_per_s_device"] = describe_throughput(cfg.device)
    return table


def compressor_baselines(cfg: Config) -> tuple[str, str]:
    """The compressors study's two baselines: uniform at the config's K and at 16 frames (or the
    largest K of ``study.compressor_k_values``)."""
    top = max(cfg.study.compressor_k_values, default=cfg.data.num_frames)
    return uniform_label(cfg.data.num_frames), uniform_label(max(top, cfg.data.num_frames))


def summarise_compressors(cfg: Config, runs: pd.DataFrame, *, measure: bool = True) -> pd.DataFrame:
    """The compressors study's table: per corpus (``regime``: static, camera) and method, seeds,
    R@1 mean and sd, the paired 95 % interval of the difference to uniform at the config's K and at
    16 frames (:func:`compressor_baselines`), the compressor and its training mode, K and N, total
    inference GFLOPs per video (image tower on K frames, temporal head, compressor) and the
    compressor's share, training seconds and, with ``measure``, end-to-end videos per second
    measured on this machine (decode N or K frames, compress, encode; the same on both corpora)."""
    from mofkit.eval.cost import describe_throughput
    from mofkit.eval.stats import paired_summary

    if runs.empty:
        return pd.DataFrame()
    table = paired_summary(runs, baselines=compressor_baselines(cfg), by=("regime",))
    spec = {label: o for label, o in COMPRESSORS.items()}
    table["compressor"] = [spec[m]["compress.name"] if m in spec else "none" for m in table["method"]]
    table["training"] = ["amortised" if spec.get(m, {}).get("compress.training") == "amortised"
                         else ("end_to_end" if spec.get(m, {}).get("compress.name") == "slots" else "")
                         for m in table["method"]]
    table["N"] = [cfg.compress.input_frames if m in spec else int(k)
                  for m, k in zip(table["method"], table["K"])]
    gc = runs.groupby(["regime", "method"])["compressor_gflops"].mean() if "compressor_gflops" in runs \
        else None
    table["compressor_gflops"] = [float(gc.get((r, m), 0.0)) if gc is not None else 0.0
                                  for r, m in zip(table["regime"], table["method"])]
    corpora = list(COMPRESSOR_CORPORA)
    table = table.sort_values(by=["regime"], key=lambda c: c.map({c_: i for i, c_ in enumerate(corpora)}),
                              kind="stable").reset_index(drop=True)
    tests = runs.groupby("regime")["n_test_videos"].first()
    table["n_test_videos"] = table["regime"].map(tests).astype(int)
    table["profile"] = cfg.profile
    if dataset_spec(cfg.data.dataset).timelines and "data.root" in runs:
        # the best t2v R@1 the frames each row reads allow: K uniform, or a compressor's N
        _add_ceilings(table, runs, table["N"])
    if measure:
        root = timing_root(cfg, runs)
        speed = {}
        for m, k in table[["method", "K"]].drop_duplicates().itertuples(index=False):
            speed[m] = measured_throughput(cfg, root, int(k), compress=spec.get(m))
        table["videos_per_s"] = table["method"].map(speed)
        table["videos_per_s_device"] = describe_throughput(cfg.device)
    return table
