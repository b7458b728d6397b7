"""The main job: run the ordered notebooks headless with papermill, one reports folder per run.

Each notebook receives the parameters PROFILE, DEVICE, DATA_ROOT, OUT_DIR, SEED and OVERRIDES (a
dict of dotted config keys). Training notebooks write checkpoints and metrics under OUT_DIR
(``runs/<profile>`` by default), which outlives a report, so a second run reuses finished training
unless ``fresh`` is asked for. Each run writes ``reports/<profile>/<timestamp>/``: the executed
notebooks, the figures (PNG) and tables (CSV) that the notebooks wrote under OUT_DIR, and
``summary.md`` with the headline table.

Any other notebook parameter (``VIDEO_FOLDER`` and ``QUERY`` of 06_search, ``N_SHOW`` of 00_data,
...) can be passed too (``params``, or ``-p NAME=VALUE`` on the command line); it goes to the
notebooks that declare it, and a name no notebook declares is an error that lists the names.

While a notebook runs, the terminal shows which cell runs and, during training, the run, its epoch
and step, the loss and the time left (from the progress events of :mod:`mofkit.train.monitor`): one
updating line on a terminal, one line per epoch in a log file. Kernels run on local IPC sockets
and are shut down without the interrupt that jupyter_client sends first, so the terminal shows no
kernel warnings.

Callable from Python (:func:`run_notebooks`) and from the command line (``python -m mofkit run``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mofkit.train.monitor import PROGRESS_ENV

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


# The parameters every notebook takes from the runner itself.
RUNNER_PARAMETERS = ("PROFILE", "DEVICE", "DATA_ROOT", "OUT_DIR", "SEED", "OVERRIDES")


def notebook_parameters(path: str | Path) -> list[str]:
    """Names assigned in a notebook's ``parameters`` cell, in order."""
    import ast

    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    return []


def _check_params(params: dict[str, Any], nbs: list[Path]) -> dict[str, list[str]]:
    """Which notebook takes which of ``params``; an unknown or runner-owned name is a ValueError."""
    declared = {nb.name: notebook_parameters(nb) for nb in nbs}
    own = [k for k in params if k in RUNNER_PARAMETERS]
    if own:
        raise ValueError(f"{', '.join(own)} {'is' if len(own) == 1 else 'are'} set by the runner's own "
                         f"options (--profile, --device, --out-dir, --seed, --set, DATA_ROOT via "
                         f"--set data.root=...), not with -p")
    unknown = [k for k in params if not any(k in names for names in declared.values())]
    if unknown:
        listing = "; ".join(f"{name}: {', '.join(n for n in names if n not in RUNNER_PARAMETERS) or '-'}"
                            for name, names in declared.items())
        raise ValueError(f"no notebook takes the parameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; the notebooks' own parameters are: {listing}")
    return {name: [k for k in params if k in names] for name, names in declared.items()}


