"""Where things are in this repository: every tool and test takes its paths from here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts" / "kustomer"  # the scripts, deployed as f/kustomer/<name>
FLOWS = ROOT / "flows" / "kustomer"  # the flows, deployed as f/kustomer/<name>
PARTS = ROOT / "parts"  # the sources of the shared parts (workbench/shared_parts.py)
EXAMPLES = ROOT / "examples"


def workspace_scripts() -> list[str]:
    """Every Python file of scripts/kustomer, each deployed as the workspace script f/kustomer/<name>."""
    return sorted(p.stem for p in SCRIPTS.glob("*.py"))


def script_names() -> list[str]:
    """The scripts of the product, the ones with a `main`, from the folder itself: adding a script
    touches no list."""
    return [name for name in workspace_scripts() if "\ndef main(" in (SCRIPTS / f"{name}.py").read_text()]


def module_names() -> list[str]:
    """The workspace scripts without `main`: modules the flows import (Windmill's parser calls them `lib`)."""
    return [name for name in workspace_scripts() if name not in script_names()]
