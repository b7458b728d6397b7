"""Video-text datasets in their public annotation formats, behind one interface.

Every reader returns a :class:`VideoTextDataset`: records of (video id, video path, captions) for
one split, plus the evaluation protocol of that split:

* ``single``: one caption per test video, caption i belongs to video i (MSR-VTT 1k-A);
* ``multi``: every caption of a test video is a query (MSVD);
* ``paragraph``: a video's captions joined into one paragraph query (DiDeMo).

Formats, as CLIP4Clip distributes them (see data/README.md for where to get them):

* MSR-VTT: ``MSRVTT_data.json`` (all sentences), ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv``
  (training ids, column ``video_id``), ``MSRVTT_JSFUSION_test.csv`` (1k-A test: columns
  ``key, vid_key, video_id, sentence``).
* MSVD: ``raw-captions.pkl`` (video id -> list of tokenised captions), ``train_list.txt``,
  ``val_list.txt``, ``test_list.txt``.
* DiDeMo: ``{train,val,test}_data.json`` (items with ``video``, ``description``, ``times``), and
  optionally ``{split}_list.txt`` restricting the ids.

Video files are looked up by id in ``video_dir`` (default ``<root>/videos``) with any common
extension. Captions of videos that are not on disk raise :class:`MissingVideosError` naming the
annotation file and the ids, or, with ``missing="skip"``, are dropped with one warning.
"""
from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

DATASETS = ("msrvtt", "msvd", "didemo", "synthetic")
PROTOCOLS = ("single", "multi", "paragraph")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")


class AnnotationError(ValueError):
    """An annotation file is missing or malformed; the message names the file and the problem."""


class MissingVideosError(FileNotFoundError):
    """Captions refer to videos that are not on disk; names the annotation file, folder and ids."""

    def __init__(self, annotation: str | Path, video_dir: str | Path, ids: list[str]):
        self.annotation, self.video_dir, self.ids = str(annotation), str(video_dir), list(ids)
        shown = ", ".join(self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        super().__init__(f"{len(self.ids)} videos named in {annotation} are not in {video_dir}: "
                         f"{shown}. Put the video files there (see data/README.md), point "
                         f"data.video_dir at them, or pass missing='skip' to leave them out")


@dataclass
class VideoRecord:
    """One video and its captions for one split."""

    video_id: str  # e.g. "video7010"
    path: Path  # the video file
    captions: list[str]  # all captions of this split (one for MSR-VTT 1k-A, a paragraph for DiDeMo)


@dataclass
class VideoTextDataset:
    """The videos of one split of one dataset."""

    name: str  # msrvtt | msvd | didemo | synthetic
    split: str  # train | val | test
    root: Path  # the annotation folder
    records: list[VideoRecord]  # in annotation order
    protocol: str = "single"  # single | multi | paragraph (see the module docstring)
    excluded: dict[str, str] = field(default_factory=dict)  # video id -> why it was left out

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> VideoRecord:
        return self.records[i]

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    @property
    def video_ids(self) -> list[str]:
        return [r.video_id for r in self.records]

    def caption_pairs(self) -> tuple[list[str], np.ndarray]:
        """All captions in record order and, for each, the row of its video.

        Returns:
            ``(captions, video_row)`` with ``video_row`` an int64 array of the caption count.
        """
        caps, rows = [], []
        for i, r in enumerate(self.records):
            caps.extend(r.captions)
            rows.extend([i] * len(r.captions))
        return caps, np.asarray(rows, dtype=np.int64)

    def without(self, video_ids, reason: str = "") -> "VideoTextDataset":
        """A copy without these videos (e.g. unreadable ones); ``excluded`` records why."""
        drop = set(video_ids)
        excluded = dict(self.excluded)
        excluded.update({v: reason for v in drop if v in set(self.video_ids)})
        return replace(self, records=[r for r in self.records if r.video_id not in drop],
                       excluded=excluded)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path} ({what}); see data/README.md for "
                              f"where to get it and where it goes")
    return path


def _video_index(video_dir: Path) -> dict[str, Path]:
    """Video id (file stem) -> path, from one listing of the folder."""
    if not video_dir.is_dir():
        return {}
    out: dict[str, Path] = {}
    for p in sorted(video_dir.iterdir()):
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.stem not in out:
            out[p.stem] = p
    return out


