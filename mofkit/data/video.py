"""Reading videos: probe and decode sampled frames, with decord or PyAV behind one interface.

Frames come back as a ``torch.uint8`` tensor laid out ``(T, H, W, 3)``: time, height, width, RGB,
the layout decoders produce and images are displayed in. ``mofkit.data.preprocess`` turns it into
model input ``(..., 3, S, S)``.

PyAV is the default (:data:`DEFAULT_BACKEND`): opened once, it reads a video at 1.1 to 1.2 times the
CPU time of a bare decode loop, where decord (the reference's decoder) takes 1.5 to 2.2 times,
because its reader demuxes and indexes the whole file when it opens it
(``benchmarks/bench_decode.py``). decord stays available (``DataConfig.backend="decord"``). Both decode only what is asked: decord seeks with ``get_batch``, PyAV decodes forward and
stops after the last wanted frame. At native resolution the two agree pixel for pixel; resizing on
read uses each library's own scaler (bilinear in both), so there the two differ by about one grey
level on average on smooth content and by more at sharp edges.

**One open per video.** :func:`decode_video` (and :func:`read_video`, :func:`read_frames` built on
it) takes the frame count, size, rotation and truncation from the container it decodes from: no
probe first, no frame decoded only to learn the size. PyAV: the frame count comes from the stream
header and index (a file without either, such as Matroska, is demuxed once and decoded from the
kept packets), the size and rotation from the first decoded frame, and each wanted frame is
converted by one single-threaded scaler. decord: the count and rate from the reader, the displayed
size from an empty batch; a resize on read opens a second reader at the output size (decord
fixes it at open). Whether a file is cut short is read from its top-level structure (bytes, no
decoder). :func:`probe_video` remains the full examination (``header_frames`` included) that
``mofkit scan`` reports.

Real-world files, and what both backends do with them:

* **Rotation.** Phones store a portrait video as landscape pixels plus a display matrix (the
  ``tkhd`` matrix of an mp4) that tells players to turn it. Frames come back as players show
  them: turned by the matrix's rotation (90, 180 or 270 degrees clockwise; other angles and
  mirroring are not applied), and :func:`probe_video` reports the displayed width and height.
  Resizing on read applies to the displayed frame (decord turns, then scales; PyAV does the same
  with FFmpeg's ``transpose`` filter, so the two still agree exactly at native size).
* **Files cut short** (an interrupted download or copy). When the container's index survives
  (an mp4 written with ``faststart``, a Matroska/WebM file, which needs none), the file is
  readable up to the cut: :func:`probe_video` reports only the frames whose data lies wholly
  inside the file (``num_frames``), what the header promised (``header_frames``) and
  ``truncated=True``, and every reported frame decodes. decord cannot open such an mp4 (it reads
  every packet when it opens, and stops at the cut one), so truncated files are always probed and
  decoded through PyAV, whichever backend is asked for. When the cut takes the index with it (an
  mp4 whose ``moov`` atom sits at the end), no frame can be located and the file is unreadable.
* **Failures.** Every failure raises :class:`VideoReadError` with one plain sentence as its
  ``reason`` (``file not found``, ``file is empty (0 bytes)``, ``no video stream (audio only)``,
  ``not a video file (unrecognised format)``, ``file is truncated ...``, ``frame index 40 out of
  range: the video has 40 frames``, ...), the same from both backends: when decord fails, the file
  is examined with PyAV to say why. Decoders write to the process's stderr directly (decord's
  C++ log lines, FFmpeg's messages); while they run, file descriptor 2 points at a temporary file,
  so nothing reaches the terminal.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from mofkit.data.sampling import sample_indices

BACKENDS = ("pyav", "decord")
# the kit's decoder unless told otherwise (DataConfig.backend says the same): one open per video
# costs PyAV 1.1 to 1.2 times a bare decode loop, decord 1.5 to 2.2 times (its reader indexes the
# whole file when it opens it); at native size the two give the same pixels
DEFAULT_BACKEND = "pyav"


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded. ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as the decoder sees it and players show it."""

    path: str  # the file
    num_frames: int  # decodable frames (for a truncated file: those wholly inside it)
    fps: float  # average frame rate
    duration: float  # seconds (num_frames / fps)
    width: int  # displayed pixels (after the display matrix's rotation)
    height: int  # displayed pixels
    truncated: bool = False  # the file ends before the data its container describes
    header_frames: int | None = None  # frames the container's header states; None if it states none

    def to_dict(self) -> dict:
        return asdict(self)


