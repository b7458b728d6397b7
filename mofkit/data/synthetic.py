"""The built-in synthetic video-text corpus: real mp4 files, MSR-VTT-format annotations.

It exists to pose MOF's problem offline: **the information that tells videos apart is spread over
time**, so K uniformly sampled frames miss some of it and more frames help.

Design
------
* **Events.** A video (``frames`` frames of ``size`` px, H.264 in mp4) shows 2 to 4 events one
  after another over a per-video background (a smooth two-colour gradient with low-contrast
  noise). An event is an object, one of 5 shapes (``SHAPES``) in one of 8 colours (``COLOURS``),
  doing one action. *Long* events fill most of the video: the object moves left, right, up or
  down, with a fading trail behind it, or grows, with dark outlines of the sizes it grew through.
  *Short* events, 1 or 2 per video, are a large object that flashes, inside a white halo, for
  ``short_frames`` frames (2 or 3 of 32: a tenth of the video or less); a long event always
  separates two flashes. Every single frame shows which event is on screen, direction included,
  because the model pools frames by their mean and cannot reason over time: what limits it
  should be *which events its K frames hit*.
* **Hard negatives hinge on short events.** Videos come in families of ``family_size``: the
  members share the timing and every event but one *decisive* event, whose object differs (its own
  colour for each member, the shape drawn afresh). With probability ``short_prob`` the decisive
  event is a flash; the other flashes are shared within the family and tell families apart. Uniform
  sampling takes segment mid-points of ``linspace(0, frames, K + 1)``, so an event is seen only
  when one of the K points falls in it: of 32 frames, K = 16 hits every flash; on the ``cpu``
  corpus's test videos (measured, flashes do not start just anywhere: a long event separates two)
  K = 8 hit 72 % of the flashes (50 % of the 2-frame ones), K = 4 11 % and K = 2 2 %; the decisive
  event, flash or not, was seen in 33 / 42 / 78 / 100 % of test videos at K = 2 / 4 / 8 / 16
  (``event_coverage``, ``mofkit ceiling``). A missed decisive flash leaves the
  family members identical to the model and retrieval among them a guess. The decisive
  difference is a colour, which a small model learns to see within a few epochs. Members never
  differ only in the order of events: mean pooling cannot see order at any K.
* **Captions** name the events in order with a small, regular vocabulary: "a red circle moves
  left, then a blue star flashes, then a green square grows". Training videos get
  ``captions_per_video`` paraphrases (three sentence templates, four connectives, two wordings of
  each action, a/the); test videos one. No two videos share their list of events, so every query
  has exactly one right answer.
* **Splits.** Families never straddle splits: a test video's hard negatives are test videos.
* **A moving camera and clutter** (``camera="moving"``, ``clutter=N``; off by default). With a
  still camera over a still background, a per-pixel max or mean over a segment keeps every
  background pixel and smears only the moving object: it summarises a video unrealistically well.
  ``camera="moving"`` films each video's scene through a camera of its own: a straight pan (a
  random direction, drawn at 1 to 3 px per frame at 64 px, scaled with ``size``), a zoom that
  narrows or widens the view by up to 20 % over the video, and a shake of up to 1 to 2 px per frame.
  The scene (background, clutter, events) is painted on a canvas larger than the frame and each
  frame is the camera's window of it, resampled to ``size`` px (2 x 2 bilinear samples per pixel),
  so everything in it moves together. Every frame shows all of its event's object (and a flash's
  halo): the view is at least 1.1 frames wide (objects look 0.73 to 0.91 times their static size),
  and the pan is slowed as far as it must be and its path placed to keep them in view. On 200
  videos of 64 px the net pan was 0.5 / 0.8 / 1.4 px per frame (10th / 50th / 90th percentile) and
  the camera moved 1.6 px from frame to frame with the shake. The wider background adds a soft grey
  mottle that shows the motion. ``clutter=N`` adds N distractor blobs, grey or brown mottled
  ellipses far in colour from every event colour, each drifting on its own path (with a slow
  sideways wobble and turn) under the events. Camera and clutter draw from streams of their own
  (``[seed, 1]``, ``[seed, 2]``), so the plan (families, timelines, captions) and where the events
  are in the scene stay those of the static corpus. Rendering takes about 3 times as long (56 ms a
  64 px video with 6 blobs, 17 ms without). At the defaults none of this runs: the frames are
  byte for byte what they were, and the two settings are left out of ``corpus.json``'s config, so a
  corpus written before they existed is still current (:data:`_LATER_FIELDS`).

Why these choices: a first version (3 long events, 4 shapes x 6 colours x 4 directions) left R@1
at noise level (5 to 12 % at any K) while R@10 rose with K: the model could not learn the long,
varied captions well enough to rank exactly, and too little of what separates videos was short.
Here both the hard negatives and part of what separates families hide in flashes. Measured with
the ``cpu`` profile's model (mof-tiny, 64 px, meanP, trained from scratch for 20 epochs on 2
cores) on the default corpus, text-to-video R@1 was 12.8 / 20.2 / 37.0 / 43.6 % at K = 2 / 4 /
8 / 16 (500 test videos).

Everything follows from ``seed``: the same config gives byte-identical files, videos included,
whatever the worker count, the process and the machine (frames are rendered from a per-video seed
with numpy arithmetic and encoded by one x264 thread with its cpu-independent algorithms, see
:func:`write_mp4`); only another libx264 build (another PyAV release) may encode other bytes.
Files written under ``root``: ``videos/video{i}.mp4``, ``MSRVTT_data.json``,
``MSRVTT_train.9k.csv`` (training ids), ``MSRVTT_JSFUSION_test.csv`` (one caption per test video),
and, last, ``corpus.json`` (format version, config, vocabulary, every video's family and event
timeline), so an interrupted generation is never taken for a finished one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mofkit.config import SyntheticConfig

# Version of the files written. 3: videos encoded with x264's cpu-independent algorithms (see
# write_mp4). The plan (families, timelines, captions) is drawn from _PLAN_VERSION, so a new file
# format does not change which corpus a seed describes.
FORMAT_VERSION = 3
_PLAN_VERSION = 2
SHAPES = ("circle", "square", "triangle", "cross", "star")
# Far apart in RGB and still apart after 4:2:0 chroma subsampling at 32 px.
COLOURS = {
    "red": (235, 40, 35), "green": (40, 205, 60), "blue": (45, 95, 250), "yellow": (245, 230, 40),
    "purple": (165, 60, 235), "cyan": (40, 225, 235), "white": (250, 250, 250),
    "orange": (250, 140, 20),
}
LONG_ACTIONS = ("moves left", "moves right", "moves up", "moves down", "grows")
SHORT_ACTION = "flashes"
ACTIONS = LONG_ACTIONS + (SHORT_ACTION,)
# Caption wordings of each action; the first is the canonical one stored in the timeline.
ACTION_WORDS = {
    "moves left": ("moves left", "goes left"), "moves right": ("moves right", "goes right"),
    "moves up": ("moves up", "goes up"), "moves down": ("moves down", "goes down"),
    "grows": ("grows", "gets bigger"), "flashes": ("flashes", "blinks"),
}
CONNECTIVES = (", then ", ", and then ", ", after that ", ", next ")
VOCAB = {"shapes": SHAPES, "colours": tuple(COLOURS), "actions": ACTIONS,
         "action_words": ACTION_WORDS, "connectives": CONNECTIVES}

CAMERAS = ("static", "moving")
_CLUTTER_MAX = 32
# Dull greys and browns, far in RGB from every event colour whatever the per-blob brightness and
# texture do to them (99 or more apart): clutter never reads as an event object.
_CLUTTER_TONES = ((105, 105, 105), (125, 120, 112), (120, 88, 60), (100, 80, 62), (132, 112, 84),
                  (86, 90, 84))
_CLUTTER_SHADE = (0.85, 1.15)  # per-blob brightness range
_CLUTTER_TEXTURE = 0.2  # brightness swing of a blob's mottled texture (x (1 +- 0.2), clipped at 1.5 x that)

_DIRECTIONS = {"moves left": (-1, 0), "moves right": (1, 0), "moves up": (0, -1), "moves down": (0, 1)}
_ANNOTATION_FILES = ("MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv")
_VIDEO_NAME = re.compile(r"^video\d+\.mp4(\.part)?$")
_MARKER = "corpus.incomplete"  # present from the first file written until corpus.json is


# ------------------------------------------------------------------------------------------------
# Corpus plan: families, timelines, captions (pure functions of the seed, no pixels)
# ------------------------------------------------------------------------------------------------

def _check_config(cfg: SyntheticConfig) -> None:
    lo, hi = cfg.short_frames
    if not 1 <= lo <= hi:
        raise ValueError(f"SyntheticConfig.short_frames={cfg.short_frames} must be (lo, hi) with "
                         f"1 <= lo <= hi")
    need = _min_frames(1, 2, hi)  # the shortest plan: one flash and one long event
    if cfg.frames < need:
        raise ValueError(f"SyntheticConfig.frames={cfg.frames} is too few for flashes of up to "
                         f"{hi} frames (short_frames={cfg.short_frames}); use frames >= {need} or "
                         f"shorter flashes")
    if cfg.size < 16 or cfg.size % 2:
        raise ValueError(f"SyntheticConfig.size={cfg.size} px: use an even size (H.264 4:2:0 needs "
                         f"one) of at least 16 px")
    if not 2 <= cfg.family_size <= len(COLOURS):
        raise ValueError(f"SyntheticConfig.family_size={cfg.family_size} must lie in "
                         f"[2, {len(COLOURS)}]: each member's decisive object has its own colour")
    if cfg.camera not in CAMERAS:
        raise ValueError(f"SyntheticConfig.camera={cfg.camera!r}: use one of {CAMERAS}")
    if isinstance(cfg.clutter, bool) or not isinstance(cfg.clutter, int) \
            or not 0 <= cfg.clutter <= _CLUTTER_MAX:
        raise ValueError(f"SyntheticConfig.clutter={cfg.clutter!r}: use a whole number of background "
                         f"blobs in [0, {_CLUTTER_MAX}] (0: none)")
    if cfg.captions_per_video < 1 or cfg.n_train < 0 or cfg.n_test < 0:
        raise ValueError(f"SyntheticConfig needs captions_per_video >= 1 and n_train, n_test >= 0; "
                         f"got {cfg.captions_per_video}, {cfg.n_train}, {cfg.n_test}")


def _min_frames(n_short: int, n_events: int, short_max: int) -> int:
    """Frames needed by a plan: flashes at their longest, long events at least 2 frames longer."""
    return n_short * short_max + (n_events - n_short) * (short_max + 2)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _timeline(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[list[str], list[int], int]:
    """Kinds ("long"/"short") and lengths of one family's events, and which one is decisive."""
    lo, hi = cfg.short_frames
    while True:  # short videos redraw the plans they cannot hold
        n_events = int(rng.choice([2, 3, 4], p=[0.15, 0.45, 0.4]))
        n_short = 1 if n_events == 2 else int(rng.integers(1, 3))
        if _min_frames(n_short, n_events, hi) <= cfg.frames:
            break
    kinds = ["short"] * n_short + ["long"] * (n_events - n_short)
    # Two flashes in a row would read as one event to a sampler; keep a long event between them.
    while True:
        order = list(rng.permutation(kinds))
        if not any(a == b == "short" for a, b in zip(order, order[1:])):
            break
    lengths = [int(rng.integers(lo, hi + 1)) if k == "short" else 0 for k in order]
    n_long = n_events - n_short
    min_long = hi + 2
    free = cfg.frames - sum(lengths) - min_long * n_long
    share = rng.dirichlet(np.full(n_long, 4.0)) * free
    extra = np.floor(share).astype(int)
    extra[int(np.argmax(share - extra))] += free - int(extra.sum())  # rounding leftovers
    it = iter(extra)
    lengths = [n if k == "short" else min_long + int(next(it)) for k, n in zip(order, lengths)]
    short_idx = [i for i, k in enumerate(order) if k == "short"]
    long_idx = [i for i, k in enumerate(order) if k == "long"]
    decisive = _pick(rng, short_idx) if rng.random() < cfg.short_prob else _pick(rng, long_idx)
    return order, lengths, int(decisive)


