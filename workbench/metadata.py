"""Write each script's Windmill metadata from the script itself: `uv run python -m workbench.metadata`.

<name>.script.yaml: summary, description, and the form schema. Its top level is what Windmill's
parser derives from `main` (tests/test_windmill_form.py runs the parser to check); `body` carries the
full message form, made from the script's own MESSAGE_FIELDS table, so the form and the validation
cannot disagree. <name>.script.lock: `# py: 3.11`, then the runtime requirements pinned as in uv.lock.
`--check` writes nothing and exits 1 when a committed file is stale.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from workbench.paths import ROOT, SCRIPTS, script_names, workspace_scripts

PYTHON = "3.11"
OBJECT_ID_PATTERN = "^[0-9a-fA-F]{24}$"

FIELD_DOCS = {
    "channel": "The channel the message went through.",
    "app": "The app the message came from, as Kustomer names it (e.g. postmark, twilio, or your own app name).",
    "direction": "`in`: from the customer. `out`: from an agent.",
    "conversation": "Id of the conversation whose timeline gets the message.",
    "customer": "Id of the customer the message is from or to.",
    "preview": "The message text (at most 10,240 characters).",
    "subject": "Subject line, mostly for email.",
    "externalId": "The message's id on its channel (e.g. an email Message-ID). Lets you find it again "
    "(GET /v1/messages/externalid=...) before running a step again.",
    "id": "A message id of your choosing (24 hexadecimal characters), instead of one Kustomer makes.",
    "status": "Delivery status on the channel.",
    "sentAt": "When the message was sent, ISO 8601.",
    "importedAt": "Set it when importing history: such messages are exempt from the per-customer rate limit.",
    "auto": "True when a workflow or auto-response made the message: it is left out of reporting.",
    "source": "`bulk` for a bulk message, `satisfaction` for a CSAT survey message.",
    "reference": "For email replies and forwards: the message replied to, and how.",
    "related": "Id of a related object.",
    "size": "Size of the message.",
    "error": "Why sending failed on the channel, when status is `error`.",
    "errorAt": "When sending failed, ISO 8601.",
    "shortcuts": "Ids of the shortcuts used.",
    "kbArticles": "Ids of the knowledge-base articles linked.",
    "attachments": "Attachments already uploaded to Kustomer, as objects (below) or as a plain list of ids.",
    "location": "Where the message was sent from.",
    "meta": "Channel-specific data (at most 100 keys).",
    "custom": "Custom attributes (at most 100 keys); names carry a type suffix: Str, Txt, Num, At, Bool, Url.",
    "sentiment": "Sentiment: polarity -1, 0 or 1, and a confidence from -1 to 1.",
    "createdAt": "Creation time to record (needs the org.admin role).",
    "modifiedAt": "Modification time to record (needs the org.admin role).",
    "createdBy": "Id of the user to record as creator (needs the org.admin role).",
    "modifiedBy": "Id of the user to record as last modifier (needs the org.admin role).",
    "lang": "Language of the message (e.g. en_us), or null.",
    "queue": "The queue: `{id}` of a Kustomer queue, or `{external: amazon-connect}`.",
    "_clientRef": "Your reference for this message (at most 255 characters), to match Kustomer's per-item "
    "results to your input. On every message or on none; each unique.",
}

# Fields in the order a person fills them in; the rest follow in the table's order.
FIRST_FIELDS = (
    "channel",
    "app",
    "direction",
    "conversation",
    "customer",
    "preview",
    "subject",
    "externalId",
    "status",
    "sentAt",
    "importedAt",
)


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_metadata_{name}", SCRIPTS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"metadata: cannot load {name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def form_property(schema: dict[str, Any]) -> dict[str, Any]:
    """One field of the message table as a Windmill form field (JSON schema Windmill renders)."""
    schema = copy.deepcopy(schema)
    if "anyOf" in schema and "type" not in schema:  # attachments: the form shows the object form
        schema = next(s for s in schema["anyOf"] if s.get("items", {}).get("type") == "object")
    if "anyOf" in schema:  # queue: `id` or `external`; with no other key allowed, that is "not empty"
        assert all(set(option) == {"required"} for option in schema.pop("anyOf"))
        schema["minProperties"] = 1
    schema.pop("nullable", None)
    if schema.get("format") == "object-id":
        del schema["format"]
        schema["pattern"] = OBJECT_ID_PATTERN
    if "properties" in schema:
        schema["properties"] = {k: form_property(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        schema["items"] = form_property(schema["items"])
    return schema


def message_form(fields: dict[str, dict[str, Any]], required: tuple[str, ...]) -> dict[str, Any]:
    order = [f for f in FIRST_FIELDS if f in fields] + [f for f in fields if f not in FIRST_FIELDS]
    properties = {name: {**form_property(fields[name]), "description": FIELD_DOCS[name]} for name in order}
    return {"type": "object", "properties": properties, "required": list(required), "order": order}


AUTH = {
    "type": "object",
    "format": "resource-kustomer",
    "description": "A kustomer resource: the API key, and baseUrl for the EU, India or an org host.",
}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def summary_and_description(script: ModuleType) -> tuple[str, str]:
    """The script's prose has one home, its module docstring: `Summary: what it does.` on the first
    line, then paragraphs that become the Windmill description."""
    doc = inspect.getdoc(script) or ""
    first, _, rest = doc.partition("\n")
    summary = first.split(":", 1)[0].strip()
    lead = first.split(":", 1)[1].strip()
    return summary, (lead[:1].upper() + lead[1:] + "\n" + rest).strip() + "\n"


def argument_docs(function: Any) -> dict[str, str]:
    """`Args:` of a docstring: `name: text`, continued on more deeply indented lines."""
    docs: dict[str, str] = {}
    lines = (inspect.getdoc(function) or "").partition("Args:")[2].splitlines()
    name = None
    for line in lines:
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name, docs[match.group(1)] = match.group(1), match.group(2).strip()
        elif name and line.startswith("        "):
            docs[name] += " " + line.strip()
        elif line.strip():
            break
    return docs


def parameter_form(script: ModuleType) -> dict[str, Any]:
    """The form of `main`'s plain parameters: their JSON types as Windmill's parser derives them, the
    defaults, and the descriptions from main's docstring."""
    docs = argument_docs(script.main)
    properties: dict[str, Any] = {}
    for name, parameter in inspect.signature(script.main).parameters.items():
        if name == "auth":
            properties[name] = dict(AUTH)
            continue
        kind = _JSON_TYPES[parameter.annotation]  # the scripts' annotations are types, not strings
        properties[name] = {"type": kind, "description": docs[name]}
        if kind == "string":
            properties[name]["originalType"] = "string"
        if parameter.default is not inspect.Parameter.empty:
            properties[name]["default"] = parameter.default
    return properties