def available_backends() -> list[str]:
    """Backends importable on this machine, in order of preference."""
    out = []
    for name, load in (("pyav", lambda: __import__("av")), ("decord", import_decord)):
        try:
            load()
            out.append(name)
        except ImportError:
            pass
    return out


def import_decord():
    """The ``decord`` module, with PyAV's libraries loaded first where PyAV is installed.

    decord's wheel bundles an older FFmpeg; loaded before PyAV's, its symbols win, and PyAV's VP8
    and VP9 encoders then fail to open in that process (``avcodec_open2(...) returned 22``, with
    any options). Loading PyAV first keeps each library with its own FFmpeg; every import of decord
    in the kit goes through here.
    """
    try:
        import av  # noqa: F401  (the load order is the point)
    except ImportError:
        pass
    import decord

    return decord


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
    if path.is_dir():
        raise VideoReadError(path, "it is a directory, not a file")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoReadError(path, "permission denied")


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
# Keeping decoders off the terminal
# ------------------------------------------------------------------------------------------------

_quiet_lock = threading.Lock()
_quiet_state: dict = {"depth": 0}  # shared by nested and concurrent users: one redirection at a time


@contextlib.contextmanager
def silenced_stderr() -> Iterator:
    """Point file descriptor 2 at a temporary file while the block runs; always restore it.

    decord's C++ logger and FFmpeg write to fd 2 directly, past ``sys.stderr``. Nested and
    concurrent blocks share one redirection (the last to leave restores fd 2); whatever other
    threads write to fd 2 meanwhile is held back too.

    Yields:
        A function returning what was written to fd 2 since the block began (text; empty where
        fd 2 cannot be redirected).
    """
    with _quiet_lock:
        st = _quiet_state
        if st["depth"] == 0:
            try:
                sys.stderr.flush()  # what Python printed before belongs on the terminal
            except Exception:
                pass
            try:
                tmp = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(tmp.fileno(), 2)
                st.update(tmp=tmp, saved=saved)
            except OSError:  # no fd 2 (a windowless process): nothing to silence
                st.update(tmp=None, saved=None)
        st["depth"] += 1
        tmp = st["tmp"]
        start = os.fstat(tmp.fileno()).st_size if tmp is not None else 0

    def captured() -> str:
        if tmp is None or not hasattr(os, "pread"):
            return ""
        try:
            n = os.fstat(tmp.fileno()).st_size - start
            return os.pread(tmp.fileno(), max(0, min(n, 1 << 16)), start).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    try:
        yield captured
    finally:
        with _quiet_lock:
            st["depth"] -= 1
            if st["depth"] == 0 and st["tmp"] is not None:
                os.dup2(st["saved"], 2)
                os.close(st["saved"])
                st["tmp"].close()
                st.update(tmp=None, saved=None)


_NOISE = [
    re.compile(r"\[\d{1,2}:\d{2}:\d{2}\]\s*"),  # decord's timestamps
    re.compile(r"(?:[\w.+-]*/)+[\w.+-]+\.(?:cc|cpp|cxx|h|hpp|c):\d+:\s*"),  # C++ source locations
    re.compile(r"Check failed:.*?\(.*? vs\. .*?\)\s*"),  # glog/dmlc assertion text
    re.compile(r"\[Errno -?\d+\]\s*"),  # raw error codes
    re.compile(r"\bERROR\b:?\s*"),
    re.compile(r"\b0x[0-9a-fA-F]+\b"),
]


def _clean(text: str, path: Path | None = None) -> str:
    """A decoder's message as one short plain line: no timestamps, source paths, codes or file path."""
    for line in str(text).strip().splitlines():
        if "Stack trace" in line or line.strip().startswith(("File ", "frame #")):
            continue
        if path is not None:
            line = line.replace(f"'{path}'", "").replace(str(path), "")
        for pat in _NOISE:
            line = pat.sub("", line)
        line = re.sub(r"\s+", " ", line).strip(" :,.'\"")
        if line:
            return line[:160]
    return "no further detail"


# ------------------------------------------------------------------------------------------------
# Container structure: what the file claims, what it holds (read with PyAV, for both backends)
# ------------------------------------------------------------------------------------------------

