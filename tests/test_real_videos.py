"""Videos of the kinds found in the wild: containers and codecs, phone rotation, files cut short,
files that are not videos. Both backends must agree on what they read, and fail with one plain
sentence, the same from both, printing nothing.

Measured agreement of decord and PyAV at native size (all frames of each fixture): identical bytes
for H.264 (mp4, mkv; lossless and lossy), MPEG-4 part 2 (avi), VP9 (webm), the rotated mp4s and the
truncated files. Resized, they differ by about one grey level on average (different scalers).
"""
import re

import numpy as np
import pytest
import torch

from conftest import (REAL_OTHER_FILES, REAL_VIDEOS, all_backends, decoded_indices, display_matrix,
                      need_backend, player_view, read_display_matrix)
from mofkit.data.video import (VideoReadError, available_backends, probe_video, read_frames,
                               read_video, silenced_stderr)

READABLE = {  # name -> (frames, height, width) as written
    "h264": (24, 48, 64), "h264_wide": (8, 72, 128), "h264_portrait": (12, 64, 36),
    "mkv": (16, 48, 64), "avi": (16, 48, 64), "webm": (16, 48, 64), "one_frame": (1, 48, 64),
}
HEADER_COUNTS = {"mkv": None, "webm": None}  # Matroska and WebM state no frame count
UNREADABLE = {  # name -> what the reason must say
    "audio_only": "no video stream",
    "cut_index_end": "file is truncated: it ends before its index",
    "no_index": "file has no index (moov atom)",
    "empty": "file is empty",
    "random": "not a video file",
    "missing": "file not found",
    "directory": "directory",
}
NOISE = re.compile(r"\[\d\d:\d\d:\d\d\]|\.cc:\d|\.h:\d|Check failed|Errno|0x[0-9a-f]{4}|/github/|Traceback")


@pytest.fixture(params=all_backends())
def backend(request):
    need_backend(request.param)
    return request.param


def both():
    if len(available_backends()) < 2:
        pytest.skip("needs both decord and PyAV")


def _path(real_videos, tmp_path, name):
    if name == "missing":
        return tmp_path / "no_such_video.mp4"
    if name == "directory":
        (tmp_path / "a_folder.mp4").mkdir()
        return tmp_path / "a_folder.mp4"
    return real_videos[name]


# ------------------------------------------------------------------------------------------------
# Containers and codecs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(READABLE))
def test_formats_probe_and_decode(real_videos, backend, name, capfd):
    n, h, w = READABLE[name]
    info = probe_video(real_videos[name], backend)
    assert (info.num_frames, info.height, info.width) == (n, h, w)
    assert info.fps == pytest.approx(8.0) and not info.truncated
    assert info.header_frames == HEADER_COUNTS.get(name, n)
    frames = read_frames(real_videos[name], range(n), backend=backend)
    assert tuple(frames.shape) == (n, h, w, 3)
    assert decoded_indices(frames).tolist() == list(range(n))  # every frame is the right one
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("name", list(READABLE) + ["rot90", "rot180", "rot270", "cut_faststart",
                                                  "cut_mkv"])
def test_backends_agree_exactly_at_native_size(real_videos, name):
    both()
    a, b = probe_video(real_videos[name], "decord"), probe_video(real_videos[name], "pyav")
    assert a == b  # frame count, fps, displayed size, truncation: the same VideoInfo
    fa = read_frames(real_videos[name], range(a.num_frames), backend="decord")
    fb = read_frames(real_videos[name], range(b.num_frames), backend="pyav")
    assert torch.equal(fa, fb), f"max difference {(fa.int() - fb.int()).abs().max().item()}"


def test_one_frame_video(real_videos, backend):
    frames, idx = read_video(real_videos["one_frame"], 8, "uniform", backend=backend)
    assert idx.tolist() == [0] * 8 and tuple(frames.shape) == (8, 48, 64, 3)
    assert decoded_indices(frames).tolist() == [0] * 8


# ------------------------------------------------------------------------------------------------
# Rotation: frames as a player shows them
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_follows_the_display_matrix(real_videos, backend, degrees):
    path = real_videos[f"rot{degrees}"]
    matrix = read_display_matrix(path)
    assert matrix == display_matrix(degrees, 64, 48)  # the fixture carries what a phone writes
    stored = read_frames(real_videos["rot0"], range(6), backend=backend).numpy()  # same bitstream
    expected = np.stack([player_view(f, matrix) for f in stored])  # (6, H', W', 3), no decoder
    info = probe_video(path, backend)
    assert (info.height, info.width) == expected.shape[1:3]
    frames = read_frames(path, range(6), backend=backend).numpy()
    assert np.array_equal(frames, expected)


