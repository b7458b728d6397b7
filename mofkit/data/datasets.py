"""Video-text datasets in their public annotation formats, behind one interface.

Every reader returns a :class:`VideoTextDataset`: the records (video id, video file, captions) of
one split, plus the evaluation protocol of that split:

* ``single``: one caption per video, caption i belongs to video i (MSR-VTT 1k-A test);
* ``multi``: several captions per video, every caption is a query (MSVD; MSR-VTT train);
* ``paragraph``: a video's descriptions joined into one paragraph query (DiDeMo).

Formats, as CLIP4Clip distributes them (data/README.md says where to get them and where they go):

* MSR-VTT: ``MSRVTT_data.json`` (all sentences), ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv``
  (training ids, column ``video_id``) and ``MSRVTT_JSFUSION_test.csv`` (1k-A test, columns
  ``key, vid_key, video_id, sentence``). The synthetic corpus is written in this format.
* MSVD: ``raw-captions.pkl`` (video id -> list of tokenised captions) and ``train_list.txt``,
  ``val_list.txt``, ``test_list.txt`` (one id per line).
* DiDeMo: ``{train,val,test}_data.json`` (items with ``video``, ``description``, ``times``) and,
  when present, ``{split}_list.txt`` restricting the videos.

Video files are found by id in ``video_dir`` (default ``<root>/videos``, searched recursively in
one walk) with any of :data:`VIDEO_EXTENSIONS`. Captions of videos that are not on disk raise
:class:`MissingVideosError`, naming the annotation file and the ids; with ``missing="skip"`` they
are dropped with one warning. Nothing here decodes a video: unreadable files are found later (by
``mofkit.data.scan`` or the frame cache) and removed with :meth:`VideoTextDataset.without`.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mofkit.data.synthetic import ensure_corpus

PROTOCOLS = ("single", "multi", "paragraph")
MISSING_POLICIES = ("error", "skip")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")  # in order of preference
MSRVTT_FILES = ("MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv",
                "MSRVTT_JSFUSION_test.csv")
_SHOWN = 10  # ids named in an error or warning message; the count says how many more


class AnnotationError(ValueError):
    """An annotation file is missing or malformed; the message names the file and the problem."""


class MissingVideosError(FileNotFoundError):
    """Captions refer to videos that are not on disk.

    Attributes:
        annotation: the annotation file that names the videos.
        video_dir: the folder that was searched.
        ids: the missing video ids, in annotation order.
    """

    def __init__(self, annotation: str | os.PathLike, video_dir: str | os.PathLike, ids: list[str],
                 total: int | None = None):
        self.annotation, self.video_dir, self.ids = str(annotation), str(video_dir), list(ids)
        where = (f"in {self.video_dir}" if Path(video_dir).is_dir()
                 else f"found: the video folder {self.video_dir} does not exist")
        of = f" of {total}" if total is not None else ""
        super().__init__(f"{len(self.ids)}{of} videos named in {self.annotation} are not {where}: "
                         f"{_list_ids(self.ids)}. Put the video files there (data/README.md shows "
                         f"the layout), point video_dir (data.video_dir) at them, or pass "
                         f"missing='skip' to leave these videos out")


@dataclass
class VideoRecord:
    """One video and its captions in one split."""

    video_id: str  # e.g. "video7010"; the video file's name without extension
    path: Path  # the video file
    captions: list[str]  # all captions of this video in this split (one for MSR-VTT 1k-A test)


@dataclass(repr=False)
class VideoTextDataset:
    """The videos of one split of one dataset, in annotation order."""

    name: str  # msrvtt | msvd | didemo | synthetic
    split: str  # train | val | test
    root: Path  # the folder holding the annotation files
    records: list[VideoRecord]  # one per video, in annotation order
    protocol: str = "single"  # single | multi | paragraph (see the module docstring)
    excluded: dict[str, str] = field(default_factory=dict)  # video id -> why it was left out

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> VideoRecord:
        return self.records[i]

    def record(self, video_id: str) -> VideoRecord:
        """The record of a video, by id (KeyError naming the split when it has none)."""
        for r in self.records:
            if r.video_id == video_id:
                return r
        raise KeyError(f"video {video_id!r} is not in {self.name}/{self.split} ({len(self)} videos)")

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        n_caps = sum(len(r.captions) for r in self.records)
        return (f"VideoTextDataset(name={self.name!r}, split={self.split!r}, root='{self.root}', "
                f"videos={len(self.records)}, captions={n_caps}, protocol={self.protocol!r}, "
                f"excluded={len(self.excluded)})")

    @property
    def video_ids(self) -> list[str]:
        """The video ids in record order."""
        return [r.video_id for r in self.records]

    def caption_pairs(self) -> tuple[list[str], np.ndarray]:
        """All captions, flattened in record order, and the row of each caption's video.

        Returns:
            ``(captions, video_row)``: ``captions[j]`` describes ``records[video_row[j]]``;
            ``video_row`` is an int64 array of ``len(captions)`` and is non-decreasing.
        """
        captions: list[str] = []
        rows: list[int] = []
        for i, r in enumerate(self.records):
            captions.extend(r.captions)
            rows.extend([i] * len(r.captions))
        return captions, np.asarray(rows, dtype=np.int64)

    def without(self, video_ids: Iterable[str], reason: str = "") -> "VideoTextDataset":
        """A copy of this dataset without some videos (e.g. the unreadable ones).

        Args:
            video_ids: ids to leave out; ids that are not in the dataset are ignored.
            reason: why, recorded in the copy's ``excluded`` for each id actually removed.

        Returns:
            A new :class:`VideoTextDataset` (records shared, not copied); this one is unchanged.
        """
        drop = set(video_ids)
        removed = [r.video_id for r in self.records if r.video_id in drop]
        excluded = {**self.excluded, **{v: reason for v in removed}}
        return replace(self, records=[r for r in self.records if r.video_id not in drop],
                       excluded=excluded)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def _list_ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN])
    return shown + (f", ... ({len(ids) - _SHOWN} more)" if len(ids) > _SHOWN else "")


def _check_choice(param: str, value: Any, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"{what}: {param}={value!r} is not valid; choose one of {valid}")


def _need(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path} ({what}). {hint}"
                              f"See data/README.md for where to get it and where it goes")
    return path


def _need_msrvtt(root: Path, file: str, what: str) -> Path:
    return _need(root / file, what,
                 f"CLIP4Clip's MSR-VTT annotation package holds {', '.join(MSRVTT_FILES)}; "
                 f"put them in {root}. ")


def _read_csv(path: Path, columns: tuple[str, ...]):
    import pandas as pd

    try:
        # dtype=str keeps ids such as "0001" intact; keep_default_na stops "NA" becoming NaN
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise AnnotationError(f"cannot parse {path} as CSV: {e}") from None
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise AnnotationError(f"{path} lacks column(s) {lacking}; it has columns {list(df.columns)}")
    return df


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path} is not valid JSON: {e}") from None


def _read_id_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path} should be a text file with one video id per line: {e}") from None
    return [s for s in (line.strip() for line in lines) if s]


class _VideoIndex:
    """Video files under one folder, from one walk: by file stem (video extensions) and by name."""

    def __init__(self, video_dir: Path):
        self.video_dir = video_dir
        self.by_name: dict[str, Path] = {}
        best: dict[str, tuple[int, Path]] = {}
        rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
        if video_dir.is_dir():
            for dirpath, dirnames, filenames in os.walk(video_dir):
                dirnames.sort()  # a fixed walk order makes the choice among duplicate ids repeatable
                for f in sorted(filenames):
                    p = Path(dirpath) / f
                    self.by_name.setdefault(f, p)
                    stem, ext = os.path.splitext(f)
                    r = rank.get(ext.lower())
                    if r is not None and (stem not in best or r < best[stem][0]):
                        best[stem] = (r, p)
        self.by_stem = {stem: p for stem, (_, p) in best.items()}

    def find(self, video_id: str, file_name: str | None = None) -> Path | None:
        p = self.by_stem.get(video_id)
        if p is None and file_name is not None:
            # DiDeMo names files with their original extension (.mov, .3gp, ...), and converted
            # copies often keep it in the stem ("x.mov.mp4")
            p = self.by_name.get(file_name) or self.by_stem.get(file_name)
        return p


def _build(name: str, split: str, root: Path, video_dir: Path, captions: dict[str, list[str]],
           protocol: str, annotation: Path, missing: str,
           file_names: dict[str, str] | None = None) -> VideoTextDataset:
    """Attach video files to ``captions`` (id -> captions, annotation order), honouring ``missing``."""
    if not captions:
        raise AnnotationError(f"{annotation} names no videos for the {name} {split} split")
    index = _VideoIndex(video_dir)
    file_names = file_names or {}
    paths = {v: index.find(v, file_names.get(v)) for v in captions}
    absent = [v for v, p in paths.items() if p is None]
    if absent and (missing == "error" or len(absent) == len(captions)):
        raise MissingVideosError(annotation, video_dir, absent, total=len(captions))
    if absent:
        warnings.warn(f"{len(absent)} of {len(captions)} videos named in {annotation} are not in "
                      f"{video_dir} and are left out of {name}/{split}: {_list_ids(absent)}",
                      UserWarning, stacklevel=3)
    records = [VideoRecord(video_id=v, path=paths[v], captions=caps)
               for v, caps in captions.items() if paths[v] is not None]
    return VideoTextDataset(name=name, split=split, root=root, records=records, protocol=protocol,
                            excluded={v: f"video file not found in {video_dir}" for v in absent})


def _video_dir(root: Path, video_dir: str | os.PathLike | None) -> Path:
    return Path(video_dir) if video_dir is not None else root / "videos"


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------

def load_msrvtt(root: str | os.PathLike, split: str, *, train_split: str = "9k",
                video_dir: str | os.PathLike | None = None, missing: str = "error",
                name: str = "msrvtt") -> VideoTextDataset:
    """MSR-VTT (or the synthetic corpus) in CLIP4Clip's packaging.

    Args:
        root: folder with ``MSRVTT_data.json`` and the split CSVs.
        split: ``train``: every sentence of ``MSRVTT_data.json`` for each video of the training
            list (about 20 per video); ``test``: the 1k-A split, the captions of
            ``MSRVTT_JSFUSION_test.csv`` (one per video). The standard setup has no ``val``.
        train_split: ``9k`` (``MSRVTT_train.9k.csv``) or ``7k`` (``MSRVTT_train.7k.csv``).
        video_dir: folder of the video files; default ``<root>/videos``.
        missing: ``error`` or ``skip`` for captions whose video file is not on disk.
        name: dataset name recorded in the result (``synthetic`` for the generated corpus).

    Returns:
        :class:`VideoTextDataset`, protocol ``single`` when every video has one caption (1k-A
        test), else ``multi``.

    Raises:
        ValueError: unknown ``split``, ``train_split`` or ``missing``.
        AnnotationError: an annotation file is missing or malformed.
        MissingVideosError: captions name videos that are not in ``video_dir``.
    """
    root = Path(root)
    if split == "val":
        raise ValueError("MSR-VTT has no val split in the standard setup (9k or 7k train, 1k-A "
                         "test from MSRVTT_JSFUSION_test.csv); use split='train' or 'test'")
    _check_choice("split", split, ("train", "test"), "MSR-VTT")
    _check_choice("missing", missing, MISSING_POLICIES, "MSR-VTT")
    vdir = _video_dir(root, video_dir)
    caps: dict[str, list[str]] = {}
    if split == "test":
        path = _need_msrvtt(root, "MSRVTT_JSFUSION_test.csv", "the 1k-A test captions")
        df = _read_csv(path, ("video_id", "sentence"))
        for vid, sentence in zip(df["video_id"], df["sentence"]):
            caps.setdefault(vid.strip(), []).append(sentence)
        annotation = path
    else:
        _check_choice("train_split", train_split, ("9k", "7k"), "MSR-VTT")
        annotation = _need_msrvtt(root, f"MSRVTT_train.{train_split}.csv",
                                  f"the {train_split} training video ids")
        ids = [v.strip() for v in _read_csv(annotation, ("video_id",))["video_id"]]
        caps = {v: [] for v in ids}
        data_path = _need_msrvtt(root, "MSRVTT_data.json", "the sentences of all MSR-VTT videos")
        data = _read_json(data_path)
        if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
            raise AnnotationError(f"{data_path} should be an object with a 'sentences' list "
                                  f"(CLIP4Clip's MSRVTT_data.json); found "
                                  f"{type(data).__name__} without it")
        for i, s in enumerate(data["sentences"]):
            if not (isinstance(s, dict) and isinstance(s.get("video_id"), str)
                    and isinstance(s.get("caption"), str)):
                raise AnnotationError(f"{data_path}: sentences[{i}] should be an object with string "
                                      f"fields 'video_id' and 'caption', got {s!r:.120}")
            if s["video_id"] in caps:
                caps[s["video_id"]].append(s["caption"])
        uncaptioned = [v for v, c in caps.items() if not c]
        if uncaptioned:
            raise AnnotationError(f"{len(uncaptioned)} videos of {annotation} have no sentence in "
                                  f"{data_path}: {_list_ids(uncaptioned)}")
    protocol = "single" if all(len(c) == 1 for c in caps.values()) else "multi"
    return _build(name, split, root, vdir, caps, protocol, annotation, missing)


def load_msvd(root: str | os.PathLike, split: str, *, video_dir: str | os.PathLike | None = None,
              missing: str = "error") -> VideoTextDataset:
    """MSVD in CLIP4Clip's packaging: ``raw-captions.pkl`` and ``{split}_list.txt``.

    ``raw-captions.pkl`` is a pickle, which can run code when loaded: read only files you trust.

    Args:
        root: folder with ``raw-captions.pkl`` and the three id lists.
        split: ``train``, ``val`` or ``test`` (1,200 / 100 / 670 videos in the standard split).
        video_dir: folder of the video files (``<id>.avi`` in the original release); default
            ``<root>/videos``.
        missing: ``error`` or ``skip`` for ids whose video file is not on disk.

    Returns:
        :class:`VideoTextDataset` with every caption of each video (tokens joined with spaces),
        protocol ``multi``.

    Raises:
        ValueError: unknown ``split`` or ``missing``.
        AnnotationError: an annotation file is missing or malformed, or a listed id has no captions.
        MissingVideosError: listed videos are not in ``video_dir``.
    """
    root = Path(root)
    _check_choice("split", split, ("train", "val", "test"), "MSVD")
    _check_choice("missing", missing, MISSING_POLICIES, "MSVD")
    list_path = _need(root / f"{split}_list.txt", f"the MSVD {split} video ids, one per line")
    ids = _read_id_list(list_path)
    pkl = _need(root / "raw-captions.pkl", "the MSVD captions, a pickled dict id -> token lists")
    try:
        with open(pkl, "rb") as f:
            raw = pickle.load(f)
    except Exception as e:  # unpickling raises many types on a damaged file
        raise AnnotationError(f"cannot read {pkl} as a pickle: {type(e).__name__}: {e}") from None
    if not isinstance(raw, dict):
        raise AnnotationError(f"{pkl} should hold a dict video id -> list of captions, "
                              f"not a {type(raw).__name__}")
    uncaptioned = [v for v in ids if not raw.get(v)]
    if uncaptioned:
        raise AnnotationError(f"{len(uncaptioned)} ids of {list_path} have no captions in {pkl}: "
                              f"{_list_ids(uncaptioned)}")
    caps: dict[str, list[str]] = {}
    for v in ids:
        entries = raw[v]
        if isinstance(entries, str) or not isinstance(entries, (list, tuple)):
            raise AnnotationError(f"{pkl}: the captions of {v!r} should be a list of captions, "
                                  f"got {type(entries).__name__}")
        caps[v] = [_msvd_caption(c, pkl, v) for c in entries]
    return _build("msvd", split, root, _video_dir(root, video_dir), caps, "multi", list_path, missing)


def _msvd_caption(c: Any, pkl: Path, video_id: str) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, (list, tuple)) and all(isinstance(t, str) for t in c):
        return " ".join(c)
    raise AnnotationError(f"{pkl}: a caption of {video_id!r} should be a list of word tokens "
                          f"(or a string), got {c!r:.80}")


def load_didemo(root: str | os.PathLike, split: str, *, video_dir: str | os.PathLike | None = None,
                missing: str = "error") -> VideoTextDataset:
    """DiDeMo for paragraph-to-video retrieval, from ``{split}_data.json`` as CLIP4Clip uses it.

    Each item of the JSON list describes one moment: ``video`` (file name with its original
    extension), ``description`` and ``times`` (one ``[start, end]`` per annotator, in 5-second
    segments). A video's descriptions are joined with spaces into one paragraph, ordered by the
    average start time of their moments (ties keep file order; CLIP4Clip keeps file order
    throughout). The video id is ``video`` without its extension. When ``{split}_list.txt`` is
    present only the videos it lists (with or without extension) are kept, as in CLIP4Clip.

    Args:
        root: folder with ``{split}_data.json`` (and optionally ``{split}_list.txt``).
        split: ``train``, ``val`` or ``test``.
        video_dir: folder of the video files; default ``<root>/videos``. A video is found as
            ``<id>.<ext>`` for the usual extensions, under its ``video`` name, or as
            ``<video name>.<ext>`` (a converted copy).
        missing: ``error`` or ``skip`` for videos whose file is not on disk.

    Returns:
        :class:`VideoTextDataset`, one paragraph per video, protocol ``paragraph``.

    Raises:
        ValueError: unknown ``split`` or ``missing``.
        AnnotationError: the JSON file is missing or malformed, or the list excludes every item.
        MissingVideosError: described videos are not in ``video_dir``.
    """
    root = Path(root)
    _check_choice("split", split, ("train", "val", "test"), "DiDeMo")
    _check_choice("missing", missing, MISSING_POLICIES, "DiDeMo")
    path = _need(root / f"{split}_data.json", f"the DiDeMo {split} descriptions")
    items = _read_json(path)
    if not isinstance(items, list):
        raise AnnotationError(f"{path} should hold a list of items with 'video', 'description' "
                              f"and 'times', not a {type(items).__name__}")
    list_path = root / f"{split}_list.txt"
    allowed: set[str] | None = None
    if list_path.is_file():
        entries = _read_id_list(list_path)
        allowed = set(entries) | {os.path.splitext(e)[0] for e in entries}
    moments: dict[str, list[tuple[float, str]]] = {}
    file_names: dict[str, str] = {}
    for i, it in enumerate(items):
        if not (isinstance(it, dict) and isinstance(it.get("video"), str)
                and isinstance(it.get("description"), str) and "times" in it):
            raise AnnotationError(f"{path}: item {i} should be an object with string fields "
                                  f"'video' and 'description' and a 'times' list, got {it!r:.160}")
        file_name = Path(it["video"]).name
        vid = os.path.splitext(file_name)[0]
        if allowed is not None and file_name not in allowed and vid not in allowed:
            continue
        moments.setdefault(vid, []).append((_mean_start(it["times"], path, i, vid),
                                            it["description"].strip()))
        file_names.setdefault(vid, file_name)
    if allowed is not None and not moments:
        raise AnnotationError(f"{list_path} lists none of the {len(items)} videos described in "
                              f"{path}; entries should be video names like "
                              f"{Path(items[0]['video']).name if items else 'xxx.mov'!r}")
    caps = {v: [" ".join(d for _, d in sorted(m, key=lambda x: x[0]))] for v, m in moments.items()}
    return _build("didemo", split, root, _video_dir(root, video_dir), caps, "paragraph", path,
                  missing, file_names=file_names)


def _mean_start(times: Any, path: Path, i: int, vid: str) -> float:
    try:
        if not isinstance(times, list) or not times:
            raise TypeError
        return float(np.mean([float(t[0]) for t in times]))
    except (TypeError, ValueError, IndexError, KeyError):
        raise AnnotationError(f"{path}: item {i} ({vid}) should have 'times' as a non-empty list of "
                              f"[start, end] pairs, got {times!r:.80}") from None


# -- the registry: one spec per dataset ----------------------------------------------------------

def _read_msrvtt(root, split, **kw):
    return load_msrvtt(root, split, **kw)


def _read_synthetic(root, split, **kw):
    return load_msrvtt(root, split, name="synthetic", **kw)


def _read_msvd(root, split, *, train_split=None, **kw):  # noqa: ARG001  (run configs always carry it)
    return load_msvd(root, split, **kw)


def _read_didemo(root, split, *, train_split=None, **kw):  # noqa: ARG001
    return load_didemo(root, split, **kw)


@dataclass(frozen=True)
class DatasetSpec:
    """What the kit knows of a dataset: how to read a split, and what the dataset records beyond
    videos and captions. Code that needs a dataset's property asks its spec
    (:func:`dataset_spec`), never its name."""

    name: str
    read: Any  # (root, split, *, video_dir, missing, train_split) -> VideoTextDataset
    generated: bool = False  # the kit writes it (mofkit generate): prepared by generating it, and a
    #   study may vary how (its regimes and corpora); a public dataset is checked for, never fetched
    timelines: bool = False  # each video's captioned events in time: information ceilings, oracle
    #   frames, decisive-event metrics and the attribute caption test
    families: bool = False  # hard-negative families of videos: family batches
    train_splits: tuple[str, ...] = ()  # the training lists data.train_split chooses from


DATASET_SPECS: dict[str, DatasetSpec] = {
    "msrvtt": DatasetSpec("msrvtt", _read_msrvtt, train_splits=("9k", "7k")),
    "msvd": DatasetSpec("msvd", _read_msvd),
    "didemo": DatasetSpec("didemo", _read_didemo),
    "synthetic": DatasetSpec("synthetic", _read_synthetic, generated=True, timelines=True, families=True,
                             train_splits=("9k",)),
}
DATASETS = tuple(DATASET_SPECS)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by name (:data:`DATASET_SPECS`); ValueError naming the known ones."""
    _check_choice("name", name, DATASETS, "dataset_spec")
    return DATASET_SPECS[name]


