"""Bulk create messages: record up to 100 messages on Kustomer conversation timelines in one request.

POST /v1/messages/bulk. Kustomer queues the batch and answers with a bulk operation
(`result.data.id`, status `queued`, `running` or `complete`; poll `GET /v1/bulk/<id>`, which needs
the role `org.permission.bulk.read`). The messages are *recorded*, not delivered to customers. The
API key needs the role `org.permission.message.create` (or the legacy `org.user.message.write`).

Every message is checked against Kustomer's published schema before anything is sent, and every
problem is reported at once with its position (`body[3].channel: ...`). Give each message a
`_clientRef` (all of them or none) to match Kustomer's per-item results to your input. Rate limits
(429) are waited out; a request whose outcome is unknown is never repeated. For more than 100
messages use the flow `f/kustomer/import_messages`, which batches and loops.
"""

import contextlib
import ipaddress
import json
import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, NotRequired, TypedDict

import httpx


class kustomer(TypedDict):
    """A Kustomer API key, and the host of its region when that is not the US one."""

    apiKey: str
    baseUrl: NotRequired[str]


def main(auth: kustomer, body: list[dict]) -> Any:  # type: ignore[type-arg]  # Windmill's form needs a bare `dict`
    """Record `body`, a list of 1 to 100 Kustomer message objects, and return Kustomer's bulk operation."""
    _raise_if_invalid(_auth_problems(auth) + _bulk_problems(body))
    return _post_json(auth, "/v1/messages/bulk", body)


BULK_REQUIRED = ("channel", "app")
MAX_BULK_ITEMS = 100
CLIENT_REF: dict[str, dict[str, Any]] = {"_clientRef": {"type": "string", "minLength": 1, "maxLength": 255}}


def _bulk_problems(body: Any) -> list[str]:
    if not isinstance(body, list):
        return [f"body: must be a list of 1 to {MAX_BULK_ITEMS} message objects, got {_describe(body)}"]
    if not body:
        return [f"body: the list is empty; give 1 to {MAX_BULK_ITEMS} messages"]
    problems = []
    if len(body) > MAX_BULK_ITEMS:
        problems.append(
            f"body: {len(body)} messages, at most {MAX_BULK_ITEMS} per request: split them, "
            "or use the flow f/kustomer/import_messages, which sends any number in batches"
        )
    for i, message in enumerate(body):
        problems += _message_problems(message, f"body[{i}]", BULK_REQUIRED, CLIENT_REF)
    return problems + _client_ref_problems(body)


def _client_ref_problems(body: list[Any]) -> list[str]:
    """Kustomer answers 400 unless _clientRef is on every item or none, and unique."""
    has_ref = [isinstance(m, dict) and "_clientRef" in m for m in body]
    if any(has_ref) and not all(has_ref):
        missing = [f"body[{i}]" for i, has in enumerate(has_ref) if not has]
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
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


# ---- shared block: byte-identical in create_message.py and bulk_create_messages.py ----
# Windmill runs each script as a self-contained file, so the code both need is copied, not imported.
# tests/test_shared_block.py fails when the two copies drift apart.

DEFAULT_BASE_URL = "https://api.kustomerapp.com"
USER_AGENT = "windmill-kustomer-scripts/1.0"

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

_MAX_PROBLEMS_SHOWN = 40
_ERROR_BODY_BYTES = 65536  # read of an error answer; Kustomer's own are a few hundred bytes


class RetryPolicy(NamedTuple):
    """Every bound on time and size one job respects. Tests swap in `sleep` and `clock`."""

    connect_timeout: float = 10.0  # seconds to open the connection (nothing sent yet: retried)
    read_timeout: float = 30.0  # seconds of silence from Kustomer once the request is sent
    response_deadline: float = 60.0  # seconds to receive a whole answer, however it trickles in
    max_response_bytes: int = 10_000_000
    max_connect_attempts: int = 5  # tries to open a connection; nothing is sent before one opens
    max_total_wait: float = 120.0  # seconds slept between attempts, all added up: bounds 429 retries
    max_single_wait: float = 65.0  # one rate-limit window is 60 s; a longer wait is not waited for
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


POLICY = RetryPolicy()


class KustomerError(Exception):
    """A failure of this script; its text is what Windmill shows in the run's result pane."""


class KustomerInputError(KustomerError, ValueError):
    """The input is wrong; nothing was sent."""