def _object(rng: np.random.Generator, colour: str | None = None) -> dict:
    return {"shape": _pick(rng, SHAPES), "colour": colour or _pick(rng, list(COLOURS))}


def _family(rng: np.random.Generator, cfg: SyntheticConfig) -> list[list[dict]]:
    """Events (with start/end frames) of each member of one hard-negative family."""
    kinds, lengths, decisive = _timeline(rng, cfg)
    shared = []
    for kind in kinds:
        action = SHORT_ACTION if kind == "short" else _pick(rng, LONG_ACTIONS)
        shared.append({**_object(rng), "action": action})
    colours = [str(c) for c in rng.permutation(list(COLOURS))[:cfg.family_size]]
    members = []
    for colour in colours:
        events, start = [], 0
        for j, (ev, n) in enumerate(zip(shared, lengths)):
            ev = dict(ev, **_object(rng, colour)) if j == decisive else dict(ev)
            ev.update(start=start, end=start + n, short=kinds[j] == "short", decisive=j == decisive)
            ev["phrase"] = f"{ev['colour']} {ev['shape']} {ev['action']}"
            events.append(ev)
            start += n
        members.append(events)
    return members


def _phrase(ev: dict, rng: np.random.Generator, article: str) -> str:
    if article == "a":
        article = "an" if ev["colour"][0] in "aeiou" else "a"
    return f"{article} {ev['colour']} {ev['shape']} {_pick(rng, ACTION_WORDS[ev['action']])}"


