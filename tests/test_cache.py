"""The frame cache: content, reuse without decoding, rebuilds, atomicity, exclusions, pickling."""
import json
import multiprocessing as mp
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

import mofkit.data.cache as cache_mod
from conftest import decoded_indices, make_dataset, need_backend, write_video
from mofkit.data.cache import FrameCache, cache_summary
from mofkit.data.sampling import sample_indices, segment_bounds

T, S = 6, 32


@pytest.fixture
def corpus(tmp_path, bad_videos):
    """5 videos of different lengths and shapes, plus one garbage file, in a tiny dataset."""
    d = tmp_path / "videos"
    paths = {
        "v0": write_video(d / "v0.mp4", 40),  # 48x64 landscape
        "v1": write_video(d / "v1.mp4", 12, size=(64, 48)),  # portrait
        "v2": write_video(d / "v2.mp4", 3, size=(32, 32)),  # shorter than T
        "bad": bad_videos["garbage"],
        "v3": write_video(d / "v3.mp4", 25, size=(40, 40)),
        "v4": write_video(d / "v4.mp4", 50, size=(36, 80)),  # wide
    }
    return make_dataset(tmp_path, paths, name="tiny", split="train")


def _build(ds, tmp_path, **kw):
    kw = {"num_frames": T, "size": S, "cache_dir": tmp_path / "cache", "progress": False, "workers": 0, **kw}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = FrameCache.build(ds, **kw)
    return cache, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_build_content_and_exclusion(corpus, tmp_path):
    cache, warned = _build(corpus, tmp_path)
    assert cache.video_ids == ["v0", "v1", "v2", "v3", "v4"]
    assert cache.shape == (5, T, S, S, 3) and cache.frames.dtype == np.uint8
    assert list(cache.excluded) == ["bad"] and "garbage.mp4" in cache.excluded["bad"]
    assert len(warned) == 1 and "bad" in str(warned[0].message) and "1 of 6" in str(warned[0].message)
    for vid, n in [("v0", 40), ("v1", 12), ("v2", 3), ("v3", 25), ("v4", 50)]:
        row = cache.row_of(vid)
        idx = sample_indices(n, T, "uniform")
        assert cache.frame_indices[row].tolist() == idx.tolist()
        frames = cache[vid]
        assert frames.dtype == torch.uint8 and tuple(frames.shape) == (T, S, S, 3)
        assert decoded_indices(frames).tolist() == idx.tolist()  # the right frames, centre-cropped
    assert cache.num_source_frames.tolist() == [40, 12, 3, 25, 50]
    assert np.allclose(cache.fps, 8.0)
    meta = json.loads((cache.directory / "meta.json").read_text())
    assert meta["source_size"][0] == [64, 48] and meta["settings"]["size"] == S
    assert cache_summary(cache)["videos"] == 5
    # no temporary folders left next to the cache
    assert [p.name for p in (tmp_path / "cache").iterdir() if ".tmp-" in p.name] == []


def test_centre_square_matches_eval_crop(corpus, tmp_path):
    """The cached square is the centre of the short-side-resized frame."""
    from mofkit.data.video import read_frames

    cache, _ = _build(corpus, tmp_path, backend="pyav")
    full = read_frames(corpus[5].path, cache.frame_indices[4], size=S, backend="pyav")  # (T, 32, 71, 3)
    left = int(round((full.shape[2] - S) / 2))
    assert torch.equal(cache["v4"], full[:, :, left:left + S])


def test_hit_decodes_nothing(corpus, tmp_path, monkeypatch):
    first, _ = _build(corpus, tmp_path)

    def boom(job):
        raise AssertionError(f"decoded {job[0]} on a cache hit")

    monkeypatch.setattr(cache_mod, "_decode_one", boom)
    again, warned = _build(corpus, tmp_path)
    assert again.directory == first.directory
    assert torch.equal(again.rows(np.arange(5)), first.rows(np.arange(5)))
    assert len(warned) == 1  # the exclusion is still reported once per build call
    opened = FrameCache.open(first.directory)
    assert opened.video_ids == first.video_ids and opened.excluded == first.excluded


