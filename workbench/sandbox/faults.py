"""The sandbox's faults: one small handler each, chosen by name (`--fault NAME`, or the `fault`
switch) for the next POSTs to Kustomer's endpoints. Each writes its answer on the handler it is given
and notes the status it answered in the request's journal record."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workbench.sandbox.rules import kustomer_errors

if TYPE_CHECKING:
    from workbench.sandbox.server import Handler

Fault = Callable[["Handler", dict[str, Any], dict[str, str]], None]


def rate_limited(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    """429 whatever the count; the window resets one window from now."""
    reset = math.ceil(time.time() + handler.state.switches.window)
    limit = {"x-ratelimit-limit": "0", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    handler.answer(record, 429, kustomer_errors(429, "rate_limited", "rate limit exceeded"), {**headers, **limit})


def server_error(status: int) -> Fault:
    def fault(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
        handler.answer(record, status, kustomer_errors(status, "server_error", "sandbox fault"), headers)

    return fault


def applied_then(status: int) -> Fault:
    """Do what was asked (create the message or queue the bulk), then answer an error anyway: the
    case where only a lookup can tell what happened."""

    def fault(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
        answered, _ = handler.kustomer_answer(record)
        record["applied"] = 200 <= answered < 300
        handler.answer(record, status, kustomer_errors(status, "server_error", "sandbox fault after applying"), headers)

    return fault


def html_500(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    page = b"<html><head><title>500 Internal Server Error</title></head><body>" + b"<p>x</p>" * 131072
    handler.answer_raw(record, 500, page + b"</body></html>", "text/html", headers)


def not_json(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    handler.answer_raw(record, 201, b"Created", "text/plain", headers)


def empty(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    handler.answer_raw(record, 201, b"", "application/json", headers)


def redirect(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    elsewhere = f"http://127.0.0.2:{handler.server.server_address[1]}{handler.path}"
    handler.answer_raw(record, 307, b"", "text/plain", {**headers, "Location": elsewhere})


def hang(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    """Read the request, never answer while the sandbox runs."""
    handler.stopping.wait(timeout=600)
    handler.close_connection = True


def drop(handler: Handler, record: dict[str, Any], headers: dict[str, str]) -> None:
    """Start a 201, then close the connection mid-answer."""
    handler.note(record, 201)
    handler.send_response(201)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(json.dumps({"data": {"type": "mess"}}).encode()[:20])
    handler.wfile.flush()
    handler.close_connection = True


FAULTS: dict[str, Fault] = {
    "429": rate_limited,
    "500": server_error(500),
    "502": server_error(502),
    "503": server_error(503),
    "applied_500": applied_then(500),
    "applied_503": applied_then(503),
    "html_500": html_500,
    "hang": hang,
    "drop": drop,
    "not_json": not_json,
    "empty": empty,
    "redirect": redirect,
}