def _kernel_manager_class():
    """jupyter_client's kernel manager, quiet for headless runs.

    On POSIX the kernel listens on IPC sockets in Jupyter's runtime folder instead of localhost TCP
    (ipykernel warns that TCP runs unencrypted). At shutdown jupyter_client interrupts the kernel
    before asking it to exit; ipykernel logs that SIGINT as "KeyboardInterrupt caught in kernel"
    although nothing failed, so a kernel that is shutting down is not interrupted.
    """
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class QuietKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc" if os.name == "posix" else "tcp"

        @default("ip")
        def _ip_default(self):
            if self.transport != "ipc":
                return super()._ip_default()
            # An absolute socket path: jupyter_client's default is relative to each process's
            # working folder, which the kernel and its client need not share.
            from jupyter_core.paths import jupyter_runtime_dir

            folder = Path(jupyter_runtime_dir())
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder / f"mofkit-kernel-{uuid.uuid4().hex[:12]}-ipc")

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return QuietKernelManager


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class _ProgressView:
    """The terminal side of a notebook's run: its cell and, while it trains, the run's progress.

    Follows the kernel's progress-event file (a thread reads new lines every half second). On a
    terminal one status line is rewritten in place; otherwise (CI logs, ``nohup``) a line is
    printed per finished epoch and per run, so a log stays short.
    """

    def __init__(self, events: Path, code_cells: int, stream=None):
        self.events = events
        self.code_cells = code_cells
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.cell = 0
        self.state: dict | None = None
        self._offset = events.stat().st_size if events.exists() else 0  # earlier notebooks' events
        self._t0 = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._width = 0

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._poll()
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

    def on_cell_start(self, cell, cell_index: int, **_) -> None:
        if cell.get("cell_type") == "code" and cell.get("source", "").strip():
            self.cell += 1
            self._render()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()
            self._render()

    def _poll(self) -> None:
        try:
            with open(self.events) as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        complete, _, _ = chunk.rpartition("\n")
        if not complete:
            return
        self._offset += len(complete) + 1
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._handle(event)

    def _handle(self, e: dict) -> None:
        kind = e.get("event")
        if kind in ("start", "step", "epoch"):
            self.state = e
        if self.tty and kind not in ("epoch", "end"):
            return
        if kind == "epoch":
            parts = [f"epoch {e['epoch']}/{e['epochs']}"]
            if "train_loss" in e:
                parts.append(f"loss {e['train_loss']:.3f}")
            if "t2v_R1" in e:
                parts.append(f"t2v R@1 {e['t2v_R1']:.1f}")
            if "meta_loss_whole" in e:
                parts.append(f"meta L2 {e['meta_loss_whole']:.3f}")
            if "epoch_seconds" in e:
                parts.append(f"{e['epoch_seconds']:.0f} s")
            parts.append(f"run ETA {_clock(e.get('eta_s'))}")
            self._line(f"{e['run']}: " + ", ".join(parts))
        elif kind == "end":
            r1 = f" (t2v R@1 {e['t2v_R1']:.1f})" if e.get("t2v_R1") is not None else ""
            self._line(f"{e['run']}: {'finished earlier, reused' if e.get('reused') else 'done'}{r1}")
            self.state = None
        elif kind == "start" and e.get("resumed_from") is not None:
            self._line(f"{e['run']}: resuming after epoch {e['resumed_from'] + 1}/{e['epochs']}")

    def _line(self, text: str) -> None:
        """A permanent line (above the status line on a terminal)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(f"      {text}\n")
        self.stream.flush()

    def _render(self) -> None:
        if not self.tty:
            return
        text = f"      cell {self.cell}/{self.code_cells}  {_clock(time.time() - self._t0)}"
        e = self.state
        if e is not None:
            text += f" | {e['run']}"
            if e.get("event") == "step":
                text += (f"  epoch {e['epoch']}/{e['epochs']} step {e['step']}/{e['steps']}"
                         f"  loss {e['loss']:.3f}  ETA {_clock(e.get('eta_s'))}")
            elif e.get("event") == "epoch":
                text += f"  epoch {e['epoch']}/{e['epochs']} done  ETA {_clock(e.get('eta_s'))}"
            else:
                text += "  starting"
        cols = shutil.get_terminal_size((100, 20)).columns - 1
        text = text[:cols]
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)


def _code_cells(path: Path) -> int:
    nb = json.loads(path.read_text())
    return sum(1 for c in nb.get("cells", []) if c.get("cell_type") == "code"
               and ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).strip())


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
                  params: dict[str, Any] | None = None, progress: bool = True) -> RunReport:
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
        params: other notebook parameters (``{"VIDEO_FOLDER": "~/videos"}``), each passed to the
            notebooks whose parameters cell declares it.
        progress: print which notebook runs, its cell, and the progress of training runs.

    Returns:
        :class:`RunReport`.

    Raises:
        NotebookFailed: at the first failing notebook, naming it and the cell.
        ValueError: a parameter in ``params`` that no notebook declares.
    """
    import papermill as pm

    nbs = list_notebooks(notebooks_dir)
    if only:
        nbs = [nb for nb in nbs if any(nb.name.startswith(p) for p in only)]
    extra = dict(params or {})
    takes = _check_params(extra, nbs)
    out = Path(out_dir) if out_dir else REPO_ROOT / "runs" / profile
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = Path(reports_dir) if reports_dir else REPO_ROOT / "reports"
    report = report / profile / stamp
    report.mkdir(parents=True, exist_ok=True)
    base_params = {"PROFILE": profile, "DEVICE": device, "OUT_DIR": str(out.resolve()), "SEED": seed,
                   "OVERRIDES": dict(overrides or {})}
    if data_root is not None:
        base_params["DATA_ROOT"] = str(data_root)

    result = RunReport(report_dir=report, out_dir=out)
    total = time.time()
    events = report / "progress.jsonl"
    previous_env = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(events)  # inherited by each notebook's kernel
    try:
        for i, nb in enumerate(nbs, start=1):
            executed = report / nb.name
            if progress:
                print(f"[{i}/{len(nbs)}] {nb.name}  (profile {profile}, out {out})", flush=True)
            t0 = time.time()
            nb_params = {**base_params, **{k: extra[k] for k in takes[nb.name]}}
            # + 1: the cell papermill inserts with the injected parameters
            view = _ProgressView(events, _code_cells(nb) + 1) if progress else None
            try:
                with view if view is not None else contextlib.nullcontext():
                    pm.execute_notebook(str(nb), str(executed), parameters=nb_params, cwd=str(REPO_ROOT),
                                        kernel_name=kernel_name, progress_bar=False, log_output=False,
                                        request_save_on_cell_execute=True,
                                        kernel_manager_class=_kernel_manager_class(),
                                        on_cell_start=view.on_cell_start if view else None)
            except pm.PapermillExecutionError as e:
                _collect(out, report, result)
                raise NotebookFailed(nb.name, _failed_cell(executed), f"{e.ename}: {e.evalue}",
                                     executed) from None
            result.times[nb.name] = time.time() - t0
            if progress:
                print(f"      done in {_clock(result.times[nb.name])}", flush=True)
    finally:
        if previous_env is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous_env
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
