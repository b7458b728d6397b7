"""The notebooks: committed clean, no logic of their own, and all of them run headless on smoke."""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mofkit.runner import list_notebooks, run_notebooks

NOTEBOOKS = list_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    raw = json.loads(path.read_text())  # as committed: nbformat.read fills missing ids in memory
    assert all("id" in c for c in raw["cells"]), "every cell needs an id (nbformat.validator.normalize)"
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


def test_git_strips_the_outputs_of_every_notebook_it_adds():
    """.gitattributes puts every notebook through nbstripout (installed by `make setup`): Run All in
    JupyterLab autosaves outputs into the tracked file, and a commit keeps none of them."""
    repo = NOTEBOOKS[0].parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    attr = subprocess.run(["git", "check-attr", "filter", "--", str(NOTEBOOKS[0].relative_to(repo))],
                          cwd=repo, capture_output=True, text=True, check=True).stdout
    assert attr.strip().endswith("filter: nbstripout"), attr
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3,
                                     outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                                                     execution_count=3)])
    dirty = nbformat.writes(nbformat.v4.new_notebook(cells=[cell]))
    res = subprocess.run([sys.executable, "-m", "nbstripout", "-t"], input=dirty, capture_output=True,
                         text=True, check=True)
    clean = nbformat.reads(res.stdout, as_version=4).cells[0]
    assert clean.source == "1 + 1" and clean.outputs == [] and clean.execution_count is None
    # the committed notebooks are what the filter makes of them (cell ids kept): a fresh clone
    # shows no notebook as changed
    for path in NOTEBOOKS:
        text = path.read_text()
        out = subprocess.run([sys.executable, "-m", "nbstripout", "-t", "--keep-id"], input=text,
                             capture_output=True, text=True, check=True).stdout
        assert out == text, f"{path.name} is not in the stripped form git commits"


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
    for run in ("data.num_frames-4_mof.enabled-False", "data.num_frames-4_mof.enabled-True"):
        final = json.loads((out / "sweep" / run / "seed0" / "metrics.json").read_text())["final"]
        for direction in ("t2v", "v2t", "t2v_dsl"):
            assert all(math.isfinite(v) for v in final[direction].values()), (run, direction)
    for table in ("ablations/results.csv", "sweep/results.csv"):
        df = pd.read_csv(out / table)
        assert len(df) and df["t2v_R1"].notna().all(), table
    # figures are written and non-empty, and copied into the report
    expected = ["00_video_strips", "00_sampling_timeline", "01_baseline_curves", "02_mof_curves",
                "03_controls_vs_uniform", "03_regimes_vs_uniform", "03_ablations_r1", "04_frames_over_epochs", "04_explorer_static", "05_tradeoff",
                "05_training_cost", "06_search"]
    for name in expected:
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 2000, name
    # 07: a compressor run beside the uniform one, and what it made of test videos
    vs = pd.read_csv(out / "compress" / "vs_uniform.csv")
    assert list(vs["method"]) == ["uniform", "slots soft"] and vs["t2v_R1"].notna().all()
    assert vs.loc[1, "compressor_gflops"] > 0 and vs.loc[1, "gflops"] > vs.loc[0, "gflops"]
    assert (vs["videos_per_s"] > 0).all() and pd.notna(vs.loc[1, "t2v_vs_uniform_low"])
    shown = list((out / "figures").glob("07_compressor_video*.png"))
    assert len(shown) == 3 and all(p.stat().st_size > 2000 for p in shown)
    assert (report.report_dir / "summary.md").read_text().count("|") > 10
    assert (out / "headline.md").is_file()


def test_missing_earlier_results_name_the_notebook(tmp_path):
    from mofkit import notebook as nb

    s = nb.setup("smoke", out_dir=str(tmp_path / "empty"))
    with pytest.raises(nb.MissingResult, match="run notebook 02_mof first"):
        s.run("mof")
    with pytest.raises(nb.MissingResult, match="01_baseline"):
        s.require("uniform/metrics.json")
    with pytest.raises(ValueError, match="ensure\\(\\) knows corpus, uniform, mof, not nope"):
        nb.ensure(s, "nope")