def test_rotation_direction(real_videos, backend):
    """Clockwise 90: the stored top-left corner is shown top right, the stored left edge on top."""
    stored = read_frames(real_videos["rot0"], [3], backend=backend)[0].numpy().astype(int)
    shown = read_frames(real_videos["rot90"], [3], backend=backend)[0].numpy().astype(int)
    assert shown.shape == (64, 48, 3)
    assert np.array_equal(shown[0, -1], stored[0, 0]) and np.array_equal(shown[-1, 0], stored[-1, -1])
    assert np.array_equal(shown[0, :, :], stored[::-1, 0, :])  # top row = left column, bottom up


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_resize_applies_to_the_displayed_frame(real_videos, degrees):
    both()
    path = real_videos[f"rot{degrees}"]
    portrait = degrees in (90, 270)
    shape = (43, 32) if portrait else (32, 43)  # short side 32 of the displayed 64x48 / 48x64
    a = read_frames(path, range(6), size=32, backend="decord").float()
    b = read_frames(path, range(6), size=32, backend="pyav").float()
    assert tuple(a.shape) == tuple(b.shape) == (6, *shape, 3)
    assert (a - b).abs().mean() < 1.5  # different scalers (about 0.9 measured)
    # and the content is the displayed picture, scaled: far from any other orientation
    shown = read_frames(path, range(6), backend="pyav").permute(0, 3, 1, 2).float()  # (6, 3, H, W)
    ref = torch.nn.functional.interpolate(shown, size=shape, mode="bilinear").permute(0, 2, 3, 1)
    assert (b - ref).abs().mean() < 3
    assert (b - ref.flip(1)).abs().mean() > 20 and (b - ref.flip(2)).abs().mean() > 20


# ------------------------------------------------------------------------------------------------
# Files cut short
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,header", [("cut_faststart", 40), ("cut_mkv", None)])
def test_truncated_file_reads_up_to_the_cut(real_videos, backend, name, header, capfd):
    path = real_videos[name]
    info = probe_video(path, backend)
    assert info.truncated and info.header_frames == header
    assert 0 < info.num_frames < 40
    frames = read_frames(path, range(info.num_frames), backend=backend)  # every reported frame
    assert decoded_indices(frames).tolist() == list(range(info.num_frames))
    with pytest.raises(VideoReadError, match="out of range: the video has .* frames .*truncated"):
        read_frames(path, [info.num_frames], backend=backend)
    assert capfd.readouterr() == ("", "")


def test_truncated_at_every_length_never_misreports(tmp_path, backend):
    """Whatever the cut, the reported frames decode under their own index (B-frames included)."""
    from conftest import truncate, write_video

    full = write_video(tmp_path / "full.mp4", 24, pattern="gradient", crf=4, faststart=True)
    for fraction in (0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
        cut = truncate(full, tmp_path / f"cut{fraction}.mp4", fraction)
        try:
            info = probe_video(cut, backend)
        except VideoReadError as e:
            assert e.reason.startswith("file is truncated")
            continue
        assert info.truncated and info.header_frames == 24
        frames = read_frames(cut, range(info.num_frames), backend=backend)
        assert decoded_indices(frames).tolist() == list(range(info.num_frames)), fraction


# ------------------------------------------------------------------------------------------------
# Unreadable files: one clean sentence, the same from both backends, nothing on stderr
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(UNREADABLE))
def test_unreadable_gives_one_clean_sentence(real_videos, tmp_path, backend, name, capfd):
    path = _path(real_videos, tmp_path, name)
    for call in (lambda: probe_video(path, backend), lambda: read_frames(path, [0], backend=backend)):
        with pytest.raises(VideoReadError) as err:
            call()
        reason = err.value.reason
        assert UNREADABLE[name] in reason
        assert "\n" not in reason and not NOISE.search(reason), reason
        assert str(err.value) == f"cannot read video {path}: {reason}"
        assert err.value.path == str(path)
    assert capfd.readouterr() == ("", "")  # decord's C++ log lines and FFmpeg's stay off the terminal


