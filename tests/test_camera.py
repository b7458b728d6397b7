"""The synthetic corpus's moving-camera and clutter variant, and the default corpus left as it was."""
import json

import numpy as np
import pytest

from mofkit.config import SyntheticConfig
from mofkit.data import synthetic as syn
from mofkit.data.video import read_frames

CFG = SyntheticConfig(n_train=8, n_test=0, frames=20, size=32, captions_per_video=1,
                      short_frames=(1, 2), seed=5)
MOVING = SyntheticConfig(**{**CFG.__dict__, "camera": "moving", "clutter": 4})
SMALL = SyntheticConfig(n_train=4, n_test=2, frames=12, size=16, family_size=2,
                        captions_per_video=2, short_frames=(1, 1))


def _with(cfg: SyntheticConfig, **changes) -> SyntheticConfig:
    return SyntheticConfig(**{**cfg.__dict__, **changes})


def test_old_corpora_stay_current_and_moving_ones_are_told_apart(tmp_path, monkeypatch):
    root = syn.generate_corpus(tmp_path / "c", SMALL, progress=False, workers=1)
    meta = json.loads((root / "corpus.json").read_text())
    assert "camera" not in meta["config"] and "clutter" not in meta["config"]
    assert syn.corpus_status(root, SMALL) is None
    # a hand-written config that spells the defaults out is the same corpus
    meta["config"].update(camera="static", clutter=0)
    (root / "corpus.json").write_text(json.dumps(meta))
    assert syn.corpus_status(root, SMALL) is None
    calls = []
    monkeypatch.setattr(syn, "generate_corpus", lambda *a, **kw: calls.append(a))
    assert syn.ensure_corpus(root, SMALL, progress=False) == root and calls == []
    monkeypatch.undo()

    assert syn.corpus_status(root, _with(SMALL, camera="moving")) == "generated with other settings"
    assert syn.corpus_status(root, _with(SMALL, clutter=2)) == "generated with other settings"
    moving = _with(SMALL, camera="moving", clutter=2)
    other = syn.generate_corpus(tmp_path / "m", moving, progress=False, workers=1)
    recorded = json.loads((other / "corpus.json").read_text())["config"]
    assert (recorded["camera"], recorded["clutter"]) == ("moving", 2)
    assert syn.corpus_status(other, moving) is None
    assert syn.corpus_status(other, SMALL) == "generated with other settings"
    # the written videos are the moving renders (the settings reach the rendering workers)
    plan = syn.plan_corpus(moving)
    got = read_frames(other / "videos" / "video1.mp4", range(SMALL.frames)).numpy().astype(float)
    want, still = syn.render_video(plan[1], moving), syn.render_video(plan[1], SMALL)
    assert np.abs(got - want).mean() < 0.5 * np.abs(got - still).mean()


