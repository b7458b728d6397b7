"""What the notebooks call: parameters -> config, the steps each notebook shows, shared result files.

Notebooks hold no logic of their own. Their first cell holds papermill parameters (PROFILE, DEVICE,
DATA_ROOT, OUT_DIR, SEED, OVERRIDES, ...); the second calls :func:`setup`; every later cell calls one
function here (or in the library rooms) and shows its result. Results travel between notebooks
through files under OUT_DIR only (never a kernel's memory). A notebook opened on its own (Run All in
a fresh JupyterLab) first calls :func:`ensure`, which produces what it reads when the earlier
notebook has not run: the corpus, the config's uniform or MOF run (trained then, with progress, in
the same folder the earlier notebook would have used, so nothing is trained twice).
:meth:`Session.require` names the notebook to run for any other missing result.

Layout of OUT_DIR::

    data/summary.json, data/scan_test.csv       00_data
    sweep/<setting>/seed<s>/   training runs; 01_baseline and 02_mof train the config's own
                               uniform and MOF settings there, 05_efficiency adds the rest
                               (a MOF run also holds bank/ and snapshots/)
    ablations/<setting>/seed<s>/, ablations/results.csv              03_ablations
    sweep/results.csv, sweep/summary.csv                             05_efficiency
    figures/*.png, headline.md
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mofkit.config import Config, apply_overrides, get_config
from mofkit.eval.metrics import DIRECTIONS, METRIC_KEYS

# Names of the config's own runs (at its K and seed), resolved to their sweep folders by Session.
OWN_RUNS = ("uniform", "mof")

PRODUCERS = {
    "data/summary.json": "00_data",
    "uniform": "01_baseline",
    "mof": "02_mof",
    "ablations/results.csv": "03_ablations",
    "sweep/results.csv": "05_efficiency",
}


class MissingResult(FileNotFoundError):
    """An earlier notebook's output is missing; the message names the notebook to run."""


class DataNotFound(FileNotFoundError):
    """A public dataset is not where the config says; the message says what to put where."""


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
        from mofkit.train.experiments import run_name

        if kind not in OWN_RUNS:
            raise ValueError(f"run kind must be 'uniform' or 'mof', not {kind!r}")
        setting = {"data.num_frames": self.cfg.data.num_frames, "mof.enabled": kind == "mof"}
        return f"sweep/{run_name(setting)}/seed{self.cfg.train.seed}"

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


# What ensure() can produce, and the notebook that normally does.
ENSURABLE = {"corpus": "00_data", "uniform": "01_baseline", "mof": "02_mof"}


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
    unknown = [n for n in needs if n not in ENSURABLE]
    if unknown:
        raise ValueError(f"ensure() knows {', '.join(ENSURABLE)}, not {', '.join(unknown)}")
    if "corpus" in needs:
        prepare_corpus(s, progress=progress)
    for name in needs:
        if name == "corpus":
            continue
        path = s.out / s.run_dir(name) / "metrics.json"
        done = path.is_file() and json.loads(path.read_text()).get("final") is not None
        if done:
            continue
        label = f"{name} K={s.cfg.data.num_frames} seed {s.cfg.train.seed}"
        print(f"{s.out / s.run_dir(name)} holds no finished {label} run (notebook "
              f"{ENSURABLE[name]} trains it): training it now; it resumes if interrupted "
              f"and is reused by {ENSURABLE[name]}", flush=True)
        train_section(s, name, progress=progress)


# ------------------------------------------------------------------------------------------------
# 00_data
# ------------------------------------------------------------------------------------------------

