# skip_result_postprocessing
# (the line above keeps the worker from rewriting NaN, Infinity and \u0000 inside the result)
"""Bulk create messages: record up to 100 messages on Kustomer conversation timelines in one request.

POST /v1/messages/bulk. Kustomer queues the batch and answers with a bulk operation: in a flow, the
next step reads its id as `results.<this step>.data.id` and gives it to wait_for_bulk_results, which
waits for it and returns what became of each message. The messages are *recorded*, not delivered to
customers. The API key needs the role `org.permission.message.create` (or the legacy
`org.user.message.write`).

Every message is checked against Kustomer's published schema before anything is sent, and every
problem is reported at once with its position (`body[3].channel: ...`). Give each message a
`_clientRef` (all of them or none) to match Kustomer's per-item results to your input. Rate limits
(429) are waited out; a request whose outcome is unknown is never repeated. For more than 100
messages use the flow `f/kustomer/import_messages`, which batches, loops and reports every message.

`body` may also be the JSON text of the list (in a flow: `JSON.stringify(...)`), parsed strictly.
Give it as text whenever message text comes from outside (emails, webhooks, another system):
Windmill rewrites strings such as `$WM_TOKEN` or `$var:...` in structured job arguments, never
inside one string. A body holding this job's own Windmill token is refused, never sent.

Kustomer's reference: https://developer.kustomer.com/api/core-resources/bulk-create-messages
"""

import contextlib
import functools
import gc
import ipaddress
import json
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple, NotRequired, TypedDict

# ---- shared part "collector": the same in every script of scripts/kustomer ----
# A job is a fresh process: it imports httpx, sends a request or two and exits. Python's cyclic
# collector would walk every object those imports make (tens of thousands, nearly all alive until
# the job ends) while they are made and again at exit, about a fifth of a cold job (README,
# "Decisions"). So it is off while httpx is imported, and what the imports made is frozen: gc.freeze
# moves it out of every later collection, as its documentation suggests for long-lived objects.
# What a job makes afterwards is collected as usual.
_collecting = gc.isenabled()
gc.disable()
import httpx  # noqa: E402  # after gc.disable(), above

gc.freeze()
if _collecting:
    gc.enable()
# ---- end of shared part "collector" ----


# ---- shared part "resource": the same in every script of scripts/kustomer ----
class kustomer(TypedDict):
    """A Kustomer API key, and the host of its region when that is not the US one."""

    apiKey: str
    baseUrl: NotRequired[str]


# ---- end of shared part "resource" ----


# What a flow step may use of this script (typings/f/kustomer checks the steps against it).
__all__ = [
    "MAX_BODY_BYTES", "MAX_BULK_ITEMS", "POLICY", "KustomerAPIError", "KustomerConnectionError", "KustomerError",
    "KustomerInputError", "KustomerOutcomeUnknownError", "KustomerRateLimitError", "RetryPolicy", "body_problems",
    "kustomer", "main", "message_problems", "parse_json_text", "reused_connections", "send_bulk",
    "strict_json_decoder"
]  # fmt: skip


def main(auth: kustomer, body: list[dict]) -> Any:  # type: ignore[type-arg]  # Windmill's form needs a bare `dict`
    """Record `body`, a list of 1 to 100 Kustomer message objects, and return Kustomer's bulk operation."""
    return send_bulk(auth, body)


def send_bulk(auth: kustomer, body: list[dict[str, Any]], deadline: float = math.inf) -> Any:
    """For the import flow: `main`, with no attempt or wait running past `deadline` (on POLICY's clock)."""
    body, problems = _given_body(body)
    _raise_if_invalid(auth_problems(auth) + (problems or body_problems(body)), auth)
    bulk = _Endpoint("POST", "/v1/messages/bulk", MESSAGE_WRITE_ROLE, IDS_NOT_FOUND)
    return _call_kustomer(auth, bulk, body, _check_before_rerun(body), deadline)


def body_problems(body: Any) -> list[str]:
    """Every problem `main` finds in a list of messages before it sends anything (its size, Kustomer's
    schema, `_clientRef`, this job's own Windmill token), each named from `body`; none when it would send."""
    return _size_problems(body, "body") or _bulk_problems(body) or _token_problems(body, "body")


def message_problems(message: Any, where: str) -> list[str]:
    """For the import flow: one bulk item's problems by this script's rules (its fields, `_clientRef`,
    this job's token), each named from `where`; none when `main` would send it."""
    return schema_problems(message, where, BULK_REQUIRED, CLIENT_REF) or _token_problems(message, where)


def parse_json_text(text: str) -> tuple[Any, list[str]]:
    """For the import flow: JSON text read as `main` reads a body given as text (strict: no NaN or
    Infinity, no key named twice); the value, or the problem."""
    return _given_body(text)


def strict_json_decoder() -> json.JSONDecoder:
    """For the import flow: the decoder `parse_json_text` uses, to read a long array piece by piece."""
    return json.JSONDecoder(parse_constant=_not_json_constant, object_pairs_hook=_once_each)


MESSAGE_WRITE_ROLE = "org.permission.message.create (or the legacy org.user.message.write)"
IDS_NOT_FOUND = "Check the conversation, customer and other ids in the body: they must exist in the key's org."
BULK_REQUIRED = ("channel", "app")
MAX_BULK_ITEMS = 100
CLIENT_REF: dict[str, dict[str, Any]] = {"_clientRef": {"type": "string", "minLength": 1, "maxLength": 255}}


def _bulk_problems(body: Any) -> list[str]:
    if not isinstance(body, list):
        return [f"body: must be a list of 1 to {MAX_BULK_ITEMS} message objects, got {describe(body)}"]
    if not body:
        return [f"body: the list is empty; give 1 to {MAX_BULK_ITEMS} messages"]
    problems = []
    if len(body) > MAX_BULK_ITEMS:
        problems.append(
            f"body: {len(body)} messages, at most {MAX_BULK_ITEMS} per request: split them, "
            "or use the flow f/kustomer/import_messages, which sends any number in batches"
        )
    for i, message in enumerate(body):
        problems += schema_problems(message, f"body[{i}]", BULK_REQUIRED, CLIENT_REF)
    return problems + _client_ref_problems(body)


def _client_ref_problems(body: list[Any]) -> list[str]:
    """Kustomer answers 400 unless _clientRef is on every item or none, and unique."""
    has_ref = [isinstance(m, dict) and "_clientRef" in m for m in body]
    if any(has_ref) and not all(has_ref):
        missing = [f"body[{i}]" for i, has in enumerate(has_ref) if not has]
        shown = _listing(missing, quoted=False)
        return [f"body: _clientRef is on {sum(has_ref)} of {len(body)} messages, not on {shown}; set it on all or none"]
    problems = []
    first_seen: dict[str, int] = {}
    for i, message in enumerate(body):
        ref = message.get("_clientRef") if isinstance(message, dict) else None
        if isinstance(ref, str) and ref in first_seen:
            problems.append(f"body[{i}]._clientRef: {ref!r} repeats body[{first_seen[ref]}]._clientRef; must be unique")
        elif isinstance(ref, str):
            first_seen[ref] = i
    return problems


# ---- shared part "messages": the same in every script of scripts/kustomer that holds it ----
# Copied from parts/messages.py, as a Windmill script is one file: edit it there, then run shared_parts.

Schema = dict[str, Any]

_OBJECT_ID: Schema = {"type": "string", "format": "object-id"}
_DATE_TIME: Schema = {"type": "string", "format": "date-time"}
_ANY_OBJECT: Schema = {"type": "object"}

CHANNELS = ("email", "sms", "chat", "facebook", "twitter-dm", "twitter-tweet", "voice", "instagram", "whatsapp")
DIRECTIONS = ("in", "out")