def event_phrase(event: dict, rng: np.random.Generator) -> str:
    """One event in words, in a random paraphrase, with no temporal connective: "a red circle
    moves left", "the blue star blinks" (the captions of ``mofkit.data.stills``)."""
    return _phrase(event, rng, "a" if rng.random() < 0.7 else "the")


def caption(events: list[dict], rng: np.random.Generator) -> str:
    """One caption describing ``events`` in order, in a random paraphrase.

    Args:
        events: a video's timeline (dicts with ``colour``, ``shape``, ``action``).
        rng: the paraphrase's randomness.

    Returns:
        The caption, e.g. "a red circle moves left, then a blue star flashes".
    """
    article = "a" if rng.random() < 0.7 else "the"
    parts = [_phrase(e, rng, article) for e in events]
    template = int(rng.integers(3))
    if template == 0:
        return _pick(rng, CONNECTIVES).join(parts)
    if template == 1:
        middle = "".join(", then " + p for p in parts[1:-1])
        return f"first {parts[0]}{middle}, finally {parts[-1]}"
    return _pick(rng, CONNECTIVES).join(parts[:-1]) + " and at the end " + parts[-1]


def _signature(events: list[dict]) -> tuple:
    return tuple((e["colour"], e["shape"], e["action"]) for e in events)


def plan_corpus(cfg: SyntheticConfig) -> list[dict]:
    """Every video's split, family, events and captions (no pixels).

    Args:
        cfg: corpus settings.

    Returns:
        A list of dicts ``{video_id, split, family, events, captions, seed}``, training videos
        first, then test videos; ``seed`` drives the video's rendering.
    """
    _check_config(cfg)
    rng = np.random.default_rng([cfg.seed, _PLAN_VERSION])
    videos: list[dict] = []
    seen: set[tuple] = set()
    family = 0
    for split, n in (("train", cfg.n_train), ("test", cfg.n_test)):
        made = 0
        while made < n:
            members = _family(rng, cfg)[:n - made]
            sigs = [_signature(m) for m in members]
            if seen & set(sigs):  # a duplicate caption would make some query unanswerable
                continue
            seen.update(sigs)
            for events in members:
                n_caps = cfg.captions_per_video if split == "train" else 1
                videos.append({"video_id": f"video{len(videos)}", "split": split, "family": family,
                               "events": events, "captions": [caption(events, rng) for _ in range(n_caps)],
                               "seed": int(rng.integers(2**31))})
            made += len(members)
            family += 1
    return videos


def events_hit(events: list[dict], indices) -> list[bool]:
    """Which events the given frame indices fall in.

    Args:
        events: a video's timeline (dicts with ``start`` and exclusive ``end``).
        indices: sampled frame indices, e.g. ``sample_indices(n, k, "uniform")``.

    Returns:
        One bool per event.
    """
    idx = np.asarray(indices)
    return [bool(((idx >= e["start"]) & (idx < e["end"])).any()) for e in events]


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------

_SUPERSAMPLE = 3  # sub-pixels per pixel side: soft edges survive resizing and code better in H.264


def _inside(shape: str, xx: np.ndarray, yy: np.ndarray, r: float) -> np.ndarray:
    """Which sub-pixel centres (``xx``, ``yy`` relative to the shape's centre) lie in the shape."""
    ax, ay = np.abs(xx), np.abs(yy)
    if r <= 0:
        return np.zeros(xx.shape, bool)
    if shape == "circle":
        return xx ** 2 + yy ** 2 <= r ** 2
    if shape == "square":
        return (ax <= 0.8 * r) & (ay <= 0.8 * r)
    if shape == "cross":
        return ((ax <= 0.33 * r) & (ay <= r)) | ((ay <= 0.33 * r) & (ax <= r))
    if shape == "triangle":  # pointing up
        return (yy <= 0.75 * r) & (yy >= -r) & (ax <= (yy + r) * 0.6)
    if shape == "star":  # five points; the edge runs straight in polar coordinates
        sector = 2 * np.pi / 5
        offset = (np.arctan2(xx, -yy) + sector / 2) % sector - sector / 2  # 0 on a point's axis
        t = np.abs(offset) / (sector / 2)
        return np.hypot(xx, yy) <= r * (1.1 * (1 - t) + 0.45 * t)
    raise ValueError(f"unknown shape {shape!r}; shapes: {SHAPES}")