def prepare_corpus(s: Session, progress: bool = True) -> Path:
    """Generate the synthetic corpus (if needed), or check that a public dataset is in place."""
    d = s.cfg.data
    if d.dataset == "synthetic":
        from mofkit.data.synthetic import ensure_corpus

        return ensure_corpus(d.root, s.cfg.synthetic, progress=progress)
    root = Path(d.root)
    if not root.is_dir() or not any(root.iterdir()):
        raise DataNotFound(f"the {d.dataset} dataset is not in {root}: download it (see data/README.md "
                           f"for its sources and the expected layout), or set DATA_ROOT to where it "
                           f"is; it cannot be downloaded from here")
    return root


def load_splits(s: Session):
    """``(train, test)`` datasets of the config (videos absent from disk are an error)."""
    from mofkit.data.datasets import load_dataset

    d = s.cfg.data
    kw = {"video_dir": d.video_dir}
    if d.dataset in ("msrvtt", "synthetic"):
        kw["train_split"] = d.train_split
    return load_dataset(d.dataset, d.root, "train", **kw), load_dataset(d.dataset, d.root, "test", **kw)


def scan(s: Session, dataset, progress: bool = True) -> pd.DataFrame:
    """The quality table of a split's videos (saved as ``data/scan_<split>.csv``)."""
    from mofkit.data.scan import scan_dataset

    df = scan_dataset(dataset, backend=s.cfg.data.backend, progress=progress)
    s.save_table(f"data/scan_{dataset.split}.csv", df)
    return df


