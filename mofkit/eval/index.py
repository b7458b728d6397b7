"""An on-disk embedding index of a gallery of videos, searched by text with a trained run.

``python -m mofkit index FOLDER --run RUN`` embeds every video under ``FOLDER`` once (K frames as
the run was trained to see them: K uniform frames, or N frames through the run's frame
compressor) and writes the index; ``python -m mofkit search INDEX "query"`` then embeds only the
query. Calling ``index`` again embeds only the files that are new or changed (by size and
modification time) and drops the ones that are gone; a large gallery is saved every minute while
it is embedded, and an interrupted call (Ctrl-C) saves what it embedded before it stops, so the
next call goes on where it stopped. A file that cannot be read is listed with its reason, not
fatal.

Decode processes (:mod:`mofkit.data.decoding`, one per core by default, each video opened once)
work ahead of the model, which embeds one batch while they decode the next ones, with the torch
threads they leave.

An index records the model it was built with (a digest of the run's weights, its architecture)
and the frame settings (K, decode size, decoder, compressor); updating it with another run, or
searching it with a model whose weights changed since, is refused: embeddings of two models do
not share a space.

Files in the index folder (default ``FOLDER/.mofkit_index``; hidden, so never indexed itself):

    index.json               format, model, frames, source folder, one entry per video (its row,
                             size, mtime, label) and the files that could not be read (and why)
    embeddings-<g>.npy       (V, D) float32, L2-normalised; ``index.json`` names the current one,
                             written completely (fsynced, renamed) before ``index.json`` is switched
                             to it, so a crash at any point leaves a consistent index

This module reads files and runs the model; it imports only the library below it (data, models,
compress).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mofkit.config import Config
from mofkit.rowstore import write_json_atomic
from mofkit.runfiles import CHECKPOINT_FILE, CONFIG_FILE

FORMAT = 1
INDEX_FILE = "index.json"
DEFAULT_DIR = ".mofkit_index"


class IndexMismatchError(ValueError):
    """The index was built with another model or other frame settings than the run given."""


@dataclass
class IndexReport:
    """What one :func:`build_index` call did."""

    index_dir: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # video id -> why it could not be read
    seconds: float = 0.0

    def summary(self, limit: int = 20) -> str:
        n = len(self.added) + len(self.updated) + len(self.kept)
        lines = [f"{self.index_dir}: {n} videos indexed ({len(self.added)} added, {len(self.updated)} "
                 f"re-embedded, {len(self.kept)} kept, {len(self.removed)} removed, "
                 f"{len(self.skipped)} unreadable) in {self.seconds:.1f} s"]
        lines += [f"  skipped {vid}: {why}" for vid, why in list(self.skipped.items())[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


@dataclass
class Hit:
    """One search result."""

    video_id: str
    path: Path
    score: float
    label: str = ""

    def title(self) -> str:
        return f"{self.video_id}: {self.label}" if self.label else self.video_id


class IndexModel:
    """A trained run, loaded for indexing and search: the retrieval model, its frame compressor
    (if it has one), the preprocessing, and the records an index keeps of them.

    Args:
        run_dir: a finished training run (``config.json``, ``checkpoint.pt``).
        device: where the model runs.
    """

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        from mofkit.compress import compressor_from_config
        from mofkit.data.preprocess import Preprocessor
        from mofkit.device import get_device
        from mofkit.models import create_from_config

        self.run_dir = Path(run_dir).expanduser().resolve()
        ckpt = self.run_dir / CHECKPOINT_FILE
        if not (self.run_dir / CONFIG_FILE).is_file() or not ckpt.is_file():
            raise FileNotFoundError(f"{self.run_dir} is not a finished training run (it needs "
                                    "config.json and checkpoint.pt): train it first")
        cfg = Config.from_dict(json.loads((self.run_dir / CONFIG_FILE).read_text()))
        cfg.model.pretrained = str(ckpt)
        self.cfg = cfg
        self.device = get_device(device)
        self.bundle = create_from_config(cfg.model, self.device)
        self.model = self.bundle.model.eval()
        self.compressor = compressor_from_config(cfg.compress, cfg.data.num_frames)
        if self.compressor is not None:
            if self.compressor.learned:
                blob = torch.load(ckpt, map_location="cpu", weights_only=False)
                if "compressor" not in blob:
                    raise ValueError(f"{ckpt} holds no weights for its compressor {cfg.compress.name!r}")
                self.compressor.load_state_dict(blob["compressor"])
            self.compressor = self.compressor.to(self.device).eval()
        self.pre = Preprocessor(self.bundle.image_size, self.bundle.mean, self.bundle.std)
        self.decoded = cfg.compress.input_frames if self.compressor is not None else cfg.data.num_frames

    @functools.cached_property
    def _record(self) -> dict:
        return self._make_record()

    def record(self) -> dict:
        """What an index keeps of the model (computed once)."""
        return dict(self._record)

    def _make_record(self) -> dict:
        """What an index keeps of the model: a digest of its weights (and the compressor's), its
        architecture and head, and the run folder it came from."""
        h = hashlib.sha1()
        parts = [self.model.state_dict()]
        if self.compressor is not None:
            parts.append(self.compressor.state_dict())
        for sd in parts:
            for name, t in sd.items():
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        m = self.cfg.model
        return {"weights_sha1": h.hexdigest(), "arch": m.arch, "temporal_head": m.temporal_head,
                "run": str(self.run_dir)}

    def frames_record(self) -> dict:
        """The frame settings of the index's embeddings."""
        d = self.cfg.data
        comp = None
        if self.compressor is not None:
            comp = {k: v for k, v in dataclasses.asdict(self.cfg.compress).items()
                    if k in ("name", "input_frames", "mode", "criterion")}
        return {"num_frames": d.num_frames, "decoded_frames": self.decoded, "sampling": "uniform",
                "decode_size": d.decode_size, "backend": d.backend,
                "image_size": self.bundle.image_size, "compressor": comp}

    def job(self, path: Path):
        """The :class:`~mofkit.data.decoding.ReadJob` that decodes a video as the run decodes its
        test videos (N or K uniform frames at the run's decode size, with its decoder)."""
        from mofkit.data.decoding import ReadJob

        return ReadJob(str(path), self.decoded, "uniform", size=self.cfg.data.decode_size,
                       backend=self.cfg.data.backend)

    def decode(self, path: Path) -> torch.Tensor:
        """uint8 (N or K, H, W, 3) frames of one video, as the run decodes its test videos."""
        from mofkit.data.video import read_video

        job = self.job(path)
        frames, _ = read_video(job.path, job.k, job.mode, size=job.size, backend=job.backend)
        return frames

    def embed(self, frames: list[torch.Tensor], batch_size: int = 32) -> np.ndarray:
        """(B, D) float32 embeddings of decoded videos."""
        from mofkit.eval.encode import encode_videos

        x = torch.stack([self.pre.eval(f) for f in frames])  # (B, N or K, 3, S, S)
        comp = self.compressor

        def prepare(t: torch.Tensor) -> torch.Tensor:
            return comp(t) if comp is not None else t

        return encode_videos(self.model, lambda rows: x[rows], len(frames), preprocess=prepare,
                             device=self.device, batch_size=batch_size).numpy()

    def embed_text(self, query: str) -> np.ndarray:
        from mofkit.eval.encode import encode_texts

        return encode_texts(self.model, self.bundle.tokenizer([query]), device=self.device)[0].numpy()


def index_dir_of(path: str | Path) -> Path:
    """The index folder: ``path`` itself if it holds ``index.json``, else ``path/.mofkit_index``."""
    p = Path(path).expanduser()
    return p if (p / INDEX_FILE).is_file() or not (p / DEFAULT_DIR).is_dir() else p / DEFAULT_DIR


def read_index(index_dir: str | Path) -> dict:
    """``index.json`` of an index folder (FileNotFoundError / ValueError with what to do)."""
    path = Path(index_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no video index in {Path(index_dir)} (no {INDEX_FILE}); build one "
                                "with: python -m mofkit index FOLDER --run RUN")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged ({e}); delete the folder and build the index again") from None
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path} has index format {doc.get('format')}, this mofkit reads {FORMAT}; "
                         "build the index again")
    return doc


