"""A loopback HTTP server that answers exactly the bytes a test scripts, at the pace it scripts.

Each request gets the next `Answer` (the last one repeats): raw bytes in chunks, each after a delay,
then the connection is closed. It records every request it read, raw, so a test can count the POSTs
and search them for the key. Used where a well-behaved server (pytest-httpserver, the sandbox) cannot
misbehave enough: a status line dripped a byte at a time, a gzip bomb, a reason phrase of our choosing.
"""

from __future__ import annotations

import functools
import gzip
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Answer:
    chunks: list[bytes]
    delay: float = 0.0  # seconds before each chunk

    @classmethod
    def http(
        cls,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        reason: str = "",
        delay: float = 0.0,
        chunk: int = 0,
    ) -> Answer:
        head = f"HTTP/1.1 {status} {reason}\r\n".encode()
        fields = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
        head += b"".join(f"{k}: {v}\r\n".encode() for k, v in fields.items()) + b"\r\n"
        raw = head + body
        size = chunk or len(raw) or 1
        return cls([raw[i : i + size] for i in range(0, len(raw), size)], delay)


@functools.cache
def gzip_bomb(layers: int, inflated: int) -> bytes:
    """`inflated` zero bytes, gzipped `layers` times: a few KB that grow to `inflated` once decoded.
    Compressed a megabyte at a time, so making it does not take the memory it is meant to test."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # a gzip stream
    block = bytes(1 << 20)
    data = b"".join(packer.compress(block) for _ in range(inflated >> 20))
    data += packer.compress(bytes(inflated % (1 << 20))) + packer.flush()
    for _ in range(layers - 1):
        data = gzip.compress(data, compresslevel=9)
    return data


@dataclass
class HostileServer:
    answers: list[Answer] | Callable[[int], Answer]
    requests: list[bytes] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this context (a test CA's certificate)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"

    def posts(self) -> int:
        return sum(1 for r in self.requests if r.startswith(b"POST "))

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._answer, args=(conn, len(self.requests)), daemon=True)
            self.requests.append(b"")
            self.threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket, index: int) -> None:
        with conn:
            conn.settimeout(5)
            try:
                if self.tls is not None:  # the handshake on this connection's own thread
                    conn = self.tls.wrap_socket(conn, server_side=True)
                self.requests[index] = self._read_request(conn)
                answer = (
                    self.answers(index) if callable(self.answers) else self.answers[min(index, len(self.answers) - 1)]
                )
                for chunk in answer.chunks:
                    if answer.delay and self.stopping.wait(answer.delay):
                        return
                    conn.sendall(chunk)
            except OSError:
                return  # the client gave up (as the tests want it to): nothing to report

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        raw = b""
        while b"\r\n\r\n" not in raw:
            piece = conn.recv(65536)
            if not piece:
                return raw
            raw += piece
        head, _, body = raw.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        deadline = time.monotonic() + 5
        while len(body) < length and time.monotonic() < deadline:
            piece = conn.recv(65536)
            if not piece:
                break
            body += piece
        return head + b"\r\n\r\n" + body
