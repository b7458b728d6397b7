"""The regime study, kept runs, the stills corpus and the pretrain stage, on the smoke profile."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mofkit.config import get_config

pytestmark = pytest.mark.slow


# -- the stills ------------------------------------------------------------------------------------

def test_stills_are_deterministic_single_events_without_temporal_words(tmp_path):
    from mofkit.data.stills import class_prompts, classes, ensure_stills, load_stills, plan_stills

    cfg = get_config("smoke", {"pretrain.n_train": 40, "pretrain.n_test": 8}).pretrain
    assert len(classes()) == 240 and len(set(class_prompts())) == 240
    plan = plan_stills(cfg)
    assert plan == plan_stills(cfg) and len(plan) == 48
    assert [p["split"] for p in plan].count("test") == 8
    temporal = re.compile(r"\b(then|after|next|finally|first|end)\b")
    for p in plan:
        assert not temporal.search(p["caption"]), p["caption"]
        assert p["colour"] in p["caption"] and p["shape"] in p["caption"]
    a = load_stills(ensure_stills(tmp_path / "a", cfg, progress=False))
    b = load_stills(ensure_stills(tmp_path / "b", cfg, progress=False))
    assert a.images.shape == (48, cfg.size, cfg.size, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert a.images.std() > 10  # something is drawn, not a blank array
    # each still shows its own colour: the object's pixels are far from the background's
    mtime = (tmp_path / "a" / "images.npy").stat().st_mtime_ns
    ensure_stills(tmp_path / "a", cfg, progress=False)  # the same corpus: nothing rewritten
    assert (tmp_path / "a" / "images.npy").stat().st_mtime_ns == mtime
    other = get_config("smoke", {"pretrain.n_train": 41, "pretrain.n_test": 8}).pretrain
    assert len(load_stills(ensure_stills(tmp_path / "a", other, progress=False)).captions) == 49


def test_the_soft_target_loss_is_clips_loss_when_every_class_is_unique():
    from mofkit.models.loss import contrastive_loss
    from mofkit.train.pretrain import contrastive_soft_loss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    unique = torch.arange(6)
    assert torch.allclose(contrastive_soft_loss(img, txt, scale, unique),
                          contrastive_loss(txt, img, scale), atol=1e-6)
    # two stills of one class: swapping their images changes nothing
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    swapped = img[[1, 0, 2, 3, 4, 5]]
    assert torch.allclose(contrastive_soft_loss(img, txt, scale, labels),
                          contrastive_soft_loss(swapped, txt, scale, labels), atol=1e-6)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from mofkit.train.pretrain import run_pretrain

    root = tmp_path_factory.mktemp("pretrain")
    cfg = get_config("smoke", {"pretrain.root": str(root / "stills"), "pretrain.epochs": 2,
                               "pretrain.dir": str(root / "out")})
    return cfg, root, run_pretrain(cfg, progress=False)


def test_pretrain_writes_towers_that_a_video_model_loads(pretrained, monkeypatch):
    from mofkit.models import create_retrieval_model
    from mofkit.train import pretrain as P

    cfg, root, path = pretrained
    doc = json.loads((path.parent / "pretrain.json").read_text())
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    assert doc["history"][-1]["loss"] < doc["history"][0]["loss"]
    assert 0 <= doc["history"][-1]["zero_shot_acc"] <= 100
    for attr in ("colour", "shape", "action"):
        assert 0 <= doc["history"][-1][f"{attr}_acc"] <= 100
    assert path.parent.parent == root / "out" and path.parent.name.startswith(cfg.model.arch + "-")
    assert not (path.parent / "state.pt").exists()  # the resume state goes once the towers are written
    towers = torch.load(path, weights_only=True)
    video = create_retrieval_model(cfg.model.arch, str(path), temporal_head="meanP").model
    fresh = create_retrieval_model(cfg.model.arch, None, temporal_head="meanP").model
    for k, v in towers.items():
        assert torch.equal(video.clip.state_dict()[k], v), k
    assert any(not torch.equal(fresh.clip.state_dict()[k], v) for k, v in towers.items())
    # a finished pretraining with the same settings is reused, not redone
    monkeypatch.setattr("mofkit.data.stills.ensure_stills", lambda *a, **k: pytest.fail("retrained"))
    assert P.run_pretrain(cfg, progress=False) == path
    other = get_config("smoke", {"pretrain.root": str(root / "stills"), "pretrain.dir": str(root / "out")})
    assert P.pretrained_done(other) is None and P.pretrain_dir(other) != path.parent  # other epochs
    # a run that names the towers "stills" gets them (and its own settings' pretraining)
    named = get_config("smoke", {**{f"pretrain.{k}": v for k, v in (("root", str(root / "stills")),
                                                                     ("epochs", 2), ("dir", str(root / "out")))},
                                 "model.pretrained": "stills"})
    assert P.resolve_model_config(named, progress=False).pretrained == str(path)
    assert P.resolve_model_config(get_config("smoke")).pretrained is None


def test_the_pretrain_command_prints_the_attribute_accuracies_and_its_gate(pretrained, capsys):
    from mofkit.cli import main

    cfg, root, path = pretrained
    sets = ["--set", f"pretrain.root={root / 'stills'}", "--set", "pretrain.epochs=2",
            "--set", f"pretrain.dir={root / 'out'}"]
    assert main(["pretrain", "--profile", "smoke", *sets, "--set", "pretrain.gate=0"]) == 0
    out = capsys.readouterr().out
    assert "colour" in out and "shape" in out and "action" in out and "gate (0 % for each attribute): passed" in out
    assert str(path) in out
    # the same towers (the gate is no setting of theirs) fail a gate no tower can pass: exit code 1
    assert main(["pretrain", "--profile", "smoke", *sets, "--set", "pretrain.gate=100.5"]) == 1
    assert "FAILED for colour, shape, action" in capsys.readouterr().out


def test_pretrain_resumes_after_its_last_finished_epoch(tmp_path, monkeypatch):
    from mofkit.train import pretrain as P

    cfg = get_config("smoke", {"pretrain.root": str(tmp_path / "stills"), "pretrain.epochs": 2,
                               "pretrain.dir": str(tmp_path / "out")})
    calls = []
    real = P.zero_shot_accuracy

    def stop_after_first(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(P, "zero_shot_accuracy", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        P.run_pretrain(cfg, progress=False)
    state = torch.load(P.pretrain_dir(cfg) / "state.pt", weights_only=False)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    monkeypatch.setattr(P, "zero_shot_accuracy", real)
    P.run_pretrain(cfg, progress=False)
    doc = json.loads((P.pretrain_dir(cfg) / "pretrain.json").read_text())
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    assert doc["history"][0] == state["history"][0]  # epoch 1 was not trained again


# -- the regime study ------------------------------------------------------------------------------

def test_regimes_have_their_own_corpora_and_the_pretrained_start_its_learning_rates(tmp_path):
    from mofkit.lab.names import REGIMES
    from mofkit.lab.grids import corpus_root, get_study, regime_overrides

    cfg = get_config("cpu")
    roots = {r: regime_overrides(cfg, r, tmp_path)["data.root"] for r in REGIMES}
    assert roots["base"] == "data/synthetic-t2000" == roots["pretrained start"] == roots["family batches"]
    assert len(set(roots.values())) == 4  # the corpus regimes' own corpora, and the base corpus
    assert regime_overrides(cfg, "family batches", tmp_path)["train.family_batches"] is True
    assert "train.family_batches" not in regime_overrides(cfg, "base", tmp_path)
    assert roots["longer short events"] == "data/synthetic-t2000_short_frames-4-6"
    assert corpus_root(cfg, {"synthetic.n_train": 250}) == "data/synthetic-t2000_n_train-250"
    over = regime_overrides(cfg, "pretrained start", tmp_path)
    assert over["model.pretrained"] == "stills"
    assert (over["train.lr"], over["train.tower_lr"]) == (cfg.study.finetune_lr, cfg.study.finetune_tower_lr)
    assert over["train.eval_every"] == cfg.study.eval_every == 2 and over["synthetic.n_test"] == 2000
    study = get_study(cfg, "regimes", tmp_path)
    assert study.needs == ("pretrain",) and study.seeds == (0, 1, 2, 3, 4)
    assert {s["regime"] for s in study.settings} == set(REGIMES)
    assert {s["label"] for s in study.settings} == {"uniform", "rand", "MOF"}
    controls = get_study(cfg, "controls", tmp_path)
    assert [s["label"] for s in controls.settings] == ["uniform", "rand", "frozen", "oracle", "MOF",
                                                      "MOF (first order)"]
    # the base regime's runs are the controls study's runs: one folder each
    base = {s["folder"] for s in study.settings if s["regime"] == "base"}
    assert base <= {s["folder"] for s in controls.settings}
    with pytest.raises(ValueError, match="unknown regime"):
        regime_overrides(cfg, "nope", tmp_path)
    # a real dataset: no corpus to vary, no families; the base and the pretrained start remain
    paper = get_config("paper")
    assert {s["regime"] for s in get_study(paper, "regimes", tmp_path).settings} == {"base", "pretrained start"}
    with pytest.raises(ValueError, match="needs the synthetic corpus"):
        regime_overrides(paper, "family batches", tmp_path)


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    return tmp_path_factory.mktemp("regimes")


def _cfg(root: Path, **over):
    return get_config("smoke", {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache"),
                                "study.regimes": ("base", "fewer short events"),
                                "study.paired_seeds": (0, 1), "study.test_videos": 40,
                                "train.epochs": 1, **over})


def test_the_regime_study_keeps_its_runs_and_a_clone_resumes_from_them(study_root, monkeypatch):
    from mofkit.lab import runner as S
    from mofkit.viz.tables import paired_markdown, render_table

    cfg = _cfg(study_root)
    keep = study_root / "kept"
    runs = S.run_study(cfg, "regimes", study_root / "out", progress=False, keep=keep)
    assert len(runs) == 12 and set(runs["regime"]) == {"base", "fewer short events"}
    assert list(runs["seed"][:6]) == [0] * 6  # seed-major: every setting's seed 0 first
    assert (runs["n_test_videos"] == 40).all()
    assert Path(cfg.data.root + "-t40").is_dir() and Path(cfg.data.root + "-t40_short_prob-0.25").is_dir()
    for d in runs["run_dir"]:
        assert str(d).startswith(str(keep)) and {p.name for p in Path(d).iterdir()} == {
            "config.json", "metrics.json", "ranks.npz"}
    # a fresh clone: no run folders, only the kept files; nothing is trained again
    monkeypatch.setattr("mofkit.train.loop.train", lambda *a, **k: pytest.fail("trained again"))
    again = S.run_study(cfg, "regimes", study_root / "elsewhere", progress=False, keep=keep)
    cols = ["setting", "seed", "t2v_R1", "v2t_R1", "train_seconds"]
    pd.testing.assert_frame_equal(again[cols], runs[cols])
    summary = S.summarise_study(cfg, "regimes", again, measure=False)
    assert len(summary) == 6 and list(summary["method"][:3]) == ["uniform", "rand", "MOF"]
    mof = summary[(summary.regime == "base") & (summary.method == "MOF")].iloc[0]
    assert mof["seeds"] == 2 and mof["paired_seeds_vs_uniform"] == 2
    assert mof["t2v_vs_uniform_low"] <= mof["t2v_vs_uniform"] <= mof["t2v_vs_uniform_high"]
    assert mof["t2v_vs_uniform_verdict"] in ("better", "worse", "no difference")
    assert "t2v_vs_uniform" not in summary.columns or pd.isna(summary.loc[0, "t2v_vs_uniform"])
    # the ceiling of each regime's own test videos, the same for its methods
    from mofkit.data.datasets import load_dataset
    from mofkit.data.synthetic import load_timeline
    from mofkit.eval.ceiling import information_ceiling

    root = cfg.data.root + "-t40_short_prob-0.25"
    expect = information_ceiling(load_timeline(root), load_dataset("synthetic", root, "test").video_ids, 4)
    fewer = summary[summary.regime == "fewer short events"]["ceiling_t2v_R1"]
    assert fewer.nunique() == 1 and fewer.iloc[0] == pytest.approx(expect["ceiling_t2v_R1"])
    assert 0 < fewer.iloc[0] <= 100
    text = paired_markdown(summary)
    assert text.count("\n") == 8 and "fewer short events" in text and "ceiling t2v R@1" in text
    summary.to_csv(study_root / "regimes_smoke.csv", index=False)
    doc = render_table(study_root / "regimes_smoke.csv")
    assert "paired over seeds" in doc and "40 test videos" in doc and "`mofkit ceiling`" in doc
    assert " of a ceiling of " in render_table(study_root / "regimes_smoke.csv", show="findings")


def test_a_kept_run_of_other_settings_is_trained_again(study_root, tmp_path):
    from mofkit.config import Config
    from mofkit.lab.paired import find_kept, run_identity, same_run

    kept = next((study_root / "kept").rglob("metrics.json")).parent
    saved = Config.from_dict(json.loads((kept / "config.json").read_text()))
    assert find_kept(kept, saved) is not None
    moved = Config.from_dict(saved.to_dict())
    moved.out_dir, moved.device, moved.data.cache_dir = "elsewhere", "cpu", "/tmp/other-cache"
    assert same_run(saved, moved) and find_kept(kept, moved) is not None
    moved.train.lr *= 2
    assert not same_run(saved, moved) and find_kept(kept, moved) is None
    assert "study" not in run_identity(saved) and "out_dir" not in run_identity(saved)
    # the notebooks anchor paths at the repository, the CLI writes them relative: the same run
    repo = Path(__file__).resolve().parents[1]
    relative, anchored = Config.from_dict(saved.to_dict()), Config.from_dict(saved.to_dict())
    relative.data.root, anchored.data.root = "data/synthetic-t2000", str(repo / "data/synthetic-t2000")
    assert same_run(relative, anchored)
    anchored.data.root = str(repo / "data/synthetic-t500")
    assert not same_run(relative, anchored)
    # a stored config from before a setting existed counts it at its default
    old = saved.to_dict()
    del old["train"]["family_batches"]
    assert same_run(old, saved) and not same_run(old, Config.from_dict({**saved.to_dict(), "train": {
        **saved.to_dict()["train"], "family_batches": True}}))


def test_runs_kept_before_the_relative_frame_eps_keep_what_they_ran_with():
    """The frame optimiser's eps became relative to the gradient's scale by default: a MOF run kept
    before that ran torch's absolute eps and is trained again; runs whose frames never move by it
    (the baseline, a frozen bank) are still the same run."""
    from mofkit.config import Config, get_config
    from mofkit.train.checkpoint import ResumeError
    from mofkit.train.loop import _check_resumable
    from mofkit.lab.paired import same_run

    for overrides, same in (({}, True), ({"mof.enabled": True, "mof.update": "none"}, True),
                            ({"mof.enabled": True}, False), ({"mof.enabled": True, "mof.update": "batch"}, False)):
        now = get_config("cpu", overrides)
        old = now.to_dict()
        del old["mof"]["frame_eps_scale"], old["mof"]["frame_eps"]
        assert (Config.from_dict(old).mof.frame_eps_scale, Config.from_dict(old).mof.frame_eps) == \
            ("absolute", 1e-8)
        assert (now.mof.frame_eps_scale, now.mof.frame_eps) == ("row", 1e-3)
        assert same_run(old, now) is same, overrides
        # a checkpoint resumes under the same rule; a MOF one says which setting differs
        if same:
            _check_resumable(Config.from_dict(old), now, Path("checkpoint.pt"))
        else:
            with pytest.raises(ResumeError, match="mof.frame_eps_scale"):
                _check_resumable(Config.from_dict(old), now, Path("checkpoint.pt"))


def test_a_run_is_what_its_task_reads_and_the_towers_it_starts_from():
    from mofkit.config import get_config
    from mofkit.lab.paired import same_run

    def same(base, a, b):
        return same_run(get_config("cpu", {**base, **a}), get_config("cpu", {**base, **b}))

    schedule = ({"mof.meta_every": 2, "mof.frame_lr": 3e-2}, {"mof.meta_every": 3, "mof.frame_lr": 1e-2})
    assert same({}, *schedule)  # the baseline reads no MOF setting
    assert same({"compress.name": "segment_max"}, *schedule)
    assert not same({"mof.enabled": True}, *schedule)
    amortised = {"compress.name": "slots", "compress.training": "amortised"}
    assert same(amortised, *schedule)  # its meta step reads alpha, N, the hypergradient, not the bank's
    assert not same(amortised, {"mof.alpha": 1e-2}, {"mof.alpha": 1e-1})
    # towers from `mofkit pretrain`: how they were pretrained counts, where they live does not
    assert not same({}, {"pretrain.epochs": 6}, {"pretrain.epochs": 5})
    assert same({}, {"pretrain.dir": "a", "pretrain.gate": 90.0}, {"pretrain.dir": "b", "pretrain.gate": 95.0})
    assert same({"model.pretrained": None}, {"pretrain.epochs": 6}, {"pretrain.epochs": 5})


def test_the_decoder_makes_the_run_only_where_it_resizes():
    """PyAV became the default decoder; at the synthetic corpus's own size both decoders give the
    same pixels (test_synthetic), so runs kept with decord stay the same runs; a resize (each
    library's scaler) or a real dataset makes the decoder count."""
    from mofkit.config import DataConfig, get_config
    from mofkit.data.video import DEFAULT_BACKEND
    from mofkit.lab.paired import same_run

    assert DataConfig().backend == DEFAULT_BACKEND == "pyav"
    for profile in ("smoke", "cpu"):
        now = get_config(profile)
        assert now.data.decode_size == now.synthetic.size
        assert same_run(get_config(profile, {"data.backend": "decord"}), now)
    assert not same_run(get_config("cpu", {"data.backend": "decord", "data.decode_size": 48}),
                        get_config("cpu", {"data.decode_size": 48}))
    assert not same_run(get_config("paper", {"data.backend": "decord"}), get_config("paper"))


def test_the_study_command_summarises_what_is_finished_without_training(study_root, capsys):
    from mofkit.cli import main

    sets = ["--set", f"data.root={study_root / 'corpus'}", "--set", f"data.cache_dir={study_root / 'cache'}",
            "--set", 'study.regimes=["base","fewer short events"]', "--set", "study.paired_seeds=[0,1]",
            "--set", "study.test_videos=40", "--set", "train.epochs=1",
            "--set", f"study.keep_dir={study_root / 'kept'}"]
    out = study_root / "cli"
    assert main(["study", "regimes", "--profile", "smoke", "--read-only", "--out-dir", str(out),
                 "--results", str(out), *sets]) == 0
    text = capsys.readouterr().out
    assert "regimes: 12 runs" in text and "| base | MOF | 4 | 2 |" in text
    table = pd.read_csv(out / "regimes_smoke.csv")
    assert len(table) == 6 and (table["videos_per_s"] > 0).all()
    # with nothing kept and nothing trained, --read-only summarises nothing and trains nothing
    assert main(["study", "controls", "--profile", "smoke", "--read-only", "--out-dir", str(out / "none"),
                 "--results", str(out / "none"), "--no-keep", *sets[:-2]]) == 0
    assert "controls: 0 runs" in capsys.readouterr().out
    # --train-only trains the named rows alone (the controls before MOF's rows may run) ...
    only = out / "only"
    assert main(["study", "controls", "--profile", "smoke", "--out-dir", str(only), "--results", str(only),
                 "--no-keep", "--train-only", "uniform", *sets[:-2], "--set", "study.paired_seeds=[0]"]) == 0
    assert "controls: 1 runs" in capsys.readouterr().out
    assert len(list((only / "studies" / "base").iterdir())) == 1
    # ... and a label the study does not have is refused, naming its rows
    assert main(["study", "controls", "--profile", "smoke", "--train-only", "MOF (second order)"]) == 2
    assert "no such row in controls" in capsys.readouterr().err


def test_the_frame_step_cap_bounds_each_change_and_none_is_adam():
    from mofkit.bilevel.adam import adam_rows_

    g = torch.Generator().manual_seed(1)
    param, grad = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    steps = np.array([1, 1, 1])

    def step(cap):
        p, m1, m2 = param.clone(), torch.zeros_like(param), torch.zeros_like(param)
        adam_rows_(p, grad, m1, m2, steps, 0.3, 0.5, 0.999, 1e-8, 0.0, cap)
        return p

    ref = param.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.3, betas=(0.5, 0.999), eps=1e-8)
    ref.grad = grad.clone()
    opt.step()
    assert torch.equal(step(None), ref.detach())
    capped = step(0.05)
    assert (capped - param).abs().max() <= 0.05 + 1e-7
    assert torch.allclose((capped - param).abs(), torch.full_like(param, 0.05), atol=1e-6)  # Adam's first step is lr
