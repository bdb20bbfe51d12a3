"""The two scripts are self-contained, so the code they share is copied: the copies must not drift."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPTS = Path(__file__).parent.parent / "scripts" / "kustomer"
BEGIN = "# ---- shared block: byte-identical in create_message.py and bulk_create_messages.py ----"
END = "# ---- end of shared block ----"


def shared_block(name: str) -> str:
    text = (SCRIPTS / name).read_text()
    assert text.count(BEGIN) == 1, f"{name}: the shared block's first marker is missing or repeated"
    assert text.count(END) == 1, f"{name}: the shared block's end marker is missing or repeated"
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def resource_class(name: str) -> str:
    match = re.search(r"^class kustomer\(TypedDict\):\n(?:(?:    .*)?\n)+", (SCRIPTS / name).read_text(), re.M)
    assert match, f"{name}: no `class kustomer(TypedDict)`"
    return match.group(0)


def test_shared_block_is_identical_in_both_scripts() -> None:
    create, bulk = shared_block("create_message.py"), shared_block("bulk_create_messages.py")
    assert create == bulk, "the shared block differs: copy the edited one over the other"


def test_shared_block_holds_the_http_call_retries_errors_and_validation() -> None:
    block = shared_block("create_message.py")
    for name in ("def _post_json", "def _send", "def _rate_limit_wait", "def _error_text", "def _problems"):
        assert name in block


def test_resource_type_class_is_identical_in_both_scripts() -> None:
    assert resource_class("create_message.py") == resource_class("bulk_create_messages.py")


def test_scripts_import_only_the_standard_library_and_httpx() -> None:
    import sys

    for path in SCRIPTS.glob("*.py"):
        modules = re.findall(r"^(?:import|from) ([\w.]+)", path.read_text(), re.M)
        outside = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
        assert outside == {"httpx"}, f"{path.name} imports {outside}"