class KustomerAPIError(KustomerError):
    """Kustomer answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KustomerRateLimitError(KustomerAPIError):
    """Kustomer kept answering 429 for longer than the policy waits; nothing was created."""


class KustomerConnectionError(KustomerError):
    """No connection to Kustomer could be opened; nothing was sent."""


class KustomerOutcomeUnknownError(KustomerError):
    """The request was sent but its outcome is unknown: it was not repeated, to avoid duplicates."""


def _raise_if_invalid(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    lines = "\n".join(f"- {p}" for p in shown) + (f"\n- ... and {more} more" if more > 0 else "")
    noun = "problem" if len(problems) == 1 else "problems"
    raise KustomerInputError(f"Nothing was sent to Kustomer: the input has {len(problems)} {noun}:\n{lines}")


def _auth_problems(auth: Any) -> list[str]:
    if not isinstance(auth, dict):
        return [f"auth: must be a kustomer resource (an object with apiKey), got {_describe(auth)}"]
    problems = []
    key = auth.get("apiKey")
    if not isinstance(key, str) or not key.strip():
        problems.append("auth.apiKey: missing or empty: set it to a Kustomer API key")
    elif not re.fullmatch(r"[\x21-\x7e]+", key.strip()):
        problems.append("auth.apiKey: contains spaces or characters not allowed in an HTTP header (value not shown)")
    base_url = auth.get("baseUrl")
    if base_url is not None and not (isinstance(base_url, str) and not base_url.strip()):  # empty: the US
        problem = _base_url_problem(base_url)
        if problem:
            problems.append(f"auth.baseUrl: {problem}")
    return problems


def _base_url_problem(base_url: Any) -> str | None:
    if not isinstance(base_url, str):
        return f"must be a URL string, got {_describe(base_url)}"
    try:
        url = httpx.URL(base_url.strip())
    except Exception:
        return f"{base_url!r} is not a URL"
    if url.scheme == "https" and url.host:
        return None
    if url.scheme == "http" and url.host and _is_loopback(url.host):
        return None  # a local sandbox; the key never leaves this machine
    if url.scheme == "http":
        return f"{base_url!r} uses plain http, which would send the API key unencrypted: use https://"
    return f"{base_url!r} is not an https URL such as {DEFAULT_BASE_URL}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _message_problems(message: Any, where: str, required: tuple[str, ...], extra: Schema | None = None) -> list[str]:
    fields = {**MESSAGE_FIELDS, **(extra or {})}
    schema: Schema = {"type": "object", "properties": fields, "required": list(required), "additionalProperties": False}
    return _problems(message, schema, where)


def _problems(value: Any, schema: Schema, where: str) -> list[str]:
    """What is wrong with `value` against `schema`, one line per problem, each naming where."""
    kind = schema.get("type")
    if kind is None:
        return _any_of_problems(value, schema["anyOf"], where) if value is not None else [f"{where}: got null"]
    if not _has_type(value, kind):
        if value is None:
            return [] if schema.get("nullable") else [f"{where}: must be {_expected(schema)}, got null"]
        return [f"{where}: must be {_expected(schema)}, got {_describe(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {_show(value)} is not one of {', '.join(str(v) for v in schema['enum'])}"]
    check = _CHECKS.get(kind)
    return check(value, schema, where) if check and len(schema) > 1 else []


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
    if kind == "number":
        # bool is an int in Python but not a number in JSON; NaN and infinity are not JSON at all
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and abs(value) != float("inf")
            and value == value
        )
    return isinstance(value, _JSON_TYPES.get(kind, object))


def _string_problems(value: str, schema: Schema, where: str) -> list[str]:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return [f"{where}: {len(value)} characters, at most {schema['maxLength']} allowed"]
    if "minLength" in schema and len(value) < schema["minLength"]:
        return [f"{where}: {len(value)} characters, at least {schema['minLength']} needed"]
    fmt = schema.get("format")
    if fmt == "object-id" and not _OBJECT_ID_RE.fullmatch(value):
        return [f"{where}: {_show(value)} is not a Kustomer id (24 hexadecimal characters)"]
    if fmt == "date-time" and not _is_date_time(value):
        return [f"{where}: {_show(value)} is not an ISO 8601 date-time such as 2024-05-01T12:30:00Z"]
    return []


_OBJECT_ID_RE = re.compile(r"[0-9a-fA-F]{24}")
_DATE_TIME_RE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?")


def _is_date_time(value: str) -> bool:
    if not _DATE_TIME_RE.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # a real calendar date and time
    except ValueError:
        return False
    return True


def _number_problems(value: float, schema: Schema, where: str) -> list[str]:
    if "minimum" in schema and value < schema["minimum"]:
        return [f"{where}: {value} is below the minimum {schema['minimum']}"]
    if "maximum" in schema and value > schema["maximum"]:
        return [f"{where}: {value} is above the maximum {schema['maximum']}"]
    return []


def _array_problems(value: list[Any], schema: Schema, where: str) -> list[str]:
    problems = []
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                problems.append(f"{where}[{i}]: repeats an earlier item; items must be unique")
            seen.append(item)
    items = schema.get("items")
    if items:
        for i, item in enumerate(value):
            problems += _problems(item, items, f"{where}[{i}]")
    return problems


def _object_problems(value: dict[str, Any], schema: Schema, where: str) -> list[str]:
    problems = []
    properties: dict[str, Schema] = schema.get("properties", {})
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        problems.append(f"{where}: {len(value)} keys, at most {schema['maxProperties']} allowed")
    for name in schema.get("required", []):
        if name not in value:
            problems.append(f"{where}.{name}: required, but missing")
    closed = schema.get("additionalProperties") is False
    if properties or closed:  # a free-form object (meta, custom) has nothing to check key by key
        for name, item in value.items():
            if name in properties:
                problems += _problems(item, properties[name], f"{where}.{name}")
            elif closed:
                problems.append(f"{where}.{name}: unknown field{_suggestion(name, list(properties))}")
    if "anyOf" in schema and not problems:
        problems += _any_of_problems(value, [{"type": "object", **option} for option in schema["anyOf"]], where)
    return problems


_CHECKS: dict[str, Callable[[Any, Schema, str], list[str]]] = {
    "string": _string_problems,
    "number": _number_problems,
    "array": _array_problems,
    "object": _object_problems,
}


def _suggestion(name: str, known: list[str]) -> str:
    import difflib  # only on this error path: every import is paid by every Windmill job

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
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


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return f"{names.get(type(value), type(value).__name__)} {_show(value)}"


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str | float) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _post_json(auth: kustomer, path: str, body: Any) -> Any:
    """POST `body` to Kustomer and return its JSON; any failure raises a KustomerError with the key redacted."""
    key = auth["apiKey"].strip()
    try:
        return _send(auth, key, path, body)
    except KustomerError as exc:
        exc.args = (str(exc).replace(key, "[redacted]"),)  # an error body may echo the key back
        raise
    except Exception as exc:  # a bug or an httpx surprise: still never show the key, nor its traceback
        text = f"{type(exc).__name__}: {exc}".replace(key, "[redacted]")
        raise KustomerOutcomeUnknownError(
            f"Unexpected error while calling Kustomer ({text}). {_check_before_rerun(body)}"
        ) from None


def _send(auth: kustomer, key: str, path: str, body: Any) -> Any:
    base_url = ((auth.get("baseUrl") or "").strip() or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
    url = base_url + path
    try:
        content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError):
        raise KustomerInputError(
            "Nothing was sent to Kustomer: body holds a value JSON cannot carry (NaN, infinity or a non-JSON type)."
        ) from None
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    policy = POLICY
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    waited = 0.0
    failed_connections = 0
    rate_limited = 0
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        while True:
            try:
                response, raw = _post_once(client, url, content, headers, policy)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError) as exc:
                # No connection to Kustomer was made, so nothing was received: safe to try again.
                failed_connections += 1
                wait = _backoff(failed_connections)
                if failed_connections == policy.max_connect_attempts or waited + wait > policy.max_total_wait:
                    raise KustomerConnectionError(
                        f"Could not connect to {base_url} ({_transport_error(exc)}), {failed_connections} attempt(s) "
                        f"over {waited:.0f} s. Nothing was sent, so nothing was created. "
                        "Check auth.baseUrl, the network and any proxy settings, then run again."
                    ) from None
            except _ResponseBrokenError as failure:
                raise KustomerOutcomeUnknownError(f"{failure} {_check_before_rerun(body)}") from None
            except httpx.TransportError as exc:
                raise KustomerOutcomeUnknownError(
                    f"The request to POST {url} was sent, but {_transport_error(exc)} before Kustomer answered. "
                    f"{_check_before_rerun(body)}"
                ) from None
            else:
                if response.status_code != 429:
                    return _result(response, raw, url, body)
                rate_limited += 1
                wait, reset_at = _rate_limit_wait(response.headers, rate_limited, policy.clock())
                if wait > policy.max_single_wait or waited + wait > policy.max_total_wait:
                    raise KustomerRateLimitError(_rate_limited_text(raw, rate_limited, waited, reset_at, policy), 429)
            policy.sleep(wait)
            waited += wait


class _ResponseBrokenError(Exception):
    """Kustomer's status line arrived but the body did not arrive whole."""


