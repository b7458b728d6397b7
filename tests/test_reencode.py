"""``mofkit reencode``: frame rate and size, upright phone videos, every output checked, failures
listed and removed, the manifest, incremental calls, and runs recording the settings."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import decoded_indices, write_video
from mofkit.cli import main
from mofkit.data.reencode import (MANIFEST, ReencodeSettings, manifest_record, output_name,
                                  read_manifest, reencode_folder, reencode_video, target_size)
from mofkit.data.video import probe_video, read_frames


def test_target_size_keeps_aspect_is_even_and_never_upscales():
    assert target_size(640, 360, 224) == (398, 224)
    assert target_size(360, 640, 224) == (224, 398)
    assert target_size(64, 48, 224) == (64, 48)  # already smaller: kept
    assert target_size(64, 48, None) == (64, 48)
    assert target_size(1920, 1080, 32) == (56, 32)


def test_settings_refuse_what_cannot_be_encoded():
    for bad in ({"fps": 0}, {"short_side": 223}, {"crf": 60}):
        with pytest.raises(ValueError):
            ReencodeSettings(**bad)


def test_output_names_keep_paths_and_use_mp4():
    assert output_name("video7020.mp4") == "video7020.mp4"
    assert output_name("sub/clip.avi") == "sub/clip.mp4"
    assert output_name("x.mov.mp4") == "x.mov.mp4"


def test_frame_rate_and_short_side(tmp_path):
    """40 frames at 8 fps to 4 fps: 20 frames, every other source frame, in order, at 32 px."""
    src = write_video(tmp_path / "a.mp4", 40, size=(48, 64), fps=8)
    got = reencode_video(src, tmp_path / "out.mp4", ReencodeSettings(fps=4, short_side=32, crf=10))
    assert got == {"frames": 20, "width": 42, "height": 32, "fps": 4.0}
    info = probe_video(tmp_path / "out.mp4", backend="pyav")
    assert (info.num_frames, info.width, info.height) == (20, 42, 32) and info.fps == pytest.approx(4.0)
    idx = decoded_indices(read_frames(tmp_path / "out.mp4", range(20), backend="pyav"))
    assert np.all(np.abs(idx - 2 * np.arange(20)) <= 1), idx  # FFmpeg's fps filter: nearest frame
    assert np.all(np.diff(idx) > 0)
    assert not (tmp_path / "out.mp4.part").exists()


def test_keeping_rate_and_size_keeps_every_frame(tmp_path):
    src = write_video(tmp_path / "a.mp4", 24, size=(48, 64), fps=8)
    got = reencode_video(src, tmp_path / "out.mp4", ReencodeSettings(fps=None, short_side=None, crf=0))
    assert (got["frames"], got["width"], got["height"]) == (24, 64, 48)
    idx = decoded_indices(read_frames(tmp_path / "out.mp4", range(24), backend="pyav"))
    assert idx.tolist() == list(range(24))


def _entries(doc, status):
    return {vid for vid, e in doc["files"].items() if e["status"] == status}


def test_a_folder_of_real_videos(real_videos, tmp_path):
    """Every output is checked; what cannot be read is listed with a reason and left out; phone
    videos come out upright; a second call re-encodes only what changed."""
    src = real_videos["h264"].parent.parent
    dst = tmp_path / "out"
    settings = ReencodeSettings(fps=4, short_side=32, crf=18)
    rep = reencode_folder(src, dst, settings, progress=False, backend="pyav")
    doc = read_manifest(dst)
    assert doc["settings"]["fps"] == 4 and doc["tools"]["pyav"]
    failed = set(rep.failed)
    for name in ("empty.mp4", "random.mp4", "audio_only.mp4", "no_index.mp4"):
        assert name in failed and rep.failed[name].startswith("source: "), (name, rep.failed.get(name))
    assert "already written for bikes.mkv" in rep.failed["bikes.mp4"]  # one stem, one output
    for vid in ("h264/landscape.mp4", "clip.mkv", "clip_mpeg4.avi", "clip_vp9.webm", "one_frame.mp4",
                "phone/rot90.mp4", "cut/faststart.mp4"):
        assert vid in rep.encoded, (vid, rep.failed.get(vid))
    assert _entries(doc, "ok") == set(rep.encoded) and _entries(doc, "failed") == failed
    for vid in rep.encoded:  # each output decodes, at the size and frame count recorded
        e = doc["files"][vid]
        info = probe_video(dst / e["output"], backend="pyav")
        assert (info.num_frames, info.width, info.height) == (e["frames"], e["width"], e["height"])
    for vid in failed:
        assert not (dst / output_name(vid)).exists() or output_name(vid) == "bikes.mp4"
    assert not list(dst.rglob("*.part"))
    # a phone video stored 64 wide, 48 high, turned 90 degrees: 24 wide, 32 high once upright
    r0, r90 = doc["files"]["phone/rot0.mp4"], doc["files"]["phone/rot90.mp4"]
    assert (r0["width"], r0["height"]) == (42, 32) and (r90["width"], r90["height"]) == (32, 42)
    shown = read_frames(real_videos["rot90"], [0], size=(42, 32), backend="pyav")[0].float()
    out = read_frames(dst / "phone/rot90.mp4", [0], backend="pyav")[0].float()
    assert (shown - out).abs().mean() < 8, "the output is not the upright picture"
    assert "FAILED" in rep.summary() and "re-encoded" in rep.summary()

    again = reencode_folder(src, dst, settings, progress=False, backend="pyav")
    assert again.encoded == [] and set(again.kept) == set(rep.encoded)
    os.utime(real_videos["h264"], ns=(1, 1))  # a changed source is re-encoded, alone
    third = reencode_folder(src, dst, settings, progress=False, backend="pyav")
    assert third.encoded == ["h264/landscape.mp4"]
    with pytest.raises(ValueError, match="other settings"):
        reencode_folder(src, dst, ReencodeSettings(fps=3), progress=False)
    with pytest.raises(ValueError, match="inside the source"):
        reencode_folder(src, src / "h264" / "converted", settings, progress=False)


def test_two_workers_match_one(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write_video(src / f"v{i}.mp4", 16 + 8 * i, size=(48, 64), fps=8)
    one = reencode_folder(src, tmp_path / "one", ReencodeSettings(fps=4, short_side=32), progress=False)
    two = reencode_folder(src, tmp_path / "two", ReencodeSettings(fps=4, short_side=32), workers=2,
                          progress=False)
    assert one.ok and two.ok and sorted(one.encoded) == sorted(two.encoded) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    f1, f2 = read_manifest(tmp_path / "one")["files"], read_manifest(tmp_path / "two")["files"]
    assert [f1[v]["frames"] for v in sorted(f1)] == [f2[v]["frames"] for v in sorted(f2)] == [8, 12, 16]


def test_an_interrupted_file_is_redone(tmp_path):
    """A manifest entry left pending (a kill mid-file) and a stray partial output are redone."""
    src = tmp_path / "src"
    write_video(src / "v.mp4", 16)
    dst = tmp_path / "dst"
    reencode_folder(src, dst, progress=False)
    doc = json.loads((dst / MANIFEST).read_text())
    doc["files"]["v.mp4"]["status"] = "pending"
    (dst / MANIFEST).write_text(json.dumps(doc))
    (dst / "v.mp4").write_bytes(b"half a file")
    rep = reencode_folder(src, dst, progress=False)
    assert rep.encoded == ["v.mp4"] and probe_video(dst / "v.mp4", backend="pyav").num_frames > 0


def test_command_lists_failures_and_exits_nonzero(tmp_path, capsys):
    src = tmp_path / "src"
    write_video(src / "good.mp4", 16)
    (src / "bad.mp4").write_bytes(b"not a video")
    assert main(["reencode", str(src), str(tmp_path / "dst"), "--fps", "4", "--short-side", "32",
                 "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "1 re-encoded" in out and "1 failed" in out and "FAILED bad.mp4: source: " in out
    assert (tmp_path / "dst" / "good.mp4").is_file() and not (tmp_path / "dst" / "bad.mp4").exists()
    assert main(["reencode", str(src / "missing"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_manifest_record_and_damaged_manifest(tmp_path):
    assert manifest_record(tmp_path) is None
    src = tmp_path / "src"
    write_video(src / "v.mp4", 16)
    reencode_folder(src, tmp_path / "dst", ReencodeSettings(fps=4), progress=False)
    rec = manifest_record(tmp_path / "dst")
    assert rec["settings"]["fps"] == 4 and rec["videos"] == 1 and rec["failed"] == 0
    (tmp_path / "dst" / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="delete it"):
        manifest_record(tmp_path / "dst")


@pytest.mark.slow
def test_a_run_records_the_reencoding_of_its_videos(tmp_path):
    """Train one epoch on a re-encoded copy of the smoke corpus: metrics.json says how it was made."""
    from mofkit.config import get_config
    from mofkit.data.datasets import prepare_dataset
    from mofkit.train.loop import train

    over = {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
            "out_dir": str(tmp_path / "run"), "train.epochs": 1}
    prepare_dataset(get_config("smoke", over), progress=False)
    settings = ReencodeSettings(fps=None, short_side=None)
    rep = reencode_folder(tmp_path / "corpus" / "videos", tmp_path / "re", settings, progress=False)
    assert rep.ok
    cfg = get_config("smoke", {**over, "data.video_dir": str(tmp_path / "re")})
    res = train(cfg, progress=False)
    doc = json.loads((Path(res.out_dir) / "metrics.json").read_text())
    assert doc["dataset"]["reencode"]["settings"]["crf"] == 23
    assert doc["dataset"]["reencode"]["videos"] == len(rep.encoded)
