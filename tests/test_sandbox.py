"""The sandbox answers like Kustomer: its auth, validation, shapes, and the switches tests and demos use."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from workbench.sandbox import Sandbox

KEY = {"Authorization": "Bearer sandbox-test-key"}
MESSAGE: dict[str, Any] = {"channel": "email", "app": "postmark", "direction": "in"}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


def post(box: Sandbox, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{box.url}{path}", json=body, headers=KEY if headers is None else headers)


def test_missing_bearer_token_answers_401_in_kustomers_shape(sandbox: Sandbox) -> None:
    answer = post(sandbox, "/v1/messages", MESSAGE, headers={})
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == "unauthorized"


def test_create_answers_201_with_a_fresh_message(sandbox: Sandbox) -> None:
    first = post(sandbox, "/v1/messages", {**MESSAGE, "conversation": "5f9a3c1e2b4d6f8a0c1e3b5d"})
    second = post(sandbox, "/v1/messages", MESSAGE)
    assert first.status_code == 201
    data = first.json()["data"]
    assert data["type"] == "message"
    assert data["links"]["self"] == f"/v1/messages/{data['id']}"
    assert data["relationships"]["conversation"]["data"]["id"] == "5f9a3c1e2b4d6f8a0c1e3b5d"
    assert data["relationships"]["customer"]["data"]["type"] == "customers"
    assert data["id"] != second.json()["data"]["id"]


def test_invalid_body_answers_400_with_a_pointer_per_problem(sandbox: Sandbox) -> None:
    answer = post(
        sandbox, "/v1/messages", {"channel": "fax", "app": "x", "direction": "in", "sentAt": "soon", "colour": "red"}
    )
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    pointers = {e["source"]["pointer"] for e in errors}
    assert {"/channel", "/sentAt", "/"} <= pointers
    assert all(e["status"] == 400 and e["title"] for e in errors)


def test_unparsable_json_answers_400_in_the_short_shape(sandbox: Sandbox) -> None:
    answer = httpx.post(f"{sandbox.url}/v1/messages", content=b"{nope", headers=KEY)
    assert answer.status_code == 400
    assert answer.json() == {
        "errors": [{"code": "bad_request", "message": "Invalid request body or parameters.", "meta": {}}]
    }


def test_bulk_answers_a_queued_operation_that_completes(sandbox: Sandbox) -> None:
    items = [{**MESSAGE, "_clientRef": "a"}, {"channel": "sms", "app": "twilio", "_clientRef": "b"}]
    answer = post(sandbox, "/v1/messages/bulk", items)
    assert answer.status_code == 200
    bulk = answer.json()["data"]
    assert bulk["type"] == "bulk"
    assert bulk["attributes"]["status"] == "queued"
    polled = httpx.get(f"{sandbox.url}{bulk['links']['self']}", headers=KEY).json()["data"]
    assert polled["attributes"]["status"] == "complete"
    assert [r["_clientRef"] for r in polled["attributes"]["results"]] == ["a", "b"]
    assert len(sandbox.messages) == 2


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ([{**MESSAGE, "_clientRef": "a"}, MESSAGE], "invalid_client_ref"),
        ([{**MESSAGE, "_clientRef": "a"}, {**MESSAGE, "_clientRef": "a"}], "invalid_client_ref"),
        ([], "invalid_value"),
        ([MESSAGE] * 101, "invalid_value"),
    ],
    ids=["mixed", "repeated", "empty", "101"],
)
def test_bulk_rules(sandbox: Sandbox, items: list[dict[str, Any]], code: str) -> None:
    answer = post(sandbox, "/v1/messages/bulk", items)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == code


def test_requests_are_listed_with_the_token_hidden(sandbox: Sandbox) -> None:
    post(sandbox, "/v1/messages", MESSAGE)
    listed = httpx.get(f"{sandbox.url}/__sandbox/requests").json()
    assert listed[0]["body"] == MESSAGE
    assert listed[0]["headers"]["Authorization"] == "Bearer <hidden>"
    assert listed[0]["status"] == 201
    assert "sandbox-test-key" not in httpx.get(f"{sandbox.url}/__sandbox/requests").text
    httpx.delete(f"{sandbox.url}/__sandbox/requests")
    assert httpx.get(f"{sandbox.url}/__sandbox/requests").json() == []


def test_rate_limit_switch_answers_429_with_headers() -> None:
    with Sandbox(rate_limit=2, window=3600) as box:
        answers = [post(box, "/v1/messages", MESSAGE) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert int(answers[2].headers["x-ratelimit-reset"]) > time.time()
    assert answers[2].headers["x-ratelimit-limit"] == "2"


def test_fault_switch_applies_to_the_next_n_requests(sandbox: Sandbox) -> None:
    httpx.post(f"{sandbox.url}/__sandbox/config", json={"fault": "503", "fault_count": 1})
    assert post(sandbox, "/v1/messages", MESSAGE).status_code == 503
    assert post(sandbox, "/v1/messages", MESSAGE).status_code == 201


def test_config_refuses_unknown_switches(sandbox: Sandbox) -> None:
    answer = httpx.post(f"{sandbox.url}/__sandbox/config", json={"fault": "fire"})
    assert answer.status_code == 400


def test_latency_switch_delays_answers() -> None:
    with Sandbox(latency=0.3) as box:
        started = time.monotonic()
        post(box, "/v1/messages", MESSAGE)
        assert time.monotonic() - started >= 0.3