def _container_kind(path: Path) -> str | None:
    """The container family by its first bytes (``mp4``, ``matroska``, ``avi``, ...), or None."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "asf"
    return None


def _ebml_vint(data: bytes, at: int, keep_marker: bool) -> tuple[int | None, int]:
    """One EBML variable-length integer at ``at``: (value or None for 'unknown', its length)."""
    first = data[at]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or at + length > len(data):
        raise ValueError("bad EBML integer")
    raw = data[at:at + length]
    value = int.from_bytes(raw, "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
        if value == (1 << (7 * length)) - 1:
            return None, length  # all ones: size unknown (live streams)
    return value, length


def _mp4_boxes(path: Path) -> tuple[list[bytes], int | None]:
    """The top-level box types of an mp4/mov file, and where their sizes say the file ends."""
    size = path.stat().st_size
    types, pos = [], 0
    with open(path, "rb") as f:
        for _ in range(1 << 20):  # fragmented files have many boxes; a corrupt one loops no longer
            if pos + 8 > size:
                return types, pos
            f.seek(pos)
            hdr = f.read(16)
            n = int.from_bytes(hdr[:4], "big")
            types.append(hdr[4:8])
            if n == 1 and len(hdr) == 16:
                n = int.from_bytes(hdr[8:16], "big")
            elif n == 0:
                return types, size  # the last box runs to the end of the file
            if n < 8:
                return types, None
            pos += n
    return types, None


def _declared_end(path: Path, kind: str | None) -> int | None:
    """Where the container's top-level structure says the file ends, in bytes; None if it does not say.

    mp4/mov: the sum of the top-level box sizes. Matroska/WebM: the end of the Segment element.
    AVI: the end of the last RIFF chunk. A value beyond the file's size means the file is cut short.
    """
    size = path.stat().st_size
    try:
        if kind == "mp4":
            return _mp4_boxes(path)[1]
        with open(path, "rb") as f:
            if kind == "matroska":
                data = f.read(64)
                idlen = _ebml_vint(data, 0, True)[1]
                hsize, slen = _ebml_vint(data, idlen, False)
                at = idlen + slen + (hsize or 0)
                if len(data) < at + 12:
                    f.seek(at)
                    data, at = f.read(12), 0
                if data[at:at + 4] != b"\x18\x53\x80\x67":  # Segment
                    return None
                seg, slen = _ebml_vint(data, at + 4, False)
                if seg is None:
                    return None
                return f.tell() - len(data) + at + 4 + slen + seg
            if kind == "avi":
                pos = 0
                while pos + 8 <= size:
                    f.seek(pos)
                    hdr = f.read(8)
                    if hdr[:4] != b"RIFF":
                        return pos
                    n = int.from_bytes(hdr[4:8], "little")
                    pos += 8 + n + (n & 1)
                return pos
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class _Layout:
    header_frames: int | None  # the header's frame count
    complete: int | None  # frames wholly inside the file, as a prefix in display order; None: uncounted
    truncated: bool
    inside: bool = False  # the index shows every packet wholly inside the file (no cut to watch for)


def _demux_complete(path: Path, container, stream, truncated: bool) -> tuple[list, int]:
    """Demux the whole stream of an open container (no decoding): its packets up to the cut, and
    how many frames lie wholly inside the file.

    In a truncated file only a prefix in display order is safe: a frame shown after a missing one
    would be decoded under the wrong index. Missing frames come after every present packet in
    decode order, so a present frame shown no later than the last present decode timestamp is
    safe; after that, the prefix goes on while the display timestamps keep their usual spacing (a
    missing frame leaves a gap of about two frame intervals).

    Returns:
        ``(packets, count)``: the packets in decode order (the decoder reads them instead of the
        file, so the file is opened and demuxed once) and the frame count.
    """
    import av

    size = path.stat().st_size
    packets, stamps, durations, last_dts = [], [], [], None
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if _packet_is_cut(packet, size):
                truncated = True
                break
            packets.append(packet)
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:
                continue
            stamps.append(t)
            if packet.duration:
                durations.append(packet.duration)
            if packet.dts is not None:
                last_dts = packet.dts if last_dts is None else max(last_dts, packet.dts)
    except av.error.FFmpegError:
        truncated = True  # the demuxer gave up part way: keep what came before
    rate = stream.average_rate or stream.guessed_rate
    tick = float(1 / (rate * stream.time_base)) if rate and stream.time_base else None
    if not truncated or len(stamps) < 2:
        return packets, len(stamps)
    stamps.sort()
    k = max(1, sum(t <= last_dts for t in stamps)) if last_dts is not None else 1
    step = float(np.median(durations)) if durations else tick or float(np.median(np.diff(stamps)))
    while k < len(stamps) and stamps[k] - stamps[k - 1] <= 1.5 * step:
        k += 1
    return packets, k


def _packet_is_cut(packet, size: int) -> bool:
    pos = packet.pos
    return bool(packet.is_corrupt) or (pos is not None and pos >= 0 and pos + packet.size > size)


def _cut_short(path: Path) -> bool:
    """Whether the container's top-level structure says the file goes on past its end (bytes
    only: no decoder opens the file)."""
    declared = _declared_end(path, _container_kind(path))
    return declared is not None and declared > path.stat().st_size


def _layout(path: Path, container, stream, count: bool) -> tuple[_Layout, list | None]:
    """What the container promises and what the file holds, from the header and the index of the
    open container.

    Args:
        path: the file.
        container, stream: the open PyAV container and its video stream.
        count: also count the frames of files that have no full index when the count is not
            otherwise known (demuxing the whole stream).

    Returns:
        ``(layout, packets)``: where the frames had to be counted by demuxing, the stream's
        packets (decode them instead of demuxing again), else None.
    """
    size = path.stat().st_size
    header = int(stream.frames or 0) or None
    cut = _cut_short(path)
    entries = getattr(stream, "index_entries", None)  # where PyAV offers the index
    if header and entries is not None and len(entries) >= header:  # one entry per frame: mp4, avi
        if not cut and all(e.pos + e.size <= size for e in entries):
            return _Layout(header, header, False, inside=True), None
        packets, n = _demux_complete(path, container, stream, truncated=True)
        return _Layout(header, n, True), packets
    if cut:
        packets, n = _demux_complete(path, container, stream, truncated=True)
        return _Layout(header, n, True), packets
    if header:
        return _Layout(header, header, False), None
    if not count:
        return _Layout(None, None, False), None
    packets, n = _demux_complete(path, container, stream, truncated=False)
    return _Layout(None, n, False), packets


def _open_failure(path: Path, error: Exception) -> str:
    """Why PyAV could not open a file, as one sentence."""
    if isinstance(error, PermissionError):
        return "permission denied"
    kind = _container_kind(path)
    if kind is None:
        return "not a video file (unrecognised format)"
    declared = _declared_end(path, kind)
    cut = declared is not None and declared > path.stat().st_size
    if kind == "mp4" and b"moov" not in _mp4_boxes(path)[0]:
        if cut:
            return "file is truncated: it ends before its index (the moov atom), so no frame can be located"
        return "file has no index (moov atom): the recording or copy was never finished"
    if cut:
        return "file is truncated: it ends before the data its header describes"
    return f"file is corrupt: its {kind} structure cannot be read ({_clean(error, path)})"


# ------------------------------------------------------------------------------------------------
# What one read returns
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodedVideo:
    """Frames of one video decoded in one open, and what that open found out about the video."""

    frames: torch.Tensor  # uint8 (T, H, W, 3) in the order of ``indices``, as players show them
    indices: np.ndarray  # int64 (T,): the frame indices decoded
    num_frames: int | None  # decodable frames (truncated file: those wholly inside it); None: not counted (read_frames of a file whose header states no count)
    fps: float  # average frame rate
    width: int  # displayed width, before any resize on read
    height: int  # displayed height, before any resize on read
    truncated: bool = False  # the file ends before the data its container describes


def _indices_of(indices) -> "callable":
    """A picker returning fixed indices, whatever the frame count."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    return lambda n: idx