def scan_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One-row summary of a scan: videos, readable, frames/fps/duration/resolution ranges."""
    ok = df[df.readable]
    return pd.DataFrame([{
        "videos": len(df), "readable": int(df.readable.sum()), "unreadable": int((~df.readable).sum()),
        "frames (min-max)": f"{ok.num_frames.min()}-{ok.num_frames.max()}" if len(ok) else "-",
        "fps": ", ".join(f"{x:g}" for x in sorted(ok.fps.unique())[:4]) if len(ok) else "-",
        "duration s (mean)": round(float(ok.duration.mean()), 2) if len(ok) else float("nan"),
        "resolution": ", ".join(sorted({f"{w}x{h}" for w, h in zip(ok.width, ok.height)})[:4]),
    }])


def _timeline(s: Session) -> dict:
    if s.cfg.data.dataset != "synthetic":
        return {}
    from mofkit.data.synthetic import load_timeline

    return load_timeline(s.cfg.data.root)


def video_strips_figure(s: Session, dataset, n: int = 4, frames: int = 12):
    """Frame strips (every frame index shown) of ``n`` videos with their first caption."""
    from mofkit.data.video import probe_video, read_frames
    from mofkit.viz.frames import video_strips

    items = []
    for rec in dataset.records[:n]:
        total = probe_video(rec.path, s.cfg.data.backend).num_frames
        idx = np.linspace(0, total - 1, min(frames, total)).round().astype(int)
        items.append((read_frames(rec.path, idx, backend=s.cfg.data.backend), rec.captions[0], idx))
    return video_strips(items, max_frames=frames)


def timelines_figure(s: Session, dataset, n: int = 4, k: int | None = None):
    """Which frames uniform K-sampling picks (and one rand draw), over each video's events."""
    from matplotlib.figure import Figure

    from mofkit.data.video import probe_video
    from mofkit.viz.frames import sampling_timeline

    k = k or s.cfg.data.num_frames
    timeline = _timeline(s)
    fig = Figure(figsize=(9, 1.9 * n))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, rec in zip(axes, dataset.records[:n]):
        events = timeline.get(rec.video_id)
        total = events[-1]["end"] if events else probe_video(rec.path, s.cfg.data.backend).num_frames
        sampling_timeline(total, k, events=events, ax=ax, modes=("uniform", "rand"))
        ax.set_title(rec.video_id, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def event_coverage(s: Session, dataset, k_values=(2, 4, 8, 16)) -> pd.DataFrame:
    """Share of the synthetic videos' decisive events that K uniform frames hit, per K."""
    from mofkit.data.sampling import sample_indices

    timeline = _timeline(s)
    rows = []
    for k in k_values:
        hits = []
        for rec in dataset.records:
            events = timeline.get(rec.video_id, [])
            idx = sample_indices(events[-1]["end"], k, "uniform") if events else []
            hits += [any(e["start"] <= i < e["end"] for i in idx) for e in events if e.get("decisive")]
        rows.append({"K": k, "decisive events seen (%)": 100 * float(np.mean(hits)) if hits else np.nan})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# 01 / 02: training runs
# ------------------------------------------------------------------------------------------------

def train_section(s: Session, name: str, overrides: dict[str, Any] | None = None, *,
                  progress: bool = True):
    """Train (or resume, or reuse) a run: ``uniform`` or ``mof`` (the config's own runs, at its K
    and seed) or any folder name under OUT_DIR; returns its TrainResult."""
    from mofkit.train.loop import train

    return train(s.section(name, overrides), progress=progress)


def history(s: Session, name: str) -> pd.DataFrame:
    """Per-epoch rows of a run (from its metrics.json)."""
    return pd.DataFrame(s.load_json(f"{name}/metrics.json")["history"])


def final_metrics_table(s: Session, names: dict[str, str]) -> pd.DataFrame:
    """Final test metrics of runs, one row per run (label -> run folder), t2v and v2t, raw and DSL."""
    rows = []
    for label, name in names.items():
        doc = s.load_json(f"{name}/metrics.json")
        fin = doc["final"]
        row = {"run": label, "K": doc["config"]["data"]["num_frames"],
               "train s": round(doc["train_seconds"], 1), "test videos": fin["n_videos"],
               "dropped": len(fin.get("dropped", []))}
        for direction in DIRECTIONS:
            for m in METRIC_KEYS:
                row[f"{direction} {m}"] = round(fin[direction][m], 2)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


# ------------------------------------------------------------------------------------------------
# 03 / 05: grids
# ------------------------------------------------------------------------------------------------

def ablation_settings(s: Session) -> list[dict[str, Any]]:
    """The ablation grid: one axis varied at a time around MOF's settings of the config."""
    st, m = s.cfg.study, s.cfg.mof
    base = {"mof.enabled": True}
    out = [{**base, "ablation": "MOF (config)"}]
    out += [{**base, "ablation": "N", "mof.meta_frames": n} for n in st.meta_frames_values
            if n != m.meta_frames and n <= s.cfg.data.dense_frames]
    out += [{**base, "ablation": "alpha", "mof.alpha": a} for a in st.alpha_values if a != m.alpha]
    out += [{**base, "ablation": "frame lr", "mof.frame_lr": lr} for lr in st.frame_lr_values
            if lr != m.frame_lr]
    out += [{**base, "ablation": "update", "mof.update": "batch" if m.update == "epoch" else "epoch"}]
    out += [{**base, "ablation": "hypergradient", "mof.hypergrad": "fd" if m.hypergrad == "exact" else "exact"}]
    out += [{**base, "ablation": "temporal head",
             "model.temporal_head": "seqTransf" if s.cfg.model.temporal_head == "meanP" else "meanP"}]
    out += [{"mof.enabled": False, "ablation": "uniform (same budget)"}]
    return out


def run_ablations(s: Session, progress: bool = True) -> pd.DataFrame:
    """Every ablation setting for ``study.ablation_seeds``, each fine-tuning the uniform baseline
    of 01_baseline for ``study.ablation_epochs`` (so all settings start from the same model and a
    setting costs minutes, not a full training); returns (and saves) the table."""
    from mofkit.train.experiments import run_grid

    st = s.cfg.study
    start = s.require("uniform/checkpoint.pt")
    base = s.section("ablations")
    base.model.pretrained = str(start)
    if st.ablation_epochs:
        base.train.epochs = st.ablation_epochs
    frames = []
    for setting in ablation_settings(s):
        # (not "axis": pandas 3 takes a column of that name for an argument in groupby().agg)
        label = setting.pop("ablation")
        df = run_grid(base, [setting], seeds=st.ablation_seeds, root=s.out / "ablations",
                      progress=progress)
        df["ablation"] = label
        shown = {k.split(".")[-1]: v for k, v in setting.items() if k != "mof.enabled"}
        df["value"] = ", ".join(f"{k}={v}" for k, v in shown.items()) or label
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    s.save_table("ablations/results.csv", table)
    return table


def run_k_sweep(s: Session, progress: bool = True) -> pd.DataFrame:
    """Uniform K over ``study.k_values`` and MOF at the config's K, for ``study.seeds``."""
    from mofkit.train.experiments import run_grid

    st = s.cfg.study
    base = s.section("sweep")
    uniform = run_grid(base, {"data.num_frames": list(st.k_values), "mof.enabled": [False]},
                       seeds=st.seeds, root=s.out / "sweep", progress=progress, label="uniform")
    mof = run_grid(base, {"data.num_frames": [s.cfg.data.num_frames], "mof.enabled": [True]},
                   seeds=st.seeds, root=s.out / "sweep", progress=progress, label="MOF")
    table = pd.concat([uniform, mof], ignore_index=True)
    s.save_table("sweep/results.csv", table)
    return table


# ------------------------------------------------------------------------------------------------
# 04: compressed frames
# ------------------------------------------------------------------------------------------------

def load_snapshots(s: Session, name: str = "mof") -> tuple[list[str], np.ndarray, list[int]]:
    """``(video_ids, frames, epochs)`` saved by a MOF run.

    ``frames`` is float32 ``(E, V, K, S, S, 3)`` on the [0, 1] image scale, not rounded or
    clipped, so that changes below one grey level survive (the run stores the start and then
    float16 changes from it; runs of older versions stored uint8, read here as floats too).
    """
    folder = s.require(f"{name}/snapshots")
    files = sorted(folder.glob("epoch_*.npy"))
    if not files:
        raise MissingResult(f"no frame snapshots in {folder}: run notebook 02_mof first")
    ids = json.loads((folder / "videos.json").read_text())
    epochs = [int(f.stem.split("_")[1]) for f in files]
    arrays = [np.load(f) for f in files]
    if arrays[0].dtype == np.uint8:  # older runs: every snapshot a uint8 image
        return ids, np.stack(arrays).astype(np.float32) / 255, epochs
    start = arrays[0].astype(np.float32)
    return ids, np.stack([start] + [start + a.astype(np.float32) for a in arrays[1:]]), epochs


def whole_video(s: Session, video_id: str, dataset, size: int, n: int = 16) -> np.ndarray:
    """``n`` uniformly spread frames of a video, resized and centre-cropped to ``size`` px (uint8)."""
    from mofkit.data.preprocess import Preprocessor
    from mofkit.data.video import read_video

    rec = next(r for r in dataset.records if r.video_id == video_id)
    frames, _ = read_video(rec.path, n, "uniform", size=size, backend=s.cfg.data.backend)
    pre = Preprocessor(size)
    return pre.to_uint8_image(pre.eval(frames)).numpy()  # (n, S, S, 3)


# ------------------------------------------------------------------------------------------------
# 05: cost
# ------------------------------------------------------------------------------------------------

def cost_table(s: Session, k_values=None, n_videos: int = 64) -> pd.DataFrame:
    """The whole inference cost per test video of the config's model at each K: GFLOPs (image
    tower x K + temporal head), per caption, parameters, and measured throughput, both the model's
    alone (random frames) and end to end (decode K frames of ``n_videos`` test videos, preprocess,
    encode); saved as ``sweep/cost.csv``."""
    from mofkit.data.preprocess import Preprocessor
    from mofkit.device import get_device
    from mofkit.eval.cost import (encode_throughput, end_to_end_throughput, param_counts, text_flops,
                                  video_flops)
    from mofkit.models import create_from_config

    device = get_device(s.cfg.device)
    bundle = create_from_config(s.cfg.model, device)
    params = param_counts(bundle.model)
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    _, test = load_splits(s)
    paths = [r.path for r in test.records[:n_videos]]
    rows = []
    for k in k_values or s.cfg.study.k_values:
        v = video_flops(bundle.model, k, bundle.image_size)
        tp = encode_throughput(bundle.model, k, bundle.image_size, batch_size=32, iters=3, device=device)
        e2e = end_to_end_throughput(bundle.model, paths, k, preprocess=pre.eval,
                                    decode_size=s.cfg.data.decode_size, backend=s.cfg.data.backend,
                                    device=device)
        rows.append({"K": k, "GFLOPs/video": v["total"] / 1e9,
                     "GFLOPs/frame (image tower)": v["image_tower_per_frame"] / 1e9,
                     "GFLOPs temporal head": v["temporal_head"] / 1e9,
                     "videos/s (end to end)": e2e["videos_per_s"],
                     "videos/s (encode only)": tp["videos_per_s"], "frames/s (encode only)": tp["frames_per_s"],
                     "device": str(device)})
    df = pd.DataFrame(rows)
    s.save_table("sweep/cost.csv", df)
    df.attrs["params"] = params
    df.attrs["text_gflops"] = text_flops(bundle.model, s.cfg.model.context_length) / 1e9
    return df


def write_headline(s: Session, sweep: pd.DataFrame) -> Path:
    """``OUT_DIR/headline.md``: the trade-off table the report shows, saying what was run; and
    ``OUT_DIR/headline.csv``: its rows (one per setting and seed, with the measured throughput and
    the device), the file the README's headline table is generated from once copied to
    ``docs/results/``."""
    from mofkit.viz.plots import headline_markdown
    from mofkit.viz.tables import seeds_phrase

    n_test = None
    own = s.out / s.run_dir("uniform") / "metrics.json"
    if own.is_file():
        n_test = json.loads(own.read_text()).get("final", {}).get("n_videos")
    where = f"{n_test} test videos" if n_test else "test set"
    cost = s.out / "sweep" / "cost.csv"
    if cost.is_file():  # measured by cost_table: videos per second from file to embedding
        per_k = pd.read_csv(cost).set_index("K")["videos/s (end to end)"]
        sweep = sweep.assign(videos_per_s=sweep["K"].map(per_k))
    from mofkit.device import describe_device

    text = (f"## Headline: uniform K vs MOF ({where}; {seeds_phrase(sweep['seed'])}; "
            f"trained and timed on {describe_device(s.cfg.device)})\n\n"
            + headline_markdown(sweep, by=("method", "K")) + "\n")
    path = s.out / "headline.md"
    path.write_text(text)
    rows = sweep.assign(device=describe_device(s.cfg.device), profile=s.cfg.profile)
    rows.to_csv(s.out / "headline.csv", index=False)  # what docs/results/ keeps of a main job
    return path


# ------------------------------------------------------------------------------------------------
# 06: search
# ------------------------------------------------------------------------------------------------

class SearchIndex:
    """Text-to-video search with a trained run over a split or a folder of the user's videos.

    Every video is decoded at the run's K uniform frames and encoded once, in batches, with the
    run's own model (built from its saved config and checkpoint, so the temporal head and a fixed
    temperature are the ones it was trained with). Videos that cannot be read are skipped, and why
    is kept in :attr:`skipped` and printed.

    Args:
        s: the session.
        run: the run whose checkpoint to use: ``uniform`` or ``mof`` (the config's own runs) or a
            folder name under OUT_DIR.
        folder: a folder of videos (searched recursively), a single video file, or None for the
            config's test split; ``~`` is expanded. Videos are named by their path relative to the
            folder, extension included (``bikes.mp4`` and ``bikes.mkv`` are two videos).
        batch_size: videos per forward pass.
        progress: a progress bar while indexing.

    Raises:
        FileNotFoundError: the folder or file does not exist, or holds no video files.
        ValueError: ``folder`` is a file that is not a video, or no video could be read.
    """

    def __init__(self, s: Session, run: str = "mof", folder: str | Path | None = None, *,
                 batch_size: int = 32, progress: bool = True):
        import torch
        from tqdm.auto import tqdm

        from mofkit.data.preprocess import Preprocessor
        from mofkit.data.scan import find_videos
        from mofkit.data.video import VideoReadError, read_video
        from mofkit.device import get_device
        from mofkit.eval.encode import encode_texts, encode_videos
        from mofkit.models import create_from_config

        ckpt = s.require(f"{run}/checkpoint.pt")
        saved = Config.from_dict(json.loads((ckpt.parent / "config.json").read_text()))
        saved.model.pretrained = str(ckpt)
        self.device = get_device(s.cfg.device)
        self.bundle = create_from_config(saved.model, self.device)
        self.k = saved.data.num_frames
        self.pre = Preprocessor(self.bundle.image_size, self.bundle.mean, self.bundle.std)
        if folder is None:
            _, test = load_splits(s)
            items = [(r.video_id, r.path, r.captions[0]) for r in test.records]
            where = f"the {test.name} test split"
        else:
            items = [(vid, path, "") for vid, path in find_videos(folder)]
            where = str(Path(folder).expanduser())
        self.ids: list[str] = []
        self.labels: list[str] = []
        self.frames: list[torch.Tensor] = []
        self.skipped: dict[str, str] = {}  # video id -> why it could not be read
        model = self.bundle.model.eval()
        embs = []
        bar = tqdm(total=len(items), desc=f"indexing {where}", unit="video", disable=not progress,
                   dynamic_ncols=True)
        for start in range(0, len(items), batch_size):
            batch = []
            for vid, path, label in items[start:start + batch_size]:
                try:
                    frames, _ = read_video(path, self.k, "uniform", size=saved.data.decode_size,
                                           backend=saved.data.backend)
                except VideoReadError as e:
                    self.skipped[vid] = e.reason
                    continue
                self.ids.append(vid)
                self.labels.append(label)
                self.frames.append(frames)
                batch.append(self.pre.eval(frames))  # (K, 3, S, S): videos may differ in size
            if batch:
                x = torch.stack(batch)  # (B, K, 3, S, S)
                embs.append(encode_videos(model, lambda rows: x[rows], len(batch),
                                          preprocess=lambda f: f, device=self.device,
                                          batch_size=batch_size))
            bar.update(len(items[start:start + batch_size]))
        bar.close()
        if self.skipped and progress:
            print(self.skipped_report())
        if not embs:
            raise ValueError(f"none of the {len(items)} videos in {where} could be read: "
                             f"{self.skipped_report(limit=5)}")
        self.video_emb = torch.cat(embs)  # (V, D)
        self._encode_texts = lambda q: encode_texts(model, self.bundle.tokenizer(q), device=self.device)

    def skipped_report(self, limit: int = 20) -> str:
        """The skipped videos and why, one per line (at most ``limit``)."""
        lines = [f"{len(self.skipped)} video{'s' if len(self.skipped) != 1 else ''} skipped:"]
        lines += [f"  {vid}: {reason}" for vid, reason in list(self.skipped.items())[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)

    def search(self, query: str, k: int = 5) -> list[tuple]:
        """Top-k ``(frames (K, H, W, 3), label, score)`` for a text query."""
        scores = (self._encode_texts([query]) @ self.video_emb.T)[0]
        top = scores.argsort(descending=True)[:k]
        return [(self.frames[i], f"{self.ids[i]}: {self.labels[i]}" if self.labels[i] else self.ids[i],
                 float(scores[i])) for i in top]