def test_rebuild_when_a_source_changes(corpus, tmp_path):
    cache, _ = _build(corpus, tmp_path)
    old = cache["v3"].clone()
    write_video(corpus[4].path, 64, size=(40, 40))  # same path, new content (64 frames)
    st = os.stat(corpus[4].path)
    os.utime(corpus[4].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse clocks
    new, _ = _build(corpus, tmp_path)
    assert new.directory == cache.directory
    assert new.num_source_frames[new.row_of("v3")] == 64
    assert decoded_indices(new["v3"]).tolist() == sample_indices(64, T).tolist()
    assert not torch.equal(new["v3"], old)


def test_settings_select_separate_caches(corpus, tmp_path, monkeypatch):
    a, _ = _build(corpus, tmp_path)
    b, _ = _build(corpus, tmp_path, num_frames=3)
    c, _ = _build(corpus, tmp_path, size=24)
    assert len({a.directory, b.directory, c.directory}) == 3
    assert b.shape == (5, 3, S, S, 3) and c.shape == (5, T, 24, 24, 3)
    calls = []
    real = cache_mod._decode_one
    monkeypatch.setattr(cache_mod, "_decode_one", lambda job: calls.append(job[0]) or real(job))
    _build(corpus, tmp_path, rebuild=True)
    assert len(calls) == 6  # rebuild=True decodes everything again


def test_rand_mode(corpus, tmp_path):
    cache, _ = _build(corpus, tmp_path, mode="rand", seed=3)
    again, _ = _build(corpus, tmp_path, mode="rand", seed=3, rebuild=True)
    other, _ = _build(corpus, tmp_path, mode="rand", seed=4)
    assert np.array_equal(cache.frame_indices, again.frame_indices)
    assert not np.array_equal(cache.frame_indices, other.frame_indices)
    starts, ends = segment_bounds(50, T)
    idx = cache.frame_indices[cache.row_of("v4")]
    assert ((idx >= starts) & (idx < ends)).all()
    assert decoded_indices(cache["v4"]).tolist() == idx.tolist()
    with pytest.raises(ValueError, match="uniform"):
        _build(corpus, tmp_path, mode="dense")


def test_failed_build_leaves_previous_cache_intact(corpus, tmp_path, monkeypatch):
    cache, _ = _build(corpus, tmp_path)
    before = cache.rows(np.arange(5)).clone()
    real = cache_mod._decode_one

    def crash(job):
        if job[0] == "v3":
            raise KeyboardInterrupt  # the user stops a rebuild half way
        return real(job)

    monkeypatch.setattr(cache_mod, "_decode_one", crash)
    with pytest.raises(KeyboardInterrupt):
        _build(corpus, tmp_path, rebuild=True)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []
    reopened = FrameCache.open(cache.directory)
    assert torch.equal(reopened.rows(np.arange(5)), before)


def test_rows_and_positions(corpus, tmp_path):
    cache, _ = _build(corpus, tmp_path)
    rows = np.array([3, 0, 3])
    x = cache.rows(rows)
    assert tuple(x.shape) == (3, T, S, S, 3)
    assert torch.equal(x[0], cache["v3"]) and torch.equal(x[1], cache["v0"])
    shared = cache.rows(rows, positions=[5, 0])
    assert torch.equal(shared[:, 0], x[:, 5]) and torch.equal(shared[:, 1], x[:, 0])
    per_row = cache.rows(rows, positions=np.array([[0, 1], [2, 2], [4, 3]]))
    assert torch.equal(per_row[2, 0], x[2, 4]) and torch.equal(per_row[1, 1], x[1, 2])
    assert tuple(cache.rows(np.array([], dtype=np.int64)).shape) == (0, T, S, S, 3)
    assert torch.equal(cache[int(cache.row_of("v1"))], cache["v1"])


def test_row_of_and_dataset_view(corpus, tmp_path):
    cache, _ = _build(corpus, tmp_path)
    with pytest.raises(KeyError, match="excluded"):
        cache.row_of("bad")
    with pytest.raises(KeyError, match="not in frame cache"):
        cache.row_of("nope")
    view = cache.dataset_view(corpus)
    assert list(view.video_ids) == cache.video_ids
    assert cache.rows_of(view.video_ids).tolist() == [0, 1, 2, 3, 4]
    assert "v0" in cache and "bad" not in cache and "nope" not in cache


def test_pickle_reopens_memmap(corpus, tmp_path):
    cache, _ = _build(corpus, tmp_path)
    _ = cache.frames  # map it
    blob = pickle.dumps(cache)
    assert len(blob) < 20_000  # the frames themselves are not pickled
    clone = pickle.loads(blob)
    assert torch.equal(clone.rows([0, 4]), cache.rows([0, 4]))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_worker_processes_give_the_same_cache(corpus, tmp_path, backend):
    need_backend(backend)
    a, _ = _build(corpus, tmp_path, backend=backend)
    b, warned = _build(corpus, tmp_path / "other", workers=2, backend=backend)
    c, _ = _build(corpus, tmp_path / "auto", workers=None, backend=backend)  # the default: one per core
    for other in (b, c):
        assert torch.equal(a.rows(np.arange(5)), other.rows(np.arange(5)))
        assert other.excluded == a.excluded and other.video_ids == a.video_ids
        for key in ("frame_indices", "num_source_frames", "fps", "source_size"):
            assert other.meta[key] == a.meta[key], key
    assert len(warned) == 1
    assert mp.active_children() == []


def _build_in_child(ds, cache_dir, log_dir):
    real = cache_mod._decode_one

    def logged(job):
        (log_dir / f"{os.getpid()}-{job[0]}").touch()
        return real(job)

    cache_mod._decode_one = logged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FrameCache.build(ds, num_frames=T, size=S, cache_dir=cache_dir, progress=False)


def test_concurrent_builders_decode_once(corpus, tmp_path):
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("needs fork")
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_build_in_child, args=(corpus, tmp_path / "cache", log_dir)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    decoded = sorted(f.name.split("-", 1)[1] for f in log_dir.iterdir())
    assert decoded == ["bad", "v0", "v1", "v2", "v3", "v4"]  # one process decoded, the other reused
    cache, _ = _build(corpus, tmp_path)
    assert len(cache) == 5


def test_nothing_readable_raises(tmp_path, bad_videos):
    ds = make_dataset(tmp_path, {"a": bad_videos["empty"], "b": bad_videos["truncated"]})
    with pytest.raises(RuntimeError, match="no video"):
        _build(ds, tmp_path)


def test_duplicate_ids_rejected(tmp_path, videos):
    ds = make_dataset(tmp_path, {"a": videos["short"]})
    ds.records.append(ds.records[0])
    with pytest.raises(ValueError, match="more than once"):
        _build(ds, tmp_path)


def test_pyav_backend(corpus, tmp_path):
    need_backend("pyav")
    a, _ = _build(corpus, tmp_path, backend="pyav", size=48)
    assert a.settings["backend"] == "pyav"
    assert decoded_indices(a["v0"]).tolist() == sample_indices(40, T).tolist()


def test_the_progress_bar_ends_at_the_total(corpus, tmp_path, capsys):
    """The decoding bar closes at 6/6 (a failed video counts as done, and is listed, not shown as a
    bar stopped short)."""
    _build(corpus, tmp_path, progress=True)
    last = capsys.readouterr().err.rstrip().split("\r")[-1]  # the bar as it was left
    assert "6/6" in last and "100%" in last
