"""The scripts are self-contained, so the code they share is copied from the modules of parts/: the
copies must not drift, and each file holds every part its parts need."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from workbench import shared_parts
from workbench.paths import PARTS, SCRIPTS, module_names, script_names


def held(path: Path) -> set[str]:
    return set(shared_parts.parts(path.read_text()))


def test_every_shared_part_is_identical_to_its_source() -> None:
    assert shared_parts.stale() == [], "a shared part differs: run `uv run python -m workbench.shared_parts`"


def test_check_finds_an_edited_copy_and_the_tool_puts_the_source_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts)
    monkeypatch.setattr(shared_parts, "SCRIPTS", scripts)
    monkeypatch.setattr(shared_parts, "FLOWS", tmp_path / "no flows")
    monkeypatch.setattr(shared_parts, "ROOT", tmp_path)
    copy = scripts / "bulk_create_messages.py"
    copy.write_text(copy.read_text().replace("def _backoff(", "def _backoff_edited(", 1))

    assert shared_parts.main(["--check"]) == 1
    assert "differs: scripts/bulk_create_messages.py" in capsys.readouterr().err
    assert shared_parts.main([]) == 0
    assert shared_parts.stale() == []
    assert copy.read_text() == (SCRIPTS / "bulk_create_messages.py").read_text()


def test_each_part_is_a_module_of_parts_holding_that_part_only() -> None:
    modules = sorted(PARTS.glob("*.py"))
    assert {m.stem for m in modules} == {"__init__", "collector", "resource", "messages", "transport"}
    for module in modules:
        assert held(module) == ({module.stem} if module.stem != "__init__" else set()), module.name


def test_every_script_holds_the_parts_it_needs_and_every_part_what_it_imports() -> None:
    holders = {path.name: held(path) for path in shared_parts.holders()}
    for name in script_names():
        assert {"collector", "resource", "transport"} <= holders[f"{name}.py"], name
    assert "messages" in holders["create_message.py"]
    assert "messages" in holders["bulk_create_messages.py"]
    for step in ("prepare", "send_group", "report"):  # they import f.kustomer.import_store instead
        assert holders[f"{step}.inline_script.py"] == set()
    # A part uses names of another part only by importing them in its module (so ruff and mypy check
    # them); every file that holds the first part must then hold the second, where those names live.
    needs = {
        module.stem: set(re.findall(r"^from parts\.(\w+) import", module.read_text(), re.M))
        for module in PARTS.glob("*.py")
    }
    assert needs["messages"] == {"transport"}
    assert needs["transport"] == {"resource"}
    for name, parts_held in holders.items():
        for part in parts_held:
            assert needs[part] <= parts_held, f"{name} holds {part}, which needs {needs[part]}"


def test_scripts_import_only_the_standard_library_and_httpx() -> None:
    for name in script_names():
        modules = re.findall(r"^(?:import|from) ([\w.]+)", (SCRIPTS / f"{name}.py").read_text(), re.M)
        outside = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
        assert outside == {"httpx"}, f"{name} imports {outside}"


def test_the_flows_module_imports_the_standard_library_httpx_and_wmill_only() -> None:
    """import_store is the flow steps' own helper: it reads the workspace storage with wmill, which the
    steps' requirements (their `# /// script` block) carry, and no script imports it."""
    assert module_names() == ["import_store"]
    modules = re.findall(r"^(?:import|from) ([\w.]+)", (SCRIPTS / "import_store.py").read_text(), re.M)
    assert {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) == {"httpx", "wmill"}
    assert not any("import_store" in (SCRIPTS / f"{name}.py").read_text() for name in script_names())


def test_every_script_asks_windmill_to_leave_its_result_unprocessed() -> None:
    """Windmill rewrites NaN, Infinity and \\u0000 in a result's text unless the script's leading `#`
    lines carry skip_result_postprocessing (python_executor.rs, get_result_postprocessor)."""
    from workbench.worker import script_annotations

    for name in script_names():
        assert "skip_result_postprocessing" in script_annotations((SCRIPTS / f"{name}.py").read_text()), name