def _paint(img: np.ndarray, shape: str, cx: float, cy: float, r: float, colour, alpha: float,
           width: float | None = None) -> None:
    """Blend ``shape`` (or its outline, ``width`` px wide) into ``img`` (S, S, 3) in place.

    Coverage is computed on a grid of ``_SUPERSAMPLE``^2 sub-pixels per pixel, only inside the
    shape's bounding box (the expensive part of rendering).
    """
    s, ss = img.shape[0], _SUPERSAMPLE
    reach = 1.15 * r + 1
    x0, x1 = max(0, int(cx - reach)), min(s, int(np.ceil(cx + reach)))
    y0, y1 = max(0, int(cy - reach)), min(s, int(np.ceil(cy + reach)))
    if x0 >= x1 or y0 >= y1:
        return
    gx = (np.arange(x0 * ss, x1 * ss) + 0.5) / ss - cx  # sub-pixel centres, relative to the shape
    gy = (np.arange(y0 * ss, y1 * ss) + 0.5) / ss - cy
    yy, xx = np.meshgrid(gy, gx, indexing="ij")  # (h*ss, w*ss)
    inside = _inside(shape, xx, yy, r)
    if width is not None:
        inside &= ~_inside(shape, xx, yy, r - width)
    h, w = y1 - y0, x1 - x0
    cover = inside.reshape(h, ss, w, ss).mean(axis=(1, 3))  # (h*ss, w*ss) -> (h, ss, w, ss) -> (h, w)
    a = (alpha * cover)[..., None]  # (h, w, 1)
    crop = img[y0:y1, x0:x1]
    crop *= 1 - a
    crop += a * np.asarray(colour, dtype=np.float64)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark, smooth two-colour gradient with faint blocky noise: (size, size, 3) float."""
    c0, c1 = rng.uniform(15, 90, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    t = np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5) + 0.5
    img = c0 + (c1 - c0) * t[..., None]  # (S, S, 3)
    block = max(1, size // 16)
    n = -(-size // block)
    noise = rng.normal(0, 5.0, size=(n, n, 3))
    return img + np.repeat(np.repeat(noise, block, 0), block, 1)[:size, :size]  # (S, S, 3)


def _track(rng: np.random.Generator, ev: dict, s: int) -> dict:
    """Where an event's object is drawn: centre and radius at its first (0) and last (1) frame."""
    if ev["action"] == SHORT_ACTION:
        c = rng.uniform(0.4 * s, 0.6 * s, size=2)
        return {"p0": c, "p1": c, "r0": 0.24 * s, "r1": 0.24 * s}
    if ev["action"] == "grows":
        c = rng.uniform(0.4 * s, 0.6 * s, size=2)
        return {"p0": c, "p1": c, "r0": 0.12 * s, "r1": 0.27 * s}
    dx, dy = _DIRECTIONS[ev["action"]]
    across = rng.uniform(0.3 * s, 0.7 * s)  # the coordinate that stays put
    a0, a1 = (0.78 * s, 0.22 * s) if dx + dy < 0 else (0.22 * s, 0.78 * s)
    p0 = np.array([a0, across] if dx else [across, a0])  # (x, y)
    p1 = np.array([a1, across] if dx else [across, a1])
    return {"p0": p0, "p1": p1, "r0": 0.14 * s, "r1": 0.14 * s}


def _draw_event(img: np.ndarray, ev: dict, tr: dict, u: float, s: int) -> None:
    """Paint one event's object into ``img`` (S, S, 3 float) at ``u`` (0 -> 1) of its action."""
    colour, shape = COLOURS[ev["colour"]], ev["shape"]

    def at(v):
        p = tr["p0"] + (tr["p1"] - tr["p0"]) * v
        return p[0], p[1], tr["r0"] + (tr["r1"] - tr["r0"]) * v

    if ev["action"] in _DIRECTIONS:  # a fading trail behind the object shows the direction
        for lag, alpha in ((0.3, 0.2), (0.2, 0.32), (0.1, 0.5)):
            px, py, r = at(u - lag)
            _paint(img, shape, px, py, 0.9 * r, colour, alpha)
    elif ev["action"] == SHORT_ACTION:  # a bright halo around the big object
        px, py, r = at(0.0)
        _paint(img, "circle", px, py, 1.5 * r, (255, 255, 255), 0.75, width=0.25 * r)
    px, py, r = at(u)
    _paint(img, shape, px, py, r, colour, 1.0)
    if ev["action"] == "grows":  # dark outlines of the sizes it grew through
        for frac in (0.35, 0.65):
            _paint(img, shape, px, py, frac * r, (20, 20, 20), 0.6, width=0.05 * s)


def _reach(ev: dict, tr: dict, u: float) -> tuple[float, float, float]:
    """Centre and reach (px) of what an event shows at ``u``: its object, and a flash's halo (a
    moving object's trail may leave the frame, as it does in a static video)."""
    p = tr["p0"] + (tr["p1"] - tr["p0"]) * u
    r = tr["r0"] + (tr["r1"] - tr["r0"]) * u
    # a star's points reach 1.1 r, the halo 1.5 r; 1.5 px more for the soft edges and resampling
    return float(p[0]), float(p[1]), (1.5 if ev["action"] == SHORT_ACTION else 1.1) * r + 1.5


def _progress(ev: dict, t: int) -> float:
    return (t - ev["start"]) / max(1, ev["end"] - ev["start"] - 1)  # 0 -> 1 over the event


# The camera's tightest view of a video is this many frames wide (wider where a still camera would
# need more to show every event): with the zoom, objects look 0.73 to 0.91 times their static size,
# and there is room to pan while every event stays in view.
_MIN_VIEW = 1.1


