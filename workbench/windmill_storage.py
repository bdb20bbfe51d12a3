"""A loopback stand-in for the parts of a Windmill server that a job calls back: the workspace object
storage and the script loader. Exactly the routes the real clients call, read from their source:

- `POST /api/w/{workspace}/job_helpers/upload_s3_file?file_key=K` with the raw bytes, answering
  `{"file_key": K}` (a key is made when none is given), and `GET .../job_helpers/download_s3_file
  ?file_key=K`, streamed: what PyPI `wmill` (client.py `write_s3_file`, s3_reader.py) calls.
- `DELETE .../job_helpers/delete_s3_file?file_key=K`: what `wmill.delete_s3_object` calls.
- `GET /api/w/{workspace}/jobs_u/get/{id}`: what `wmill`'s `get_job` / `get_job_status` call, for a
  flow run of the local runner: `{"type": "QueuedJob", "running": true}` while it runs,
  `{"type": "CompletedJob"}` once it ended (cancelled too), 404 for an id the workspace never ran.
- `GET /api/w/{workspace}/scripts/raw/p/{path}.py`: what the worker's Python loader
  (windmill-worker loader.py, `WindmillFinder`) fetches for `from f.<folder>.<script> import ...`;
  a path that is no script answers 404, which the loader treats as a folder.

A missing object answers 404 (the S3 "NoSuchKey" status; the real server's own code is not public).
With a `Chaos` on the workspace, every request is an event it may answer with a 500 or use to kill
the running job (workbench/chaos.py). Every request must carry a job token the workspace issued.
Objects live in a temporary folder, deleted at the end, or in a given folder, which is kept (local-run
keeps its workspace storage between runs, as a real workspace does); bytes read and written, and
requests, are counted for the benchmark.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from workbench.workspace import Workspace

_CHUNK = 64 * 1024


class WindmillStorage:
    """Serves a workspace's object storage and scripts on loopback while in a `with` block."""

    def __init__(self, workspace: Workspace, scripts: dict[str, Path], folder: Path | None = None) -> None:
        self.workspace = workspace
        self.scripts = scripts  # workspace path (f/kustomer/create_message) -> file
        self.kept = folder is not None  # a given folder outlives this storage; a temporary one does not
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder.resolve() if folder is not None else Path(tempfile.mkdtemp(prefix="windmill-storage-"))
        self.bytes_written = 0
        self.bytes_read = 0
        self.requests = 0  # object reads, writes and deletes
        self.busy = 0.0  # seconds spent answering them
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.storage = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> WindmillStorage:
        self.thread.start()
        self.workspace.base_url = self.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        if not self.kept:
            shutil.rmtree(self.folder, ignore_errors=True)

    def path_of(self, key: str) -> Path | None:
        """Where an object is kept; None for a key that would leave the folder."""
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return None
        return self.folder.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        """Store an object directly (what a user's upload in the flow form does)."""
        path = self.path_of(key)
        assert path is not None, f"not a storage key: {key!r}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def objects(self, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix`, with its size in bytes."""
        return {
            path.relative_to(self.folder).as_posix(): path.stat().st_size
            for path in self.folder.rglob("*")
            if path.is_file() and path.relative_to(self.folder).as_posix().startswith(prefix)
        }

    def delete(self, key: str) -> None:
        """Remove an object directly, if it is there."""
        path = self.path_of(key)
        assert path is not None, f"not a storage key: {key!r}"
        path.unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        path = self.path_of(key)
        assert path is not None, f"not a storage key: {key!r}"
        return path.read_bytes()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A job killed mid-request (a played fault) drops its connection: nothing to report."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, as the sandbox: no 40 ms delayed-ACK stall per answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet, like the sandbox
        pass

    @property
    def storage(self) -> WindmillStorage:
        return self.server.storage  # type: ignore[attr-defined,no-any-return]

    def _route(self) -> tuple[str, dict[str, str]] | None:
        if self.headers.get("Authorization", "").removeprefix("Bearer ") not in self.storage.workspace.tokens:
            self._answer(401, b"Unauthorized: not a token of this workspace")
            return None
        url = urlsplit(self.path)
        prefix = f"/api/w/{self.storage.workspace.name}/"
        if not url.path.startswith(prefix):
            self._answer(404, b"Not found")
            return None
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        return unquote(url.path.removeprefix(prefix)), query

    def _fault(self, what: str) -> bool:
        """With a Chaos: answer 500 when it says so (True), else note the request as an event."""
        chaos = self.storage.workspace.chaos
        if chaos is None:
            return False
        if chaos.storage_error(what):
            self._answer(500, b"Internal Server Error (a fault played by the workbench)")
            return True
        return False

    def _event(self, what: str) -> None:
        chaos = self.storage.workspace.chaos
        if chaos is not None:
            chaos.event(what)

    def handle_one_request(self) -> None:
        self.started = 0.0
        super().handle_one_request()
        if self.started:  # once the request line came: the time to answer, not the connection's idle wait
            with self.storage.lock:
                self.storage.busy += time.perf_counter() - self.started

    def parse_request(self) -> bool:
        self.started = time.perf_counter()
        return super().parse_request()

    def do_POST(self) -> None:
        routed = self._route()
        if routed is None:
            return
        route, query = routed
        if route != "job_helpers/upload_s3_file":
            self._answer(404, b"Not found")
            return
        key = query.get("file_key") or f"windmill_uploads/{uuid.uuid4().hex}"
        path = self.storage.path_of(key)
        if path is None:
            self._answer(400, b"invalid file_key")
            return
        data = self._body()
        if data is None:
            self.close_connection = True
            return
        if self._fault(f"storage POST {key}"):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # a reader sees the old object or the new one, never half of one
        with self.storage.lock:
            self.storage.bytes_written += len(data)
            self.storage.requests += 1
        self._event(f"storage POST {key} {data[:40].decode(errors='replace')}")
        self._answer(200, json.dumps({"file_key": key}).encode(), "application/json")

    def do_DELETE(self) -> None:
        routed = self._route()
        if routed is None:
            return
        route, query = routed
        path = self.storage.path_of(query.get("file_key", ""))
        if route != "job_helpers/delete_s3_file" or path is None:
            self._answer(404, b"Not found")
            return
        if self._fault(f"storage DELETE {query['file_key']}"):
            return
        path.unlink(missing_ok=True)
        with self.storage.lock:
            self.storage.requests += 1
        self._event(f"storage DELETE {query['file_key']}")
        self._answer(200, b"")

    def do_GET(self) -> None:
        routed = self._route()
        if routed is None:
            return
        route, query = routed
        if route.startswith("scripts/raw/p/"):
            script = self.storage.scripts.get(route.removeprefix("scripts/raw/p/").removesuffix(".py"))
            if script is None:
                self._answer(404, b"Not found")
            else:
                self._answer(200, script.read_bytes(), "text/plain")
            return
        if route.startswith("jobs_u/get/"):
            running = self.storage.workspace.flow_runs.get(route.removeprefix("jobs_u/get/"))
            if running is None:
                self._answer(404, b"Job not found")
            else:
                job = {"type": "QueuedJob", "running": True} if running else {"type": "CompletedJob", "success": True}
                self._answer(200, json.dumps(job).encode(), "application/json")
            return
        if route != "job_helpers/download_s3_file":
            self._answer(404, b"Not found")
            return
        key = query.get("file_key", "")
        path = self.storage.path_of(key)
        if self._fault(f"storage GET {key}"):
            return
        data = path.read_bytes() if path is not None and path.is_file() else None
        with self.storage.lock:
            self.storage.bytes_read += len(data or b"")
            self.storage.requests += 1
        self._event(f"storage GET {key}")
        if data is None:
            self._answer(404, b"file not found in the workspace storage")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for start in range(0, len(data), _CHUNK):
            self.wfile.write(data[start : start + _CHUNK])

    def _body(self) -> bytes | None:
        """The whole upload, or None when the client went away before its end: as with S3, an upload
        cut short stores nothing (a job killed while it writes leaves the object as it was)."""
        parts: list[bytes] = []
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline()
                if not line.strip():
                    return None
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    return None
                parts.append(chunk)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(_CHUNK, remaining))
            if not chunk:
                return None
            remaining -= len(chunk)
            parts.append(chunk)
        return b"".join(parts)

    def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