def _post_once(
    client: httpx.Client, url: str, content: bytes, headers: dict[str, str], policy: RetryPolicy
) -> tuple[httpx.Response, bytes]:
    """Send once; read the answer within the size and time bounds."""
    with client.stream("POST", url, content=content, headers=headers) as response:
        deadline = policy.clock() + policy.response_deadline
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if not response.is_success and size > _ERROR_BODY_BYTES:
                    break  # an error body: its beginning is enough to explain it
                if size > policy.max_response_bytes or policy.clock() > deadline:
                    if response.is_success:
                        reason = "was too large" if size > policy.max_response_bytes else "took too long"
                        raise _ResponseBrokenError(
                            f"Kustomer answered {response.status_code} to POST {url}, but its answer {reason} to read."
                        )
                    break  # an error body: its beginning is enough to explain it
        except httpx.TransportError as exc:
            if response.is_success:
                raise _ResponseBrokenError(
                    f"Kustomer answered {response.status_code} to POST {url}, "
                    f"but {_transport_error(exc)} before its answer arrived whole."
                ) from None
            # an error status whose body broke off: the status alone explains it
        return response, b"".join(chunks)


def _transport_error(exc: Exception) -> str:
    reasons: dict[type[Exception], str] = {
        httpx.ConnectTimeout: "the connection timed out",
        httpx.ReadTimeout: "no answer came within the read timeout",
        httpx.WriteTimeout: "sending timed out",
        httpx.RemoteProtocolError: "the connection was closed",
        httpx.ReadError: "the connection broke",
        httpx.WriteError: "the connection broke while sending",
        httpx.ProxyError: "the proxy refused the connection",
    }
    reason = reasons.get(type(exc), "the connection failed")
    detail = str(exc).strip()
    return f"{reason}: {_clip(detail, 200)}" if detail else reason


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: about 1, 2, 4, 8 s, so parallel jobs do not retry in step."""
    return float(min(30.0, 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def _rate_limit_wait(headers: httpx.Headers, losses: int, now: float) -> tuple[float, float | None]:
    """How long to wait after the `losses`-th 429, and when the window resets (epoch seconds) if said.

    Jobs released by the same reset wake a little apart, and the more 429s a job has had, the
    sooner it wakes: jobs of one parallel import share no state, so this is how the longest
    waiter gets the next window's first slots instead of losing the race again and again.
    """
    reset_at = _reset_time(headers, now)
    if reset_at is not None and reset_at > now:
        return reset_at - now + random.uniform(0.1, 1.0) / losses, reset_at
    return _backoff(losses), reset_at


def _reset_time(headers: httpx.Headers, now: float) -> float | None:
    times = []
    retry_after = headers.get("retry-after", "").strip()
    if retry_after:
        try:
            times.append(now + float(retry_after))
        except ValueError:
            import email.utils  # only for the HTTP-date form of Retry-After

            with contextlib.suppress(TypeError, ValueError):
                times.append(email.utils.parsedate_to_datetime(retry_after).timestamp())
    reset = headers.get("x-ratelimit-reset", "").strip()
    try:
        value = float(reset)
    except ValueError:
        value = float("nan")
    if value == value and value > 0:
        if value > 1e12:  # epoch milliseconds
            value /= 1000
        times.append(value if value > 1e9 else now + value)  # epoch seconds, else seconds from now
    return max(times) if times else None


def _rate_limited_text(raw: bytes, count: int, waited: float, reset_at: float | None, policy: RetryPolicy) -> str:
    when = "Kustomer did not say when its rate-limit window resets"
    if reset_at is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_at))
        when = f"the window resets at {stamp} (in {max(0.0, reset_at - policy.clock()):.0f} s)"
    return (
        f"Rate limited by Kustomer: {count} answer(s) 429 Too Many Requests over {waited:.0f} s of waiting "
        f"(this script waits at most {policy.max_total_wait:.0f} s); {when}. {_error_text(raw)}"
        "Nothing was created. Run again after the reset; in a flow, lower the for-loop's parallelism "
        "or spread the schedule: the limit is shared by every key and app of the org."
    )


def _result(response: httpx.Response, raw: bytes, url: str, body: Any) -> Any:
    status = response.status_code
    if response.is_success:
        try:
            return json.loads(raw)
        except ValueError:
            shown = _clip(raw.decode("utf-8", "replace"), 200) or "an empty body"
            raise KustomerOutcomeUnknownError(
                f"Kustomer answered {status} to POST {url}, which means success, but its answer was not JSON "
                f"({shown}). The request most likely took effect. {_check_before_rerun(body)}"
            ) from None
    reason = f"{status} {response.reason_phrase}".strip()
    if response.is_redirect:
        target = response.headers.get("location", "?")
        raise KustomerAPIError(
            f"Kustomer answered {reason} to POST {url}, pointing to {_clip(target, 120)}. Redirects are not "
            "followed, so the API key stays with the host you chose. Nothing was created. "
            "Set auth.baseUrl to the API host itself, e.g. https://api.kustomerapp.com.",
            status,
        )
    if status >= 500:
        raise KustomerOutcomeUnknownError(
            f"Kustomer answered {reason} to POST {url}: {_error_text(raw)}{_check_before_rerun(body)}"
        )
    hint = _HINTS.get(status, "")
    if status in (401, 403) and b"pod" in raw:
        hint = "The key belongs to another region: " + _REGION_HINT
    raise KustomerAPIError(
        f"Kustomer rejected the request with {reason} on POST {url}: {_error_text(raw)}"
        f"Nothing was created. {hint}".strip(),
        status,
    )


_REGION_HINT = (
    "set auth.baseUrl to the key's region: EU https://api.prod2.kustomerapp.com, India "
    "https://api.prod4.kustomerapp.com, or https://<your-org>.api.kustomerapp.com, which routes to it."
)
_HINTS = {
    400: "Fix the field named above and run again.",
    401: (
        "Check that auth.apiKey is a current Kustomer API key with the role org.permission.message.create "
        "(or legacy org.user.message.write); a key's roles cannot be changed, so create a new key if needed. "
        "A key works only in its own region: " + _REGION_HINT
    ),
    403: "The key lacks a role this request needs: it needs org.permission.message.create (or org.user.message.write).",
    404: "Check the conversation, customer and other ids in the body: they must exist in the key's org.",
    409: "Kustomer reported a conflict with the current state of the record; run again once it settles.",
    413: "The request is too large for Kustomer (about 100 KB): send fewer messages per request or shorter previews.",
}


def _error_text(raw: bytes) -> str:
    """Kustomer's own words from an error body, short, whatever its shape."""
    text = raw[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
    try:
        errors = json.loads(text).get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        parts = []
        for error in errors[:5]:
            if not isinstance(error, dict):
                continue
            words = [str(error[k]) for k in ("code", "title", "message", "detail") if error.get(k) not in (None, "")]
            source = error.get("source")
            if isinstance(source, dict):
                words += [f"at {k} {v}" for k, v in source.items() if k in ("pointer", "parameter", "parameters")]
            if words:
                parts.append(": ".join(dict.fromkeys(words)))
        more = f" (and {len(errors) - 5} more errors)" if len(errors) > 5 else ""
        if parts:
            return _clip("; ".join(parts), 600) + more + ". "
    if not text.strip():
        return "(no error details in the answer). "
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if title:
        text = title.group(1)
    elif text.lstrip().startswith("<"):
        text = re.sub(r"<[^>]*>", " ", text)
    return f"{_clip(text, 300)}. "


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_before_rerun(body: Any) -> str:
    """What to look up before running again, when Kustomer may or may not have acted."""
    items = [m for m in (body if isinstance(body, list) else [body]) if isinstance(m, dict)]
    what = "The message(s) may or may not have been created, so the request was not repeated."
    external = [str(m["externalId"]) for m in items if m.get("externalId")]
    if external:
        return (
            f"{what} Before running again, look up externalId {_listing(external)} in Kustomer "
            "(GET /v1/messages/externalid=<externalId>) and leave out those that exist."
        )
    refs = [str(m["_clientRef"]) for m in items if m.get("_clientRef")]
    if refs:
        return f"{what} Before running again, check the timelines for the messages with _clientRef {_listing(refs)}."
    return f"{what} Check the conversation timeline in Kustomer before running again, to avoid a duplicate."


def _listing(values: list[str]) -> str:
    shown = ", ".join(repr(v) for v in values[:10])
    return shown + (f" and {len(values) - 10} more" if len(values) > 10 else "")


# ---- end of shared block ----
