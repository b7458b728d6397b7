"""The synthetic corpus: real mp4s, MSR-VTT annotations, determinism, hard negatives, short events."""
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from mofkit.config import SyntheticConfig
from mofkit.data import synthetic as syn
from mofkit.data.sampling import sample_indices
from mofkit.data.video import probe_video, read_frames

# 20 frames so that a 2-frame flash is a tenth of the video.
CFG = SyntheticConfig(n_train=16, n_test=8, frames=20, size=32, captions_per_video=3,
                      short_frames=(1, 2), seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return syn.generate_corpus(tmp_path_factory.mktemp("syn") / "c", CFG, progress=False, workers=1)


def _ids(n):
    return [f"video{i}" for i in range(n)]


def test_annotation_files_parse_as_msrvtt(corpus):
    data = json.loads((corpus / "MSRVTT_data.json").read_text())
    assert [v["video_id"] for v in data["videos"]] == _ids(24)
    assert [v["split"] for v in data["videos"]] == ["train"] * 16 + ["test"] * 8
    assert [v["id"] for v in data["videos"]] == list(range(24))
    sentences = pd.DataFrame(data["sentences"])
    assert list(sentences.sen_id) == list(range(16 * 3 + 8))
    assert sentences.groupby("video_id").size().to_dict() == {**{v: 3 for v in _ids(16)},
                                                              **{v: 1 for v in _ids(24)[16:]}}
    train = pd.read_csv(corpus / "MSRVTT_train.9k.csv")
    assert list(train.columns) == ["video_id"] and list(train.video_id) == _ids(16)
    test = pd.read_csv(corpus / "MSRVTT_JSFUSION_test.csv")
    assert list(test.columns) == ["key", "vid_key", "video_id", "sentence"]
    assert list(test.key) == [f"ret{j}" for j in range(8)]
    assert list(test.vid_key) == [f"msr{i}" for i in range(16, 24)]
    assert list(test.video_id) == _ids(24)[16:]
    # Captions hold commas: the quoted csv field reads back as the sentence in MSRVTT_data.json.
    caption_of = dict(zip(sentences.video_id, sentences.caption))
    assert list(test.sentence) == [caption_of[v] for v in test.video_id]
    assert all("," in s for s in test.sentence if s.count(" then ") > 0)


def test_annotations_round_trip_through_the_dataset_reader(corpus):
    from mofkit.data.datasets import load_dataset

    train, test = load_dataset("synthetic", corpus, "train"), load_dataset("synthetic", corpus, "test")
    assert train.video_ids == _ids(16) and test.video_ids == _ids(24)[16:]
    assert all(len(r.captions) == 3 for r in train) and all(len(r.captions) == 1 for r in test)
    assert all(r.path == corpus / "videos" / f"{r.video_id}.mp4" for r in list(train) + list(test))


def test_videos_decode_with_decord_and_pyav_alike(corpus):
    path = corpus / "videos" / "video5.mp4"
    for backend in ("decord", "pyav"):
        info = probe_video(path, backend)
        assert (info.num_frames, info.width, info.height, info.fps) == (20, 32, 32, 8.0)
    a = read_frames(path, range(20), backend="decord").numpy()
    b = read_frames(path, range(20), backend="pyav").numpy()
    assert a.shape == (20, 32, 32, 3) and np.array_equal(a, b)


def test_pixels_show_the_timeline(corpus):
    """Every frame of every event holds a blob of the event's object colour."""
    timeline = syn.load_timeline(corpus)
    for vid in timeline:
        frames = read_frames(corpus / "videos" / f"{vid}.mp4", range(CFG.frames)).numpy().astype(float)
        for ev in timeline[vid]:
            colour = np.asarray(syn.COLOURS[ev["colour"]], float)
            for t in range(ev["start"], ev["end"]):
                near = np.linalg.norm(frames[t] - colour, axis=-1) < 70
                assert near.sum() >= 12, (vid, t, ev)


def test_captions_mention_the_events_in_order(corpus):
    timeline = syn.load_timeline(corpus)
    data = json.loads((corpus / "MSRVTT_data.json").read_text())
    for sen in data["sentences"]:
        pos = 0
        for ev in timeline[sen["video_id"]]:
            words = "|".join(syn.ACTION_WORDS[ev["action"]])
            m = re.compile(rf"\b{ev['colour']} {ev['shape']} ({words})\b").search(sen["caption"], pos)
            assert m is not None, (sen["caption"], ev)
            pos = m.end()


def test_families_are_hard_negatives_within_one_split(corpus):
    timeline, families = syn.load_timeline(corpus), syn.load_families(corpus)
    data = json.loads((corpus / "MSRVTT_data.json").read_text())
    split = {v["video_id"]: v["split"] for v in data["videos"]}
    members: dict[int, list[str]] = {}
    for vid, fam in families.items():
        members.setdefault(fam, []).append(vid)
    assert sorted(len(m) for m in members.values()) == [CFG.family_size] * 6
    for vids in members.values():
        assert len({split[v] for v in vids}) == 1
        events = [timeline[v] for v in vids]
        first = events[0]
        decisive = [e["decisive"] for e in first].index(True)
        for ev in events:
            assert [(e["start"], e["end"], e["action"], e["decisive"]) for e in ev] == \
                   [(e["start"], e["end"], e["action"], e["decisive"]) for e in first]
            same = [i for i in range(len(ev)) if i != decisive]
            assert [ev[i]["phrase"] for i in same] == [first[i]["phrase"] for i in same]
        # members differ from each other in the decisive object's colour
        assert len({ev[decisive]["colour"] for ev in events}) == len(events)
    signatures = [tuple(e["phrase"] for e in ev) for ev in timeline.values()]
    assert len(set(signatures)) == len(signatures)


def test_default_corpus_has_short_decisive_events_that_few_frames_miss():
    cfg = SyntheticConfig()
    videos = syn.plan_corpus(cfg)
    assert len(videos) == cfg.n_train + cfg.n_test
    events = [e for v in videos for e in v["events"]]
    assert {e["end"] - e["start"] for e in events if e["short"]} <= set(range(2, 4))
    assert all(e["end"] - e["start"] <= cfg.frames / 10 for e in events if e["short"])
    assert all(any(e["short"] for e in v["events"]) for v in videos)
    assert all(2 <= len(v["events"]) <= 4 for v in videos)
    decisive = [e for e in events if e["decisive"]]
    assert len(decisive) == len(videos)
    assert abs(np.mean([e["short"] for e in decisive]) - cfg.short_prob) < 0.06

    def hit_rate(k):
        idx = sample_indices(cfg.frames, k, "uniform")
        return np.mean([syn.events_hit([e], idx)[0] for e in decisive if e["short"]])

    rates = [hit_rate(k) for k in (2, 4, 8, 16)]
    assert rates[0] < 0.25 and rates[1] < 0.45 and 0.5 < rates[2] < 0.9 and rates[3] == 1.0


def test_same_seed_same_bytes_and_frames_other_seed_differs(corpus, tmp_path):
    again = syn.generate_corpus(tmp_path / "again", CFG, progress=False, workers=2)
    for name in ("corpus.json", "MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"):
        assert (corpus / name).read_bytes() == (again / name).read_bytes(), name
    for vid in _ids(24):
        assert (corpus / "videos" / f"{vid}.mp4").read_bytes() == \
               (again / "videos" / f"{vid}.mp4").read_bytes(), vid
        a = read_frames(corpus / "videos" / f"{vid}.mp4", range(CFG.frames)).numpy()
        b = read_frames(again / "videos" / f"{vid}.mp4", range(CFG.frames)).numpy()
        assert np.array_equal(a, b), vid
    other_cfg = SyntheticConfig(**{**CFG.__dict__, "seed": 4, "n_train": 4, "n_test": 0})
    other = syn.generate_corpus(tmp_path / "other", other_cfg, progress=False, workers=1)
    plan, other_plan = syn.plan_corpus(CFG), syn.plan_corpus(other_cfg)
    assert [v["captions"] for v in plan[:4]] != [v["captions"] for v in other_plan]
    a = read_frames(corpus / "videos" / "video0.mp4", range(CFG.frames)).numpy()
    b = read_frames(other / "videos" / "video0.mp4", range(CFG.frames)).numpy()
    assert not np.array_equal(a, b)


def _encode(tmp_path, frames, name, x264_params=None, monkeypatch=None) -> bytes:
    if x264_params is not None:
        monkeypatch.setitem(syn._X264_OPTIONS, "x264-params", x264_params)
    syn.write_mp4(tmp_path / name, frames, fps=CFG.fps)
    return (tmp_path / name).read_bytes()


def test_encoding_gives_the_same_bytes_in_any_process_and_on_any_cpu(tmp_path, monkeypatch):
    """x264 picks its algorithms by CPU, and its AVX-512 path was not even repeatable in a process
    that had loaded torch (as this one has): the corpus encodes with the canonical ones."""
    import subprocess
    import sys

    import torch  # noqa: F401  (the process state in which encodes were seen to differ)

    plan = syn.plan_corpus(CFG)
    frames = syn.render_video(plan[8], CFG)  # a video whose encoding differs between code paths
    ref = _encode(tmp_path, frames, "ref.mp4")
    assert all(_encode(tmp_path, frames, f"again{i}.mp4") == ref for i in range(8))
    # A fresh interpreter that never imported torch writes the same file.
    np.save(tmp_path / "frames.npy", frames)
    code = ("import numpy as np, sys; from mofkit.data import synthetic as syn; "
            "syn.write_mp4(sys.argv[2], np.load(sys.argv[1]), fps=%d)" % CFG.fps)
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "frames.npy"), str(tmp_path / "fresh.mp4")],
                   check=True)
    assert (tmp_path / "fresh.mp4").read_bytes() == ref
    # The machines other people have: x264 limited to older instruction sets gives the same bytes.
    for asm in ("AVX2", "SSE2"):
        got = _encode(tmp_path, frames, f"{asm}.mp4", f"cpu-independent=1:asm={asm}", monkeypatch)
        assert got == ref, asm
    # The test can fail: without cpu-independent, some code path (AVX2 here) encodes other bytes.
    fast = [_encode(tmp_path, frames, f"fast_{asm}.mp4", f"asm={asm}", monkeypatch) for asm in ("AVX2", "SSE2")]
    assert any(f != ref for f in fast)