# Kustomer's message object, as its published OpenAPI schema describes it (a JSON-schema subset that
# _problems below understands). The .script.yaml forms and the test sandbox are checked against it.
MESSAGE_FIELDS: dict[str, Schema] = {
    "id": _OBJECT_ID,
    "externalId": {"type": "string", "maxLength": 256},
    "customer": _OBJECT_ID,
    "conversation": _OBJECT_ID,
    "reference": {
        "type": "object",
        "properties": {"message": _OBJECT_ID, "type": {"type": "string", "enum": ["reply", "replyAll", "forward"]}},
        "required": ["message", "type"],
        "additionalProperties": False,
    },
    "channel": {"type": "string", "enum": list(CHANNELS)},
    "preview": {"type": "string", "maxLength": 10240},
    "subject": {"type": "string", "maxLength": 256},
    "direction": {"type": "string", "enum": list(DIRECTIONS)},
    "app": {"type": "string"},
    "size": {"type": "number"},
    "related": {"type": "string"},
    "status": {"type": "string", "enum": ["sent", "received", "error"]},
    "error": {
        "type": "object",
        "properties": {
            "status": {"type": "number"},
            "code": {"type": "string"},
            "title": {"type": "string"},
            "detail": {"type": "string"},
            "source": _ANY_OBJECT,
            "meta": _ANY_OBJECT,
            "links": _ANY_OBJECT,
        },
        "additionalProperties": False,
    },
    "errorAt": _DATE_TIME,
    "auto": {"type": "boolean"},
    "sentAt": _DATE_TIME,
    "source": {"type": "string", "enum": ["bulk", "satisfaction"]},
    "shortcuts": {"type": "array", "items": _OBJECT_ID},
    "kbArticles": {"type": "array", "items": _OBJECT_ID},
    "attachments": {
        "anyOf": [
            {"type": "array", "uniqueItems": True, "items": _OBJECT_ID},
            {
                "type": "array",
                "uniqueItems": True,
                "items": {
                    "type": "object",
                    "properties": {
                        "_id": _OBJECT_ID,
                        "name": {"type": "string"},
                        "contentType": {"type": "string"},
                        "contentLength": {"type": "number"},
                        "sourceId": _OBJECT_ID,
                    },
                    "required": ["_id", "name", "contentType", "contentLength"],
                    "additionalProperties": False,
                },
            },
        ]
    },
    "location": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "address": {"type": "string", "maxLength": 256},
            "address2": {"type": "string", "maxLength": 256},
            "address3": {"type": "string", "maxLength": 256},
            "latitude": {"type": "number"},
            "longitude": {"type": "number"},
            "countryCode": {"type": "string", "minLength": 2, "maxLength": 2},
            "countryName": {"type": "string", "maxLength": 64},
            "regionCode": {"type": "string", "maxLength": 2},
            "regionName": {"type": "string", "maxLength": 128},
            "cityName": {"type": "string", "maxLength": 128},
            "zipCode": {"type": "string", "maxLength": 30},
            "areaCode": {"type": "string", "maxLength": 30},
        },
    },
    "meta": {"type": "object", "maxProperties": 100},
    # The export also says additionalProperties: false here, which would forbid every custom
    # attribute; Kustomer's guides use custom attributes freely, so only the key count is checked.
    "custom": {"type": "object", "maxProperties": 100},
    "sentiment": {
        "type": "object",
        "properties": {
            "polarity": {"type": "number", "enum": [-1, 0, 1]},
            "confidence": {"type": "number", "minimum": -1, "maximum": 1},
        },
        "required": ["polarity", "confidence"],
        "additionalProperties": False,
    },
    "createdAt": _DATE_TIME,
    "modifiedAt": _DATE_TIME,
    "createdBy": _OBJECT_ID,
    "modifiedBy": _OBJECT_ID,
    "importedAt": _DATE_TIME,
    "lang": {"type": "string", "maxLength": 100, "nullable": True},
    "queue": {
        "type": "object",
        "properties": {"id": _OBJECT_ID, "external": {"type": "string", "enum": ["amazon-connect"]}},
        "anyOf": [{"required": ["id"]}, {"required": ["external"]}],
        "additionalProperties": False,
    },
}

MAX_BODY_BYTES = 1_000_000  # 10 times Kustomer's documented 100 KB request limit: far over it, refused unsent
MAX_FREE_FORM_DEPTH = 32  # levels of nesting inside a free-form object (meta, custom, error.source, ...)
_MAX_JSON_NUMBER = 1.7976931348623157e308  # Kustomer reads numbers as 64-bit floats; a larger one is infinity


def schema_problems(message: Any, where: str, required: tuple[str, ...], extra: Schema | None = None) -> list[str]:
    fields = {**MESSAGE_FIELDS, **(extra or {})}
    schema: Schema = {"type": "object", "properties": fields, "required": list(required), "additionalProperties": False}
    return _problems(message, schema, where)


def _size_problems(body: Any, where: str) -> list[str]:
    """Refuse a body far over Kustomer's request size before looking at it field by field.

    The estimate counts UTF-8 bytes and stops as soon as it passes the limit, so a huge body costs
    no more than a small one; with this bound, validation below is linear in a body it accepts."""
    size, stack = 0, [body]
    while stack and size <= MAX_BODY_BYTES:
        value = stack.pop()
        if isinstance(value, str):  # bytes as sent: an emoji is 4 of them
            size += (len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))) + 3
        elif isinstance(value, dict):
            size += 2 + 4 * len(value) + sum(len(k) for k in value if isinstance(k, str))
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            size += 2 + len(value)
            stack.extend(value)
        else:
            size += 6
    if size <= MAX_BODY_BYTES:
        return []
    return [
        f"{where}: over {MAX_BODY_BYTES // 1000:,} KB of JSON; Kustomer accepts about 100 KB per request "
        "(413 Payload Too Large above that): send fewer messages per request or shorter texts"
    ]


def _problems(value: Any, schema: Schema, where: str) -> list[str]:
    """What is wrong with `value` against `schema`, one line per problem, each naming where."""
    kind = schema.get("type")
    if kind is None:
        return _any_of_problems(value, schema["anyOf"], where) if value is not None else [f"{where}: got null"]
    if not _has_type(value, kind):
        if value is None:
            return [] if schema.get("nullable") else [f"{where}: must be {_expected(schema)}, got null"]
        return [_type_problem(value, schema, where)]
    if isinstance(value, str) and not _is_text(value):
        return [f"{where}: holds an unpaired surrogate ({show(value)}), which is not text JSON can carry"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {show(value)} is not one of {', '.join(str(v) for v in schema['enum'])}"]
    return _CHECKS[kind](value, schema, where) if kind in _CHECKS else []


def _type_problem(value: Any, schema: Schema, where: str) -> str:
    if schema.get("type") == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float):
            return f"{where}: {value} is not a number JSON can carry (NaN and infinity are not)"
        return f"{where}: a number of about {int(value.bit_length() * 0.30103)} digits is too large for Kustomer"
    return f"{where}: must be {_expected(schema)}, got {describe(value)}"


def _any_of_problems(value: Any, options: list[Schema], where: str) -> list[str]:
    if isinstance(value, list) and value:  # try first the alternative whose items look like these
        options = sorted(options, key=lambda o: not _has_type(value[0], o.get("items", {}).get("type", "")))
    results = []
    for option in options:
        problems = _problems(value, option, where)
        if not problems:
            return []
        results.append(problems)

    # The alternative whose types fit best explains what to fix; on a tie, say each way out.
    def rank(problems: list[str]) -> tuple[int, int]:
        return sum(": must be " in p for p in problems), len(problems)

    best = min(rank(r) for r in results)
    tied = [r for r in results if rank(r) == best]
    if len(tied) > 1 and best[1] == 1:
        return [f"{where}: one of these is needed: " + "; or ".join(r[0] for r in tied)]
    return tied[0]


_JSON_TYPES: dict[str, type] = {"string": str, "boolean": bool, "array": list, "object": dict}


def _has_type(value: Any, kind: str) -> bool:
    if kind == "number":  # bool is an int in Python but not a number in JSON; NaN and infinity are not JSON
        if isinstance(value, float):
            return math.isfinite(value)
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _MAX_JSON_NUMBER
    return isinstance(value, _JSON_TYPES.get(kind, object))


