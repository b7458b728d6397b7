"""The notebooks: committed clean, no logic of their own, and all of them run headless on smoke."""
import json
import math
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mofkit.runner import list_notebooks, run_notebooks

NOTEBOOKS = list_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged parameters"
    for name in ("PROFILE", "DEVICE", "DATA_ROOT", "OUT_DIR", "SEED", "OVERRIDES"):
        assert f"{name} = " in code[0].source, name
    for line in code[0].source.splitlines():
        assert "#" in line, f"parameter without a comment: {line}"
    for c in code:
        assert not c.outputs and c.execution_count is None, "commit notebooks without outputs"
        for line in c.source.splitlines():
            stripped = line.lstrip()
            assert not stripped.startswith(("def ", "class ", "!pip", "%pip")), line
            assert "sys.path" not in line and ".cuda()" not in line, line


def test_notebooks_are_numbered_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names[0].startswith("00_") and [n[:2] for n in names] == [f"{i:02d}" for i in range(len(names))]


@pytest.mark.slow
def test_all_notebooks_run_on_smoke(tmp_path):
    out = tmp_path / "runs"
    report = run_notebooks("smoke", out_dir=out, reports_dir=tmp_path / "reports", progress=False,
                           overrides={"data.root": str(tmp_path / "corpus"),
                                      "data.cache_dir": str(tmp_path / "cache")})
    assert set(report.times) == {p.name for p in NOTEBOOKS}
    # every executed notebook is in the report, with outputs
    for p in NOTEBOOKS:
        executed = nbformat.read(report.report_dir / p.name, as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code"), p.name
    # recorded metrics are present and finite
    for run in ("num_frames-4_enabled-False", "num_frames-4_enabled-True"):
        final = json.loads((out / "sweep" / run / "seed0" / "metrics.json").read_text())["final"]
        for direction in ("t2v", "v2t", "t2v_dsl"):
            assert all(math.isfinite(v) for v in final[direction].values()), (run, direction)
    for table in ("ablations/results.csv", "sweep/results.csv"):
        df = pd.read_csv(out / table)
        assert len(df) and df["t2v_R1"].notna().all(), table
    # figures are written and non-empty, and copied into the report
    expected = ["00_video_strips", "00_sampling_timeline", "01_baseline_curves", "02_mof_curves",
                "03_ablations_r1", "04_frames_over_epochs", "04_explorer_static", "05_tradeoff",
                "05_training_cost", "06_search"]
    for name in expected:
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 2000, name
    assert (report.report_dir / "summary.md").read_text().count("|") > 10
    assert (out / "headline.md").is_file()


def test_missing_earlier_results_name_the_notebook(tmp_path):
    from mofkit import notebook as nb

    s = nb.setup("smoke", out_dir=str(tmp_path / "empty"))
    with pytest.raises(nb.MissingResult, match="run notebook 02_mof first"):
        nb.load_snapshots(s)
    with pytest.raises(nb.MissingResult, match="01_baseline"):
        s.require("uniform/metrics.json")