def load_dataset(name: str, root: str | os.PathLike, split: str, **kw: Any) -> VideoTextDataset:
    """Read one split of a dataset by name.

    Args:
        name: one of :data:`DATASETS`; ``synthetic`` is the generated corpus, written in MSR-VTT's
            format and read by :func:`load_msrvtt` (training list ``9k``).
        root: the annotation folder (``data/msrvtt``, ``data/msvd``, ``data/didemo``, ...).
        split: ``train``, ``val`` or ``test``, as the dataset has them.
        **kw: ``video_dir`` and ``missing`` for every reader; ``train_split`` for MSR-VTT and
            synthetic, ignored by the others (run configs always carry it).

    Returns:
        :class:`VideoTextDataset`.

    Raises:
        ValueError: unknown ``name`` (or a reader's own errors, see each reader).
    """
    _check_choice("name", name, DATASETS, "load_dataset")
    return DATASET_SPECS[name].read(root, split, **kw)


class DataNotFound(FileNotFoundError):
    """A public dataset is not where the config says; the message says what to put where."""


def prepare_dataset(cfg, *, progress: bool = True) -> Path:
    """Put the config's dataset in place: generate the synthetic corpus if needed, or check that a
    public dataset (which cannot be downloaded from here) is where ``cfg.data.root`` says.

    Args:
        cfg: a :class:`mofkit.config.Config`.
        progress: progress bar while generating.

    Returns:
        The dataset root.

    Raises:
        DataNotFound: a public dataset's folder is missing or empty.
    """
    d = cfg.data
    if dataset_spec(d.dataset).generated:
        return ensure_corpus(d.root, cfg.synthetic, progress=progress)
    root = Path(d.root)
    if not root.is_dir() or not any(root.iterdir()):
        raise DataNotFound(f"the {d.dataset} dataset is not in {root}: download it (see data/README.md "
                           f"for its sources and the expected layout), or set DATA_ROOT to where it "
                           f"is; it cannot be downloaded from here")
    return root


def load_splits(cfg) -> tuple[VideoTextDataset, VideoTextDataset]:
    """``(train, test)`` datasets of a config (videos absent from disk are an error)."""
    d = cfg.data
    kw = {"video_dir": d.video_dir, "train_split": d.train_split}
    return load_dataset(d.dataset, d.root, "train", **kw), load_dataset(d.dataset, d.root, "test", **kw)
