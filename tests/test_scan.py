"""Scanning a dataset or a plain folder: the quality table, leaving unreadable videos out with one
warning, and ``mofkit scan PATH``."""
import warnings

import pandas as pd
import pytest

from conftest import all_backends, make_dataset, need_backend
from mofkit.data.scan import (COLUMNS, check_video, exclude_unreadable, find_videos, scan_dataset,
                              scan_folder, unreadable)
from mofkit.data.video import available_backends


@pytest.fixture(params=all_backends())
def backend(request):
    need_backend(request.param)
    return request.param


@pytest.fixture
def mixed(tmp_path, videos, bad_videos):
    paths = {"good": videos["index40"], "portrait": videos["portrait"],
             "empty": bad_videos["empty"], "garbage": bad_videos["garbage"],
             "cut": bad_videos["truncated"], "cut_fs": bad_videos["truncated_faststart"],
             "gone": bad_videos["missing"], "short": videos["short"]}
    return make_dataset(tmp_path, paths, name="mixed", split="test")


def test_scan_table(mixed, backend):
    df = scan_dataset(mixed, backend=backend, progress=False)
    assert list(df.columns) == COLUMNS
    assert df["video_id"].tolist() == mixed.video_ids
    by_id = df.set_index("video_id")
    assert by_id["readable"].to_dict() == {"good": True, "portrait": True, "empty": False,
                                           "garbage": False, "cut": False, "cut_fs": True,
                                           "gone": False, "short": True}
    good = by_id.loc["good"]
    assert (good.num_frames, good.width, good.height) == (40, 64, 48)
    assert good.fps == pytest.approx(8.0) and good.duration == pytest.approx(5.0)
    assert good.error is None and good.note is None and not good.truncated
    assert by_id.loc["portrait"].width == 48 and by_id.loc["portrait"].height == 64
    assert "not found" in by_id.loc["gone"].error
    assert "empty" in by_id.loc["empty"].error
    assert pd.isna(by_id.loc["garbage"].num_frames)
    assert df["readable"].dtype == bool
    cut_fs = by_id.loc["cut_fs"]
    assert cut_fs.truncated and cut_fs.header_frames == 40 and cut_fs.error is None
    assert cut_fs.note == f"truncated: {cut_fs.num_frames} of 40 frames present"


def test_truncated_with_index_first_is_readable_up_to_the_cut(bad_videos, backend):
    """A cut-short faststart file: the row counts the frames present and says what is missing."""
    row = check_video("cut_fs", bad_videos["truncated_faststart"], backend=backend)
    assert row["readable"] is True and row["truncated"] is True and row["header_frames"] == 40
    assert 0 < row["num_frames"] < 40
    assert row["note"] == f"truncated: {row['num_frames']} of 40 frames present"