def test_rendering_is_the_same_on_every_numpy_simd_level(tmp_path):
    """numpy dispatches its loops by CPU (AVX-512, AVX2, SSE4.2); rendering uses only arithmetic
    whose result does not depend on the loop that computes it."""
    import subprocess
    import sys

    plan = syn.plan_corpus(CFG)[:6]
    ref = np.stack([syn.render_video(r, CFG) for r in plan])
    code = ("import numpy as np, sys; from mofkit.config import SyntheticConfig; "
            "from mofkit.data import synthetic as syn; cfg = SyntheticConfig(**eval(sys.argv[1])); "
            "np.save(sys.argv[2], np.stack([syn.render_video(r, cfg) for r in syn.plan_corpus(cfg)[:6]]))")
    cfg_repr = repr(CFG.__dict__)
    import os
    for i, disabled in enumerate(("X86_V4 AVX512_ICL AVX512_SPR", "X86_V3 X86_V4 AVX512_ICL AVX512_SPR")):
        out = tmp_path / f"r{i}.npy"
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        subprocess.run([sys.executable, "-c", code, cfg_repr, str(out)], check=True, env=env)
        assert np.array_equal(np.load(out), ref), disabled


SMALL = SyntheticConfig(n_train=4, n_test=2, frames=12, size=16, family_size=2,
                        captions_per_video=2, short_frames=(1, 1))


