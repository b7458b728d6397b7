"""The built-in synthetic video-text corpus: real mp4 files, MSR-VTT-format annotations.

It exists to pose MOF's problem offline: **the information that tells videos apart is spread over
time**, so K uniform frames miss some of it and more frames help.

Design
------
* A video (``frames`` frames, ``size`` px, H.264 in mp4) shows 2 to 4 *events* one after another
  over a dark, smooth, per-video background with low-contrast noise. An event is an object (one of
  5 shapes x 8 colours) doing one of 5 actions: moving left / right / up / down (drawn with a
  fading trail behind it, so the direction shows in every single frame) or pulsing (a halo ring).
  Every frame therefore tells which event is on screen; what limits a model that pools K frames
  by their mean is *which events its frames hit*, not temporal reasoning.
* Videos come in families of ``family_size``. Members share every event and its timing except one
  *decisive* event, whose object differs (another shape or colour) from member to member. With
  probability ``short_prob`` the decisive event is short: ``short_frames`` frames (a tenth of the
  video or less). Uniform K-sampling takes segment mid-points, so it sees an event of L frames only
  when one of its K points falls inside: K = 16 of 32 frames sees every event of 2 frames or more,
  K = 8 those of about 4, K = 4 those of about 8. When the decisive event is missed, the family
  members look identical to the model and retrieval among them is a guess; so R@1 rises with K.
* Captions describe the events in order ("a red circle moves left, then a blue square pulses,
  then ..."), with ``captions_per_video`` paraphrases (connectives, articles, word order of
  colour and shape) per training video and one per test video. The vocabulary is small and the
  phrasing regular, so a small text tower learns it in minutes.
* Families never straddle splits: a test video's hard negatives are test videos.

Everything follows from ``seed``: the same config gives byte-identical annotations and identical
decoded frames. Files written under ``root``: ``videos/video{i}.mp4``, ``MSRVTT_data.json``,
``MSRVTT_train.9k.csv`` (training ids), ``MSRVTT_JSFUSION_test.csv`` (one caption per test video)
and, last, ``corpus.json`` (the config, a format version and every video's event timeline), so an
interrupted generation is never taken for a finished one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mofkit.config import SyntheticConfig

FORMAT_VERSION = 1
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
COLOURS = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 245), "yellow": (240, 225, 40),
    "magenta": (225, 50, 220), "cyan": (40, 220, 230), "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
ACTIONS = ("moves left", "moves right", "moves up", "moves down", "pulses")
_DIRECTIONS = {"moves left": (-1, 0), "moves right": (1, 0), "moves up": (0, -1), "moves down": (0, 1)}
_CONNECTIVES = (", then ", ", and then ", ", after that ", ", next ", ", followed by ")


# ------------------------------------------------------------------------------------------------
# Corpus layout: families, events, captions (pure functions of the seed)
# ------------------------------------------------------------------------------------------------

def _event(rng: np.random.Generator, avoid: set | None = None) -> dict:
    while True:
        ev = {"shape": SHAPES[rng.integers(len(SHAPES))],
              "colour": list(COLOURS)[rng.integers(len(COLOURS))],
              "action": ACTIONS[rng.integers(len(ACTIONS))]}
        if not avoid or (ev["shape"], ev["colour"]) not in avoid:
            return ev


def _durations(rng: np.random.Generator, n_frames: int, n_events: int, decisive: int,
               short: int | None) -> list[int]:
    """Frames per event: the decisive one ``short`` frames (if given), the rest split the remainder."""
    min_len = max(2, n_frames // (3 * n_events))
    fixed = short if short is not None else 0
    free = n_frames - fixed
    others = n_events - (1 if short is not None else 0)
    cuts = rng.dirichlet(np.full(others, 3.0)) * (free - min_len * others)
    lens = [min_len + int(c) for c in cuts]
    lens[int(np.argmax(lens))] += free - sum(lens)  # rounding leftovers
    if short is not None:
        lens.insert(decisive, short)
    return lens


def _family(rng: np.random.Generator, cfg: SyntheticConfig) -> list[list[dict]]:
    """Events (with start/end frames) of each member of one hard-negative family."""
    n_events = int(rng.choice([2, 3, 4], p=[0.2, 0.4, 0.4]))
    decisive = int(rng.integers(n_events))
    short = int(rng.integers(cfg.short_frames[0], cfg.short_frames[1] + 1)) \
        if rng.random() < cfg.short_prob else None
    lens = _durations(rng, cfg.frames, n_events, decisive, short)
    base = [_event(rng) for _ in range(n_events)]
    used = {(e["shape"], e["colour"]) for e in base}
    members = []
    for _ in range(cfg.family_size):
        swap = _event(rng, avoid=used)
        used.add((swap["shape"], swap["colour"]))
        events, start = [], 0
        for j, (ev, n) in enumerate(zip(base, lens)):
            ev = dict(swap if j == decisive else ev)
            ev.update(start=start, end=start + n, decisive=(j == decisive))
            events.append(ev)
            start += n
        members.append(events)
    return members


def _phrase(ev: dict, rng: np.random.Generator) -> str:
    article = ("an" if ev["colour"][0] in "aeiou" else "a") if rng.random() < 0.7 else "the"
    return f"{article} {ev['colour']} {ev['shape']} {ev['action']}"


def caption(events: list[dict], rng: np.random.Generator) -> str:
    """One caption describing the events in order (a random paraphrase)."""
    parts = [_phrase(e, rng) for e in events]
    style = rng.integers(3)
    if style == 0 or len(parts) == 1:
        conn = _CONNECTIVES[rng.integers(len(_CONNECTIVES))]
        return conn.join(parts)
    if style == 1:
        text = "first " + parts[0]
        for p in parts[1:-1]:
            text += ", then " + p
        return text + ", finally " + parts[-1]
    return "; ".join(parts)


def plan_corpus(cfg: SyntheticConfig) -> list[dict]:
    """Every video's split, family, events and captions (no rendering).

    Returns:
        A list of dicts ``{video_id, split, family, events, captions, seed}``: training videos
        first, then test videos.
    """
    rng = np.random.default_rng([cfg.seed, 0])
    videos: list[dict] = []
    for split, n in (("train", cfg.n_train), ("test", cfg.n_test)):
        n_families = -(-n // cfg.family_size)
        made = 0
        for _ in range(n_families):
            family = len({v["family"] for v in videos})
            for events in _family(rng, cfg):
                if made == n:
                    break
                n_caps = cfg.captions_per_video if split == "train" else 1
                caps = [caption(events, rng) for _ in range(n_caps)]
                i = len(videos)
                videos.append({"video_id": f"video{i}", "split": split, "family": family,
                               "events": events, "captions": caps,
                               "seed": int(rng.integers(2**31))})
                made += 1
    return videos


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------

def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(xx), np.abs(yy)
    if shape == "circle":
        return xx ** 2 + yy ** 2 <= r ** 2
    if shape == "square":
        return (ax <= 0.8 * r) & (ay <= 0.8 * r)
    if shape == "diamond":
        return ax + ay <= 1.1 * r
    if shape == "cross":
        return ((ax <= 0.33 * r) & (ay <= r)) | ((ay <= 0.33 * r) & (ax <= r))
    if shape == "triangle":  # pointing up
        return (yy <= 0.8 * r) & (yy >= -r) & (ax <= (yy + r) * 0.55)
    raise ValueError(f"unknown shape {shape!r}; shapes: {SHAPES}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark, smooth two-colour gradient with faint noise, (size, size, 3) float."""
    c0, c1 = rng.uniform(15, 95, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    t = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) + 0.5
    img = c0 + (c1 - c0) * t[..., None]
    noise = rng.normal(0, 1, size=(size // 4 + 1, size // 4 + 1, 3))
    noise = np.kron(noise, np.ones((4, 4, 1)))[:size, :size] * 6.0
    return img + noise


def _paint(img: np.ndarray, mask: np.ndarray, colour: tuple, alpha: float) -> None:
    img[mask] = (1 - alpha) * img[mask] + alpha * np.asarray(colour, dtype=np.float64)


def render_video(record: dict, cfg: SyntheticConfig) -> np.ndarray:
    """Frames of one planned video: uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(record["seed"])
    s = cfg.size
    bg = _background(rng, s)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    out = np.empty((cfg.frames, s, s, 3), np.uint8)
    r = 0.15 * s
    tracks = []
    for ev in record["events"]:
        margin = r + 2
        cx, cy = rng.uniform(0.35 * s, 0.65 * s), rng.uniform(0.35 * s, 0.65 * s)
        d = _DIRECTIONS.get(ev["action"], (0, 0))
        travel = 0.45 * s
        start = (np.clip(cx - d[0] * travel / 2, margin, s - margin),
                 np.clip(cy - d[1] * travel / 2, margin, s - margin))
        end = (np.clip(cx + d[0] * travel / 2, margin, s - margin),
               np.clip(cy + d[1] * travel / 2, margin, s - margin))
        tracks.append((ev, start, end))
    for t in range(cfg.frames):
        img = bg.copy()
        for ev, (x0, y0), (x1, y1) in tracks:
            if not ev["start"] <= t < ev["end"]:
                continue
            span = max(1, ev["end"] - ev["start"] - 1)
            u = (t - ev["start"]) / span
            x, y = x0 + (x1 - x0) * u, y0 + (y1 - y0) * u
            colour = COLOURS[ev["colour"]]
            d = _DIRECTIONS.get(ev["action"])
            if d is not None:  # a fading trail behind the object shows the direction
                for k, alpha in ((3, 0.2), (2, 0.35), (1, 0.55)):
                    gx, gy = x - d[0] * k * 0.09 * s, y - d[1] * k * 0.09 * s
                    _paint(img, _shape_mask(ev["shape"], xx - gx, yy - gy, r * 0.8), colour, alpha)
            else:  # pulsing: a halo ring around the object
                ring = (np.hypot(xx - x, yy - y) <= 1.55 * r) & (np.hypot(xx - x, yy - y) >= 1.25 * r)
                _paint(img, ring, colour, 0.6)
            _paint(img, _shape_mask(ev["shape"], xx - x, yy - y, r), colour, 1.0)
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 8, crf: int = 18) -> None:
    """Encode uint8 (T, H, W, 3) frames as H.264/yuv420p mp4 (deterministic: one encoder thread)."""
    import av

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def _render_and_write(job: tuple) -> str:
    record, cfg_dict, video_dir = job
    cfg = SyntheticConfig(**cfg_dict)
    write_mp4(Path(video_dir) / f"{record['video_id']}.mp4", render_video(record, cfg), fps=cfg.fps)
    return record["video_id"]


# ------------------------------------------------------------------------------------------------
# Public interface
# ------------------------------------------------------------------------------------------------

def _config_dict(cfg: SyntheticConfig) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _write_annotations(root: Path, videos: list[dict], cfg: SyntheticConfig) -> None:
    import pandas as pd

    sentences, sen_id = [], 0
    for v in videos:
        for c in v["captions"]:
            sentences.append({"caption": c, "video_id": v["video_id"], "sen_id": sen_id})
            sen_id += 1
    data = {"info": {"description": "mofkit synthetic corpus", "version": FORMAT_VERSION,
                     "seed": cfg.seed},
            "videos": [{"video_id": v["video_id"], "split": v["split"], "id": i,
                        "category": v["family"]} for i, v in enumerate(videos)],
            "sentences": sentences}
    (root / "MSRVTT_data.json").write_text(json.dumps(data, indent=1))
    train = [v for v in videos if v["split"] == "train"]
    test = [v for v in videos if v["split"] == "test"]
    pd.DataFrame({"video_id": [v["video_id"] for v in train]}).to_csv(
        root / "MSRVTT_train.9k.csv", index=False)
    pd.DataFrame({"key": [f"ret{j}" for j in range(len(test))],
                  "vid_key": [f"msr{v['video_id'][len('video'):]}" for v in test],
                  "video_id": [v["video_id"] for v in test],
                  "sentence": [v["captions"][0] for v in test]}).to_csv(
        root / "MSRVTT_JSFUSION_test.csv", index=False)


def generate_corpus(root: str | os.PathLike, cfg: SyntheticConfig | None = None, *,
                    overwrite: bool = False, progress: bool = True,
                    workers: int | None = None) -> Path:
    """Render and write the corpus.

    Args:
        root: target folder (created).
        cfg: corpus settings; default :class:`~mofkit.config.SyntheticConfig`.
        overwrite: replace an existing corpus in ``root``; otherwise refuse if one is there.
        progress: tqdm progress bar.
        workers: rendering processes (default: up to 2, the cores of a small machine).

    Returns:
        ``root`` as a Path.
    """
    from tqdm.auto import tqdm

    cfg = cfg or SyntheticConfig()
    root = Path(root)
    if (root / "corpus.json").exists() and not overwrite:
        raise FileExistsError(f"{root} already holds a corpus; pass overwrite=True or use ensure_corpus")
    t0 = time.time()
    if (root / "corpus.json").exists():
        (root / "corpus.json").unlink()  # first: a half-rewritten corpus must not look finished
    if (root / "videos").exists():
        shutil.rmtree(root / "videos")
    (root / "videos").mkdir(parents=True)
    videos = plan_corpus(cfg)
    jobs = [(v, _config_dict(cfg), str(root / "videos")) for v in videos]
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=f"synthetic corpus -> {root}", disable=not progress,
               leave=False, unit="video")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_render_and_write, jobs, chunksize=16):
                bar.update()
    else:
        for job in jobs:
            _render_and_write(job)
            bar.update()
    bar.close()
    _write_annotations(root, videos, cfg)
    meta = {"version": FORMAT_VERSION, "config": _config_dict(cfg),
            "generation_seconds": round(time.time() - t0, 2),
            "timeline": {v["video_id"]: v["events"] for v in videos},
            "families": {v["video_id"]: v["family"] for v in videos}}
    tmp = root / "corpus.json.part"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, root / "corpus.json")
    return root


def corpus_status(root: str | os.PathLike, cfg: SyntheticConfig | None = None) -> str | None:
    """None when ``root`` holds a finished corpus of ``cfg``; else why it does not."""
    cfg = cfg or SyntheticConfig()
    path = Path(root) / "corpus.json"
    if not path.is_file():
        return "no corpus yet"
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        return "corpus.json is unreadable"
    if meta.get("version") != FORMAT_VERSION:
        return f"format version {meta.get('version')} != {FORMAT_VERSION}"
    if meta.get("config") != _config_dict(cfg):
        return "generated with other settings"
    return None


def ensure_corpus(root: str | os.PathLike, cfg: SyntheticConfig | None = None, *,
                  progress: bool = True) -> Path:
    """Generate the corpus unless ``root`` already holds this exact one; return ``root``."""
    if corpus_status(root, cfg) is None:
        return Path(root)
    return generate_corpus(root, cfg, overwrite=True, progress=progress)


def load_timeline(root: str | os.PathLike) -> dict[str, list[dict]]:
    """Video id -> its events (shape, colour, action, start, end (exclusive), decisive)."""
    path = Path(root) / "corpus.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: generate the corpus first "
                                f"(mofkit.data.synthetic.ensure_corpus or `python -m mofkit generate`)")
    return json.loads(path.read_text())["timeline"]


def load_families(root: str | os.PathLike) -> dict[str, int]:
    """Video id -> hard-negative family number."""
    return json.loads((Path(root) / "corpus.json").read_text())["families"]
