"""The codebase keeps the shape a reader relies on: what a file uses of another is that file's public
surface, and the workbench's modules import one another without a cycle. mypy checks the rest (the
flow's steps against the scripts' `__all__`, through typings/f/kustomer)."""

from __future__ import annotations

import ast
from pathlib import Path

from workbench.paths import FLOWS, PARTS, ROOT, SCRIPTS

TESTS = ROOT / "tests"
WORKBENCH = ROOT / "workbench"


def our_files() -> list[Path]:
    return sorted(
        [
            *PARTS.glob("*.py"),
            *SCRIPTS.glob("*.py"),
            *FLOWS.glob("*.flow/*.py"),
            *TESTS.glob("*.py"),
            *WORKBENCH.rglob("*.py"),
        ]
    )


def is_ours(module: str) -> bool:
    top = module.split(".")[0]
    local = {p.stem for p in [*SCRIPTS.glob("*.py"), *TESTS.glob("*.py")]}
    return top in {"workbench", "parts", "f"} | local


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path) -> list[str]:
    """Each use in `path` of a private name of another of our files: imported, or read off a module."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()  # the names in this file bound to one of our modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name.split(".")[0]) for a in node.names if is_ours(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and is_ours(node.module):
            found += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if private(a.name)]
            modules |= {a.asname or a.name for a in node.names}  # a submodule, or a name: both are checked
    for node in ast.walk(tree):
        match node:
            case ast.Attribute(value=ast.Name(id=owner), attr=attr) if owner in modules and private(attr):
                found.append(f"{path.name}:{node.lineno} uses {owner}.{attr}")
    return found


def test_no_private_name_crosses_a_file() -> None:
    assert [use for path in our_files() for use in private_uses(path)] == []


def test_the_private_name_check_finds_one(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import create_message\nfrom workbench.worker import _x\ncreate_message._given_body('{}')\n")
    assert private_uses(probe) == ["probe.py:2 imports _x", "probe.py:3 uses create_message._given_body"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The workbench modules `path` imports when it runs, at its top or inside a function; an import
    only for the type checker (under `if TYPE_CHECKING:`) is not one."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return found & known


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            found.append([*trail[trail.index(module) :], module])
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in WORKBENCH.rglob("*.py")}
    return {name: runtime_imports(path, set(files)) - {name} for name, path in files.items()}


def test_the_workbench_imports_without_a_cycle() -> None:
    graph = import_graph()
    assert "workbench.measure" in graph["workbench.bench_tls"]  # the graph is read, function-level imports too
    assert cycles(graph) == []


def test_the_cycle_check_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