def _count_generations(monkeypatch) -> list:
    calls = []
    real = syn.generate_corpus

    def counted(root, cfg=None, **kw):
        calls.append(cfg)
        return real(root, cfg, **kw)

    monkeypatch.setattr(syn, "generate_corpus", counted)
    return calls


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# sha256 of render_video's arrays and of the plan, recorded once: the corpus a seed
# describes must not change when the code does (a new setting must default to the old frames).
GOLDEN = {
    "small": (SyntheticConfig(n_train=4, n_test=0, frames=20, size=32, captions_per_video=3,
                              short_frames=(1, 2), seed=3),
              "b44472980435fa1c0ef534f11596e5bc190b2f1f08dc9bbebbb0ee5bbffe21c2",
              ["9d0505aa8b32f831912212079247afbb809373d9d640e4b1b3ac231b7bb508c5",
               "5eb70575d8cd6739d6a3c6dc973561b47893e4f65679c8b23644ab35e3947e03",
               "fb1dc8d07d97adfa3bdc28a8ff8b81eeaf7ed71329e764058cfb952da0bb01ea",
               "2f13146fef518d21f1971be1f57676f3b59e24f6f603e922e7ac6db8b21d85c2"]),
    "default64": (SyntheticConfig(n_train=4, n_test=0, seed=7),
                  "b945294df22c3fe841decad9c6d91726b07a93bc6b2ddc026ed8ed8dd42581a4",
                  ["d21841567a98ac1f507bef196abc0002bb22d6638e2e657f99031a5d246a2273",
                   "e67026850f1f2028991149d24be702d2947b93a78c461df240f4beca49cc248b",
                   "d7815c67cddf0e56c8edd3c232a7c7f20ac3538483bbe2c71282f60b9213fe26",
                   "e4eaf9df89d618933fab42e828a3213e268562cda4ecd71aa4b008fcbf5deaa2"]),
}
# the files of SMALL's corpus that do not go through the video encoder (mp4 bytes depend on
# the libx264 build)
GOLDEN_FILES = {
    "corpus.json": "e98bed13c8e9a53b4d8beb388cb57545f5c3c023b160e6386c2f59007e2d210a",
    "MSRVTT_data.json": "8549a48a7168031b84b7929e87c941fa42b4db9dd1a167745062aab8e584dda7",
    "MSRVTT_train.9k.csv": "986aaf351c3605b7d16ddb635580a94ed67d13e782fcc6f065b8d62716b3f059",
    "MSRVTT_JSFUSION_test.csv": "43e0d2528b2606b7dda715402a16b78990be06276a2bf5ac9e32f8c9636ea590",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_videos_and_plan_are_byte_identical_to_the_recorded_ones(name):
    cfg, plan_hash, video_hashes = GOLDEN[name]
    plan = syn.plan_corpus(cfg)
    assert _sha(json.dumps(plan, sort_keys=True).encode()) == plan_hash
    assert [_sha(syn.render_video(r, cfg).tobytes()) for r in plan[:4]] == video_hashes


def test_annotation_files_are_byte_identical_to_the_recorded_ones(tmp_path):
    root = syn.generate_corpus(tmp_path / "c", SMALL, progress=False, workers=1)
    assert {n: _sha((root / n).read_bytes()) for n in GOLDEN_FILES} == GOLDEN_FILES


def test_ensure_corpus_generates_only_when_missing_or_changed(tmp_path, monkeypatch):
    calls = _count_generations(monkeypatch)
    root = tmp_path / "c"
    assert syn.ensure_corpus(root, SMALL, progress=False) == root
    assert calls == [SMALL]
    (root / "notes.txt").write_text("not the generator's")
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")}
    syn.ensure_corpus(root, SMALL, progress=False)
    assert calls == [SMALL]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")} == stamps

    bigger = SyntheticConfig(**{**SMALL.__dict__, "n_train": 6})
    syn.ensure_corpus(root, bigger, progress=False)
    assert calls == [SMALL, bigger]
    assert json.loads((root / "corpus.json").read_text())["config"]["n_train"] == 6
    assert len(list((root / "videos").glob("*.mp4"))) == 8
    assert (root / "notes.txt").read_text() == "not the generator's"

    # fewer videos than before: the surplus files of the old corpus go
    syn.ensure_corpus(root, SMALL, progress=False)
    assert sorted(p.name for p in (root / "videos").iterdir()) == sorted(f"{v}.mp4" for v in _ids(6))

    monkeypatch.setattr(syn, "FORMAT_VERSION", syn.FORMAT_VERSION + 1)
    assert syn.corpus_status(root, SMALL).startswith("format version")
    syn.ensure_corpus(root, SMALL, progress=False)
    assert len(calls) == 4 and syn.corpus_status(root, SMALL) is None


def test_an_interrupted_generation_is_not_taken_for_a_finished_one(tmp_path, monkeypatch):
    root = syn.generate_corpus(tmp_path / "c", SMALL, progress=False, workers=1)
    assert syn.corpus_status(root, SMALL) is None

    def crash(rec, cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(syn, "render_video", crash)
    with pytest.raises(KeyboardInterrupt):
        syn.generate_corpus(root, SMALL, overwrite=True, progress=False, workers=1)
    assert not (root / "corpus.json").exists() and (root / "corpus.incomplete").exists()
    assert syn.corpus_status(root, SMALL) == "no corpus yet"
    monkeypatch.undo()
    calls = _count_generations(monkeypatch)
    syn.ensure_corpus(root, SMALL, progress=False)
    assert calls == [SMALL] and syn.corpus_status(root, SMALL) is None
    assert not (root / "corpus.incomplete").exists()

    (root / "videos" / "video3.mp4").unlink()
    assert "missing" in syn.corpus_status(root, SMALL)


def test_generate_refuses_to_overwrite_without_being_asked(tmp_path):
    root = syn.generate_corpus(tmp_path / "c", SMALL, progress=False, workers=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        syn.generate_corpus(root, SMALL, progress=False)
    foreign = tmp_path / "msrvtt"
    (foreign / "videos").mkdir(parents=True)
    (foreign / "videos" / "video0.mp4").write_bytes(b"someone else's video")
    (foreign / "MSRVTT_data.json").write_text("{}")
    with pytest.raises(FileExistsError, match="MSRVTT_data.json, videos/video0.mp4"):
        syn.generate_corpus(foreign, SMALL, progress=False)
    # ensure_corpus pointed at a real dataset by mistake leaves it alone too
    with pytest.raises(FileExistsError):
        syn.ensure_corpus(foreign, SMALL, progress=False)
    assert (foreign / "videos" / "video0.mp4").read_bytes() == b"someone else's video"
    assert (foreign / "MSRVTT_data.json").read_text() == "{}"


def test_bad_settings_name_the_parameter():
    with pytest.raises(ValueError, match="frames=7"):
        syn.plan_corpus(SyntheticConfig(frames=7))
    # short videos hold fewer events; every plan still fits exactly
    for frames in (8, 16):
        videos = syn.plan_corpus(SyntheticConfig(frames=frames, n_train=200, n_test=0))
        assert all(v["events"][-1]["end"] == frames for v in videos)
        assert all(e["end"] - e["start"] >= 4 for v in videos for e in v["events"] if not e["short"])
    with pytest.raises(ValueError, match="family_size"):
        syn.plan_corpus(SyntheticConfig(family_size=12))
    with pytest.raises(ValueError, match="size=33 px: use an even size"):
        syn.plan_corpus(SyntheticConfig(size=33))
    with pytest.raises(ValueError, match="short_frames"):
        syn.plan_corpus(SyntheticConfig(short_frames=(3, 2)))
    with pytest.raises(FileNotFoundError, match="ensure_corpus"):
        syn.load_timeline("/nonexistent/corpus")


def test_gallery_shows_strips_timelines_and_captions(corpus, tmp_path):
    from mofkit.viz.gallery import corpus_gallery, save_gallery

    fig = corpus_gallery(corpus, n_videos=4, frames_per_video=4, split="test", seed=1)
    strips = [ax for ax in fig.axes if ax.images]
    assert len(strips) == 4
    assert strips[0].images[0].get_array().shape == (32, 4 * 32, 3)  # (H, K*W, 3)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    test = pd.read_csv(corpus / "MSRVTT_JSFUSION_test.csv")
    assert sum(any(s in t.replace("\n", " ") for t in texts) for s in test.sentence) == 4
    out = save_gallery(corpus, tmp_path / "g.png", n_videos=2, frames_per_video=4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