def _mismatch(what: str, have: dict, want: dict) -> list[str]:
    return [f"{what}.{k}: index {have.get(k)!r}, run {want.get(k)!r}"
            for k in sorted(set(have) | set(want)) if k != "run" and have.get(k) != want.get(k)]


def check_model(doc: dict, model: IndexModel, index_dir: Path) -> None:
    """Raise :class:`IndexMismatchError` if ``model`` is not the model the index was built with."""
    diff = _mismatch("model", doc["model"], model.record()) + _mismatch("frames", doc["frames"],
                                                                          model.frames_record())
    if diff:
        raise IndexMismatchError(
            f"the index in {index_dir} was built with another model or other frame settings than "
            f"the run {model.run_dir} (" + "; ".join(diff) + "): embeddings of two models cannot be "
            "compared. Build a new index for this run (--out another folder), or use the index's "
            f"own run ({doc['model'].get('run')})")


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def build_index(source: str | Path | Sequence[tuple[str, str | Path, str]], run_dir: str | Path,
                index_dir: str | Path | None = None, *, device: str = "auto", batch_size: int = 32,
                save_every: float = 60.0, progress: bool = True,
                model: IndexModel | None = None, workers: int | None = None) -> IndexReport:
    """Build or update the embedding index of a gallery of videos.

    Args:
        source: a folder of videos (searched recursively; ids are paths relative to it, extension
            included), a single video file, or ``(video_id, path, label)`` triples (a dataset split).
        run_dir: the trained run whose model embeds the videos.
        index_dir: where the index lives; None: ``FOLDER/.mofkit_index`` (a folder source only).
        device: where the model runs.
        batch_size: videos embedded per batch.
        save_every: seconds between saves while embedding; an interrupted call (Ctrl-C) also saves
            what it embedded before it stops, and the next call resumes from there.
        progress: a progress bar.
        model: an :class:`IndexModel` of ``run_dir`` already loaded (saves loading it again).
        workers: decode processes working ahead of the model
            (:func:`mofkit.data.decoding.decode_many`); None: one per core (at most 8), none for
            a few videos; 0: decode in this process. While they run, the model's torch threads
            are the cores they leave (:func:`mofkit.data.decoding.encoder_threads`).

    Returns:
        :class:`IndexReport`.

    Raises:
        IndexMismatchError: the index exists and was built with another model or frame settings.
        FileNotFoundError: the folder does not exist or holds no videos.
    """
    from tqdm.auto import tqdm

    from mofkit.data.scan import find_videos
    from mofkit.data.video import VideoReadError

    t0 = time.perf_counter()
    if isinstance(source, (str, Path)):
        src = Path(source).expanduser().resolve()
        items = [(vid, Path(p), "") for vid, p in find_videos(src)]
        if index_dir is None:
            index_dir = (src if src.is_dir() else src.parent) / DEFAULT_DIR
        where = str(src)
    else:
        items = [(str(v), Path(p).resolve(), str(lab)) for v, p, lab in source]
        if index_dir is None:
            raise ValueError("build_index: a list of videos needs an index_dir")
        where = f"{len(items)} listed videos"
    index_dir = Path(index_dir).expanduser().resolve()
    if not items:
        raise FileNotFoundError(f"no video files in {where}")
    model = model if model is not None else IndexModel(run_dir, device)
    if Path(model.run_dir) != Path(run_dir).expanduser().resolve():
        raise ValueError(f"build_index: the model given was loaded from {model.run_dir}, not {run_dir}")
    old = read_index(index_dir) if (index_dir / INDEX_FILE).is_file() else None
    if old is not None:
        check_model(old, model, index_dir)
    old_videos = old["videos"] if old else {}
    old_emb = np.load(index_dir / old["embeddings"], mmap_mode="r") if old else None
    old_skipped = old.get("skipped", {}) if old else {}

    report = IndexReport(index_dir)
    keep_ids, todo = [], []
    for vid, path, label in items:
        stat = _stat(path)
        prev = old_videos.get(vid)
        if prev is not None and prev["size"] == stat["size"] and prev["mtime_ns"] == stat["mtime_ns"] \
                and prev["path"] == str(path):
            keep_ids.append(vid)
        elif vid in old_skipped and {k: old_skipped[vid].get(k) for k in stat} == stat:
            report.skipped[vid] = old_skipped[vid]["reason"]  # unchanged and still unreadable
        else:
            todo.append((vid, path, label, stat, prev is not None))
    present = {vid for vid, _, _ in items}
    report.removed = sorted(v for v in old_videos if v not in present)
    report.kept = keep_ids

    entries = {vid: {**old_videos[vid], "row": i} for i, vid in enumerate(keep_ids)}
    blocks = [np.asarray(old_emb[[old_videos[v]["row"] for v in keep_ids]])] if keep_ids else []
    skipped_doc = {v: old_skipped[v] for v in report.skipped}
    index_dir.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "model": model.record(), "frames": model.frames_record(),
           "source": where, "generation": old["generation"] if old else 0}
    last_save = time.perf_counter()
    frames: list[torch.Tensor] = []
    waiting: list[tuple] = []  # decoded videos of the batch being gathered

    def embed_batch() -> None:
        if not frames:
            return
        emb = model.embed(frames, batch_size)
        blocks.append(emb)  # rows first, then the entries naming them (see _save)
        for vid, path, label, stat, existed in waiting:
            entries[vid] = {"row": len(entries), "path": str(path), "label": label, **stat}
            (report.updated if existed else report.added).append(vid)
        frames.clear()
        waiting.clear()

    from mofkit.data.decoding import decode_many, default_workers, encoder_threads, read_job

    chunk = max(1, min(8, batch_size))
    workers = default_workers(len(todo), chunk) if workers is None else int(workers)
    bar = tqdm(total=len(todo), desc=f"indexing {where}", unit="video", disable=not progress,
               dynamic_ncols=True)
    try:
        with encoder_threads(workers), contextlib.closing(decode_many(
                [model.job(path) for _, path, *_ in todo], read_job, workers=workers, chunk=chunk,
                ahead=2 * batch_size)) as results:
            for done, (item, res) in enumerate(zip(todo, results), 1):
                vid, stat = item[0], item[3]
                if res.ok:
                    frames.append(res.frames)
                    waiting.append(item)
                else:
                    report.skipped[vid] = res.error
                    skipped_doc[vid] = {"reason": res.error, **stat}
                bar.update(1)
                if len(frames) == batch_size or done == len(todo):
                    embed_batch()
                    if time.perf_counter() - last_save > save_every and done < len(todo):
                        _save(index_dir, doc, entries, blocks, skipped_doc)
                        last_save = time.perf_counter()
    except BaseException:
        if entries and (report.added or report.updated):
            _save(index_dir, doc, entries, blocks, skipped_doc)  # what was embedded stays embedded
        raise
    finally:
        bar.close()
    if not entries:
        raise ValueError(f"none of the {len(items)} videos in {where} could be read: " +
                         "; ".join(f"{v}: {r}" for v, r in list(report.skipped.items())[:5]))
    _save(index_dir, doc, entries, blocks, skipped_doc)
    report.seconds = time.perf_counter() - t0
    return report