def _range_error(path: Path, idx: np.ndarray, n: int | None, layout: _Layout | None = None) -> None:
    if len(idx) and n is not None:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n:
            raise VideoReadError(path, _out_of_range(lo if lo < 0 else hi, n, layout))
    elif len(idx) and int(idx.min()) < 0:
        raise VideoReadError(path, _out_of_range(int(idx.min()), n, layout))


def _out_of_range(index: int, n: int | None, layout: _Layout | None = None) -> str:
    text = f"frame index {index} out of range: the video has {n} frames"
    if layout is not None and layout.truncated:
        text += f" (the file is truncated; its header states {layout.header_frames})" \
            if layout.header_frames else " (the file is truncated)"
    return text


# ------------------------------------------------------------------------------------------------
# PyAV
# ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _pyav_container(path: Path):
    """Open with PyAV and yield ``(container, video stream)``; failures become VideoReadError."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as e:
        raise VideoReadError(path, _open_failure(path, e)) from None
    try:
        if not container.streams.video:
            raise VideoReadError(path, "no video stream (audio only)" if container.streams.audio
                                 else "no video stream")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _pyav_decode(path: Path, container, stream, packets: list | None = None, threads: int = 0,
                 inside: bool = False) -> Iterator:
    """Decoded ``av.VideoFrame`` objects in display order, stopping cleanly where the file is cut.

    Args:
        packets: the stream's packets already demuxed (:func:`_layout`); None demuxes the file.
        threads: decoder threads; 0: FFmpeg's choice (frame and slice threads on every core).
        inside: every packet is known to lie inside the file: PyAV's own loop demuxes and
            decodes, with no check per packet.
    """
    import av

    size = path.stat().st_size
    cc = stream.codec_context
    if threads == 1:
        cc.thread_count = 1  # one thread: no frame-thread hand-offs (workers decode side by side)
    else:
        stream.thread_type = "AUTO"
        cc.thread_count = threads
    i = 0
    if inside and packets is None:
        try:
            for frame in container.decode(stream):
                yield frame
                i += 1
        except av.error.EOFError:
            return
        except av.error.FFmpegError as e:
            raise VideoReadError(path, f"file is corrupt: decoding fails after frame {i} "
                                       f"({_clean(e, path)})") from None
        return
    source = packets if packets is not None else container.demux(stream)
    try:
        for packet in source:
            if packet.size and _packet_is_cut(packet, size):
                break  # a partial packet at the cut: decode what came before, then drain
            for frame in packet.decode():  # the last, empty packet drains the decoder
                yield frame
                i += 1
            if not packet.size:
                return
        for frame in cc.decode(None):
            yield frame
            i += 1
    except av.error.EOFError:
        return
    except av.error.FFmpegError as e:
        raise VideoReadError(path, f"file is corrupt: decoding fails after frame {i} "
                                   f"({_clean(e, path)})") from None


def _display_rotation(frame, stream) -> int:
    """Clockwise degrees (0, 90, 180, 270) a player turns this frame by, from the display matrix."""
    ccw = getattr(frame, "rotation", None)  # PyAV >= 13: from the frame's display matrix
    if ccw is None:  # older FFmpeg exported the clockwise angle as a 'rotate' tag
        try:
            ccw = -float(stream.metadata.get("rotate", 0) or 0)
        except ValueError:
            ccw = 0
    cw = int(round(-float(ccw))) % 360
    return cw if cw in (90, 180, 270) else 0


class _Turn:
    """Turns frames clockwise in their own pixel format (FFmpeg filters, lossless), as decord does."""

    _FILTERS = {90: [("transpose", "clock")], 270: [("transpose", "cclock")],
                180: [("hflip", None), ("vflip", None)]}

    def __init__(self, degrees: int, frame, stream):
        import av.filter

        self.graph = av.filter.Graph()
        nodes = [self.graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                       time_base=stream.time_base)]
        nodes += [self.graph.add(name, arg) for name, arg in self._FILTERS[degrees]]
        nodes.append(self.graph.add("buffersink"))
        self.graph.link_nodes(*nodes)
        self.graph.configure()

    def __call__(self, frame):
        self.graph.push(frame)
        return self.graph.pull()


def _pyav_displayed(path: Path, container, stream, stop: int | None, packets: list | None = None,
                    threads: int = 0, inside: bool = False) -> Iterator:
    """Frames as players show them (turned by the display matrix), up to ``stop`` frames."""
    turn, degrees = None, None
    if stop is not None and stop <= 0:
        return
    for i, frame in enumerate(_pyav_decode(path, container, stream, packets, threads, inside)):
        if degrees is None:
            degrees = _display_rotation(frame, stream)
            turn = _Turn(degrees, frame, stream) if degrees else None
        yield turn(frame) if turn is not None else frame
        if stop is not None and i + 1 >= stop:
            return  # not one frame more than asked


_local = threading.local()


def _reformatter():
    """This thread's RGB converter: one scaler context, reused while frame sizes repeat.

    Called with ``threads=1``: swscale's default (0, automatic) starts a pool of slice threads
    for each new context, which cost 15 times the conversion itself on small frames.
    """
    rgb = getattr(_local, "reformatter", None)
    if rgb is None:
        from av.video.reformatter import VideoReformatter

        rgb = _local.reformatter = VideoReformatter()
    return rgb


def _opened_layout(path: Path, container, stream, count: bool):
    """The frame rate, frame layout and kept packets of an opened stream, or a one-sentence error
    when no frame of it is complete."""
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    try:
        layout, packets = _layout(path, container, stream, count=count)
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(path, f"file is corrupt: its stream cannot be read ({_clean(e, path)})") from None
    if layout.complete == 0:
        if layout.truncated:
            of = f" of its {layout.header_frames}" if layout.header_frames else ""
            raise VideoReadError(path, f"file is truncated: none{of} frames is complete")
        raise VideoReadError(path, "no decodable frames")
    return fps, layout, packets


def _pyav_sample(path: Path, pick, size, count: bool = True, threads: int = 1) -> DecodedVideo:
    """One open: the frame count from the container, then the picked frames, decoding forward up
    to the last of them and converting only those."""
    with _pyav_container(path) as (container, stream):
        fps, layout, packets = _opened_layout(path, container, stream, count)
        idx = np.asarray(pick(layout.complete), dtype=np.int64).reshape(-1)
        _range_error(path, idx, layout.complete, layout)
        rgb = _reformatter()
        wanted = set(idx.tolist())
        stop = int(idx.max()) + 1 if len(idx) else 1  # no index: the first frame still gives the size
        got: dict[int, np.ndarray] = {}
        shown, n_seen = None, 0
        for i, frame in enumerate(_pyav_displayed(path, container, stream, stop, packets, threads,
                                                  layout.inside)):
            n_seen = i + 1
            if shown is None:
                shown = (frame.width, frame.height)
            if i in wanted:
                w, h = output_size(frame.width, frame.height, size)
                if (w, h) != (frame.width, frame.height):
                    out = rgb.reformat(frame, width=w, height=h, format="rgb24", interpolation="BILINEAR",
                                       threads=1)
                else:
                    out = rgb.reformat(frame, format="rgb24", threads=1)
                got[i] = out.to_ndarray()
    if shown is None:
        raise VideoReadError(path, "file is corrupt: no frame decodes")
    missing = [i for i in sorted(wanted) if i not in got]
    if missing:
        raise VideoReadError(path, _out_of_range(missing[0], n_seen, layout))
    if len(idx):
        arr = np.stack([got[i] for i in idx.tolist()])  # (T, H, W, 3)
    else:
        w, h = output_size(shown[0], shown[1], size)
        arr = np.zeros((0, h, w, 3), np.uint8)
    return DecodedVideo(torch.from_numpy(arr), idx, layout.complete, fps, int(shown[0]), int(shown[1]),
                        truncated=layout.truncated)


def _pyav_probe(path: Path) -> VideoInfo:
    with _pyav_container(path) as (container, stream):
        fps, layout, packets = _opened_layout(path, container, stream, True)
        with contextlib.closing(_pyav_displayed(path, container, stream, 1, packets)) as frames:
            first = next(frames, None)
        if first is None:
            raise VideoReadError(path, "file is corrupt: no frame decodes")
        width, height = first.width, first.height
    n = int(layout.complete)
    return VideoInfo(str(path), n, fps, n / fps if fps > 0 else 0.0, int(width), int(height),
                     truncated=layout.truncated, header_frames=layout.header_frames)


def _pyav_layout_or_none(path: Path) -> _Layout | None:
    """The structure check of the decord probe; None where PyAV is missing or cannot open the file."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                return None
            return _layout(path, container, container.streams.video[0], count=False)[0]
    except Exception:
        return None


