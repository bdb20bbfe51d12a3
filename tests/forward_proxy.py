"""A real forward proxy on loopback, for the tests of proxies from the environment."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class ForwardProxy:
    """A real forward proxy on loopback: forwards plain-http requests, refuses CONNECT tunnels."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.raw: list[bytes] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_CONNECT(self) -> None:  # http.server's name
                proxy.seen.append(f"CONNECT {self.path}")
                proxy.raw.append(bytes(str(self.headers), "latin-1"))
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                proxy.seen.append(f"POST {self.path}")
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
                answer = httpx.post(self.path, content=body, headers=headers, trust_env=False)
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Content-Length"):
                    self.send_header(name, answer.headers[name])
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"
