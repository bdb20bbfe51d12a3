"""Fuzzing with hypothesis: whatever JSON a flow passes, the scripts either refuse it before sending
with the documented error, or send exactly it; bodies made from the form always pass; and the
sandbox, which checks Kustomer's rules on its own, agrees with the scripts.

Example counts come from the hypothesis profile: `ci` (the default, quick) or `long`
(HYPOTHESIS_PROFILE=long uv run pytest tests/test_fuzz.py) for a deeper search.
"""

from __future__ import annotations

import json
from datetime import UTC
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import pytest
import respx
import yaml
from conftest import API_KEY, US
from hypothesis import given
from hypothesis import strategies as st

from workbench.paths import SCRIPTS
from workbench.sandbox import body_errors

FIELDS = [*create_message.MESSAGE_FIELDS, "_clientRef"]

# ---- arbitrary JSON, and JSON shaped like messages ----

scalars: st.SearchStrategy[Any] = st.none() | st.booleans() | st.integers(-(2**53), 2**53)
scalars = (
    scalars
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["email", "in", "out", "57c8d2b01a57ed1400392073", "2024-05-01T12:30:00Z", "reply", "amazon-connect"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def message_like(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly-right messages with a few wrong or odd values: where the two validators could disagree."""
    message: dict[str, Any] = {
        "channel": draw(st.sampled_from(["email", "sms", "fax"])),
        "app": "x",
        "direction": draw(st.sampled_from(["in", "out"])),
    }
    extra = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
    message.update(extra)
    if draw(st.booleans()):
        message.pop(draw(st.sampled_from(["channel", "app", "direction"])))
    return message


def send(script: ModuleType, body: Any) -> tuple[bool, Any]:
    """Run the script on `body` against a stand-in that accepts anything: (sent?, what was sent)."""
    path = "/v1/messages" if script is create_message else "/v1/messages/bulk"
    with respx.mock(base_url=US, assert_all_called=False) as router:
        route = router.post(path).respond(201, json={"data": {"id": "x"}})
        refusal = ""
        try:
            script.main({"apiKey": API_KEY}, body)
        except script.KustomerInputError as refused:  # any other exception fails the test
            refusal = str(refused)
        if refusal:
            assert route.call_count == 0, "refused, but a request went out"
            assert refusal.startswith("Nothing was sent to Kustomer: ")
            assert API_KEY not in refusal
            return False, None
        assert route.call_count == 1
        return True, json.loads(route.calls.last.request.content)


@given(json_values)
def test_create_refuses_before_sending_or_sends_exactly_the_body(body: Any) -> None:
    sent, content = send(create_message, body)
    if sent:
        assert content == body


@given(message_like())
def test_create_on_message_like_bodies(body: dict[str, Any]) -> None:
    sent, content = send(create_message, body)
    if sent:
        assert content == body


@given(st.lists(json_values | message_like(), max_size=4) | json_values)
def test_bulk_refuses_before_sending_or_sends_exactly_the_body(body: Any) -> None:
    sent, content = send(bulk_create_messages, body)
    if sent:
        assert content == body


# ---- bodies made from the .script.yaml form always pass ----


def from_form(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for values of a Windmill form field (the JSON-schema subset the forms use)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        unique = (lambda v: json.dumps(v, sort_keys=True)) if schema.get("uniqueItems") else None
        return st.lists(from_form(schema["items"]), max_size=3, unique_by=unique)
    if kind == "object" and "properties" not in schema:
        return st.dictionaries(st.text(max_size=10), scalars, max_size=3)
    if kind == "object":
        return form_object(schema)
    raise AssertionError(f"the form uses a field kind the fuzzer does not know: {schema}")


def form_object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties, required = schema["properties"], schema.get("required", [])
    optional = [name for name in properties if name not in required]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = (
            draw(st.lists(st.sampled_from(optional), unique=True, min_size=schema.get("minProperties", 0), max_size=8))
            if optional
            else []
        )
        return {name: draw(from_form(properties[name])) for name in [*required, *chosen]}

    return build()


def form(name: str) -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((SCRIPTS / f"{name}.script.yaml").read_text())
    return meta["schema"]["properties"]["body"]  # type: ignore[no-any-return]


@st.composite
def bulk_from_form(draw: st.DrawFn) -> list[dict[str, Any]]:
    items = draw(st.lists(from_form(form("bulk_create_messages")["items"]), min_size=1, max_size=4))
    # the cross-item rule the form cannot say: _clientRef on all items or none, each unique
    for position, item in enumerate(items):
        item.pop("_clientRef", None)
        if draw(st.booleans()):
            item["_clientRef"] = f"ref-{position}"
    if any("_clientRef" in item for item in items):
        for position, item in enumerate(items):
            item["_clientRef"] = f"ref-{position}"
    return items


@given(from_form(form("create_message")))
def test_bodies_from_the_create_form_pass_validation_and_the_sandbox(body: dict[str, Any]) -> None:
    assert create_message.body_problems(body) == []
    assert body_errors("/v1/messages", body) == []
    assert send(create_message, body) == (True, body)


@given(bulk_from_form())
def test_bodies_from_the_bulk_form_pass_validation_and_the_sandbox(body: list[dict[str, Any]]) -> None:
    assert bulk_create_messages.body_problems(body) == []
    assert body_errors("/v1/messages/bulk", body) == []


# ---- the sandbox, written on its own, agrees with the scripts ----


@given(message_like() | json_values)
def test_sandbox_accepts_exactly_what_create_message_accepts(body: Any) -> None:
    script_accepts = create_message.body_problems(body) == []
    sandbox_accepts = body_errors("/v1/messages", body) == []
    assert script_accepts == sandbox_accepts


@given(st.lists(message_like(), max_size=3) | json_values)
def test_sandbox_accepts_exactly_what_bulk_create_messages_accepts(body: Any) -> None:
    script_accepts = bulk_create_messages.body_problems(body) == []
    sandbox_accepts = body_errors("/v1/messages/bulk", body) == []
    assert script_accepts == sandbox_accepts


DATE_TIMES = [
    ("2024-05-01T12:30:00Z", True),
    ("2024-05-01t12:30:00.5z", True),
    ("2016-12-31T23:59:60Z", True),
    ("2017-01-01T00:59:60+01:00", True),
    ("2024-05-01T12:30Z", False),  # no seconds: what the published schema (RFC 3339) refuses
    ("2024-05-01T12:30:00", False),  # no time zone
    ("2024-05-01 12:30:00Z", False),
    ("2024-05-01T12:30:00+0200", False),
    ("2024-05-01T12:30:00+05:60", False),
    ("2024-02-30T12:30:00Z", False),
    ("2024-05-01T12:30:60Z", False),
    ("9999-12-31T23:59:59-23:59", True),  # its UTC instant is in year 10000: still an RFC 3339 date-time
    ("0001-01-01T00:00:00+23:59", True),
    ("0000-01-01T00:00:00Z", False),
    ("2024-05-01T12:30:00+24:00", False),
    ("２０２４-０５-０１T１２:３０:００Z", False),  # full-width digits: not ASCII
    ("٢٠٢٤-٠٥-٠١T١٢:٣٠:٠٠Z", False),  # Arabic-Indic digits
    ("2024-05-01T24:00:00Z", False),
]


@given(
    st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["Z", "z", "+", "-"]),
        st.integers(0, 25),
        st.integers(0, 61),
    )
)
def test_scripts_and_sandbox_agree_on_hostile_dates(parts: tuple[int, int, int, int, int, int, str, int, int]) -> None:
    year, month, day, hour, minute, second, zone, off_hours, off_minutes = parts
    when = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    when += zone if zone in ("Z", "z") else f"{zone}{off_hours:02d}:{off_minutes:02d}"
    body = {"channel": "email", "app": "x", "direction": "in", "sentAt": when}
    script_accepts = create_message.body_problems(body) == []
    assert script_accepts == (body_errors("/v1/messages", body) == []), when


@pytest.mark.parametrize(("when", "valid"), DATE_TIMES)
def test_scripts_and_sandbox_agree_on_rfc_3339_date_times(when: str, valid: bool) -> None:
    body = {"channel": "email", "app": "x", "direction": "in", "sentAt": when}
    assert (create_message.body_problems(body) == []) is valid
    assert (body_errors("/v1/messages", body) == []) is valid
