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


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}  # public, by convention


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API


def owner_of(node: ast.expr) -> str | None:
    """The name at the root of `a.b.c`, when the chain is only names and attributes."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def private_uses(path: Path) -> list[str]:
    """Each use in `path` of a private name of another of our files: imported (a relative import is one
    of ours), read off a module or a chain of them (`workbench.worker._x`), or asked of one by getattr."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()  # the names in this file bound to one of our modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name.split(".")[0]) for a in node.names if is_ours(a.name)}
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module and is_ours(node.module))):
            found += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if private(a.name)]
            modules |= {a.asname or a.name for a in node.names}  # a submodule, or a name: both are checked
    for node in ast.walk(tree):
        match node:
            case ast.Attribute(value=value, attr=attr) if private(attr) and owner_of(value) in modules:
                found.append(f"{path.name}:{node.lineno} uses {ast.unparse(node)}")
            case ast.Call(func=ast.Name(id="getattr"), args=[value, ast.Constant(value=str(attr)), *_]) if (
                private(attr) and owner_of(value) in modules
            ):
                found.append(f"{path.name}:{node.lineno} uses getattr({ast.unparse(value)}, {attr!r})")
    return sorted(found, key=lambda use: int(use.split(":")[1].split()[0]))


def test_no_private_name_crosses_a_file() -> None:
    assert [use for path in our_files() for use in private_uses(path)] == []


def test_the_private_name_check_finds_each_way_of_reaching_one(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import create_message\nimport workbench.worker\nfrom workbench.worker import _x\nfrom . import chaos\n"
        "from .local_run import _y\ncreate_message._given_body('{}')\nworkbench.worker._z\n"
        "getattr(create_message, '_w')\nchaos._v\n"
    )
    assert private_uses(probe) == [
        "probe.py:3 imports _x",
        "probe.py:5 imports _y",
        "probe.py:6 uses create_message._given_body",
        "probe.py:7 uses workbench.worker._z",
        "probe.py:8 uses getattr(create_message, '_w')",
        "probe.py:9 uses chaos._v",
    ]


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
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package this file is in
                package = module_name(path).split(".")[: -node.level if path.stem != "__init__" else None]
                if path.stem == "__init__" and node.level > 1:
                    package = package[: 1 - node.level]
                module = ".".join([*package, *([module] if module else [])])
            found |= {f"{module}.{a.name}" for a in node.names} | {module}
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
