"""The synthetic image-caption corpus that ``mofkit pretrain`` trains the towers on.

MOF and CLIP4Clip start from CLIP, towers pretrained on image-caption pairs; a kit that trains
from scratch tests neither in its real regime. This corpus is the offline stand-in for those
pairs: **stills** drawn by the video renderer (:mod:`mofkit.data.synthetic`: its backgrounds,
objects and actions, each still one object at a random point of one action, as one frame of a
video shows it) with a caption naming what is on screen and no temporal words ("a red circle
moves left", "the blue star flashes"; the same paraphrases as the video captions, one event each).
A pretrained image tower then knows colours, shapes and actions, and the text tower their words,
before it sees any video: what fine-tuning on videos has to add is *which frames* and *how to pool
them*, MOF's question.

Everything follows from the config's ``seed``: the same config gives the same images and
captions. Files under ``root``: ``images.npy`` (uint8, N x S x S x 3, training stills first, then
the test stills) and, last, ``stills.json`` (format version, config, each still's event and
caption, the split sizes), so an interrupted generation is never taken for a finished one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from mofkit.config import PretrainConfig
from mofkit.data.synthetic import ACTION_WORDS, ACTIONS, COLOURS, SHAPES, event_phrase, render_still

FORMAT_VERSION = 2  # 2: one phrase per caption, never a sentence template
_META = "stills.json"
_IMAGES = "images.npy"


def classes() -> list[dict]:
    """Every (colour, shape, action) a still can show: 8 x 5 x 6 = 240 classes."""
    return [{"colour": c, "shape": s, "action": a} for c in COLOURS for s in SHAPES for a in ACTIONS]


def plan_stills(cfg: PretrainConfig) -> list[dict]:
    """Each still's event (class index, colour, shape, action), render seed, caption and split."""
    rng = np.random.default_rng([cfg.seed, 0x5717])
    all_classes = classes()
    out = []
    for i in range(cfg.n_train + cfg.n_test):
        c = int(rng.integers(len(all_classes)))
        ev = dict(all_classes[c])
        out.append({"class": c, **ev, "seed": int(rng.integers(2**62)),
                    "caption": event_phrase(ev, rng), "split": "train" if i < cfg.n_train else "test"})
    return out


def _config_dict(cfg: PretrainConfig) -> dict:
    keys = ("n_train", "n_test", "size", "seed")
    return {k: json.loads(json.dumps(getattr(cfg, k))) for k in keys}


def stills_status(root: str | os.PathLike, cfg: PretrainConfig) -> str | None:
    """None when ``root`` holds this config's finished corpus, else why not."""
    root = Path(root)
    meta = root / _META
    if not meta.is_file() or not (root / _IMAGES).is_file():
        return f"no finished stills corpus in {root}"
    doc = json.loads(meta.read_text())
    if doc.get("version") != FORMAT_VERSION or doc.get("config") != _config_dict(cfg):
        return f"{root} holds stills of other settings"
    return None


def generate_stills(root: str | os.PathLike, cfg: PretrainConfig, *, progress: bool = True) -> Path:
    """Render the corpus into ``root`` (its own two files replaced, nothing else touched)."""
    from tqdm.auto import tqdm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / _META).unlink(missing_ok=True)
    plan = plan_stills(cfg)
    t0 = time.time()
    tmp = root / f".{_IMAGES}.part"
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                       shape=(len(plan), cfg.size, cfg.size, 3))
    for i, rec in enumerate(tqdm(plan, desc=f"stills {root}", unit="still", disable=not progress,
                                 mininterval=1.0)):
        images[i] = render_still(rec, rec["seed"], cfg.size)
    images.flush()
    del images
    os.replace(tmp, root / _IMAGES)
    doc = {"version": FORMAT_VERSION, "config": _config_dict(cfg), "n_train": cfg.n_train,
           "n_test": cfg.n_test, "stills": [{k: r[k] for k in ("class", "colour", "shape", "action",
                                                                 "caption")} for r in plan]}
    part = root / f".{_META}.part"
    part.write_text(json.dumps(doc))
    os.replace(part, root / _META)
    if progress:
        print(f"stills: {len(plan)} images of {cfg.size} px in {root} ({time.time() - t0:.0f} s)")
    return root


def ensure_stills(root: str | os.PathLike, cfg: PretrainConfig, *, progress: bool = True) -> Path:
    """Generate the corpus unless ``root`` already holds this exact one."""
    if stills_status(root, cfg) is None:
        return Path(root)
    return generate_stills(root, cfg, progress=progress)


@dataclasses.dataclass
class Stills:
    """A loaded stills corpus."""

    images: np.ndarray  # uint8 (N, S, S, 3), memory-mapped
    captions: list[str]
    labels: np.ndarray  # (N,) class index into classes()
    n_train: int

    def split(self, name: str) -> slice:
        return slice(0, self.n_train) if name == "train" else slice(self.n_train, len(self.captions))


def load_stills(root: str | os.PathLike) -> Stills:
    """Read a finished corpus (images memory-mapped)."""
    root = Path(root)
    if not (root / _META).is_file():
        raise FileNotFoundError(f"no finished stills corpus in {root}: make one with `mofkit pretrain` "
                                f"(it generates the stills first) or mofkit.data.stills.ensure_stills")
    doc = json.loads((root / _META).read_text())
    images = np.load(root / _IMAGES, mmap_mode="r")
    return Stills(images=images, captions=[s["caption"] for s in doc["stills"]],
                  labels=np.array([s["class"] for s in doc["stills"]], np.int64), n_train=doc["n_train"])


def class_prompts() -> list[str]:
    """One plain caption per class ("a red circle moves left"), for zero-shot classification."""
    return [f"{'an' if c['colour'][0] in 'aeiou' else 'a'} {c['colour']} {c['shape']} "
            f"{ACTION_WORDS[c['action']][0]}" for c in classes()]
