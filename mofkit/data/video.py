"""Reading videos: probe and decode sampled frames, with decord or PyAV behind one interface.

Frames come back as a ``torch.uint8`` tensor laid out ``(T, H, W, 3)``: time, height, width, RGB,
the layout decoders produce and images are displayed in. ``mofkit.data.preprocess`` turns it into
model input ``(..., 3, S, S)``.

decord (the reference's decoder) is the default; PyAV is the fallback for platforms where decord has
no wheel. Both decode only what is asked: decord seeks with ``get_batch``, PyAV decodes forward and
stops after the last wanted frame. At native resolution the two agree pixel for pixel; resizing on
read uses each library's own scaler (PyAV: bilinear), so there the two differ by one or two grey
levels on average on smooth content and by more at sharp edges.

Every failure (missing, empty, garbage, truncated file) raises :class:`VideoReadError`, which names
the file and the reason.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mofkit.data.sampling import sample_indices

BACKENDS = ("decord", "pyav")


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded. ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as the decoder sees it."""

    path: str  # the file
    num_frames: int  # decodable frames
    fps: float  # average frame rate
    duration: float  # seconds (num_frames / fps)
    width: int  # pixels
    height: int  # pixels

    def to_dict(self) -> dict:
        return asdict(self)


def available_backends() -> list[str]:
    """Backends importable on this machine, in order of preference."""
    out = []
    for name, module in (("decord", "decord"), ("pyav", "av")):
        try:
            __import__(module)
            out.append(name)
        except ImportError:
            pass
    return out


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    if backend not in available_backends():
        pkg = "decord" if backend == "decord" else "av"
        raise ImportError(f"video backend {backend!r} needs the Python package {pkg!r}, which is not "
                          f"installed; install it or use backend={available_backends()[:1] or ['pyav']}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")


