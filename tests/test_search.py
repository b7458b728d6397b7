"""The on-disk search index (mofkit.eval.index): the test split, a folder of one's own videos,
incremental updates, interrupted builds, refused models, the commands and notebook 06's helper."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mofkit import notebook as nb
from mofkit.cli import main
from mofkit.data.datasets import load_splits
from mofkit.eval.index import IndexMismatchError, IndexModel, VideoIndex, build_index, read_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    s = nb.setup("smoke", {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache")},
                 out_dir=str(root / "runs"))
    nb.ensure(s, "uniform", progress=False)
    return s


@pytest.fixture(scope="module")
def model(session):
    return IndexModel(session.run("uniform"))


def _gallery(session, folder: Path, n: int = 3) -> list[Path]:
    src = sorted((Path(session.cfg.data.root) / "videos").glob("*.mp4"))
    (folder / "sub").mkdir(parents=True)
    out = [folder / "bikes.mp4", folder / "bikes.mkv", folder / "sub" / "bikes.mp4"][:n]
    for a, b in zip(src, out):
        shutil.copy(a, b)
    return out


def test_the_test_split_is_indexed_once_and_searched(session):
    index, report = nb.search_index(session, "uniform", progress=False)
    _, test = load_splits(session.cfg)
    assert sorted(index.ids) == sorted(test.video_ids) and not index.skipped
    assert sorted(report.added) == sorted(test.video_ids)
    caption = test.records[0].captions[0]
    hits = index.search(caption, k=3)
    assert len(hits) == 3 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].label and ": " in hits[0].title()
    # the same scores as embedding the videos directly with the model
    emb = index.model.embed([index.model.decode(h.path) for h in hits])
    q = index.model.embed_text(caption)
    np.testing.assert_allclose(emb @ q, [h.score for h in hits], rtol=1e-4, atol=1e-5)
    frames, title, score = index.ranked(caption, k=1)[0]
    assert frames.shape[0] == session.cfg.data.num_frames and title == hits[0].title()
    again, report2 = nb.search_index(session, "uniform", progress=False)
    assert report2.added == [] and report2.updated == [] and len(report2.kept) == len(test)


def test_a_folder_is_indexed_incrementally(session, model, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    folder = home / "clips"
    files = _gallery(session, folder)
    (folder / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 2048, np.uint8).tobytes())
    (folder / "notes.txt").write_text("not a video")
    monkeypatch.setenv("HOME", str(home))
    rep = build_index("~/clips", session.run("uniform"), progress=False, model=model)
    assert rep.index_dir == folder.resolve() / ".mofkit_index"
    assert sorted(rep.added) == ["bikes.mkv", "bikes.mp4", "sub/bikes.mp4"]
    reason = rep.skipped["broken.mp4"]
    assert reason and "\n" not in reason and "skipped broken.mp4" in rep.summary()
    doc = read_index(rep.index_dir)
    assert doc["frames"]["num_frames"] == session.cfg.data.num_frames and doc["model"]["weights_sha1"]
    # unchanged: nothing embedded; a new file, a changed file and a deleted file
    assert build_index(folder, session.run("uniform"), progress=False, model=model).added == []
    shutil.copy(files[0], folder / "new.mp4")
    os.utime(files[1], ns=(1, 1))
    (folder / "sub" / "bikes.mp4").unlink()
    rep = build_index(folder, session.run("uniform"), progress=False, model=model)
    assert rep.added == ["new.mp4"] and rep.updated == ["bikes.mkv"] and rep.removed == ["sub/bikes.mp4"]
    assert rep.kept == ["bikes.mp4"] and list(rep.skipped) == ["broken.mp4"]  # not retried: unchanged
    index = VideoIndex(folder, model=model)
    assert sorted(index.ids) == ["bikes.mkv", "bikes.mp4", "new.mp4"]
    assert len(list(rep.index_dir.glob("embeddings-*.npy"))) == 1
    # bikes.mp4 and new.mp4 are the same clip: the same embedding
    e = {vid: index.embeddings[i] for i, vid in enumerate(index.ids)}
    np.testing.assert_allclose(e["bikes.mp4"], e["new.mp4"], rtol=1e-5, atol=1e-6)

    # the commands: index (already up to date) and search, which prints ranked lines
    assert main(["index", str(folder), "--run", str(session.run("uniform"))]) == 0
    assert "0 added" in capsys.readouterr().out
    assert main(["search", str(folder), "a red circle moves left", "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1"
    assert main(["search", str(tmp_path / "nowhere"), "x"]) == 2
    assert "no video index" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [0, 2])
def test_an_interrupted_build_goes_on_where_it_stopped(session, model, tmp_path, monkeypatch, workers):
    """Ctrl-C while the third video is embedded: the two embedded before it are saved (no periodic
    save has happened), the decode workers are gone, and the next call embeds only the rest."""
    import multiprocessing

    folder = tmp_path / "g"
    _gallery(session, folder)
    calls = {"n": 0}
    embed = IndexModel.embed

    def dies_on_the_third(self, frames, batch_size=32):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return embed(self, frames, batch_size)

    monkeypatch.setattr(IndexModel, "embed", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        build_index(folder, session.run("uniform"), batch_size=1, save_every=1e9, progress=False,
                    model=model, workers=workers)
    assert multiprocessing.active_children() == []
    doc = read_index(folder / ".mofkit_index")
    assert sorted(doc["videos"]) == ["bikes.mkv", "bikes.mp4"]  # saved as the call stopped
    assert np.load(folder / ".mofkit_index" / doc["embeddings"]).shape[0] == 2
    assert sorted(VideoIndex(folder, model=model).ids) == ["bikes.mkv", "bikes.mp4"]
    monkeypatch.setattr(IndexModel, "embed", embed)
    rep = build_index(folder, session.run("uniform"), progress=False, model=model, workers=workers)
    assert rep.added == ["sub/bikes.mp4"] and len(rep.kept) == 2


_CHILD = """
import signal, sys, time
# as a terminal's command gets it: a job started in the background (nohup, `&`) inherits SIGINT
# ignored, and Python then installs no KeyboardInterrupt handler
signal.signal(signal.SIGINT, signal.default_int_handler)
from mofkit.eval.index import IndexModel, build_index

