"""What the notebooks share: parameters -> config, the results folder, and what earlier notebooks made.

Notebooks hold no logic of their own. Their first cell holds papermill parameters (PROFILE, DEVICE,
DATA_ROOT, OUT_DIR, SEED, OVERRIDES, ...); the second calls :func:`setup`; every later cell calls
one function of the library (``mofkit.data``, ``mofkit.lab.grids``, ``mofkit.eval``,
``mofkit.viz``) and shows its result. Results travel between notebooks through files under OUT_DIR
only (never a kernel's memory). A notebook opened on its own (Run All in a fresh JupyterLab) first
calls :func:`ensure`, which produces what it reads when the earlier notebook has not run: the
corpus, the config's uniform or MOF run (trained then, with progress, in the same folder the
earlier notebook would have used, so nothing is trained twice). :meth:`Session.require` names the
notebook to run for any other missing result.

Layout of OUT_DIR::

    data/summary.json, data/scan_test.csv       00_data
    sweep/<setting>/seed<s>/   training runs; 01_baseline and 02_mof train the config's own
                               uniform and MOF settings there, 05_efficiency adds the rest
                               (a MOF run also holds bank/ and snapshots/)
    ablations/<setting>/seed<s>/, ablations/results.csv              03_ablations
    sweep/results.csv, sweep/summary.csv, sweep/cost.csv             05_efficiency
    compress/<compressor>/K<k>/seed<s>/                              07_compressors
    figures/*.png, headline.md, headline.csv
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mofkit.config import Config, apply_overrides, get_config
from mofkit.runfiles import CONFIG_FILE, METRICS_FILE, seed_folder
from mofkit.lab.names import OWN_RUNS
from mofkit.lab.grids import own_run_dir
from mofkit.lab.runner import train_own_run

PRODUCERS = {
    "data/summary.json": "00_data",
    "uniform": "01_baseline",
    "mof": "02_mof",
    "ablations/results.csv": "03_ablations",
    "sweep/results.csv": "05_efficiency",
}
# What ensure() can produce, and the notebook that normally does.
ENSURABLE = {"corpus": "00_data", "uniform": "01_baseline", "mof": "02_mof"}


class MissingResult(FileNotFoundError):
    """An earlier notebook's output is missing; the message names the notebook to run."""


@dataclass
class Session:
    """A notebook's config plus the results folder shared by all notebooks."""

    cfg: Config  # the run config built from the parameters
    out: Path  # OUT_DIR

    def path(self, rel: str) -> Path:
        return self.out / rel

    def run_dir(self, kind: str) -> str:
        """Folder (under OUT_DIR) of the config's ``uniform`` or ``mof`` run at its K and seed.

        It is the folder the K sweep of 05_efficiency uses for the same setting, so the runs of
        01_baseline and 02_mof are reused there rather than trained twice.
        """
        return own_run_dir(self.cfg, kind)

    def _resolve(self, name: str) -> str:
        return self.run_dir(name) if name in OWN_RUNS else name

    def section(self, name: str, overrides: dict[str, Any] | None = None) -> Config:
        """A copy of the config whose training run lives in ``OUT_DIR/<name>`` (``uniform`` and
        ``mof`` name the config's own runs, see :meth:`run_dir`)."""
        cfg = Config.from_dict(self.cfg.to_dict())
        if name in OWN_RUNS:
            overrides = {"mof.enabled": name == "mof", **(overrides or {})}
        apply_overrides(cfg, overrides or {})
        cfg.out_dir = str(self.out / self._resolve(name))
        return cfg

    def figure(self, fig, name: str) -> Path:
        """Save a figure as ``OUT_DIR/figures/<name>.png`` and return the figure's path."""
        from mofkit.viz.frames import save_figure

        return save_figure(fig, self.out / "figures" / f"{name}.png")

    def save_json(self, rel: str, obj: Any) -> Path:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, default=float))
        return path

    def save_table(self, rel: str, df: pd.DataFrame) -> Path:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        return path

    def run(self, name: str) -> Path:
        """The folder of a finished earlier run (``uniform``, ``mof`` or a folder under OUT_DIR),
        or :class:`MissingResult` naming the notebook that trains it."""
        return self.require(f"{name}/{METRICS_FILE}").parent

    def require(self, rel: str) -> Path:
        """Path of an earlier notebook's result, or :class:`MissingResult` naming that notebook.

        ``rel`` may start with ``uniform/`` or ``mof/`` for the config's own runs."""
        head, _, tail = rel.partition("/")
        path = self.out / (f"{self._resolve(head)}/{tail}" if tail else self._resolve(head))
        if not path.exists():
            who = PRODUCERS.get(rel, PRODUCERS.get(head, "the earlier notebooks"))
            raise MissingResult(f"{path} is missing: run notebook {who} first, with the same PROFILE "
                                f"and OUT_DIR")
        return path

    def load_json(self, rel: str) -> Any:
        return json.loads(self.require(rel).read_text())


