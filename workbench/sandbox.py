"""A Kustomer stand-in on loopback: the messages endpoints, Kustomer's answers, and switches for faults.

    uv run kustomer-sandbox [--port N] [--rate-limit N --window S] [--latency MS] [--fault KIND]

Serves POST /v1/messages, POST /v1/messages/bulk and GET /v1/bulk/{id} as Kustomer documents them:
a Bearer token is required (401 in Kustomer's error shape without one), bodies are checked against
Kustomer's published message rules on its own, with jsonschema and not with the scripts' code (400
in Kustomer's JSON:API error shape, one error per problem, each with its pointer), and answers carry
fresh ids in Kustomer's response shapes. GET /__sandbox/requests lists what it received (the token
hidden), so you see exactly what would have been sent; DELETE clears it; POST /__sandbox/config
changes the switches below while it runs.

Switches: a rate limit (requests per window, x-ratelimit-* headers on every answer, 429 past it),
added latency, and faults for the next N requests: 429 (always rate limited), 500/502/503 (a JSON
error), html_500 (a 1 MB HTML page), hang (reads the request, never answers), drop (closes the
connection mid-answer), not_json and empty (a 2xx that is not JSON), redirect (307 to another host).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema

FAULTS = ("429", "500", "502", "503", "html_500", "hang", "drop", "not_json", "empty", "redirect")

# ---- Kustomer's published rules for a message, written for the sandbox alone ----

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
    (or "t"), seconds, and "Z" or a +HH:MM offset are required; 60 seconds only in a leap second."""
    if not isinstance(value, str):
        return True
    match = re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:(\d{2})(?:\.\d+)?(?:[Zz]|[+-]\d{2}:(\d{2}))", value)
    if not match or int(match.group(2) or 0) > 59:
        return False
    text = value.upper().replace("Z", "+00:00")
    leap = match.group(1) == "60"
    moment = datetime.fromisoformat(text[:17] + "59" + text[19:] if leap else text)  # ValueError: not a real date
    utc = moment.astimezone(UTC)
    return not leap or (utc.hour, utc.minute) == (23, 59)


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
        _error(400, "invalid_value", e.message, "/" + "/".join(str(p) for p in e.absolute_path))
        for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if path == "/v1/messages/bulk" and isinstance(body, list) and not errors:
        refs = [m.get("_clientRef") for m in body]
        if any(r is not None for r in refs) and any(r is None for r in refs):
            errors.append(_error(400, "invalid_client_ref", "_clientRef must be on every item or on none", "/"))
        elif len({r for r in refs if r is not None}) != len([r for r in refs if r is not None]):
            errors.append(_error(400, "invalid_client_ref", "_clientRef values must be unique", "/"))
    return errors


def _error(status: int, code: str, detail: str, pointer: str | None = None) -> dict[str, Any]:
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


_UNAUTHORIZED = {"errors": [_error(401, "unauthorized", "a Bearer token is required")]}


def _object_id() -> str:
    return secrets.token_hex(12)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- the server ----