def _attach(name: str, split: str, root: Path, video_dir: Path, captions: dict[str, list[str]],
            protocol: str, annotation: Path, missing: str) -> VideoTextDataset:
    """Records for ``captions`` (id -> captions, in order) with paths, honouring ``missing``."""
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    index = _video_index(video_dir)
    absent = [v for v in captions if v not in index]
    if absent and missing == "error":
        raise MissingVideosError(annotation, video_dir, absent)
    if absent:
        shown = ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "")
        warnings.warn(f"{len(absent)} videos named in {annotation} are not in {video_dir} and are "
                      f"left out: {shown}", UserWarning, stacklevel=3)
    records = [VideoRecord(v, index[v], caps) for v, caps in captions.items() if v in index]
    return VideoTextDataset(name=name, split=split, root=root, records=records, protocol=protocol,
                            excluded={v: "video file not found" for v in absent})


def _read_csv(path: Path, columns: tuple[str, ...]):
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises several parser errors
        raise AnnotationError(f"cannot parse {path} as CSV: {e}") from None
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise AnnotationError(f"{path} lacks column(s) {lacking}; it has {list(df.columns)}")
    return df


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path} is not valid JSON: {e}") from None


def _check_split(split: str, valid: tuple[str, ...], name: str) -> None:
    if split not in valid:
        raise ValueError(f"{name} has splits {valid}, not {split!r}")


# ------------------------------------------------------------------------------------------------
# readers
# ------------------------------------------------------------------------------------------------