def _is_text(value: str) -> bool:
    """False for a string holding an unpaired surrogate (JSON's "\\ud800" decodes to one): not UTF-8."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string_problems(value: str, schema: Schema, where: str) -> list[str]:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return [f"{where}: {len(value)} characters, at most {schema['maxLength']} allowed"]
    if "minLength" in schema and len(value) < schema["minLength"]:
        return [f"{where}: {len(value)} characters, at least {schema['minLength']} needed"]
    fmt = schema.get("format")
    if fmt == "object-id" and not _OBJECT_ID_RE.fullmatch(value):
        spaces = ": remove the spaces around it" if _OBJECT_ID_RE.fullmatch(value.strip()) else ""
        return [f"{where}: {show(value)} is not a Kustomer id (24 hexadecimal characters){spaces}"]
    if fmt == "date-time":
        problem = _date_time_problem(value)
        if problem:
            return [f"{where}: {show(value)} is not an RFC 3339 date-time ({problem}), e.g. 2024-05-01T12:30:00Z"]
    return []


_OBJECT_ID_RE = re.compile(r"[0-9a-fA-F]{24}")
# RFC 3339 section 5.6: full-date "T" full-time; seconds and a time zone are required; T and Z may be lowercase.
# re.ASCII: \d is 0-9 only; full-width or Arabic-Indic digits pass int() but Kustomer refuses them.
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:[Zz]|([+-])(\d\d):(\d\d))", re.ASCII)
# Patterns used only to explain a refusal: plain strings, compiled by re on first use, not at every import.
_ALMOST_DATE_TIME = r"\d{4}-\d\d-\d\d(?:([Tt ])\d\d:\d\d(:\d\d(?:[.,]\d+)?)?(\s*)([Zz]|[+-]\d\d(:?\d\d)?)?)?"


def _date_time_problem(value: str) -> str | None:
    """None for an RFC 3339 date-time with a real calendar date and time; else what is wrong with it."""
    match = _RFC3339.fullmatch(value)
    if not match:
        near = re.fullmatch(_ALMOST_DATE_TIME, value)
        if not near:
            return "expected YYYY-MM-DDTHH:MM:SS and a time zone"
        separator, seconds, space, zone, zone_minutes = near.groups()
        if not separator:
            return "a date without a time: add a time and zone, like T00:00:00Z"
        if separator == " ":
            return "join the date and the time with T, not a space"
        if not seconds:
            return "no seconds: write the time as HH:MM:SS"
        if seconds.startswith(":") and "," in seconds:
            return "write fractions of a second after a dot, not a comma"
        if not zone:
            return "no time zone: add Z or an offset such as +02:00"
        if space:
            return "no space before the time zone"
        return "write the offset as +HH:MM" if not zone_minutes or ":" not in zone_minutes else "invalid"
    year, month, day, hour, minute, second, sign, offset_hours, offset_minutes = match.groups()
    try:
        datetime(int(year), int(month), int(day))  # a real calendar date
    except ValueError:
        return f"{year}-{month}-{day} is not a date"
    if int(hour) > 23 or int(minute) > 59 or int(second) > 60:
        return f"{hour}:{minute}:{second} is not a time of day"
    if sign and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        return f"{sign}{offset_hours}:{offset_minutes} is not a time offset"
    if int(second) == 60:  # a leap second falls at 23:59:60 UTC only
        offset = (int(offset_hours) * 60 + int(offset_minutes)) * (1 if sign == "+" else -1) if sign else 0
        utc_minutes = (int(hour) * 60 + int(minute) - offset) % (24 * 60)
        if utc_minutes != 23 * 60 + 59:
            return "second 60 exists only at 23:59:60 UTC, a leap second"
    return None


def _number_problems(value: float, schema: Schema, where: str) -> list[str]:
    if "minimum" in schema and value < schema["minimum"]:
        return [f"{where}: {value} is below the minimum {schema['minimum']}"]
    if "maximum" in schema and value > schema["maximum"]:
        return [f"{where}: {value} is above the maximum {schema['maximum']}"]
    return []


def _array_problems(value: list[Any], schema: Schema, where: str) -> list[str]:
    problems = []
    items = schema.get("items", {})
    first_seen: dict[Any, int] = {}
    for i, item in enumerate(value):
        item_problems = _problems(item, items, f"{where}[{i}]") if items else []
        problems += item_problems
        if schema.get("uniqueItems") and not item_problems:  # a valid item has a canonical form
            canonical = _canonical(item)  # one pass with a dict: linear, whatever the length
            if canonical in first_seen:
                problems.append(f"{where}[{i}]: repeats {where}[{first_seen[canonical]}]; items must be unique")
            else:
                first_seen[canonical] = i
    return problems


def _canonical(value: Any) -> Any:
    """A hashable form in which JSON-equal values are equal (1 and 1.0 alike, key order ignored)."""
    if isinstance(value, dict):
        return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_canonical(v) for v in value))
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, float) and value.is_integer():
        return ("number", int(value))
    return ("number" if isinstance(value, int | float) else "string", value)


def _object_problems(value: dict[Any, Any], schema: Schema, where: str) -> list[str]:
    problems = []
    properties: dict[str, Schema] = schema.get("properties", {})
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        problems.append(f"{where}: {len(value)} keys, at most {schema['maxProperties']} allowed")
    for name in schema.get("required", []):
        if name not in value:
            problems.append(f"{where}.{name}: required, but missing")
    if not properties and schema.get("additionalProperties") is not False:
        return problems + _free_form_problems(value, where)  # meta, custom: any JSON, within bounds
    unknown = 0
    for name, item in value.items():
        if not isinstance(name, str):
            problems.append(f"{where}: has a key that is not a string ({describe(name)}); JSON keys are text")
        elif name in properties:
            problems += _problems(item, properties[name], _at(where, name))
        elif schema.get("additionalProperties") is False:
            unknown += 1
            if unknown <= MAX_PROBLEMS_SHOWN:  # a suggestion costs; past this many, the count says enough
                problems.append(f"{_at(where, name)}: unknown field{_suggestion(name, list(properties))}")
        else:  # a field the table does not list, in an object that allows others: any JSON
            problems += _free_form_problems(item, _at(where, name))
    if unknown > MAX_PROBLEMS_SHOWN:
        problems.append(f"{where}: {unknown - MAX_PROBLEMS_SHOWN} more unknown fields")
    if "anyOf" in schema and not problems:
        problems += _any_of_problems(value, [{"type": "object", **option} for option in schema["anyOf"]], where)
    return problems


def _free_form_problems(value: Any, where: str) -> list[str]:
    """Anything JSON can carry, nested at most MAX_FREE_FORM_DEPTH deep; walked without recursion."""
    problems: list[str] = []
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack and len(problems) < MAX_PROBLEMS_SHOWN:
        item, place, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_FREE_FORM_DEPTH:
            problems.append(f"{place}: nested more than {MAX_FREE_FORM_DEPTH} levels deep (the limit inside {where})")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str) or not _is_text(key):
                    problems.append(f"{place}: has a key that is not text ({describe(key)}); JSON keys are strings")
                else:
                    stack.append((inner, _at(place, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, f"{place}[{i}]", depth + 1) for i, inner in enumerate(item))
        elif isinstance(item, str):
            if not _is_text(item):
                problems.append(
                    f"{place}: holds an unpaired surrogate ({show(item)}), which is not text JSON can carry"
                )
        elif isinstance(item, int | float) and not isinstance(item, bool):
            if not _has_type(item, "number"):
                problems.append(_type_problem(item, {"type": "number"}, place))
        elif item is not None and not isinstance(item, bool):
            problems.append(f"{place}: {describe(item)} is not a JSON value")
    return sorted(problems)


_CHECKS: dict[str, Callable[[Any, Schema, str], list[str]]] = {
    "string": _string_problems,
    "number": _number_problems,
    "array": _array_problems,
    "object": _object_problems,
}


def _at(where: str, name: str) -> str:
    """`body.meta` for a plain name; `body["odd name"]` for anything else, shown safely."""
    return f"{where}.{name}" if _PLAIN_NAME.fullmatch(name) else f"{where}[{show(name, 40)}]"


_PLAIN_NAME = re.compile(r"[A-Za-z_$][\w$-]{0,63}")


def _suggestion(name: str, known: list[str]) -> str:
    import difflib  # only on this error path: every import is paid by every Windmill job

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if len(name) <= 64 else []
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(known)}"


def _expected(schema: Schema) -> str:
    kind = schema.get("type")
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    names = {
        "string": "a string",
        "number": "a number",
        "boolean": "true or false",
        "array": "a list",
        "object": "an object",
    }
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"a list of {_expected(schema['items']).removeprefix('a ').removeprefix('an ')}s"
    return names.get(str(kind), "a JSON value")


def _given_body(body: Any) -> tuple[Any, list[str]]:
    """The body as given, or parsed from JSON text: a text body is what keeps Windmill's worker from
    rewriting strings in it (it replaces `$var:...`, `$res:...` and `$WM_TOKEN` in structured job
    arguments, never inside one string). Parsed strictly: no NaN or Infinity, no key named twice."""
    if not isinstance(body, str):
        return body, []
    try:
        return json.loads(body, parse_constant=_not_json_constant, object_pairs_hook=_once_each), []
    except RecursionError:
        return None, ["body: is JSON text nested too deep to read (over about 1,000 levels)"]
    except _RepeatedKeyError as repeated:
        return None, [f"body: the JSON text names the key {show(repeated.key, 40)} twice in one object"]
    except ValueError as exc:  # JSONDecodeError, or a constant refused: say where, never the text itself
        at = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return None, [f"body: is text but not JSON{at}: {why}; give the message object, or its JSON text"]


class _RepeatedKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKeyError(key)
        found[key] = value
    return found


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _token_problems(body: Any, where: str) -> list[str]:
    """Windmill's worker replaces a string `$WM_TOKEN` in a structured argument by the job's own token
    (worker common.rs, transform_json): a customer's text can carry it. It is never sent to Kustomer.
    One comparison per string; the places are found only when there is one."""
    token = os.environ.get("WM_TOKEN")
    if not token:
        return []
    places, stack = [], [(body, where)]
    while stack:
        value, place = stack.pop()
        if isinstance(value, str):
            if value == token:
                places.append(place)
        elif isinstance(value, dict):
            stack.extend((v, _at(place, k) if isinstance(k, str) else place) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{place}[{i}]") for i, v in enumerate(value))
    return [
        f"{place}: holds this job's Windmill token, which Windmill put there in place of a text `$WM_TOKEN`: "
        "pass the body as JSON text (in a flow: JSON.stringify(...)) so that no text in it is replaced"
        for place in sorted(places)
    ]


def _check_before_rerun(body: Any) -> str:
    """What to look up before running again, when Kustomer may or may not have acted."""
    items = [m for m in (body if isinstance(body, list) else [body]) if isinstance(m, dict)]
    what = "The message(s) may or may not have been created, so the request was not repeated."
    has_id = [isinstance(m.get("externalId"), str) and bool(m["externalId"]) for m in items]
    if any(has_id):
        external = [m["externalId"] for m, has in zip(items, has_id, strict=True) if has]
        # Those without an externalId cannot be looked up: named too, or "leave out those that exist"
        # would send them again.
        others = [
            f"body[{i}]"
            + (f" (_clientRef {show(m['_clientRef'], 80)})" if isinstance(m.get("_clientRef"), str) else "")
            for i, (m, has) in enumerate(zip(items, has_id, strict=True))
            if not has
        ]
        unseen = (
            f" The message(s) without an externalId cannot be looked up: check the timelines for "
            f"{_listing(others, quoted=False)} and leave out those that are there."
            if others
            else ""
        )
        return (
            f"{what} Before running again, look up externalId {_listing(external)} in Kustomer "
            f"(GET /v1/messages/externalid=<externalId>) and leave out those that exist.{unseen}"
        )
    refs = [m["_clientRef"] for m in items if isinstance(m.get("_clientRef"), str) and m["_clientRef"]]
    if refs:
        return f"{what} Before running again, check the timelines for the messages with _clientRef {_listing(refs)}."
    return f"{what} Check the conversation timeline in Kustomer before running again, to avoid a duplicate."


def _listing(values: list[str], quoted: bool = True) -> str:
    """The first ten, each shown safely (or as it is, when the script wrote it), and how many more."""
    shown = ", ".join(show(v, 80) if quoted else v for v in values[:10])
    return shown + (f" and {len(values) - 10} more" if len(values) > 10 else "")


# ---- end of shared part "messages" ----


# ---- shared part "transport": the same in every script of scripts/kustomer ----
# Copied from parts/transport.py, as a Windmill script is one file: edit it there, then run shared_parts.

DEFAULT_BASE_URL = "https://api.kustomerapp.com"
USER_AGENT = "windmill-kustomer-scripts/1.1"
MAX_PROBLEMS_SHOWN = 40
_ERROR_BODY_BYTES = 65536  # read of an error answer; Kustomer's own are a few hundred bytes


class RetryPolicy(NamedTuple):
    """Every bound on time and size one job respects. Tests swap in `sleep` and `clock`."""

    connect_timeout: float = 10.0  # seconds to open the connection (nothing sent yet: retried)
    read_timeout: float = 30.0  # seconds of silence from Kustomer once the request is sent
    response_deadline: float = 60.0  # seconds of one attempt: from the connection's start (a proxy's
    #                                  CONNECT and the TLS handshake included) to the answer's last byte
    max_job_seconds: float = 300.0  # every attempt and every wait of one job (a create and its lookup)
    max_response_bytes: int = 10_000_000  # of the answer once decoded, counted as it is decoded
    max_failed_attempts: int = 5  # attempts that got no answer: a failed connection (or a lost GET answer)
    max_rate_limited: int = 20  # 429 answers taken before giving up
    max_total_wait: float = 120.0  # seconds slept between attempts, all added up
    max_single_wait: float = 65.0  # one rate-limit window is 60 s; a longer wait is not waited for
    backoff_first: float = 1.0  # seconds of the first backoff, doubled at each further one ...
    backoff_cap: float = 30.0  # ... up to this
    max_reset_ahead: float = 3600.0  # a rate-limit reset announced further ahead is not believed
    log_waits_from: float = 1.0  # a wait this long or longer prints a line in the job's log
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


POLICY = RetryPolicy()


def _attempts(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")


class _KeptSocket:
    """The socket, by number, of the connection a client keeps open: an attempt's deadline shuts it. A
    retry, or the next call on a kept client, goes out on that connection without a new connect."""

    fd = -1


# Inside `reused_connections()` (a long job's, the import flow's) every call reuses a client per thread
# and kind of host, its connection kept open: per thread, so that an attempt's deadline shuts the socket
# its own request went out on. Outside it each call has its own client, closed at its end.
_REUSED: dict[tuple[bool, str, str, int], tuple[httpx.Client, _KeptSocket]] | None = None
_REUSED_LOCK = threading.Lock()


@contextlib.contextmanager
def reused_connections() -> Iterator[None]:
    """Keep clients open, one per thread, between the calls made inside this block (a long job's)."""
    global _REUSED
    _REUSED = {}
    try:
        yield
    finally:
        clients, _REUSED = _REUSED, None
        for client, _ in clients.values():
            client.close()


class KustomerError(Exception):
    """A failure of this script; its text is what Windmill shows in the run's result pane."""


class KustomerInputError(KustomerError, ValueError):
    """The input is wrong; nothing was sent."""


class KustomerConnectionError(KustomerError):
    """Kustomer could not be reached, or a read got no answer; nothing was created."""


class KustomerAPIError(KustomerError):
    """Kustomer answered with an error status; `status`, `code` and `pointer` are Kustomer's."""

    def __init__(self, message: str, status: int = 0, code: str | None = None, pointer: str | None = None) -> None:
        super().__init__(message)  # the message alone, so that str() is it; the rest survives pickling as attributes
        self.status, self.code, self.pointer = status, code, pointer


class KustomerRateLimitError(KustomerAPIError):
    """Kustomer kept answering 429 for longer than the policy waits; nothing was created. A caller with
    its own lever (the import flow's budget) words its own advice from `facts`, `reset_at` (epoch
    seconds, None if Kustomer did not say) and `answers` (the 429s taken)."""

    def __init__(self, facts: str, advice: str = "", reset_at: float | None = None, answers: int = 0) -> None:
        super().__init__(facts + advice, 429)
        self.facts, self.reset_at, self.answers = facts, reset_at, answers


class KustomerOutcomeUnknownError(KustomerError):
    """The request was sent but its outcome is unknown: it was not repeated, to avoid duplicates."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _raise_if_invalid(problems: list[str], auth: Any = None) -> None:
    """One input error listing every problem. A problem may quote what the user gave, and a key pasted
    into the wrong field (bulk_id, a body field) would be quoted with it: the key of `auth` is hidden."""
    if not problems:
        return
    key = auth.get("apiKey") if isinstance(auth, dict) else None
    if isinstance(key, str) and key.strip():
        problems = [_hide_secret(p, key.strip()) for p in problems]
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    lines = "\n".join(f"- {p}" for p in shown) + (f"\n- ... and {more} more" if more > 0 else "")
    noun = "problem" if len(problems) == 1 else "problems"
    raise KustomerInputError(f"Nothing was sent to Kustomer: the input has {len(problems)} {noun}:\n{lines}")


def auth_problems(auth: Any) -> list[str]:
    """What is wrong with the resource. No value taken from it is ever shown, except a baseUrl that is a
    plain URL: a key pasted into the wrong place must not end up in the result pane."""
    if not isinstance(auth, dict):
        return [
            f"auth: must be a kustomer resource (an object with apiKey), got {describe(auth, shown=False)} (not shown)"
        ]
    problems = []
    key = auth.get("apiKey")
    if "apiKey" not in auth and any(isinstance(k, str) and k.lower().replace("_", "") == "apikey" for k in auth):
        problems.append("auth.apiKey: missing; the resource has a similar key: did you mean apiKey?")
    elif not isinstance(key, str) or not key.strip():
        what = (
            "missing or empty" if key is None or isinstance(key, str) else f"{describe(key, shown=False)}, not a string"
        )
        problems.append(f"auth.apiKey: {what}: set it to a Kustomer API key")
    elif not re.fullmatch(r"[\x21-\x7e]+", key.strip()):
        problems.append("auth.apiKey: contains spaces or characters not allowed in an HTTP header (not shown)")
    base_url = auth.get("baseUrl")
    if base_url is not None and not (isinstance(base_url, str) and not base_url.strip()):  # empty: the US
        problem = base_url_problem(base_url, key if isinstance(key, str) else "")
        if problem:
            problems.append(f"auth.baseUrl: {problem}")
    return problems


# A host name without its scheme, such as api.kustomerapp.eu: labels of at most 63 characters, the last
# one letters only (a key's parts are longer, or hold digits), then perhaps a port and a slash. Only to
# explain a refusal: plain strings, compiled by re on first use.
_HOST_ALONE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?::\d{1,5})?/?"
_LOCAL_ALONE = r"(?:localhost|127(?:\.\d{1,3}){3})(?::\d{1,5})?/?"  # a local sandbox: plain http is allowed


def base_url_problem(base_url: Any, key: str) -> str | None:
    example = "such as https://api.prod2.kustomerapp.com"
    if not isinstance(base_url, str):
        return f"must be a URL string {example}, got {describe(base_url, shown=False)} (not shown)"
    key = key.strip()
    # A short key is found only as the whole field: "abc" is no key inside https://abc.api.kustomerapp.com
    if key and (key in base_url if len(key) >= 16 else base_url.strip() == key):
        return "holds the API key: put the key in apiKey and the region's host, or nothing, in baseUrl"
    try:
        url = httpx.URL(base_url.strip())
    except Exception:
        url = None
    if url is None or not url.scheme or not url.host:
        alone = base_url.strip()
        scheme = "http" if re.fullmatch(_LOCAL_ALONE, alone) else "https" if re.fullmatch(_HOST_ALONE, alone) else ""
        hint = f": add {scheme}:// in front of the host" if scheme else ""
        return f"is not a URL {example}{hint} (not shown, in case it is a key in the wrong field)"
    if url.userinfo:
        return "holds a user name or password before the host (not shown): Kustomer takes only the API key"
    shown = show(base_url.strip(), 120)
    if url.scheme not in ("http", "https"):
        return f"{shown} is not an https URL {example}"
    if not re.fullmatch(rb"[A-Za-z0-9.:-]+", url.raw_host) or not 0 < (url.port or 443) < 65536:
        return f"{shown} does not name a host (and port) that can be reached, {example}"
    if url.path.rstrip("/").lower() == "/v1" and not (url.query or url.fragment):
        return f"{shown} must be a host and nothing else: leave out /v1 (the scripts add it), {example}"
    if url.query or url.fragment or url.path.rstrip("/"):
        return f"{shown} must be a host and nothing else (no path, ?query or #fragment), {example}"
    if url.scheme == "http" and not _is_loopback(url.host):
        return f"{shown} uses plain http, which would send the API key unencrypted: use https://"
    return None


def _base_url(auth: kustomer) -> httpx.URL:
    url = httpx.URL((auth.get("baseUrl") or "").strip() or DEFAULT_BASE_URL)
    return httpx.URL(scheme=url.scheme, host=url.host, port=url.port)  # the host alone: auth_problems said so


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(value: Any, shown: bool = True) -> str:
    """A value the user gave, by its kind and (unless `shown` is False, for what may be a secret) as
    `show` renders it: "a string 'fax'", "nothing (null)"."""
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    kind = "nothing (null)" if value is None else names.get(type(value), f"a {type(value).__name__}")
    return f"{kind} {show(value)}" if shown and value is not None else kind


def show(value: Any, limit: int = 60) -> str:
    """A short, printable rendering of any value: never more than about `limit` characters, whatever
    the depth or size of the value."""
    shown = _render(value, limit + 1, top=True)
    shown = shown if len(shown) <= limit else shown[: limit - 3] + "..."
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")  # an unpaired surrogate, escaped


def _render(value: Any, room: int, top: bool = False) -> str:
    """`value` as text, stopping once past `room` characters: each level of nesting writes one at least
    and leaves the next less room, so the recursion is no deeper than `room`."""
    if isinstance(value, str):  # room may be below 0, past the budget: value[:-2] would copy nearly all of it
        return repr(value[: max(room, 0)]) if top else json.dumps(value[: max(room, 0)], ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() < 1000 else f"<a {int(value.bit_length() * 0.30103)}-digit number>"
    if isinstance(value, float):
        return repr(value)
    if not isinstance(value, dict | list):
        return f"<{type(value).__name__}>"
    text = "{" if isinstance(value, dict) else "["
    for i, entry in enumerate(value.items() if isinstance(value, dict) else value):
        if len(text) > room:
            return text
        text += ", " if i else ""
        if isinstance(value, dict):
            name, entry = entry
            text += (_render(name, room - len(text)) if isinstance(name, str) else describe(name, shown=False)) + ": "
        text += _render(entry, room - len(text))
    return text + ("}" if isinstance(value, dict) else "]")


class _Endpoint(NamedTuple):
    method: str
    path: str  # percent-encoded, with its query if any
    role: str  # the role a key needs here, named when Kustomer answers 401 or 403
    not_found: str  # what a 404 means here
    max_bytes: int = 0  # of a success answer, if less than the policy's


def _call_kustomer(
    auth: kustomer,
    endpoint: _Endpoint,
    body: Any = None,
    if_unknown: str = "",
    deadline: float = math.inf,
    waits_until: float = math.inf,
) -> Any:
    """Send one request to Kustomer and return its JSON answer, or raise a KustomerError.

    `if_unknown` says what to check when a write went out and its answer was lost. By `deadline` (the
    policy's clock) every attempt and wait ends; by `waits_until`, when earlier, every wait. The error
    raised carries no chained exception and no traceback from below this call: those would hold httpx's
    request, whose Authorization header is the key."""
    url = _base_url(auth).copy_with(raw_path=endpoint.path.encode("ascii"))  # the path arrives percent-encoded
    exchange = _Exchange(auth["apiKey"].strip(), url, endpoint, deadline, waits_until)
    if_unknown = _hide_secret(if_unknown, exchange.key)  # a key as externalId: on every path, the unexpected's too
    failure: KustomerError
    try:
        return exchange.send_handling_retries(body, if_unknown)
    except KustomerError as exc:
        failure = exc
    except Exception as exc:  # a bug or an httpx surprise: still never the key, nor its traceback
        failure = exchange.unexpected(exc, if_unknown)
    failure.__cause__ = failure.__context__ = None
    raise failure.with_traceback(None)  # raised outside the `except`, so no context is attached again


class _NoAnswer(Exception):  # noqa: N818  # an internal signal, never raised to the user
    """An attempt that ended without a usable answer; `sent` says whether any of the request went out."""

    def __init__(self, reason: str, sent: bool, status: int | None = None, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.sent, self.status, self.retry = reason, sent, status, retry


class _AttemptClock:
    """One attempt's deadline, `seconds` from its start: when it passes, the connection's socket is shut,
    which ends any read or write under way at once (a socket that connects later is shut as it does).
    Its timer thread acts only under the lock, and only until the attempt stops it."""

    def __init__(self, seconds: float, kept: _KeptSocket) -> None:
        self.seconds, self.kept = seconds, kept
        self.expired = False
        self._timer: threading.Timer | None = None
        self._started = self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Once per attempt, even if httpcore retries on a new connection."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def connected(self, fd: int) -> None:
        """A new connection's socket (-1 while one is being made: the old number means nothing now)."""
        with self._lock:
            self.kept.fd = fd
            if self.expired and not self._stopped and fd >= 0:
                _shut(fd)

    def stop(self) -> None:
        """Before the answer is closed: once the connection goes back to the pool, or its number to the
        system, this attempt's deadline has nothing to do with it."""
        with self._lock:
            self._stopped = True
            if self._timer:
                self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:  # the attempt ended as its deadline passed
                return
            self.expired = True
            if self.kept.fd >= 0:
                _shut(self.kept.fd)


def _shut(fd: int) -> None:
    """By the socket's number: a TLS handshake or exchange runs on an ssl socket that took it over (the
    socket object httpcore connected with is detached by then, and shutting it would do nothing)."""
    with contextlib.suppress(OSError):  # closed already
        held = socket.socket(fileno=fd)
        try:
            held.shutdown(socket.SHUT_RDWR)
        finally:
            held.detach()  # the connection's socket stays httpcore's to close


class _Attempt:
    """What one attempt learns from httpcore's trace hook: whether it traced at all, and whether any of
    the request went out. Its clock starts with the first event."""

    def __init__(self, clock: _AttemptClock) -> None:
        self.clock = clock
        self.traced = self.sent = False

    def trace(self, event: str, info: dict[str, Any]) -> None:
        self.traced = True
        self.clock.start()  # before the connection, so a proxy's CONNECT and the TLS handshake count
        if event.endswith(".connect_tcp.started"):  # directly or through a proxy
            self.clock.connected(-1)
        elif event.endswith(".connect_tcp.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            self.clock.connected(sock.fileno() if sock is not None else -1)
        elif event.endswith(".send_request_headers.started") and info["request"].method != b"CONNECT":
            self.sent = True


class _Exchange:
    """One call to Kustomer: the request, whether any of it went out, and how the server's text is shown."""

    def __init__(self, key: str, url: httpx.URL, endpoint: _Endpoint, deadline: float, waits_until: float) -> None:
        self.key, self.url, self.endpoint, self.policy = key, url, endpoint, POLICY
        self.deadline = min(deadline, self.policy.clock() + self.policy.max_job_seconds)
        self.where = _hide_secret(f"{endpoint.method} {url}", key)  # a lookup's path holds what the user gave
        self.answers = _Answers(key, self.where, endpoint)
        self.out_of_time = False  # a wait or an attempt was cut short by the job's time
        self.sent = False  # whether any of the last attempt's request went out
        self.waited = 0.0
        self.timeout = httpx.Timeout(self.policy.read_timeout, connect=self.policy.connect_timeout)
        self.waits_until = min(waits_until, self.deadline)

    # -- the layers, from the outside in --

    def send_handling_retries(self, body: Any, if_unknown: str) -> Any:
        content = None if body is None else self.encode(body)
        failures = rate_limited = 0
        announced: float | None = None  # the last believable reset Kustomer announced
        held, kept = self.client()
        with held as client:
            while True:
                try:
                    if self.deadline - self.policy.clock() < 1:
                        self.out_of_time = True
                        raise _NoAnswer("this job's time ran out before the attempt", False, retry=False)
                    response, raw = self.attempt(client, kept, content)
                    if response.status_code >= 500 and self.endpoint.method == "GET":  # reading again is safe
                        raise _NoAnswer(f"Kustomer answered {response.status_code}", True, response.status_code)
                except _NoAnswer as lost:
                    failures += 1
                    wait = _failed_attempt_wait(failures, self.waited, self.policy) if lost.retry else None
                    wait = self.in_time(wait)
                    if lost.sent and self.endpoint.method != "GET":
                        raise KustomerOutcomeUnknownError(
                            f"The request {self.where} was sent, and {lost.reason}. {if_unknown}", lost.status
                        ) from None
                    if wait is None:
                        raise self.no_answer_error(lost, failures) from None
                    self.pause(wait, f"{self.where}: {lost.reason}", failures + 1, self.policy.max_failed_attempts)
                    continue
                if response.status_code != 429:
                    return self.answers.result(response, raw, if_unknown)
                rate_limited += 1
                reset_at = reset_time(response.headers, self.policy.clock(), self.policy)
                announced = reset_at or announced
                wait = self.in_time(rate_limit_wait(reset_at, rate_limited, self.waited, self.policy))
                if wait is None:
                    raise self.rate_limit_error(raw, rate_limited, announced)
                why = f"Kustomer answered 429 Too Many Requests to {self.where} (the org's rate limit)"
                self.pause(wait, why, rate_limited + 1, self.policy.max_rate_limited)

    def in_time(self, wait: float | None) -> float | None:
        """`wait`, unless the job's time would be up before an attempt after it could end, or the wait
        would end after `waits_until`: None."""
        if wait is not None and self.policy.clock() + wait + 1 > min(self.deadline, self.waits_until):
            self.out_of_time = True
            return None
        return wait

    def client(self) -> tuple[contextlib.AbstractContextManager[httpx.Client], _KeptSocket]:
        """This call's client and its connection's socket: its own, or this thread's that
        `reused_connections()` keeps (left open)."""
        connect = max(1.0, min(self.policy.connect_timeout, self.deadline - self.policy.clock()))
        self.timeout = httpx.Timeout(self.policy.read_timeout, connect=connect)
        cafile, capath = os.environ.get("SSL_CERT_FILE") or "", os.environ.get("SSL_CERT_DIR") or ""
        loopback = _is_loopback(self.url.host)  # a local sandbox never goes through a proxy: the key would cross it
        if _REUSED is None:
            return self.new_client(loopback, cafile, capath), _KeptSocket()
        key = (loopback, cafile, capath, threading.get_ident())
        with _REUSED_LOCK:
            if key not in _REUSED:
                _REUSED[key] = (self.new_client(loopback, cafile, capath), _KeptSocket())
            client, kept = _REUSED[key]
            return contextlib.nullcontext(client), kept

    def new_client(self, loopback: bool, cafile: str, capath: str) -> httpx.Client:
        trust = trusted_context(cafile or None, capath or None)
        try:
            client = httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=not loopback, verify=trust)
            _freeze_once()  # httpx imports httpcore when it makes its first client
            return client
        except Exception as exc:  # a proxy setting that cannot be used: an unknown scheme, socks without socksio
            names = [
                n for n in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY") if os.environ.get(n) or os.environ.get(n.lower())
            ]
            raise KustomerConnectionError(
                f"Nothing was sent to Kustomer: this worker's proxy settings ({', '.join(names) or 'environment'}) "
                f"cannot be used ({type(exc).__name__}; the value is not shown, as it may hold a password). "
                "Fix or remove them, then run again."
            ) from None

    def attempt(self, client: httpx.Client, kept: _KeptSocket, content: bytes | None) -> tuple[httpx.Response, bytes]:
        """Send once and read the answer within the size and time bounds, or raise _NoAnswer."""
        seconds = max(0.0, min(self.policy.response_deadline, self.deadline - self.policy.clock()))
        attempt = _Attempt(_AttemptClock(seconds, kept))
        self.out_of_time = self.out_of_time or seconds < self.policy.response_deadline
        try:
            return self.send_once(client, content, attempt)
        finally:
            attempt.clock.stop()
            self.sent = attempt.sent

    def send_once(self, client: httpx.Client, content: bytes | None, attempt: _Attempt) -> tuple[httpx.Response, bytes]:
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        headers["Accept-Encoding"] = "gzip, deflate"  # what _BoundedDecoder reads, and nothing it cannot bound
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = client.build_request(
                self.endpoint.method,
                self.url,
                content=content,
                headers=headers,
                timeout=self.timeout,
                extensions={"trace": attempt.trace},
            )
            response = client.send(request, stream=True)
            try:
                return response, self.read_body(response, attempt)
            finally:
                attempt.clock.stop()  # before the connection goes back to the pool, or its number is freed
                response.close()
        except _NoAnswer:
            raise
        except Exception as exc:
            problem = _certificate_problem(exc, self.url.host)
            if problem:  # the same certificate would come back: trying again would only wait
                raise self.untrusted_error(problem) from None
            if not attempt.traced:  # a transport that does not trace (a test double): judge by what failed
                attempt.sent = isinstance(exc, _AFTER_SENDING)
            connect_failed = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError)
            retry = not attempt.sent and not attempt.clock.expired and connect_failed  # a dripping proxy drips again
            raise _NoAnswer(self.failure_reason(exc, attempt), attempt.sent, retry=retry or attempt.sent) from None

    def read_body(self, response: httpx.Response, attempt: _Attempt) -> bytes:
        success = response.is_success
        limit = (self.endpoint.max_bytes or self.policy.max_response_bytes) if success else _ERROR_BODY_BYTES
        chunks: list[bytes] = []
        try:
            decoder = _BoundedDecoder(response.headers.get_list("content-encoding", split_commas=True), limit)
            for piece in response.iter_raw():
                chunks.append(decoder.feed(piece))
                if decoder.full:
                    break
        except Exception as exc:
            if not success:
                return b"".join(chunks)  # an error status whose body broke off: the status explains it
            undecodable = isinstance(exc, ValueError | zlib.error) and not attempt.clock.expired
            reason = _clean(str(exc), self.key, 200) if undecodable else self.failure_reason(exc, attempt)
            status = response.status_code
            raise _NoAnswer(f"Kustomer answered {status}, but its answer broke off ({reason})", True, status) from None
        if decoder.full and success:
            raise _NoAnswer(
                f"Kustomer answered {response.status_code}, but its answer was over {limit:,} bytes, too large to read",
                True,
                response.status_code,
                retry=False,
            )
        return b"".join(chunks)

    def failure_reason(self, exc: Exception, attempt: _Attempt) -> str:
        clock = attempt.clock
        if clock.expired and clock.seconds < self.policy.response_deadline:
            return "this job's time ran out during the exchange, which was cut off"
        if clock.expired:
            return f"the exchange took longer than {clock.seconds:.0f} s and was cut off"
        known = [_TRANSPORT_REASONS[kind] for kind in type(exc).__mro__ if kind in _TRANSPORT_REASONS]
        reason = known[0] if known else f"the request failed ({type(exc).__name__})"  # the most specific
        detail = _clean(str(exc), self.key, 200)
        return f"{reason}: {detail}" if detail else reason

    # -- waits --

    def pause(self, wait: float, why: str, attempt: int, most: int) -> None:
        _wait_saying_why(self.policy, wait, why, f"attempt {attempt} of at most {most}")
        self.waited += wait

    def rate_limit_error(self, raw: bytes, count: int, reset_at: float | None) -> KustomerRateLimitError:
        when = "Kustomer did not say when its rate-limit window resets"
        if reset_at is not None:
            stamp, ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_at)), reset_at - self.policy.clock()
            when = f"the window resets at {stamp} (in {ahead:.0f} s)"
            if ahead < 0:
                when = f"the window was announced to reset at {stamp}, {-ahead:.0f} s ago, and is still full"
        facts = (
            f"Rate limited by Kustomer: {count} answer(s) 429 Too Many Requests to {self.where} over "
            f"{self.waited:.0f} s of waiting ({self.wait_bound()}); {when}. {self.answers.error_details(raw)[0]}"
            f"{self.answers.nothing_done()}"
        )
        advice = (
            "Run again after the reset; in a flow, lower the for-loop's parallelism or spread the schedule: the "
            "limit is shared by every key and app of the org."
        )
        return KustomerRateLimitError(facts, advice, reset_at, count)

    def untrusted_error(self, problem: str) -> KustomerConnectionError:
        return KustomerConnectionError(
            f"Nothing was sent to Kustomer: the server at {self.url.scheme}://{self.url.netloc.decode()} showed a "
            f"TLS certificate this worker cannot trust: {problem}. It was not tried again (the certificate would be "
            f"the same), so {self.unchanged()} Check that auth.baseUrl is Kustomer's API host, such as "
            "https://api.kustomerapp.com. If this worker reaches the internet through a TLS-inspecting proxy, give "
            "the worker that proxy's CA: SSL_CERT_FILE (a PEM file) or SSL_CERT_DIR (a hashed directory) in its "
            "environment."
        )

    def wait_bound(self) -> str:
        if self.out_of_time and self.waits_until < self.deadline:  # only the waiter's main waits less than it may run
            return "the next wait would have ended past the time given to wait (max_wait_seconds)"
        if self.out_of_time:
            return f"the next wait would have gone past this job's time, {self.policy.max_job_seconds:.0f} s at most"
        return f"this script waits at most {self.policy.max_total_wait:.0f} s"

    def no_answer_error(self, lost: _NoAnswer, attempts: int) -> KustomerConnectionError:
        if lost.sent:  # a GET: reading again was safe, and did not help
            return KustomerConnectionError(
                f"Kustomer gave no usable answer to {self.where} ({lost.reason}), {_attempts(attempts)} over "
                f"{self.waited:.0f} s. A GET changes nothing in Kustomer: run again later."
            )
        host = self.url.host  # api.kustomerapp.eu is a guess at the EU's host, which is another name
        region = f" {_REGION_HINT}" if "kustomer" in host and not host.endswith(".kustomerapp.com") else ""
        return KustomerConnectionError(
            f"Could not connect to {self.url.scheme}://{self.url.netloc.decode()} ({lost.reason}), "
            f"{_attempts(attempts)} over {self.waited:.0f} s. Nothing was sent, so {self.unchanged()} "
            f"Check auth.baseUrl, the network and any proxy settings, then run again.{region}"
        )

    def unchanged(self) -> str:
        """What a request that never reached Kustomer left as it was. A read creates nothing, so after a GET
        "nothing was created" would read as if the messages an earlier step created were not there."""
        if self.endpoint.method == "GET":
            return "this read changed nothing in Kustomer (what earlier steps created is unaffected)."
        return "nothing was created."

    def unexpected(self, exc: Exception, if_unknown: str) -> KustomerError:
        text = _clean(f"{type(exc).__name__}: {exc}", self.key, 300)
        if self.sent and self.endpoint.method != "GET":
            return KustomerOutcomeUnknownError(f"Unexpected error while calling Kustomer ({text}). {if_unknown}")
        return KustomerConnectionError(f"Unexpected error before Kustomer answered ({text}), so {self.unchanged()}")

    def encode(self, body: Any) -> bytes:
        try:
            return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:  # validation should have caught it: say so anyway
            raise KustomerInputError(
                f"Nothing was sent to Kustomer: body is not JSON ({type(exc).__name__}); check its nested values."
            ) from None


