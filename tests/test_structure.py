"""The house rules that code review alone would miss: import directions, run names, typed overrides."""
import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from mofkit.config import Config, get_config
from mofkit.lab.experiments import run_name

PKG = Path(__file__).resolve().parents[1] / "mofkit"
LIBRARY = ("data", "models", "bilevel", "eval", "viz", "config", "device", "faults", "rowstore",
           "runfiles")  # library rooms
DRIVERS = ("train", "lab", "notebook", "runner", "cli")  # what drives the library; never imported by it
# data and models come first, then bilevel, then train: the one-way order of the style guide
LOWER_THAN = {"bilevel": ("data", "models"), "train": ("data", "models", "bilevel"),
              "lab": ("data", "models", "bilevel", "train")}


def _room(module: str) -> str | None:
    """``mofkit.data.video`` -> ``data``; ``mofkit.cli`` -> ``cli``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "mofkit" and len(parts) > 1 else None


def room_imports() -> dict[str, dict[str, set[str]]]:
    """room -> imported room -> the files that import it (imports inside functions count too)."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module.endswith(".__init__"):
            module = module[:-len(".__init__")]
        here = _room(module) or "mofkit"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                there = _room(name)
                is_room = there and ((PKG / there).is_dir() or (PKG / f"{there}.py").is_file())
                if is_room and there != here:
                    out[here][there].add(str(path.relative_to(PKG.parent)))
    return out


def test_library_rooms_never_import_the_drivers():
    imports = room_imports()
    bad = [f"{room} imports {other} ({', '.join(sorted(files))})" for room in LIBRARY
           for other, files in imports.get(room, {}).items() if other in DRIVERS]
    assert not bad, bad


def test_imports_flow_one_way_between_rooms():
    imports = room_imports()
    bad = [f"{lower} imports {upper} ({', '.join(sorted(imports[lower][upper]))})"
           for upper, lowers in LOWER_THAN.items() for lower in lowers if upper in imports.get(lower, {})]
    assert not bad, bad
    # no circle of any length between rooms
    circle = find_circle({room: set(others) for room, others in imports.items()})
    assert not circle, f"import circle: {' -> '.join(circle)}"


def find_circle(graph: dict[str, set[str]]) -> list[str]:
    """A circle of the directed graph (its nodes in order, the first repeated at the end), or []."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return []


def test_the_import_check_sees_a_violation(tmp_path, monkeypatch):
    """The rules above can fail: a data module importing train is caught."""
    fake = tmp_path / "mofkit"
    for room in ("data", "train"):
        (fake / room).mkdir(parents=True)
        (fake / room / "__init__.py").write_text("")
    (fake / "data" / "x.py").write_text("def f():\n    from mofkit.train.loop import train\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    assert "train" in room_imports()["data"]


def test_run_names_keep_the_section():
    assert run_name({"train.seed": 1}) != run_name({"synthetic.seed": 1})
    assert run_name({"data.num_frames": 4, "mof.enabled": True}) == "data.num_frames-4_mof.enabled-True"
    assert run_name({}) == "default"


def test_overrides_are_type_checked():
    cfg = get_config("cpu", {"train.epochs": 5, "mof.alpha": 1, "data.crop_scale": [0.5, 1.0],
                             "study.ablation_epochs": None})
    assert cfg.train.epochs == 5 and cfg.mof.alpha == 1.0 and isinstance(cfg.mof.alpha, float)
    assert cfg.data.crop_scale == (0.5, 1.0)
    for bad, says in [({"train.epochs": "abc"}, "'train.epochs': expects int, got 'abc'"),
                      ({"mof.enabled": 1}, "'mof.enabled': expects bool"),
                      ({"data.crop_scale": [1.0]}, "expects 2 values"),
                      ({"study.ablation_epochs": "x"}, "expects int | None"),
                      ({"study.k_values": [2, "4"]}, "'study.k_values': expects int")]:
        with pytest.raises(TypeError, match=says.replace("|", "\\|").replace("(", "\\(")):
            get_config("cpu", bad)
    # a saved config reads back as it was written
    assert Config.from_dict(get_config("paper").to_dict()).to_dict() == get_config("paper").to_dict()


def test_a_bad_override_on_the_command_line_is_one_line(capsys):
    from mofkit.cli import main

    assert main(["train", "--profile", "smoke", "--set", "train.epochs=abc"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "mofkit train: config override 'train.epochs': expects int, got 'abc' (str)"


def test_the_trainer_does_not_branch_on_the_method():
    """The loop reads no method settings (MOF's, the compressor's, the sampling of training frames)
    and builds no method's modules: what differs between methods lives in train/tasks.py."""
    for room in ("loop.py", "data.py"):  # the loop, and the data it reads
        tree = ast.parse((PKG / "train" / room).read_text())
        touched = sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                          and node.attr in ("mof", "compress", "train_sampling")})
        assert not touched, f"mofkit/train/{room} reads method settings at lines {touched}"
    tree = ast.parse((PKG / "train" / "loop.py").read_text())
    imported = sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and (node.module or "").startswith(("mofkit.compress", "mofkit.bilevel"))})
    assert not imported, f"mofkit/train/loop.py builds a method's modules itself at lines {imported}"


