"""The sandbox's HTTP server: a thin router from Kustomer's paths to the state, the rules and the faults."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from workbench.sandbox.faults import FAULTS
from workbench.sandbox.rules import UNAUTHORIZED, body_errors, kustomer_errors
from workbench.sandbox.state import KustomerState, Switches

_BULK = re.compile(r"/v1/bulk/([0-9a-f]{24})")
_BATCHES = re.compile(r"/v1/bulk/([0-9a-f]{24})/batches")
_EXTERNAL_ID = re.compile(r"/v1/messages/externalid=(.+)")


class Sandbox:
    """The sandbox server, in a background thread: `with Sandbox(rate_limit=...) as box: box.url`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None, **switches: Any
    ) -> None:
        self.state = KustomerState()
        self.on_applied: Callable[[dict[str, Any]], None] | None = (
            None  # called once a request is applied, before its answer
        )
        self.configure(**switches)
        self.stopping = threading.Event()
        self.server = _Server((host, port), Handler)
        self.server.sandbox = self
        self.server.tls = ssl_context
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="kustomer-sandbox", daemon=True
        )

    def configure(self, **switches: Any) -> None:
        known = set(Switches.__dataclass_fields__)
        unknown = set(switches) - known
        if unknown:
            raise ValueError(
                f"unknown sandbox switches: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        if switches.get("fault") not in (None, *FAULTS):
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        if switches.get("batches_shape", "array") not in ("array", "jsonapi"):
            raise ValueError("batches_shape must be array or jsonapi")
        self.state.configure(**switches)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def created_by_ref(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.created_by_ref)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.server.tls else 'http'}://127.0.0.1:{self.port}"

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: Sandbox
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        """With TLS, the handshake happens on the request's own thread (at its first read), so a
        client that never completes one holds up only itself."""
        conn, address = super().get_request()
        if self.tls is None:
            return conn, address
        return self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is normal here (the fault tests do it on purpose): say
        nothing. Anything else is a bug of the sandbox: raise it, so the thread's exception fails the
        test that caused it (pytest turns unhandled thread exceptions into errors in this project)."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):  # a client that refused our certificate
            return
        raise error if error else RuntimeError("sandbox handler failed")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kustomer-sandbox/1.1"
    # As real HTTP servers do (TCP_NODELAY). Without it the body, written after the headers, waits
    # for the client's delayed ACK of them: 40 ms added to every answer, which no real server adds.
    disable_nagle_algorithm = True
    server: _Server

    @property
    def state(self) -> KustomerState:
        return self.server.sandbox.state

    @property
    def stopping(self) -> threading.Event:
        return self.server.sandbox.stopping

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the requests list says it all
        pass

    # -- routing --

    def parse_request(self) -> bool:
        self.arrived = time.time()  # when the request reached "Kustomer": its line, before any body is read
        return super().parse_request()

    def do_GET(self) -> None:
        if self.path.startswith("/__sandbox/"):
            views: dict[str, Any] = {
                "/__sandbox/requests": self.state.requests,
                "/__sandbox/messages": self.state.messages,
                "/__sandbox/created": self.state.created_by_ref,
            }
            if self.path in views:
                with self.state.lock:
                    body = json.loads(json.dumps(views[self.path]))
                self.answer(None, 200, body)
                return
        self.kustomer(b"")

    def do_DELETE(self) -> None:
        if self.path == "/__sandbox/requests":
            self.state.forget()
            self.answer(None, 204, None)
        else:
            self.answer(None, 404, kustomer_errors(404, "not_found", f"DELETE {self.path} is not served here"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/__sandbox/config":
            try:
                self.server.sandbox.configure(**json.loads(raw))
            except (ValueError, TypeError) as exc:
                self.answer(None, 400, kustomer_errors(400, "bad_config", str(exc)))
                return
            self.answer(None, 200, {"ok": True})
            return
        self.kustomer(raw)

    def kustomer(self, raw: bytes) -> None:
        """Every request to Kustomer's API: journal, token, rate limit, latency, fault, then the answer."""
        record = self.journal(raw)
        if not self.path.startswith("/v1/"):
            self.answer(record, 404, kustomer_errors(404, "not_found", f"{self.command} {self.path} is not served"))
            return
        limit_headers, over = self.state.count_for_rate_limit()
        if self.state.switches.latency:
            time.sleep(self.state.switches.latency)
        fault = self.state.take_fault() if self.command == "POST" else None
        if fault:
            record["fault"] = fault
            FAULTS[fault](self, record, limit_headers)
            return
        if over:
            self.answer(record, 429, kustomer_errors(429, "rate_limited", "rate limit exceeded"), limit_headers)
            return
        status, body = self.kustomer_answer(record)
        hook = self.server.sandbox.on_applied
        if hook is not None:
            hook(record)
        self.answer(record, status, body, limit_headers)

    def kustomer_answer(self, record: dict[str, Any]) -> tuple[int, Any]:
        """What Kustomer would answer to this request, applying it (a create, a bulk) if it is valid."""
        value = self.headers.get("Authorization", "")
        if not (value.startswith("Bearer ") and value[7:].strip()):
            return 401, UNAUTHORIZED
        path = urlsplit(self.path).path
        if self.command == "GET":
            return self.read(path)
        if path not in ("/v1/messages", "/v1/messages/bulk"):
            return 404, kustomer_errors(404, "not_found", f"POST {path} is not served here")
        raw = record.pop("_raw")
        if self.state.switches.max_body_bytes and len(raw) > self.state.switches.max_body_bytes:
            return 413, {"errors": [{"code": "payload_too_large", "message": "Request entity too large.", "meta": {}}]}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {
                "errors": [{"code": "bad_request", "message": "Invalid request body or parameters.", "meta": {}}]
            }
        errors = body_errors(path, body)
        if errors:
            return 400, {"errors": errors}
        if path == "/v1/messages":
            return 201, {"data": self.state.create(body)}
        return 200, {"data": self.state.bulk(body)}

    def read(self, path: str) -> tuple[int, Any]:
        if match := _EXTERNAL_ID.fullmatch(path):
            message = self.state.find_by_external_id(unquote(match.group(1)))
            if message is None:
                return 404, kustomer_errors(404, "not_found", "no message with this externalId")
            return 200, {"data": message}
        match = _BATCHES.fullmatch(path) or _BULK.fullmatch(path)
        bulk = self.state.get_bulk(match.group(1)) if match else None
        if match is None:
            return 404, kustomer_errors(404, "not_found", f"GET {path} is not served here")
        if bulk is None:
            return 404, kustomer_errors(404, "not_found", "no bulk operation with this id")
        if match.re is _BULK:
            return 200, {"data": self.state.bulk_object(bulk)}
        return 200, self.batches_page(bulk)

    def batches_page(self, bulk: Any) -> Any:
        batches = self.state.batches(bulk)
        switches = self.state.switches
        if switches.batches_shape == "array":
            return batches
        size = switches.batches_page_size or len(batches) or 1
        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
        shown = batches[(page - 1) * size : page * size]
        more = page * size < len(batches)
        data = [
            {"type": "batch", "id": f"{bulk.id}-{(page - 1) * size + i}", "attributes": b} for i, b in enumerate(shown)
        ]
        links = {"self": f"/v1/bulk/{bulk.id}/batches?page={page}"}
        links["next"] = f"/v1/bulk/{bulk.id}/batches?page={page + 1}" if more else None  # type: ignore[assignment]
        return {"data": data, "links": links, "meta": {"total": len(batches)}}

    # -- the wire --

    def journal(self, raw: bytes) -> dict[str, Any]:
        headers = {name: _hidden(name, value) for name, value in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = {"method": self.command, "path": self.path, "headers": headers, "body": body, "status": None}
        record["at"] = getattr(self, "arrived", time.time())
        record["client_port"] = self.client_address[1]  # which connection: a kept-open one comes back
        self.state.journal(record)
        return {**record, "_raw": raw, "_journal": record}

    def note(self, record: dict[str, Any] | None, status: int) -> None:
        """Write into the journal how this request was answered."""
        if record is None:
            return
        with self.state.lock:
            record["_journal"]["status"] = status
            for name in ("applied", "fault"):
                if name in record:
                    record["_journal"][name] = record[name]

    def answer(
        self, record: dict[str, Any] | None, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.answer_raw(record, status, raw, "application/json; charset=utf-8", headers or {})

    def answer_raw(
        self, record: dict[str, Any] | None, status: int, raw: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.note(record, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


def _hidden(name: str, value: str) -> str:
    """A credential header as its scheme and <hidden>, however the client spelled or spaced it."""
    if name.lower() not in ("authorization", "proxy-authorization"):
        return value
    scheme = value.split(None, 1)[0] if value.split() else ""
    return f"{scheme} <hidden>" if re.fullmatch(r"[A-Za-z]{1,10}", scheme) else "<hidden>"
