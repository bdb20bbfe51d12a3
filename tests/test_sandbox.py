"""The sandbox answers like Kustomer: its auth, validation, shapes, and the switches tests and demos use."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from workbench.sandbox import Sandbox
from workbench.sandbox.state import SIMULATED_FAILURE

KEY = {"Authorization": "Bearer sandbox-test-key"}
MESSAGE: dict[str, Any] = {"channel": "email", "app": "postmark", "direction": "in"}


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


def get(box: Sandbox, path: str) -> httpx.Response:
    return httpx.get(f"{box.url}{path}", headers=KEY)


def test_a_bulk_operation_moves_from_queued_to_running_to_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's clock is stood in for: the status follows the time since submission, not the load."""
    from workbench.sandbox import state

    now = [1_800_000_000.0]
    monkeypatch.setattr(state, "time", SimpleNamespace(time=lambda: now[0]))
    items = [{**MESSAGE, "_clientRef": "a"}, {"channel": "sms", "app": "twilio", "_clientRef": "b"}]
    with Sandbox(bulk_seconds=0.9) as box:
        answer = post(box, "/v1/messages/bulk", items)
        assert answer.status_code == 200
        bulk = answer.json()["data"]
        assert (bulk["type"], bulk["attributes"]["status"]) == ("bulk", "queued")
        assert get(box, bulk["links"]["self"]).json()["data"]["attributes"]["status"] == "queued"
        assert get(box, f"{bulk['links']['self']}/batches").json()[0]["status"] == "queued"
        now[0] += 0.4
        assert get(box, bulk["links"]["self"]).json()["data"]["attributes"]["status"] == "running"
        now[0] += 0.6
        done = get(box, bulk["links"]["self"]).json()["data"]["attributes"]
        batches = get(box, f"{bulk['links']['self']}/batches").json()
    assert done["status"] == "complete"
    assert done["batches"] == {"complete": 1, "total": 1}
    assert len(batches) == 1
    assert batches[0]["successCount"] == 2
    assert batches[0]["failureCount"] == 0
    assert [r["_clientRef"] for r in batches[0]["results"]] == ["a", "b"]
    assert [r["objectId"] for r in batches[0]["results"]] == batches[0]["objectIds"]
    assert len(box.messages) == 2


def test_bulk_items_fail_by_marker_or_rate_with_kustomer_like_texts() -> None:
    items = [{**MESSAGE, "_clientRef": f"r{i}"} for i in range(100)]
    items[7]["preview"] = "please sandbox:fail this one"
    with Sandbox(item_failure_rate=0.1, seed=4) as box:
        bulk = post(box, "/v1/messages/bulk", items).json()["data"]
        (batch,) = get(box, f"/v1/bulk/{bulk['id']}/batches").json()
        created = box.created_by_ref
    failed = [r for r in batch["results"] if r["status"] == "error"]
    assert "r7" in {r["_clientRef"] for r in failed}
    assert 3 <= len(failed) <= 25
    assert batch["failureCount"] == len(failed)
    assert batch["successCount"] == 100 - len(failed)
    assert {r["error"] for r in failed} <= {SIMULATED_FAILURE}
    assert set(created) == {r["_clientRef"] for r in batch["results"] if r["status"] == "created"}
    assert set(created.values()) == {1}


def test_batches_in_the_json_api_shape_come_in_pages() -> None:
    items = [{**MESSAGE, "_clientRef": f"r{i}"} for i in range(10)]
    with Sandbox(batch_size=3, batches_shape="jsonapi", batches_page_size=2) as box:
        bulk = post(box, "/v1/messages/bulk", items).json()["data"]
        pages, path = [], f"/v1/bulk/{bulk['id']}/batches"
        while path:
            page = get(box, path).json()
            pages.append(page)
            path = page["links"]["next"]
    assert [len(p["data"]) for p in pages] == [2, 2]
    refs = [r["_clientRef"] for p in pages for b in p["data"] for r in b["attributes"]["results"]]
    assert refs == [f"r{i}" for i in range(10)]


def test_a_message_is_found_by_its_external_id(sandbox: Sandbox) -> None:
    post(sandbox, "/v1/messages", {**MESSAGE, "externalId": "<a b/c@mail>"})
    found = get(sandbox, "/v1/messages/externalid=%3Ca%20b%2Fc%40mail%3E")
    assert found.status_code == 200
    assert found.json()["data"]["attributes"]["externalId"] == "<a b/c@mail>"
    assert get(sandbox, "/v1/messages/externalid=nothing").status_code == 404


def test_applied_then_503_creates_the_message_and_still_answers_503(sandbox: Sandbox) -> None:
    sandbox.configure(fault="applied_503", fault_count=1)
    answer = post(sandbox, "/v1/messages", {**MESSAGE, "externalId": "applied-1"})
    assert answer.status_code == 503
    assert get(sandbox, "/v1/messages/externalid=applied-1").status_code == 200
    assert sandbox.requests[0]["applied"] is True


def test_reads_count_against_the_rate_limit_too() -> None:
    with Sandbox(rate_limit=2, window=3600) as box:
        bulk = post(box, "/v1/messages/bulk", [MESSAGE]).json()["data"]
        assert get(box, f"/v1/bulk/{bulk['id']}").status_code == 200
        assert get(box, f"/v1/bulk/{bulk['id']}").status_code == 429


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


def test_a_busy_port_is_one_line_and_exit_2() -> None:
    import subprocess
    import sys
    from pathlib import Path

    with Sandbox() as box:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "kustomer-sandbox"), "--port", str(box.port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"kustomer-sandbox: port {box.port} is in use: pass --port N (0 picks a free one) or stop the other sandbox"
    )


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    """Unhandled exceptions in sandbox threads fail the suite (pyproject's filterwarnings); a client
    that drops its connection is no such exception, and prints nothing."""
    import socket

    with Sandbox(latency=0.2) as box:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", box.port)) as conn:
                body = b'{"channel": "sms", "app": "x", "direction": "in"}'
                conn.sendall(
                    b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        time.sleep(0.6)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize(
    ("switch", "said"),
    [
        (["--window", "0"], "--window must be over 0 and at most 3600 seconds, not 0.0"),
        (["--latency", "-5"], "--latency must be 0 to 600000 ms, not -5.0"),
        (["--item-failure-rate", "2"], "--item-failure-rate must be 0 to 1, not 2.0"),
        (["--bulk-seconds", "-1"], "--bulk-seconds must be 0 to 3600, not -1.0"),
        (["--rate-limit", "0"], "--rate-limit must be 1 or more, not 0"),
    ],
)
def test_a_switch_that_would_break_the_sandbox_is_refused_at_start_in_one_line(switch: list[str], said: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kustomer-sandbox"), "--port", "0", *switch],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"kustomer-sandbox: {said}\n"


@pytest.mark.parametrize("header", ["authorization", "AUTHORIZATION", "Authorization"])
@pytest.mark.parametrize("value", ["Bearer\tsecret-token-123", "Bearer  secret-token-123", "secret-token-123"])
def test_the_journal_hides_the_token_however_the_header_is_spelled(header: str, value: str) -> None:
    with Sandbox() as box:
        httpx.post(f"{box.url}/v1/messages", headers={header: value}, json={"channel": "chat"})
        journal = httpx.get(f"{box.url}/__sandbox/requests").text
    assert "secret-token-123" not in journal
    assert "<hidden>" in journal