@pytest.mark.parametrize("name", list(UNREADABLE))
def test_unreadable_same_reason_from_both_backends(real_videos, tmp_path, name):
    both()
    path = _path(real_videos, tmp_path, name)
    reasons = set()
    for backend in ("decord", "pyav"):
        with pytest.raises(VideoReadError) as err:
            probe_video(path, backend)
        reasons.add(err.value.reason)
    assert len(reasons) == 1, reasons


def test_index_out_of_range_same_sentence(real_videos):
    both()
    for bad in ([0, 24], [-1]):
        reasons = set()
        for backend in ("decord", "pyav"):
            with pytest.raises(VideoReadError) as err:
                read_frames(real_videos["h264"], bad, backend=backend)
            reasons.add(err.value.reason)
        assert reasons == {f"frame index {24 if bad[-1] == 24 else -1} out of range: the video has 24 frames"}


def test_silenced_stderr_captures_and_restores(capfd):
    import os

    with silenced_stderr() as captured:
        os.write(2, b"a decoder's log line\n")
        with silenced_stderr() as inner:  # nested: one redirection, both see what came after them
            os.write(2, b"more\n")
            assert inner() == "more\n"
        assert captured() == "a decoder's log line\nmore\n"
    with pytest.raises(ZeroDivisionError):
        with silenced_stderr():
            1 / 0
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 is back, even after an exception


def test_decoder_messages_are_cleaned():
    from mofkit.data.video import _clean

    raw = ("[18:32:52] /github/workspace/src/video/video_reader.cc:151: Check failed: st_nb >= 0 "
           "(-1381258232 vs. 0) ERROR cannot find video stream with wanted index: -1\n\nStack trace:\n"
           "  [bt] (0) /usr/lib/libdecord.so(+0x1234) [0x7f00]")
    assert _clean(raw) == "cannot find video stream with wanted index: -1"
    assert _clean("[Errno 1094995529] Invalid data found when processing input: '/x/y.mp4'",
                  "/x/y.mp4") == "Invalid data found when processing input"


def test_other_files_in_the_folder_are_not_videos(real_video_dir):
    assert all((real_video_dir / rel).exists() for rel in REAL_OTHER_FILES)
    assert len(REAL_VIDEOS) == 20


# ------------------------------------------------------------------------------------------------
# The fixtures' encoder: builds differ in the options they accept
# ------------------------------------------------------------------------------------------------

def test_writer_falls_back_when_the_encoder_refuses_options(tmp_path, monkeypatch):
    import conftest

    need_backend("pyav")
    refused = {"cpu-used": "99"}  # out of libvpx's range: avcodec_open2 fails, as on some builds
    monkeypatch.setattr(conftest, "_encoder_option_sets", lambda codec, crf, gop: [refused, {}])
    path = conftest.write_video(tmp_path / "v.webm", 6, pattern="gradient", codec="libvpx-vp9")
    assert probe_video(path, "pyav").num_frames == 6  # written with the next option set

    monkeypatch.setattr(conftest, "_encoder_option_sets", lambda codec, crf, gop: [refused])
    with pytest.raises(RuntimeError, match="libvpx-vp9 cannot encode here"):
        conftest.write_video(tmp_path / "w.webm", 6, codec="libvpx-vp9")
    assert not (tmp_path / "w.webm").exists()


