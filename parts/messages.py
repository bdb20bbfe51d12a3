"""Kustomer's message schema, checked before anything is sent: the part of create_message and
bulk_create_messages that knows what a message may hold.

The source of the shared part "messages": `uv run python -m workbench.shared_parts` copies the
region between its markers into every script (or flow step) that holds it; only what is between the
markers is copied, the imports above are for the checkers.
"""

import json
import math
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from parts.transport import MAX_PROBLEMS_SHOWN, describe, show  # defined beside it in every script

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
