"""What notebook 04 shows: the compressed-frame snapshots a MOF run saved, and whole videos.

A MOF run (``mofkit.train.tasks.MOFTask.snapshot``) writes ``<run>/snapshots/``: ``videos.json``,
``epoch_000.npy`` (the start, float32 on the [0, 1] image scale, unclipped) and, after every frame
update, ``epoch_NNN.npy`` (the change since the start, float16). :func:`load_snapshots` adds them
back up; the figures of ``mofkit.viz.frames`` and ``mofkit.viz.widgets`` take what it returns.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_snapshots(folder: str | Path) -> tuple[list[str], np.ndarray, list[int]]:
    """``(video_ids, frames, epochs)`` of a run's ``snapshots`` folder.

    ``frames`` is float32 ``(E, V, K, S, S, 3)`` on the [0, 1] image scale, not rounded or
    clipped, so that changes below one grey level survive (runs of older versions stored uint8,
    read here as floats too).

    Raises:
        FileNotFoundError: the folder holds no snapshot (only MOF runs write them).
    """
    folder = Path(folder)
    files = sorted(folder.glob("epoch_*.npy"))
    if not files:
        raise FileNotFoundError(f"no frame snapshots in {folder}: MOF runs write them "
                                f"(notebook 02_mof trains the config's MOF run)")
    ids = json.loads((folder / "videos.json").read_text())
    epochs = [int(f.stem.split("_")[1]) for f in files]
    arrays = [np.load(f) for f in files]
    if arrays[0].dtype == np.uint8:  # older runs: every snapshot a uint8 image
        return ids, np.stack(arrays).astype(np.float32) / 255, epochs
    start = arrays[0].astype(np.float32)
    return ids, np.stack([start] + [start + a.astype(np.float32) for a in arrays[1:]]), epochs


def whole_video(path: str | Path, size: int, *, backend: str | None = None, n: int = 16) -> np.ndarray:
    """``n`` uniformly spread frames of a video, resized and centre-cropped to ``size`` px (uint8
    ``(n, S, S, 3)``), the way the compressed frames are cropped (``backend``: the kit's default
    decoder unless named)."""
    from mofkit.data.preprocess import Preprocessor
    from mofkit.data.video import DEFAULT_BACKEND, read_video

    backend = backend or DEFAULT_BACKEND
    frames, _ = read_video(path, n, "uniform", size=size, backend=backend)
    pre = Preprocessor(size)
    return pre.to_uint8_image(pre.eval(frames)).numpy()  # (n, S, S, 3)