def test_decord_first_leaves_pyav_encoders_working(tmp_path):
    """decord loaded before PyAV breaks PyAV's VP9 encoder in that process; the kit's import of
    decord loads PyAV first (a fresh process: this one has loaded both already)."""
    import subprocess
    import sys

    need_backend("decord")
    need_backend("pyav")
    code = (
        "import sys; from mofkit.data.video import available_backends; available_backends()\n"
        "import av\n"
        "c = av.open(sys.argv[1], 'w'); s = c.add_stream('libvpx-vp9', rate=8)\n"
        "s.width, s.height, s.pix_fmt = 64, 48, 'yuv420p'\n"
        "import numpy as np\n"
        "for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format='rgb24')): c.mux(p)\n"
        "for p in s.encode(): c.mux(p)\n"
        "c.close()\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "v.webm")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert probe_video(tmp_path / "v.webm", "pyav").num_frames == 1


# ------------------------------------------------------------------------------------------------
# One open per video: the count, size, rotation and truncation come from the decoding container
# ------------------------------------------------------------------------------------------------

class _Opens:
    """Counts the containers and readers the kit opens (PyAV's ``av.open``, decord's readers)."""

    def __init__(self, monkeypatch):
        import av

        from mofkit.data.video import available_backends, import_decord

        self.av, self.decord, self.passes = 0, [], 0  # passes: demux or decode loops over a file
        real_open = av.open
        opens = self

        class Counted:
            def __init__(self, container):
                self._c = container

            def __getattr__(self, name):
                return getattr(self._c, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._c.close()

            def demux(self, *args, **kwargs):
                opens.passes += 1
                return self._c.demux(*args, **kwargs)

            def decode(self, *args, **kwargs):
                opens.passes += 1
                return self._c.decode(*args, **kwargs)

        def counted_open(*args, **kwargs):
            self.av += 1
            return Counted(real_open(*args, **kwargs))

        monkeypatch.setattr(av, "open", counted_open)
        if "decord" in available_backends():
            decord = import_decord()
            real_reader = decord.VideoReader

            def counted_reader(*args, **kwargs):
                self.decord.append((kwargs.get("width", -1), kwargs.get("height", -1)))
                return real_reader(*args, **kwargs)

            monkeypatch.setattr(decord, "VideoReader", counted_reader)


@pytest.mark.parametrize("name", list(READABLE) + ["rot90", "rot270", "cut_faststart", "cut_mkv"])
def test_decode_video_opens_each_file_once(real_videos, backend, name, monkeypatch, capfd):
    from mofkit.data.video import decode_video

    path = real_videos[name]
    info = probe_video(path, backend)  # the full examination, before counting
    opens = _Opens(monkeypatch)
    got = decode_video(path, 4, "uniform", backend=backend)
    cut = name.startswith("cut")
    if backend == "pyav" or cut:  # a file cut short is always read through PyAV
        assert (opens.av, opens.decord, opens.passes) == (1, [], 1)  # one demux or decode pass
    else:
        assert (opens.av, opens.decord) == (0, [(-1, -1)])
    # what the one open found is what the probe reports
    assert (got.num_frames, got.width, got.height, got.truncated) == \
        (info.num_frames, info.width, info.height, info.truncated)
    assert got.fps == pytest.approx(info.fps)
    assert tuple(got.frames.shape) == (4, info.height, info.width, 3)
    if not name.startswith("rot"):
        assert decoded_indices(got.frames).tolist() == got.indices.tolist()
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("size,reopens", [(None, False), (48, False), (32, True)])
def test_decord_opens_a_second_reader_only_to_resize(real_videos, size, reopens, monkeypatch):
    """decord fixes its output size at open: a second reader only when the frames must be resized."""
    from mofkit.data.video import decode_video

    need_backend("decord")
    opens = _Opens(monkeypatch)
    got = decode_video(real_videos["rot90"], 3, backend="decord", size=size)  # displayed 48 x 64
    assert opens.av == 0
    assert opens.decord == ([(-1, -1), (32, 43)] if reopens else [(-1, -1)])
    assert (got.width, got.height) == (48, 64)  # the native displayed size, whatever the resize
    assert tuple(got.frames.shape[1:3]) == ((43, 32) if reopens else (64, 48))


def test_matroska_is_demuxed_once_and_decoded_from_its_packets(real_videos, monkeypatch):
    """A Matroska header states no frame count: the one container is demuxed once to count the
    frames, and the decoder reads the kept packets instead of a second pass over the file."""
    from mofkit.data.video import decode_video

    need_backend("pyav")
    opens = _Opens(monkeypatch)
    got = decode_video(real_videos["mkv"], 16, backend="pyav")
    assert opens.av == 1 and opens.passes == 1
    assert got.num_frames == 16 and got.truncated is False
    assert decoded_indices(got.frames).tolist() == list(range(16))
    got = decode_video(real_videos["h264"], 4, backend="pyav")  # an mp4 states its count: one pass
    assert opens.av == 2 and opens.passes == 2


def test_read_frames_with_a_known_count_checks_it_against_the_video(real_videos, backend):
    from mofkit.data.video import decode_video

    got = decode_video(real_videos["h264"], 4, backend=backend, num_frames=12)  # sample from 12 of 24
    assert got.indices.tolist() == [1, 4, 7, 10] and got.num_frames == 24
    with pytest.raises(VideoReadError, match="frame index .* out of range: the video has 24 frames"):
        decode_video(real_videos["h264"], 4, backend=backend, num_frames=40)
