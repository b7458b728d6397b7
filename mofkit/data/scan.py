"""Videos checked: one row per video saying whether it decodes, and what it holds.

Readable means the decoder opens the file, reports at least one frame, and decodes the first and
the last reported frame. A file cut short whose index survived is readable up to the cut (see
``mofkit.data.video``): its row says ``truncated`` and, in ``note``, how many of the frames its
header promised are present. Unreadable rows carry the decoder's one-sentence reason in ``error``.

Two sources: a dataset (:func:`scan_dataset`) or a plain folder of video files
(:func:`find_videos`, :func:`scan_folder`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from mofkit.data.datasets import VIDEO_EXTENSIONS
from mofkit.data.video import DEFAULT_BACKEND, VideoReadError, probe_video, read_frames

COLUMNS = ["video_id", "path", "readable", "num_frames", "fps", "duration", "width", "height",
           "truncated", "header_frames", "error", "note"]
_MAX_LISTED = 20  # ids named in the exclusion warning


def find_videos(path: str | os.PathLike) -> list[tuple[str, Path]]:
    """The video files under a folder (recursively), or a single video file.

    Files count as videos by extension (:data:`mofkit.data.datasets.VIDEO_EXTENSIONS`, any case).
    Hidden files and folders (names starting with ``.``, such as the ``._clip.mp4`` files macOS
    leaves on shared drives) are skipped; symbolic links to folders are not followed.

    Args:
        path: a folder or a video file; ``~`` is expanded.

    Returns:
        ``(video_id, path)`` pairs sorted by id. The id is the path relative to the folder, with
        ``/`` separators and the extension (``bikes.mp4`` and ``bikes.mkv`` are two videos); for
        a single file, its name.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the folder holds no video files.
        ValueError: ``path`` is a file without a video extension.
    """
    root = Path(path).expanduser()
    exts = ", ".join(VIDEO_EXTENSIONS)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist (no such folder or file)")
    if not root.is_dir():
        if root.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(f"{root} is not a video file: its extension {root.suffix or '(none)'!r} "
                             f"is not one of {exts}")
        return [(root.name, root)]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                file = Path(folder, name)
                found.append((file.relative_to(root).as_posix(), file))
    if not found:
        raise FileNotFoundError(f"no video files in {root} (searched recursively for {exts})")
    return sorted(found)


def check_video(video_id: str, path, backend: str = DEFAULT_BACKEND) -> dict:
    """Probe one video and decode its first and last frames.

    Args:
        video_id: the video's id (copied into the row).
        path: the file.
        backend: ``decord`` or ``pyav``.

    Returns:
        A dict with the keys of :data:`COLUMNS`; the probe's numbers are kept when only decoding
        failed, and are None when the probe failed.
    """
    row = {"video_id": video_id, "path": str(path), "readable": False, "num_frames": None,
           "fps": None, "duration": None, "width": None, "height": None, "truncated": None,
           "header_frames": None, "error": None, "note": None}
    try:
        info = probe_video(path, backend)
        row.update(num_frames=info.num_frames, fps=info.fps, duration=info.duration,
                   width=info.width, height=info.height, truncated=info.truncated,
                   header_frames=info.header_frames)
        if info.truncated:
            row["note"] = (f"truncated: {info.num_frames} of {info.header_frames} frames present"
                           if info.header_frames else
                           f"truncated: {info.num_frames} frames present, the rest is cut off")
        read_frames(path, [0, info.num_frames - 1], backend=backend)
        row["readable"] = True
    except VideoReadError as e:
        row["error"] = e.reason
    return row


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["readable"] = df["readable"].astype(bool)
    for col in ("num_frames", "width", "height", "header_frames"):
        df[col] = df[col].astype("Int64")  # nullable: None where the probe failed
    for col in ("fps", "duration"):
        df[col] = df[col].astype("float64")
    df["truncated"] = df["truncated"].astype("boolean")
    for col in ("error", "note"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def scan_dataset(dataset, backend: str = DEFAULT_BACKEND, progress: bool = True) -> pd.DataFrame:
    """Check every video of a dataset.

    Args:
        dataset: a ``VideoTextDataset`` (uses each record's ``video_id`` and ``path``).
        backend: ``decord`` or ``pyav``.
        progress: show a tqdm bar.

    Returns:
        DataFrame with one row per video, in dataset order, and the columns :data:`COLUMNS`:
        ``video_id, path, readable, num_frames, fps, duration, width, height`` (displayed
        size), ``truncated, header_frames``, ``error`` (the reason, None for readable videos) and
        ``note`` (what a truncated file still holds).
    """
    from tqdm.auto import tqdm

    rows = [check_video(r.video_id, r.path, backend)
            for r in tqdm(list(dataset), desc=f"scanning {dataset.name}/{dataset.split}", unit="video",
                          disable=not progress, dynamic_ncols=True)]
    return _table(rows)


def scan_folder(path: str | os.PathLike, backend: str = DEFAULT_BACKEND, progress: bool = True) -> pd.DataFrame:
    """Check every video file under a folder (or one file), as :func:`scan_dataset` does a dataset.

    Args:
        path: a folder (searched recursively) or a video file; ``~`` is expanded.
        backend: ``decord`` or ``pyav``.
        progress: show a tqdm bar.

    Returns:
        DataFrame with the columns :data:`COLUMNS`, one row per file of :func:`find_videos`, in
        its order; ``video_id`` is the path relative to the folder.

    Raises:
        FileNotFoundError, ValueError: as :func:`find_videos`.
    """
    from tqdm.auto import tqdm

    videos = find_videos(path)
    rows = [check_video(vid, file, backend)
            for vid, file in tqdm(videos, desc=f"scanning {Path(path).expanduser()}", unit="video",
                                  disable=not progress, dynamic_ncols=True)]
    return _table(rows)


def unreadable(df: pd.DataFrame) -> dict[str, str]:
    """The unreadable videos of a scan.

    Args:
        df: a :func:`scan_dataset` table.

    Returns:
        video id -> reason, in table order.
    """
    bad = df[~df["readable"].astype(bool)]
    return {str(v): str(e) for v, e in zip(bad["video_id"], bad["error"])}


def exclude_unreadable(dataset, df: pd.DataFrame):
    """The dataset without the videos a scan found unreadable; one warning names them.

    Args:
        dataset: the scanned dataset (needs ``without(video_ids, reason)``).
        df: its :func:`scan_dataset` table.

    Returns:
        ``dataset.without(...)``, or ``dataset`` itself when every video is readable.
    """
    bad = unreadable(df)
    present = set(dataset.video_ids)
    bad = {v: r for v, r in bad.items() if v in present}
    if not bad:
        return dataset
    _warn(bad, len(dataset), f"{dataset.name}/{dataset.split}")
    return dataset.without(list(bad), reason="unreadable video (scan)")


def _warn(bad: dict[str, str], total: int, where: str) -> None:
    items = list(bad.items())
    listed = "; ".join(f"{v}: {r}" for v, r in items[:_MAX_LISTED])
    more = f"; ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    warnings.warn(f"{len(items)} of {total} videos of {where} are unreadable and left out: {listed}{more}",
                  RuntimeWarning, stacklevel=3)


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