def _diagnose(path: Path, decord_text: str) -> str:
    """Why decord failed, in the words PyAV's examination of the file gives (the same as backend='pyav')."""
    try:
        _pyav_probe(path)
    except VideoReadError as e:
        return e.reason
    except ImportError:
        pass
    return f"decord cannot decode it ({_clean(decord_text, path)})"


# ------------------------------------------------------------------------------------------------
# decord
# ------------------------------------------------------------------------------------------------

def _decord_reader(path: Path, width: int = -1, height: int = -1):
    decord = import_decord()
    decord.logging.set_level(decord.logging.QUIET)
    try:
        return decord.VideoReader(str(path), width=width, height=height, num_threads=1)
    except Exception as e:  # decord raises DECORDError (a RuntimeError) with a C++ trace
        raise VideoReadError(path, _diagnose(path, str(e))) from None


def _decord_probe(path: Path) -> VideoInfo:
    layout = _pyav_layout_or_none(path)
    if layout is not None and layout.truncated:
        return _pyav_probe(path)
    vr = _decord_reader(path)
    try:
        n = len(vr)
        if n == 0:
            raise VideoReadError(path, "no decodable frames")
        fps = float(vr.get_avg_fps() or 0.0)
        try:
            h, w = vr[0].shape[:2]  # already turned by the display matrix
        except Exception as e:
            raise VideoReadError(path, _diagnose(path, str(e))) from None
    finally:
        del vr  # decord's threads go before stderr comes back
    return VideoInfo(str(path), n, fps, n / fps if fps > 0 else 0.0, int(w), int(h),
                     truncated=False, header_frames=layout.header_frames if layout else None)


