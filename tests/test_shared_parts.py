"""The scripts are self-contained, so the code they share is copied: the copies must not drift."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from workbench import shared_parts
from workbench.worker import SCRIPTS, script_names


def resource_class(name: str) -> str:
    match = re.search(r"^class kustomer\(TypedDict\):\n(?:(?:    .*)?\n)+", (SCRIPTS / name).read_text(), re.M)
    assert match, f"{name}: no `class kustomer(TypedDict)`"
    return match.group(0)


def test_every_shared_part_is_identical_to_its_source() -> None:
    assert shared_parts.stale() == [], "a shared part differs: run `uv run python -m workbench.shared_parts`"


def test_check_finds_an_edited_copy_and_the_tool_puts_the_source_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for script in SCRIPTS.glob("*.py"):
        shutil.copy(script, tmp_path / script.name)
    monkeypatch.setattr(shared_parts, "SCRIPTS", tmp_path)
    monkeypatch.setattr(shared_parts, "SOURCE", tmp_path / "create_message.py")
    monkeypatch.setattr(shared_parts, "ROOT", tmp_path)
    copy = tmp_path / "bulk_create_messages.py"
    copy.write_text(copy.read_text().replace("def _backoff(", "def _backoff_edited(", 1))

    assert shared_parts.main(["--check"]) == 1
    assert "differs: bulk_create_messages.py" in capsys.readouterr().err
    assert shared_parts.main([]) == 0
    assert shared_parts.stale() == []
    assert copy.read_text() == (SCRIPTS / "bulk_create_messages.py").read_text()


def test_every_script_holds_the_transport_and_the_creates_hold_the_message_schema() -> None:
    holders = {name: set(shared_parts.parts((SCRIPTS / f"{name}.py").read_text())) for name in script_names()}
    assert all("transport" in held for held in holders.values()), holders
    assert "messages" in holders["create_message"]
    assert "messages" in holders["bulk_create_messages"]
    source = shared_parts.parts(shared_parts.SOURCE.read_text())["transport"]
    for name in ("def _call_kustomer", "def _rate_limit_wait", "def _reset_time", "class _BoundedDecoder"):
        assert name in source


def test_resource_type_class_is_identical_in_every_script() -> None:
    classes = {resource_class(f"{name}.py") for name in script_names()}
    assert len(classes) == 1


def test_scripts_import_only_the_standard_library_and_httpx() -> None:
    for path in SCRIPTS.glob("*.py"):
        modules = re.findall(r"^(?:import|from) ([\w.]+)", path.read_text(), re.M)
        outside = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
        assert outside == {"httpx"}, f"{path.name} imports {outside}"


def test_every_script_asks_windmill_to_leave_its_result_unprocessed() -> None:
    """Windmill rewrites NaN, Infinity and \\u0000 in a result's text unless the script's leading `#`
    lines carry skip_result_postprocessing (python_executor.rs, get_result_postprocessor)."""
    from workbench.worker import script_annotations

    for name in script_names():
        assert "skip_result_postprocessing" in script_annotations((SCRIPTS / f"{name}.py").read_text()), name
