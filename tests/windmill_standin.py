"""A loopback stand-in for the Windmill API, enough for the wmill CLI's single-item pushes.

It records every request (method, path, JSON body) so a test can assert exactly what the CLI did to
the workspace. It starts empty: every item is new, so each push is a create.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WHOAMI = {
    "email": "admin@example.com",
    "username": "admin",
    "is_admin": True,
    "is_super_admin": True,
    "operator": False,
    "groups": [],
    "folders": [],
    "folders_owners": [],
}


class WindmillStandIn:
    def __init__(
        self,
        version: str = "v1.819.0",
        folders: tuple[str, ...] = (),
        workspace: dict[str, str] | None = None,
        fail: dict[str, int] | None = None,
    ) -> None:
        self.version = version
        self.fail = fail or {}  # a path fragment -> the status every request whose path holds it gets
        self.folders = set(folders)  # folders that already exist in the workspace
        self.workspace = workspace or {}  # what `wmill sync` downloads: path -> content, in the sync layout
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.standin = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> WindmillStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[dict[str, Any]]:
        """The requests that could change the workspace: everything but GET."""
        return [r for r in self.requests if r["method"] != "GET"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, as the sandbox: no 40 ms delayed-ACK stall per answer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        standin: WindmillStandIn = self.server.standin  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        with standin.lock:
            standin.requests.append(
                {
                    "method": self.command,
                    "path": path,
                    "query": self.path[len(path) :],
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                }
            )
        failing = next((status for fragment, status in standin.fail.items() if fragment in path), None)
        if failing:
            self._send(failing, {401: "Unauthorized", 500: "Internal Server Error"}.get(failing, "failed"))
        elif path.endswith("/version"):
            self._send(200, standin.version)
        elif path == "/api/users/whoami" or path.endswith("/users/whoami"):
            self._send(200, WHOAMI)
        elif "/folders/get/" in path and path.rsplit("/", 1)[-1] in standin.folders:
            name = path.rsplit("/", 1)[-1]
            self._send(200, {"name": name, "owners": ["u/alice"], "extra_perms": {"g/support": True}})
        elif path.endswith("/workspaces/tarball"):
            self._send_zip(standin.workspace)
        elif path.endswith("/resources/file_resource_type_to_file_ext_map"):
            self._send(200, {})
        elif "/exists/" in path:
            self._send(200, False)
        elif self.command in ("POST", "PUT"):
            self._send(201, "created")
        else:
            self._send(404, "not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815  # http.server's names

    def _send_zip(self, files: dict[str, str]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        raw = buffer.getvalue()
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _send(self, status: int, body: Any) -> None:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
