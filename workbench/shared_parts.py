"""Keep the code the scripts share identical: `uv run python -m workbench.shared_parts [--check]`.

Windmill runs each script (and each inline step of a flow) as one self-contained file, so the code
several need is copied into each, between the markers `# ---- shared part "NAME": ...` and
`# ---- end of shared part "NAME" ----`. The scripts' parts have create_message.py as their source,
the import flow's steps' parts prepare.inline_script.py: edit a part there, then run this to copy it
into every other file that holds it. `--check` writes nothing and exits 1 when a copy differs
(tests/test_shared_parts.py runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from workbench.worker import FLOWS, ROOT, SCRIPTS

SOURCE = SCRIPTS / "create_message.py"
FLOW_STEPS = FLOWS / "import_messages.flow"
FLOW_SOURCE = FLOW_STEPS / "prepare.inline_script.py"
_PART = re.compile(
    r'^# ---- shared part "(?P<name>[\w-]+)".*?^# ---- end of shared part "(?P=name)" ----$', re.MULTILINE | re.DOTALL
)


def parts(text: str) -> dict[str, str]:
    """The shared parts a script holds, by name, each from its first marker to its end marker."""
    found: dict[str, str] = {}
    for match in _PART.finditer(text):
        if match["name"] in found:
            raise SystemExit(f"shared_parts: part {match['name']!r} appears twice in one script")
        found[match["name"]] = match.group(0)
    return found


def rendered() -> dict[Path, str]:
    """Every script and flow step with each of its parts replaced by its source's copy."""
    files = {}
    for origin, group in ((SOURCE, sorted(SCRIPTS.glob("*.py"))), (FLOW_SOURCE, sorted(FLOW_STEPS.glob("*.py")))):
        files.update(_rendered(origin, group))
    return files


def _rendered(origin: Path, group: list[Path]) -> dict[Path, str]:
    source = parts(origin.read_text())
    files = {}
    for script in group:
        text = script.read_text()
        missing = set(parts(text)) - set(source)
        if missing:
            raise SystemExit(f"shared_parts: {script.name} holds part(s) {sorted(missing)}, which {origin.name} lacks")

        def from_source(match: re.Match[str]) -> str:
            return source[match["name"]]

        files[script] = _PART.sub(from_source, text)
    return files


def stale() -> list[Path]:
    return [path for path, text in rendered().items() if path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shared_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a copy differs")
    options = parser.parse_args(argv)
    if options.check:
        for path in stale():
            print(f"differs: {path.relative_to(ROOT)} (run: uv run python -m workbench.shared_parts)", file=sys.stderr)
        return 1 if stale() else 0
    for path, text in rendered().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