def _save(index_dir: Path, doc: dict, entries: dict, blocks: list[np.ndarray], skipped: dict) -> None:
    """Write the embeddings as a new generation, then switch ``index.json`` to it.

    A save in the middle of a build holds the videos embedded so far and the kept ones; changed
    videos not yet re-embedded are left out, and embedded again if the call is cut off.
    """
    # Rows beyond the entries (a batch embedded, its entries not yet written when the call was
    # interrupted) are dropped: row i of the file is the video whose entry says row i.
    emb = np.concatenate(blocks)[:len(entries)].astype(np.float32) if blocks else np.zeros((0, 0), np.float32)
    g = int(doc["generation"]) + 1
    name = f"embeddings-{g:06d}.npy"
    tmp = index_dir / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, emb)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, index_dir / name)
    doc.update(generation=g, embeddings=name, dim=int(emb.shape[1]) if emb.ndim == 2 else 0,
               videos=entries, skipped=skipped)
    write_json_atomic(index_dir / INDEX_FILE, doc)
    for p in index_dir.glob("embeddings-*.npy"):
        if p.name != name:
            p.unlink(missing_ok=True)


class VideoIndex:
    """An index folder opened for search (see the module docstring).

    Args:
        index_dir: the index folder, or the gallery folder holding ``.mofkit_index``.
        run_dir: the run to embed queries with; None: the run recorded in the index. Either way its
            weights must be the ones the index was built with.
        device: where the text tower runs.
        model: an :class:`IndexModel` already loaded.
    """

    def __init__(self, index_dir: str | Path, run_dir: str | Path | None = None, *,
                 device: str = "auto", model: IndexModel | None = None):
        self.index_dir = index_dir_of(index_dir)
        self.doc = read_index(self.index_dir)
        run = run_dir if run_dir is not None else self.doc["model"]["run"]
        if model is None and not (Path(run) / CHECKPOINT_FILE).is_file():
            raise FileNotFoundError(f"the index in {self.index_dir} was built with the run {run}, "
                                    "which is not there any more: pass the run (--run) whose weights "
                                    "it was built with")
        self.model = model if model is not None else IndexModel(run, device)
        check_model(self.doc, self.model, self.index_dir)
        self.embeddings = np.load(self.index_dir / self.doc["embeddings"], mmap_mode="r")
        order = sorted(self.doc["videos"].items(), key=lambda kv: kv[1]["row"])
        self.ids = [vid for vid, _ in order]
        self._entries = [e for _, e in order]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def skipped(self) -> dict[str, str]:
        """Videos the index could not read, and why."""
        return {v: e["reason"] for v, e in self.doc.get("skipped", {}).items()}

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` videos whose embeddings are closest to the query's, best first."""
        q = self.model.embed_text(query)
        scores = np.asarray(self.embeddings @ q)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.ids[i], Path(self._entries[i]["path"]), float(scores[i]),
                    self._entries[i].get("label", "")) for i in top]

    def ranked(self, query: str, k: int = 5) -> list[tuple[torch.Tensor, str, float]]:
        """``(frames (K, H, W, 3), title, score)`` of the top ``k``, as
        :func:`mofkit.viz.frames.search_results` draws them."""
        return [(self.frames(h), h.title(), h.score) for h in self.search(query, k)]

    def frames(self, hit: Hit) -> torch.Tensor:
        """uint8 (K, H, W, 3): the K uniform frames of a hit, decoded again to show it."""
        from mofkit.data.video import read_video

        d = self.model.cfg.data
        frames, _ = read_video(hit.path, d.num_frames, "uniform", size=d.decode_size, backend=d.backend)
        return frames