def _anchor(path: str | Path) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    repo = Path(__file__).resolve().parents[1]
    return repo / p if (repo / "pyproject.toml").is_file() else p.resolve()


def setup(profile: str, overrides: dict[str, Any] | None = None, *, out_dir: str | None = None,
          data_root: str | None = None, device: str = "auto", seed: int = 0) -> Session:
    """Build the config from a notebook's parameters and create OUT_DIR.

    Args:
        profile: ``smoke``, ``cpu`` or ``paper``.
        overrides: dotted config keys (``{"train.epochs": 5}``).
        out_dir: OUT_DIR shared by the notebooks; default ``runs/<profile>``.
        data_root: corpus folder; None keeps the profile's.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: training seed.

    Returns:
        :class:`Session`.
    """
    cfg = get_config(profile, overrides)
    cfg.device = device
    cfg.train.seed = int(seed)
    if data_root:
        cfg.data.root = str(data_root)
    # Relative paths are relative to the repository, whether the kernel runs in notebooks/
    # (JupyterLab) or at the top (papermill through the runner).
    cfg.data.root = str(_anchor(cfg.data.root))
    cfg.data.cache_dir = str(_anchor(cfg.data.cache_dir))
    if cfg.data.video_dir:
        cfg.data.video_dir = str(_anchor(cfg.data.video_dir))
    out = _anchor(out_dir or f"runs/{profile}")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    cfg.out_dir = str(out)
    return Session(cfg=cfg, out=out)


def ensure(s: Session, *needs: str, progress: bool = True) -> None:
    """Produce the inputs a notebook reads if the earlier notebooks have not run yet.

    Args:
        s: the session.
        needs: ``corpus`` (the dataset in place; the synthetic one is generated), ``uniform``
            and/or ``mof`` (the config's own runs at its K and seed, trained if not finished).
        progress: progress bars while generating or training.

    Raises:
        ValueError: an unknown name.
        DataNotFound: a public dataset is not where the config says.
    """
    from mofkit.data.datasets import prepare_dataset

    unknown = [n for n in needs if n not in ENSURABLE]
    if unknown:
        raise ValueError(f"ensure() knows {', '.join(ENSURABLE)}, not {', '.join(unknown)}")
    if "corpus" in needs:
        prepare_dataset(s.cfg, progress=progress)
    for name in needs:
        if name == "corpus":
            continue
        path = s.out / s.run_dir(name) / METRICS_FILE
        if path.is_file() and json.loads(path.read_text()).get("final") is not None:
            continue
        label = f"{name} K={s.cfg.data.num_frames} seed {s.cfg.train.seed}"
        print(f"{s.out / s.run_dir(name)} holds no finished {label} run (notebook "
              f"{ENSURABLE[name]} trains it): training it now; it resumes if interrupted "
              f"and is reused by {ENSURABLE[name]}", flush=True)
        train_own_run(s.cfg, s.out, name, progress=progress)


def train_section(s: Session, name: str, overrides: dict[str, Any] | None = None, *,
                  progress: bool = True):
    """Train (or resume, or reuse) a run: ``uniform`` or ``mof`` (the config's own runs, at its K
    and seed) or any folder name under OUT_DIR; returns its TrainResult."""
    from mofkit.train.loop import train

    return train(s.section(name, overrides), progress=progress)


def search_index(s: Session, run: str, folder: str | Path | None = None, *, progress: bool = True):
    """Build or update the on-disk search index of ``folder`` (None: the test split, indexed under
    ``OUT_DIR/index/<run>-test``) with the session's run ``run``; returns ``(VideoIndex, report)``.
    Only new or changed videos are embedded again (:mod:`mofkit.eval.index`)."""
    from mofkit.data.datasets import load_splits
    from mofkit.eval.index import IndexModel, VideoIndex, build_index

    model = IndexModel(s.run(run), device=s.cfg.device)
    if folder is None:
        _, test = load_splits(s.cfg)
        source = [(r.video_id, r.path, r.captions[0]) for r in test.records]
        report = build_index(source, s.run(run), s.out / "index" / f"{Path(run).name}-test",
                             model=model, progress=progress)
    else:
        report = build_index(folder, s.run(run), model=model, progress=progress)
    return VideoIndex(report.index_dir, model=model), report


def compressor_folder(label: str, k: int, seed: int) -> str:
    """Folder (under OUT_DIR) of notebook 07's run of a compressor (a key of
    :data:`mofkit.lab.names.COMPRESSORS`) at K frames and a training seed: each seed its own
    run, so the notebook re-run with another ``SEED`` trains beside the first, not over it."""
    return seed_folder(f"compress/{label.replace(' ', '_').replace('(', '').replace(')', '')}/K{k}", seed)


