"""The synthetic corpus: real mp4s, MSR-VTT annotations, deterministic, hard negatives, short events."""
import json

import numpy as np
import pytest

from mofkit.config import SyntheticConfig
from mofkit.data import synthetic as syn
from mofkit.data.datasets import load_dataset
from mofkit.data.sampling import sample_indices
from mofkit.data.video import probe_video, read_frames

CFG = SyntheticConfig(n_train=16, n_test=8, frames=16, size=32, captions_per_video=3, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return syn.generate_corpus(tmp_path_factory.mktemp("syn"), CFG, progress=False, workers=1)


def test_annotations_load_through_the_msrvtt_reader(corpus):
    train = load_dataset("synthetic", corpus, "train")
    test = load_dataset("synthetic", corpus, "test")
    assert len(train) == 16 and len(test) == 8
    assert all(len(r.captions) == 3 for r in train) and all(len(r.captions) == 1 for r in test)
    assert not set(train.video_ids) & set(test.video_ids)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_videos_decode_with_both_backends(corpus, backend):
    info = probe_video(corpus / "videos" / "video0.mp4", backend)
    assert (info.num_frames, info.width, info.height, info.fps) == (16, 32, 32, 8.0)


def test_captions_describe_the_timeline_in_order(corpus):
    timeline = syn.load_timeline(corpus)
    for rec in load_dataset("synthetic", corpus, "train"):
        events = timeline[rec.video_id]
        assert 2 <= len(events) <= 4
        assert events[0]["start"] == 0 and events[-1]["end"] == CFG.frames
        for cap in rec.captions:
            pos = [cap.index(f"{e['colour']} {e['shape']} {e['action']}") for e in events]
            assert pos == sorted(pos), cap


def test_family_members_differ_in_exactly_the_decisive_event(corpus):
    timeline, families = syn.load_timeline(corpus), syn.load_families(corpus)
    by_family = {}
    for vid, fam in families.items():
        by_family.setdefault(fam, []).append(timeline[vid])
    assert all(len(m) >= 2 for m in by_family.values())
    for members in by_family.values():
        keys = [tuple((e["shape"], e["colour"], e["action"]) for e in ev) for ev in members]
        assert len(set(keys)) == len(keys)
        for ev in members:
            assert [e["start"] for e in ev] == [e["start"] for e in members[0]]
            d = [i for i, e in enumerate(ev) if e["decisive"]]
            assert len(d) == 1
            same = [i for i in range(len(ev)) if i != d[0]]
            assert all(ev[i]["shape"] == members[0][i]["shape"] for i in same)
    # test families stay in the test split
    test_ids = set(load_dataset("synthetic", corpus, "test").video_ids)
    fam_of_test = {families[v] for v in test_ids}
    assert all(families[v] not in fam_of_test for v in families if v not in test_ids)


def test_short_decisive_events_are_missed_by_few_uniform_frames():
    cfg = SyntheticConfig(n_train=400, n_test=0, frames=32)
    videos = syn.plan_corpus(cfg)
    short = [e for v in videos for e in v["events"] if e["decisive"] and e["end"] - e["start"] <= 3]
    assert len(short) / len(videos) > 0.5  # most families hinge on a tenth of the video or less

    def hit(k):
        idx = sample_indices(cfg.frames, k, "uniform")
        return np.mean([any(e["start"] <= i < e["end"] for i in idx) for e in short])
    rates = [hit(k) for k in (2, 4, 8, 16)]
    assert rates == sorted(rates) and rates[-1] == 1.0 and rates[0] < 0.3


def test_deterministic_from_the_seed(corpus, tmp_path):
    again = syn.generate_corpus(tmp_path / "again", CFG, progress=False, workers=2)
    for name in ("MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"):
        assert (corpus / name).read_bytes() == (again / name).read_bytes()
    a = read_frames(corpus / "videos" / "video5.mp4", range(16))
    b = read_frames(again / "videos" / "video5.mp4", range(16))
    assert np.array_equal(a.numpy(), b.numpy())
    other = syn.plan_corpus(SyntheticConfig(n_train=16, n_test=8, frames=16, size=32, seed=4))
    assert [v["captions"] for v in other] != [v["captions"] for v in syn.plan_corpus(CFG)]


def test_ensure_corpus_regenerates_only_on_change(tmp_path):
    small = SyntheticConfig(n_train=4, n_test=4, frames=8, size=16, family_size=2)
    root = syn.ensure_corpus(tmp_path / "c", small, progress=False)
    stamp = (root / "corpus.json").stat().st_mtime_ns
    syn.ensure_corpus(root, small, progress=False)
    assert (root / "corpus.json").stat().st_mtime_ns == stamp
    bigger = SyntheticConfig(n_train=6, n_test=4, frames=8, size=16, family_size=2)
    syn.ensure_corpus(root, bigger, progress=False)
    assert json.loads((root / "corpus.json").read_text())["config"]["n_train"] == 6
    assert len(list((root / "videos").glob("*.mp4"))) == 10
    # an interrupted generation (no corpus.json) is not taken for a finished one
    (root / "corpus.json").unlink()
    assert syn.corpus_status(root, bigger) == "no corpus yet"
    with pytest.raises(FileExistsError):
        syn.ensure_corpus(root, bigger, progress=False)
        syn.generate_corpus(root, bigger, progress=False)


def test_gallery_renders(corpus, tmp_path):
    from mofkit.viz.gallery import save_gallery

    out = save_gallery(corpus, tmp_path / "g.png", n_videos=3, frames_per_video=4)
    assert out.stat().st_size > 5000
