"""Shared test helpers: small real mp4 files whose pixels say which frame they are, bad inputs,
and tiny datasets over them.

The ``index`` pattern paints the left half of frame ``i`` grey level ``8 * (i % 32)`` and the right
half ``8 * (i // 32)``, so :func:`decoded_index` reads the frame number back from decoded (even
resized or centre-cropped) pixels for videos of up to 1024 frames. ``gradient`` adds smooth ramps
(for resampling comparisons) and ``noise`` seeded random blocks.

Test files may import the helpers directly (``from conftest import write_video``) or use the
fixtures below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest

PATTERNS = ("index", "gradient", "noise")


def frame_pixels(i: int, size: tuple[int, int], pattern: str = "index", seed: int = 0) -> np.ndarray:
    """The RGB uint8 (H, W, 3) image written as frame ``i``.

    Args:
        i: frame index.
        size: (height, width).
        pattern: ``index`` (two flat halves coding ``i``), ``gradient`` (the index halves in the
            red channel, smooth horizontal and vertical ramps shifted by ``i`` in green and blue;
            chroma subsampling blurs the index code, so :func:`decoded_index` is exact only at the
            native size) or
            ``noise`` (8x8 blocks of seeded random colours).
        seed: seed of the ``noise`` pattern.

    Returns:
        uint8 array (H, W, 3).
    """
    h, w = size
    if pattern == "noise":
        rng = np.random.default_rng([seed, i])
        blocks = rng.integers(0, 256, ((h + 7) // 8, (w + 7) // 8, 3), dtype=np.uint8)
        return np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:h, :w].copy()  # (H, W, 3)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = 8 * (i % 32)
    img[:, w // 2:] = 8 * (i // 32)
    if pattern == "gradient":
        yy, xx = np.mgrid[0:h, 0:w]
        img[..., 1] = xx * 191 // max(1, w - 1) + 2 * (i % 32)  # at most 253: no wrap, no edge
        img[..., 2] = yy * 191 // max(1, h - 1) + 2 * (i % 32)
    elif pattern != "index":
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {PATTERNS}")
    return img


def write_video(path: str | Path, n_frames: int, size: tuple[int, int] = (48, 64), fps: int = 8,
                pattern: str = "index", *, gop: int | None = None, faststart: bool = False,
                crf: int = 0, seed: int = 0) -> Path:
    """Write an H.264 (yuv420p) mp4 with PyAV.

    Args:
        path: target file (parent folders are created).
        n_frames: frames to write.
        size: (height, width); both even (yuv420p).
        fps: frame rate in the container.
        pattern: see :func:`frame_pixels`.
        gop: keyframe interval (None: the encoder's default, one keyframe for short clips).
        faststart: put the index (moov atom) before the data, so a truncated copy still opens.
        crf: x264 quality (0 = lossless in YUV; the RGB round trip still moves levels by about 1).
        seed: seed of the ``noise`` pattern.

    Returns:
        ``path`` as a Path.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    container = av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {})
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    # veryfast keeps B-frames, so decoders have to reorder: frame-exactness is really tested.
    options = {"preset": "veryfast", "crf": str(crf)}
    if gop:
        options["g"] = str(gop)
    stream.options = options
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(frame_pixels(i, size, pattern, seed), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def decoded_index(frame) -> int:
    """The frame number an ``index`` pattern frame carries.

    Args:
        frame: uint8 (H, W, 3) array or tensor, at any size, from the full frame or a centred crop.

    Returns:
        The index ``i`` the frame was written as.
    """
    f = np.asarray(frame)[..., 0].astype(np.float64)
    h, w = f.shape
    rows = slice(h // 4, max(h // 4 + 1, 3 * h // 4))
    left = np.median(f[rows, w // 8: max(w // 8 + 1, 3 * w // 8)])
    right = np.median(f[rows, 5 * w // 8: max(5 * w // 8 + 1, 7 * w // 8)])
    return int(round(left / 8)) + 32 * int(round(right / 8))


def decoded_indices(frames) -> np.ndarray:
    """:func:`decoded_index` of each frame of a (T, H, W, 3) stack; int64 (T,)."""
    return np.array([decoded_index(f) for f in np.asarray(frames)], dtype=np.int64)


def truncate(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst`` (a download cut short)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# ------------------------------------------------------------------------------------------------
# Datasets over test videos
# ------------------------------------------------------------------------------------------------

@dataclass
class _Record:
    video_id: str
    path: Path
    captions: list[str]


@dataclass
class _Dataset:
    """Stand-in with the interface of ``mofkit.data.datasets.VideoTextDataset``."""

    name: str
    split: str
    root: Path
    records: list[_Record]
    protocol: str = "test"
    dropped: dict[str, str] = field(default_factory=dict)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self):
        return iter(self.records)

    @property
    def video_ids(self) -> list[str]:
        return [r.video_id for r in self.records]

    def caption_pairs(self):
        caps, rows = [], []
        for row, r in enumerate(self.records):
            caps += r.captions
            rows += [row] * len(r.captions)
        return caps, np.asarray(rows, dtype=np.int64)

    def without(self, video_ids: Iterable[str], reason: str = "") -> "_Dataset":
        drop = set(video_ids)
        return _Dataset(self.name, self.split, self.root,
                        [r for r in self.records if r.video_id not in drop], self.protocol,
                        {**self.dropped, **{v: reason for v in drop}})


def make_dataset(root: str | Path, paths: dict[str, Path], captions: dict[str, list[str]] | None = None,
                 *, name: str = "tiny", split: str = "train"):
    """A ``VideoTextDataset`` (or, before that module exists, a stand-in with the same fields).

    Args:
        root: the dataset's root folder.
        paths: video id -> video file, in dataset order.
        captions: video id -> captions; default one caption ``"a video <id>"`` per video.
        name, split: dataset name and split.

    Returns:
        A dataset object with ``name, split, root, records, protocol`` and ``without``.
    """
    captions = captions or {}
    try:
        from mofkit.data.datasets import VideoRecord, VideoTextDataset
    except ImportError:
        VideoRecord, VideoTextDataset = _Record, _Dataset
    records = [VideoRecord(video_id=v, path=Path(p), captions=list(captions.get(v, [f"a video {v}"])))
               for v, p in paths.items()]
    return VideoTextDataset(name=name, split=split, root=Path(root), records=records, protocol="test")


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def make_video(tmp_path):
    """Factory: ``make_video(name, n_frames, **write_video_kwargs) -> Path`` inside ``tmp_path``."""

    def make(name: str, n_frames: int, **kwargs) -> Path:
        return write_video(tmp_path / name, n_frames, **kwargs)

    return make


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Good videos shared by a test session (do not modify them).

    ``index40``: 40 frames, 48x64 (H x W), 8 fps, index pattern. ``gop``: 100 frames with a
    keyframe every 8 (seeks across GOPs). ``gradient``: 24 frames, 60x80, gradient pattern.
    ``portrait``: 12 frames, 64x48. ``short``: 3 frames. ``odd48``: 10 frames 32x48, a width whose
    rows decord pads.
    """
    d = tmp_path_factory.mktemp("videos")
    return {
        "index40": write_video(d / "index40.mp4", 40),
        "gop": write_video(d / "gop.mp4", 100, size=(32, 32), gop=8),
        "gradient": write_video(d / "gradient.mp4", 24, size=(60, 80), pattern="gradient"),
        "portrait": write_video(d / "portrait.mp4", 12, size=(64, 48)),
        "short": write_video(d / "short.mp4", 3, size=(32, 32)),
        "odd48": write_video(d / "odd48.mp4", 10, size=(32, 48)),
    }


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    """Inputs every reader must reject with ``VideoReadError``.

    ``empty`` (0 bytes), ``garbage`` (random bytes named .mp4), ``truncated`` (first half of an mp4
    whose index is at the end: does not open), ``truncated_faststart`` (first half of an mp4 whose
    index is at the start: PyAV opens it and reports all frames, the later ones do not decode),
    ``missing`` (no such file), ``directory`` (a folder named .mp4).
    """
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    full = write_video(d / "full.mp4", 40)
    full_fs = write_video(d / "full_fs.mp4", 40, faststart=True)
    (d / "dir.mp4").mkdir()
    return {
        "empty": d / "empty.mp4",
        "garbage": d / "garbage.mp4",
        "truncated": truncate(full, d / "truncated.mp4"),
        "truncated_faststart": truncate(full_fs, d / "truncated_fs.mp4"),
        "missing": d / "missing.mp4",
        "directory": d / "dir.mp4",
    }


@pytest.fixture
def backends() -> list[str]:
    """Video backends installed here."""
    from mofkit.data.video import available_backends

    return available_backends()


def all_backends() -> Sequence[str]:
    """Backends to parametrise over; a missing one is skipped by :func:`need_backend`."""
    return ("decord", "pyav")


def need_backend(backend: str) -> None:
    """Skip the calling test when ``backend`` is not installed."""
    from mofkit.data.video import available_backends

    if backend not in available_backends():
        pytest.skip(f"video backend {backend} not installed")
