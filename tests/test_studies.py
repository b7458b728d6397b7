"""Studies as data: the grids come from the config, one runner trains or reuses their runs."""
import json
from pathlib import Path

import pandas as pd
import pytest

from mofkit.config import get_config
from mofkit.lab.experiments import run_name
from mofkit.lab.names import LABEL_KEYS
from mofkit.lab.grids import STUDIES, get_study, own_run_dir
from mofkit.lab.runner import run_study


def test_the_studies_read_their_grids_from_the_config(tmp_path, capsys):
    cfg = get_config("cpu", {"study.k_values": [2, 8], "study.seeds": [0, 3]})
    sweep = get_study(cfg, "k_sweep", tmp_path)
    assert [(s["label"], s["data.num_frames"]) for s in sweep.settings] == [
        ("uniform", 2), ("uniform", 8), ("MOF", cfg.data.num_frames)]
    assert sweep.seeds == (0, 3) and sweep.folder == "sweep" and not sweep.needs
    trade = get_study(cfg, "tradeoff", tmp_path)
    assert trade.settings[-1]["mof.hypergrad"] == "fd" and trade.settings[-1]["label"] == "MOF (first order)"
    abl = get_study(cfg, "ablations", tmp_path)
    assert abl.needs == ("uniform",) and abl.seeds == tuple(cfg.study.ablation_seeds)
    assert abl.base["model.pretrained"] == str(tmp_path / own_run_dir(cfg, "uniform") / "checkpoint.pt")
    assert [s["ablation"] for s in abl.settings][0] == "MOF (config)"
    assert abl.settings[-1] == {"mof.enabled": False, "ablation": "uniform (same budget)",
                                "value": "uniform (same budget)"}
    alpha = [s for s in abl.settings if s["ablation"] == "alpha"]
    assert [s["value"] for s in alpha] == [f"alpha={a}" for a in cfg.study.alpha_values if a != cfg.mof.alpha]
    # the config's own runs are the K sweep's runs of their setting
    own = {k: v for k, v in sweep.settings[-1].items() if k not in LABEL_KEYS}
    assert own_run_dir(cfg, "mof") == f"sweep/{run_name(own)}/seed{cfg.train.seed}"
    with pytest.raises(ValueError, match="unknown study 'nope'; studies: k_sweep"):
        get_study(cfg, "nope", tmp_path)
    assert set(STUDIES) == {"k_sweep", "tradeoff", "ablations", "controls", "regimes", "compressors"}
    # the command's list of studies is the registry's, and each paired study summarises itself
    from mofkit.cli import main

    assert main(["study", "nope", "--profile", "smoke"]) == 2
    assert ", ".join(STUDIES) in capsys.readouterr().err
    paired = {n: get_study(cfg, n, tmp_path) for n in STUDIES}
    assert {n for n, st in paired.items() if st.summarise is not None} == {"controls", "regimes", "compressors"}
    assert paired["compressors"].baselines == ("uniform K=4", "uniform K=16")
    ctl = get_study(cfg, "controls", tmp_path)
    assert [s["label"] for s in ctl.settings] == ["uniform", "rand", "frozen", "oracle", "MOF",
                                                  "MOF (first order)"]
    assert all(s.get("mof.augment") for s in ctl.settings if s.get("mof.enabled"))
    assert "oracle" not in [s["label"] for s in get_study(get_config("paper"), "controls", tmp_path).settings]
    # every setting runs a different task or configuration: no two share a folder
    names = [run_name({k: v for k, v in s.items() if k not in LABEL_KEYS}) for s in ctl.settings]
    assert len(set(names)) == len(names)


