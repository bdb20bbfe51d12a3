"""What is sent, and where: the key, the JSON body and a user agent to the region's host; proxies from the
environment honoured, except for loopback, which never goes through one."""

from __future__ import annotations

import json
import socket
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
from conftest import API_KEY, US
from forward_proxy import ForwardProxy
from script_calls import BOTH, MESSAGE, attempt, body_for, path_for, posts, run

from workbench.sandbox import Sandbox


@BOTH
def test_request_carries_key_json_body_and_a_user_agent_naming_the_project(
    script: ModuleType, api: respx.Router
) -> None:
    route = api.post(f"{US}{path_for(script)}").respond(201, json={"data": {"id": "x"}})
    body = body_for(script)
    assert script.main({"apiKey": API_KEY}, body) == {"data": {"id": "x"}}
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("windmill-kustomer-scripts/")
    assert json.loads(request.content) == body


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.prod2.kustomerapp.com", "https://api.prod2.kustomerapp.com/v1/messages"),
        ("https://api.prod4.kustomerapp.com/", "https://api.prod4.kustomerapp.com/v1/messages"),
        ("https://acme.api.kustomerapp.com", "https://acme.api.kustomerapp.com/v1/messages"),
        ("", "https://api.kustomerapp.com/v1/messages"),
        ("  ", "https://api.kustomerapp.com/v1/messages"),
        (None, "https://api.kustomerapp.com/v1/messages"),
    ],
)
def test_base_url_picks_the_region(base_url: str | None, expected: str, api: respx.Router) -> None:
    route = api.post(expected).respond(201, json={})
    resource: Any = {"apiKey": API_KEY, "baseUrl": base_url}  # a resource saved with the field left empty
    create_message.main(resource, dict(MESSAGE))
    assert route.call_count == 1


def test_the_key_is_trimmed_of_pasted_whitespace(api: respx.Router) -> None:
    route = api.post(f"{US}/v1/messages").respond(201, json={})
    create_message.main({"apiKey": f" {API_KEY}\n"}, dict(MESSAGE))
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_bulk_accepts_any_2xx(api: respx.Router) -> None:
    api.post(f"{US}/v1/messages/bulk").respond(201, json={"data": {"type": "bulk", "id": "b"}})
    assert bulk_create_messages.main({"apiKey": API_KEY}, [dict(MESSAGE)])["data"]["id"] == "b"


@pytest.mark.parametrize(
    "proxy", ["socks5://127.0.0.1:9", "ftp://user:pw@127.0.0.1:9"], ids=["socks-without-socksio", "unknown-scheme"]
)
def test_an_unusable_proxy_setting_says_nothing_was_sent(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    _, error = attempt(create_message, {"apiKey": API_KEY})
    assert isinstance(error, create_message.KustomerConnectionError)
    assert "Nothing was sent to Kustomer" in str(error)
    assert "HTTPS_PROXY" in str(error)
    assert "pw@" not in str(error)
    assert "may or may not" not in str(error)


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