class _Answers:
    """What an answer from Kustomer means: the result, or the error a user reads, in Kustomer's words
    (cleaned) with a hint. It knows the call (its key, where it went, its endpoint), not its attempts."""

    def __init__(self, key: str, where: str, endpoint: _Endpoint) -> None:
        self.key, self.where, self.endpoint = key, where, endpoint

    def result(self, response: httpx.Response, raw: bytes, if_unknown: str) -> Any:
        status = response.status_code
        reason = f"{status} {_clean(response.reason_phrase, self.key, 60)}".strip()
        if response.is_success:
            too_large: list[str] = []

            def finite(text: str) -> Any:  # 1e400 is no float: keep its text, so the result stays JSON
                value = float(text)
                if math.isfinite(value):
                    return value
                too_large.append(text)
                return text

            try:
                answer = _without_key(json.loads(raw, parse_constant=_refuse_constant, parse_float=finite), self.key)
            except (ValueError, RecursionError):
                shown = _clean(raw[:1000].decode("utf-8", "replace"), self.key, 200) or "an empty body"
                if self.endpoint.method == "GET":
                    raise KustomerAPIError(
                        f"Kustomer answered {reason} to {self.where}, but not with JSON ({shown}).", status
                    ) from None
                raise KustomerOutcomeUnknownError(
                    f"Kustomer answered {reason} to {self.where}, which means success, but its answer was not "
                    f"JSON ({shown}). The request most likely took effect. {if_unknown}",
                    status,
                ) from None
            if too_large:
                data = answer.get("data") if isinstance(answer, dict) else None
                which = f" (id {_clean(data.get('id'), self.key, 40)})" if isinstance(data, dict) else ""
                print(
                    f"Kustomer answered {reason} to {self.where}{which}, but its answer holds {len(too_large)} "
                    f"number(s) too large for JSON ({_clean(', '.join(too_large), self.key, 60)}): the result gives "
                    "each as its text, the rest as Kustomer sent it.",
                    flush=True,
                )
            return answer
        if response.is_redirect:
            target = _clean(response.headers.get("location", "?"), self.key, 120)
            said, fix = f"Kustomer answered {reason} to {self.where}, pointing to {target}.", _REDIRECT_FIX
            if self.endpoint.method != "GET":  # the request arrived: it may have taken effect before the redirect
                raise KustomerOutcomeUnknownError(
                    f"{said} The request arrived, so it may have taken effect; it was neither followed (the API key "
                    f"stays with the host you chose) nor repeated. {if_unknown} {fix}",
                    status,
                )
            raise KustomerAPIError(
                f"{said} Redirects are not followed, so the API key stays with the host you chose. "
                f"{self.nothing_done()}{fix}",
                status,
            )
        text, code, pointer = self.error_details(raw)
        if status >= 500:
            if self.endpoint.method == "GET":
                raise KustomerAPIError(f"Kustomer answered {reason} to {self.where}: {text}", status, code, pointer)
            raise KustomerOutcomeUnknownError(f"Kustomer answered {reason} to {self.where}: {text}{if_unknown}", status)
        raise KustomerAPIError(
            f"Kustomer rejected the request with {reason} on {self.where}: {text}{self.nothing_done()}"
            f"{self.hint(status, text)}".strip(),
            status,
            code,
            pointer,
        )

    def nothing_done(self) -> str:
        return "" if self.endpoint.method == "GET" else "Nothing was created. "

    def hint(self, status: int, text: str) -> str:
        role = self.endpoint.role
        if status in (401, 403) and "pod" in text:
            return "The key belongs to another region: " + _REGION_HINT
        hints = {
            400: "Fix the field named above and run again.",
            401: f"Check that auth.apiKey is a current Kustomer API key with the role {role}; a key's roles cannot "
            "be changed, so create a new key if needed. A key works only in its own region: " + _REGION_HINT,
            403: f"The key lacks a role this request needs: {role}.",
            404: self.endpoint.not_found,
            409: "Kustomer reported a conflict with the current state of the record; run again once it settles.",
            413: "The request is too large for Kustomer (about 100 KB): send fewer messages per request or shorter "
            "previews.",
        }
        return hints.get(status, "")

    def error_details(self, raw: bytes) -> tuple[str, str | None, str | None]:
        """Kustomer's own words from an error body, short and safe to show, whatever its shape; and the
        first error's code and pointer."""
        text = raw[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
        try:
            errors = json.loads(text).get("errors")
        except (ValueError, AttributeError, RecursionError):
            errors = None
        if isinstance(errors, list) and errors:
            parts, code, pointer = [], None, None
            for error in [e for e in errors[:5] if isinstance(e, dict)]:
                words = [_clean(error.get(k), self.key, 300) for k in ("code", "title", "message", "detail")]
                source = error["source"] if isinstance(error.get("source"), dict) else {}
                places = {k: _clean(source.get(k), self.key, 100) for k in ("pointer", "parameter", "parameters")}
                words += [f"at {k} {v}" for k, v in places.items() if v]
                code = code or _clean(error.get("code"), self.key, 100) or None
                pointer = pointer or places["pointer"] or places["parameter"] or None
                if any(words):
                    parts.append(": ".join(dict.fromkeys(w for w in words if w)))
            more = f" (and {len(errors) - 5} more errors)" if len(errors) > 5 else ""
            if parts:
                return _clean("; ".join(parts), self.key, 600) + more + ". ", code, pointer
        if not text.strip():
            return "(no error details in the answer). ", None, None
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        if title:
            text = title.group(1)
        elif text.lstrip().startswith("<"):
            text = re.sub(r"<[^>]*>", " ", text)
        return f"{_clean(text, self.key, 300)}. ", None, None


_TRANSPORT_REASONS: dict[type[Exception], str] = {
    httpx.ConnectTimeout: "the connection timed out",
    httpx.ProxyError: "the proxy refused the connection",
    httpx.ConnectError: "the connection failed",
    httpx.ReadTimeout: "no answer came within the read timeout",
    httpx.WriteTimeout: "sending timed out",
    httpx.PoolTimeout: "no connection was free in time",
    httpx.RemoteProtocolError: "the connection was closed or the answer was malformed",
    httpx.ReadError: "the connection broke",
    httpx.WriteError: "the connection broke while sending",
    httpx.UnsupportedProtocol: "the URL's protocol is not supported",
    httpx.LocalProtocolError: "the request could not be written",
    httpx.TimeoutException: "a timeout passed",
}
# Failures that can only happen once the request has started to go out.
_AFTER_SENDING = (httpx.ReadError, httpx.ReadTimeout, httpx.WriteError, httpx.WriteTimeout, httpx.RemoteProtocolError)
# Only text from the server on an error path is cleaned: compiled by re on first use, not at every import.
_ANSI_ESCAPE = r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)?"
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
_REDIRECT_FIX = "Set auth.baseUrl to the API host itself, e.g. https://api.kustomerapp.com."
_REGION_HINT = (
    "set auth.baseUrl to the key's region: EU https://api.prod2.kustomerapp.com, India "
    "https://api.prod4.kustomerapp.com, or https://<your-org>.api.kustomerapp.com, which routes to it."
)