def test_create_task_picks_the_method_from_the_config():
    from types import SimpleNamespace

    from mofkit.train.tasks import TASKS, create_task, task_name

    assert task_name(get_config("smoke")) == "baseline"
    assert task_name(get_config("smoke", {"data.train_sampling": "rand"})) == "baseline"
    assert task_name(get_config("smoke", {"mof.enabled": True})) == "mof"
    assert task_name(get_config("smoke", {"mof.enabled": True, "mof.update": "batch"})) == "mof-batch"
    with pytest.raises(ValueError, match="mof.update='sometimes'"):
        task_name(get_config("smoke", {"mof.enabled": True, "mof.update": "sometimes"}))
    fake = SimpleNamespace(cfg=get_config("smoke"), out_dir=Path("."), info=None)
    assert type(create_task(fake)) is TASKS["baseline"]
    with pytest.raises(ValueError, match="unknown training task 'nope'"):
        create_task(fake, "nope")


def test_run_files_are_named_in_one_module():
    """config.json, metrics.json, metrics.csv, ranks.npz and checkpoint.pt are written as string
    literals only in mofkit/runfiles.py; everything else imports the names."""
    names = {"config.json", "metrics.json", "metrics.csv", "ranks.npz", "checkpoint.pt"}
    found = []
    for path in PKG.rglob("*.py"):
        if path.name == "runfiles.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.value}")
            elif isinstance(node, ast.JoinedStr):  # f"{name}/metrics.json"
                for part in node.values:
                    if isinstance(part, ast.Constant) and any(str(part.value).endswith(n) for n in names):
                        found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {part.value}")
    assert not found, found


def test_only_the_dataset_registry_branches_on_a_dataset_name():
    """What a dataset records (timelines, families, whether the kit generates it) is asked of its
    spec (mofkit.data.datasets.dataset_spec); no comparison with a dataset's name elsewhere."""
    from mofkit.data.datasets import DATASETS

    found = []
    for path in PKG.rglob("*.py"):
        if path.relative_to(PKG).as_posix() == "data/datasets.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                consts = [c for s in sides for c in ast.walk(s) if isinstance(c, ast.Constant)]
                if any(isinstance(c.value, str) and c.value in DATASETS for c in consts):
                    found.append(f"{path.relative_to(PKG.parent)}:{node.lineno}")
    import nbformat  # the notebooks' cells too

    for path in sorted((PKG.parent / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and any(f'== "{d}"' in cell.source or f'!= "{d}"' in cell.source
                                                for d in DATASETS):
                found.append(f"{path.name} cell {i}")
    assert not found, found


def module_imports() -> dict[str, set[str]]:
    """module -> the mofkit modules it imports (function-level imports too)."""
    modules = {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PKG.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:  # "from mofkit.train import tasks" names a module
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in modules else node.module)
        out[module] = {d for d in deps if d in modules and d != module}
    return out


def test_no_import_circle_between_modules():
    """Not only rooms: no two modules import each other, directly or round a longer circle, even
    through imports inside functions (which would hide one at import time)."""
    graph = module_imports()
    assert "mofkit.train.tasks" in graph["mofkit.train.loop"]  # the graph sees imports
    circle = find_circle(graph)
    assert not circle, f"import circle: {' -> '.join(circle)}"
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # it can fail
