"""The main job: run the ordered notebooks headless with papermill, one reports folder per run.

Each notebook receives the parameters PROFILE, DEVICE, DATA_ROOT, OUT_DIR, SEED and OVERRIDES (a
dict of dotted config keys). Training notebooks write checkpoints and metrics under OUT_DIR
(``runs/<profile>`` by default), which outlives a report, so a second run reuses finished training
unless ``fresh`` is asked for. Each run writes ``reports/<profile>/<timestamp>/``: the executed
notebooks, the figures (PNG) and tables (CSV) that the notebooks wrote under OUT_DIR, and
``summary.md`` with the headline table.

Callable from Python (:func:`run_notebooks`) and from the command line (``python -m mofkit run``).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the cell and the error, and where the executed copy is."""

    def __init__(self, notebook: str, cell: int | None, error: str, executed: Path):
        self.notebook, self.cell, self.error, self.executed = notebook, cell, error, executed
        where = f"cell {cell}" if cell is not None else "an unknown cell"
        super().__init__(f"notebook {notebook} failed at {where}: {error}\n"
                         f"  executed copy (with the traceback): {executed}")


@dataclass
class RunReport:
    """What :func:`run_notebooks` did."""

    report_dir: Path  # reports/<profile>/<timestamp>
    out_dir: Path  # where the notebooks wrote results (checkpoints, metrics, figures)
    times: dict[str, float] = field(default_factory=dict)  # notebook -> seconds
    figures: list[Path] = field(default_factory=list)  # PNGs copied into the report


def list_notebooks(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``00_...`` to ``0N_...``) in the order a reader walks them."""
    nbs = sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        raise FileNotFoundError(f"no numbered notebooks (00_*.ipynb ...) in {notebooks_dir}")
    return nbs


def _failed_cell(executed: Path) -> int | None:
    """1-based index among code cells of the first cell whose output is an error."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    for i, cell in enumerate(code, start=1):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return None


def run_notebooks(profile: str = "cpu", *, overrides: dict[str, Any] | None = None,
                  out_dir: str | Path | None = None, data_root: str | None = None,
                  device: str = "auto", seed: int = 0, fresh: bool = False,
                  only: list[str] | None = None, reports_dir: str | Path | None = None,
                  notebooks_dir: str | Path = NOTEBOOKS_DIR, kernel_name: str | None = None,
                  progress: bool = True) -> RunReport:
    """Run every numbered notebook in order with papermill.

    Args:
        profile: config profile (``smoke``, ``cpu``, ``paper``).
        overrides: dotted config keys passed to every notebook (e.g. ``{"train.epochs": 5}``).
        out_dir: OUT_DIR for the notebooks; default ``runs/<profile>`` under the repository.
        data_root: DATA_ROOT; None keeps the profile's own.
        device: DEVICE parameter (``auto``, ``cpu``, ``cuda``).
        seed: SEED parameter.
        fresh: delete OUT_DIR first, so training starts over instead of reusing checkpoints.
        only: run only notebooks whose name starts with one of these prefixes (e.g. ``["00", "01"]``).
        reports_dir: parent of the per-run report folders; default ``reports/`` in the repository.
        notebooks_dir: where the notebooks are.
        kernel_name: Jupyter kernel; None uses the notebooks' own (``python3``) from this environment.
        progress: print which notebook runs and show papermill's cell progress bar.

    Returns:
        :class:`RunReport`.

    Raises:
        NotebookFailed: at the first failing notebook, naming it and the cell.
    """
    import papermill as pm

    out = Path(out_dir) if out_dir else REPO_ROOT / "runs" / profile
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = Path(reports_dir) if reports_dir else REPO_ROOT / "reports"
    report = report / profile / stamp
    report.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile, "DEVICE": device, "OUT_DIR": str(out.resolve()), "SEED": seed,
              "OVERRIDES": dict(overrides or {})}
    if data_root is not None:
        params["DATA_ROOT"] = str(data_root)

    nbs = list_notebooks(notebooks_dir)
    if only:
        nbs = [nb for nb in nbs if any(nb.name.startswith(p) for p in only)]
    result = RunReport(report_dir=report, out_dir=out)
    total = time.time()
    for i, nb in enumerate(nbs, start=1):
        executed = report / nb.name
        if progress:
            print(f"[{i}/{len(nbs)}] {nb.name}  (profile {profile}, out {out})", flush=True)
        t0 = time.time()
        try:
            pm.execute_notebook(str(nb), str(executed), parameters=params, cwd=str(REPO_ROOT),
                                kernel_name=kernel_name, progress_bar=progress,
                                log_output=False, request_save_on_cell_execute=True)
        except pm.PapermillExecutionError as e:
            _collect(out, report, result)
            raise NotebookFailed(nb.name, _failed_cell(executed), f"{e.ename}: {e.evalue}",
                                 executed) from None
        result.times[nb.name] = time.time() - t0
        if progress:
            print(f"      done in {result.times[nb.name]:.0f} s", flush=True)
    _collect(out, report, result)
    _write_summary(out, report, result, profile, time.time() - total)
    if progress:
        print(f"report: {report}")
    return result


def _collect(out: Path, report: Path, result: RunReport) -> None:
    """Copy the figures and tables the notebooks wrote into the report folder."""
    for pattern, sub in (("*.png", "figures"), ("*.csv", "tables")):
        for src in sorted(out.rglob(pattern)):
            if "checkpoint" in src.parts:
                continue
            rel = src.relative_to(out)
            parts = rel.parts[1:] if rel.parts[0] == sub else rel.parts  # figures/x.png -> x.png
            dst = report / sub / "__".join(parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            if sub == "figures":
                result.figures.append(dst)


def _write_summary(out: Path, report: Path, result: RunReport, profile: str, seconds: float) -> None:
    lines = [f"# mofkit report: profile `{profile}`", "",
             f"Results folder: `{out}`  ", f"Total time: {seconds / 60:.1f} min", "",
             "| notebook | seconds |", "|---|---|"]
    lines += [f"| {name} | {t:.0f} |" for name, t in result.times.items()]
    headline = out / "headline.md"
    if headline.is_file():
        lines += ["", headline.read_text().strip()]
    lines += ["", "Figures:", ""] + [f"- `{p.relative_to(report)}`" for p in result.figures]
    (report / "summary.md").write_text("\n".join(lines) + "\n")