def _decord_sample(path: Path, pick, size) -> DecodedVideo:
    """One decord open: the frame count, rate and displayed size from the reader, then the picked
    frames.

    decord reports the size its frames will have (turned by the display matrix) through an empty
    batch, which decodes nothing. It fixes that size when it opens a file, so a resize on read
    opens a second reader at the output size (only when it differs from the native size). A file
    cut short goes to PyAV (decord cannot open it), found from its bytes alone.
    """
    if _cut_short(path):
        return _pyav_sample(path, pick, size)
    decord = import_decord()
    decord.logging.set_level(decord.logging.QUIET)
    try:
        vr = decord.VideoReader(str(path), num_threads=1)
    except Exception as e:  # decord raises DECORDError (a RuntimeError) with a C++ trace
        return _decord_cannot(path, pick, size, str(e))
    try:
        n = len(vr)
        if n == 0:
            raise VideoReadError(path, "no decodable frames")
        fps = float(vr.get_avg_fps() or 0.0)
        idx = np.asarray(pick(n), dtype=np.int64).reshape(-1)
        _range_error(path, idx, n)
        try:
            h0, w0 = vr.get_batch([]).shape[1:3]  # (0, H, W, 3): the displayed size, nothing decoded
        except Exception as e:
            raise VideoReadError(path, _diagnose(path, str(e))) from None
        native = (int(w0), int(h0))
        w, h = output_size(w0, h0, size)
        if not len(idx):
            return DecodedVideo(torch.zeros((0, h, w, 3), dtype=torch.uint8), idx, n, fps, *native)
        if (w, h) != native:
            vr = None  # decord's threads go before the next reader starts its own
            vr = _decord_reader(path, width=w, height=h)
        try:
            arr = vr.get_batch(idx.tolist()).asnumpy()  # (T, H, W, 3)
        except Exception as e:
            if "DECORDArrayCopyFromTo" not in str(e):
                raise VideoReadError(path, _diagnose_read(path, idx, str(e))) from None
            arr = _decord_read_padded(path, vr, idx)
    finally:
        del vr  # decord's threads go before stderr comes back
    return DecodedVideo(torch.from_numpy(np.ascontiguousarray(arr)), idx, n, fps, *native)


