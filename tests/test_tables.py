"""Docs tables are generated from committed result files: the generator, and the README kept current."""
from pathlib import Path

import pandas as pd
import pytest

from mofkit.viz.tables import render_document, update_tables

REPO = Path(__file__).resolve().parents[1]


def _results(path: Path) -> Path:
    rows = []
    for method, k, seed, r1 in [("uniform", 4, 0, 20.0), ("uniform", 4, 1, 22.0), ("MOF", 4, 0, 19.0),
                                ("MOF", 4, 1, 21.0)]:
        row = {"method": method, "K": k, "seed": seed, "gflops": 0.068, "videos_per_s": 140.0,
               "train_seconds": 100.0 + seed, "n_test_videos": 500, "device": "cpu, 2 cores",
               "profile": "cpu"}
        for d in ("t2v", "v2t"):
            row.update({f"{d}_R1": r1, f"{d}_R5": 60.0, f"{d}_R10": 80.0, f"{d}_MdR": 4.0, f"{d}_MnR": 6.0})
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_marked_table_is_regenerated_from_its_csv(tmp_path):
    _results(tmp_path / "r.csv")
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- table: r.csv -->\nhand-typed 99.9\n<!-- /table -->\nafter\n")
    assert update_tables([doc]) == [doc]
    text = doc.read_text()
    assert "hand-typed" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "| uniform 4 | 21.0 ± 1.4 |" in text and "| MOF 4 | 20.0 ± 1.4 |" in text
    assert "0.068 | 140 | 100 | 2 |" in text  # GFLOPs, measured videos/s, mean train s, seeds
    assert "2 seeds (0, 1): mean ± sample standard deviation" in text
    assert "device: cpu, 2 cores" in text and "generated from `r.csv`" in text
    assert update_tables([doc], check=True) == []  # now current
    doc.write_text(text.replace("21.0 ± 1.4", "25.0 ± 1.4"))  # a hand edit
    assert update_tables([doc], check=True) == [doc]


def test_table_options_and_errors(tmp_path):
    _results(tmp_path / "r.csv")
    text = render_document("<!-- table: r.csv by=method directions=t2v -->\n<!-- /table -->\n", tmp_path)
    assert "| method | t2v R@1 |" in text and "v2t" not in text.split("*")[0]
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        render_document("<!-- table: missing.csv -->\n<!-- /table -->\n", tmp_path)
    with pytest.raises(ValueError, match="table option"):
        render_document("<!-- table: r.csv rows=3 -->\n<!-- /table -->\n", tmp_path)


def test_the_readme_tables_match_the_committed_results():
    readme = REPO / "README.md"
    assert "<!-- table: docs/results/" in readme.read_text(), "the README's tables must be generated"
    assert update_tables([readme], check=True) == [], "run: python -m mofkit tables"


def test_paired_findings_state_every_method_of_a_controls_table():
    import pandas as pd

    from mofkit.viz.tables import paired_findings

    rows = []
    for method, diff, low, high, verdict in [("uniform", None, None, None, None),
                                             ("frozen", -0.2, -0.9, 0.5, "no difference"),
                                             ("oracle", -3.0, -3.8, -2.1, "worse")]:
        r = {"regime": "base", "method": method, "seeds": 5, "t2v_R1": 7.0, "ceiling_t2v_R1": 42.0}
        if diff is not None:
            r.update({"t2v_vs_uniform": diff, "t2v_vs_uniform_low": low, "t2v_vs_uniform_high": high,
                      "t2v_vs_uniform_verdict": verdict, "paired_seeds_vs_uniform": 5})
        rows.append(r)
    text = paired_findings(pd.DataFrame(rows), baselines=("uniform",))
    lines = text.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("- frozen (5 seeds, t2v R@1 7.0 of a ceiling of 42.0)")
    assert "**no difference**" in lines[0] and "-3.0 [-3.8, -2.1]: **worse**" in lines[1]
    only = paired_findings(pd.DataFrame(rows), methods=["oracle"], baselines=("uniform",))
    assert only.startswith("- base (5 seeds") and only.count("\n") == 1


def test_a_compressors_summary_renders_against_its_own_baselines(tmp_path):
    from mofkit.viz.tables import paired_baselines, render_table

    rows = []
    for corpus in ("static", "camera"):
        for method, k, n in [("uniform K=4", 4, 4), ("slots soft", 4, 32), ("uniform K=16", 16, 16)]:
            row = {"regime": corpus, "method": method, "K": k, "N": n, "seeds": 3, "t2v_R1": 10.0,
                   "t2v_R1_sd": 1.0, "v2t_R1": 9.0, "v2t_R1_sd": 1.0, "gflops": 0.07, "compressor_gflops": 0.0,
                   "compressor": "none", "videos_per_s": 30.0, "train_seconds": 60.0, "profile": "cpu",
                   "n_test_videos": 2000}
            if method == "slots soft":
                for b in ("uniform K=16", "uniform K=4"):  # in the file's order: K=16 first
                    for d in ("t2v", "v2t"):
                        row.update({f"{d}_vs_{b}": 2.0, f"{d}_vs_{b}_low": 1.0, f"{d}_vs_{b}_high": 3.0,
                                    f"{d}_vs_{b}_verdict": "better"})
                    row[f"paired_seeds_vs_{b}"] = 3
            rows.append(row)
    df = pd.DataFrame(rows)
    assert paired_baselines(df) == ("uniform K=4", "uniform K=16")
    df.to_csv(tmp_path / "compressors_cpu.csv", index=False)
    text = render_table(tmp_path / "compressors_cpu.csv")
    header = text.splitlines()[0]
    assert header.startswith("| corpus | method | K | N | seeds | t2v R@1 | t2v vs uniform K=4 (95 % CI) | "
                             "t2v vs uniform K=16 (95 % CI) |")
    assert "| camera | slots soft | 4 | 32 | 3 | 10.0 ± 1.0 | +2.0 [+1.0, +3.0] ▲ |" in text
    assert "image tower on K frames, temporal head and compressor" in text
    findings = render_table(tmp_path / "compressors_cpu.csv", show="findings")
    assert "- camera (3 seeds" in findings and "vs uniform K=16 +2.0 [+1.0, +3.0]: **better**" in findings


def test_one_seeds_comparison_fits_a_page():
    from mofkit.viz.tables import comparison_markdown

    t = pd.DataFrame([{"method": "uniform", "K": 4, "N": 4, "t2v_R1": 29.04, "v2t_R1": 28.2, "gflops": 0.243144704,
                       "train_seconds": 116.61442, "videos_per_s": 113.394433},
                      {"method": "slots soft", "K": 4, "N": 32, "t2v_R1": 63.6, "v2t_R1": 60.1,
                       "t2v_vs_uniform": 34.6, "t2v_vs_uniform_low": 29.0, "t2v_vs_uniform_high": 40.0,
                       "v2t_vs_uniform": 30.0, "v2t_vs_uniform_low": 25.0, "v2t_vs_uniform_high": 35.0,
                       "gflops": 0.2489, "train_seconds": 5.411568, "videos_per_s": 88.2}])
    md = comparison_markdown(t)
    assert "| uniform | 4 | 4 | 29.0 |  | 28.2 |  | 0.243 | 113 | 117 |" in md
    assert "| slots soft | 4 | 32 | 63.6 | +34.6 [+29.0, +40.0] | 60.1 | +30.0 [+25.0, +35.0] |" in md
    assert "5.411568" not in md and "113.394433" not in md