class Sandbox:
    """The sandbox server, in a background thread: `with Sandbox(rate_limit=...) as box: box.url`."""

    # the switches; configure() changes them while it runs
    rate_limit: int | None
    window: float
    latency: float
    fault: str | None
    fault_count: int | None
    max_body_bytes: int | None

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rate_limit: int | None = None,
        window: float = 60.0,
        latency: float = 0.0,
        fault: str | None = None,
        fault_count: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self.org = _object_id()
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.bulks: dict[str, dict[str, Any]] = {}
        self.stopping = threading.Event()
        self.window_index = -1
        self.window_count = 0
        self.configure(
            rate_limit=rate_limit,
            window=window,
            latency=latency,
            fault=fault,
            fault_count=fault_count,
            max_body_bytes=max_body_bytes,
        )
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.sandbox = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="kustomer-sandbox", daemon=True
        )

    def configure(self, **switches: Any) -> None:
        unknown = set(switches) - {"rate_limit", "window", "latency", "fault", "fault_count", "max_body_bytes"}
        if unknown:
            raise ValueError(f"unknown sandbox switches: {', '.join(sorted(unknown))}")
        if switches.get("fault") not in (None, *FAULTS):
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        with self.lock:
            for name, value in switches.items():
                setattr(self, name, value)

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Sandbox:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- per-request decisions, under the lock --

    def take_fault(self) -> str | None:
        with self.lock:
            if self.fault is None or self.fault_count == 0:
                return None
            if self.fault_count is not None:
                self.fault_count -= 1
            return str(self.fault)

    def count_for_rate_limit(self) -> tuple[dict[str, str], bool]:
        """The x-ratelimit-* headers for this request, and whether it is over the limit."""
        with self.lock:
            if not self.rate_limit:
                return {}, False
            now = time.time()
            index = math.floor(now / self.window)
            if index != self.window_index:
                self.window_index, self.window_count = index, 0
            self.window_count += 1
            reset = (index + 1) * self.window
            headers = {
                "x-ratelimit-limit": str(self.rate_limit),
                "x-ratelimit-remaining": str(max(0, self.rate_limit - self.window_count)),
                "x-ratelimit-reset": str(math.ceil(reset)),
            }
            return headers, self.window_count > self.rate_limit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kustomer-sandbox/1.0"

    @property
    def box(self) -> Sandbox:
        box: Sandbox = self.server.sandbox  # type: ignore[attr-defined]
        return box

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the requests list says it all
        pass

    def do_GET(self) -> None:
        if self.path == "/__sandbox/requests":
            with self.box.lock:
                self._send(200, list(self.box.requests))
        elif self.path == "/__sandbox/messages":
            with self.box.lock:
                self._send(200, list(self.box.messages))
        elif match := re.fullmatch(r"/v1/bulk/([0-9a-f]{24})", self.path):
            if not self._authorized():
                return
            bulk = self.box.bulks.get(match.group(1))
            if bulk is None:
                self._send(404, {"errors": [_error(404, "not_found", "no bulk operation with this id")]})
            else:
                self._send(200, bulk)
        else:
            self._send(404, {"errors": [_error(404, "not_found", f"GET {self.path} is not served here")]})

    def do_DELETE(self) -> None:
        if self.path == "/__sandbox/requests":
            with self.box.lock:
                self.box.requests.clear()
                self.box.messages.clear()
            self._send(204, None)
        else:
            self._send(404, {"errors": [_error(404, "not_found", f"DELETE {self.path} is not served here")]})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/__sandbox/config":
            try:
                self.box.configure(**json.loads(raw))
            except (ValueError, TypeError) as exc:
                self._send(400, {"errors": [_error(400, "bad_config", str(exc))]})
                return
            self._send(200, {"ok": True})
            return
        if self.path not in ("/v1/messages", "/v1/messages/bulk"):
            self._send(404, {"errors": [_error(404, "not_found", f"POST {self.path} is not served here")]})
            return
        record = self._record(raw)
        limit_headers, over = self.box.count_for_rate_limit()
        if self.box.latency:
            time.sleep(self.box.latency)
        fault = self.box.take_fault()
        if fault:
            record["fault"] = fault
            self._fault(fault, record, limit_headers)
            return
        if over:
            record["status"] = 429
            self._send(429, {"errors": [_error(429, "rate_limited", "rate limit exceeded")]}, limit_headers)
            return
        status, answer = self._answer(raw)
        record["status"] = status
        self._send(status, answer, limit_headers)

    # -- helpers --

    def _record(self, raw: bytes) -> dict[str, Any]:
        headers = {k: v for k, v in self.headers.items()}
        if "Authorization" in headers:
            scheme = headers["Authorization"].split(" ", 1)[0]
            headers["Authorization"] = f"{scheme} <hidden>"
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = {
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body,
            "status": None,
            "at": time.time(),
        }
        with self.box.lock:
            self.box.requests.append(record)
        return record

    def _has_bearer(self) -> bool:
        value = self.headers.get("Authorization", "")
        return value.startswith("Bearer ") and bool(value[7:].strip())

    def _authorized(self) -> bool:
        if self._has_bearer():
            return True
        self._send(401, _UNAUTHORIZED)
        return False

    def _answer(self, raw: bytes) -> tuple[int, Any]:
        if not self._has_bearer():
            return 401, _UNAUTHORIZED
        if self.box.max_body_bytes and len(raw) > self.box.max_body_bytes:
            return 413, {"errors": [{"code": "payload_too_large", "message": "Request entity too large.", "meta": {}}]}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {
                "errors": [{"code": "bad_request", "message": "Invalid request body or parameters.", "meta": {}}]
            }
        errors = body_errors(self.path, body)
        if errors:
            return 400, {"errors": errors}
        if self.path == "/v1/messages":
            return 201, {"data": self._create(body)}
        return 200, {"data": self._bulk(body)}

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        message_id, now = _object_id(), _now()
        related = {
            "conversation": body.get("conversation") or _object_id(),
            "customer": body.get("customer") or _object_id(),
        }
        message = {
            "type": "message",
            "id": message_id,
            "attributes": {
                **{k: v for k, v in body.items() if k not in ("conversation", "customer", "_clientRef")},
                "size": body.get("size", 0),
                "createdAt": now,
                "updatedAt": now,
                "modifiedAt": now,
            },
            "relationships": {
                "org": {"links": {"self": f"/v1/orgs/{self.box.org}"}, "data": {"type": "org", "id": self.box.org}},
                "customer": {
                    "links": {"self": f"/v1/customers/{related['customer']}"},
                    "data": {"type": "customers", "id": related["customer"]},
                },
                "conversation": {
                    "links": {"self": f"/v1/conversations/{related['conversation']}"},
                    "data": {"type": "conversation", "id": related["conversation"]},
                },
            },
            "links": {"self": f"/v1/messages/{message_id}"},
        }
        with self.box.lock:
            self.box.messages.append(message)
        return message

    def _bulk(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        bulk_id, now = _object_id(), _now()
        created = [self._create(item) for item in items]
        base = {"type": "bulk", "id": bulk_id, "links": {"self": f"/v1/bulk/{bulk_id}"}}
        attributes = {"context": "api.sobjects.messages.bulk-create", "v2": True, "createdAt": now, "updatedAt": now}
        with self.box.lock:
            # A later GET finds it done, with each item's message id (and _clientRef, when given).
            self.box.bulks[bulk_id] = {
                "data": {
                    **base,
                    "attributes": {
                        **attributes,
                        "status": "complete",
                        "completed": True,
                        "ids": [m["id"] for m in created],
                        "results": [
                            {"_clientRef": item.get("_clientRef"), "id": m["id"]}
                            for item, m in zip(items, created, strict=True)
                        ],
                    },
                }
            }
        return {**base, "attributes": {**attributes, "status": "queued", "completed": False, "ids": []}}

    def _fault(self, fault: str, record: dict[str, Any], headers: dict[str, str]) -> None:
        if fault == "429":  # rate limited whatever the count: the window resets one window from now
            record["status"] = 429
            reset = {
                "x-ratelimit-limit": "0",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(math.ceil(time.time() + self.box.window)),
            }
            self._send(429, {"errors": [_error(429, "rate_limited", "rate limit exceeded")]}, {**headers, **reset})
        elif fault in ("500", "502", "503"):
            record["status"] = int(fault)
            self._send(int(fault), {"errors": [_error(int(fault), "server_error", "sandbox fault")]}, headers)
        elif fault == "html_500":
            record["status"] = 500
            page = b"<html><head><title>500 Internal Server Error</title></head><body>" + b"<p>x</p>" * 131072
            self._send_raw(500, page + b"</body></html>", "text/html", headers)
        elif fault == "not_json":
            record["status"] = 201
            self._send_raw(201, b"Created", "text/plain", headers)
        elif fault == "empty":
            record["status"] = 201
            self._send_raw(201, b"", "application/json", headers)
        elif fault == "redirect":
            record["status"] = 307
            port = self.box.port
            self._send_raw(307, b"", "text/plain", {**headers, "Location": f"http://127.0.0.2:{port}{self.path}"})
        elif fault == "hang":
            self.box.stopping.wait(timeout=600)  # never answers while the sandbox runs
            self.close_connection = True
        elif fault == "drop":
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"data": {"type": "mess')
            self.wfile.flush()
            self.close_connection = True

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self._send_raw(status, raw, "application/json; charset=utf-8", headers or {})

    def _send_raw(self, status: int, raw: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kustomer-sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8787, help="loopback port (0 picks a free one; default 8787)")
    parser.add_argument("--rate-limit", type=int, help="requests allowed per window; more answer 429")
    parser.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds (default 60)")
    parser.add_argument("--latency", type=float, default=0.0, help="milliseconds added to every answer")
    parser.add_argument("--fault", choices=FAULTS, help="answer requests with this fault")
    parser.add_argument("--fault-count", type=int, help="how many requests get the fault (default: all)")
    options = parser.parse_args(argv)
    box = Sandbox(
        port=options.port,
        rate_limit=options.rate_limit,
        window=options.window,
        latency=options.latency / 1000,
        fault=options.fault,
        fault_count=options.fault_count,
    )
    box.start()
    print(f"Kustomer sandbox on {box.url}  (baseUrl for the kustomer resource; any apiKey works)", flush=True)
    print(f"What it received: {box.url}/__sandbox/requests   Stop: Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        box.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