def load_msrvtt(root, split: str, *, train_split: str = "9k", video_dir=None,
                missing: str = "error", name: str = "msrvtt") -> VideoTextDataset:
    """MSR-VTT in CLIP4Clip's packaging.

    Args:
        root: folder with ``MSRVTT_data.json`` and the split CSVs.
        split: ``train`` (all ~20 captions of each listed video) or ``test`` (1k-A: one caption
            per video, from ``MSRVTT_JSFUSION_test.csv``).
        train_split: ``9k`` or ``7k`` (which training list).
        video_dir: folder of the videos (default ``<root>/videos``).
        missing: ``error`` or ``skip`` for captions whose video is not on disk.
        name: dataset name recorded in the result (the synthetic corpus reuses this reader).

    Returns:
        :class:`VideoTextDataset` (protocol ``single`` for test).
    """
    root = Path(root)
    vdir = Path(video_dir) if video_dir else root / "videos"
    if split == "val":
        raise ValueError("MSR-VTT's standard splits (9k/7k train, 1k-A test) have no val split; "
                         "use 'train' or 'test'")
    _check_split(split, ("train", "test"), "MSR-VTT")
    if split == "test":
        path = _need(root / "MSRVTT_JSFUSION_test.csv", "the 1k-A test captions")
        df = _read_csv(path, ("video_id", "sentence"))
        caps: dict[str, list[str]] = {}
        for vid, sent in zip(df["video_id"], df["sentence"]):
            caps.setdefault(vid, []).append(sent)
        return _attach(name, split, root, vdir, caps, "single", path, missing)
    if train_split not in ("9k", "7k"):
        raise ValueError(f"train_split must be '9k' or '7k', not {train_split!r}")
    list_path = _need(root / f"MSRVTT_train.{train_split}.csv", f"the {train_split} training list")
    ids = list(_read_csv(list_path, ("video_id",))["video_id"])
    data_path = _need(root / "MSRVTT_data.json", "all MSR-VTT sentences")
    data = _read_json(data_path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise AnnotationError(f"{data_path} has no 'sentences' list (expected CLIP4Clip's "
                              f"MSRVTT_data.json)")
    wanted = set(ids)
    caps = {v: [] for v in ids}
    for i, s in enumerate(data["sentences"]):
        if not isinstance(s, dict) or "video_id" not in s or "caption" not in s:
            raise AnnotationError(f"{data_path}: sentence #{i} lacks 'video_id' or 'caption'")
        if s["video_id"] in wanted:
            caps[s["video_id"]].append(str(s["caption"]))
    uncaptioned = [v for v, c in caps.items() if not c]
    if uncaptioned:
        raise AnnotationError(f"{len(uncaptioned)} training videos of {list_path} have no sentence in "
                              f"{data_path}: {uncaptioned[:10]}")
    return _attach(name, split, root, vdir, caps, "single", list_path, missing)


def load_msvd(root, split: str, *, video_dir=None, missing: str = "error") -> VideoTextDataset:
    """MSVD in CLIP4Clip's packaging (``raw-captions.pkl`` and ``{split}_list.txt``).

    Every caption of a val/test video is a query (protocol ``multi``).
    """
    root = Path(root)
    _check_split(split, ("train", "val", "test"), "MSVD")
    vdir = Path(video_dir) if video_dir else root / "videos"
    list_path = _need(root / f"{split}_list.txt", f"the MSVD {split} ids")
    ids = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
    pkl = _need(root / "raw-captions.pkl", "MSVD captions")
    try:
        with open(pkl, "rb") as f:
            raw = pickle.load(f)
    except Exception as e:
        raise AnnotationError(f"cannot read {pkl} as a pickle: {e}") from None
    if not isinstance(raw, dict):
        raise AnnotationError(f"{pkl} should hold a dict video id -> captions, not {type(raw).__name__}")
    absent = [v for v in ids if v not in raw]
    if absent:
        raise AnnotationError(f"{len(absent)} ids of {list_path} have no captions in {pkl}: {absent[:10]}")
    caps = {v: [" ".join(c) if isinstance(c, (list, tuple)) else str(c) for c in raw[v]] for v in ids}
    protocol = "single" if split == "train" else "multi"
    return _attach("msvd", split, root, vdir, caps, protocol, list_path, missing)


def load_didemo(root, split: str, *, video_dir=None, missing: str = "error") -> VideoTextDataset:
    """DiDeMo for paragraph-to-video retrieval (CLIP4Clip's ``{split}_data.json``).

    A video's descriptions are joined, in the order of their average start time, into one
    paragraph (protocol ``paragraph``). The video id is the ``video`` file name without extension.
    """
    root = Path(root)
    _check_split(split, ("train", "val", "test"), "DiDeMo")
    vdir = Path(video_dir) if video_dir else root / "videos"
    path = _need(root / f"{split}_data.json", f"DiDeMo {split} descriptions")
    items = _read_json(path)
    if not isinstance(items, list):
        raise AnnotationError(f"{path} should hold a list of items with 'video' and 'description'")
    restrict = None
    list_path = root / f"{split}_list.txt"
    if list_path.is_file():
        restrict = {Path(x.strip()).stem for x in list_path.read_text().splitlines() if x.strip()}
    parts: dict[str, list[tuple[float, str]]] = {}
    for i, it in enumerate(items):
        if not isinstance(it, dict) or "video" not in it or "description" not in it:
            raise AnnotationError(f"{path}: item #{i} lacks 'video' or 'description'")
        vid = Path(str(it["video"])).stem
        if restrict is not None and vid not in restrict:
            continue
        times = it.get("times") or [[0, 0]]
        try:
            start = float(np.mean([t[0] for t in times]))
        except (TypeError, IndexError):
            raise AnnotationError(f"{path}: item #{i} ({vid}) has malformed 'times' {times!r}") from None
        parts.setdefault(vid, []).append((start, str(it["description"]).strip()))
    caps = {v: [" ".join(d for _, d in sorted(p, key=lambda x: x[0]))] for v, p in parts.items()}
    return _attach("didemo", split, root, vdir, caps, "paragraph", path, missing)


def load_dataset(name: str, root, split: str, **kw) -> VideoTextDataset:
    """Read one split of a dataset.

    Args:
        name: ``msrvtt``, ``msvd``, ``didemo`` or ``synthetic`` (the generated corpus, written in
            MSR-VTT's format and read by the same reader).
        root: the annotation folder.
        split: ``train``, ``val`` or ``test`` (as the dataset has them).
        **kw: ``video_dir``, ``missing``, and ``train_split`` (MSR-VTT / synthetic).

    Returns:
        :class:`VideoTextDataset`.
    """
    if name == "msrvtt":
        return load_msrvtt(root, split, **kw)
    if name == "synthetic":
        return load_msrvtt(root, split, name="synthetic", **kw)
    kw.pop("train_split", None)
    if name == "msvd":
        return load_msvd(root, split, **kw)
    if name == "didemo":
        return load_didemo(root, split, **kw)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
