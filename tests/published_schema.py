"""The structure of Kustomer's published message schema (types, enums, limits, required fields; no
prose), kept in tests/fixtures so the comparison with the scripts' field table runs in any clone.

Regenerate it from the full export (shared/reference/kustomer-openapi-messages.json, beside a checkout
of this repository) with:  uv run python tests/published_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from workbench.paths import ROOT

FULL_EXPORT = ROOT.parent / "shared" / "reference" / "kustomer-openapi-messages.json"
FIXTURE = Path(__file__).parent / "fixtures" / "kustomer-message-schema-structure.json"
BODIES = ("POST /messages requestBody", "POST /messages/bulk requestBody")
PROSE = ("description", "example", "examples", "title")


def structure(schema: Any) -> Any:
    """The schema without its prose (a field named `title` in `properties` is kept: it is no prose)."""
    if isinstance(schema, list):
        return [structure(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    kept = {k: structure(v) for k, v in schema.items() if k not in PROSE and k != "properties"}
    if isinstance(schema.get("properties"), dict):
        kept["properties"] = {name: structure(v) for name, v in schema["properties"].items()}
    return kept


def extract(export: dict[str, Any]) -> dict[str, Any]:
    return {
        "_about": (
            f"The request-body schemas of POST /v1/messages and POST /v1/messages/bulk from Kustomer's published "
            f"Core Resources OpenAPI export ({export['source']}), with every description, example and title "
            "removed: types, formats, enums, limits and required fields only. Written by tests/published_schema.py."
        ),
        **{key: structure(export[key]) for key in BODIES},
    }


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


if __name__ == "__main__":
    if not FULL_EXPORT.exists():
        sys.exit(f"published_schema: the full export is not at {FULL_EXPORT}")
    FIXTURE.write_text(json.dumps(extract(json.loads(FULL_EXPORT.read_text())), indent=1) + "\n")
    print(f"wrote {FIXTURE.relative_to(ROOT)}")