def script_metadata(name: str) -> dict[str, Any]:
    script = load_script(name)
    properties: dict[str, Any] = {"auth": dict(AUTH)}
    if not hasattr(script, "MESSAGE_FIELDS"):
        properties = parameter_form(script)
    if name == "create_message":
        properties["body"] = {
            **message_form(script.MESSAGE_FIELDS, script.CREATE_REQUIRED),
            "description": "The message to record.",
        }
    elif hasattr(script, "MESSAGE_FIELDS"):
        item = message_form({**script.MESSAGE_FIELDS, **script.CLIENT_REF}, script.BULK_REQUIRED)
        properties["body"] = {
            "type": "array",
            "items": item,
            "originalType": "record[]",
            "minItems": 1,
            "maxItems": script.MAX_BULK_ITEMS,
            "description": f"The messages to record: 1 to {script.MAX_BULK_ITEMS}.",
        }
    parameters = inspect.signature(script.main).parameters
    summary, description = summary_and_description(script)
    return {
        "summary": summary,
        "description": description,
        "lock": f"!inline f/kustomer/{name}.script.lock",
        "kind": "script",
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": [n for n, p in parameters.items() if p.default is inspect.Parameter.empty],
            "order": list(parameters),
        },
    }


def module_metadata(name: str) -> dict[str, Any]:
    """A workspace script without `main` (a module the flows import): its prose and no form. Windmill's
    parser calls it a `lib`; the server marks it so, and the wmill CLI sends no kind of its own."""
    summary, description = summary_and_description(load_script(name))
    return {
        "summary": summary,
        "description": description,
        "lock": f"!inline f/kustomer/{name}.script.lock",
        "kind": "script",
        "schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {}},
    }


def module_lock_text(scripts_lock: str) -> str:
    """A module's lock: the scripts' runtime requirements and `wmill`, which it imports (its only
    dependency is httpx), pinned as uv.lock pins it."""
    import tomllib

    packages = tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    version = next(p["version"] for p in packages if p["name"] == "wmill")
    header, *pins = scripts_lock.splitlines()
    return "\n".join([header, *sorted([*pins, f"wmill=={version}"], key=str.lower)]) + "\n"


def lock_text() -> str:
    """`# py: 3.11` and the runtime requirements, pinned exactly as uv.lock pins them."""
    exported = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--python",
            PYTHON,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from packaging.requirements import Requirement

    pins = []
    for line in exported.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(
            {"python_full_version": f"{PYTHON}.0", "python_version": PYTHON}
        ):
            continue
        pins.append(f"{requirement.name}{requirement.specifier}")
    return f"# py: {PYTHON}\n" + "\n".join(sorted(pins, key=str.lower)) + "\n"


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def rendered() -> dict[Path, str]:
    files = {}
    lock = lock_text()
    header = "# Written by `uv run python -m workbench.metadata` from the script: edit the script, then rerun.\n"
    for name in workspace_scripts():
        is_script = name in script_names()
        meta = script_metadata(name) if is_script else module_metadata(name)
        body = yaml.dump(meta, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
        files[SCRIPTS / f"{name}.script.yaml"] = header + body
        files[SCRIPTS / f"{name}.script.lock"] = lock if is_script else module_lock_text(lock)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metadata", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    options = parser.parse_args(argv)
    stale = [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    if options.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run: uv run python -m workbench.metadata)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