def _camera(rng: np.random.Generator, tracks: list, cfg: SyntheticConfig) -> np.ndarray:
    """The scene window each frame of a moving camera shows: (T, 3) centre x, y and side (frame px).

    A straight pan (random direction, 1 to 3 px per frame at 64 px), a zoom that narrows or widens
    the view by up to 20 % over the video, and a shake of up to 1 to 2 px per frame on each axis. The pan is slowed (never turned) as far as it
    must be, and the path placed, so that every frame shows all of its event's object (and halo);
    the view is widened if even a still camera could not.
    """
    s, n = cfg.size, cfg.frames
    k = s / 64
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(1.0, 3.0) * k
    zoom = rng.uniform(-0.2, 0.2)
    shake = rng.uniform(-1, 1, size=(n, 2)) * rng.uniform(1.0, 2.0) * k  # (T, 2)
    velocity = speed * np.array([math.cos(angle), math.sin(angle)])  # (2,) px per frame
    tau = np.arange(n) - (n - 1) / 2  # frames from the middle of the video
    side = 1 + zoom * np.arange(n) / max(1, n - 1)  # (T,) relative; zoom < 0 narrows the view (zooms in)
    lo = np.full((n, 2), s / 2)  # (T, 2) what frame t must show: [lo, hi] on each axis
    hi = np.full((n, 2), s / 2)
    for t in range(n):
        boxes = [_reach(ev, tr, _progress(ev, t)) for ev, tr in tracks if ev["start"] <= t < ev["end"]]
        if boxes:
            lo[t] = [min(x - r for x, _, r in boxes), min(y - r for _, y, r in boxes)]
            hi[t] = [max(x + r for x, _, r in boxes), max(y + r for _, y, r in boxes)]
    # A still camera (the shake alone) shows every frame's box when for all t, t':
    # hi_t - j_t - w_t / 2 <= lo_t' - j_t' + w_t' / 2, with w = scale * side.
    half = side / 2
    need = (hi[:, None] - shake[:, None] - lo[None] + shake[None]) \
        / (half[:, None] + half[None])[..., None]  # (T, T, 2)
    scale = max(_MIN_VIEW * s / side.min(), float(need.max()) + 1e-6)
    w = scale * side  # (T,)
    for f in np.linspace(1, 0, 21):  # the fastest pan, in this direction, with a feasible path
        drift = f * tau[:, None] * velocity + shake  # (T, 2)
        low = (hi - w[:, None] / 2 - drift).max(axis=0)  # (2,) bounds of the middle frame's centre
        high = (lo + w[:, None] / 2 - drift).min(axis=0)
        if (low <= high).all() or f == 0:
            break
    mid = low + rng.random(2) * np.maximum(high - low, 0)  # (2,)
    return np.concatenate([mid + drift, w[:, None]], axis=1)  # (T, 3)


def _cell_noise(rng: np.random.Generator, x0: int, y0: int, n: int, cell: int, sd: float,
                channels: int) -> np.ndarray:
    """Normal noise on squares of ``cell`` px fixed to the scene, covering the (n, n) canvas whose
    pixel (0, 0) is the frame's (x0, y0), with one square more on every side: (rows, cols, C)."""
    rows, cols = (y0 + n - 1) // cell - y0 // cell + 3, (x0 + n - 1) // cell - x0 // cell + 3
    return rng.normal(0, sd, size=(rows, cols, channels))