@pytest.mark.slow
def test_run_study_trains_once_writes_its_table_and_reuses_finished_runs(tmp_path, capsys):
    from mofkit.cli import main

    over = {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
            "study.k_values": [2], "study.seeds": [0]}
    cfg = get_config("smoke", over)
    table = run_study(cfg, "k_sweep", tmp_path / "runs", progress=False)
    assert list(table["method"]) == ["uniform", "MOF"] and list(table["K"]) == [2, 4]
    saved = pd.read_csv(tmp_path / "runs" / "sweep" / "results.csv")
    assert list(saved["setting"]) == list(table["setting"]) and saved["t2v_R1"].notna().all()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("checkpoint.pt")}
    assert len(stamps) == 2
    # the same study from the command line: nothing is trained again, the table is printed
    args = ["study", "k_sweep", "--profile", "smoke", "--out-dir", str(tmp_path / "runs")]
    for key, value in over.items():
        args += ["--set", f"{key}={json.dumps(value) if isinstance(value, list) else value}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "k_sweep: 2 runs" in out and "| uniform 2 |" in out and "| MOF 4 |" in out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("checkpoint.pt")} == stamps


def test_the_compressors_study_grid(tmp_path):
    from mofkit.lab.names import COMPRESSORS

    cfg = get_config("cpu")
    study = get_study(cfg, "compressors", tmp_path)
    assert study.keep and study.seed_major and study.seeds == tuple(cfg.study.paired_seeds)
    labels = [s["label"] for s in study.settings]
    per_corpus = ["uniform K=4", *cfg.study.compressors, "uniform K=16", "uniform K=5", "uniform K=6",
                  "uniform K=8"]
    assert labels == per_corpus * 2 and set(cfg.study.compressors) <= set(COMPRESSORS)
    static, camera = study.settings[:len(per_corpus)], study.settings[len(per_corpus):]
    # the static corpus's uniform run at K is the controls study's uniform run: trained once
    ctl = get_study(cfg, "controls", tmp_path).settings[0]
    assert static[0]["folder"] == ctl["folder"] and static[0]["data.root"] == ctl["data.root"]
    assert {s["regime"] for s in static} == {"static"} and {s["regime"] for s in camera} == {"camera"}
    assert all(s["synthetic.camera"] == "moving" and s["synthetic.clutter"] > 0 for s in camera)
    assert camera[0]["data.root"] != ctl["data.root"] and camera[0]["folder"].startswith("camera/")
    slots = [s for s in static if s.get("compress.name") == "slots"]
    assert {(s["compress.mode"], s.get("compress.training", "end_to_end")) for s in slots} == {
        ("soft", "end_to_end"), ("hard", "end_to_end"), ("soft", "amortised")}  # the cpu profile's grid
    every = get_study(get_config("cpu", {"study.compressors": list(COMPRESSORS)}), "compressors", tmp_path)
    assert len(every.settings) == 2 * (len(COMPRESSORS) + 5)
    folders = [s["folder"] for s in study.settings]
    assert len(set(folders)) == len(folders)
    small = get_study(get_config("cpu", {"study.compressors": ["keyframes"], "study.compressor_k_values": [8],
                                        "study.compressor_corpora": ["camera"]}), "compressors", tmp_path)
    assert [(s["label"], s["regime"]) for s in small.settings] == [
        ("uniform K=4", "camera"), ("keyframes", "camera"), ("uniform K=8", "camera")]
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        get_study(get_config("cpu", {"study.compressors": ["nope"]}), "compressors", tmp_path)
    paper = get_study(get_config("paper"), "compressors", tmp_path)  # a real dataset: its own corpus
    assert {s["regime"] for s in paper.settings} == {"static"} and "data.root" not in paper.settings[0]


@pytest.mark.slow
def test_the_compressors_study_summarises_against_both_uniform_baselines(tmp_path):
    from mofkit.lab.runner import summarise_study

    cfg = get_config("smoke", {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
                               "study.compressors": ["segment_max", "slots soft"],
                               "study.compressor_k_values": [8], "study.compressor_corpora": ["static"],
                               "compress.input_frames": 8, "train.epochs": 1})
    runs = run_study(cfg, "compressors", tmp_path / "runs", progress=False, keep=tmp_path / "kept")
    assert list(runs["method"]) == ["uniform K=4", "segment_max", "slots soft", "uniform K=8"]
    assert (runs.loc[runs["method"] == "slots soft", "compressor_gflops"] > 0).all()
    table = summarise_study(cfg, "compressors", runs)
    row = table.set_index("method").loc["slots soft"]
    assert row["compressor"] == "slots" and row["training"] == "end_to_end" and row["N"] == 8
    assert row["K"] == 4 and row["gflops"] > table.set_index("method").loc["uniform K=4", "gflops"]
    for base in ("uniform K=4", "uniform K=8"):
        assert row[f"t2v_vs_{base}_low"] <= row[f"t2v_vs_{base}"] <= row[f"t2v_vs_{base}_high"]
    assert (table["videos_per_s"] > 0).all() and table["videos_per_s_device"].notna().all()
    assert table.set_index("method").loc["segment_max", "training"] == ""


def test_a_study_table_times_a_corpus_this_machine_has(tmp_path):
    """Kept runs name a corpus a fresh clone has not generated: the config's own corpus is timed."""
    import pandas as pd

    from mofkit.config import get_config
    from mofkit.lab.speed import timing_root

    have = tmp_path / "have"
    (have / "splits").mkdir(parents=True)
    cfg = get_config("smoke", {"data.root": str(have)})
    runs = pd.DataFrame({"data.root": [str(tmp_path / "absent"), str(tmp_path / "absent")]})
    assert timing_root(cfg, runs) == str(have)
    (tmp_path / "absent" / "splits").mkdir(parents=True)
    assert timing_root(cfg, runs) == str(tmp_path / "absent")
