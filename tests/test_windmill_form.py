"""What Windmill shows: the form agrees with Windmill's own parser and with the scripts' validation."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import published_schema
import pytest
import wait_for_bulk_results
import yaml

from workbench.paths import ROOT, SCRIPTS, script_names, workspace_scripts

TOOLS = ROOT / "tests" / "windmill" / "windmill_tools.mjs"
BOTH = pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])
EVERY = pytest.mark.parametrize("script", [create_message, bulk_create_messages, wait_for_bulk_results], ids=str)


def windmill_tool(*args: str) -> Any:
    done = subprocess.run(["node", str(TOOLS), *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    """Windmill's parser (windmill-parser-wasm-py) and the CLI's schema mapping over every workspace script."""
    files = [str(SCRIPTS / f"{name}.py") for name in workspace_scripts()]
    result: dict[str, Any] = windmill_tool("signature", *files)
    return {Path(path).stem: value for path, value in result.items()}


def metadata(script: ModuleType) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SCRIPTS / f"{script.__name__}.script.yaml").read_text())
    return data


def body_form(script: ModuleType) -> dict[str, Any]:
    body: dict[str, Any] = metadata(script)["schema"]["properties"]["body"]
    return body if script is create_message else body["items"]


# ---- the top level is what Windmill's parser derives from main ----


def test_windmills_parser_takes_the_flows_module_for_a_library_and_the_scripts_for_runnables(
    parsed: dict[str, Any],
) -> None:
    assert parsed["import_store"]["auto_kind"] == "lib"  # deployed, imported, never run on its own
    assert parsed["import_store"]["args"] == []
    assert yaml.safe_load((SCRIPTS / "import_store.script.yaml").read_text())["schema"]["properties"] == {}
    for name in script_names():
        assert parsed[name]["auto_kind"] is None, name


@EVERY
def test_top_level_is_what_windmills_parser_derives(script: ModuleType, parsed: dict[str, Any]) -> None:
    derived = parsed[script.__name__]["schema"]
    schema = metadata(script)["schema"]
    assert schema["type"] == "object"
    assert list(schema["properties"]) == list(derived["properties"])
    assert schema["required"] == derived["required"]
    assert schema["order"] == derived["order"]
    for name, prop in derived["properties"].items():
        ours = schema["properties"][name]
        for key, value in prop.items():
            if key == "properties":
                continue  # the parser leaves a dict's fields empty: the form fills them in
            if key == "items":
                assert {k: ours["items"][k] for k in value} == value
            else:
                assert ours[key] == value, f"{name}.{key}"


@EVERY
def test_auth_is_a_kustomer_resource_picker(script: ModuleType, parsed: dict[str, Any]) -> None:
    auth = next(a for a in parsed[script.__name__]["args"] if a["name"] == "auth")
    assert auth["typ"] == {"resource": "kustomer"}
    assert metadata(script)["schema"]["properties"]["auth"]["format"] == "resource-kustomer"


def test_body_is_an_object_for_create_and_a_list_of_objects_for_bulk(parsed: dict[str, Any]) -> None:
    create = next(a for a in parsed["create_message"]["args"] if a["name"] == "body")
    bulk = next(a for a in parsed["bulk_create_messages"]["args"] if a["name"] == "body")
    assert "object" in create["typ"]
    assert "object" in bulk["typ"]["list"]


@EVERY
def test_extra_parameters_have_defaults(script: ModuleType, parsed: dict[str, Any]) -> None:
    for arg in parsed[script.__name__]["args"]:
        assert arg["name"] in ("auth", "body", "bulk_id") or arg["has_default"]


def test_the_wait_form_describes_each_parameter_with_its_default() -> None:
    meta = metadata(wait_for_bulk_results)
    properties = meta["schema"]["properties"]
    assert meta["summary"] == "Wait for bulk results"
    assert "org.permission.bulk.read" in meta["description"]
    assert meta["schema"]["required"] == ["auth", "bulk_id"]
    for name, default in (("expected_items", 0), ("submitted_at", ""), ("max_wait_seconds", 600)):
        assert properties[name]["default"] == default
    assert all(prop.get("description") for prop in properties.values())


# ---- the body form agrees with the scripts' validation ----

LIMITS = ("enum", "maxLength", "minLength", "minimum", "maximum", "maxProperties", "required")


def assert_same_rules(form: dict[str, Any], rule: dict[str, Any], where: str) -> None:
    if "anyOf" in rule and "type" not in rule:  # attachments: the form shows the object alternative
        rule = next(r for r in rule["anyOf"] if r["items"].get("type") == "object")
    assert form["type"] == rule["type"], where
    for key in LIMITS:
        assert form.get(key) == rule.get(key), f"{where}: {key}"
    if "anyOf" in rule:  # queue: one of `id` or `external`, with nothing else allowed
        assert form["minProperties"] == 1, where
        assert rule["additionalProperties"] is False, where
    if rule.get("format") == "object-id":
        assert form["pattern"] == "^[0-9a-fA-F]{24}$", where
        assert re.fullmatch(form["pattern"], "57c8d2b01a57ed1400392073")
    else:
        assert form.get("format") == rule.get("format"), where
    assert set(form.get("properties", {})) == set(rule.get("properties", {})), where
    for name, sub in rule.get("properties", {}).items():
        assert_same_rules(form["properties"][name], sub, f"{where}.{name}")
    if "items" in rule:
        assert_same_rules(form["items"], rule["items"], f"{where}[]")


@BOTH
def test_every_field_of_the_form_follows_the_validation_rules(script: ModuleType) -> None:
    form = body_form(script)
    fields = dict(script.MESSAGE_FIELDS)
    if script is bulk_create_messages:
        fields.update(bulk_create_messages.CLIENT_REF)
    assert set(form["properties"]) == set(fields)
    for name, rule in fields.items():
        assert_same_rules(form["properties"][name], rule, f"body.{name}")


def test_required_fields_are_marked() -> None:
    assert body_form(create_message)["required"] == ["channel", "app", "direction"]
    assert body_form(bulk_create_messages)["required"] == ["channel", "app"]
    bulk = metadata(bulk_create_messages)["schema"]["properties"]["body"]
    assert (bulk["minItems"], bulk["maxItems"]) == (1, 100)


@BOTH
def test_channel_and_direction_are_dropdowns(script: ModuleType) -> None:
    form = body_form(script)["properties"]
    assert form["channel"]["enum"] == list(script.CHANNELS)
    assert form["direction"]["enum"] == ["in", "out"]


@BOTH
def test_every_field_is_described(script: ModuleType) -> None:
    meta = metadata(script)
    assert meta["summary"]
    for needed in ("org.permission.message.create", "results.<this step>.data.id", "429"):
        assert needed in meta["description"]
    for name, prop in body_form(script)["properties"].items():
        assert prop.get("description"), f"body.{name} has no description"
    assert "_clientRef" in body_form(bulk_create_messages)["properties"]


def test_metadata_files_are_up_to_date_with_the_scripts() -> None:
    done = subprocess.run(
        ["uv", "run", "--frozen", "python", "-m", "workbench.metadata", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ---- dependencies ----


@BOTH
def test_lock_pins_the_uv_lock_versions(script: ModuleType) -> None:
    lines = (SCRIPTS / f"{script.__name__}.script.lock").read_text().splitlines()
    assert lines[0] == "# py: 3.11"
    pins = dict(line.split("==") for line in lines[1:])
    locked = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    assert pins["httpx"] == locked["httpx"]
    for name, version in pins.items():
        assert locked[name] == version, name


@BOTH
def test_windmill_infers_httpx_as_the_only_dependency(script: ModuleType) -> None:
    source = SCRIPTS / f"{script.__name__}.py"
    # Windmill's import parser: no import of another workspace script (the scripts are self-contained)
    assert windmill_tool("imports", f"f/kustomer/{script.__name__}", str(source)) == []
    # and what it turns into requirements, the top-level imports that are not the standard library
    import sys

    top_level = re.findall(r"^(?:import|from) (\w+)", source.read_text(), re.M)
    assert {m for m in top_level if m not in sys.stdlib_module_names} == {"httpx"}


# ---- the table matches Kustomer's published schema ----


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    """The published schema's structure, from the fixture kept in tests/ (its `_about` says whence)."""
    return published_schema.load()


