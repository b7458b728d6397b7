"""Scanning a dataset: the quality table, and leaving unreadable videos out with one warning."""
import warnings

import pandas as pd
import pytest

from conftest import all_backends, make_dataset, need_backend
from mofkit.data.scan import COLUMNS, check_video, exclude_unreadable, scan_dataset, unreadable


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