embed = IndexModel.embed

def announced(self, frames, batch_size=32):
    out = embed(self, frames, batch_size)
    print("embedded", len(frames), flush=True)
    time.sleep(0.3)  # time for the signal to arrive while the workers decode ahead
    return out

IndexModel.embed = announced
build_index(sys.argv[1], sys.argv[2], batch_size=2, save_every=1e9, progress=False, workers=2)
print("finished", flush=True)
"""


def test_ctrl_c_in_the_middle_of_a_build_with_workers_leaves_a_resumable_index(session, model, tmp_path):
    """A real SIGINT to the whole process group (what Ctrl-C in a terminal sends) while decode
    workers run: the command stops, no process of the group is left, the index holds what was
    embedded, and the next call embeds only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    _, test = load_splits(session.cfg)
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i, rec in enumerate(test.records[:24]):
        shutil.copy(rec.path, folder / f"v{i:02d}.mp4")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder), str(session.run("uniform"))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        assert child.stdout.readline().startswith("embedded")
        assert child.stdout.readline().startswith("embedded")
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    for _ in range(50):  # the decode workers go with it
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("processes of the interrupted command are still running")
    doc = read_index(folder / ".mofkit_index")
    done = sorted(doc["videos"])
    assert 2 <= len(done) < 24 and done == [f"v{i:02d}.mp4" for i in range(len(done))]
    assert np.load(folder / ".mofkit_index" / doc["embeddings"]).shape[0] == len(done)
    rep = build_index(folder, session.run("uniform"), progress=False, model=model, workers=2)
    assert sorted(rep.kept) == done and len(rep.added) == 24 - len(done)
    assert len(VideoIndex(folder, model=model)) == 24