@pytest.fixture(scope="module")
def corpus_overrides(tmp_path_factory):
    """A smoke corpus and frame cache shared by the runs below (each has its own OUT_DIR)."""
    root = tmp_path_factory.mktemp("nb-corpus")
    return {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache")}


@pytest.mark.slow
@pytest.mark.parametrize("prefix,produced", [
    ("02", ["sweep/data.num_frames-4_mof.enabled-False/seed0/metrics.json", "figures/02_mof_curves.png"]),
    ("04", ["sweep/data.num_frames-4_mof.enabled-True/seed0/snapshots/epoch_000.npy",
            "figures/04_frames_over_epochs.png"]),
])
def test_a_notebook_runs_alone_on_an_empty_results_folder(tmp_path, corpus_overrides, prefix, produced):
    """Run All of one notebook with nothing upstream: what it reads is produced on demand."""
    out = tmp_path / "runs"
    report = run_notebooks("smoke", out_dir=out, reports_dir=tmp_path / "reports", progress=False,
                           only=[prefix], overrides=corpus_overrides)
    assert len(report.times) == 1
    for rel in produced:
        assert (out / rel).is_file(), rel
    executed = nbformat.read(next(report.report_dir.glob(f"{prefix}_*.ipynb")), as_version=4)
    said = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "training it now" in said


@pytest.mark.slow
def test_the_main_job_shows_training_progress_and_passes_notebook_parameters(tmp_path, corpus_overrides):
    """`mofkit run`: progress per epoch in the terminal, no kernel noise, -p reaches 06_search."""
    folder = tmp_path / "my videos"
    folder.mkdir()
    videos = sorted((Path(corpus_overrides["data.root"]) / "videos").glob("*.mp4"))
    if not videos:  # the corpus is made by the first run that needs it
        from mofkit.config import get_config
        from mofkit.data.synthetic import ensure_corpus

        ensure_corpus(corpus_overrides["data.root"], get_config("smoke").synthetic, progress=False)
        videos = sorted((Path(corpus_overrides["data.root"]) / "videos").glob("*.mp4"))
    shutil.copy(videos[0], folder / "one.mp4")
    shutil.copy(videos[1], folder / "two.mkv")
    cmd = [sys.executable, "-m", "mofkit", "run", "--profile", "smoke", "--only", "01", "06",
           "--out-dir", str(tmp_path / "runs"), "--reports-dir", str(tmp_path / "reports"),
           "-p", f"VIDEO_FOLDER={folder}", "-p", "RUN=uniform", "-p", "QUERY=a red star flashes"]
    for key, value in corpus_overrides.items():
        cmd += ["--set", f"{key}={value}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    for noise in ("without encryption", "KeyboardInterrupt", "Traceback", "unknown parameter"):
        assert noise not in text, (noise, text)
    assert re.search(r"data\.num_frames-4_mof\.enabled-False/seed0: epoch 2/2, loss \d", proc.stdout), proc.stdout
    assert "[2/2] 06_search.ipynb" in proc.stdout
    report = next((tmp_path / "reports" / "smoke").iterdir())
    search = nbformat.read(report / "06_search.ipynb", as_version=4)
    injected = next(c for c in search.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'VIDEO_FOLDER = "{folder}"' in injected.source and 'QUERY = "a red star flashes"' in injected.source
    said = "".join(o.get("text", "") for c in search.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "2 videos indexed" in said
    baseline = nbformat.read(report / "01_baseline.ipynb", as_version=4)
    injected = next(c for c in baseline.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "VIDEO_FOLDER" not in injected.source  # only the notebooks that declare it get it


def test_a_parameter_no_notebook_declares_is_refused(tmp_path, capsys):
    from mofkit.cli import main

    code = main(["run", "--profile", "smoke", "--out-dir", str(tmp_path / "runs"),
                 "--reports-dir", str(tmp_path / "reports"), "-p", "VIDEO_FOLDR=~/videos"])
    err = capsys.readouterr().err
    assert code == 2 and "no notebook takes the parameter VIDEO_FOLDR" in err
    assert "06_search.ipynb: QUERY, RUN, VIDEO_FOLDER" in err
    assert not (tmp_path / "reports").exists()  # refused before anything ran
    code = main(["run", "--profile", "smoke", "--out-dir", str(tmp_path / "runs"), "-p", "SEED=3"])
    assert code == 2 and "set by the runner's own options" in capsys.readouterr().err