def test_moving_is_deterministic_and_keeps_the_plan():
    plan = syn.plan_corpus(MOVING)
    assert plan == syn.plan_corpus(CFG)
    for r in plan[:3]:
        a, b = syn.render_video(r, MOVING), syn.render_video(r, MOVING)
        assert a.shape == (CFG.frames, CFG.size, CFG.size, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert not np.array_equal(a, syn.render_video(r, CFG))
        assert not np.array_equal(a, syn.render_video(r, _with(MOVING, clutter=0)))
    assert not np.array_equal(syn.render_video(plan[0], MOVING), syn.render_video(plan[1], MOVING))


def _scene(record, cfg):
    rng = np.random.default_rng(record["seed"])
    syn._background(rng, cfg.size)
    tracks = [(ev, syn._track(rng, ev, cfg.size)) for ev in record["events"]]
    return tracks, syn._camera(np.random.default_rng([record["seed"], 1]), tracks, cfg)


@pytest.mark.parametrize("size,frames,short", [(16, 12, (1, 1)), (32, 20, (1, 2)), (64, 32, (2, 3))])
def test_every_event_object_stays_in_view(size, frames, short):
    """A mask of each frame's object (and a flash's halo), painted in scene coordinates, lies
    inside the window the camera shows; the camera still pans."""
    cfg = SyntheticConfig(n_train=24, n_test=0, frames=frames, size=size, short_frames=short,
                          seed=11, camera="moving")
    pad = 2 * size  # the mask canvas holds the scene from -pad to size + pad
    pans = []
    for record in syn.plan_corpus(cfg):
        tracks, views = _scene(record, cfg)
        assert views.shape == (frames, 3) and (views[:, 2] >= 1.1 * size - 1e-9).all()
        for t in range(frames):
            mask = np.zeros((size + 2 * pad, size + 2 * pad, 3))
            for ev, tr in tracks:
                if not ev["start"] <= t < ev["end"]:
                    continue
                u = syn._progress(ev, t)
                p = tr["p0"] + (tr["p1"] - tr["p0"]) * u + pad
                r = tr["r0"] + (tr["r1"] - tr["r0"]) * u
                syn._paint(mask, ev["shape"], p[0], p[1], r, (1, 1, 1), 1.0)
                if ev["action"] == syn.SHORT_ACTION:
                    syn._paint(mask, "circle", p[0], p[1], 1.5 * r, (1, 1, 1), 1.0, width=0.25 * r)
            ys, xs = np.nonzero(mask[..., 0])
            assert len(xs), (record["video_id"], t)
            cx, cy, w = views[t]
            assert cx - w / 2 <= xs.min() - pad and xs.max() + 1 - pad <= cx + w / 2, (record["video_id"], t)
            assert cy - w / 2 <= ys.min() - pad and ys.max() + 1 - pad <= cy + w / 2, (record["video_id"], t)
        pans.append(np.hypot(*(views[-1, :2] - views[0, :2])) / (frames - 1) * 64 / size)
    assert np.median(pans) > 0.5  # px per frame at 64 px: a pan, not only shake


def test_events_stay_visible_and_decisive_frames_tell_members_apart():
    cfg = _with(MOVING, n_train=16, family_size=4)
    plan = syn.plan_corpus(cfg)
    frames = {r["video_id"]: syn.render_video(r, cfg).astype(float) for r in plan}

    def near(img, colour):
        return int((np.linalg.norm(img - np.asarray(syn.COLOURS[colour], float), axis=-1) < 70).sum())

    for r in plan:  # every frame shows its event's object
        for ev in r["events"]:
            for t in range(ev["start"], ev["end"]):
                assert near(frames[r["video_id"]][t], ev["colour"]) >= 12, (r["video_id"], t, ev["phrase"])
    families: dict[int, list[dict]] = {}
    for r in plan:
        families.setdefault(r["family"], []).append(r)
    for members in families.values():
        for r in members:
            ev = next(e for e in r["events"] if e["decisive"])
            others = {next(e for e in m["events"] if e["decisive"])["colour"] for m in members} - {ev["colour"]}
            for t in range(ev["start"], ev["end"]):
                img = frames[r["video_id"]][t]
                own = near(img, ev["colour"])
                for colour in others - {"white"}:  # (a flash's halo is near white)
                    assert near(img, colour) < own / 4, (r["video_id"], t, colour)


def test_the_background_moves_and_pooled_pixels_smear():
    plan = syn.plan_corpus(CFG)

    def still_share(cfg):  # median over pixels of the consecutive-frame difference, per video
        return [float(np.median(np.abs(np.diff(syn.render_video(r, cfg).astype(float), axis=0))))
                for r in plan]

    assert still_share(CFG) == [0.0] * len(plan)  # a static camera: the background never changes
    assert min(still_share(_with(CFG, camera="moving"))) > 1.0

    def smear(cfg, record):  # how far a segment's per-pixel max is from its closest frame
        seg = syn.render_video(record, cfg)[4:12].astype(float)  # (8, H, W, 3)
        return min(float(np.abs(seg.max(axis=0) - f).mean()) for f in seg)

    static = np.mean([smear(CFG, r) for r in plan])
    moving = np.mean([smear(MOVING, r) for r in plan])
    assert moving > 1.3 * static
    # with no events at all, a static segment's max is every one of its frames
    empty = {"events": [], "seed": plan[0]["seed"]}
    assert smear(CFG, empty) == 0.0 and smear(_with(CFG, camera="moving"), empty) > 2.0


def test_clutter_moves_under_the_events_in_dull_colours():
    plan = syn.plan_corpus(CFG)
    cluttered = _with(CFG, clutter=12)
    for r in plan[:4]:
        clean, busy = syn.render_video(r, CFG), syn.render_video(r, cluttered)
        assert not np.array_equal(clean, busy)
        # the blobs drift: with a static camera the frames still change outside the events
        assert np.abs(np.diff(busy.astype(float), axis=0)).mean() > np.abs(np.diff(clean.astype(float), axis=0)).mean()
        # drawn under the events: every pixel a clean frame shows in an object's full colour, the
        # cluttered frame shows in that colour too
        for ev in r["events"]:
            colour = np.asarray(syn.COLOURS[ev["colour"]], np.uint8)
            for t in range(ev["start"], ev["end"]):
                solid = (clean[t] == colour).all(axis=-1)
                assert solid.sum() > 0 and (busy[t][solid] == colour).all(), (r["video_id"], t)
    # no clutter pixel comes near an event colour, whatever a blob's shade and texture
    lo, hi = syn._CLUTTER_SHADE
    swing = 1.5 * syn._CLUTTER_TEXTURE
    extremes = np.array([np.asarray(tone, float) * f for tone in syn._CLUTTER_TONES
                         for f in (lo * (1 - swing), lo * (1 + swing), hi * (1 - swing), hi * (1 + swing))])
    targets = np.array(list(syn.COLOURS.values()), float)
    assert np.linalg.norm(extremes[:, None] - targets[None], axis=-1).min() > 90


def test_moving_rendering_is_the_same_on_every_numpy_simd_level(tmp_path):
    import os
    import subprocess
    import sys

    ref = np.stack([syn.render_video(r, MOVING) for r in syn.plan_corpus(MOVING)[:3]])
    code = ("import numpy as np, sys; from mofkit.config import SyntheticConfig; "
            "from mofkit.data import synthetic as syn; cfg = SyntheticConfig(**eval(sys.argv[1])); "
            "np.save(sys.argv[2], np.stack([syn.render_video(r, cfg) for r in syn.plan_corpus(cfg)[:3]]))")
    for i, disabled in enumerate(("X86_V4 AVX512_ICL AVX512_SPR", "X86_V3 X86_V4 AVX512_ICL AVX512_SPR")):
        out = tmp_path / f"r{i}.npy"
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        subprocess.run([sys.executable, "-c", code, repr(MOVING.__dict__), str(out)], check=True, env=env)
        assert np.array_equal(np.load(out), ref), disabled


@pytest.mark.parametrize("change,message", [
    ({"camera": "pan"}, r"camera='pan': use one of \('static', 'moving'\)"),
    ({"clutter": -1}, r"clutter=-1: use a whole number"),
    ({"clutter": 2.5}, r"clutter=2.5: use a whole number"),
    ({"clutter": True}, r"clutter=True: use a whole number"),
    ({"clutter": syn._CLUTTER_MAX + 1}, rf"clutter={syn._CLUTTER_MAX + 1}: .* in \[0, {syn._CLUTTER_MAX}\]"),
])
def test_bad_camera_or_clutter_names_the_parameter(change, message):
    with pytest.raises(ValueError, match=message):
        syn.plan_corpus(_with(SMALL, **change))
    syn.plan_corpus(_with(SMALL, camera="moving", clutter=syn._CLUTTER_MAX))