def _decord_cannot(path: Path, pick, size, decord_text: str) -> DecodedVideo:
    """decord cannot open the file: PyAV says why, or reads it when it is cut short (readable up to
    the cut, which decord's open stops at), as ``backend='pyav'`` would."""
    try:
        got = _pyav_sample(path, pick, size)
    except ImportError:
        raise VideoReadError(path, f"decord cannot decode it ({_clean(decord_text, path)})") from None
    if got.truncated:
        return got
    raise VideoReadError(path, f"decord cannot decode it ({_clean(decord_text, path)})")


def _diagnose_read(path: Path, indices: np.ndarray, decord_text: str) -> str:
    try:
        _pyav_sample(path, _indices_of(indices), None, count=False)
    except VideoReadError as e:
        return e.reason
    except ImportError:
        pass
    return f"decord cannot decode frames {sorted(set(map(int, indices)))[:8]} ({_clean(decord_text, path)})"


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
        raise VideoReadError(path, _diagnose_read(path, indices, str(e))) from None
    return np.stack([out[int(i)] for i in indices])


# ------------------------------------------------------------------------------------------------
# Public interface
# ------------------------------------------------------------------------------------------------

def probe_video(path: str | os.PathLike, backend: str = DEFAULT_BACKEND) -> VideoInfo:
    """Open a video and report frame count, fps, duration and displayed resolution.

    Reading frames needs no probe first: :func:`decode_video` and :func:`read_video` take the
    frame count from the container they decode from. This is the full examination
    (``header_frames`` included), as ``mofkit scan`` reports it.

    Args:
        path: the video file (``~`` is expanded).
        backend: ``decord`` or ``pyav``.

    Returns:
        :class:`VideoInfo`. For a file cut short whose index survived, ``num_frames`` counts the
        frames wholly inside the file, ``truncated`` is True and ``header_frames`` says how many
        the header promised.

    Raises:
        VideoReadError: the file is missing, empty or not a decodable video; ``reason`` says which
            in one sentence.
    """
    _check_backend(backend)
    path = Path(path).expanduser()
    _check_file(path)
    with silenced_stderr():
        return _decord_probe(path) if backend == "decord" else _pyav_probe(path)