def _wide_background(rng: np.random.Generator, x0: int, y0: int, n: int, s: int) -> np.ndarray:
    """The background of a scene larger than the frame, for a moving camera: (n, n, 3) float whose
    pixel (0, 0) is the frame's (x0, y0). As :func:`_background` (a two-colour gradient, now across
    the whole scene, and faint blocky noise), plus a soft grey mottle that shows the camera's motion."""
    c0, c1 = rng.uniform(15, 90, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    t = math.cos(angle) * x + math.sin(angle) * y
    t = (t - t.min()) / (t.max() - t.min())
    img = c0 + (c1 - c0) * t[..., None]  # (n, n, 3)
    px = np.arange(n)
    block = max(1, s // 16)
    noise = _cell_noise(rng, x0, y0, n, block, 5.0, 3)
    img += noise[(y0 + px) // block - y0 // block + 1][:, (x0 + px) // block - x0 // block + 1]
    cell = max(2, s // 4)  # the mottle: coarse noise, interpolated between square centres
    noise = _cell_noise(rng, x0, y0, n, cell, 9.0, 1)

    def taps(o):  # for each canvas row (column): the square above (left of) its centre, weight below
        q = (o + px + 0.5) / cell - 0.5 - o // cell + 1
        i = np.floor(q).astype(int)
        return i, q - i

    (yi, yf), (xi, xf) = taps(y0), taps(x0)
    yf, xf = yf[:, None, None], xf[None, :, None]
    rows = noise[yi] * (1 - yf) + noise[yi + 1] * yf  # (n, cols, 1)
    return img + rows[:, xi] * (1 - xf) + rows[:, xi + 1] * xf  # (n, n, 1) onto (n, n, 3)


def _clutter(rng: np.random.Generator, count: int, box: tuple, cfg: SyntheticConfig) -> list[dict]:
    """Paths and looks of ``count`` background blobs that drift through ``box`` (x0, y0, x1, y1)."""
    s, k = cfg.size, cfg.size / 64
    blobs = []
    for _ in range(count):
        a = rng.uniform(0.07, 0.15) * s
        heading = rng.uniform(0, 2 * np.pi)
        blobs.append({
            "mid": np.array([rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])]),
            "t_mid": (cfg.frames - 1) / 2,  # the frame at which it is at "mid"
            "velocity": rng.uniform(0.3, 1.0) * k * np.array([math.cos(heading), math.sin(heading)]),
            "wobble": rng.uniform(0, 2) * k, "period": rng.uniform(12, 40),
            "phase": rng.uniform(0, 2 * np.pi),
            "a": a, "b": a * rng.uniform(0.45, 0.8), "turn0": rng.uniform(0, np.pi),
            "spin": rng.uniform(-0.03, 0.03),
            "tone": np.asarray(_pick(rng, _CLUTTER_TONES), np.float64) * rng.uniform(*_CLUTTER_SHADE),
            "alpha": rng.uniform(0.7, 0.9),
            "texture": np.clip(rng.normal(0, 1, size=(6, 6)), -1.5, 1.5),
        })
    return blobs


def _paint_blob(img: np.ndarray, blob: dict, t: float, origin: tuple[int, int]) -> None:
    """Blend one clutter blob, where its path puts it at frame ``t``, into ``img`` (n, n, 3)."""
    n, ss = img.shape[0], _SUPERSAMPLE
    vx, vy = (float(v) for v in blob["velocity"])
    across = np.array([-vy, vx]) / max(math.hypot(vx, vy), 1e-9)  # a sideways wobble along the drift
    wobble = blob["wobble"] * math.sin(2 * math.pi * t / blob["period"] + blob["phase"])
    centre = blob["mid"] + blob["velocity"] * (t - blob["t_mid"]) + across * wobble
    cx, cy = float(centre[0]) - origin[0], float(centre[1]) - origin[1]
    turn = blob["turn0"] + blob["spin"] * t
    c, sn = math.cos(turn), math.sin(turn)
    a, b = blob["a"], blob["b"]
    reach = a + 1
    x0, x1 = max(0, int(cx - reach)), min(n, int(np.ceil(cx + reach)))
    y0, y1 = max(0, int(cy - reach)), min(n, int(np.ceil(cy + reach)))
    if x0 >= x1 or y0 >= y1:
        return
    gx = (np.arange(x0 * ss, x1 * ss) + 0.5) / ss - cx
    gy = (np.arange(y0 * ss, y1 * ss) + 0.5) / ss - cy
    yy, xx = np.meshgrid(gy, gx, indexing="ij")  # (h*ss, w*ss)
    u, v = (xx * c + yy * sn) / a, (yy * c - xx * sn) / b  # the blob's own axes, 1 at its rim
    h, w = y1 - y0, x1 - x0
    cover = (u * u + v * v <= 1).reshape(h, ss, w, ss).mean(axis=(1, 3))  # (h, w)
    # the mottled texture turns with the blob: its 6 x 6 cells span the ellipse's bounding box
    u = u.reshape(h, ss, w, ss)[:, ss // 2, :, ss // 2]  # (h, w) at pixel centres
    v = v.reshape(h, ss, w, ss)[:, ss // 2, :, ss // 2]
    cu = np.clip(np.floor((u + 1) * 3), 0, 5).astype(int)
    cv = np.clip(np.floor((v + 1) * 3), 0, 5).astype(int)
    colour = blob["tone"] * (1 + _CLUTTER_TEXTURE * blob["texture"][cv, cu])[..., None]  # (h, w, 3)
    alpha = (blob["alpha"] * cover)[..., None]  # (h, w, 1)
    crop = img[y0:y1, x0:x1]
    crop *= 1 - alpha
    crop += alpha * colour


def _look(img: np.ndarray, origin: tuple[int, int], view: np.ndarray, s: int) -> np.ndarray:
    """The camera's frame: the ``view`` window (centre x, y, side; frame px) of the scene ``img``
    (n, n, 3) resampled to (s, s, 3), 2 x 2 bilinear samples per pixel."""
    cx, cy, w = (float(v) for v in view)

    def taps(c, o):  # canvas rows (or columns) and weights of each output pixel's two samples
        q = c - w / 2 + (np.arange(s)[:, None] + np.array([0.25, 0.75])) * (w / s) - o - 0.5  # (s, 2)
        i = np.floor(q).astype(int)
        return i, q - i

    yi, yf = taps(cy, origin[1])
    xi, xf = taps(cx, origin[0])
    rows = img[yi] * (1 - yf)[..., None, None] + img[yi + 1] * yf[..., None, None]  # (s, 2, n, 3)
    rows = (rows[:, 0] + rows[:, 1]) * 0.5  # (s, n, 3)
    cols = rows[:, xi] * (1 - xf)[None, ..., None] + rows[:, xi + 1] * xf[None, ..., None]  # (s, s, 2, 3)
    return (cols[:, :, 0] + cols[:, :, 1]) * 0.5  # (s, s, 3)


def _shifted(tr: dict, origin: tuple[int, int]) -> dict:
    o = np.asarray(origin, np.float64)
    return {**tr, "p0": tr["p0"] - o, "p1": tr["p1"] - o}


def render_video(record: dict, cfg: SyntheticConfig) -> np.ndarray:
    """Frames of one planned video (an item of :func:`plan_corpus`).

    The scene (background and event tracks) follows from the video's seed; a moving camera and
    clutter draw from streams of their own (``[seed, 1]``, ``[seed, 2]``), so they leave the scene's
    events where the static video has them.

    Args:
        record: the video's plan (``events`` and ``seed``).
        cfg: corpus settings (``frames``, ``size``, ``camera``, ``clutter``).

    Returns:
        uint8 array (T, H, W, 3).
    """
    rng = np.random.default_rng(record["seed"])
    s = cfg.size
    bg = _background(rng, s)
    tracks = [(ev, _track(rng, ev, s)) for ev in record["events"]]
    views, origin, box = None, (0, 0), (0, 0, s, s)
    if cfg.camera == "moving":
        cam_rng = np.random.default_rng([record["seed"], 1])
        views = _camera(cam_rng, tracks, cfg)  # (T, 3)
        half = views[:, 2:] / 2
        x0, y0 = np.floor((views[:, :2] - half).min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil((views[:, :2] + half).max(axis=0)).astype(int) + 2
        n = int(max(x1 - x0, y1 - y0))
        origin, box = (int(x0), int(y0)), (float(x0), float(y0), float(x1), float(y1))
        bg = _wide_background(cam_rng, origin[0], origin[1], n, s)
        tracks = [(ev, _shifted(tr, origin)) for ev, tr in tracks]
    blobs = _clutter(np.random.default_rng([record["seed"], 2]), cfg.clutter, box, cfg) \
        if cfg.clutter else []
    out = np.empty((cfg.frames, s, s, 3), np.uint8)
    for t in range(cfg.frames):
        img = bg.copy()
        for blob in blobs:
            _paint_blob(img, blob, t, origin)
        for ev, tr in tracks:
            if not ev["start"] <= t < ev["end"]:
                continue
            _draw_event(img, ev, tr, _progress(ev, t), s)
        if views is not None:
            img = _look(img, origin, views[t], s)
        out[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def render_still(event: dict, seed: int, size: int) -> np.ndarray:
    """One still of the video renderer: a fresh background and one event's object (``colour``,
    ``shape``, ``action``) at a random point of its action, as a frame of a video shows it.

    Returns:
        uint8 array (H, W, 3).
    """
    rng = np.random.default_rng(seed)
    img = _background(rng, size)
    tr = _track(rng, event, size)
    u = 0.0 if event["action"] == SHORT_ACTION else float(rng.uniform(0.15, 1.0))
    _draw_event(img, event, tr, u, size)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# x264 picks among algorithms by CPU (SSE/AVX2/AVX-512 code paths that do not give identical
# output). Its AVX-512 path is not even repeatable within one machine: in a process that has loaded
# torch, the same frames encoded 15 times gave three different files (the macroblock-tree
# lookahead: with mbtree off, or on the AVX2 path, or with cpu-independent, every encode was the
# same). "cpu-independent" is x264's switch for its canonical algorithms: the same frames give the
# same bytes on every machine and in every process, at no measurable cost (2.9 ms per 20-frame
# 32 px video either way).
_X264_OPTIONS = {"preset": "veryfast", "threads": "1", "x264-params": "cpu-independent=1"}


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 8, crf: int = 17) -> None:
    """Encode frames as H.264 (yuv420p) mp4, byte for byte reproducibly.

    The same frames give the same file whatever the machine's CPU, the worker process and what
    the process has loaded (one encoder thread, x264's cpu-independent algorithms); only another
    build of libx264 (another PyAV release) may give other bytes.

    Args:
        path: the output file; written as ``<path>.part`` and renamed when complete.
        frames: uint8 (T, H, W, 3) RGB, H and W even.
        fps: frame rate stored in the container.
        crf: x264 constant rate factor (lower is closer to the input).
    """
    import av

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), **_X264_OPTIONS}
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
# Files
# ------------------------------------------------------------------------------------------------

# Settings added after corpora had been written, each defaulting to what those corpora are. At its
# default such a setting is left out of the recorded config: a corpus.json written before it existed
# still matches, and a default corpus writes the same corpus.json as before.
_LATER_FIELDS = ("camera", "clutter")


def _config_dict(cfg: SyntheticConfig | dict) -> dict:
    """The config as corpus.json records it: JSON types (tuples as lists), settings of
    :data:`_LATER_FIELDS` left out at their defaults. Takes a config or a recorded dict."""
    d = json.loads(json.dumps(cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)))
    fields = {f.name: f for f in dataclasses.fields(SyntheticConfig)}
    for name in _LATER_FIELDS:
        if name in d and d[name] == fields[name].default:
            del d[name]
    return d


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_annotations(root: Path, videos: list[dict], cfg: SyntheticConfig) -> None:
    sentences = [{"caption": c, "video_id": v["video_id"], "sen_id": 0}
                 for v in videos for c in v["captions"]]
    for i, sen in enumerate(sentences):
        sen["sen_id"] = i
    data = {"info": {"description": "mofkit synthetic video-text corpus", "version": FORMAT_VERSION,
                     "seed": cfg.seed, "frames": cfg.frames, "size": cfg.size, "fps": cfg.fps},
            "videos": [{"video_id": v["video_id"], "split": v["split"], "id": i, "family": v["family"]}
                       for i, v in enumerate(videos)],
            "sentences": sentences}
    _write_atomic(root / "MSRVTT_data.json", json.dumps(data, indent=1))
    train_ids = [v["video_id"] for v in videos if v["split"] == "train"]
    _write_atomic(root / "MSRVTT_train.9k.csv", "video_id\n" + "".join(f"{v}\n" for v in train_ids))
    test = [v for v in videos if v["split"] == "test"]
    rows = ["key,vid_key,video_id,sentence\n"]
    for j, v in enumerate(test):
        # Captions hold commas: quote the field as the csv module would.
        sentence = '"' + v["captions"][0].replace('"', '""') + '"'
        rows.append(f"ret{j},msr{v['video_id'][len('video'):]},{v['video_id']},{sentence}\n")
    _write_atomic(root / "MSRVTT_JSFUSION_test.csv", "".join(rows))


def _clear_previous(root: Path) -> None:
    """Remove what an earlier generation wrote (only the corpus's own file names)."""
    (root / "corpus.json").unlink(missing_ok=True)
    for name in _ANNOTATION_FILES:
        (root / name).unlink(missing_ok=True)
    video_dir = root / "videos"
    if video_dir.is_dir():
        for p in video_dir.iterdir():
            if _VIDEO_NAME.match(p.name):
                p.unlink()


def _foreign_files(root: Path) -> list[str]:
    """Files in ``root`` that this generator would overwrite or that it did not write."""
    found = [n for n in _ANNOTATION_FILES if (root / n).exists()]
    if (root / "videos").is_dir():
        found += [f"videos/{p.name}" for p in (root / "videos").iterdir()]
    return found


def generate_corpus(root: str | os.PathLike, cfg: SyntheticConfig | None = None, *,
                    overwrite: bool = False, progress: bool = True,
                    workers: int | None = None) -> Path:
    """Render and write the corpus.

    Args:
        root: target folder (created if missing).
        cfg: corpus settings; default :class:`~mofkit.config.SyntheticConfig`.
        overwrite: replace a corpus (finished or interrupted) already in ``root``. Only the
            corpus's own files are removed (``corpus.json``, the three annotation files,
            ``videos/video<N>.mp4``); anything else in ``root`` is left alone.
        progress: show a progress bar and print the time taken.
        workers: rendering processes; default ``min(2, cpu count)``. 1 renders in this process.

    Returns:
        ``root`` as a Path.

    Raises:
        FileExistsError: ``root`` already holds a corpus or annotation/video files and
            ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    cfg = cfg or SyntheticConfig()
    root = Path(root)
    videos = plan_corpus(cfg)  # checks the config before anything is touched
    if not overwrite:
        found = (["corpus.json"] if (root / "corpus.json").exists() else []) + _foreign_files(root)
        if found:
            raise FileExistsError(f"{root} already holds {', '.join(found[:3])}"
                                  f"{' ...' if len(found) > 3 else ''}; pass overwrite=True to "
                                  f"replace a synthetic corpus there, use ensure_corpus, or choose "
                                  f"an empty folder")
    t0 = time.time()
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps(_config_dict(cfg)))
    _clear_previous(root)
    (root / "videos").mkdir(exist_ok=True)
    cfg_dict = dataclasses.asdict(cfg)
    jobs = [(v, cfg_dict, str(root / "videos")) for v in videos]
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    with tqdm(total=len(jobs), desc=f"synthetic corpus {root}", disable=not progress,
              unit="video") as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_render_and_write, jobs, chunksize=8):
                    bar.update()
        else:
            for job in jobs:
                _render_and_write(job)
                bar.update()
    _write_annotations(root, videos, cfg)
    meta = {"version": FORMAT_VERSION, "config": _config_dict(cfg),
            "vocab": json.loads(json.dumps(VOCAB)),
            "families": {v["video_id"]: v["family"] for v in videos},
            "timeline": {v["video_id"]: v["events"] for v in videos}}
    _write_atomic(root / "corpus.json", json.dumps(meta, indent=None, separators=(",", ":")))
    (root / _MARKER).unlink()
    if progress:
        mb = sum(p.stat().st_size for p in (root / "videos").iterdir()) / 2**20
        print(f"synthetic corpus: {len(videos)} videos ({mb:.1f} MB) written to {root} in "
              f"{time.time() - t0:.1f} s")
    return root


def corpus_status(root: str | os.PathLike, cfg: SyntheticConfig | None = None) -> str | None:
    """Whether ``root`` holds a finished corpus of ``cfg``.

    Args:
        root: corpus folder.
        cfg: the settings it should have been made with; default ``SyntheticConfig()``.

    Returns:
        None when it does; otherwise a short reason ("no corpus yet", "generated with other
        settings", ...).
    """
    cfg = cfg or SyntheticConfig()
    root = Path(root)
    path = root / "corpus.json"
    if not path.is_file():
        return "no corpus yet"
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        return "corpus.json is unreadable"
    if meta.get("version") != FORMAT_VERSION:
        return f"format version {meta.get('version')}, this generator writes {FORMAT_VERSION}"
    if not isinstance(meta.get("config"), dict) or _config_dict(meta["config"]) != _config_dict(cfg):
        return "generated with other settings"
    missing = [n for n in _ANNOTATION_FILES if not (root / n).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    if (root / _MARKER).exists():
        return "a generation was interrupted"
    n_videos = len(meta.get("timeline", {}))
    video_dir = root / "videos"
    on_disk = sum(1 for n in os.listdir(video_dir) if n.endswith(".mp4") and _VIDEO_NAME.match(n)) \
        if video_dir.is_dir() else 0
    if on_disk < n_videos:
        return f"{n_videos - on_disk} of {n_videos} videos are missing from {root / 'videos'}"
    return None


def ensure_corpus(root: str | os.PathLike, cfg: SyntheticConfig | None = None, *,
                  progress: bool = True) -> Path:
    """Generate the corpus unless ``root`` already holds this exact one.

    Args:
        root: corpus folder.
        cfg: corpus settings; default ``SyntheticConfig()``.
        progress: progress bar while generating.

    Returns:
        ``root`` as a Path. Returns at once (nothing written) when ``corpus.json`` there records
        the same config and format version and the files are present; otherwise (re)generates,
        replacing only the corpus's own files.

    Raises:
        FileExistsError: ``root`` holds annotation or video files but no trace of this generator
            (no ``corpus.json``, no interrupted generation), e.g. a real MSR-VTT folder; they are
            left alone.
    """
    root = Path(root)
    if corpus_status(root, cfg) is None:
        return root
    ours = (root / "corpus.json").exists() or (root / _MARKER).exists()
    return generate_corpus(root, cfg, overwrite=ours, progress=progress)


def _read_meta(root: str | os.PathLike) -> dict:
    path = Path(root) / "corpus.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} holds no finished synthetic corpus; make "
                                f"one with mofkit.data.synthetic.ensure_corpus or "
                                f"`python -m mofkit generate`")
    return json.loads(path.read_text())


def load_timeline(root: str | os.PathLike) -> dict[str, list[dict]]:
    """Every video's events, from ``<root>/corpus.json``.

    Args:
        root: corpus folder.

    Returns:
        video id -> list of events in order, each a dict with ``start``, ``end`` (exclusive)
        frame, ``shape``, ``colour``, ``action``, ``phrase`` (canonical caption words),
        ``short`` (a flash of ``short_frames`` frames) and ``decisive`` (the event in which the
        video differs from its family).
    """
    return _read_meta(root)["timeline"]


def load_families(root: str | os.PathLike) -> dict[str, int]:
    """video id -> hard-negative family number, from ``<root>/corpus.json``."""
    return _read_meta(root)["families"]


def event_coverage(timeline: dict[str, list[dict]], video_ids, k_values) -> "pd.DataFrame":
    """Share of the videos' decisive events that K uniform frames hit, per K.

    Args:
        timeline: :func:`load_timeline` of the corpus.
        video_ids: the videos to count (e.g. the test split's).
        k_values: the K to try (``cfg.study.k_values``).

    Returns:
        DataFrame with columns ``K`` and ``decisive events seen (%)``.
    """
    import pandas as pd

    from mofkit.data.sampling import sample_indices

    rows = []
    for k in k_values:
        hits = []
        for vid in video_ids:
            events = timeline.get(vid, [])
            idx = sample_indices(events[-1]["end"], k, "uniform") if events else []
            hits += [any(e["start"] <= i < e["end"] for i in idx) for e in events if e.get("decisive")]
        rows.append({"K": k, "decisive events seen (%)": 100 * float(np.mean(hits)) if hits else np.nan})
    return pd.DataFrame(rows)


def event_frames(events: list[dict], k: int) -> list[int]:
    """K frame indices inside a video's captioned events: every event gets at least one, in order.

    The oracle control's compressed-frame initialisation: frames that show what the caption says.
    Slots go to events in turn (the first ``k`` events when there are more than ``k``); an event
    with ``m`` slots gets the frames at ``(i + 1/2) / m`` of its span.

    Args:
        events: a video's timeline (dicts with ``start`` and exclusive ``end``).
        k: frames to pick.

    Returns:
        ``k`` frame indices, sorted.
    """
    n = len(events)
    slots = [0] * n
    for j in range(k):
        slots[j % n] += 1
    out = []
    for ev, m in zip(events, slots):
        span = ev["end"] - ev["start"]
        out += [int(ev["start"] + min(span - 1, int((i + 0.5) * span / m))) for i in range(m)]
    return sorted(out)
