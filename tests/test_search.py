"""Search over the test split and over a folder of one's own videos (notebook 06's SearchIndex)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from mofkit import notebook as nb
from mofkit.data.datasets import load_splits
from mofkit.eval.search import SearchIndex

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    s = nb.setup("smoke", {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache")},
                 out_dir=str(root / "runs"))
    nb.ensure(s, "uniform", progress=False)
    return s


def test_search_over_the_test_split(session):
    _, test = load_splits(session.cfg)
    index = SearchIndex(session.run("uniform"), dataset=test, progress=False)
    assert index.ids == test.video_ids and not index.skipped
    assert index.video_emb.shape[0] == len(test)
    hits = index.search(test.records[0].captions[0], k=3)
    assert len(hits) == 3
    frames, label, score = hits[0]
    assert tuple(frames.shape[:1]) == (session.cfg.data.num_frames,) and ": " in label
    assert [h[2] for h in hits] == sorted((h[2] for h in hits), reverse=True)


def test_search_over_a_folder_names_videos_by_path_and_says_why_files_are_skipped(session, tmp_path,
                                                                                  monkeypatch, capsys):
    src = sorted((Path(session.cfg.data.root) / "videos").glob("*.mp4"))
    home = tmp_path / "home"
    folder = home / "clips"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(src[0], folder / "bikes.mp4")
    shutil.copy(src[1], folder / "bikes.mkv")  # same stem, another container name
    shutil.copy(src[2], folder / "sub" / "bikes.mp4")
    (folder / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 2048, np.uint8).tobytes())
    (folder / "notes.txt").write_text("not a video")
    monkeypatch.setenv("HOME", str(home))
    index = SearchIndex(session.run("uniform"), folder="~/clips")
    assert index.ids == ["bikes.mkv", "bikes.mp4", "sub/bikes.mp4"]
    assert list(index.skipped) == ["broken.mp4"]
    reason = index.skipped["broken.mp4"]
    assert reason and "\n" not in reason and "Check failed" not in reason
    out = capsys.readouterr().out
    assert "1 video skipped" in out and f"broken.mp4: {reason}" in out
    labels = [h[1] for h in index.search("a red circle moves left", k=3)]
    assert sorted(labels) == index.ids  # a folder's videos are labelled by their path
    # one file is a gallery of one
    single = SearchIndex(session.run("uniform"), folder=folder / "sub" / "bikes.mp4", progress=False)
    assert single.ids == ["bikes.mp4"]


def test_search_folder_errors_say_what_is_wrong(session, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SearchIndex(session.run("uniform"), folder=tmp_path / "nowhere", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        SearchIndex(session.run("uniform"), folder=tmp_path / "empty", progress=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a video file"):
        SearchIndex(session.run("uniform"), folder=tmp_path / "notes.txt", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="(?s)none of the 1 videos .* could be read: .*a.mp4: file is empty"):
        SearchIndex(session.run("uniform"), folder=tmp_path / "bad", progress=False)