def compressor_run(s: Session, label: str) -> Path:
    """The finished run of compressor ``label`` at the session's K and seed
    (:func:`train_compressor` trains it), or :class:`MissingResult`."""
    return s.run(compressor_folder(label, s.cfg.data.num_frames, s.cfg.train.seed))


def train_compressor(s: Session, label: str, *, progress: bool = True):
    """Train (or resume, or reuse) the config's run with the compressor ``label`` (a key of
    :data:`mofkit.lab.names.COMPRESSORS`) at its K and seed; returns its TrainResult."""
    from mofkit.lab.names import COMPRESSORS

    if label not in COMPRESSORS:
        raise ValueError(f"unknown compressor {label!r}; compressors: {', '.join(COMPRESSORS)}")
    return train_section(s, compressor_folder(label, s.cfg.data.num_frames, s.cfg.train.seed),
                         {"mof.enabled": False, **COMPRESSORS[label]}, progress=progress)


def corpus_timeline(s: Session) -> dict:
    """Each video's captioned events in time where the dataset records them (the synthetic corpus),
    else an empty dict (figures then draw frames without events)."""
    from mofkit.data.datasets import dataset_spec

    if not dataset_spec(s.cfg.data.dataset).timelines:
        return {}
    from mofkit.data.synthetic import load_timeline

    return load_timeline(s.cfg.data.root)


def uniform_ceiling(s: Session, video_ids) -> "pd.DataFrame | None":
    """The best R@1 K uniform frames allow on these test videos, per K of ``study.k_values``
    (:func:`mofkit.eval.ceiling.ceiling_table`), where the dataset records event timelines; else None."""
    from mofkit.data.datasets import dataset_spec

    if not dataset_spec(s.cfg.data.dataset).timelines:
        return None
    from mofkit.eval.ceiling import ceiling_table

    return ceiling_table(corpus_timeline(s), video_ids, s.cfg.study.k_values)


def committed_findings(*files: str) -> str:
    """The findings of committed study summaries (``docs/results/<file>``), generated from the files
    as the README's are, so that a notebook's conclusion never goes stale when a study re-runs."""
    from mofkit.viz.tables import render_table

    results = _anchor("docs/results")
    parts = []
    for name in files:
        path = results / name
        if not path.is_file():
            parts.append(f"*`docs/results/{name}` is not in this checkout.*\n")
            continue
        parts.append(render_table(path, show="findings", label=f"docs/results/{name}"))
    return "\n".join(parts)


def finished_study(s: Session, name: str, *, measure: bool = True) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A paired study's summary from what ``python -m mofkit study NAME`` has finished or kept
    (nothing is trained), and the baselines its intervals compare against; prints how many runs
    it read, or the command that trains them."""
    from mofkit.lab.grids import get_study
    from mofkit.lab.runner import run_study, summarise_study

    runs = run_study(s.cfg, name, s.out, train_missing=False)
    print(f"{len(runs)} finished {name}-study runs" + ("" if len(runs) else
                                                       f": run python -m mofkit study {name} --profile {s.cfg.profile}"))
    summary = summarise_study(s.cfg, name, runs, measure=measure)
    return summary, get_study(s.cfg, name, s.out).baselines


def compressor_vs_uniform(s: Session, label: str, *, measure: bool = True) -> pd.DataFrame:
    """The config's uniform run and its run with compressor ``label``, side by side: R@1 both
    ways, the paired difference to uniform with its 95 % interval (this seed; bootstrap over
    test queries), total inference GFLOPs per video (the compressor's included), measured
    end-to-end videos per second on this machine and training seconds."""
    from mofkit.eval.stats import paired_difference
    from mofkit.lab.experiments import result_row
    from mofkit.lab.names import COMPRESSORS
    from mofkit.lab.speed import measured_throughput

    runs = {"uniform": s.run("uniform"), label: compressor_run(s, label)}
    rows = []
    for name, run_dir in runs.items():
        cfg = Config.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
        full = result_row(cfg, metrics["final"], metrics.get("train_seconds", float("nan")))
        row = {"method": name, "K": cfg.data.num_frames,
               "N": cfg.compress.input_frames if cfg.compress.name else cfg.data.num_frames,
               "t2v_R1": full["t2v_R1"], "v2t_R1": full["v2t_R1"]}
        for d in ("t2v", "v2t"):
            if name != "uniform":
                r = paired_difference([run_dir], [runs["uniform"]], direction=d)
                row.update({f"{d}_vs_uniform": r["diff"], f"{d}_vs_uniform_low": r["low"],
                            f"{d}_vs_uniform_high": r["high"]})
        row.update(gflops=full["gflops"], compressor_gflops=full["compressor_gflops"],
                   train_seconds=full["train_seconds"])
        if measure:
            row["videos_per_s"] = measured_throughput(cfg, cfg.data.root, cfg.data.num_frames,
                                                      compress=COMPRESSORS.get(name))
        rows.append(row)
    return pd.DataFrame(rows)