def test_unreadable_and_exclusion_warn_once(mixed):
    df = scan_dataset(mixed, backend="pyav", progress=False)
    bad = unreadable(df)
    assert list(bad) == ["empty", "garbage", "cut", "gone"]
    assert all(isinstance(r, str) and r for r in bad.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = exclude_unreadable(mixed, df)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert all(v in msg for v in bad) and "4 of 8" in msg
    assert kept.video_ids == ["good", "portrait", "cut_fs", "short"]


def test_all_readable_returns_same_dataset(tmp_path, videos):
    ds = make_dataset(tmp_path, {"a": videos["index40"], "b": videos["gop"]})
    df = scan_dataset(ds, backend="pyav", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert exclude_unreadable(ds, df) is ds
    assert unreadable(df) == {}


# ------------------------------------------------------------------------------------------------
# A plain folder of videos
# ------------------------------------------------------------------------------------------------

def test_find_videos(real_videos, real_video_dir):
    from conftest import REAL_VIDEOS

    found = find_videos(real_video_dir)
    ids = [vid for vid, _ in found]
    assert ids == sorted(rel for rel, _ in REAL_VIDEOS.values())  # recursive, sorted, only videos
    assert "bikes.mp4" in ids and "bikes.mkv" in ids  # one stem, two videos
    assert "h264/landscape.mp4" in ids  # ids are relative paths with '/' and the extension
    assert all(path == real_video_dir / vid for vid, path in found)
    assert not any(vid.startswith(".") or "/." in vid for vid in ids)  # hidden files skipped
    assert find_videos(real_videos["mkv"]) == [("clip.mkv", real_videos["mkv"])]  # a single file


def test_find_videos_expands_home(real_video_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(real_video_dir.parent))
    found = find_videos(f"~/{real_video_dir.name}/h264")
    assert [vid for vid, _ in found] == ["landscape.mp4", "portrait.mp4", "wide.mp4"]
    assert found[0][1] == real_video_dir / "h264" / "landscape.mp4"


def test_find_videos_errors(tmp_path, real_video_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/nowhere does not exist"):
        find_videos("~/nowhere")  # the message names the expanded path
    with pytest.raises(ValueError, match=r"notes.txt is not a video file.*'\.txt'.*\.mp4, \.avi"):
        find_videos(real_video_dir / "notes.txt")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no videos here")
    with pytest.raises(FileNotFoundError, match=r"no video files in .*docs \(searched recursively for \.mp4"):
        find_videos(tmp_path / "docs")


def test_scan_folder(real_video_dir):
    tables = {b: scan_folder(real_video_dir, backend=b, progress=False) for b in available_backends()}
    if len(tables) == 2:
        pd.testing.assert_frame_equal(tables["decord"], tables["pyav"])  # same rows, same reasons
    df = next(iter(tables.values()))
    assert list(df.columns) == COLUMNS
    by_id = df.set_index("video_id")
    unreadable_ids = {"audio_only.mp4", "cut/index_at_end.mp4", "empty.mp4", "no_index.mp4",
                      "random.mp4"}
    assert set(by_id.index[~by_id.readable]) == unreadable_ids
    assert by_id.loc["audio_only.mp4"].error == "no video stream (audio only)"
    assert by_id.loc["random.mp4"].error == "not a video file (unrecognised format)"
    assert by_id.loc["cut/index_at_end.mp4"].error.startswith("file is truncated")
    cut = by_id.loc["cut/faststart.mp4"]
    assert cut.readable and cut.truncated and cut.note == f"truncated: {cut.num_frames} of 40 frames present"
    assert by_id.loc["cut/clip.mkv"].note.startswith("truncated:")
    portrait = by_id.loc["phone/rot90.mp4"]
    assert (portrait.width, portrait.height) == (48, 64)  # displayed, as a player shows it
    assert by_id.loc["bikes.mkv"].num_frames == 16 and by_id.loc["bikes.mp4"].num_frames == 24


def test_cli_scan_folder(real_video_dir, tmp_path, monkeypatch, capsys):
    from mofkit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["scan", str(real_video_dir), "--backend", "pyav"]) == 0
    out = capsys.readouterr().out
    csv = tmp_path / f"{real_video_dir.name}_scan.csv"  # default: <folder name>_scan.csv, here
    assert f"table written to {csv}" in out
    table = pd.read_csv(csv)
    assert list(table.columns) == COLUMNS and len(table) == len(find_videos(real_video_dir))
    for line in ("audio_only.mp4", "no video stream (audio only)", "cut/faststart.mp4",
                 "of 40 frames present", "not a video file (unrecognised format)"):
        assert line in out
    assert "15/20 readable, 2 truncated (pyav)" in out
    assert main(["scan", str(real_video_dir / "clip.mkv"), "--csv", str(tmp_path / "one.csv"),
                 "--backend", "pyav"]) == 0
    assert pd.read_csv(tmp_path / "one.csv").video_id.tolist() == ["clip.mkv"]


@pytest.mark.parametrize("where", ["missing", "empty", "text"])
def test_cli_scan_bad_path_is_one_line_and_exit_2(tmp_path, capsys, where):
    from mofkit.cli import main

    path = {"missing": tmp_path / "nowhere", "empty": tmp_path, "text": tmp_path / "notes.txt"}[where]
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["scan", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and str(path) in err
    assert "Traceback" not in err
