"""The real path is HTTPS (issue 16): each script against a real TLS server on loopback, with a test CA
made per run by trustme and trusted only inside the test, the way a worker is given a CA: through
SSL_CERT_FILE / SSL_CERT_DIR, passed to the job as Windmill's worker passes WHITELIST_ENVS.

A certificate that cannot be trusted (unknown CA, expired, another host) fails at once: one attempt,
"Nothing was sent", which problem it was, and what to do. A server that never completes the
handshake, or drips its answer, is cut off at the attempt's deadline. Verification is never turned off.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import create_message
import pytest
import trustme
from hostile_server import Answer, HostileServer
from pytest_httpserver import HTTPServer

from workbench.paths import SCRIPTS
from workbench.sandbox import Sandbox
from workbench.worker import run_job

KEY = "tls-test-key-0123456789abcdef"
MESSAGE = {"channel": "chat", "app": "api", "direction": "in", "preview": "over TLS"}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def serving(ca: trustme.CA, *hosts: str, **issue: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hosts or ("localhost", "127.0.0.1")), **issue).configure_cert(context)
    return context


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test CA, trusted by jobs the way a worker would pass it on: SSL_CERT_FILE, whitelisted."""
    pem = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setenv("WHITELIST_ENVS", "SSL_CERT_FILE,SSL_CERT_DIR")
    return pem


@pytest.fixture
def tls_sandbox(ca: trustme.CA) -> Iterator[Sandbox]:
    with Sandbox(ssl_context=serving(ca)) as box:
        yield box


def auth(url: str) -> dict[str, str]:
    return {"apiKey": KEY, "baseUrl": url.replace("127.0.0.1", "localhost")}


# ---- the scripts over HTTPS ----


def test_a_create_a_bulk_and_the_waiter_work_over_tls(trusted: Path, tls_sandbox: Sandbox) -> None:
    assert tls_sandbox.url.startswith("https://")
    created = run_job(SCRIPTS / "create_message.py", {"auth": auth(tls_sandbox.url), "body": MESSAGE})
    assert created.exit_code == 0, created.result
    body = [dict(MESSAGE, _clientRef=f"r{i}") for i in range(3)]
    bulk = run_job(SCRIPTS / "bulk_create_messages.py", {"auth": auth(tls_sandbox.url), "body": body})
    assert bulk.exit_code == 0, bulk.result
    args = {"auth": auth(tls_sandbox.url), "bulk_id": bulk.result["data"]["id"], "expected_items": 3}
    waited = run_job(SCRIPTS / "wait_for_bulk_results.py", {**args, "submitted_at": "2020-01-01T00:00:00Z"})
    assert waited.exit_code == 0, waited.result
    assert [i["status"] for i in waited.result["items"]] == ["created"] * 3
    assert len(tls_sandbox.requests) == 3


def test_a_ca_in_a_hashed_ssl_cert_dir_is_trusted(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_sandbox: Sandbox
) -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed, so no hashed directory can be made here")  # printed by -ra
    folder = tmp_path / "certs"
    folder.mkdir()
    pem = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)], capture_output=True, text=True, check=True
    ).stdout.strip()
    (folder / f"{subject_hash}.0").symlink_to(pem)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))
    monkeypatch.setenv("WHITELIST_ENVS", "SSL_CERT_FILE,SSL_CERT_DIR")
    job = run_job(SCRIPTS / "create_message.py", {"auth": auth(tls_sandbox.url), "body": MESSAGE})
    assert job.exit_code == 0, job.result


# ---- a certificate that cannot be trusted: one attempt, and what to do ----


def refused_once(url: str, server: HTTPServer | None = None) -> dict[str, Any]:
    job = run_job(SCRIPTS / "create_message.py", {"auth": auth(url), "body": MESSAGE})
    assert job.exit_code == 1
    assert job.result["name"] == "KustomerConnectionError"
    message: str = job.result["message"]
    assert "Nothing was sent to Kustomer" in message
    assert "It was not tried again" in message
    assert "SSL_CERT_FILE" in message
    assert "auth.baseUrl" in message
    assert "waiting" not in job.logs  # no retry, so no wait
    assert KEY not in job.output
    if server is not None:
        assert server.log == []  # the request itself never went out
    result: dict[str, Any] = job.result
    return result


