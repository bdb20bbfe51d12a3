"""The fault suite: both scripts against real servers on loopback that misbehave.

For each fault: what the job ends with, how many requests the server saw, and that the key shows
nowhere in what the job prints or raises. Faults come from the sandbox's switches, from
pytest-httpserver for exact headers, and from a real forward proxy for the proxy settings.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, NamedTuple

import bulk_create_messages
import create_message
import httpx
import pytest
from conftest import API_KEY, FakeTime
from pytest_httpserver import HTTPServer

from workbench.paths import SCRIPTS
from workbench.sandbox import Sandbox
from workbench.worker import run_job

BOTH = pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])
MESSAGE = {"channel": "sms", "app": "twilio", "direction": "in", "externalId": "SM-fault-1"}


class Outcome(NamedTuple):
    result: Any
    error: BaseException | None
    printed: str  # everything a user could see: the error text, stdout and stderr

    def assert_key_hidden(self) -> None:
        assert API_KEY not in self.printed


def body_for(script: ModuleType) -> Any:
    return dict(MESSAGE) if script is create_message else [dict(MESSAGE, _clientRef="row-1")]


def run(script: ModuleType, base_url: str, capsys: pytest.CaptureFixture[str]) -> Outcome:
    try:
        result, error = script.main({"apiKey": API_KEY, "baseUrl": base_url}, body_for(script)), None
    except Exception as exc:  # the test inspects whatever the script raised
        result, error = None, exc
    captured = capsys.readouterr()
    outcome = Outcome(result, error, f"{error!s}{captured.out}{captured.err}")
    outcome.assert_key_hidden()
    return outcome


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


def posts(box: Sandbox) -> int:
    return sum(1 for r in box.requests if r["method"] == "POST")


# ---- rate limits ----


@BOTH
def test_429_on_every_request_gives_up_within_the_bound(
    script: ModuleType, sandbox: Sandbox, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_time.now = time.time()  # the sandbox's reset times are real epoch seconds
    sandbox.configure(fault="429")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerRateLimitError)
    assert "Rate limited by Kustomer" in str(outcome.error)
    assert re.search(r"the window (resets|was announced to reset) at \d{4}-", str(outcome.error))
    assert sum(fake_time.sleeps) <= script.POLICY.max_total_wait
    assert posts(sandbox) >= 2


@BOTH
@pytest.mark.parametrize(
    ("reset", "expected_sleep"),
    [("1600000000", (0.5, 1.0)), ("soon", (0.5, 1.0)), (None, (0.5, 1.0))],
    ids=["reset-in-the-past", "reset-unparsable", "reset-missing"],
)
def test_429_without_a_usable_reset_backs_off_then_succeeds(
    script: ModuleType,
    reset: str | None,
    expected_sleep: tuple[float, float],
    httpserver: HTTPServer,
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "/v1/messages" if script is create_message else "/v1/messages/bulk"
    headers = {"x-ratelimit-reset": reset} if reset else {}
    httpserver.expect_ordered_request(path, method="POST").respond_with_json({"errors": []}, 429, headers=headers)
    httpserver.expect_ordered_request(path, method="POST").respond_with_json({"data": {"id": "ok"}}, 201)
    outcome = run(script, httpserver.url_for("/"), capsys)
    assert outcome.result == {"data": {"id": "ok"}}
    assert len(httpserver.log) == 2
    assert len(fake_time.sleeps) == 1
    assert expected_sleep[0] <= fake_time.sleeps[0] <= expected_sleep[1]


# ---- answers that never come or break off ----


@BOTH
def test_server_that_never_answers_fails_within_the_read_timeout_after_one_request(
    script: ModuleType, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(script, "POLICY", script.POLICY._replace(read_timeout=1.0))
    sandbox.configure(fault="hang")
    started = time.monotonic()
    outcome = run(script, sandbox.url, capsys)
    elapsed = time.monotonic() - started
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "no answer came within the read timeout" in str(outcome.error)
    assert "may or may not have been created" in str(outcome.error)
    assert posts(sandbox) == 1
    assert elapsed < 1.0 + 2.0  # the timeout, plus process and loopback slack


@BOTH
def test_connection_closed_mid_response_is_not_repeated(
    script: ModuleType, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault="drop")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "answered 201" in str(outcome.error)
    assert "but its answer broke off" in str(outcome.error)
    assert "'SM-fault-1'" in str(outcome.error)
    assert posts(sandbox) == 1


@BOTH
@pytest.mark.parametrize("fault", ["not_json", "empty"])
def test_2xx_that_is_not_json_is_not_repeated(
    script: ModuleType, fault: str, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault=fault)
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "which means success, but its answer was not JSON" in str(outcome.error)
    assert posts(sandbox) == 1


@BOTH
def test_5xx_with_a_megabyte_of_html_gives_a_short_message(
    script: ModuleType, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault="html_500")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "500 Internal Server Error" in str(outcome.error)
    assert len(str(outcome.error)) < 1000
    assert posts(sandbox) == 1


@BOTH
def test_redirect_to_another_host_is_not_followed(
    script: ModuleType, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault="redirect")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)  # a POST that arrived
    assert "neither followed (the API key stays with the host you chose) nor repeated" in str(outcome.error)
    assert "http://127.0.0.2:" in str(outcome.error)
    assert posts(sandbox) == 1


def test_a_whole_worker_job_prints_nothing_of_the_key(sandbox: Sandbox) -> None:
    """The same faults through a real worker-style process: its result file and its logs."""
    for fault in ("drop", "html_500", "redirect"):
        sandbox.configure(fault=fault)
        job = run_job(
            SCRIPTS / "create_message.py", {"auth": {"apiKey": API_KEY, "baseUrl": sandbox.url}, "body": dict(MESSAGE)}
        )
        assert job.exit_code == 1
        assert API_KEY not in job.output + job.logs
        assert job.result["name"] in ("KustomerOutcomeUnknownError", "KustomerAPIError")


# ---- proxies from the environment ----


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


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    forward = ForwardProxy()
    yield forward
    forward.server.shutdown()
    forward.server.server_close()


@BOTH
def test_loopback_never_goes_through_a_proxy(
    script: ModuleType,
    sandbox: Sandbox,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A plain-http sandbox URL with HTTP_PROXY set: through the proxy, the key would travel in clear text."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    outcome = run(script, sandbox.url, capsys)
    assert outcome.error is None, outcome.error
    assert proxy.seen == []
    assert all(API_KEY.encode() not in raw for raw in proxy.raw)
    assert posts(sandbox) == 1


@BOTH
def test_https_proxy_from_the_environment_is_asked_for_a_tunnel_to_kustomer(
    script: ModuleType, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing leaves this machine: the proxy is asked to tunnel to Kustomer and refuses."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    outcome = run(script, "", capsys)  # the default host, https://api.kustomerapp.com
    assert isinstance(outcome.error, script.KustomerConnectionError)
    assert "the proxy refused the connection" in str(outcome.error)
    assert proxy.seen[0] == "CONNECT api.kustomerapp.com:443"
    assert len(proxy.seen) == script.POLICY.max_failed_attempts  # the tunnel never opened: safe to retry
    assert all(API_KEY.encode() not in raw for raw in proxy.raw)  # the key only travels inside the tunnel


def test_no_request_leaves_loopback() -> None:
    """The suite's servers are all on loopback: a sanity check of the fixtures' addresses."""
    with Sandbox() as box:
        host = httpx.URL(box.url).host
    assert socket.gethostbyname(host).startswith("127.")


def test_connection_retries_say_in_the_log_how_long_and_which_attempt(
    fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # nothing listens there now: every connection is refused
    outcome = run(create_message, url, capsys)
    assert isinstance(outcome.error, create_message.KustomerConnectionError)
    logged = [line for line in outcome.printed.splitlines() if "waiting" in line]
    waits = [w for w in fake_time.sleeps if w >= 1]
    assert len(logged) == len(waits) >= 2
    pattern = r"the connection failed.*; waiting \d+ s, until .* UTC, then attempt \d of at most 5\."
    assert all(re.search(pattern, line) for line in logged), logged