_MAX_ENCODING_LAYERS = 2


class _BoundedDecoder:
    """Undoes Content-Encoding (gzip, deflate, layered as listed) while counting what comes out, so a
    small compressed answer cannot inflate past `limit` bytes in memory: a 2 KB bomb stops at the limit."""

    def __init__(self, encodings: list[str], limit: int) -> None:
        layers = [e.strip().lower() for e in encodings if e.strip().lower() not in ("", "identity")]
        unknown = [e for e in layers if e not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise ValueError(f"it is encoded as {', '.join(unknown)[:40]}, which this script does not read")
        if len(layers) > _MAX_ENCODING_LAYERS:  # each layer is a decoder; thousands would cost memory and time
            raise ValueError(f"it is encoded {len(layers)} times over; at most {_MAX_ENCODING_LAYERS} layers are read")
        self.layers = [zlib.decompressobj(zlib.MAX_WBITS | 32) for _ in reversed(layers)]  # gzip or zlib header
        self.limit, self.size, self.full = limit, 0, False

    def feed(self, data: bytes) -> bytes:
        for layer in self.layers:
            data = layer.decompress(data, self.limit - self.size + 1)  # never more than the limit at once
        data = data[: self.limit - self.size + 1]
        self.size += len(data)
        if self.size > self.limit:
            self.full = True
            return data[: len(data) - (self.size - self.limit)]
        return data


@functools.cache
def trusted_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """The CAs a server's certificate is checked against, decided once per job: the worker's
    SSL_CERT_FILE / SSL_CERT_DIR when set (a TLS-inspecting proxy's CA); else the system's hashed
    certificate directory, from which OpenSSL reads only the CA a handshake needs; else certifi's
    bundle (about 140 CAs parsed up front, as httpx does by default). Verification is never off."""
    if not (cafile or capath):
        capath = ssl.get_default_verify_paths().capath  # None when the directory does not exist
        with contextlib.suppress(OSError):
            hashed = capath and any(e.name[8:9] == "." and e.name[9:].isdigit() for e in os.scandir(capath))
            if hashed:
                return ssl.create_default_context(capath=capath)
        import certifi  # httpx's own dependency

        return ssl.create_default_context(cafile=certifi.where())
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        names = " and ".join(n for n, v in (("SSL_CERT_FILE", cafile), ("SSL_CERT_DIR", capath)) if v)
        raise KustomerConnectionError(
            f"Nothing was sent to Kustomer: this worker's {names} cannot be read as CA certificates "
            f"({type(exc).__name__}: {_clean(str(exc), '', 120)}). Point it to a PEM file (or a hashed directory) "
            "holding the CA to trust, or unset it to use the system's."
        ) from None


@functools.cache
def _freeze_once() -> None:
    """What httpcore's import made, out of later collections (as the collector part does for httpx's):
    once per process, as a dedicated worker runs many jobs in one."""
    gc.freeze()


def _certificate_problem(exc: BaseException, host: str) -> str:
    """What was wrong with the server's certificate, if that is why the connection failed; else empty."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx's error, from httpcore's, from ssl's
        if seen is not None and not isinstance(seen, ssl.SSLCertVerificationError):
            seen = seen.__cause__ or seen.__context__
    if not isinstance(seen, ssl.SSLCertVerificationError):
        return ""
    unknown_ca = "it was issued by a certificate authority this worker does not trust"
    problems = {
        9: "it is not valid yet (or this worker's clock is wrong)",
        10: "it has expired (or this worker's clock is wrong)",
        18: "it is self-signed",
        19: unknown_ca,  # a self-signed CA in the chain
        20: unknown_ca,  # the issuer is not among the trusted
        21: unknown_ca,  # the first certificate's issuer is not among the trusted
        62: f"it was issued for another host name, not {host}",
    }
    return problems.get(seen.verify_code, f"{_clean(str(seen.verify_message), '', 120)} (code {seen.verify_code})")


def _wait_saying_why(policy: RetryPolicy, wait: float, why: str, then: str) -> None:
    """Sleep `wait` seconds; from `log_waits_from` on, first say why in one line, which Windmill shows as
    the job's log while it runs (never the key, never the body)."""
    if wait >= policy.log_waits_from:
        until = time.strftime("%H:%M:%S", time.gmtime(policy.clock() + wait))
        print(f"{why}; waiting {wait:.0f} s, until {until} UTC, then {then}.", flush=True)
    if wait > 0:
        policy.sleep(wait)


def _failed_attempt_wait(attempts: int, waited: float, policy: RetryPolicy) -> float | None:
    """How long to wait before trying again after an attempt got no answer; None to give up."""
    wait = _backoff(attempts, policy)
    return None if attempts >= policy.max_failed_attempts or waited + wait > policy.max_total_wait else wait


def rate_limit_wait(reset_at: float | None, losses: int, waited: float, policy: RetryPolicy) -> float | None:
    """How long to wait after the `losses`-th 429 in a row; None to give up.

    Kustomer's announced reset is followed, plus under a second of jitter that shrinks with each
    loss: jobs of one parallel import share no state, so this is how the one that has waited longest
    gets the next window first. From the second 429 on, the wait is never less than an exponential
    backoff, so a server that keeps announcing a reset a second ahead gets a handful of requests."""
    if reset_at is None:
        wait = _backoff(losses, policy)
    else:
        floor = 0.0 if losses == 1 else min(policy.backoff_cap, policy.backoff_first * 2.0 ** (losses - 2))
        wait = max(reset_at - policy.clock(), floor) + random.uniform(0.1, 1.0) / losses
    too_long = wait > policy.max_single_wait or waited + wait > policy.max_total_wait
    return None if losses >= policy.max_rate_limited or too_long else wait


def _backoff(attempt: int, policy: RetryPolicy) -> float:
    """Exponential backoff with jitter, about 1, 2, 4, 8 s, so parallel jobs do not retry in step."""
    return min(policy.backoff_cap, policy.backoff_first * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def reset_time(headers: httpx.Headers, now: float, policy: RetryPolicy) -> float | None:
    """When Kustomer's rate-limit window resets (epoch seconds), from Retry-After (seconds or an HTTP
    date) and x-ratelimit-reset (epoch seconds or milliseconds, or seconds from now). A value that is
    not finite, lies in the past or more than `max_reset_ahead` away is not believed: None."""
    times = []
    retry_after = headers.get("retry-after", "").strip()
    if retry_after:
        seconds = _number(retry_after)
        if seconds is not None:
            times.append(now + seconds)
        else:
            import email.utils  # only for the HTTP-date form of Retry-After

            with contextlib.suppress(TypeError, ValueError, OverflowError, IndexError):
                date = email.utils.parsedate_to_datetime(retry_after)
                times.append((date if date.tzinfo else date.replace(tzinfo=UTC)).timestamp())
    value = _number(headers.get("x-ratelimit-reset", ""))
    if value is not None and value > 0:
        if value > 1e12:  # epoch milliseconds
            value /= 1000
        times.append(value if value > 1e9 else now + value)  # epoch seconds, else seconds from now
    believable = [t for t in times if math.isfinite(t) and now - 1 <= t <= now + policy.max_reset_ahead]
    return max(believable) if believable else None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # so a result always is: Windmill stores it as it is


def _clean(value: Any, key: str, limit: int) -> str:
    """A value that came from the server or the network, as it may be shown (a log line, an error, a
    report): a string, or a number as its text (anything else is nothing), with control and format
    characters removed, the key and any 16 characters of it hidden, whitespace folded, then shortened
    to `limit` characters. Never used on the script's own words."""
    finite_number = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e300
    text = value if isinstance(value, str) else str(value) if finite_number else ""
    text = text[: 16 * limit + 4096]  # 9 MB of status text costs no more than a page
    if not (text.isascii() and text.isprintable()):  # the usual case ("OK", "Created") compiles no pattern
        text = re.sub(_CONTROL, " ", re.sub(_ANSI_ESCAPE, "", text))
    if not text.isascii():
        import unicodedata  # only for text that needs it

        text = "".join(c for c in text if c.isascii() or unicodedata.category(c)[0] not in "CZ" or c == " ")
    text = " ".join(_hide_secret(text, key).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _without_key(value: Any, key: str) -> Any:
    """The answer with the key, and any 16 characters of it, hidden wherever a string holds them (a
    server may echo the request back, whole or cut off); everything else exactly as Kustomer sent it."""
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = list(item.items()) if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else []
        for name, inner in pairs:
            if isinstance(inner, str):
                hidden = _hide_secret(inner, key)
                if hidden != inner:
                    item[name] = hidden
            elif isinstance(inner, dict | list):
                stack.append(inner)
            hidden_name = _hide_secret(name, key) if isinstance(name, str) else name
            if hidden_name != name:
                item[hidden_name] = item.pop(name)
    return value if not isinstance(value, str) else _hide_secret(value, key)


def _hide_secret(text: str, key: str) -> str:
    return _hide_key_fragments(_hide_key(text, key), key) if key else text


def _hide_key(text: str, key: str) -> str:
    """The key, and its URL-encoded forms, replaced by [redacted]. A key shorter than 16 characters is
    hidden only where it stands as a word, so the sandbox key "k" does not turn "look" into "loo[redacted]"."""
    from urllib.parse import quote, quote_plus  # loaded by httpx already

    for form in dict.fromkeys((key, quote(key, safe=""), quote_plus(key, safe=""))):
        if form not in text:
            continue
        if len(form) >= 16:
            text = text.replace(form, "[redacted]")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", "[redacted]", text)
    return text


def _hide_key_fragments(text: str, key: str, size: int = 16) -> str:
    """Any run of `size` or more characters of the key (a server may echo a cut-off key) replaced by
    [redacted]; one pass over the text with a set of the key's windows, so it stays linear."""
    if len(key) < size or len(text) < size:
        return text
    # Any `size` characters of the key hold one of its aligned blocks of size/2 whole: a quick test first
    half = size // 2
    if not any(key[i : i + half] in text for i in range(0, len(key) - half + 1, half)):
        return text
    windows = {key[i : i + size] for i in range(len(key) - size + 1)}
    parts: list[str] = []
    end = 0  # where the text not yet written starts
    for i in range(len(text) - size + 1):
        if text[i : i + size] in windows:
            if i > end or not parts:  # else this window overlaps or touches the last hidden run
                parts += [text[end:i], "[redacted]"]
            end = i + size
    return "".join(parts) + text[end:] if parts else text


# ---- end of shared part "transport" ----
