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
                crf: int = 0, seed: int = 0, codec: str = "libx264", rotation: int = 0) -> Path:
    """Write a (yuv420p) video with PyAV; the container follows the extension (mp4, mkv, avi, webm).

    Args:
        path: target file (parent folders are created).
        n_frames: frames to write.
        size: (height, width); both even (yuv420p).
        fps: frame rate in the container.
        pattern: see :func:`frame_pixels`.
        gop: keyframe interval (None: the encoder's default, one keyframe for short clips).
        faststart: put the index (moov atom) before the data, so a truncated copy still opens.
        crf: quality (x264: 0 = lossless in YUV, the RGB round trip still moves levels by about 1;
            VP9: 0 = lossless, else its crf; ignored by mpeg4, which keeps its default rate).
        seed: seed of the ``noise`` pattern.
        codec: ``libx264``, ``mpeg4``, ``libvpx-vp9`` or ``libvpx`` (VP8).
        rotation: clockwise degrees (0, 90, 180, 270) a player should turn the video by, written
            as a phone does it: a display matrix in the mp4's ``tkhd`` box
            (:func:`set_display_rotation`).

    Returns:
        ``path`` as a Path.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for options in _encoder_option_sets(codec, crf, gop):
        try:
            _encode(path, n_frames, size, fps, pattern, seed, codec, options, faststart)
            break
        except av.error.FFmpegError as e:  # this build's encoder refuses these options: next set
            errors.append(f"{options}: {e}")
            path.unlink(missing_ok=True)
    else:
        raise RuntimeError(f"{codec} cannot encode here with any of these option sets:\n  "
                           + "\n  ".join(errors))
    if rotation:
        set_display_rotation(path, rotation)
    return path


def _encoder_option_sets(codec: str, crf: int, gop: int | None) -> list[dict[str, str]]:
    """Encoder options to try in turn, the preferred first.

    libvpx builds differ in what they accept (one CI machine's VP9 refused realtime constant
    quality with ``avcodec_open2 ... returned 22``), so VP8/VP9 fall back to the encoder's good
    deadline, then to a plain bit rate, then to its defaults: the tests need a decodable file of
    that codec, not a given quality.
    """
    if codec == "libx264":
        # veryfast keeps B-frames, so decoders have to reorder: frame-exactness is really tested.
        sets = [{"preset": "veryfast", "crf": str(crf)}]
    elif codec in ("libvpx-vp9", "libvpx"):
        q = {"b": "0", "crf": str(max(crf, 4))}
        if codec == "libvpx-vp9" and crf == 0:
            q["lossless"] = "1"
        sets = [{"deadline": "realtime", "cpu-used": "8", **q}, {"deadline": "good", "cpu-used": "4", **q},
                {"b": "2M"}, {}]
    else:
        sets = [{}]
    return [{**o, "g": str(gop)} if gop else o for o in sets]


def _encode(path: Path, n_frames: int, size: tuple[int, int], fps: int, pattern: str, seed: int,
            codec: str, options: dict[str, str], faststart: bool) -> None:
    """One try of :func:`write_video`: encode ``n_frames`` frames with ``options`` into ``path``."""
    import av

    h, w = size
    container = av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {})
    done = False
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = options
        if codec.startswith("libvpx"):
            stream.codec_context.thread_count = 1  # tiny frames; libvpx's thread limits vary by build
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, size, pattern, seed), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        done = True
    finally:
        try:
            container.close()
        except av.error.FFmpegError:
            if done:
                raise  # a failed close after a failed encode adds nothing: the first error stands


def write_audio(path: str | Path, seconds: float = 1.0, codec: str = "aac", rate: int = 8000) -> Path:
    """Write a file with one audio stream (a quiet tone) and no video stream."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate)
    n = 1024
    for k in range(int(seconds * rate) // n):
        t = (np.arange(n) + k * n) / rate
        frame = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                           format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def display_matrix(degrees: int, width: int, height: int) -> list[int]:
    """The mp4 display matrix a phone writes to have a ``width`` x ``height`` picture turned clockwise.

    ISO/IEC 14496-12 ``tkhd``: nine big-endian int32 ``a b u c d v x y w``; ``a b c d x y`` are
    16.16 fixed point, ``u v w`` 2.30. A stored pixel at (px, py) is shown at
    ``(a px + c py + x, b px + d py + y)``; phones add the translation that keeps the picture in
    the positive quadrant (e.g. ``x = height`` for 90 degrees).
    """
    one, w_ = 1 << 16, 1 << 30
    a, b, c, d, x, y = {0: (1, 0, 0, 1, 0, 0), 90: (0, 1, -1, 0, height, 0),
                        180: (-1, 0, 0, -1, width, height), 270: (0, -1, 1, 0, 0, width)}[degrees % 360]
    return [a * one, b * one, 0, c * one, d * one, 0, x * one, y * one, w_]


def set_display_rotation(path: str | Path, degrees: int) -> Path:
    """Patch the display matrix of an mp4's (only) track in place: the bytes a phone writes."""
    import struct

    path = Path(path)
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data.find(b"tkhd", at + 4) < 0, f"{path} should hold exactly one track"
    version = data[at + 4]
    matrix_at = at + 8 + (20 if version == 0 else 32) + 16  # times, ids; reserved, layer, volume
    width, height = (v >> 16 for v in struct.unpack(">II", data[matrix_at + 36:matrix_at + 44]))
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", *display_matrix(degrees, width, height))
    path.write_bytes(bytes(data))
    return path


def read_display_matrix(path: str | Path) -> list[int]:
    """The nine int32 of the (only) track's ``tkhd`` display matrix."""
    import struct

    data = Path(path).read_bytes()
    at = data.find(b"tkhd")
    matrix_at = at + 8 + (20 if data[at + 4] == 0 else 32) + 16
    return list(struct.unpack(">9i", data[matrix_at:matrix_at + 36]))


def player_view(img, matrix: Sequence[int]) -> np.ndarray:
    """What a player shows for stored pixels ``img`` (H, W, C) under an mp4 display matrix.

    Each pixel centre is mapped by the matrix (see :func:`display_matrix`) and lands in the output
    pixel it falls in: the reference for rotation, computed without any decoder.
    """
    img = np.asarray(img)
    h, w = img.shape[:2]
    a, b, _, c, d, _, x, y, _ = matrix
    a, b, c, d, x, y = (v / 65536 for v in (a, b, c, d, x, y))
    py, px = np.mgrid[0:h, 0:w] + 0.5
    dx, dy = a * px + c * py + x, b * px + d * py + y
    out_w, out_h = int(round(abs(a * w + c * h))), int(round(abs(b * w + d * h)))
    out = np.zeros((out_h, out_w) + img.shape[2:], img.dtype)
    seen = np.zeros((out_h, out_w), bool)
    out[np.floor(dy).astype(int), np.floor(dx).astype(int)] = img
    seen[np.floor(dy).astype(int), np.floor(dx).astype(int)] = True
    assert seen.all(), "the matrix does not map the picture onto its display area"
    return out


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
    dst.parent.mkdir(parents=True, exist_ok=True)
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
    """Inputs every reader must reject with ``VideoReadError``, and one it reads only in part.

    ``empty`` (0 bytes), ``garbage`` (random bytes named .mp4), ``truncated`` (first half of an mp4
    whose index is at the end: does not open), ``missing`` (no such file), ``directory`` (a folder
    named .mp4). ``truncated_faststart`` (first half of an mp4 whose index is at the start) is
    readable up to the cut: a few of its 40 frames, reported as truncated.
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


# name -> (file under the folder, what it is); built by ``real_videos``
REAL_VIDEOS = {
    "h264": ("h264/landscape.mp4", "H.264 mp4, 24 frames, 48x64 (H x W)"),
    "h264_wide": ("h264/wide.mp4", "H.264 mp4, 8 frames, 72x128, lossy (crf 23)"),
    "h264_portrait": ("h264/portrait.mp4", "H.264 mp4, 12 frames, 64x36: taller than wide"),
    "mkv": ("clip.mkv", "H.264 in Matroska, 16 frames, lossy"),
    "avi": ("clip_mpeg4.avi", "MPEG-4 part 2 in AVI, 16 frames, the encoder's default rate"),
    "webm": ("clip_vp9.webm", "VP9 in WebM, 16 frames, lossy (crf 30)"),
    "one_frame": ("one_frame.mp4", "H.264 mp4 with a single frame"),
    "rot0": ("phone/rot0.mp4", "H.264 mp4, 6 frames, 48x64, gradient, no display matrix"),
    "rot90": ("phone/rot90.mp4", "rot0's bytes with a display matrix: turn 90 degrees clockwise"),
    "rot180": ("phone/rot180.mp4", "... turn 180 degrees"),
    "rot270": ("phone/rot270.mp4", "... turn 270 degrees clockwise"),
    "audio_only": ("audio_only.mp4", "AAC audio in mp4, no video stream"),
    "cut_index_end": ("cut/index_at_end.mp4", "the first 30% of a 40-frame mp4 whose index is at the end"),
    "cut_faststart": ("cut/faststart.mp4", "the first 30% of a 40-frame mp4 whose index is at the start"),
    "cut_mkv": ("cut/clip.mkv", "the first 30% of a 40-frame Matroska file"),
    "no_index": ("no_index.mp4", "an mp4 whose recording stopped before its index (moov) was written"),
    "empty": ("empty.mp4", "0 bytes"),
    "random": ("random.mp4", "4 KiB of random bytes"),
    "bikes_mp4": ("bikes.mp4", "two videos with one stem: ids keep the extension"),
    "bikes_mkv": ("bikes.mkv", "..."),
}
REAL_OTHER_FILES = ("notes.txt", ".hidden.mp4", ".cache/thumb.mp4", "folder.mp4/inside.txt")  # not videos


@pytest.fixture(scope="session")
def real_videos(tmp_path_factory) -> dict[str, Path]:
    """A folder of videos of the kinds found in the wild (see :data:`REAL_VIDEOS`), made here.

    Every file is a few KiB: the kinds matter, not the sizes. The folder also holds files that are
    not videos (:data:`REAL_OTHER_FILES`: a text file, hidden files, a folder named .mp4). Returns
    name -> path; :func:`real_video_dir` is the folder.
    """
    d = tmp_path_factory.mktemp("real")
    p = {k: d / rel for k, (rel, _) in REAL_VIDEOS.items()}
    write_video(p["h264"], 24)
    write_video(p["h264_wide"], 8, size=(72, 128), pattern="gradient", crf=23)
    write_video(p["h264_portrait"], 12, size=(64, 36))
    write_video(p["mkv"], 16, pattern="gradient", crf=18)
    write_video(p["avi"], 16, codec="mpeg4")
    write_video(p["webm"], 16, pattern="gradient", codec="libvpx-vp9", crf=30)
    write_video(p["one_frame"], 1)
    write_video(p["rot0"], 6, pattern="gradient")
    for deg in (90, 180, 270):
        p[f"rot{deg}"].write_bytes(p["rot0"].read_bytes())
        set_display_rotation(p[f"rot{deg}"], deg)
    write_audio(p["audio_only"])
    p["random"].parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("real_src")
    # gradient at crf 4: frames big enough that 30% of the bytes hold several, with B-frames
    truncate(write_video(tmp / "end.mp4", 40, pattern="gradient", crf=4), p["cut_index_end"], 0.3)
    truncate(write_video(tmp / "fs.mp4", 40, pattern="gradient", crf=4, faststart=True),
             p["cut_faststart"], 0.3)
    truncate(write_video(tmp / "full.mkv", 40, pattern="gradient", crf=4), p["cut_mkv"], 0.3)
    data = (tmp / "end.mp4").read_bytes()
    p["no_index"].write_bytes(data[:data.rindex(b"moov") - 4])  # every box whole, the moov never came
    p["empty"].write_bytes(b"")
    p["random"].write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    p["bikes_mp4"].write_bytes(p["h264"].read_bytes())
    p["bikes_mkv"].write_bytes(p["mkv"].read_bytes())
    for rel in REAL_OTHER_FILES:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(np.random.default_rng(2).integers(0, 256, 512, np.uint8).tobytes())
    return p


@pytest.fixture(scope="session")
def real_video_dir(real_videos) -> Path:
    """The folder :func:`real_videos` wrote."""
    return real_videos["empty"].parent


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


def assert_frames_close(a, b, frame_lr: float, *, atol: float = 2e-4, share: float = 1e-4) -> None:
    """Frame banks of two runs that differ only in summation order (several processes, one).

    Adam's first steps are close to ``frame_lr * sign(g)``: a pixel whose hypergradient sits near
    the frame optimiser's eps (1e-3 of its video's RMS gradient) or near zero can turn rounding
    into a step of another size or sign. All but ``share`` of the pixels agree within ``atol``, and
    none differ by more than two frame steps.
    """
    import torch

    diff = (a - b).abs()
    far = (diff > atol).float().mean().item()
    assert far <= share, f"{far:.2e} of the pixels differ by more than {atol} (allowed {share:.0e})"
    assert diff.max().item() <= 2 * frame_lr * (1 + 1e-3), diff.max().item()
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
