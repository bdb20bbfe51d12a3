"""Where things are in this repository: every tool and test takes its paths from here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts" / "kustomer"  # the scripts, deployed as f/kustomer/<name>
FLOWS = ROOT / "flows" / "kustomer"  # the flows, deployed as f/kustomer/<name>
PARTS = ROOT / "parts"  # the sources of the shared parts (workbench/shared_parts.py)
EXAMPLES = ROOT / "examples"


def script_names() -> list[str]:
    """The scripts of the product, from the folder itself: adding a script touches no list."""
    return sorted(p.stem for p in SCRIPTS.glob("*.py"))