def output_size(width: int, height: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """``(width, height)`` after resizing so that the short side is ``size`` (aspect kept).

    ``size`` may also be an explicit ``(height, width)`` pair, or None to keep the native size.
    """
    if size is None:
        return width, height
    if isinstance(size, (tuple, list)):
        return int(size[1]), int(size[0])
    if width <= height:
        return int(size), max(1, int(round(height * size / width)))
    return max(1, int(round(width * size / height))), int(size)


# ------------------------------------------------------------------------------------------------
# decord
# ------------------------------------------------------------------------------------------------

def _decord_reader(path: Path, width: int = -1, height: int = -1):
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # failures surface as VideoReadError instead
    try:
        return decord.VideoReader(str(path), width=width, height=height, num_threads=1)
    except Exception as e:  # decord raises DECORDError (a RuntimeError) with a C++ trace
        raise VideoReadError(path, f"decord could not open it ({_first_line(e)})") from None


def _decord_probe(path: Path) -> VideoInfo:
    vr = _decord_reader(path)
    n = len(vr)
    if n == 0:
        raise VideoReadError(path, "no decodable frames")
    fps = float(vr.get_avg_fps() or 0.0)
    h, w = vr[0].shape[:2] if n else (0, 0)
    return VideoInfo(str(path), n, fps, n / fps if fps > 0 else 0.0, int(w), int(h))


def _decord_read(path: Path, indices: np.ndarray, size) -> np.ndarray:
    vr = _decord_reader(path)
    n = len(vr)
    if n == 0:
        raise VideoReadError(path, "no decodable frames")
    _check_indices(path, indices, n)
    if size is not None:
        h0, w0 = vr[0].shape[:2]
        w, h = output_size(w0, h0, size)
        if (w, h) != (w0, h0):
            vr = _decord_reader(path, width=w, height=h)
    try:
        return vr.get_batch(list(map(int, indices))).asnumpy()
    except Exception as e:
        if "DECORDArrayCopyFromTo" not in str(e):
            raise VideoReadError(path, f"decord failed while decoding frames ({_first_line(e)})") from None
    return _decord_read_padded(path, vr, indices)


def _decord_read_padded(path: Path, vr, indices: np.ndarray) -> np.ndarray:
    """Per-frame fallback for output widths whose rows decord pads (16, 24, 48, 72 px, ...).

    decord 0.6 pads each RGB row to a multiple of 32 pixels and, when the padded row length is a
    multiple of the width, reports the frame as (H, W, C) with C != 3, so ``get_batch`` refuses to
    copy it. The bytes are intact: reshaped to (H, padded width, 3) and cut to W they are the frame.
    """
    out: dict[int, np.ndarray] = {}
    try:
        for i in sorted(set(int(i) for i in indices)):
            raw = vr[i].asnumpy()
            h, w = raw.shape[:2]
            if raw.size % (h * 3) or raw.size // (h * 3) < w:
                raise VideoReadError(path, f"decord returned a frame of shape {raw.shape} that is not "
                                           f"a padded {h}x{w} RGB image")
            out[i] = raw.reshape(h, raw.size // (h * 3), 3)[:, :w]  # (H, padded W, 3) -> (H, W, 3)
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(path, f"decord failed while decoding frames ({_first_line(e)})") from None
    return np.stack([out[int(i)] for i in indices])


# ------------------------------------------------------------------------------------------------
# PyAV
# ------------------------------------------------------------------------------------------------

def _pyav_open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as e:
        raise VideoReadError(path, f"PyAV could not open it ({_first_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    return container


def _pyav_frames(path: Path, stop: int | None = None):
    """Yield decoded ``av.VideoFrame`` objects in order, up to ``stop`` frames."""
    container = _pyav_open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if stop is not None and i >= stop:
                break
            yield frame
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(path, f"PyAV failed while decoding ({_first_line(e)})") from None
    finally:
        container.close()


def _pyav_probe(path: Path) -> VideoInfo:
    container = _pyav_open(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        width, height = stream.codec_context.width, stream.codec_context.height
        # The header's count when the container has one; else count packets (demuxing, no decoding).
        n = int(stream.frames or 0)
        if n == 0:
            n = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(path, f"PyAV could not read its stream ({_first_line(e)})") from None
    finally:
        container.close()
    if n == 0:
        raise VideoReadError(path, "no decodable frames")
    return VideoInfo(str(path), n, fps, n / fps if fps > 0 else 0.0, int(width), int(height))


def _pyav_read(path: Path, indices: np.ndarray, size) -> np.ndarray:
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:  # nothing to decode; still (0, H, W, 3) like decord, and still a checked file
        info = _pyav_probe(path)
        w, h = output_size(info.width, info.height, size)
        return np.zeros((0, h, w, 3), np.uint8)
    if wanted[0] < 0:
        raise VideoReadError(path, f"negative frame index {wanted[0]}")
    last = wanted[-1]
    got: dict[int, np.ndarray] = {}
    wset = set(wanted)
    n_seen = 0
    for i, frame in enumerate(_pyav_frames(path, stop=last + 1)):
        n_seen = i + 1
        if i in wset:
            w, h = output_size(frame.width, frame.height, size)
            if (w, h) != (frame.width, frame.height):
                frame = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR")
            got[i] = frame.to_ndarray(format="rgb24")
    if n_seen == 0:
        raise VideoReadError(path, "no decodable frames")
    missing = [i for i in wanted if i not in got]
    if missing:
        raise VideoReadError(path, f"frame index {missing[0]} out of range: the video has {n_seen} frames")
    return np.stack([got[int(i)] for i in indices])


# ------------------------------------------------------------------------------------------------
# Public interface
# ------------------------------------------------------------------------------------------------

def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _check_indices(path: Path, indices: np.ndarray, n: int) -> None:
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise VideoReadError(path, f"frame indices must lie in [0, {n}); got {indices.min()}..{indices.max()}")


def probe_video(path: str | os.PathLike, backend: str = "decord") -> VideoInfo:
    """Open a video and report frame count, fps, duration and resolution.

    Args:
        path: the video file.
        backend: ``decord`` or ``pyav``.

    Returns:
        :class:`VideoInfo`.

    Raises:
        VideoReadError: the file is missing, empty or not a decodable video.
    """
    _check_backend(backend)
    path = Path(path)
    _check_file(path)
    return _decord_probe(path) if backend == "decord" else _pyav_probe(path)


def read_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray, *,
                size: int | tuple[int, int] | None = None, backend: str = "decord") -> torch.Tensor:
    """Decode the given frames, and only those.

    Args:
        path: the video file.
        indices: frame indices (may repeat, any order).
        size: short side in pixels to resize to on decode (aspect kept), an explicit
            ``(height, width)``, or None for the native size.
        backend: ``decord`` or ``pyav``.

    Returns:
        ``torch.uint8`` tensor ``(T, H, W, 3)`` in the order of ``indices``.

    Raises:
        VideoReadError: unreadable file, or an index outside the video.
    """
    _check_backend(backend)
    path = Path(path)
    _check_file(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    arr = _decord_read(path, idx, size) if backend == "decord" else _pyav_read(path, idx, size)
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_video(path: str | os.PathLike, k: int, mode: str = "uniform", *,
               rng: np.random.Generator | None = None, stride: int = 1,
               size: int | tuple[int, int] | None = None, backend: str = "decord",
               num_frames: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Sample and decode ``k`` frames (see :func:`mofkit.data.sampling.sample_indices`).

    Args:
        path, size, backend: as in :func:`read_frames`.
        k, mode, rng, stride: as in ``sample_indices``.
        num_frames: the video's frame count if already known (saves a probe).

    Returns:
        ``(frames, indices)``: uint8 ``(T, H, W, 3)`` and the int64 indices decoded.
    """
    n = num_frames if num_frames is not None else probe_video(path, backend).num_frames
    idx = sample_indices(n, k, mode, rng=rng, stride=stride)
    return read_frames(path, idx, size=size, backend=backend), idx