def strip(schema: Any) -> Any:
    return published_schema.structure(schema)


def test_the_fixture_is_the_published_schemas_structure_without_its_prose() -> None:
    fixture = published_schema.load()
    assert "description" not in json.dumps({k: v for k, v in fixture.items() if k != "_about"})
    assert "Core Resources OpenAPI" in fixture["_about"]
    if published_schema.FULL_EXPORT.exists():  # beside the full export, the fixture must still be its extract
        assert fixture == published_schema.extract(json.loads(published_schema.FULL_EXPORT.read_text()))


def test_message_fields_match_kustomers_published_schema(published: dict[str, Any]) -> None:
    for key, required, script in (
        ("POST /messages requestBody", ["channel", "app", "direction"], create_message),
        ("POST /messages/bulk requestBody", ["channel", "app"], bulk_create_messages),
    ):
        body = published[key] if "items" not in published[key] else published[key]["items"]
        assert body["required"] == required
        assert body["additionalProperties"] is False
        expected = strip(body["properties"])
        # The one deliberate difference: `custom` keeps its key limit but not additionalProperties: false,
        # which would refuse every custom attribute (README, "Decisions").
        del expected["custom"]["additionalProperties"]
        ours = {k: dict(v) for k, v in script.MESSAGE_FIELDS.items()}
        for name in ours:
            ours[name].pop("nullable", None)
        expected["lang"].pop("nullable")
        assert set(ours) == set(expected)
        for name in expected:
            assert normalise(ours[name]) == normalise(expected[name]), name


def normalise(schema: Any) -> Any:
    """Order-free form: the same rules written in another order compare equal."""
    if isinstance(schema, dict):
        out = {k: normalise(v) for k, v in schema.items()}
        if "anyOf" in out:
            out["anyOf"] = sorted(out["anyOf"], key=json.dumps)
        return out
    if isinstance(schema, list):
        return [normalise(v) for v in schema]
    return schema