@pytest.fixture
def tls_server(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", ssl_context=serving(ca, *request.param[0], **request.param[1]))
    server.expect_request("/v1/messages").respond_with_json({"data": {"id": "x"}}, status=201)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("tls_server", "said"),
    [
        ((("localhost", "127.0.0.1"), {"not_after": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)}), "expired"),
        ((("api.kustomerapp.com",), {}), "issued for another host name, not localhost"),
    ],
    ids=["expired", "wrong-host"],
    indirect=["tls_server"],
)
def test_an_expired_or_wrong_host_certificate_fails_at_once_saying_which(
    trusted: Path, tls_server: HTTPServer, said: str
) -> None:
    result = refused_once(tls_server.url_for("/"), tls_server)
    assert said in result["message"]


@pytest.mark.parametrize("tls_server", [(("localhost",), {})], indirect=True)
def test_a_certificate_from_an_unknown_ca_fails_at_once_saying_which(
    tls_server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the job trusts the system's CAs, not the test CA
    result = refused_once(tls_server.url_for("/"), tls_server)
    assert "issued by a certificate authority this worker does not trust" in result["message"]


def test_an_unreadable_ssl_cert_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("WHITELIST_ENVS", "SSL_CERT_FILE")
    job = run_job(SCRIPTS / "create_message.py", {"auth": auth("https://localhost:9"), "body": MESSAGE})
    assert job.result["name"] == "KustomerConnectionError"
    assert "SSL_CERT_FILE cannot be read as CA certificates" in job.result["message"]
    assert "(FileNotFoundError: [Errno 2] No such file or directory)" in job.result["message"]  # clean, whole
    assert "[redacted]" not in job.result["message"]  # no key was in it: nothing to hide
    assert "Nothing was sent" in job.result["message"]


def test_a_server_that_never_completes_the_handshake_is_cut_off_at_the_attempts_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Accepts the connection and says nothing: the TLS handshake never ends, nothing is sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setattr(
        create_message, "POLICY", create_message.POLICY._replace(response_deadline=1.0, max_failed_attempts=2)
    )
    started = time.monotonic()
    try:
        with pytest.raises(create_message.KustomerConnectionError) as caught:
            create_message.main(auth(f"https://127.0.0.1:{listener.getsockname()[1]}"), MESSAGE)  # type: ignore[arg-type]
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(timeout=5)
        for sock in held:
            sock.close()
        listener.close()
    text = str(caught.value)
    assert "took longer than 1 s and was cut off" in text
    assert "Nothing was sent" in text
    assert len(held) == 1  # cut off at its deadline and not tried again: it would hang again
    assert elapsed < 5  # at the deadline, not at the 10 s connect timeout: ssl holds the socket by then


def test_an_https_answer_dripped_past_the_attempts_deadline_is_cut_off_at_it(
    ca: trustme.CA, trusted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 201 whose bytes come 7 at a time every 50 ms, about 2 s in all, against a 0.6 s deadline: the
    exchange over TLS is cut off at the deadline, and the outcome is unknown (the POST went out)."""
    body = b'{"data": {"type": "message", "id": "5f9a3c1e2b4d6f8a0c1e3b5e", "attributes": {}}}'
    dripped = Answer.http(201, body, {"Content-Type": "application/json"}, delay=0.05, chunk=7)
    monkeypatch.setattr(create_message, "POLICY", create_message.POLICY._replace(response_deadline=0.6))
    with HostileServer([dripped], tls=serving(ca, "127.0.0.1")) as server:
        started = time.monotonic()
        with pytest.raises(create_message.KustomerOutcomeUnknownError) as caught:
            create_message.main({"apiKey": KEY, "baseUrl": server.url}, MESSAGE)
        elapsed = time.monotonic() - started
    assert "took longer than 1 s and was cut off" in str(caught.value)
    assert server.posts() == 1
    assert elapsed < 1.5, f"the drip ran on past the deadline: {elapsed:.2f} s"


def test_the_sandbox_over_tls_refuses_plain_http(ca: trustme.CA) -> None:
    """The TLS sandbox really is TLS: a plain request to it gets no HTTP answer."""
    with Sandbox(ssl_context=serving(ca)) as box:
        port = int(box.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = plain.recv(100)
    assert not answer.startswith(b"HTTP/1.1 200")
