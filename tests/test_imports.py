"""The package's import graph: no module imports one that imports it back (at any depth, also
through imports inside functions), commands are imported by none, the lower packages (data, models,
fusion, pose, text) import no run code, and ultralytics stays behind hpnet/pose/estimator.py."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hpnet"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str]) -> tuple[set[str], set[str]]:
    """(hpnet modules imported anywhere in ``tree``, top-level names of other packages)."""
    ours, others = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            found = {name for name in names if name in modules}
            ours |= found
            if not node.module.startswith("hpnet"):
                others.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    ours.add(alias.name)
                elif not alias.name.startswith("hpnet"):
                    others.add(alias.name.split(".")[0])
    return ours, others


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    ours, others = {}, {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        ours[name], others[name] = _imports(tree, set(files))
        ours[name] -= {name, *(m for m in files if name.startswith(f"{m}."))}  # own packages
    return ours, others


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_module_imports_itself_back():
    ours, _ = _graph()
    assert len(ours) > 50  # the whole package was read
    assert _cycle(ours) is None, " -> ".join(_cycle(ours) or [])
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # (it finds one)


def test_only_the_pose_estimator_imports_ultralytics():
    _, others = _graph()
    assert [m for m, names in others.items() if "ultralytics" in names] == ["hpnet.pose.estimator"]


def test_imports_are_absolute():
    """The graph above reads absolute imports only: a relative one would hide its edge."""
    relative = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert relative == []


# The commands: the top of the house, imported by no module (a shared part lives elsewhere:
# eval_report.py, exported.py, video_cli.py, runtime.seed_everything).
COMMANDS = {
    "hpnet.train", "hpnet.evaluate", "hpnet.predict", "hpnet.zeroshot", "hpnet.export",
    "hpnet.pretrain.run", "hpnet.data.__main__", "hpnet.pose.cache", "hpnet.compare",
}  # fmt: skip
LOWER = ("hpnet.data", "hpnet.models", "hpnet.fusion", "hpnet.pose", "hpnet.text")
# what the lower packages may use beside each other: settings, errors, files, devices
BASE = {
    "hpnet.atomic", "hpnet.checkpoint", "hpnet.cli", "hpnet.config", "hpnet.config_cli",
    "hpnet.config_limits", "hpnet.config_schema", "hpnet.config_types", "hpnet.devices",
    "hpnet.host_copy", "hpnet.run_lock",
}  # fmt: skip


def test_no_module_imports_a_command():
    ours, _ = _graph()
    assert set(ours) >= COMMANDS  # (each still there under its name)
    found = {m: sorted(t & COMMANDS) for m, t in ours.items() if t & COMMANDS}
    assert found == {"hpnet.pretrain.__main__": ["hpnet.pretrain.run"]}  # (python -m itself)


def test_the_lower_packages_import_no_run_code():
    """data, models, fusion, pose and text: a clip from file to logits, with no training loop,
    run folder or command under them."""
    ours, _ = _graph()
    found = {
        m: sorted(t - BASE)
        for m, t in ours.items()
        if m.startswith(LOWER) and t - BASE - {x for x in t if x.startswith(LOWER)}
    }
    assert found == {}
