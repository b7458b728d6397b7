"""Decode once, train many times: sampled frames of a whole dataset in one uint8 memory map.

A :class:`FrameCache` holds ``T`` sampled frames of every readable video of one dataset split as a
``uint8`` array ``(V, T, S, S, 3)`` in ``frames.npy`` (opened with ``mmap_mode="r"``, so processes
share the page cache and nothing is loaded until read), next to ``meta.json``: the settings, the
video ids in row order, the frame indices used ``(V, T)``, each source's frame count, fps and size,
the videos left out and why, and a fingerprint of the sources (path, size, mtime_ns of each file).

* One directory per (dataset name, split, root, sampling mode, T, S, backend) under ``cache_dir``.
  :meth:`FrameCache.build` reuses it when the settings and the fingerprint match (a hit decodes
  nothing, only ``stat``s the sources) and rebuilds it when anything differs.
* Builds are atomic: frames and meta go into a temporary directory next to the target, which is
  renamed into place when complete; a lock file serialises concurrent builders, so a second process
  waits and then reuses the first one's cache. A crashed build leaves at most a ``.tmp`` folder.
* Fixed-shape rows: each frame is resized on decode so that its short side is ``S`` (aspect kept)
  and then centre-cropped to ``S x S``. Wide videos lose their sides, as they would in the model's
  centre-crop test transform; training crops are taken inside the square.
* Unreadable videos (:class:`~mofkit.data.video.VideoReadError`) get no row: they are listed in
  ``excluded`` (id -> reason) and named in one warning. Nothing is zero-filled.
  :meth:`FrameCache.dataset_view` returns the dataset without them.

The dense grid that ``rand`` training draws from is a ``uniform`` cache with ``T = dense_frames``;
pick ``K`` of its positions with :func:`mofkit.data.sampling.sample_from_grid`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mofkit.data.decoding import decode_many
from mofkit.data.video import DEFAULT_BACKEND, VideoReadError, available_backends, decode_video
from mofkit.rowstore import RowIndex, new_memmap, read_json_versioned, write_json_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_MODES = ("uniform", "rand")
_MAX_LISTED = 20  # excluded ids named in a warning; the full list is in meta.json


# ------------------------------------------------------------------------------------------------
# Helpers (module level so that worker processes can run them)
# ------------------------------------------------------------------------------------------------

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)) or "_"


def _source_stat(video_id: str, path: Path) -> list:
    try:
        st = os.stat(path)
        return [video_id, str(path), int(st.st_size), int(st.st_mtime_ns)]
    except OSError:
        return [video_id, str(path), None, None]


def _fingerprint(settings: dict, sources: list) -> str:
    blob = json.dumps([CACHE_VERSION, settings, sources], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _center_square(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (T, h, w, 3) with short side ``size`` to (T, size, size, 3)."""
    h, w = frames.shape[1:3]
    if min(h, w) < size:
        raise ValueError(f"decoded frames of {h}x{w} are smaller than the cache size {size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))  # as torchvision rounds
    return frames[:, top:top + size, left:left + size]


def _decode_one(job: tuple) -> tuple:
    """Decode one video's sampled frames in one open; returns ("ok", frames, idx, n, fps, w, h) or
    ("error", reason)."""
    video_id, path, num_frames, mode, size, backend, seed = job
    try:
        rng = np.random.default_rng([seed, zlib.crc32(video_id.encode())]) if mode == "rand" else None
        got = decode_video(path, num_frames, mode, rng=rng, size=size, backend=backend)
        frames = _center_square(got.frames.numpy(), size)  # (T, h, w, 3) -> (T, S, S, 3)
    except VideoReadError as e:
        return ("error", str(e))
    return ("ok", np.ascontiguousarray(frames), got.indices, got.num_frames, got.fps, got.width, got.height)


@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive advisory lock (POSIX); elsewhere builders rely on the atomic rename alone."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _swap_into_place(tmp: Path, target: Path) -> None:
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, trash)  # readers holding the old memmap keep their (unlinked) file
        os.replace(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _warn_excluded(excluded: dict[str, str], total: int, where: str) -> None:
    if not excluded:
        return
    items = list(excluded.items())
    listed = "; ".join(f"{vid}: {reason}" for vid, reason in items[:_MAX_LISTED])
    more = f"; ... and {len(items) - _MAX_LISTED} more (see meta.json)" if len(items) > _MAX_LISTED else ""
    warnings.warn(f"{len(items)} of {total} videos could not be read and are left out of {where}: "
                  f"{listed}{more}", RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------------------

class FrameCache:
    """Decoded, sampled frames of one dataset split; see the module docstring.

    Use :meth:`build` (reuse or create) or :meth:`open` (an existing directory).

    Attributes:
        directory: the cache folder (``frames.npy``, ``meta.json``).
        meta: the parsed ``meta.json``.
        video_ids: ids in row order (readable videos only).
        frame_indices: int64 (V, T), the source frame each cached frame came from.
        excluded: video id -> why it could not be read.
    """

    def __init__(self, directory: str | os.PathLike, meta: dict):
        self.directory = Path(directory)
        self.meta = meta
        self.video_ids: list[str] = list(meta["video_ids"])
        self._index = RowIndex(self.video_ids, self._missing)
        self.frame_indices = np.asarray(meta["frame_indices"], dtype=np.int64).reshape(len(self.video_ids), -1)
        self.excluded: dict[str, str] = dict(meta.get("excluded", {}))
        self._mm: np.ndarray | None = None

    # -- construction ----------------------------------------------------------------------------

    @staticmethod
    def path_for(dataset, *, num_frames: int, mode: str = "uniform", size: int,
                 backend: str = DEFAULT_BACKEND, cache_dir: str | os.PathLike, seed: int = 0) -> Path:
        """The directory :meth:`build` uses for these settings.

        Args:
            dataset, num_frames, mode, size, backend, cache_dir, seed: as in :meth:`build`.

        Returns:
            ``<cache_dir>/<name>-<split>-<mode><T>-<S>px-<backend>-<hash of the root>``.
        """
        root = str(Path(getattr(dataset, "root", "")).resolve())
        tag = hashlib.sha1(root.encode()).hexdigest()[:8]
        rand = f"-seed{seed}" if mode == "rand" else ""
        return Path(cache_dir) / (f"{_safe(dataset.name)}-{_safe(dataset.split)}-{mode}{num_frames}{rand}-"
                                  f"{size}px-{backend}-{tag}")

    @classmethod
    def build(cls, dataset, *, num_frames: int, mode: str = "uniform", size: int,
              backend: str = DEFAULT_BACKEND, cache_dir: str | os.PathLike, progress: bool = True,
              rebuild: bool = False, workers: int | None = None, seed: int = 0) -> "FrameCache":
        """Open the cache of these settings, decoding the dataset first if it is missing or stale.

        Args:
            dataset: a ``VideoTextDataset`` (uses ``name``, ``split``, ``root`` and each record's
                ``video_id`` and ``path``).
            num_frames: ``T``, frames per video.
            mode: ``uniform`` (segment mid-points) or ``rand`` (one fixed random frame per segment,
                drawn from ``seed`` and the video id).
            size: ``S``: frames are resized to short side ``S`` on decode, then centre-cropped to
                ``S x S``.
            backend: ``decord`` or ``pyav``.
            cache_dir: parent folder of all caches.
            progress: show a tqdm bar while decoding.
            rebuild: decode again even if a valid cache exists.
            workers: decode processes (:func:`mofkit.data.decoding.decode_many`); None: one per
                core (at most 8), none for a few videos; 0: decode in this process.
            seed: seed of ``rand`` mode (ignored by ``uniform``).

        Returns:
            The opened :class:`FrameCache`.

        Raises:
            ValueError: bad settings or an empty dataset.
            RuntimeError: no video of the dataset could be read.
        """
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {CACHE_MODES} (fixed T frames per video), got {mode!r}")
        if int(num_frames) < 1 or int(size) < 1:
            raise ValueError(f"num_frames and size must be >= 1, got num_frames={num_frames}, size={size}")
        if len(dataset) == 0:
            raise ValueError(f"dataset {dataset.name}/{dataset.split} has no videos to cache")
        if backend not in available_backends():
            raise ValueError(f"video backend {backend!r} is not available here; installed: {available_backends()}")
        target = cls.path_for(dataset, num_frames=num_frames, mode=mode, size=size, backend=backend,
                              cache_dir=cache_dir, seed=seed)
        settings = {"dataset": str(dataset.name), "split": str(dataset.split),
                    "root": str(Path(getattr(dataset, "root", "")).resolve()), "mode": mode,
                    "num_frames": int(num_frames), "size": int(size), "backend": backend,
                    "seed": int(seed) if mode == "rand" else None}
        sources = [_source_stat(r.video_id, Path(r.path)) for r in dataset]
        counts = Counter(src[0] for src in sources)
        if len(counts) != len(sources):
            dup = [v for v, c in counts.items() if c > 1]
            raise ValueError(f"dataset {dataset.name}/{dataset.split} lists video ids more than once "
                             f"(e.g. {dup[:5]}); each video needs one row")
        fingerprint = _fingerprint(settings, sources)

        if not rebuild and cls._is_valid(target, fingerprint):
            cache = cls.open(target)
            _warn_excluded(cache.excluded, len(dataset), f"the frame cache {target}")
            return cache
        target.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(target.with_name(f".{target.name}.lock")):
            if not rebuild and cls._is_valid(target, fingerprint):  # built meanwhile by another process
                cache = cls.open(target)
            else:
                log.info("building frame cache %s (%s)", target,
                         "rebuild requested" if rebuild else cls._stale_reason(target, fingerprint))
                tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
                try:
                    cls._build_into(tmp, settings, sources, fingerprint, progress=progress, workers=workers)
                    _swap_into_place(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                cache = cls.open(target)
        _warn_excluded(cache.excluded, len(dataset), f"the frame cache {target}")
        return cache

    @classmethod
    def open(cls, path: str | os.PathLike) -> "FrameCache":
        """Open an existing cache directory (no validation against the sources).

        Args:
            path: a directory written by :meth:`build`.

        Returns:
            :class:`FrameCache`.

        Raises:
            FileNotFoundError: ``path`` holds no complete cache.
        """
        path = Path(path)
        meta_file, frames_file = path / "meta.json", path / "frames.npy"
        if not meta_file.is_file() or not frames_file.is_file():
            raise FileNotFoundError(f"{path} is not a frame cache (needs meta.json and frames.npy); "
                                    f"create one with FrameCache.build")
        meta = read_json_versioned(meta_file, "version", CACHE_VERSION, missing=f"{meta_file} not found",
                                   stale="rebuild it (FrameCache.build(..., rebuild=True))")
        cache = cls(path, meta)
        mm = cache.frames
        if mm.shape[0] != len(cache.video_ids):
            raise ValueError(f"frame cache {path}: frames.npy has {mm.shape[0]} rows but meta.json "
                             f"lists {len(cache.video_ids)} videos; rebuild it")
        return cache

    @staticmethod
    def _is_valid(target: Path, fingerprint: str) -> bool:
        try:
            meta = json.loads((target / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        return (meta.get("version") == CACHE_VERSION and meta.get("fingerprint") == fingerprint
                and (target / "frames.npy").is_file())

    @staticmethod
    def _stale_reason(target: Path, fingerprint: str) -> str:
        try:
            meta = json.loads((target / "meta.json").read_text())
        except (OSError, ValueError):
            return "no cache yet"
        if meta.get("version") != CACHE_VERSION:
            return "format version changed"
        return "the video list or a source video changed"

    @classmethod
    def _build_into(cls, tmp: Path, settings: dict, sources: list, fingerprint: str, *,
                    progress: bool, workers: int | None) -> None:
        from tqdm.auto import tqdm

        t0 = time.time()
        v_total, t, s = len(sources), settings["num_frames"], settings["size"]
        jobs = [(vid, path, t, settings["mode"], s, settings["backend"], settings["seed"] or 0)
                for vid, path, *_ in sources]
        full = tmp / "frames.full.npy"
        mm = new_memmap(full, np.uint8, (v_total, t, s, s, 3))
        ids, indices, counts, fps, sizes, excluded = [], [], [], [], [], {}
        # the bar counts each result as it arrives and closes at the total (a bar wrapped around the
        # results inside zip(jobs, ...) was never asked for its end, and closed one short: a red
        # "63/64" in a notebook, as if a video had failed)
        with contextlib.closing(decode_many(jobs, _decode_one, workers=workers, chunk=4)) as results, \
                tqdm(total=v_total, disable=not progress, unit="video", dynamic_ncols=True,
                     desc=f"decoding {settings['dataset']}/{settings['split']} "
                          f"{settings['mode']}{t} at {s}px") as bar:
            for (vid, *_), res in zip(jobs, results):
                bar.update(1)
                if res[0] == "error":
                    excluded[vid] = res[1]
                    continue
                _, frames, idx, n, f, w, h = res
                mm[len(ids)] = frames  # readable videos fill rows 0 .. V-1 in dataset order
                ids.append(vid)
                indices.append(idx.tolist())
                counts.append(int(n))
                fps.append(float(f))
                sizes.append([int(w), int(h)])
        if not ids:
            first = next(iter(excluded.items()), ("", ""))
            raise RuntimeError(f"no video of {settings['dataset']}/{settings['split']} could be read "
                               f"({len(excluded)} tried); first failure: {first[0]}: {first[1]}")
        mm.flush()
        if len(ids) == v_total:
            del mm
            os.replace(full, tmp / "frames.npy")
        else:  # drop the unused tail rows: copy the readable ones into an array of the right length
            out = new_memmap(tmp / "frames.npy", np.uint8, (len(ids), t, s, s, 3))
            step = max(1, (256 << 20) // max(1, t * s * s * 3))  # ~256 MB per copy
            for a in range(0, len(ids), step):
                b = min(a + step, len(ids))
                out[a:b] = mm[a:b]
            out.flush()
            del out, mm
            full.unlink()
        meta = {"version": CACHE_VERSION, "settings": settings, "fingerprint": fingerprint,
                "shape": [len(ids), t, s, s, 3], "dtype": "uint8", "video_ids": ids,
                "frame_indices": indices, "num_source_frames": counts, "fps": fps,
                "source_size": sizes, "excluded": excluded, "sources": sources,
                "build_seconds": round(time.time() - t0, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json_atomic(tmp / "meta.json", meta)

    # -- pickling: worker processes reopen the memory map instead of copying it -------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def frames(self) -> np.ndarray:
        """The read-only uint8 memory map (V, T, S, S, 3)."""
        if self._mm is None:
            self._mm = np.load(self.directory / "frames.npy", mmap_mode="r")
        return self._mm

    @property
    def settings(self) -> dict:
        """Dataset, split, root, mode, num_frames, size, backend, seed of this cache."""
        return dict(self.meta["settings"])

    @property
    def num_frames(self) -> int:
        """``T``: frames per video."""
        return int(self.meta["settings"]["num_frames"])

    @property
    def size(self) -> int:
        """``S``: the side of the square frames."""
        return int(self.meta["settings"]["size"])

    @property
    def mode(self) -> str:
        """Sampling mode the frames were taken with."""
        return str(self.meta["settings"]["mode"])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(V, T, S, S, 3)``."""
        return tuple(self.meta["shape"])

    @property
    def num_source_frames(self) -> np.ndarray:
        """int64 (V,): frames in each source video."""
        return np.asarray(self.meta["num_source_frames"], dtype=np.int64)

    @property
    def fps(self) -> np.ndarray:
        """float64 (V,): each source video's frame rate."""
        return np.asarray(self.meta["fps"], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._index

    def __repr__(self) -> str:
        return (f"FrameCache({self.directory}, videos={len(self)}, excluded={len(self.excluded)}, "
                f"T={self.num_frames}, S={self.size}, mode={self.mode})")

    def row_of(self, video_id: str) -> int:
        """Row of a video.

        Args:
            video_id: the id.

        Returns:
            Its row in :attr:`frames`.

        Raises:
            KeyError: the video is not in the cache (the message says if it was excluded, and why).
        """
        return self._index.row_of(video_id)

    def _missing(self, video_id: str) -> str:
        if video_id in self.excluded:
            return (f"video {video_id!r} was excluded from frame cache {self.directory}: "
                    f"{self.excluded[video_id]}; use cache.dataset_view(dataset)")
        return (f"video {video_id!r} is not in frame cache {self.directory} ({len(self)} videos of "
                f"{self.meta['settings']['dataset']}/{self.meta['settings']['split']})")

    def rows_of(self, video_ids: Iterable[str]) -> np.ndarray:
        """int64 rows of several videos (see :meth:`row_of`)."""
        return self._index.rows_of(video_ids)

    def __getitem__(self, key: str | int) -> torch.Tensor:
        """All ``T`` frames of one video, by id (or by row number), as uint8 (T, S, S, 3)."""
        row = self.row_of(key) if isinstance(key, str) else int(key)
        return torch.from_numpy(np.array(self.frames[row]))

    def rows(self, row_indices: Sequence[int] | np.ndarray | torch.Tensor,
             positions: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Frames of several rows, read in one gather.

        Args:
            row_indices: B rows (any order, repeats allowed).
            positions: which of the ``T`` cached frames to take: None (all), a (K,) array shared by
                all rows, or a (B, K) array with one list per row.

        Returns:
            uint8 tensor (B, K, S, S, 3) (K = T when ``positions`` is None).
        """
        rows = np.asarray(row_indices, dtype=np.int64).reshape(-1)
        if positions is None:
            out = self.frames[rows] if len(rows) else np.zeros((0, *self.shape[1:]), np.uint8)
        else:
            pos = np.asarray(positions, dtype=np.int64)
            if pos.ndim == 1:
                pos = np.broadcast_to(pos, (len(rows), len(pos)))
            if pos.shape[0] != len(rows):
                raise ValueError(f"positions has {pos.shape[0]} rows for {len(rows)} videos; pass (K,) or (B, K)")
            out = self.frames[rows[:, None], pos]  # (B, K, S, S, 3)
        return torch.from_numpy(np.ascontiguousarray(out))

    def dataset_view(self, dataset):
        """The dataset without the videos this cache excluded.

        Args:
            dataset: the dataset the cache was built from (or a subset of it).

        Returns:
            ``dataset.without(excluded ids)`` (the dataset itself when nothing was excluded).

        Raises:
            KeyError: the dataset has videos that are neither cached nor excluded (another dataset).
        """
        ids = list(dataset.video_ids)
        unknown = [v for v in ids if v not in self._index and v not in self.excluded]
        if unknown:
            raise KeyError(f"{len(unknown)} videos of {dataset.name}/{dataset.split} are not in frame cache "
                           f"{self.directory} (e.g. {unknown[:5]}); build the cache from this dataset")
        drop = [v for v in ids if v in self.excluded]
        if not drop:
            return dataset
        return dataset.without(drop, reason="unreadable video (left out of the frame cache)")


def cache_summary(cache: FrameCache) -> dict[str, Any]:
    """A small dict for logs and notebooks: path, videos, excluded, T, S, MB on disk, build time.

    Args:
        cache: an opened cache.

    Returns:
        dict with ``path, videos, excluded, num_frames, size, mode, backend, megabytes, build_seconds``.
    """
    return {"path": str(cache.directory), "videos": len(cache), "excluded": len(cache.excluded),
            "num_frames": cache.num_frames, "size": cache.size, "mode": cache.mode,
            "backend": cache.settings["backend"],
            "megabytes": round((cache.directory / "frames.npy").stat().st_size / 2**20, 2),
            "build_seconds": cache.meta.get("build_seconds")}