def test_an_index_built_with_decode_workers_equals_one_built_without(session, model, tmp_path):
    """The same videos in the same rows with the same embeddings, and the files that fail in the
    middle of the build (not a video, cut before its index, empty) listed with their reasons."""
    import multiprocessing

    from conftest import truncate, write_video

    _, test = load_splits(session.cfg)
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i, rec in enumerate(test.records[:20]):
        shutil.copy(rec.path, folder / f"v{i:02d}.mp4")
    (folder / "v05b.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    truncate(write_video(tmp_path / "whole.mp4", 16), folder / "v11b.mp4", 0.5)  # index at the end: lost
    (folder / "v17b.mp4").write_bytes(b"")
    run = session.run("uniform")
    one = build_index(folder, run, tmp_path / "one", batch_size=4, progress=False, model=model, workers=0)
    many = build_index(folder, run, tmp_path / "many", batch_size=4, progress=False, model=model, workers=2)
    assert multiprocessing.active_children() == []
    assert one.added == many.added == [f"v{i:02d}.mp4" for i in range(20)]
    assert one.skipped == many.skipped
    assert list(one.skipped) == ["v05b.mp4", "v11b.mp4", "v17b.mp4"]
    assert "not a video file" in one.skipped["v05b.mp4"]
    assert "truncated" in one.skipped["v11b.mp4"] and "empty" in one.skipped["v17b.mp4"]
    a, b = read_index(tmp_path / "one"), read_index(tmp_path / "many")
    assert a["videos"] == b["videos"] and a["skipped"] == b["skipped"]
    ea, eb = np.load(tmp_path / "one" / a["embeddings"]), np.load(tmp_path / "many" / b["embeddings"])
    assert ea.shape == eb.shape == (20, a["dim"])
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-6)  # torch's thread count may move the last bits
    # the frames behind them are the same: every row is the embedding of its own video
    direct = model.embed([model.decode(folder / vid) for vid in ("v00.mp4", "v19.mp4")])
    rows = [a["videos"][v]["row"] for v in ("v00.mp4", "v19.mp4")]
    np.testing.assert_allclose(eb[rows], direct, rtol=0, atol=1e-6)


def test_another_model_or_other_frames_are_refused(session, model, tmp_path, capsys):
    folder = tmp_path / "g"
    _gallery(session, folder, n=2)
    build_index(folder, session.run("uniform"), progress=False, model=model)
    # the same run retrained (other weights): updating or searching the index is refused
    other = tmp_path / "retrained"
    shutil.copytree(session.run("uniform"), other)
    ckpt = torch.load(other / "checkpoint.pt", map_location="cpu", weights_only=False)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = ckpt["model"][name] + 1.0
    torch.save(ckpt, other / "checkpoint.pt")
    with pytest.raises(IndexMismatchError, match="model.weights_sha1"):
        build_index(folder, other, progress=False)
    assert main(["search", str(folder), "x", "--run", str(other)]) == 1
    assert "cannot be compared" in capsys.readouterr().err
    # the same weights through a frame compressor: other frames, refused too
    comp = tmp_path / "compressed"
    shutil.copytree(session.run("uniform"), comp)
    cfg = json.loads((comp / "config.json").read_text())
    cfg["compress"]["name"] = "segment_max"
    (comp / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IndexMismatchError, match="frames.compressor"):
        build_index(folder, comp, progress=False)
    # its own index decodes N frames and compresses them to K
    rep = build_index(folder, comp, tmp_path / "comp_index", progress=False)
    doc = read_index(rep.index_dir)
    assert doc["frames"]["decoded_frames"] == cfg["compress"]["input_frames"]
    assert doc["frames"]["compressor"]["name"] == "segment_max"
    assert len(VideoIndex(rep.index_dir).search("a red circle", k=5)) == 2


def test_index_errors_say_what_is_wrong(session, model, tmp_path):
    run = session.run("uniform")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_index(tmp_path / "nowhere", run, progress=False, model=model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        build_index(tmp_path / "empty", run, progress=False, model=model)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a video file"):
        build_index(tmp_path / "notes.txt", run, progress=False, model=model)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="(?s)none of the 1 videos .* could be read: .*a.mp4: file is empty"):
        build_index(tmp_path / "bad", run, progress=False, model=model)
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        IndexModel(tmp_path)
