"""Keep the code the scripts share identical: `uv run python -m workbench.shared_parts [--check]`.

Windmill runs each script (and each inline step of a flow) as one self-contained file, so the code
several need is copied into each, between the markers `# ---- shared part "NAME": ...` and
`# ---- end of shared part "NAME" ----`. Each part's source is the module parts/NAME.py, which ruff,
mypy and the tests read as a module; only the region between its markers is copied. Edit a part
there, then run this to copy it into every file that holds it. `--check` writes nothing and exits 1
when a copy differs (tests/test_shared_parts.py runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from workbench.paths import FLOWS, PARTS, ROOT, SCRIPTS

_PART = re.compile(
    r'^# ---- shared part "(?P<name>[\w-]+)".*?^# ---- end of shared part "(?P=name)" ----$', re.MULTILINE | re.DOTALL
)


def parts(text: str) -> dict[str, str]:
    """The shared parts a file holds, by name, each from its first marker to its end marker."""
    found: dict[str, str] = {}
    for match in _PART.finditer(text):
        if match["name"] in found:
            raise SystemExit(f"shared_parts: part {match['name']!r} appears twice in one file")
        found[match["name"]] = match.group(0)
    return found


def sources() -> dict[str, str]:
    """Each part's region, from its module in parts/."""
    found = {}
    for module in sorted(PARTS.glob("*.py")):
        held = parts(module.read_text())
        if list(held) not in ([module.stem], []):
            raise SystemExit(f"shared_parts: parts/{module.name} must hold the part {module.stem!r} and no other")
        found.update(held)
    return found


def holders() -> list[Path]:
    """Every file that may hold a copy: the scripts and the flows' steps."""
    return sorted(SCRIPTS.glob("*.py")) + sorted(FLOWS.glob("*.flow/*.py"))


def rendered() -> dict[Path, str]:
    """Every script and flow step with each of its parts replaced by its source's region."""
    source = sources()
    files = {}
    for path in holders():
        text = path.read_text()
        missing = set(parts(text)) - set(source)
        if missing:
            raise SystemExit(f"shared_parts: {path.name} holds part(s) {sorted(missing)}, which parts/ lacks")
        files[path] = _PART.sub(lambda match: source[match["name"]], text)
    return files


def stale() -> list[Path]:
    return [path for path, text in rendered().items() if path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shared_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a copy differs")
    options = parser.parse_args(argv)
    if options.check:
        differ = stale()
        for path in differ:
            print(f"differs: {path.relative_to(ROOT)} (run: uv run python -m workbench.shared_parts)", file=sys.stderr)
        return 1 if differ else 0
    for path, text in rendered().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
