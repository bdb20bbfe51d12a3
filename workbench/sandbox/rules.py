"""Kustomer's rules for a message, written for the sandbox alone (with jsonschema, not with the
scripts' code, so the fuzz tests can check the two against each other), and Kustomer's error shape."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import jsonschema

_ID = {"type": "string", "format": "object-id"}
_WHEN = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit}


def _closed(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_MESSAGE_PROPERTIES: dict[str, Any] = {
    "id": _ID,
    "externalId": _text(256),
    "customer": _ID,
    "conversation": _ID,
    "reference": _closed({"message": _ID, "type": {"enum": ["reply", "replyAll", "forward"]}}, "message", "type"),
    "channel": {
        "enum": ["email", "sms", "chat", "facebook", "twitter-dm", "twitter-tweet", "voice", "instagram", "whatsapp"]
    },
    "preview": _text(10240),
    "subject": _text(256),
    "direction": {"enum": ["in", "out"]},
    "app": _TEXT,
    "size": {"type": "number"},
    "related": _TEXT,
    "status": {"enum": ["sent", "received", "error"]},
    "error": _closed(
        {
            "status": {"type": "number"},
            **{k: _TEXT for k in ("code", "title", "detail")},
            **{k: {"type": "object"} for k in ("source", "meta", "links")},
        }
    ),
    "errorAt": _WHEN,
    "auto": {"type": "boolean"},
    "sentAt": _WHEN,
    "source": {"enum": ["bulk", "satisfaction"]},
    "shortcuts": {"type": "array", "items": _ID},
    "kbArticles": {"type": "array", "items": _ID},
    "attachments": {
        "type": "array",
        "uniqueItems": True,
        "anyOf": [
            {"items": _ID},
            {
                "items": _closed(
                    {
                        "_id": _ID,
                        "name": _TEXT,
                        "contentType": _TEXT,
                        "contentLength": {"type": "number"},
                        "sourceId": _ID,
                    },
                    "_id",
                    "name",
                    "contentType",
                    "contentLength",
                )
            },
        ],
    },
    "location": {
        "type": "object",
        "properties": {
            **{k: _text(256) for k in ("address", "address2", "address3")},
            "name": _TEXT,
            "latitude": {"type": "number"},
            "longitude": {"type": "number"},
            "countryCode": {"type": "string", "minLength": 2, "maxLength": 2},
            "countryName": _text(64),
            "regionCode": _text(2),
            "regionName": _text(128),
            "cityName": _text(128),
            "zipCode": _text(30),
            "areaCode": _text(30),
        },
    },
    # The export's additionalProperties: false on custom would refuse every custom attribute; Kustomer's
    # guides use them, so like the scripts the sandbox checks the key count only.
    "meta": {"type": "object", "maxProperties": 100},
    "custom": {"type": "object", "maxProperties": 100},
    "sentiment": _closed(
        {"polarity": {"enum": [-1, 0, 1]}, "confidence": {"type": "number", "minimum": -1, "maximum": 1}},
        "polarity",
        "confidence",
    ),
    "createdAt": _WHEN,
    "modifiedAt": _WHEN,
    "createdBy": _ID,
    "modifiedBy": _ID,
    "importedAt": _WHEN,
    "lang": {"type": ["string", "null"], "maxLength": 100},
    "queue": {
        **_closed({"id": _ID, "external": {"enum": ["amazon-connect"]}}),
        "anyOf": [{"required": ["id"]}, {"required": ["external"]}],
    },
}
CREATE_SCHEMA = _closed(_MESSAGE_PROPERTIES, "channel", "app", "direction")
BULK_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": 100,
    "items": _closed(
        {**_MESSAGE_PROPERTIES, "_clientRef": {"type": "string", "minLength": 1, "maxLength": 255}}, "channel", "app"
    ),
}

_formats = jsonschema.FormatChecker(formats=())


@_formats.checks("object-id")
def _is_object_id(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[0-9a-fA-F]{24}", value) is not None


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 section 5.6 date-time, as the published schema's `format: date-time` means it: a "T"
    (or "t"), seconds, and "Z" or a +HH:MM offset are required; 60 seconds only in a leap second, at
    23:59:60 UTC. ASCII digits only. Any year 0001 to 9999 with any offset under 24 h is a date-time,
    even where its UTC instant falls outside those years."""
    if not isinstance(value, str):
        return True
    pattern = r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))"
    match = re.fullmatch(pattern, value, re.ASCII)
    if not match:
        return False
    year, month, day, hour, minute, second, sign, off_hours, off_minutes = match.groups()
    datetime(int(year), int(month), int(day), int(hour), int(minute))  # ValueError: not a real date or time
    if int(second) > 60 or (sign and (int(off_hours) > 23 or int(off_minutes) > 59)):
        return False
    if int(second) == 60:
        offset = (int(off_hours) * 60 + int(off_minutes)) * (1 if sign == "+" else -1) if sign else 0
        return (int(hour) * 60 + int(minute) - offset) % 1440 == 23 * 60 + 59
    return True


def _is_number(checker: Any, value: object) -> bool:
    # JSON has no NaN or infinity, and true is not a number
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # untyped in types-jsonschema
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _is_number),
)
_CREATE = _Validator(CREATE_SCHEMA, format_checker=_formats)
_BULK = _Validator(BULK_SCHEMA, format_checker=_formats)


def body_errors(path: str, body: Any) -> list[dict[str, Any]]:
    """Kustomer-shaped errors for a request body; empty when Kustomer would accept it."""
    validator = _BULK if path == "/v1/messages/bulk" else _CREATE
    errors = [
        error_object(400, "invalid_value", e.message, "/" + "/".join(str(p) for p in e.absolute_path))
        for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if path == "/v1/messages/bulk" and isinstance(body, list) and not errors:
        refs = [m.get("_clientRef") for m in body]
        if any(r is not None for r in refs) and any(r is None for r in refs):
            errors.append(error_object(400, "invalid_client_ref", "_clientRef must be on every item or on none", "/"))
        elif len({r for r in refs if r is not None}) != len([r for r in refs if r is not None]):
            errors.append(error_object(400, "invalid_client_ref", "_clientRef values must be unique", "/"))
    return errors


def error_object(status: int, code: str, detail: str, pointer: str | None = None) -> dict[str, Any]:
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        413: "Payload Too Large",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
    error: dict[str, Any] = {"status": status, "code": code, "title": titles.get(status, "Error"), "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return error


def kustomer_errors(status: int, code: str, detail: str) -> dict[str, Any]:
    return {"errors": [error_object(status, code, detail)]}


UNAUTHORIZED = kustomer_errors(401, "unauthorized", "a Bearer token is required")