def _read(path, pick, size, backend: str, count: bool = True) -> DecodedVideo:
    _check_backend(backend)
    path = Path(path).expanduser()
    _check_file(path)
    with silenced_stderr():
        return _decord_sample(path, pick, size) if backend == "decord" else _pyav_sample(path, pick, size, count)


def read_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray, *,
                size: int | tuple[int, int] | None = None, backend: str = DEFAULT_BACKEND) -> torch.Tensor:
    """Decode the given frames, and only those, as players show them.

    Args:
        path: the video file (``~`` is expanded).
        indices: frame indices (may repeat, any order).
        size: short side in pixels to resize to on decode (aspect kept), an explicit
            ``(height, width)``, or None for the native size; applies to the displayed frame.
        backend: ``decord`` or ``pyav``.

    Returns:
        ``torch.uint8`` tensor ``(T, H, W, 3)`` in the order of ``indices``.

    Raises:
        VideoReadError: unreadable file, or an index outside the video.
    """
    return _read(path, _indices_of(indices), size, backend, count=False).frames


def decode_video(path: str | os.PathLike, k: int, mode: str = "uniform", *,
                 rng: np.random.Generator | None = None, stride: int = 1,
                 size: int | tuple[int, int] | None = None, backend: str = DEFAULT_BACKEND,
                 num_frames: int | None = None) -> DecodedVideo:
    """Open a video once, take its frame count from the open container, sample ``k`` frames (see
    :func:`mofkit.data.sampling.sample_indices`) and decode only those.

    No separate probe: the frame count, size, rotation and truncation checks come from the
    container the frames are decoded from (see the module docstring for what each backend does).

    Args:
        path, size, backend: as in :func:`read_frames`.
        k, mode, rng, stride: as in ``sample_indices``.
        num_frames: the video's frame count if already known: the frames are sampled from it (and
            still checked against the video).

    Returns:
        :class:`DecodedVideo`: the frames, the indices decoded, the frame count, fps and the
        displayed native size.

    Raises:
        VideoReadError: unreadable file (one sentence saying why), or ``num_frames`` larger than
            the video.
    """
    def pick(n: int) -> np.ndarray:
        return sample_indices(num_frames if num_frames is not None else n, k, mode, rng=rng, stride=stride)

    return _read(path, pick, size, backend)


def read_video(path: str | os.PathLike, k: int, mode: str = "uniform", *,
               rng: np.random.Generator | None = None, stride: int = 1,
               size: int | tuple[int, int] | None = None, backend: str = DEFAULT_BACKEND,
               num_frames: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Sample and decode ``k`` frames in one open (see :func:`decode_video`).

    Args:
        path, size, backend: as in :func:`read_frames`.
        k, mode, rng, stride: as in ``sample_indices``.
        num_frames: the video's frame count if already known.

    Returns:
        ``(frames, indices)``: uint8 ``(T, H, W, 3)`` and the int64 indices decoded.
    """
    got = decode_video(path, k, mode, rng=rng, stride=stride, size=size, backend=backend,
                       num_frames=num_frames)
    return got.frames, got.indices
